//! Identity headers for a proxied upstream, and the removal of inbound copies of them.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::identity::Identity;
use crate::session::find_cookie_and_rest;

/// `X-Forwarded-User`: the user id.
pub(crate) const FORWARDED_USER: HeaderName = HeaderName::from_static("x-forwarded-user");
/// `X-Forwarded-Email`: the e-mail.
pub(crate) const FORWARDED_EMAIL: HeaderName = HeaderName::from_static("x-forwarded-email");
/// `X-Forwarded-Groups`: team ids, comma-separated.
pub(crate) const FORWARDED_GROUPS: HeaderName = HeaderName::from_static("x-forwarded-groups");
/// `X-Forwarded-Preferred-Username`: the display name.
pub(crate) const FORWARDED_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-forwarded-preferred-username");

const STRIPPED: [&str; 4] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
];

/// Whether a header name is an identity header, in any case and with `_` for `-`.
fn is_identity_header(name: &str) -> bool {
    name.len() >= 16
        && STRIPPED.iter().any(|s| {
            s.len() == name.len()
                && s.bytes().zip(name.bytes()).all(|(a, b)| {
                    let b = b.to_ascii_lowercase();
                    a == b || (a == b'-' && b == b'_')
                })
        })
}

/// Removes every inbound identity header (and its `_` / case variants) from `headers`.
pub(crate) fn strip_identity_headers(headers: &mut HeaderMap) {
    // The common case (none present) costs one pass over the names and no allocation.
    if !headers.keys().any(|k| is_identity_header(k.as_str())) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_identity_header(k.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Sets the identity headers for a proxied upstream. Values that are not valid header values are
/// left out rather than sent mangled.
pub(crate) fn set_identity_headers(headers: &mut HeaderMap, identity: &Identity) {
    if let Ok(v) = HeaderValue::from_str(identity.user_id()) {
        headers.insert(FORWARDED_USER, v);
    }
    if let Some(Ok(v)) = identity.email().map(HeaderValue::from_str) {
        headers.insert(FORWARDED_EMAIL, v);
    }
    // The list is comma-separated: a team id that itself holds a comma would read upstream as
    // two groups, so such ids are left out of the header.
    let groups: Vec<&str> = identity
        .team_ids()
        .iter()
        .map(String::as_str)
        .filter(|t| !t.is_empty() && !t.contains(','))
        .collect();
    if !groups.is_empty()
        && let Ok(v) = HeaderValue::from_str(&groups.join(","))
    {
        headers.insert(FORWARDED_GROUPS, v);
    }
    if let Some(Ok(v)) = identity.display_name().map(HeaderValue::from_str) {
        headers.insert(FORWARDED_PREFERRED_USERNAME, v);
    }
}

/// Removes the session credential: every `name` cookie (other cookies are kept, in order) and a
/// Bearer `Authorization` header.
pub(crate) fn remove_session_credential(headers: &mut HeaderMap, name: &str) {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.len() > 7 && v.as_bytes()[..7].eq_ignore_ascii_case(b"bearer "));
    if bearer {
        headers.remove(http::header::AUTHORIZATION);
    }
    remove_session_cookie(headers, name);
}

/// Removes every `name` cookie from the `Cookie` headers, keeping the other cookies' bytes as
/// they came (in order), whether or not they are UTF-8. A header left empty is removed.
pub(crate) fn remove_session_cookie(headers: &mut HeaderMap, name: &str) {
    let name = name.as_bytes();
    let holds_ours = |v: &HeaderValue| find_cookie_and_rest(v.as_bytes(), name).is_some();
    // The common case (no session cookie) costs one scan and no allocation.
    if !headers.get_all(http::header::COOKIE).iter().any(holds_ours) {
        return;
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(http::header::COOKIE);
    for value in cookies {
        if !holds_ours(&value) {
            headers.append(http::header::COOKIE, value);
            continue;
        }
        let mut kept: Vec<u8> = Vec::with_capacity(value.len());
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let ours = pair
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(b"="));
            if pair.is_empty() || ours {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(pair);
        }
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_bytes(&kept)
        {
            headers.append(http::header::COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_all_variants() {
        let mut h = HeaderMap::new();
        for name in [
            "x-forwarded-user",
            "X-Forwarded-Email",
            "x_forwarded_groups",
            "X_FORWARDED_USER",
            "x-forwarded_preferred-username",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("admin"),
            );
        }
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_identity_headers(&mut h);
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(h.contains_key("x-forwarded-for"));
    }

    #[test]
    fn team_ids_with_commas_are_left_out_of_the_groups_header() {
        let identity = Identity::new(crate::identity::IdentityData {
            user_id: "u".into(),
            email: None,
            display_name: None,
            role: crate::identity::UserRole::InternalUser,
            team_ids: vec!["devs".into(), "devs,admins".into(), "ops".into()],
            provider: None,
            attributes: serde_json::Map::new(),
            session_id: "s".into(),
            expires_at: 0,
        });
        let mut h = HeaderMap::new();
        set_identity_headers(&mut h, &identity);
        assert_eq!(h[FORWARDED_GROUPS], "devs,ops");
    }

    #[test]
    fn session_cookie_removed_from_a_header_that_is_not_utf8() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_bytes(b"lang=fran\xe7ais; token=secret; b=\xff").unwrap(),
        );
        h.append(
            "cookie",
            HeaderValue::from_bytes(b"other=\xe9t\xe9").unwrap(),
        );
        remove_session_cookie(&mut h, "token");
        let cookies: Vec<&[u8]> = h.get_all("cookie").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(
            cookies,
            [&b"lang=fran\xe7ais; b=\xff"[..], &b"other=\xe9t\xe9"[..]]
        );
    }

    #[test]
    fn session_credential_removed_other_cookies_kept() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_static("a=1; token=secret; tokenish=2"),
        );
        h.append("cookie", HeaderValue::from_static("token=again"));
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        remove_session_credential(&mut h, "token");
        let cookies: Vec<_> = h
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["a=1; tokenish=2"]);
        assert!(!h.contains_key("authorization"));
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        remove_session_credential(&mut h, "token");
        assert!(
            h.contains_key("authorization"),
            "other schemes are not ours"
        );
    }
}

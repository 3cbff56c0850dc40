//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test
//! (`tests/fuzz_corpus.rs`). Feature `fuzzing` only; not part of the supported API.
//!
//! Each function takes one raw fuzz input, runs one of the crate's parsers on it, and panics when
//! an invariant does not hold (a panic inside the parser itself is a finding too). The fuzz
//! targets and the replay test call the same functions, so a corpus file that once exposed a bug
//! keeps checking the fix on stable, in CI.

use std::collections::{BTreeMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use jsonwebtoken::Algorithm;
use serde_json::Value;
use url::Url;

use crate::clock::Clock;
use crate::identity::{Identity, UserRole};
use crate::redirect::{RedirectPolicy, same_origin_relative};
use crate::session::{NewSession, SessionCodec, SessionError, SessionFields};

/// A fuzz entry point: one raw input, panics on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz target and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("session_cookie", session_cookie),
    ("session_verify", session_verify),
    ("callback_query", callback_query),
    ("redirect", redirect),
    ("role_map", role_map),
    ("token_response", token_response),
    ("jwks", jwks),
    ("discovery", discovery),
];

// ---------------------------------------------------------------------------------------------
// 1a. Finding the session cookie / bearer token in the request headers.

const COOKIE_NAME: &str = "token";

/// The cookie lookup, written the obvious way (`split(';')`): the reference the byte-wise,
/// block-searching lookup must agree with.
fn reference_cookie_values(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            if let Some(v) = pair
                .trim_ascii_start()
                .strip_prefix(COOKIE_NAME.as_bytes())
                .and_then(|r| r.strip_prefix(b"="))
            {
                let mut v = v.trim_ascii_end();
                while let Some(r) = v.strip_prefix(b"\"") {
                    v = r;
                }
                while let Some(r) = v.strip_suffix(b"\"") {
                    v = r;
                }
                out.push(v.to_vec());
            }
        }
    }
    out
}

/// Input: lines; a line starting with `A:` is an `Authorization` header, every other line a
/// `Cookie` header (lines that are not valid header values are dropped).
///
/// Checks `find_cookie`, `unique_cookie`, `session_token` and `token_from_headers` against a
/// plain `split(';')` reference: the same cookie value, ambiguity exactly when two different
/// non-empty values are present, and a bearer token only when there is no cookie.
pub fn session_cookie(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Some(auth) = line.strip_prefix(b"A:") {
            if let Ok(v) = HeaderValue::from_bytes(auth) {
                headers.append(header::AUTHORIZATION, v);
            }
        } else if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(header::COOKIE, v);
        }
    }

    // `find_cookie` on each header: the first pair named `token`, empty or not.
    for value in headers.get_all(header::COOKIE) {
        if let Ok(text) = value.to_str() {
            let mut one = HeaderMap::new();
            one.append(header::COOKIE, value.clone());
            let expected = reference_cookie_values(&one).into_iter().next();
            let found = crate::session::find_cookie(text, COOKIE_NAME);
            assert_eq!(
                found.map(str::as_bytes),
                expected.as_deref(),
                "find_cookie({text:?})"
            );
        }
    }

    let values: Vec<String> = reference_cookie_values(&headers)
        .into_iter()
        .map(|v| String::from_utf8(v).unwrap_or_else(|_| "\u{FFFD}".to_owned()))
        .filter(|v| !v.is_empty())
        .collect();
    let unique = crate::session::unique_cookie(&headers, COOKIE_NAME);
    match &unique {
        Ok(None) => assert!(values.is_empty(), "missed a cookie: {values:?}"),
        Ok(Some(v)) => {
            assert!(!v.is_empty());
            assert!(
                values.iter().all(|x| x == *v),
                "{v:?} returned, but the header holds {values:?}"
            );
        }
        Err(crate::session::AmbiguousCookie) => assert!(
            values.iter().any(|x| *x != values[0]),
            "ambiguous, but all values are equal: {values:?}"
        ),
    }

    let token = crate::session::session_token(&headers, COOKIE_NAME);
    assert_eq!(
        crate::session::token_from_headers(&headers, COOKIE_NAME),
        token.ok()
    );
    match (unique, token) {
        (Ok(Some(cookie)), t) => assert_eq!(t, Ok(cookie)),
        (Err(_), t) => assert_eq!(t, Err(SessionError::Ambiguous)),
        (Ok(None), Ok(t)) => {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .expect("a bearer token comes from the Authorization header");
            let (scheme, rest) = auth.split_once(' ').expect("scheme and token");
            assert!(scheme.eq_ignore_ascii_case("bearer"), "{auth:?}");
            assert!(
                !t.is_empty() && t == t.trim() && rest.trim() == t,
                "{auth:?}"
            );
        }
        (Ok(None), Err(e)) => assert_eq!(e, SessionError::Missing),
    }
}

// ---------------------------------------------------------------------------------------------
// 1b. Verifying session tokens.

struct Sessions {
    /// Remembers verified tokens.
    warm: SessionCodec,
    /// Remembers none: every verification is a full one.
    cold: SessionCodec,
    /// Tokens `warm` and `cold` issued (same key), with their identities.
    issued: Vec<(String, Identity)>,
}

fn sessions() -> &'static Sessions {
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        // A fresh secret per process: no token in a corpus file can be valid, so any token
        // `verify` accepts that is not one issued below is a forgery.
        let secret = crate::random::token(32);
        let codec = |remembered| {
            SessionCodec::new(
                secret.as_bytes(),
                Duration::from_secs(10 * 365 * 24 * 3600),
                SessionFields::default(),
                Clock::manual(),
                remembered,
            )
        };
        let warm = codec(100);
        let cold = codec(0);
        let mut attributes = serde_json::Map::new();
        attributes.insert("department".into(), "R&D \u{e9}\u{1F600}".into());
        attributes.insert("level".into(), 3.into());
        let sessions = [
            NewSession {
                user_id: "alice".into(),
                email: Some("alice@example.com".into()),
                display_name: Some("Alice".into()),
                role: UserRole::ProxyAdmin,
                team_ids: vec!["t1".into(), "t2".into()],
                provider: Some("generic".into()),
                attributes,
            },
            NewSession {
                user_id: "b".into(),
                email: None,
                display_name: None,
                role: UserRole::InternalUserViewer,
                team_ids: vec![],
                provider: None,
                attributes: serde_json::Map::new(),
            },
        ];
        let issued: Vec<(String, Identity)> = sessions
            .into_iter()
            .map(|s| warm.issue(s).expect("issue a session"))
            .collect();
        for (token, id) in &issued {
            assert_eq!(warm.verify(token).as_ref(), Ok(id));
            assert_eq!(cold.verify(token).as_ref(), Ok(id));
        }
        Sessions { warm, cold, issued }
    })
}

/// Input: the first byte picks a mode, the rest is
/// - mode 0: a token, as it is;
/// - mode 1: bytes appended to a valid token (the second byte picks which);
/// - mode 2: `(position, byte)` pairs overwriting bytes of a valid token;
/// - mode 3: a valid token cut at the position in bytes 2-3, the rest appended.
///
/// The codec's key is random per process; `verify` (from memory or in full) must accept exactly
/// the tokens it issued, with the identity it issued them for.
pub fn session_verify(data: &[u8]) {
    let s = sessions();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let pick = |b: Option<&u8>| &s.issued[usize::from(b.copied().unwrap_or(0)) % s.issued.len()];
    let candidate: Vec<u8> = match mode % 4 {
        0 => rest.to_vec(),
        1 => {
            let mut t = pick(rest.first()).0.clone().into_bytes();
            t.extend_from_slice(rest.get(1..).unwrap_or_default());
            t
        }
        2 => {
            let mut t = pick(rest.first()).0.clone().into_bytes();
            for pair in rest.get(1..).unwrap_or_default().chunks_exact(2) {
                let i = usize::from(pair[0]) * 7 % t.len();
                t[i] = pair[1];
            }
            t
        }
        _ => {
            let t = &pick(rest.first()).0;
            let cut = match rest.get(1..3) {
                Some(&[a, b]) => usize::from(u16::from_be_bytes([a, b])) % (t.len() + 1),
                _ => t.len(),
            };
            let mut out = t.as_bytes()[..cut].to_vec();
            out.extend_from_slice(rest.get(3..).unwrap_or_default());
            out
        }
    };
    let candidate = String::from_utf8_lossy(&candidate);
    let genuine = s.issued.iter().find(|(t, _)| *t == candidate);
    for codec in [&s.warm, &s.cold] {
        match (codec.verify(&candidate), genuine) {
            (Ok(id), Some((_, issued))) => assert_eq!(&id, issued),
            (Ok(id), None) => panic!("accepted a token it never issued: {candidate:?} as {id:?}"),
            (Err(e), Some(_)) => panic!("refused its own token ({e:?})"),
            (Err(SessionError::Invalid | SessionError::TooLong), None) => {}
            (Err(e), None) => panic!("unexpected refusal {e:?} for {candidate:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The endpoints' query string (`/sso/callback?...`).

/// Input: a query string (lossily UTF-8). Accepted: exactly the pairs `form_urlencoded` yields,
/// no key twice, at most `MAX_QUERY_PARAMS`, each pair looked at once. Refused: exactly when a
/// key repeats within the bound or there are more pairs than it, with a message that echoes no
/// markup.
pub fn callback_query(data: &[u8]) {
    use crate::endpoints::{MAX_QUERY_PARAMS, param, parse_query};
    let query = String::from_utf8_lossy(data);
    let reference: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let first_repeat = {
        let mut seen = HashSet::new();
        reference.iter().position(|(k, _)| !seen.insert(k.as_str()))
    };
    let mut steps = 0;
    let result = parse_query(&query, &mut steps);
    assert!(steps <= 2 * MAX_QUERY_PARAMS + 1, "{steps} steps");
    match result {
        Ok(params) => {
            assert_eq!(params, reference);
            assert!(params.len() <= MAX_QUERY_PARAMS);
            assert_eq!(first_repeat, None);
            assert_eq!(steps, 2 * params.len());
            for (k, v) in &params {
                assert_eq!(param(&params, k), Some(v.as_str()));
            }
        }
        Err(e) => {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            let msg = e.message();
            assert!(
                !msg.contains(['<', '>']) && !msg.chars().any(char::is_control),
                "{msg:?}"
            );
            match first_repeat.filter(|&i| i < MAX_QUERY_PARAMS) {
                Some(_) => assert!(msg.contains("more than once"), "{msg:?}"),
                None => {
                    assert!(
                        reference.len() > MAX_QUERY_PARAMS,
                        "refused {query:?}: {msg}"
                    );
                    assert!(msg.contains("more than 64"), "{msg:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Post-login redirect targets.

const GATEWAY: &str = "https://gateway.example.com/sso/callback";

fn fixed_policy() -> &'static RedirectPolicy {
    static POLICY: OnceLock<RedirectPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        RedirectPolicy::new([
            "www.whitelisteddomain.tld",
            ".example.com",
            "app.test:8443",
            "any.test:*",
            "127.0.0.1:3000",
            "[::1]:8080",
        ])
    })
}

/// Whether `url` is allowed by [`fixed_policy`], written independently with `url`'s parsing.
fn fixed_policy_allows(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let port = url.port_or_known_default();
    let default = url.port().is_none() || url.port() == Some(default_port(url.scheme()));
    match host {
        "www.whitelisteddomain.tld" => default,
        "example.com" => default,
        h if h.ends_with(".example.com") => default,
        "app.test" => port == Some(8443),
        "any.test" => true,
        "127.0.0.1" => port == Some(3000),
        "[::1]" => port == Some(8080),
        _ => false,
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

/// Input: a return target (lossily UTF-8), validated against a fixed allow list, and the same
/// input split at `,` as an allow list of its own.
///
/// An accepted target is returned as given; it never starts with `//`, holds no backslash, white
/// space or control character; a relative one resolves (as written, and after one more
/// percent-decoding) to the gateway's own origin; an absolute one is `http(s)` without user info
/// on an allowed host and port, and a browser resolving it from the gateway lands on that host.
pub fn redirect(data: &[u8]) {
    let target = String::from_utf8_lossy(data);
    let target = target.as_ref();
    let base = Url::parse(GATEWAY).expect("base URL");
    check_redirect(fixed_policy(), target, &base, true);
    // The allow-list parser, on entries from the input; then the input against that list.
    let own = RedirectPolicy::new(target.split(','));
    check_redirect(&own, target, &base, false);
}

fn check_redirect(policy: &RedirectPolicy, target: &str, base: &Url, fixed: bool) {
    let Some(accepted) = policy.validate(target) else {
        return;
    };
    assert_eq!(accepted, target);
    assert!(
        !target.starts_with("//") && !target.contains('\\'),
        "{target:?}"
    );
    assert!(
        target.bytes().all(|b| b.is_ascii_graphic()),
        "white space, control or non-ASCII in {target:?}"
    );
    if target.starts_with('/') {
        assert!(same_origin_relative(target));
        let joined = base.join(target).expect("a relative path resolves");
        assert_eq!(
            joined.origin(),
            base.origin(),
            "{target:?} leaves the origin"
        );
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(target).collect();
        let decoded = String::from_utf8(decoded).expect("decodes to ASCII");
        assert!(!decoded.starts_with("//"), "{target:?}");
        let joined = base.join(&decoded).expect("the decoded path resolves");
        assert_eq!(
            joined.origin(),
            base.origin(),
            "{target:?} leaves the origin once decoded"
        );
    } else {
        let url = Url::parse(target).expect("an accepted absolute URL parses");
        assert!(matches!(url.scheme(), "http" | "https"), "{target:?}");
        assert!(url.username().is_empty() && url.password().is_none());
        let joined = base.join(target).expect("resolves");
        assert_eq!(joined.host_str(), url.host_str(), "{target:?}");
        assert_eq!(joined.port_or_known_default(), url.port_or_known_default());
        if fixed {
            assert!(fixed_policy_allows(&url), "{target:?} is not allowed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. `GENERIC_ROLE_MAPPINGS_ROLES` (JSON or a Python-literal dict).

/// A role map written back as a Python literal.
fn python_literal(map: &BTreeMap<UserRole, Vec<String>>) -> String {
    fn quote(s: &str) -> String {
        let mut out = String::from("'");
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }
    let entries: Vec<String> = map
        .iter()
        .map(|(role, groups)| {
            let groups: Vec<String> = groups.iter().map(|g| quote(g)).collect();
            format!("{}: [{}]", quote(role.as_str()), groups.join(", "))
        })
        .collect();
    if entries.is_empty() {
        "{}".to_owned()
    } else {
        // With a trailing comma, as upstream's examples allow.
        format!("{{{}, }}", entries.join(", "))
    }
}

/// Input: the variable's text (lossily UTF-8). No panic; a parsed map written back as a Python
/// literal parses to the same map; and a JSON object of strings and string lists parses to what
/// `serde_json` reads (the last of a repeated role wins), or is refused exactly when a role is
/// unknown or a value is `null`.
pub fn role_map(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = crate::claims::parse_role_map(&text);
    if let Ok(map) = &parsed {
        let again = python_literal(map);
        assert_eq!(
            crate::claims::parse_role_map(&again).as_ref(),
            Ok(map),
            "{again:?}"
        );
    }
    // Differential, for JSON documents: every entry in source order, duplicates kept.
    let Ok(JsonEntries(entries)) = serde_json::from_str::<JsonEntries>(&text) else {
        return;
    };
    let mut expected = BTreeMap::new();
    let mut refused = false;
    for (key, value) in entries {
        let groups = match value {
            Value::String(s) => vec![s],
            Value::Array(items) => {
                let Some(items) = items
                    .into_iter()
                    .map(|i| match i {
                        Value::String(s) => Some(s),
                        _ => None,
                    })
                    .collect::<Option<Vec<String>>>()
                else {
                    return;
                };
                items
            }
            Value::Null => {
                refused = true;
                continue;
            }
            _ => return,
        };
        match key.parse::<UserRole>() {
            Ok(role) => {
                expected.insert(role, groups);
            }
            Err(_) => refused = true,
        }
    }
    if refused {
        assert!(parsed.is_err(), "accepted {text:?}: {parsed:?}");
    } else {
        assert_eq!(parsed, Ok(expected), "{text:?}");
    }
}

/// A JSON object's entries in source order, repeated keys included.
struct JsonEntries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for JsonEntries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = JsonEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonEntries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(JsonEntries(out))
            }
        }
        d.deserialize_map(Entries)
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Identity provider answers: token response, JWKS, discovery metadata.

/// Statuses for [`token_response`]: the first input byte picks one (half of them 200).
const STATUSES: [u16; 16] = [
    200, 200, 200, 200, 200, 200, 200, 200, 201, 204, 302, 400, 401, 429, 500, 503,
];

fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["token", "secret", "password", "key"]
        .iter()
        .any(|w| n.contains(w))
}

/// Input: a status byte then the token endpoint's body. Accepted only on a 2xx with a non-empty
/// `access_token`; nothing token- or secret-like kept among the extra fields, and `Debug` shows
/// no token. Refused with 401 (a refusal) or 502 (a 5xx, or a 2xx that is not a JSON object),
/// with a short ASCII message that quotes nothing but a safe error code.
pub fn token_response(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status =
        StatusCode::from_u16(STATUSES[usize::from(pick) % STATUSES.len()]).expect("valid status");
    match crate::oidc::token::parse_response(status, body) {
        Ok(res) => {
            assert!(status.is_success());
            let doc: Value = serde_json::from_slice(body).expect("accepted JSON");
            assert_eq!(
                doc.get("access_token").and_then(Value::as_str),
                Some(res.access_token.as_str())
            );
            assert!(!res.access_token.is_empty());
            assert!(res.id_token.as_deref() != Some(""));
            assert!(
                res.extra.keys().all(|k| !looks_secret(k)),
                "{:?}",
                res.extra.keys()
            );
            let shown = format!("{res:?}");
            for secret in [Some(&res.access_token), res.id_token.as_ref()]
                .into_iter()
                .flatten()
                .chain(res.refresh_token.as_ref())
            {
                let elsewhere = res.extra.keys().any(|k| k.contains(secret.as_str()))
                    || res
                        .scope
                        .as_ref()
                        .is_some_and(|s| s.contains(secret.as_str()))
                    || res
                        .token_type
                        .as_ref()
                        .is_some_and(|s| s.contains(secret.as_str()));
                if secret.len() >= 16 && !elsewhere {
                    assert!(!shown.contains(secret.as_str()), "Debug shows a token");
                }
            }
        }
        Err(e) => {
            let want = if status.is_server_error() {
                vec![StatusCode::BAD_GATEWAY]
            } else if status.is_success() {
                vec![StatusCode::UNAUTHORIZED, StatusCode::BAD_GATEWAY]
            } else {
                vec![StatusCode::UNAUTHORIZED]
            };
            assert!(want.contains(&e.status()), "{status} -> {}", e.status());
            let msg = e.message();
            assert!(msg.starts_with("token exchange failed"), "{msg:?}");
            assert!(
                msg.len() <= 200 && msg.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
                "{msg:?}"
            );
        }
    }
}

const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Input: a JWK Set document. Accepted only when it is JSON with a `keys` array, keeping at most
/// as many keys as it lists, none symmetric; a lookup by `kid` and `alg` finds only a key with
/// that `kid` that fits the algorithm (never one for HMAC), and without a `kid` finds the only
/// fitting key or reports ambiguity.
pub fn jwks(data: &[u8]) {
    use crate::oidc::jwks::{Lookup, fits, lookup, parse_key_set};
    let keys = match parse_key_set(data) {
        Ok(keys) => keys,
        Err(e) => {
            assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
            return;
        }
    };
    let doc: Value = serde_json::from_slice(data).expect("accepted JSON");
    let listed = doc["keys"].as_array().expect("a keys array").len();
    assert!(keys.len() <= listed);
    let mut kids: Vec<Option<&str>> = vec![None, Some(""), Some("no-such-kid")];
    kids.extend(keys.iter().map(|k| k.kid.as_deref()));
    for alg in ALGORITHMS {
        for &kid in &kids {
            match lookup(&keys, kid, alg) {
                Lookup::Found(k) => {
                    assert!(
                        !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512),
                        "a key for {alg:?}"
                    );
                    assert!(fits(k, alg));
                    assert!(k.alg.is_none_or(|a| a == alg));
                    if kid.is_some() {
                        assert_eq!(k.kid.as_deref(), kid);
                    } else {
                        assert_eq!(keys.iter().filter(|k| fits(k, alg)).count(), 1);
                    }
                }
                Lookup::Ambiguous => {
                    assert!(kid.is_none());
                    assert!(keys.iter().filter(|k| fits(k, alg)).count() > 1);
                }
                Lookup::NotFound => assert!(
                    !keys
                        .iter()
                        .any(|k| fits(k, alg) && (kid.is_none() || k.kid.as_deref() == kid))
                ),
            }
        }
    }
}

const ISSUER: &str = "https://idp.example.com";

/// Input: a discovery document. Accepted (for the issuer `https://idp.example.com`, and for the
/// same with a trailing `/`) only when it names exactly that issuer; refused with 502 and a fixed
/// message otherwise.
pub fn discovery(data: &[u8]) {
    for issuer in [ISSUER, "https://idp.example.com/"] {
        match crate::oidc::parse_metadata(data, issuer) {
            Ok(meta) => assert_eq!(meta.issuer, issuer),
            Err(e) => {
                assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
                assert!(e.message().starts_with("OIDC discovery failed: "));
                assert!(e.message().is_ascii());
            }
        }
    }
}

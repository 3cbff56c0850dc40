//! Header sign-in behind a trusted proxy (upstream `user_custom_ui_sso_sign_in_handler`).

use http::{HeaderMap, HeaderName};

use crate::config::Problems;

/// Header sign-in: a login start that arrives from a [trusted proxy] may name the user in
/// headers, and is then finished like an IdP callback (the [custom SSO hook], the access policy,
/// the user store, the [UI key issuer], a session), without a trip to an identity provider.
///
/// Off unless set with [`SsoLayerBuilder::header_sign_in`] (`SSO_HEADER_SIGN_IN=true`), and
/// [`build`] refuses it without [trusted proxies]. The peer is the connection's address, read
/// from [`ClientAddr`](crate::ClientAddr) (plain hyper: insert it into each request's
/// extensions) or axum's `ConnectInfo<SocketAddr>` (feature `axum`,
/// `into_make_service_with_connect_info`); `X-Forwarded-For` plays no part in it.
///
/// - From a trusted proxy, `GET /sso/key/generate` with the user id header (exactly one value)
///   signs that user in; the e-mail header is optional. Both are trusted as if an IdP had
///   vouched for them (the e-mail counts as verified). The user id is used as it is and binds
///   the stored user to `trusted-proxy|<id>`, so an account an IdP login created is not
///   reachable by header sign-in and the other way round. `return_to` works as for any login.
///   Without the user id header, the login goes to the identity provider as usual.
/// - From any other address, the headers are removed from every request before anything reads
///   them, in any letter case and with `_` for `-` (`X_LiteLLM_User_Id`), and the login goes to
///   the identity provider as usual. From a trusted proxy, the `_` spellings are removed too.
///
/// The proxy must set these headers itself and drop any copy a client sends: every client it
/// forwards can otherwise name any user.
///
/// ```
/// use tower_sso::{SsoLayer, hooks::HeaderSignIn};
///
/// # fn main() -> Result<(), tower_sso::ConfigErrors> {
/// let sso = SsoLayer::builder()
///     .base_url("https://gateway.example.com")
///     .session_secret("a long random secret, at least 16 bytes")
///     .trusted_proxies(["10.0.0.5"])
///     .header_sign_in(HeaderSignIn::new().user_id_header("x-auth-user"))
///     .build()?;
/// # let _ = sso;
/// # Ok(())
/// # }
/// ```
///
/// [trusted proxy]: crate::SsoLayerBuilder::trusted_proxies
/// [trusted proxies]: crate::SsoLayerBuilder::trusted_proxies
/// [custom SSO hook]: super::CustomSsoRequest
/// [UI key issuer]: super::UiKeyRequest
/// [`SsoLayerBuilder::header_sign_in`]: crate::SsoLayerBuilder::header_sign_in
/// [`build`]: crate::SsoLayerBuilder::build
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSignIn {
    user_id_header: String,
    email_header: String,
}

impl Default for HeaderSignIn {
    fn default() -> Self {
        Self {
            user_id_header: "x-litellm-user-id".to_owned(),
            email_header: "x-litellm-user-email".to_owned(),
        }
    }
}

impl HeaderSignIn {
    /// Header sign-in with upstream's headers: `x-litellm-user-id` and `x-litellm-user-email`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The header naming the user id (default `x-litellm-user-id`).
    pub fn user_id_header(mut self, name: impl Into<String>) -> Self {
        self.user_id_header = name.into();
        self
    }

    /// The header naming the e-mail (default `x-litellm-user-email`).
    pub fn email_header(mut self, name: impl Into<String>) -> Self {
        self.email_header = name.into();
        self
    }

    /// The validated configuration; problems are added to `p`.
    pub(crate) fn validate(self, p: &mut Problems) -> Option<HeaderSignInConfig> {
        let mut parse = |raw: &str, what: &str| {
            let lower = raw.trim().to_ascii_lowercase();
            match HeaderName::from_bytes(lower.as_bytes()) {
                Ok(h) if !lower.contains('_') => Some(h),
                _ => {
                    p.add(
                        "header_sign_in (SSO_HEADER_SIGN_IN)",
                        format!("the {what} header {raw:?} is not a valid header name without '_'"),
                    );
                    None
                }
            }
        };
        let user_id = parse(&self.user_id_header, "user id");
        let email = parse(&self.email_header, "e-mail");
        match (user_id, email) {
            (Some(user_id), Some(email)) if user_id != email => {
                Some(HeaderSignInConfig { user_id, email })
            }
            (Some(_), Some(_)) => {
                p.add(
                    "header_sign_in (SSO_HEADER_SIGN_IN)",
                    "the user id and e-mail headers must differ",
                );
                None
            }
            _ => None,
        }
    }
}

/// [`HeaderSignIn`], validated.
#[derive(Debug, Clone)]
pub(crate) struct HeaderSignInConfig {
    pub(crate) user_id: HeaderName,
    pub(crate) email: HeaderName,
}

impl HeaderSignInConfig {
    /// Whether `name` spells one of the sign-in headers: any case, `_` for `-`. `exact`: whether
    /// it is the canonical (lower-case, `-`) spelling.
    fn spells(&self, name: &str) -> Option<bool> {
        [&self.user_id, &self.email].into_iter().find_map(|h| {
            let h = h.as_str();
            let same = h.len() == name.len()
                && h.bytes().zip(name.bytes()).all(|(a, b)| {
                    let b = b.to_ascii_lowercase();
                    a == b || (a == b'-' && b == b'_')
                });
            same.then(|| h == name)
        })
    }

    /// Removes the sign-in headers a request must not carry: every spelling when the peer is not
    /// a trusted proxy, the `_` spellings when it is.
    pub(crate) fn strip(&self, headers: &mut HeaderMap, from_trusted_proxy: bool) {
        let doomed = |k: &HeaderName| {
            self.spells(k.as_str())
                .is_some_and(|exact| !exact || !from_trusted_proxy)
        };
        // The common case (none present) costs one pass over the names and no allocation.
        if !headers.keys().any(doomed) {
            return;
        }
        let names: Vec<HeaderName> = headers.keys().filter(|k| doomed(k)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HeaderSignInConfig {
        let mut p = Problems(Vec::new());
        let c = HeaderSignIn::new().validate(&mut p).unwrap();
        assert!(p.0.is_empty());
        c
    }

    #[test]
    fn every_spelling_is_stripped_from_untrusted_peers() {
        let c = config();
        let mut h = HeaderMap::new();
        for name in [
            "x-litellm-user-id",
            "X-LiteLLM-User-Id",
            "x_litellm_user_id",
            "X_LITELLM_USER_EMAIL",
            "x-litellm_user-email",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "mallory".parse().unwrap(),
            );
        }
        h.insert("x-litellm-user-idx", "kept".parse().unwrap());
        let mut trusted = h.clone();
        c.strip(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        c.strip(&mut trusted, true);
        assert_eq!(trusted.get_all("x-litellm-user-id").iter().count(), 2);
        assert!(trusted.get("x-litellm-user-email").is_none());
        assert_eq!(trusted.len(), 3, "{trusted:?}");
    }

    #[test]
    fn bad_names_are_reported() {
        let mut p = Problems(Vec::new());
        assert!(
            HeaderSignIn::new()
                .user_id_header("x user")
                .validate(&mut p)
                .is_none()
        );
        assert!(
            HeaderSignIn::new()
                .email_header("x_mail")
                .validate(&mut p)
                .is_none()
        );
        assert!(
            HeaderSignIn::new()
                .email_header("X-LiteLLM-User-Id")
                .validate(&mut p)
                .is_none()
        );
        assert_eq!(p.0.len(), 3);
    }
}

//! `POST /sso/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//!
//! The identity provider posts a logout token (form field `logout_token`) when a user's session
//! there ends. Like callbacks, the endpoint is per provider: `/sso/backchannel-logout` is the
//! first provider's, `/sso/backchannel-logout/{name}` every other one's (register that URL as
//! the client's `backchannel_logout_uri`), so the keys and issuer the token is checked against
//! are known before the token is read.
//!
//! The token is validated in full ([`crate::oidc::logout_token`]) and its `jti` is remembered in
//! the verifier cache until the token could no longer be accepted, so a replay is refused on
//! every instance sharing the cache. Then every session of that provider session (`sid`), or,
//! when the token names only a subject, every session of that subject at that provider, issued
//! up to now is revoked, here and (through the revocation feed) on every instance; a later
//! login works. Answers: 200 with an empty body, or 400 `{"error": "invalid_request",
//! "error_description": ...}` (the description never quotes the token), both `no-store`.
//!
//! It is called server to server: no session, no cookie, and no per-client rate limit (a
//! provider ending many sessions at once must not be turned away; a refused token costs one
//! signature check, and fetching keys for an unknown `kid` has its own cooldown). The body is
//! read up to [`MAX_BODY`] bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use serde_json::json;

use super::{Endpoint, json};
use crate::future::EndpointFuture;
use crate::layer::Shared;
use crate::oidc::id_token::DEFAULT_LEEWAY;
use crate::oidc::logout_token::{
    LogoutCheck, LogoutTokenError, MAX_LOGOUT_TOKEN_AGE, verify_logout_token,
};
use crate::revocation::RevokedSession;

/// The largest request body read (a logout token is a few kilobytes).
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// The endpoint's path under the prefix, for the first provider.
const PATH: &str = "/backchannel-logout";

/// Routes `rest` (the path after the prefix) if it is a back-channel logout path: `None` when it
/// is not one, [`Endpoint::NotFound`] for an unknown provider name.
pub(crate) fn route(shared: &Shared, method: &Method, rest: &str) -> Option<Endpoint> {
    let tail = rest.strip_prefix(PATH)?;
    let index = match tail.strip_prefix('/') {
        None if tail.is_empty() => 0,
        None => return None,
        Some(name) => match shared
            .providers
            .iter()
            .skip(1)
            .position(|p| p.config.provider_name() == name)
        {
            Some(i) => i + 1,
            None => return Some(Endpoint::NotFound),
        },
    };
    if shared.providers.is_empty() {
        return Some(Endpoint::NotFound);
    }
    Some(if method == Method::POST {
        Endpoint::BackchannelLogout(index)
    } else {
        Endpoint::MethodNotAllowed
    })
}

/// Answers a back-channel logout for the provider at `index`, reading the form body.
pub(crate) fn handle<B>(shared: Arc<Shared>, index: usize, parts: Parts, body: B) -> EndpointFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    Box::pin(async move {
        match logout(&shared, index, &parts, body).await {
            Ok(()) => {
                let mut res = Response::new(Full::new(Bytes::new()));
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                res
            }
            Err(description) => {
                tracing::info!(reason = description, "back-channel logout refused");
                json(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "invalid_request", "error_description": description}),
                )
            }
        }
    })
}

async fn logout<B>(
    shared: &Shared,
    index: usize,
    parts: &Parts,
    body: B,
) -> Result<(), &'static str>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err("the body must be application/x-www-form-urlencoded");
    }
    let body = read_body(body).await?;
    let token = logout_token(&body)?;

    let provider = shared
        .providers
        .get(index)
        .ok_or("no such identity provider")?;
    let resolved = provider.resolve().await.map_err(|e| {
        tracing::warn!(provider = %provider.config.name, error = %e, "back-channel logout: provider metadata unavailable");
        "the identity provider's metadata is unavailable"
    })?;
    let jwks = resolved
        .jwks
        .as_ref()
        .ok_or("no signing keys are configured for this identity provider")?;
    let now = shared.clock.now();
    let check = LogoutCheck {
        issuer: resolved.issuer.as_deref(),
        client_id: &provider.config.client_id,
        now,
        leeway: DEFAULT_LEEWAY,
    };
    let claims = verify_logout_token(jwks, &token, &check)
        .await
        .map_err(|e| match e {
            LogoutTokenError::Invalid(reason) => reason,
            LogoutTokenError::Unavailable(e) => {
                tracing::warn!(provider = %provider.config.name, error = %e, "back-channel logout: signing keys unavailable");
                "the identity provider's signing keys are unavailable"
            }
        })?;

    // Replay: the jti is remembered for as long as the token could be accepted.
    let ttl = Duration::from_secs(MAX_LOGOUT_TOKEN_AGE + 2 * DEFAULT_LEEWAY);
    let key = replay_key(&claims.iss, &claims.jti);
    match crate::cache::put(&shared.cache, key, Bytes::from_static(b"1"), ttl, true).await {
        Ok(true) => {}
        Ok(false) => return Err("logout token already used"),
        // Revoking is the safe side: a replay can only log the same sessions out again.
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout: replay not checked (verifier cache unavailable)")
        }
    }

    // Every session it covers expires within one session lifetime of now.
    let expires_at = now.saturating_add(shared.sessions.ttl().as_secs());
    let name = provider.config.provider_name();
    let (revocation, by) = match (&claims.sid, &claims.sub) {
        (Some(sid), _) => (
            RevokedSession::idp_session(name, sid, now, expires_at),
            "sid",
        ),
        (None, Some(sub)) => (
            RevokedSession::idp_subject(name, sub, now, expires_at),
            "sub",
        ),
        (None, None) => return Err("neither sid nor sub"),
    };
    shared.publish_revocation(revocation).await;
    crate::metrics::session_revoked(crate::metrics::RevocationSource::Backchannel);
    tracing::info!(provider = %name, by, "back-channel logout: sessions revoked");
    Ok(())
}

/// Reads the body, up to [`MAX_BODY`] bytes.
async fn read_body<B>(body: B) -> Result<Bytes, &'static str>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::new();
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(frame) = frame else {
            return Err("the request body could not be read");
        };
        if let Ok(mut data) = frame.into_data() {
            if out.len().saturating_add(data.remaining()) > MAX_BODY {
                return Err("the request body is too large");
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                let n = chunk.len();
                out.extend_from_slice(chunk);
                data.advance(n);
            }
        }
    }
    Ok(out.freeze())
}

/// The one `logout_token` of a form body.
fn logout_token(body: &[u8]) -> Result<String, &'static str> {
    let mut found: Option<String> = None;
    for (name, value) in url::form_urlencoded::parse(body) {
        if name != "logout_token" {
            continue;
        }
        if found.is_some() {
            return Err("logout_token given more than once");
        }
        // A JWS in compact form is base64url and dots.
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err("malformed logout_token");
        }
        found = Some(value.into_owned());
    }
    found
        .filter(|v| !v.is_empty())
        .ok_or("missing logout_token")
}

/// The verifier-cache key remembering a logout token's `jti` (hashed with the issuer: fixed
/// length, whatever the provider sends).
fn replay_key(iss: &str, jti: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(iss.as_bytes());
    ctx.update(b"\0");
    ctx.update(jti.as_bytes());
    format!(
        "bcl-jti:{}",
        crate::random::base64url(ctx.finish().as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_parsing() {
        assert_eq!(logout_token(b"logout_token=a.b.c").unwrap(), "a.b.c");
        assert_eq!(
            logout_token(b"x=1&logout_token=a.b-_c&y").unwrap(),
            "a.b-_c"
        );
        assert_eq!(logout_token(b"logout_token=a%2Eb").unwrap(), "a.b");
        assert!(logout_token(b"logout_token=a&logout_token=b").is_err());
        assert!(logout_token(b"logout_token=").is_err());
        assert!(logout_token(b"token=a.b.c").is_err());
        assert!(logout_token(b"logout_token=a%20b").is_err());
        assert!(logout_token(b"logout_token=<script>").is_err());
        assert!(logout_token(b"").is_err());
        assert!(logout_token(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn replay_keys_are_fixed_length_and_distinct() {
        let a = replay_key("https://idp", "j1");
        assert_eq!(a.len(), replay_key("https://idp", &"x".repeat(200)).len());
        assert_ne!(a, replay_key("https://idp", "j2"));
        assert_ne!(a, replay_key("https://other", "j1"));
        // The separator keeps (iss, jti) pairs apart.
        assert_ne!(replay_key("ab", "c"), replay_key("a", "bc"));
    }
}

//! Logout token validation (OpenID Connect Back-Channel Logout 1.0, §2.4 and §2.6).
//!
//! A logout token is a JWT the identity provider posts to the back-channel logout endpoint. It
//! is accepted only when all of these hold:
//! - it is signed with one of the provider's keys (the JWKS, refetched once on an unknown `kid`),
//!   with an asymmetric algorithm (`none` and the HMAC family are refused);
//! - its `typ`, when present, is `logout+jwt` (or `application/logout+jwt`) or plain `JWT`;
//! - `iss` is the provider's issuer and `aud` is this client (and no one else);
//! - `iat` is present, not in the future and at most [`MAX_LOGOUT_TOKEN_AGE`] old (each with the
//!   clock leeway); `exp` and `nbf`, when present, hold;
//! - `events` is an object with the member `http://schemas.openid.net/event/backchannel-logout`,
//!   itself an object;
//! - `sid` or `sub` is present (non-empty strings), `jti` is present, and `nonce` is absent.
//!
//! Replay (a `jti` seen before) is checked by the endpoint, through the verifier cache, so that
//! it holds across instances.

use jsonwebtoken::Header;
use serde_json::{Map, Value};

use super::id_token::{SignatureError, numeric_date, verify_signature};
use super::jwks::JwksCache;
use crate::error::SsoError;

/// The event a logout token must carry.
pub(crate) const BACKCHANNEL_LOGOUT_EVENT: &str =
    "http://schemas.openid.net/event/backchannel-logout";

/// How old a logout token may be (its `iat`), in seconds, before the clock leeway: a provider
/// posts it as the session ends.
pub(crate) const MAX_LOGOUT_TOKEN_AGE: u64 = 300;

/// The longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;

/// What a logout token must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogoutCheck<'a> {
    /// The provider's issuer: `iss` must equal it. `None` only for providers configured
    /// without an issuer: then `iss` must merely be present.
    pub(crate) issuer: Option<&'a str>,
    /// This client: `aud` must be it.
    pub(crate) client_id: &'a str,
    /// Now, in seconds since the Unix epoch.
    pub(crate) now: u64,
    /// Clock-skew allowance, in seconds.
    pub(crate) leeway: u64,
}

/// What a valid logout token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogoutToken {
    /// The issuer.
    pub(crate) iss: String,
    /// The token id (for the replay check).
    pub(crate) jti: String,
    /// The provider's session id, if given.
    pub(crate) sid: Option<String>,
    /// The user's subject, if given.
    pub(crate) sub: Option<String>,
}

/// Why a logout token was refused.
#[derive(Debug)]
pub(crate) enum LogoutTokenError {
    /// The token is not valid, for this reason (which never quotes the token).
    Invalid(&'static str),
    /// The provider's keys could not be fetched.
    Unavailable(SsoError),
}

/// Verifies a logout token: signature, then every claim (see the module docs).
pub(crate) async fn verify_logout_token(
    jwks: &JwksCache,
    token: &str,
    check: &LogoutCheck<'_>,
) -> Result<LogoutToken, LogoutTokenError> {
    let (header, claims) = verify_signature(jwks, token).await.map_err(|e| match e {
        SignatureError::Rejected(reason) => LogoutTokenError::Invalid(reason),
        SignatureError::Unavailable(e) => LogoutTokenError::Unavailable(e),
    })?;
    check_logout_claims(&header, &claims, check).map_err(LogoutTokenError::Invalid)
}

/// A non-empty string claim; `Err` when present but not one.
fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
    malformed: &'static str,
) -> Result<Option<&'a str>, &'static str> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
        Some(_) => Err(malformed),
    }
}

/// Back-Channel Logout 1.0 §2.6 steps 3–5 (and §2.4) on claims whose signature was verified.
fn check_logout_claims(
    header: &Header,
    claims: &Map<String, Value>,
    check: &LogoutCheck<'_>,
) -> Result<LogoutToken, &'static str> {
    // Explicit typing (§2.4): a token typed as something else is another kind of token.
    if let Some(typ) = header.typ.as_deref() {
        let typ = typ.to_ascii_lowercase();
        if !matches!(
            typ.as_str(),
            "jwt" | "logout+jwt" | "application/logout+jwt"
        ) {
            return Err("unexpected token type");
        }
    }

    let iss = match claims.get("iss") {
        Some(Value::String(iss)) if check.issuer.is_none_or(|expected| iss == expected) => {
            iss.clone()
        }
        None | Some(Value::Null) => return Err("missing iss"),
        Some(_) => return Err("issuer mismatch"),
    };

    match claims.get("aud") {
        None | Some(Value::Null) => return Err("missing aud"),
        Some(Value::String(a)) if a == check.client_id => {}
        Some(Value::Array(list))
            if !list.is_empty() && list.iter().all(|a| a.as_str() == Some(check.client_id)) => {}
        Some(_) => return Err("audience mismatch"),
    }

    let iat = claims.get("iat").ok_or("missing iat")?;
    let iat = numeric_date(iat).ok_or("malformed iat")?;
    if iat > check.now.saturating_add(check.leeway) {
        return Err("issued in the future");
    }
    if check.now.saturating_sub(iat) > MAX_LOGOUT_TOKEN_AGE.saturating_add(check.leeway) {
        return Err("issued too long ago");
    }
    if let Some(exp) = claims.get("exp").filter(|v| !v.is_null()) {
        let exp = numeric_date(exp).ok_or("malformed exp")?;
        if check.now >= exp.saturating_add(check.leeway) {
            return Err("expired");
        }
    }
    if let Some(nbf) = claims.get("nbf").filter(|v| !v.is_null()) {
        let nbf = numeric_date(nbf).ok_or("malformed nbf")?;
        if nbf > check.now.saturating_add(check.leeway) {
            return Err("not yet valid");
        }
    }

    match claims.get("events") {
        Some(Value::Object(events)) => match events.get(BACKCHANNEL_LOGOUT_EVENT) {
            Some(Value::Object(_)) => {}
            Some(_) => return Err("the back-channel logout event is not an object"),
            None => return Err("no back-channel logout event"),
        },
        None | Some(Value::Null) => return Err("missing events"),
        Some(_) => return Err("events is not an object"),
    }

    // A logout token is no id_token: one carrying a nonce may be an id_token replayed here.
    if claims.contains_key("nonce") {
        return Err("nonce present");
    }

    let sid = string_claim(claims, "sid", "malformed sid")?;
    let sub = string_claim(claims, "sub", "malformed sub")?;
    if sid.is_none() && sub.is_none() {
        return Err("neither sid nor sub");
    }
    let jti = string_claim(claims, "jti", "malformed jti")?.ok_or("missing jti")?;
    if jti.len() > MAX_JTI_LEN {
        return Err("malformed jti");
    }

    Ok(LogoutToken {
        iss,
        jti: jti.to_owned(),
        sid: sid.map(str::to_owned),
        sub: sub.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey};
    use serde_json::json;

    use super::*;
    use crate::oidc::test_support::{Fixture, TestKey, fixture};

    const ISS: &str = "https://idp.example.com";
    const CID: &str = "client-123";

    fn check(now: u64) -> LogoutCheck<'static> {
        LogoutCheck {
            issuer: Some(ISS),
            client_id: CID,
            now,
            leeway: 60,
        }
    }

    fn claims(now: u64) -> Value {
        json!({
            "iss": ISS, "aud": CID, "iat": now - 5, "exp": now + 115, "jti": "jti-1",
            "sid": "sid-1", "sub": "user-1",
            "events": { BACKCHANNEL_LOGOUT_EVENT: {} }
        })
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base[key] = value;
        base
    }

    fn without(mut base: Value, key: &str) -> Value {
        base.as_object_mut().unwrap().remove(key);
        base
    }

    /// Signed with `typ: logout+jwt`, as the spec recommends.
    fn sign_typed(key: &TestKey, claims: &Value, typ: &str) -> String {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(key.kid.clone());
        h.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&h, claims, &key.encoding).unwrap()
    }

    async fn reason(f: &Fixture, token: &str) -> &'static str {
        match verify_logout_token(&f.jwks, token, &check(f.now)).await {
            Err(LogoutTokenError::Invalid(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn valid_tokens_accepted() {
        let f = fixture();
        let t = sign_typed(&f.key, &claims(f.now), "logout+jwt");
        let got = verify_logout_token(&f.jwks, &t, &check(f.now))
            .await
            .unwrap();
        assert_eq!(
            got,
            LogoutToken {
                iss: ISS.into(),
                jti: "jti-1".into(),
                sid: Some("sid-1".into()),
                sub: Some("user-1".into()),
            }
        );
        // Plain JWT, no exp, only sid; aud as a one-element array; only sub.
        for c in [
            without(without(claims(f.now), "exp"), "sub"),
            with(claims(f.now), "aud", json!([CID])),
            without(claims(f.now), "sid"),
        ] {
            let t = f.key.sign(&c);
            verify_logout_token(&f.jwks, &t, &check(f.now))
                .await
                .unwrap();
        }
        let t = sign_typed(&f.key, &claims(f.now), "application/logout+jwt");
        verify_logout_token(&f.jwks, &t, &check(f.now))
            .await
            .unwrap();
        assert_eq!(f.rec.count(), 1);
    }

    #[tokio::test]
    async fn malformed_logout_tokens_refused() {
        let f = fixture();
        let now = f.now;
        let event = json!({ BACKCHANNEL_LOGOUT_EVENT: {} });
        let cases: Vec<(Value, &str)> = vec![
            (
                with(claims(now), "iss", json!("https://evil.example")),
                "issuer mismatch",
            ),
            (without(claims(now), "iss"), "missing iss"),
            (
                with(claims(now), "aud", json!("other-client")),
                "audience mismatch",
            ),
            (
                with(claims(now), "aud", json!([CID, "other"])),
                "audience mismatch",
            ),
            (without(claims(now), "aud"), "missing aud"),
            (without(claims(now), "events"), "missing events"),
            (
                with(
                    claims(now),
                    "events",
                    json!({"http://schemas.openid.net/event/other": {}}),
                ),
                "no back-channel logout event",
            ),
            (
                with(
                    claims(now),
                    "events",
                    json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" }),
                ),
                "the back-channel logout event is not an object",
            ),
            (
                with(claims(now), "events", json!([BACKCHANNEL_LOGOUT_EVENT])),
                "events is not an object",
            ),
            (with(claims(now), "nonce", json!("n-1")), "nonce present"),
            (
                without(without(claims(now), "sid"), "sub"),
                "neither sid nor sub",
            ),
            (
                with(without(claims(now), "sid"), "sub", json!("")),
                "malformed sub",
            ),
            (with(claims(now), "sid", json!(42)), "malformed sid"),
            (without(claims(now), "jti"), "missing jti"),
            (
                with(claims(now), "jti", json!("x".repeat(300))),
                "malformed jti",
            ),
            (without(claims(now), "iat"), "missing iat"),
            (
                with(claims(now), "iat", json!("yesterday")),
                "malformed iat",
            ),
            (
                with(claims(now), "iat", json!(now + 3600)),
                "issued in the future",
            ),
            (
                with(claims(now), "iat", json!(now - 3600)),
                "issued too long ago",
            ),
            (with(claims(now), "exp", json!(now - 120)), "expired"),
            (with(claims(now), "nbf", json!(now + 3600)), "not yet valid"),
            (
                with(with(claims(now), "events", event.clone()), "aud", json!([])),
                "audience mismatch",
            ),
        ];
        for (c, expected) in cases {
            let t = f.key.sign(&c);
            assert_eq!(reason(&f, &t).await, expected, "{c}");
        }
        // Another token type.
        let t = sign_typed(&f.key, &claims(now), "at+jwt");
        assert_eq!(reason(&f, &t).await, "unexpected token type");
    }

    #[tokio::test]
    async fn bad_signatures_and_algorithms_refused() {
        let f = fixture();
        let good = f.key.sign(&claims(f.now));
        // A corrupted signature.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut sig = parts[2].clone().into_bytes();
        sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
        parts[2] = String::from_utf8(sig).unwrap();
        assert_eq!(reason(&f, &parts.join(".")).await, "bad signature");
        // Signed by someone else's key under our kid.
        let other = TestKey::generate("k1");
        assert_eq!(
            reason(&f, &other.sign(&claims(f.now))).await,
            "bad signature"
        );
        // alg none.
        let none = format!(
            "{}.{}.",
            crate::random::base64url(br#"{"alg":"none","typ":"logout+jwt"}"#),
            good.split('.').nth(1).unwrap()
        );
        assert_eq!(reason(&f, &none).await, "unsigned token (alg none) refused");
        // HS256 keyed with the provider's public key (the classic key-confusion attack).
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let hs = jsonwebtoken::encode(
            &h,
            &claims(f.now),
            &EncodingKey::from_secret(f.key.n.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(reason(&f, &hs).await, "symmetric algorithm refused");
        // Not a JWT at all.
        assert_eq!(reason(&f, "not-a-token").await, "malformed token");
        assert_eq!(reason(&f, "").await, "malformed token");
        // An unknown kid: the keys are fetched again (once), then refused.
        let stranger = TestKey::generate("k9");
        assert_eq!(
            reason(&f, &stranger.sign(&claims(f.now))).await,
            "unknown signing key"
        );
    }
}

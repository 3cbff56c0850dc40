//! ID token validation (OpenID Connect Core 1.0 §3.1.3.7, errata set 2).

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use crate::error::SsoError;

/// The signature algorithms an ID token may use: asymmetric only. `none` and the HMAC family
/// (whose key would be the client secret) are refused.
pub(crate) const ALLOWED_ALGORITHMS: &[Algorithm] = &[
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

/// How old an ID token may be (its `iat`), in seconds.
pub(crate) const MAX_TOKEN_AGE: u64 = 24 * 60 * 60;

/// Default clock-skew allowance, in seconds.
pub(crate) const DEFAULT_LEEWAY: u64 = 60;

/// What an ID token must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdTokenCheck<'a> {
    /// The provider's issuer: `iss` must equal it exactly. `None` only for providers configured
    /// without an issuer (explicit endpoints): then `iss` must merely be present.
    pub(crate) issuer: Option<&'a str>,
    /// This client: `aud` must contain it (and `azp`, when present, must equal it).
    pub(crate) client_id: &'a str,
    /// The nonce sent in the authorization request; when set, the token must carry it.
    pub(crate) nonce: Option<&'a str>,
    /// Now, in seconds since the Unix epoch.
    pub(crate) now: u64,
    /// Clock-skew allowance for `exp`, `iat` and `nbf`, in seconds ([`DEFAULT_LEEWAY`]).
    pub(crate) leeway: u64,
}

/// Checks the claims of an id_token whose signature cannot be checked (no JWKS is configured):
/// OIDC Core 3.1.3.7 lets TLS stand in for the signature of a token that came straight from the
/// token endpoint, but every other step still applies.
pub(crate) fn check_unverified_id_token(
    token: &str,
    check: &IdTokenCheck<'_>,
) -> Result<Map<String, Value>, SsoError> {
    let claims = crate::claims::decode_jwt_payload_unverified(token)
        .ok_or_else(|| rejected("malformed token"))?;
    check_claims(&claims, check)?;
    Ok(claims)
}

/// The 401 every ID token rejection becomes: `id_token rejected: <reason>`.
pub(crate) fn rejected(reason: &str) -> SsoError {
    SsoError::unauthorized(format!("{REJECTED_PREFIX}{reason}"))
}

/// Verifies `token` (signature with the provider's keys, then the claims) and returns its
/// claims.
///
/// Errors: 401 `id_token rejected: <reason>` (the reason never quotes the token); 502 when the
/// provider's keys could not be fetched.
pub(crate) async fn verify_id_token(
    jwks: &JwksCache,
    token: &str,
    check: &IdTokenCheck<'_>,
) -> Result<Map<String, Value>, SsoError> {
    let (header, claims) = verify_signature(jwks, token).await.map_err(|e| match e {
        SignatureError::Rejected(reason) => rejected(reason),
        SignatureError::Unavailable(e) => e,
    })?;
    check_claims(&claims, check)?;
    // One event per verified id_token (the algorithm only: never the token or its claims), so
    // an operator, and `tests/login_cost.rs`, can see how often logins pay for a verification.
    tracing::debug!(alg = ?header.alg, "id_token verified");
    Ok(claims)
}

/// Why a token's signature was not accepted.
#[derive(Debug)]
pub(crate) enum SignatureError {
    /// Refused, for this reason (which never quotes the token).
    Rejected(&'static str),
    /// The provider's keys could not be fetched (502).
    Unavailable(SsoError),
}

/// Verifies the signature of `token` with the provider's keys (refetched once, rate limited,
/// on an unknown `kid`), allowing only [`ALLOWED_ALGORITHMS`]; returns its header and claims,
/// none of which is checked yet.
pub(crate) async fn verify_signature(
    jwks: &JwksCache,
    token: &str,
) -> Result<(jsonwebtoken::Header, Map<String, Value>), SignatureError> {
    use SignatureError::Rejected;
    // jsonwebtoken cannot parse `alg: none` (or names it does not know) into a header, so the
    // raw `alg` is read first to give a precise reason.
    match raw_alg(token).as_deref() {
        None => return Err(Rejected("malformed token")),
        Some(alg) if alg.eq_ignore_ascii_case("none") => {
            return Err(Rejected("unsigned token (alg none) refused"));
        }
        Some(alg) if alg.starts_with("HS") => return Err(Rejected("symmetric algorithm refused")),
        Some(_) => {}
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| Rejected("algorithm not allowed or malformed header"))?;
    if !ALLOWED_ALGORITHMS.contains(&header.alg) {
        return Err(Rejected("algorithm not allowed"));
    }
    let (key, alg) = jwks.decoding_key(&header).await.map_err(|e| {
        // The key cache answers in id_token terms: keep only the reason of a refusal.
        match e.message().strip_prefix(REJECTED_PREFIX) {
            Some(_) if e.status() == http::StatusCode::UNAUTHORIZED => {
                Rejected(key_refusal(e.message()))
            }
            _ => SignatureError::Unavailable(e),
        }
    })?;

    // Signature and algorithm only: jsonwebtoken checks times against the system clock with
    // its own leeway, and requires only `exp`, so every claim is checked by the caller.
    let mut validation = Validation::new(alg);
    validation.required_spec_claims = HashSet::new();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
            Rejected(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                    "signing key does not match the algorithm"
                }
                _ => "malformed token",
            })
        })?;
    Ok((header, data.claims))
}

const REJECTED_PREFIX: &str = "id_token rejected: ";

/// The reasons the key cache refuses a token with, as static text.
fn key_refusal(message: &str) -> &'static str {
    match message.strip_prefix(REJECTED_PREFIX) {
        Some("algorithm not allowed") => "algorithm not allowed",
        Some("unknown signing key") => "unknown signing key",
        Some("no kid and several signing keys fit") => "no kid and several signing keys fit",
        _ => "no usable signing key",
    }
}

/// The header's `alg`, read without any validation; `None` if the header is not readable.
fn raw_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

/// A NumericDate: a non-negative JSON number (fractions are rounded down).
pub(crate) fn numeric_date(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // Truncation is intended; the range is checked first.
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// OIDC Core §3.1.3.7 steps 2–5 and 9–11, on verified claims.
fn check_claims(claims: &Map<String, Value>, check: &IdTokenCheck<'_>) -> Result<(), SsoError> {
    // Step 2: iss, exact string comparison.
    match claims.get("iss") {
        None | Some(Value::Null) => return Err(rejected("missing iss")),
        Some(Value::String(iss)) if check.issuer.is_none_or(|expected| iss == expected) => {}
        Some(_) => return Err(rejected("issuer mismatch")),
    }

    // Step 3: aud contains client_id; several audiences need azp == client_id.
    let auds: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => return Err(rejected("missing aud")),
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for a in list {
                out.push(a.as_str().ok_or_else(|| rejected("audience mismatch"))?);
            }
            out
        }
        Some(_) => return Err(rejected("audience mismatch")),
    };
    if !auds.contains(&check.client_id) {
        return Err(rejected("audience mismatch"));
    }
    // No other audience is trusted: a token also meant for someone else is refused, whatever
    // its azp says (Core 3.1.3.7 step 3; conformance `invalid-secondary-aud`).
    if auds.iter().any(|a| *a != check.client_id) {
        return Err(rejected("untrusted extra audience"));
    }
    // Steps 4-5: azp, when present, is this client.
    match claims.get("azp") {
        None | Some(Value::Null) => {}
        Some(Value::String(azp)) if azp == check.client_id => {}
        Some(_) => return Err(rejected("azp mismatch")),
    }

    // Step 9: exp.
    let exp = claims.get("exp").ok_or_else(|| rejected("missing exp"))?;
    let exp = numeric_date(exp).ok_or_else(|| rejected("malformed exp"))?;
    if check.now >= exp.saturating_add(check.leeway) {
        return Err(rejected("expired"));
    }

    // Step 10: iat, required, not in the future, not too old.
    let iat = claims.get("iat").ok_or_else(|| rejected("missing iat"))?;
    let iat = numeric_date(iat).ok_or_else(|| rejected("malformed iat"))?;
    if iat > check.now.saturating_add(check.leeway) {
        return Err(rejected("issued in the future"));
    }
    if check.now.saturating_sub(iat) > MAX_TOKEN_AGE.saturating_add(check.leeway) {
        return Err(rejected("issued too long ago"));
    }

    // nbf, when present (RFC 7519 §4.1.5).
    if let Some(nbf) = claims.get("nbf").filter(|v| !v.is_null()) {
        let nbf = numeric_date(nbf).ok_or_else(|| rejected("malformed nbf"))?;
        if nbf > check.now.saturating_add(check.leeway) {
            return Err(rejected("not yet valid"));
        }
    }

    // sub: required, non-empty (Core §2).
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(rejected("missing sub")),
    }

    // Step 11: nonce, compared in constant time.
    if let Some(expected) = check.nonce {
        match claims.get("nonce") {
            Some(Value::String(got)) => {
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    got.as_bytes(),
                    expected.as_bytes(),
                )
                .map_err(|_| rejected("nonce mismatch"))?;
            }
            _ => return Err(rejected("missing nonce")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::clock::Clock;
    use crate::oidc::test_support::{Fixture, TestKey, fixed, fixture, jwks_body, mock_client};

    const ISS: &str = "https://idp.example.com";
    const CID: &str = "client-123";
    const NONCE: &str = "n-0S6_WzA2Mj";

    fn check(now: u64) -> IdTokenCheck<'static> {
        IdTokenCheck {
            issuer: Some(ISS),
            client_id: CID,
            nonce: Some(NONCE),
            now,
            leeway: DEFAULT_LEEWAY,
        }
    }

    fn claims(now: u64) -> Value {
        json!({
            "iss": ISS, "aud": CID, "sub": "user-1", "exp": now + 300, "iat": now - 10,
            "nonce": NONCE, "email": "u@example.com"
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

    async fn expect_reject(f: &Fixture, token: &str, check: &IdTokenCheck<'_>, reason: &str) {
        let err = verify_id_token(&f.jwks, token, check).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.message(), format!("id_token rejected: {reason}"));
        if token.len() > 16 {
            assert!(!err.message().contains(token));
        }
    }

    #[tokio::test]
    async fn valid_token_accepted() {
        let f = fixture();
        let token = f.key.sign(&claims(f.now));
        let c = verify_id_token(&f.jwks, &token, &check(f.now))
            .await
            .unwrap();
        assert_eq!(c["sub"], "user-1");
        assert_eq!(c["email"], "u@example.com");
        // aud as an array with only this client, and azp equal to it.
        let t = f.key.sign(&with(
            with(claims(f.now), "aud", json!([CID])),
            "azp",
            json!(CID),
        ));
        verify_id_token(&f.jwks, &t, &check(f.now)).await.unwrap();
        // No nonce expected: a token without one is fine.
        let t = f.key.sign(&without(claims(f.now), "nonce"));
        verify_id_token(
            &f.jwks,
            &t,
            &IdTokenCheck {
                nonce: None,
                ..check(f.now)
            },
        )
        .await
        .unwrap();
        // Expired 30 s ago: within the 60 s leeway.
        let t = f.key.sign(&with(claims(f.now), "exp", json!(f.now - 30)));
        verify_id_token(&f.jwks, &t, &check(f.now)).await.unwrap();
        assert_eq!(f.rec.count(), 1);
    }

    #[tokio::test]
    async fn claim_failures() {
        let f = fixture();
        let now = f.now;
        let cases: Vec<(Value, &str)> = vec![
            (
                with(claims(now), "iss", json!("https://evil.example.com")),
                "issuer mismatch",
            ),
            (
                with(claims(now), "iss", json!("https://idp.example.com/")),
                "issuer mismatch",
            ),
            (without(claims(now), "iss"), "missing iss"),
            (
                with(claims(now), "aud", json!("someone-else")),
                "audience mismatch",
            ),
            (
                with(claims(now), "aud", json!(["someone-else"])),
                "audience mismatch",
            ),
            (without(claims(now), "aud"), "missing aud"),
            (
                with(claims(now), "aud", json!([CID, "untrusted"])),
                "untrusted extra audience",
            ),
            (
                with(
                    with(claims(now), "aud", json!([CID, "untrusted"])),
                    "azp",
                    json!(CID),
                ),
                "untrusted extra audience",
            ),
            (with(claims(now), "azp", json!("other")), "azp mismatch"),
            (with(claims(now), "exp", json!(now - 61)), "expired"),
            (without(claims(now), "exp"), "missing exp"),
            (with(claims(now), "exp", json!("tomorrow")), "malformed exp"),
            (without(claims(now), "iat"), "missing iat"),
            (
                with(claims(now), "iat", json!(now + 120)),
                "issued in the future",
            ),
            (
                with(claims(now), "iat", json!(now - 7 * 24 * 3600)),
                "issued too long ago",
            ),
            (with(claims(now), "nbf", json!(now + 600)), "not yet valid"),
            (without(claims(now), "sub"), "missing sub"),
            (with(claims(now), "sub", json!("")), "missing sub"),
            (with(claims(now), "sub", json!(42)), "missing sub"),
            (
                with(claims(now), "nonce", json!("n-other")),
                "nonce mismatch",
            ),
            (without(claims(now), "nonce"), "missing nonce"),
        ];
        for (c, reason) in cases {
            let token = f.key.sign(&c);
            expect_reject(&f, &token, &check(now), reason).await;
        }
        // The clock is the check's, not the system's: a token valid now is expired later.
        let token = f.key.sign(&claims(now));
        expect_reject(&f, &token, &check(now + 3600), "expired").await;
    }

    #[tokio::test]
    async fn alg_none_refused() {
        let f = fixture();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims(f.now).to_string());
        let token = format!("{h}.{p}.");
        expect_reject(
            &f,
            &token,
            &check(f.now),
            "unsigned token (alg none) refused",
        )
        .await;
        assert_eq!(f.rec.count(), 0, "no JWKS fetch for a refused alg");
    }

    #[tokio::test]
    async fn hs256_refused() {
        let f = fixture();
        // Signed with a secret (for example the client secret, in an alg-confusion attempt).
        let key = EncodingKey::from_secret(b"client-secret").unwrap();
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(f.now), &key).unwrap();
        expect_reject(&f, &token, &check(f.now), "symmetric algorithm refused").await;
        // Even when the JWKS publishes a symmetric key with that kid.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("sym".into());
        let token = jsonwebtoken::encode(&h, &claims(f.now), &key).unwrap();
        expect_reject(&f, &token, &check(f.now), "symmetric algorithm refused").await;
        assert_eq!(f.rec.count(), 0);
    }

    #[tokio::test]
    async fn bad_signature_rejected() {
        let f = fixture();
        let token = f.key.sign(&claims(f.now));
        let (head, sig) = token.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[10] ^= 0x01;
        let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&sig));
        expect_reject(&f, &tampered, &check(f.now), "bad signature").await;
        // Payload swapped under a valid signature.
        let parts: Vec<&str> = token.split('.').collect();
        let evil = URL_SAFE_NO_PAD.encode(with(claims(f.now), "sub", json!("admin")).to_string());
        let swapped = format!("{}.{}.{}", parts[0], evil, parts[2]);
        expect_reject(&f, &swapped, &check(f.now), "bad signature").await;
        // Signed by a key with the right kid that is not the provider's.
        let impostor = TestKey::generate("k1");
        let token = impostor.sign(&claims(f.now));
        expect_reject(&f, &token, &check(f.now), "bad signature").await;
    }

    #[tokio::test]
    async fn malformed_tokens() {
        let f = fixture();
        for t in ["", "abc", "a.b", "....", "e30.e30.e30"] {
            expect_reject(&f, t, &check(f.now), "malformed token").await;
        }
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES512"}"#);
        let token = format!("{h}.e30.c2ln");
        expect_reject(
            &f,
            &token,
            &check(f.now),
            "algorithm not allowed or malformed header",
        )
        .await;
    }

    #[tokio::test]
    async fn unknown_kid_then_rotated_key_accepted() {
        let k1 = TestKey::generate("k1");
        let k2 = TestKey::generate("k2");
        let body = std::sync::Arc::new(std::sync::Mutex::new(jwks_body(&[k1.jwk()])));
        let b = body.clone();
        let (http, rec) = mock_client(Duration::ZERO, move |_| {
            Ok((200, b.lock().unwrap().clone()))
        });
        let clock = Clock::manual();
        let now = clock.now();
        let jwks = JwksCache::new(http, "https://idp.example.com/jwks".into(), clock);
        verify_id_token(&jwks, &k1.sign(&claims(now)), &check(now))
            .await
            .unwrap();
        *body.lock().unwrap() = jwks_body(&[k2.jwk()]);
        verify_id_token(&jwks, &k2.sign(&claims(now)), &check(now))
            .await
            .unwrap();
        assert_eq!(rec.count(), 2);
        // A retired key's tokens now fail (k1 was rotated out; refetch in cooldown).
        let err = verify_id_token(&jwks, &k1.sign(&claims(now)), &check(now))
            .await
            .unwrap_err();
        assert_eq!(err.message(), "id_token rejected: unknown signing key");
    }

    #[tokio::test]
    async fn kid_absent() {
        let k1 = TestKey::generate("k1");
        let k2 = TestKey::generate("k2");
        let (http, _) = fixed(200, &jwks_body(&[k1.jwk()]));
        let clock = Clock::manual();
        let now = clock.now();
        let jwks = JwksCache::new(http, "https://idp.example.com/jwks".into(), clock.clone());
        verify_id_token(&jwks, &k1.sign_no_kid(&claims(now)), &check(now))
            .await
            .unwrap();
        let (http, _) = fixed(200, &jwks_body(&[k1.jwk(), k2.jwk()]));
        let jwks = JwksCache::new(http, "https://idp.example.com/jwks".into(), clock);
        let err = verify_id_token(&jwks, &k1.sign_no_kid(&claims(now)), &check(now))
            .await
            .unwrap_err();
        assert_eq!(
            err.message(),
            "id_token rejected: no kid and several signing keys fit"
        );
    }

    #[tokio::test]
    async fn es256_token_accepted_and_tampered_one_rejected() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let point = pair.public_key().as_ref();
        assert_eq!((point.len(), point[0]), (65, 0x04));
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        let (http, _rec) = fixed(200, &jwks_body(&[jwk]));
        let clock = Clock::manual();
        let now = clock.now();
        let jwks = JwksCache::new(http, "https://idp.example.com/jwks".into(), clock);
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec1".into());
        let token = jsonwebtoken::encode(&h, &claims(now), &encoding).unwrap();
        let got = verify_id_token(&jwks, &token, &check(now)).await.unwrap();
        assert_eq!(got["sub"], "user-1");

        // Another key's signature under the same header: refused.
        let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let other = EncodingKey::from_ec_der(other.to_pkcs8v1().unwrap().as_ref());
        let forged = jsonwebtoken::encode(&h, &claims(now), &other).unwrap();
        let err = verify_id_token(&jwks, &forged, &check(now))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.message(), "id_token rejected: bad signature");
    }
}

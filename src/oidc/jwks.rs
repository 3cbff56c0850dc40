//! The provider's signing keys (JWK Set), fetched lazily and cached.
//!
//! Rotation rules (OIDC Core §10.1.1, with panva/jose's defaults):
//! - the set is cached for [`MAX_AGE`] seconds, then refetched on next use (if that refetch
//!   fails, the old set keeps serving and the next try waits [`COOLDOWN`] seconds);
//! - a token naming an unknown `kid` triggers ONE forced refetch, shared by every request that
//!   misses at the same time (single-flight), and at most one forced refetch per [`COOLDOWN`];
//! - keys the layer cannot use (unknown `kty`, bad members, symmetric, `use` other than `sig`,
//!   an `alg` that is not a signature algorithm) are skipped, not fatal (RFC 7517 §5).

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde_json::Value;

use super::id_token::{ALLOWED_ALGORITHMS, rejected};
use crate::clock::Clock;
use crate::error::SsoError;
use crate::http::HttpClient;

/// How long a fetched key set is used before it is refetched, in seconds.
pub(crate) const MAX_AGE: u64 = 600;
/// Minimum gap between two forced refetches (and between retries after a failed refetch), in
/// seconds.
pub(crate) const COOLDOWN: u64 = 30;

/// The signing keys of one provider. Cheap to clone: clones share the cache.
#[derive(Clone)]
pub(crate) struct JwksCache {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    jwks_uri: String,
    clock: Clock,
    state: RwLock<State>,
    /// Held while fetching: concurrent refreshes wait here and then reuse the result.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<[Key]>>,
    /// When `keys` was fetched.
    fetched_at: u64,
    /// When the last fetch (successful or not) ended.
    last_attempt: Option<u64>,
    /// When the last refetch forced by an unknown key started.
    last_forced: Option<u64>,
    /// Bumped after every fetch attempt, so waiters can tell that someone else fetched.
    generation: u64,
}

/// One usable verification key.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    /// The JWK's `alg`, when it named one.
    pub(crate) alg: Option<Algorithm>,
    /// For EC keys: the curve, which fixes the algorithm.
    pub(crate) curve: Option<EllipticCurve>,
    pub(crate) family: jsonwebtoken::AlgorithmFamily,
    key: DecodingKey,
}

pub(crate) enum Lookup<'a> {
    Found(&'a Key),
    NotFound,
    /// No `kid` in the token and several keys fit its `alg`.
    Ambiguous,
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.read();
        f.debug_struct("JwksCache")
            .field("jwks_uri", &self.inner.jwks_uri)
            .field("keys", &st.keys.as_ref().map(|k| k.len()))
            .field("fetched_at", &st.fetched_at)
            .finish()
    }
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl JwksCache {
    /// A cache for the key set at `jwks_uri`; nothing is fetched until first use.
    pub(crate) fn new(http: HttpClient, jwks_uri: String, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                jwks_uri,
                clock,
                state: RwLock::new(State::default()),
                refresh: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Readiness: fetches the key set if it was never fetched (or is due), and fails if no key
    /// set is available.
    pub(crate) async fn ping(&self) -> Result<(), SsoError> {
        self.current().await.map(|_| ())
    }

    /// The key to verify a token with this header, and the algorithm to verify it with.
    ///
    /// Errors: 401 `id_token rejected: ...` when the algorithm is not an allowed asymmetric one
    /// or no (single) key fits; 502 when the key set was never fetched successfully.
    pub(crate) async fn decoding_key(
        &self,
        header: &Header,
    ) -> Result<(DecodingKey, Algorithm), SsoError> {
        let alg = header.alg;
        if !ALLOWED_ALGORITHMS.contains(&alg) {
            return Err(rejected("algorithm not allowed"));
        }
        let kid = header.kid.as_deref();
        let (keys, generation) = self.current().await?;
        match lookup(&keys, kid, alg) {
            Lookup::Found(k) => return Ok((k.key.clone(), alg)),
            Lookup::Ambiguous => return Err(ambiguous()),
            Lookup::NotFound => {}
        }
        let Some(keys) = self.refresh_for_miss(generation).await else {
            return Err(rejected("unknown signing key"));
        };
        match lookup(&keys, kid, alg) {
            Lookup::Found(k) => Ok((k.key.clone(), alg)),
            Lookup::Ambiguous => Err(ambiguous()),
            Lookup::NotFound => Err(rejected("unknown signing key")),
        }
    }

    /// The cached keys (fetching them if there are none or they are older than [`MAX_AGE`]) and
    /// the generation they belong to.
    async fn current(&self) -> Result<(Arc<[Key]>, u64), SsoError> {
        if let Some(fresh) = self.fresh_enough() {
            return Ok(fresh);
        }
        let _guard = self.inner.refresh.lock().await;
        // Someone else may have fetched while this task waited for the lock.
        if let Some(fresh) = self.fresh_enough() {
            return Ok(fresh);
        }
        let result = self.fetch_locked().await;
        let st = self.inner.read();
        match (&st.keys, result) {
            (Some(keys), Ok(())) => Ok((keys.clone(), st.generation)),
            (Some(keys), Err(e)) => {
                tracing::warn!(error = %e, "tower-sso: JWKS refresh failed; using the previous key set");
                Ok((keys.clone(), st.generation))
            }
            (None, Err(e)) => Err(e),
            (None, Ok(())) => Err(SsoError::internal("signing key cache is empty")),
        }
    }

    /// The cached keys if they are young enough, or if a refresh failed less than a cooldown ago.
    fn fresh_enough(&self) -> Option<(Arc<[Key]>, u64)> {
        let now = self.inner.clock.now();
        let st = self.inner.read();
        let keys = st.keys.as_ref()?;
        let young = now.saturating_sub(st.fetched_at) < MAX_AGE;
        let retried_recently = st
            .last_attempt
            .is_some_and(|t| now.saturating_sub(t) < COOLDOWN);
        (young || retried_recently).then(|| (keys.clone(), st.generation))
    }

    /// After a miss in generation `seen`: the keys of a newer generation if someone fetched in
    /// the meantime, else the result of one forced refetch unless the cooldown forbids it
    /// (`None`: nothing new to look at).
    async fn refresh_for_miss(&self, seen: u64) -> Option<Arc<[Key]>> {
        let _guard = self.inner.refresh.lock().await;
        let now = self.inner.clock.now();
        {
            let mut st = self.inner.write();
            if st.generation != seen {
                return st.keys.clone();
            }
            if st
                .last_forced
                .is_some_and(|t| now.saturating_sub(t) < COOLDOWN)
            {
                tracing::debug!("tower-sso: unknown signing key, JWKS refetch in cooldown");
                return None;
            }
            st.last_forced = Some(now);
        }
        if let Err(e) = self.fetch_locked().await {
            tracing::warn!(error = %e, "tower-sso: JWKS refetch for an unknown key failed");
            return None;
        }
        self.inner.read().keys.clone()
    }

    /// Fetches the key set and stores it. The caller holds the refresh lock.
    async fn fetch_locked(&self) -> Result<(), SsoError> {
        let result = self.fetch().await;
        let now = self.inner.clock.now();
        let mut st = self.inner.write();
        st.generation = st.generation.wrapping_add(1);
        st.last_attempt = Some(now);
        let keys = result?;
        st.keys = Some(keys);
        st.fetched_at = now;
        Ok(())
    }

    async fn fetch(&self) -> Result<Arc<[Key]>, SsoError> {
        let req = super::get_json_request(&self.inner.jwks_uri, None).ok_or_else(|| {
            SsoError::unavailable("could not fetch the signing keys: jwks_uri is not a valid URL")
        })?;
        let res = super::send(&self.inner.http, crate::metrics::IdpEndpoint::Jwks, req)
            .await
            .map_err(|e| super::transport_error("could not fetch the signing keys", &e))?;
        if res.status() != http::StatusCode::OK {
            return Err(SsoError::bad_gateway(format!(
                "could not fetch the signing keys: the identity provider answered HTTP {}",
                res.status().as_u16()
            )));
        }
        parse_key_set(res.body())
    }
}

/// The usable signature-verification keys of a JWK Set document (`{"keys": [...]}`); unusable
/// keys are skipped. 502 when the document is not a JWK set.
pub(crate) fn parse_key_set(body: &[u8]) -> Result<Arc<[Key]>, SsoError> {
    let not_a_set =
        || SsoError::bad_gateway("could not fetch the signing keys: the answer is not a JWK set");
    let value: Value = serde_json::from_slice(body).map_err(|_| not_a_set())?;
    let Some(Value::Array(raw)) = value.get("keys") else {
        return Err(not_a_set());
    };
    let keys: Vec<Key> = raw.iter().filter_map(parse_key).collect();
    if keys.len() != raw.len() {
        tracing::debug!(
            skipped = raw.len() - keys.len(),
            "tower-sso: skipped unusable keys in the JWKS"
        );
    }
    if keys.is_empty() {
        tracing::warn!("tower-sso: the JWKS has no usable signing key");
    }
    Ok(keys.into())
}

fn ambiguous() -> SsoError {
    rejected("no kid and several signing keys fit")
}

/// A usable signature-verification key, or `None` to skip this JWK.
fn parse_key(value: &Value) -> Option<Key> {
    if value.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    if let Some(ops) = value.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"));
        if !verify {
            return None;
        }
    }
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(signature_alg(a)?),
    };
    let kid = jwk.common.key_id.clone();
    let (family, curve, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => (
            jsonwebtoken::AlgorithmFamily::Rsa,
            None,
            DecodingKey::from_rsa_components(&p.n, &p.e).ok()?,
        ),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 | EllipticCurve::P384 => (
                jsonwebtoken::AlgorithmFamily::Ec,
                Some(p.curve.clone()),
                DecodingKey::from_ec_components(&p.x, &p.y).ok()?,
            ),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => (
                jsonwebtoken::AlgorithmFamily::Ed,
                None,
                DecodingKey::from_ed_components(&p.x).ok()?,
            ),
            _ => return None,
        },
        // Symmetric keys (`oct`) and unknown key types are never used.
        _ => return None,
    };
    Some(Key {
        kid,
        alg,
        curve,
        family,
        key,
    })
}

/// The JWK `alg` as an allowed signature algorithm; `None` for anything else (encryption
/// algorithms, HMAC, unknown names).
fn signature_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    let alg = match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    };
    Some(alg)
}

/// Whether `key` can verify a signature made with `alg`.
pub(crate) fn fits(key: &Key, alg: Algorithm) -> bool {
    if key.family != alg.family() || key.alg.is_some_and(|a| a != alg) {
        return false;
    }
    match (alg, &key.curve) {
        (Algorithm::ES256, Some(c)) => *c == EllipticCurve::P256,
        (Algorithm::ES384, Some(c)) => *c == EllipticCurve::P384,
        _ => true,
    }
}

pub(crate) fn lookup<'a>(keys: &'a [Key], kid: Option<&str>, alg: Algorithm) -> Lookup<'a> {
    match kid {
        Some(kid) => match keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid) && fits(k, alg))
        {
            Some(k) => Lookup::Found(k),
            None => Lookup::NotFound,
        },
        None => {
            let mut candidates = keys.iter().filter(|k| fits(k, alg));
            match (candidates.next(), candidates.next()) {
                (Some(k), None) => Lookup::Found(k),
                (None, _) => Lookup::NotFound,
                (Some(_), Some(_)) => Lookup::Ambiguous,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use http::StatusCode;
    use jsonwebtoken::{Validation, decode};
    use serde_json::json;

    use super::*;
    use crate::oidc::test_support::{TestKey, fixed, jwks_body, mock_client};

    const URI: &str = "https://idp.example.com/jwks";

    fn header(kid: Option<&str>) -> Header {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = kid.map(str::to_owned);
        h
    }

    /// A client serving whatever JWKS body is in the returned cell.
    fn switchable(
        initial: String,
        delay: Duration,
    ) -> (
        HttpClient,
        crate::oidc::test_support::Recorder,
        Arc<Mutex<String>>,
    ) {
        let body = Arc::new(Mutex::new(initial));
        let b = body.clone();
        let (http, rec) = mock_client(delay, move |_| Ok((200, b.lock().unwrap().clone())));
        (http, rec, body)
    }

    #[tokio::test]
    async fn fetches_lazily_and_caches() {
        let k1 = TestKey::generate("k1");
        let (http, rec) = fixed(200, &jwks_body(&[k1.jwk()]));
        let clock = Clock::manual();
        let cache = JwksCache::new(http, URI.into(), clock.clone());
        assert_eq!(rec.count(), 0);
        let (key, alg) = cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert_eq!(alg, Algorithm::RS256);
        assert_eq!(rec.requests()[0].uri(), URI);
        // The returned key verifies the token.
        let token = k1.sign(&json!({"sub": "a", "exp": 4_000_000_000u64}));
        decode::<Value>(&token, &key, &Validation::new(Algorithm::RS256)).unwrap();
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert_eq!(rec.count(), 1);
        // After MAX_AGE the set is refetched.
        clock.advance(MAX_AGE as i64 + 1);
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert_eq!(rec.count(), 2);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_once_and_accepts_rotated_key() {
        let k1 = TestKey::generate("k1");
        let k2 = TestKey::generate("k2");
        let (http, rec, body) = switchable(jwks_body(&[k1.jwk()]), Duration::ZERO);
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert_eq!(rec.count(), 1);
        *body.lock().unwrap() = jwks_body(&[k2.jwk()]);
        cache.decoding_key(&header(Some("k2"))).await.unwrap();
        assert_eq!(rec.count(), 2, "exactly one refetch");
        // A kid that is in neither set: within the cooldown no further fetch.
        let err = cache.decoding_key(&header(Some("k3"))).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.message(), "id_token rejected: unknown signing key");
        assert_eq!(rec.count(), 2);
    }

    #[tokio::test]
    async fn unknown_kid_on_first_fetch_refetches_once() {
        let k1 = TestKey::generate("k1");
        let (http, rec) = fixed(200, &jwks_body(&[k1.jwk()]));
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        let err = cache.decoding_key(&header(Some("nope"))).await.unwrap_err();
        assert_eq!(err.message(), "id_token rejected: unknown signing key");
        assert_eq!(rec.count(), 2, "initial fetch + one forced refetch");
    }

    #[tokio::test]
    async fn cooldown_limits_forced_refetches() {
        let k1 = TestKey::generate("k1");
        let (http, rec) = fixed(200, &jwks_body(&[k1.jwk()]));
        let clock = Clock::manual();
        let cache = JwksCache::new(http, URI.into(), clock.clone());
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert!(cache.decoding_key(&header(Some("x1"))).await.is_err());
        assert_eq!(rec.count(), 2);
        assert!(cache.decoding_key(&header(Some("x2"))).await.is_err());
        clock.advance(COOLDOWN as i64 - 1);
        assert!(cache.decoding_key(&header(Some("x3"))).await.is_err());
        assert_eq!(
            rec.count(),
            2,
            "no second forced refetch within the cooldown"
        );
        clock.advance(2);
        assert!(cache.decoding_key(&header(Some("x4"))).await.is_err());
        assert_eq!(rec.count(), 3, "allowed again after the cooldown");
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let k1 = TestKey::generate("k1");
        let k2 = TestKey::generate("k2");
        let (http, rec, body) = switchable(jwks_body(&[k1.jwk()]), Duration::from_millis(50));
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        *body.lock().unwrap() = jwks_body(&[k1.jwk(), k2.jwk()]);
        let h = header(Some("k2"));
        let (a, b, c) = tokio::join!(
            cache.decoding_key(&h),
            cache.decoding_key(&h),
            cache.decoding_key(&h)
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(rec.count(), 2, "one shared refetch");
        // Concurrent misses for a kid that stays unknown also share one fetch.
        let h = header(Some("ghost"));
        let (a, b) = tokio::join!(cache.decoding_key(&h), cache.decoding_key(&h));
        assert!(a.is_err() && b.is_err());
        assert_eq!(rec.count(), 2, "cooldown still active");
    }

    #[tokio::test]
    async fn concurrent_first_use_shares_one_fetch() {
        let k1 = TestKey::generate("k1");
        let (http, rec, _) = switchable(jwks_body(&[k1.jwk()]), Duration::from_millis(50));
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        let h = header(Some("k1"));
        let (a, b) = tokio::join!(cache.decoding_key(&h), cache.decoding_key(&h));
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(rec.count(), 1);
    }

    #[tokio::test]
    async fn unusable_keys_are_skipped() {
        let k1 = TestKey::generate("k1");
        let body = jwks_body(&[
            json!({"kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AAAA"}),
            json!({"kty": "MadeUp", "kid": "mystery", "foo": "bar"}),
            json!({"kty": "RSA", "kid": "broken", "n": 5}),
            json!({"kty": "RSA", "kid": "badb64", "n": "!!!", "e": "AQAB"}),
            json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}),
            json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": k1.n, "e": k1.e}),
            json!({"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": k1.n, "e": k1.e}),
            k1.jwk(),
        ]);
        let (http, _) = fixed(200, &body);
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        // The only usable key: a kid-less token is accepted with it.
        cache.decoding_key(&header(None)).await.unwrap();
        for kid in ["sym", "enc", "oaep", "broken"] {
            assert!(
                cache.decoding_key(&header(Some(kid))).await.is_err(),
                "{kid}"
            );
        }
        let keys = cache.current().await.unwrap().0;
        assert_eq!(keys.len(), 1);
    }

    #[tokio::test]
    async fn kid_absent_single_key_ok_multiple_rejected() {
        let k1 = TestKey::generate("k1");
        let k2 = TestKey::generate("k2");
        let (http, _) = fixed(200, &jwks_body(&[k1.jwk_no_kid()]));
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        cache.decoding_key(&header(None)).await.unwrap();

        let (http, _) = fixed(200, &jwks_body(&[k1.jwk(), k2.jwk()]));
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        let err = cache.decoding_key(&header(None)).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert!(
            err.message().contains("several signing keys"),
            "{}",
            err.message()
        );
    }

    #[tokio::test]
    async fn key_alg_must_match_header_alg() {
        let k1 = TestKey::generate("k1");
        let (http, _) = fixed(200, &jwks_body(&[k1.jwk()]));
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        let mut h = header(Some("k1"));
        h.alg = Algorithm::PS256;
        assert!(cache.decoding_key(&h).await.is_err());
        h.alg = Algorithm::ES256;
        assert!(cache.decoding_key(&h).await.is_err());
        h.alg = Algorithm::HS256;
        let err = cache.decoding_key(&h).await.unwrap_err();
        assert_eq!(err.message(), "id_token rejected: algorithm not allowed");
    }

    #[tokio::test]
    async fn fetch_failures() {
        let (http, _) = fixed(500, "oops internal");
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        let err = cache.decoding_key(&header(Some("k1"))).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.message().contains("HTTP 500") && !err.message().contains("oops"));
        assert!(cache.ping().await.is_err());

        let (http, _) = fixed(200, r#"{"nokeys": true}"#);
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        assert_eq!(
            cache.ping().await.unwrap_err().status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[tokio::test]
    async fn stale_keys_serve_when_refresh_fails() {
        let k1 = TestKey::generate("k1");
        let ok = Arc::new(Mutex::new(true));
        let ok2 = ok.clone();
        let body = jwks_body(&[k1.jwk()]);
        let (http, rec) = mock_client(Duration::ZERO, move |_| {
            if *ok2.lock().unwrap() {
                Ok((200, body.clone()))
            } else {
                Ok((503, String::new()))
            }
        });
        let clock = Clock::manual();
        let cache = JwksCache::new(http, URI.into(), clock.clone());
        cache.ping().await.unwrap();
        assert_eq!(rec.count(), 1);
        *ok.lock().unwrap() = false;
        clock.advance(MAX_AGE as i64 + 1);
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert_eq!(rec.count(), 2);
        // The failed refresh is not retried on every request.
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert_eq!(rec.count(), 2);
        clock.advance(COOLDOWN as i64);
        cache.decoding_key(&header(Some("k1"))).await.unwrap();
        assert_eq!(rec.count(), 3);
    }

    #[tokio::test]
    async fn ping_fetches_once() {
        let k1 = TestKey::generate("k1");
        let (http, rec) = fixed(200, &jwks_body(&[k1.jwk()]));
        let cache = JwksCache::new(http, URI.into(), Clock::manual());
        cache.ping().await.unwrap();
        cache.ping().await.unwrap();
        assert_eq!(rec.count(), 1);
        assert!(format!("{cache:?}").contains(URI));
    }
}

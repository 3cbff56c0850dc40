//! OpenID Connect relying-party building blocks: provider discovery, the signing-key cache, ID
//! token validation, the authorization-code exchange and the userinfo call.
//!
//! Everything here talks to the identity provider through the layer's [`HttpClient`] and turns
//! every failure into an [`SsoError`](crate::SsoError) whose message names the problem but never
//! a token, a secret or the provider's raw answer.
//!
//! - `discovery`: fetches `/.well-known/openid-configuration` into [`ProviderMetadata`] and
//!   checks its `issuer` (OpenID Connect Discovery §4.3).
//! - `jwks`: the provider's signing keys, cached for 10 minutes and refetched once
//!   (single-flight, at most once per 30 s) when a token names an unknown `kid`.
//! - `id_token`: OIDC Core §3.1.3.7 validation (asymmetric algorithms only).
//! - `token`: the authorization-code grant (RFC 6749 §4.1.3, PKCE RFC 7636).
//! - `userinfo`: the userinfo call and its `sub` check (OIDC Core §5.3.2).

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use tower::ServiceExt;

use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse};

mod discovery;
pub(crate) mod id_token;
pub(crate) mod jwks;
pub(crate) mod logout_token;
pub(crate) mod token;
pub(crate) mod userinfo;

pub use discovery::ProviderMetadata;
pub(crate) use discovery::discover;
#[cfg(feature = "fuzzing")]
pub(crate) use discovery::parse_metadata;
pub(crate) use id_token::{
    DEFAULT_LEEWAY, IdTokenCheck, check_unverified_id_token, verify_id_token,
};
pub(crate) use jwks::JwksCache;
pub(crate) use token::{ClientAuth, TokenRequest, exchange_code};
pub(crate) use userinfo::{check_userinfo_sub, fetch_userinfo};

/// A 504 for a request the identity provider did not answer in time, a 502 for any other
/// transport failure. The body names only the kind of failure; the detail (OS error, TLS
/// certificate names, ...) goes to the log.
pub(crate) fn transport_error(what: &str, e: &HttpError) -> crate::SsoError {
    tracing::warn!(error = %e, "{what}");
    let kind = match e {
        HttpError::Connect(_) => "could not reach the identity provider",
        HttpError::Timeout => {
            return crate::SsoError::gateway_timeout(format!(
                "{what}: the identity provider did not answer in time"
            ));
        }
        HttpError::BodyTooLarge => "the identity provider's answer was too large",
        HttpError::Other(_) => "the request to the identity provider failed",
    };
    crate::SsoError::bad_gateway(format!("{what}: {kind}"))
}

/// Sends one request to `endpoint` through the (cloned) client.
pub(crate) async fn send(
    http: &HttpClient,
    endpoint: crate::metrics::IdpEndpoint,
    mut req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    crate::metrics::tag(&mut req, endpoint);
    http.clone().oneshot(req).await
}

/// A bodiless GET asking for JSON, optionally with a bearer token. `None` if `url` is not a
/// valid request URI (or the token is not a valid header value).
pub(crate) fn get_json_request(url: &str, bearer: Option<&str>) -> Option<HttpRequest> {
    let mut builder = http::Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(token) = bearer {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        value.set_sensitive(true);
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder.body(Bytes::new()).ok()
}

/// True for a short OAuth error code that is safe to show: `[A-Za-z0-9_.-]{1,64}`.
fn is_safe_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A scripted in-memory IdP client and RSA signing helpers for the OIDC tests.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::KeyPair as _;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use bytes::Bytes;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};
    use tower::util::BoxCloneSyncService;

    use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse};

    /// What a handler returns: a status and a body, or a transport error.
    pub(crate) type Answer = Result<(u16, String), HttpError>;

    /// Every request the mock client saw.
    #[derive(Clone, Default)]
    pub(crate) struct Recorder(pub(crate) Arc<Mutex<Vec<HttpRequest>>>);

    impl Recorder {
        pub(crate) fn requests(&self) -> Vec<HttpRequest> {
            self.0.lock().unwrap().clone()
        }
        pub(crate) fn count(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// A client answering every request with `f(&req)`, after `delay`.
    pub(crate) fn mock_client(
        delay: Duration,
        f: impl Fn(&HttpRequest) -> Answer + Send + Sync + 'static,
    ) -> (HttpClient, Recorder) {
        let rec = Recorder::default();
        let rec2 = rec.clone();
        let f = Arc::new(f);
        let svc = tower::service_fn(move |req: HttpRequest| {
            let f = f.clone();
            let rec = rec2.clone();
            async move {
                rec.0.lock().unwrap().push(req.clone());
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let (status, body) = f(&req)?;
                let res: HttpResponse = http::Response::builder()
                    .status(status)
                    .body(Bytes::from(body))
                    .unwrap();
                Ok(res)
            }
        });
        (BoxCloneSyncService::new(svc), rec)
    }

    /// A client that answers every request with the same status and body.
    pub(crate) fn fixed(status: u16, body: &str) -> (HttpClient, Recorder) {
        let body = body.to_owned();
        mock_client(Duration::ZERO, move |_| Ok((status, body.clone())))
    }

    /// An RSA signing key with its JWK.
    pub(crate) struct TestKey {
        pub(crate) kid: String,
        pub(crate) encoding: EncodingKey,
        pub(crate) n: String,
        pub(crate) e: String,
    }

    impl TestKey {
        /// A fresh RSA-2048 key.
        ///
        /// jsonwebtoken's aws-lc-rs backend signs with `RsaKeyPair::from_der`, which wants a
        /// PKCS#1 `RSAPrivateKey`, so `EncodingKey::from_rsa_der` needs PKCS#1. aws-lc-rs only
        /// exports PKCS#8, and `EncodingKey::from_rsa_pem` unwraps PKCS#8 ("PRIVATE KEY") to the
        /// inner PKCS#1 key, so the key goes through PEM.
        pub(crate) fn generate(kid: &str) -> Self {
            let kp = KeyPair::generate(KeySize::Rsa2048).unwrap();
            let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&kp).unwrap();
            let b64 = STANDARD.encode(pkcs8.as_ref());
            let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
            for chunk in b64.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(chunk).unwrap());
                pem.push('\n');
            }
            pem.push_str("-----END PRIVATE KEY-----\n");
            let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
            let public = kp.public_key();
            let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
            let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
            Self {
                kid: kid.to_owned(),
                encoding,
                n,
                e,
            }
        }

        /// The public JWK, with `kid`, `use: sig` and `alg: RS256`.
        pub(crate) fn jwk(&self) -> Value {
            json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": self.n, "e": self.e})
        }

        /// The public JWK without `kid`.
        pub(crate) fn jwk_no_kid(&self) -> Value {
            json!({"kty": "RSA", "use": "sig", "n": self.n, "e": self.e})
        }

        /// An RS256 token over `claims`, with this key's `kid`.
        pub(crate) fn sign(&self, claims: &Value) -> String {
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
        }

        /// An RS256 token over `claims`, without `kid`.
        pub(crate) fn sign_no_kid(&self, claims: &Value) -> String {
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.encoding).unwrap()
        }
    }

    /// `{"keys": [...]}`.
    pub(crate) fn jwks_body(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    /// A JWKS cache serving one fresh RSA key (`k1`) from a scripted client, on a manual clock.
    pub(crate) struct Fixture {
        pub(crate) key: TestKey,
        pub(crate) jwks: crate::oidc::JwksCache,
        pub(crate) rec: Recorder,
        pub(crate) now: u64,
    }

    /// A fresh [`Fixture`].
    pub(crate) fn fixture() -> Fixture {
        let key = TestKey::generate("k1");
        let (http, rec) = fixed(200, &jwks_body(&[key.jwk()]));
        let clock = crate::clock::Clock::manual();
        let now = clock.now();
        Fixture {
            jwks: crate::oidc::JwksCache::new(http, "https://idp.example.com/jwks".into(), clock),
            key,
            rec,
            now,
        }
    }
}

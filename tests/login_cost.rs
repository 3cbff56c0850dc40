//! What one complete login costs the layer's backends: two verifier-cache calls (the state put
//! at the start, taken at the callback), one id_token verification, and at the provider one
//! authorization, one token and one userinfo request; discovery and the JWKS are fetched once
//! and then served from memory. The provider signs ES256, so this is also the end-to-end test
//! of an ES256 login. (One test: the log capture is shared by the whole binary.)

mod common;

use std::sync::{Arc, Mutex};

use common::log_capture::capture;
use common::*;
use tower::ServiceExt;
use tower_sso::cache::{CacheRequest, MokaVerifierCache};
use tower_sso::testing::{MockIdp, SigningAlg};
use tower_sso::{RateLimits, SsoLayer};

const UI: &str = "/ui/?login=success";
const DISCOVERY: &str = "/.well-known/openid-configuration";

/// Every verifier-cache request, by kind (`put`, `take`, `get`, `delete`, `ping`).
#[derive(Clone, Default)]
struct CacheCalls(Arc<Mutex<Vec<&'static str>>>);

impl CacheCalls {
    fn take_all(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A layer in front of `idp` whose verifier cache (the default moka one) is wrapped in a
/// service that records every call.
fn counted_layer(idp: &MockIdp) -> (SsoLayer, CacheCalls) {
    let calls = CacheCalls::default();
    let seen = calls.clone();
    let moka = MokaVerifierCache::default();
    let cache = tower::service_fn(move |req: CacheRequest| {
        let kind = match &req {
            CacheRequest::Put { .. } => "put",
            CacheRequest::Take { .. } => "take",
            CacheRequest::Get { .. } => "get",
            CacheRequest::Delete { .. } => "delete",
            CacheRequest::Ping => "ping",
        };
        seen.0.lock().unwrap().push(kind);
        moka.clone().oneshot(req)
    });
    let layer = flow_builder(idp)
        .verifier_cache(cache)
        .rate_limits(RateLimits::disabled())
        .build()
        .expect("layer");
    (layer, calls)
}

/// The provider's request counts for the endpoints a login may touch.
fn idp_counts(idp: &MockIdp) -> [usize; 5] {
    [
        idp.count(DISCOVERY),
        idp.count("/jwks"),
        idp.count("/authorize"),
        idp.count("/token"),
        idp.count("/userinfo"),
    ]
}

/// How many id_tokens the layer verified so far (its `id_token verified` debug event).
fn verifications(log: &str) -> usize {
    log.matches("id_token verified").count()
}

#[tokio::test]
async fn a_login_costs_two_cache_calls_one_verification_and_no_metadata_fetch_once_warm() {
    let log = capture(tracing::Level::DEBUG);
    let idp = MockIdp::builder()
        .signing_alg(SigningAlg::Es256)
        .start()
        .await
        .unwrap();
    let (layer, calls) = counted_layer(&idp);
    let app = Upstream::default().behind(&layer);

    // The first login fetches discovery and the JWKS, once each.
    let before = verifications(&log.text());
    let mut browser = Browser::new(app.clone());
    assert_logged_in(&browser.login(&idp, "").await, UI);
    assert_eq!(calls.take_all(), ["put", "take"]);
    assert_eq!(idp_counts(&idp), [1, 1, 1, 1, 1]);
    assert_eq!(verifications(&log.text()) - before, 1);
    // The provider signs ES256 (its JWKS holds only a P-256 key): the layer verified that.
    let identity = browser.whoami().await;
    assert_eq!(identity["user_id"], "alice", "{identity}");
    assert_eq!(identity["email"], "alice@example.com", "{identity}");

    // Warm: each further login is exactly one put and one take, one verification, and one
    // authorization, token and userinfo request; nothing else.
    const LOGINS: usize = 5;
    for i in 0..LOGINS {
        let before = verifications(&log.text());
        let mut browser = Browser::new(app.clone());
        let res = browser.login(&idp, "").await;
        assert_logged_in(&res, UI);
        assert_eq!(calls.take_all(), ["put", "take"], "login {i}");
        assert_eq!(verifications(&log.text()) - before, 1, "login {i}");
        assert_eq!(browser.whoami().await["user_id"], "alice");
    }
    assert_eq!(
        idp_counts(&idp),
        [1, 1, 1 + LOGINS, 1 + LOGINS, 1 + LOGINS],
        "[discovery, jwks, authorize, token, userinfo]"
    );
    // Protected requests with the session touch neither the cache nor the provider.
    assert!(calls.take_all().is_empty());
}

//! Login-start flooding: per-client rate limits on login starts and callbacks (429 with
//! `Retry-After`), the client address from `ClientAddr`, axum's `ConnectInfo` or a trusted
//! proxy's `X-Forwarded-For`, and flow state that stays small whatever `return_to` holds.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use tower_sso::provider::Provider;
use tower_sso::testing::MockIdp;
use tower_sso::{ClientAddr, RateLimit, RateLimits, SsoLayer};

fn offline_provider() -> Provider {
    Provider::generic("client-id", Some("client-secret".into()))
        .authorization_endpoint("https://idp.example.com/authorize")
        .token_endpoint("https://idp.example.com/token")
}

fn tight() -> RateLimits {
    RateLimits::default()
        .login(RateLimit::new(1, 3))
        .callback(RateLimit::new(1, 2))
}

fn from(peer: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = get(path, headers);
    req.extensions_mut()
        .insert(ClientAddr(peer.parse::<SocketAddr>().unwrap()));
    req
}

async fn assert_429(res: AppResponse) -> u64 {
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v = json_body(res).await;
    assert_eq!(v["error"]["code"], "429", "{v}");
    assert_eq!(v["error"]["type"], "rate_limited", "{v}");
    retry
}

#[tokio::test]
async fn login_starts_and_callbacks_are_limited_per_client() {
    let layer = builder()
        .provider(offline_provider())
        .rate_limits(tight())
        .build()
        .unwrap();
    let up = Upstream::default();
    let app = up.behind(&layer);
    for _ in 0..3 {
        let res = send(&app, from("203.0.113.7:1000", "/sso/key/generate", &[])).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let res = send(&app, from("203.0.113.7:1001", "/sso/key/generate", &[])).await;
    assert_eq!(assert_429(res).await, 60);
    // Another client is not affected, nor are other endpoints of this one.
    let res = send(&app, from("198.51.100.2:1000", "/sso/key/generate", &[])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    for _ in 0..2 {
        let res = send(&app, from("203.0.113.7:1000", "/sso/callback?state=x", &[])).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no flow cookie");
    }
    assert_429(send(&app, from("203.0.113.7:1000", "/sso/callback?state=x", &[])).await).await;
    // The gate is never rate limited.
    let token = token_for(&layer, alice());
    let cookie = format!("token={token}");
    for _ in 0..50 {
        let res = send(
            &app,
            from("203.0.113.7:1000", "/whoami", &[("cookie", &cookie)]),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = send(&app, from("203.0.113.7:1000", "/whoami", &[])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_default_limits_let_a_real_user_through() {
    let layer = builder().provider(offline_provider()).build().unwrap();
    let app = Upstream::default().behind(&layer);
    for i in 0..20 {
        let res = send(&app, from("203.0.113.7:1000", "/sso/key/generate", &[])).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{i}");
    }
    // A flood past the burst is refused.
    let mut refused = 0;
    for _ in 0..20 {
        let res = send(&app, from("203.0.113.7:1000", "/sso/key/generate", &[])).await;
        refused += usize::from(res.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(refused >= 18, "{refused}");
    // Switched off: never refused.
    let layer = builder()
        .provider(offline_provider())
        .rate_limits(RateLimits::disabled())
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    for _ in 0..100 {
        let res = send(&app, from("203.0.113.7:1000", "/sso/key/generate", &[])).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let layer = builder()
        .provider(offline_provider())
        .rate_limits(tight())
        .trusted_proxies(["10.0.0.0/8", "127.0.0.1"])
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    // Through the proxy: each forwarded client has its own bucket, whatever it claims on the left.
    for client in ["198.51.100.1", "198.51.100.2"] {
        let xff = format!("6.6.6.6, {client}");
        for _ in 0..3 {
            let req = from(
                "10.1.2.3:443",
                "/sso/key/generate",
                &[("x-forwarded-for", &xff)],
            );
            assert_eq!(send(&app, req).await.status(), StatusCode::SEE_OTHER);
        }
        let xff = format!("7.7.7.7, {client}");
        let req = from(
            "10.1.2.3:443",
            "/sso/key/generate",
            &[("x-forwarded-for", &xff)],
        );
        assert_429(send(&app, req).await).await;
    }
    // Straight from an untrusted peer, the header is ignored: rotating it does not help.
    for i in 0..3 {
        let xff = format!("192.0.2.{i}");
        let req = from(
            "203.0.113.9:1",
            "/sso/key/generate",
            &[("x-forwarded-for", &xff)],
        );
        assert_eq!(send(&app, req).await.status(), StatusCode::SEE_OTHER);
    }
    let req = from(
        "203.0.113.9:1",
        "/sso/key/generate",
        &[("x-forwarded-for", "192.0.2.99")],
    );
    assert_429(send(&app, req).await).await;
}

#[tokio::test]
async fn requests_without_a_client_address_share_one_larger_bucket() {
    let layer = builder()
        .provider(offline_provider())
        .rate_limits(tight().unknown_client_factor(2))
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    for _ in 0..6 {
        let res = send(&app, get("/sso/key/generate", &[])).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    assert_429(send(&app, get("/sso/key/generate", &[])).await).await;
    // A request with an address has its own bucket.
    let res = send(&app, from("203.0.113.7:1", "/sso/key/generate", &[])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn axum_connect_info_is_the_client_address() {
    use axum::extract::ConnectInfo;
    let layer = builder()
        .provider(offline_provider())
        .rate_limits(tight())
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    let with = |peer: &str| {
        let mut req = get("/sso/key/generate", &[]);
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        req
    };
    for _ in 0..3 {
        assert_eq!(
            send(&app, with("[2001:db8::1]:5000")).await.status(),
            StatusCode::SEE_OTHER
        );
    }
    assert_429(send(&app, with("[2001:db8::2]:5000")).await).await;
    assert_eq!(
        send(&app, with("[2001:db8:0:1::1]:5000")).await.status(),
        StatusCode::SEE_OTHER,
        "another /64"
    );
}

#[test]
fn bad_rate_limits_and_proxies_are_reported_by_build() {
    let err = builder()
        .rate_limits(RateLimits::default().login(RateLimit::new(0, 1)))
        .trusted_proxies(["10.0.0.0/8", "10.0.0.0/33", "not-an-address", "::1"])
        .build()
        .unwrap_err();
    assert!(err.mentions("rate_limits (SSO_RATE_LIMIT_*)"), "{err}");
    let proxies = err
        .errors()
        .iter()
        .filter(|e| e.setting == "trusted_proxies (SSO_TRUSTED_PROXIES)")
        .count();
    assert_eq!(proxies, 2, "{err}");
}

/// The flow cookie carries the return target, so a long one survives the login (and the cached
/// record stays small: see the unit test in `endpoints/flow.rs`).
#[tokio::test]
async fn a_long_return_target_survives_the_login() {
    let idp = MockIdp::start().await.expect("MockIdp starts");
    let layer: SsoLayer = flow_builder(&idp).build().unwrap();
    let mut b = Browser::for_layer(&layer);
    let target = format!("/admin/keys?q={}", "a".repeat(2000));
    let query = format!(
        "return_to={}",
        url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
    );
    let res = b.login(&idp, &query).await;
    assert_logged_in(&res, &target);
    // Too long for a cookie: the login still works, and lands on the UI path.
    let target = format!("/admin/keys?q={}", "a".repeat(3500));
    let query = format!(
        "return_to={}",
        url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
    );
    let res = b.login(&idp, &query).await;
    assert_logged_in(&res, "/ui/?login=success");
}

//! OpenID Connect Back-Channel Logout 1.0 through the layer, against `MockIdp`: the provider
//! ends a user's session and mints the logout token; it is posted to
//! `/sso/backchannel-logout`; the session is refused at once on the instance that took it and,
//! through a shared revocation feed, on another instance; a replay is refused on either; a new
//! login works. Every malformed logout token is refused with 400 and changes nothing.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::util::BoxCloneSyncService;
use tower_sso::SsoLayer;
use tower_sso::cache::MokaVerifierCache;
use tower_sso::revocation::{
    RevocationError, RevocationFeed, RevocationRequest, RevocationResponse, RevokedSession,
};
use tower_sso::testing::{MockIdp, MockUser};

use common::*;

const UI: &str = "/ui/?login=success";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// An in-memory revocation feed shared by the instances of a test.
#[derive(Clone, Default)]
struct Feed(Arc<Mutex<Vec<RevokedSession>>>);

impl Feed {
    fn service(&self) -> RevocationFeed {
        let log = self.0.clone();
        BoxCloneSyncService::new(tower::service_fn(move |req: RevocationRequest| {
            let log = log.clone();
            async move {
                let mut log = log.lock().unwrap();
                Ok::<_, RevocationError>(match req {
                    RevocationRequest::Publish(s) => {
                        log.push(s);
                        RevocationResponse::Published
                    }
                    RevocationRequest::Since { cursor } => {
                        let from = cursor.map_or(0, |c| c.parse::<usize>().unwrap());
                        RevocationResponse::Revoked {
                            sessions: log[from..].to_vec(),
                            cursor: Some(log.len().to_string()),
                            more: false,
                        }
                    }
                })
            }
        }))
    }
}

/// Two instances sharing a verifier cache and a revocation feed.
fn instances(idp: &MockIdp) -> (SsoLayer, SsoLayer, Feed) {
    let cache = MokaVerifierCache::new(10_000);
    let feed = Feed::default();
    let layer = || {
        flow_builder(idp)
            .verifier_cache(cache.clone())
            .revocation_feed(feed.service())
            .revocation_sync_interval(Duration::from_millis(50))
            .build()
            .expect("layer")
    };
    (layer(), layer(), feed)
}

fn post_logout(path: &str, body: &str) -> Request<Full<Bytes>> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

/// Posts `logout_token` to `path`; returns the status and the body.
async fn deliver(app: &App, path: &str, token: &str) -> (StatusCode, String, Option<String>) {
    let res = send(app, post_logout(path, &format!("logout_token={token}"))).await;
    let status = res.status();
    let cache_control = res
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        cache_control,
    )
}

async fn status_with(app: &App, token: &str) -> StatusCode {
    send(
        app,
        get("/whoami", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await
    .status()
}

async fn wait_refused(app: &App, token: &str, bound: Duration) {
    let started = Instant::now();
    while status_with(app, token).await != StatusCode::UNAUTHORIZED {
        assert!(
            started.elapsed() < bound,
            "still accepted after {bound:?} on the other instance"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts a 400 `invalid_request` that does not echo `token`; returns the description.
fn assert_refused_400(
    (status, body, cache): (StatusCode, String, Option<String>),
    token: &str,
) -> String {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    if token.len() > 8 {
        assert!(!body.contains(token), "the token is echoed: {body}");
    }
    let v: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(v["error"], "invalid_request", "{v}");
    v["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn logout_at_the_provider_revokes_the_session_on_every_instance() {
    let idp = MockIdp::start().await.expect("MockIdp");
    let (a, b, feed) = instances(&idp);
    let (app_a, app_b) = (
        Upstream::default().behind(&a),
        Upstream::default().behind(&b),
    );
    let mut browser = Browser::new(app_a.clone());
    let token = assert_logged_in(&browser.login(&idp, "").await, UI);
    // Another session of the same user in another browser, and both warm on both instances.
    let mut second = Browser::new(app_b.clone());
    let token2 = assert_logged_in(&second.login(&idp, "").await, UI);
    for app in [&app_a, &app_b] {
        for t in [&token, &token2] {
            assert_eq!(status_with(app, t).await, StatusCode::OK);
        }
    }
    let sid = idp.session_id("alice").expect("provider session");

    // The provider ends alice's session and posts the logout token to instance A.
    let logout_token = idp.logout_token("alice").expect("logout token");
    let (status, body, cache) = deliver(&app_a, "/sso/backchannel-logout", &logout_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert!(body.is_empty());
    assert_eq!(
        feed.0.lock().unwrap().last().map(|r| r.session_id.clone()),
        Some(format!("sid:generic|{sid}"))
    );

    // Refused at once here, within the sync bound on B; both sessions (same provider session).
    for t in [&token, &token2] {
        assert_eq!(status_with(&app_a, t).await, StatusCode::UNAUTHORIZED);
        wait_refused(&app_b, t, Duration::from_secs(2)).await;
    }
    // A browser is sent to log in again.
    let res = browser.get("/whoami").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The same token again, on either instance: a replay.
    for app in [&app_a, &app_b] {
        let reason = assert_refused_400(
            deliver(app, "/sso/backchannel-logout", &logout_token).await,
            &logout_token,
        );
        assert!(reason.contains("already used"), "{reason}");
    }

    // A new login (a new provider session) works on both instances.
    let mut fresh = Browser::new(app_b.clone());
    let token3 = assert_logged_in(&fresh.login(&idp, "").await, UI);
    assert_ne!(idp.session_id("alice").as_deref(), Some(sid.as_str()));
    assert_eq!(status_with(&app_b, &token3).await, StatusCode::OK);
    assert_eq!(status_with(&app_a, &token3).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status_with(&app_a, &token3).await, StatusCode::OK);
    // The revoked ones stay revoked.
    assert_eq!(status_with(&app_b, &token).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_logout_token_with_only_a_subject_revokes_every_session_of_that_user() {
    let idp = MockIdp::builder()
        .user(MockUser::alice())
        .user(MockUser::new("bob").claim("email", "bob@example.com"))
        .start()
        .await
        .expect("MockIdp");
    let (a, _, _) = instances(&idp);
    let app = Upstream::default().behind(&a);
    let alice = assert_logged_in(&Browser::new(app.clone()).login(&idp, "").await, UI);
    idp.select_user("bob");
    let bob = assert_logged_in(&Browser::new(app.clone()).login(&idp, "").await, UI);
    let now = unix_now();
    let token = idp
        .sign_logout_claims(&json!({
            "iss": idp.issuer(), "aud": idp.client_id(), "iat": now, "jti": "sub-only-1",
            "sub": "alice", "events": { EVENT: {} },
        }))
        .expect("sign");
    let (status, body, _) = deliver(&app, "/sso/backchannel-logout", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(status_with(&app, &alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(&app, &bob).await, StatusCode::OK);
    // Sessions issued after the logout (a second later: the bound is in whole seconds) work.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    idp.select_user("alice");
    let again = assert_logged_in(&Browser::new(app.clone()).login(&idp, "").await, UI);
    assert_eq!(status_with(&app, &again).await, StatusCode::OK);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn malformed_logout_tokens_are_refused_and_change_nothing() {
    let idp = MockIdp::start().await.expect("MockIdp");
    let (a, _, _) = instances(&idp);
    let app = Upstream::default().behind(&a);
    let session = assert_logged_in(&Browser::new(app.clone()).login(&idp, "").await, UI);
    let sid = idp.session_id("alice").expect("sid");
    let now = unix_now();
    let good = json!({
        "iss": idp.issuer(), "aud": idp.client_id(), "iat": now, "exp": now + 120,
        "sub": "alice", "sid": sid, "events": { EVENT: {} },
    });
    let with = |key: &str, value: Value, jti: &str| {
        let mut c = good.clone();
        c[key] = value;
        c["jti"] = json!(jti);
        c
    };
    let without = |key: &str, jti: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(key);
        c["jti"] = json!(jti);
        c
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            with("iss", json!("https://evil.example"), "j1"),
            "issuer mismatch",
        ),
        (
            with("aud", json!("another-client"), "j2"),
            "audience mismatch",
        ),
        (without("events", "j3"), "missing events"),
        (
            with("events", json!({"urn:other": {}}), "j4"),
            "no back-channel logout event",
        ),
        (with("nonce", json!("n"), "j5"), "nonce present"),
        (
            {
                let mut c = without("sid", "j6");
                c.as_object_mut().unwrap().remove("sub");
                c
            },
            "neither sid nor sub",
        ),
        (with("iat", json!(now + 3600), "j7"), "issued in the future"),
        (with("iat", json!(now - 3600), "j8"), "issued too long ago"),
        (with("exp", json!(now - 600), "j9"), "expired"),
        (without("jti", "unused"), "missing jti"),
    ];
    for (claims, expected) in cases {
        let claims = if expected == "missing jti" {
            let mut c = claims;
            c.as_object_mut().unwrap().remove("jti");
            c
        } else {
            claims
        };
        let token = idp.sign_logout_claims(&claims).expect("sign");
        let reason = assert_refused_400(
            deliver(&app, "/sso/backchannel-logout", &token).await,
            &token,
        );
        assert!(reason.contains(expected), "{expected}: {reason}");
    }
    // Signature problems: corrupted, alg none, HS256 keyed with a public value.
    let valid = idp
        .sign_logout_claims(&with("jti", json!("sig-1"), "sig-1"))
        .expect("sign");
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let sig = parts[2].clone();
    parts[2] = format!(
        "{}{}",
        if sig.starts_with('A') { "B" } else { "A" },
        &sig[1..]
    );
    let corrupted = parts.join(".");
    let reason = assert_refused_400(
        deliver(&app, "/sso/backchannel-logout", &corrupted).await,
        &corrupted,
    );
    assert!(reason.contains("bad signature"), "{reason}");
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "logout+jwt"})),
        parts[1]
    );
    let reason = assert_refused_400(deliver(&app, "/sso/backchannel-logout", &none).await, &none);
    assert!(reason.contains("alg none"), "{reason}");
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &with("jti", json!("hs-1"), "hs-1"),
        &jsonwebtoken::EncodingKey::from_secret(idp.client_secret().as_bytes()).unwrap(),
    )
    .unwrap();
    let reason = assert_refused_400(deliver(&app, "/sso/backchannel-logout", &hs).await, &hs);
    assert!(reason.contains("symmetric"), "{reason}");

    // Malformed requests.
    for (content_type, body, expected) in [
        (
            "application/x-www-form-urlencoded",
            "".to_owned(),
            "missing logout_token",
        ),
        (
            "application/x-www-form-urlencoded",
            "token=abc".to_owned(),
            "missing logout_token",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("logout_token={valid}&logout_token={valid}"),
            "more than once",
        ),
        (
            "application/json",
            format!("{{\"logout_token\":\"{valid}\"}}"),
            "form-urlencoded",
        ),
        (
            "application/x-www-form-urlencoded",
            format!("logout_token={}", "a".repeat(20_000)),
            "too large",
        ),
        (
            "application/x-www-form-urlencoded",
            "logout_token=<b>x</b>".to_owned(),
            "malformed",
        ),
    ] {
        let req = Request::post("/sso/backchannel-logout")
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let res = send(&app, req).await;
        let status = res.status();
        let cache = res
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes())
            .into_owned();
        let reason = assert_refused_400((status, body, cache), &valid);
        assert!(reason.contains(expected), "{expected}: {reason}");
    }
    // Not a POST; an unknown provider.
    let res = send(&app, get("/sso/backchannel-logout", &[])).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = deliver(&app, "/sso/backchannel-logout/nope", &valid).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nothing was revoked, and the valid token still works once.
    assert_eq!(status_with(&app, &session).await, StatusCode::OK);
    let (status, body, _) = deliver(&app, "/sso/backchannel-logout", &valid).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(status_with(&app, &session).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_provider_has_its_own_endpoint_and_keys() {
    let first = MockIdp::start().await.expect("MockIdp");
    let second = MockIdp::start().await.expect("MockIdp");
    let layer = flow_builder(&first)
        .provider(oidc(&second).name("other"))
        .build()
        .expect("layer");
    let app = Upstream::default().behind(&layer);
    let mut browser = Browser::new(app.clone());
    let session = assert_logged_in(&browser.login(&second, "provider=other").await, UI);
    let token = second.logout_token("alice").expect("logout token");
    // At the first provider's endpoint: not its keys (or not its issuer).
    let reason = assert_refused_400(
        deliver(&app, "/sso/backchannel-logout", &token).await,
        &token,
    );
    assert!(
        reason.contains("unknown signing key") || reason.contains("issuer"),
        "{reason}"
    );
    assert_eq!(status_with(&app, &session).await, StatusCode::OK);
    let (status, body, _) = deliver(&app, "/sso/backchannel-logout/other", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(status_with(&app, &session).await, StatusCode::UNAUTHORIZED);
}

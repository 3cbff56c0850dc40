//! The debug login through the layer: the page (escaped, without bearer credentials, under a
//! strict CSP), no session and no store write, the same browser binding as a real login, and
//! the switch (off by default, `debug_endpoints`, `SSO_DEBUG_ENABLED`).

mod common;

use common::*;
use http::{StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use tower_sso::SsoLayerBuilder;
use tower_sso::claims::ClaimMapping;
use tower_sso::store::MemoryUserStore;
use tower_sso::testing::{MockIdp, MockUser};
use url::Url;

const XSS: &str = "</script><script>alert(1)</script>";

async fn idp() -> MockIdp {
    MockIdp::builder()
        .user(
            MockUser::alice()
                .claim("name", XSS)
                .claim("groups", json!(["devs", "<b>admins</b>"]))
                .claim(
                    "nested",
                    json!({"access_token": "nested-at-SECRET", "deeper": [{"refresh_token": "nested-rt-SECRET", "ok": "<i>"}]}),
                )
                .claim("id_token", "top-level-it-SECRET"),
        )
        .start()
        .await
        .unwrap()
}

fn debug_builder(idp: &MockIdp) -> SsoLayerBuilder {
    builder().provider(oidc(idp).claims(ClaimMapping {
        team_ids_field: Some("groups".into()),
        ..ClaimMapping::default()
    }))
}

/// Starts a debug login and lets the IdP authorize it; returns the callback target.
async fn authorize_debug(browser: &mut Browser) -> String {
    let res = browser.get("/sso/debug/login").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let url = Url::parse(&location(&res)).unwrap();
    assert_eq!(
        query_param(&url, "redirect_uri").as_deref(),
        Some(DEBUG_CALLBACK_URL)
    );
    assert!(query_param(&url, "code_challenge").is_some());
    assert!(query_param(&url, "nonce").is_some());
    assert!(browser.cookie(FLOW_COOKIE).is_some());
    let back = browser.authorize_at_idp(&url).await;
    assert!(back.as_str().starts_with(DEBUG_CALLBACK_URL), "{back}");
    relative(&back)
}

#[tokio::test]
async fn the_page_shows_the_identity_escaped_without_tokens_and_sets_nothing() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let layer = debug_builder(&idp)
        .debug_endpoints(true)
        .user_store(store.clone())
        .build()
        .unwrap();
    assert_eq!(
        layer.debug_callback_url_for("generic"),
        Some(DEBUG_CALLBACK_URL)
    );
    let mut browser = Browser::for_layer(&layer);
    let target = authorize_debug(&mut browser).await;
    let res = browser.get(&target).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_flow_cookie_cleared(&res);
    assert_eq!(
        cookie_value(&res, "token"),
        None,
        "the debug login set a session"
    );
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&body).into_owned();

    // Escaped: the claim is text, never markup.
    assert!(!page.contains(XSS), "{page}");
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<b>") && !page.contains("<i>"), "{page}");
    assert!(
        page.contains("&lt;&#x2F;script&gt;&lt;script&gt;alert(1)&lt;&#x2F;script&gt;"),
        "{page}"
    );
    // The mapped identity and the claims.
    assert!(page.contains("alice@example.com"), "{page}");
    assert!(
        page.contains("&quot;user_id&quot;: &quot;alice&quot;"),
        "{page}"
    );
    assert!(page.contains("devs"), "{page}");
    assert!(page.contains("Allowed"), "{page}");
    // No bearer credential at any depth: the IdP's tokens, and the planted claims.
    let issued = idp.last_issued();
    assert!(issued.access_token.is_some());
    for secret in [
        issued.access_token.as_deref(),
        issued.id_token.as_deref(),
        issued.refresh_token.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!page.contains(secret), "a token in the page");
    }
    assert!(!page.contains("SECRET"), "{page}");
    assert!(!page.contains("access_token&quot;:") && !page.contains("refresh_token&quot;:"));

    // Nothing written, no session: the browser is still logged out.
    assert_eq!(store.user_count(), 0);
    assert_eq!(store.team_count(), 0);
    assert!(browser.cookie("token").is_none());
    let res = browser.get("/whoami").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_page_says_when_the_policy_would_refuse() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let layer = debug_builder(&idp)
        .debug_endpoints(true)
        .allowed_email_domains(["corp.example"])
        .user_store(store.clone())
        .build()
        .unwrap();
    let mut browser = Browser::for_layer(&layer);
    let target = authorize_debug(&mut browser).await;
    let res = browser.get(&target).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("Refused (401)"), "{page}");
    assert_eq!(store.user_count(), 0);
}

#[tokio::test]
async fn the_debug_login_keeps_the_login_protections() {
    let idp = idp().await;
    let layer = debug_builder(&idp).debug_endpoints(true).build().unwrap();
    // No flow cookie: refused before anything is redeemed.
    let mut browser = Browser::for_layer(&layer);
    let target = authorize_debug(&mut browser).await;
    browser.set_cookie(FLOW_COOKIE, None);
    assert_callback_refused(browser.get(&target).await, StatusCode::UNAUTHORIZED).await;

    // Single use: the same callback twice.
    let mut browser = Browser::for_layer(&layer);
    let target = authorize_debug(&mut browser).await;
    let cookie = browser.cookie(FLOW_COOKIE).unwrap().to_owned();
    assert_eq!(browser.get(&target).await.status(), StatusCode::OK);
    browser.set_cookie(FLOW_COOKIE, Some(&cookie));
    assert_callback_refused(browser.get(&target).await, StatusCode::UNAUTHORIZED).await;

    // A debug login cannot be finished at the real callback (where it would set a session),
    // nor a real one at the debug callback.
    let mut browser = Browser::for_layer(&layer);
    let target = authorize_debug(&mut browser).await;
    let real = target.replacen("/sso/debug/callback", "/sso/callback", 1);
    let res = browser.get(&real).await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("another endpoint"), "{msg}");

    let mut browser = Browser::for_layer(&layer);
    let flow = browser.authorize(&idp, "").await;
    let debug = flow
        .callback_target()
        .replacen("/sso/callback", "/sso/debug/callback", 1);
    let res = browser.get(&debug).await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("another endpoint"), "{msg}");
}

#[tokio::test]
async fn off_by_default_and_switchable() {
    let idp = idp().await;
    for layer in [
        debug_builder(&idp).build().unwrap(),
        debug_builder(&idp).debug_endpoints(false).build().unwrap(),
    ] {
        assert_eq!(layer.debug_callback_url_for("generic"), None);
        let app = Upstream::default().behind(&layer);
        for path in ["/sso/debug/login", "/sso/debug/callback?state=x&code=y"] {
            let res = send(&app, get(path, &[])).await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }
    // The environment: SSO_DEBUG_ENABLED=true switches it on, false (or unset) off.
    let env = |debug: Option<&'static str>| {
        let vars = idp.env_vars();
        move |k: &str| {
            if k == "SSO_DEBUG_ENABLED" {
                return debug.map(str::to_owned);
            }
            if k == "PROXY_BASE_URL" {
                return Some(BASE_URL.to_owned());
            }
            if k == "LITELLM_MASTER_KEY" {
                return Some(SECRET.to_owned());
            }
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        }
    };
    for (value, on) in [(Some("true"), true), (Some("false"), false), (None, false)] {
        let layer = SsoLayerBuilder::from_env_vars(env(value)).build().unwrap();
        let app = Upstream::default().behind(&layer);
        let res = send(&app, get("/sso/debug/login", &[])).await;
        let expected = if on {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(res.status(), expected, "SSO_DEBUG_ENABLED={value:?}");
    }
}

//! Login flows through the layer, over real loopback HTTP to `MockIdp`: the happy path, and
//! every way a login must be refused (before the token call, at the token endpoint, on the
//! id_token, on userinfo, by the access policy).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use http::StatusCode;
use serde_json::json;
use tower::ServiceExt;
use tower_sso::claims::{ClaimMapping, RoleMappings};
use tower_sso::clock::Clock;
use tower_sso::http::HttpClientConfig;
use tower_sso::policy::UiAccessMode;
use tower_sso::provider::ClientAuthMethod;
use tower_sso::store::{MemoryUserStore, StoreRequest, UserRecord};
use tower_sso::testing::{ClientAuth, Misbehaviour, MockIdp, MockUser};
use tower_sso::{SsoLayer, SsoLayerBuilder, UserRole};

const UI: &str = "/ui/?login=success";

async fn idp() -> MockIdp {
    MockIdp::start().await.expect("MockIdp starts")
}

/// A user whose `sub`, user name, e-mail and name all differ, to see which claim lands where.
fn carol() -> MockUser {
    MockUser::new("sub-8f2c")
        .claim("preferred_username", "carol")
        .claim("email", "Carol.Jones@Example.COM")
        .claim("name", "Carol Jones")
}

async fn idp_with(user: MockUser) -> MockIdp {
    MockIdp::builder()
        .user(user)
        .start()
        .await
        .expect("MockIdp starts")
}

fn layer(b: SsoLayerBuilder) -> SsoLayer {
    b.build().expect("valid config")
}

// ---------------------------------------------------------------------------------------------
// Happy path

#[tokio::test]
async fn happy_path_issues_a_session_that_opens_protected_paths_and_stores_the_user() {
    let idp = idp_with(carol()).await;
    let store = MemoryUserStore::new();
    let layer = layer(flow_builder(&idp).user_store(store.clone()));
    let mut b = Browser::for_layer(&layer);

    let res = b.login(&idp, "").await;
    let token = assert_logged_in(&res, UI);
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("token=") && !c.starts_with("token=;"))
        .expect("session cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=86400",
        "Secure",
    ] {
        assert!(
            cookie.split("; ").any(|a| a == attr),
            "{attr} missing: {cookie}"
        );
    }
    assert!(b.cookie(FLOW_COOKIE).is_none());
    assert_eq!(b.cookie("token"), Some(token.as_str()));

    let id = b.whoami().await;
    assert_eq!(id["user_id"], "sub-8f2c");
    assert_eq!(id["email"], "carol.jones@example.com");
    assert_eq!(id["display_name"], "sub-8f2c"); // upstream default: display name from `sub`
    assert_eq!(id["role"], "internal_user_viewer");
    assert_eq!(id["provider"], "generic");

    let user = stored_user(&store, "sub-8f2c").await.expect("user stored");
    assert_eq!(user.email.as_deref(), Some("carol.jones@example.com"));
    assert_eq!(user.role, UserRole::InternalUserViewer);
    assert_eq!(user.metadata["auth_provider"], "generic");
    assert_eq!(store.user_count(), 1);

    // One discovery, one JWKS, one code redemption, one userinfo.
    for (path, n) in [
        ("/.well-known/openid-configuration", 1),
        ("/jwks", 1),
        ("/token", 1),
        ("/userinfo", 1),
    ] {
        assert_eq!(idp.count(path), n, "{path}: {:?}", idp.requests());
    }
}

#[tokio::test]
async fn authorization_request_has_pkce_nonce_and_a_fresh_state() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    let mut b = Browser::for_layer(&layer);
    let first = b.start(&idp, "").await;
    let second = b.start(&idp, "").await;
    let p = |u: &url::Url, k: &str| query_param(u, k).unwrap_or_default();
    assert_eq!(p(&first, "response_type"), "code");
    assert_eq!(p(&first, "client_id"), idp.client_id());
    assert_eq!(p(&first, "redirect_uri"), layer.callback_url());
    assert_eq!(layer.callback_url(), CALLBACK_URL);
    assert_eq!(p(&first, "scope"), "openid email profile");
    assert_eq!(p(&first, "code_challenge_method"), "S256");
    for k in ["state", "nonce", "code_challenge"] {
        let (a, z) = (p(&first, k), p(&second, k));
        assert!(a.len() >= 32, "{k} too short: {a:?}");
        assert_ne!(a, z, "{k} repeats across logins");
    }
    assert_ne!(p(&first, "state"), p(&first, "nonce"));
}

// ---------------------------------------------------------------------------------------------
// Login start

#[tokio::test]
async fn login_start_clears_an_old_session_cookie() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    let mut b = Browser::for_layer(&layer);
    b.set_cookie("token", Some(&token_for(&layer, alice())));
    let res = b.get("/sso/key/generate").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookies = set_cookies(&res);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("token=;") && c.contains("Max-Age=0") && c.contains("Path=/")),
        "{cookies:?}"
    );
    let flow = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{FLOW_COOKIE}=")))
        .expect("flow cookie");
    for attr in [
        "HttpOnly",
        "SameSite=Lax",
        // `__Host-` cookies must be Secure, host-only and at `Path=/`.
        "Path=/",
        "Secure",
        "Max-Age=600",
    ] {
        assert!(flow.split("; ").any(|a| a == attr), "{attr}: {flow}");
    }
    assert!(!flow.to_ascii_lowercase().contains("domain="), "{flow}");
    assert_eq!(b.cookie("token"), None);
}

#[tokio::test]
async fn return_to_is_kept_when_relative_and_replaced_when_foreign() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    let mut b = Browser::for_layer(&layer);
    let res = b.login(&idp, "return_to=%2Fadmin%2Fkeys%3Fpage%3D2").await;
    assert_logged_in(&res, "/admin/keys?page=2");
    for evil in [
        "https%3A%2F%2Fevil.com",
        "%2F%2Fevil.com",
        "https://evil.com/x",
    ] {
        let res = b.login(&idp, &format!("return_to={evil}")).await;
        assert_logged_in(&res, UI);
    }
}

#[tokio::test]
async fn unknown_provider_is_400_and_no_provider_is_503() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let res = b.get("/sso/key/generate?provider=unknown").await;
    let msg = assert_refused(res, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("provider"), "{msg}");
    assert_eq!(
        cookie_value(
            &b.get("/sso/key/generate?provider=unknown").await,
            FLOW_COOKIE
        ),
        None
    );

    let mut b = Browser::for_layer(&layer(builder()));
    let res = b.get("/sso/key/generate").await;
    assert_eq!(cookie_value(&res, FLOW_COOKIE), None);
    assert_refused(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(idp.count("/.well-known/openid-configuration"), 0);
}

// ---------------------------------------------------------------------------------------------
// Refused before the code is redeemed

/// Asserts nothing was redeemed and no session exists.
fn assert_no_redemption(idp: &MockIdp, b: &Browser) {
    assert_eq!(idp.count("/token"), 0, "{:?}", idp.requests());
    assert_eq!(idp.count("/userinfo"), 0);
    assert_eq!(b.cookie("token"), None);
}

#[tokio::test]
async fn callback_without_the_flow_cookie_is_refused() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let flow = b.authorize(&idp, "").await;
    b.set_cookie(FLOW_COOKIE, None);
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("cookie missing"), "{msg}");
    assert_no_redemption(&idp, &b);
}

#[tokio::test]
async fn flow_cookie_of_another_login_is_refused() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    // The victim's browser completes the IdP step; the attacker delivers its callback URL to a
    // browser holding a different login's cookie.
    let mut victim = Browser::for_layer(&layer);
    let victims = victim.authorize(&idp, "").await;
    let mut attacker = Browser::for_layer(&layer);
    let _own = attacker.authorize(&idp, "").await;
    let msg =
        assert_callback_refused(attacker.callback(&victims).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("does not match"), "{msg}");
    assert_no_redemption(&idp, &attacker);
    // The refusal did not burn the victim's login.
    assert_logged_in(&victim.callback(&victims).await, UI);
}

#[tokio::test]
async fn forged_or_tampered_flow_cookie_is_refused() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    // Signed with another secret (another deployment's layer).
    let other = SsoLayer::builder()
        .base_url(BASE_URL)
        .session_secret("another-deployment-secret-0123456789")
        .provider(oidc(&idp))
        .build()
        .unwrap();
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    let mut foreign = Browser::for_layer(&other);
    foreign.start(&idp, "").await;
    let forged = foreign.cookie(FLOW_COOKIE).unwrap().to_owned();

    let parts: Vec<&str> = flow.flow_cookie.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut sig = parts[2].to_owned();
    let last = sig.pop().unwrap();
    sig.push(if last == 'A' { 'B' } else { 'A' });
    let tampered_sig = format!("{}.{}.{sig}", parts[0], parts[1]);
    let tampered_payload = format!("{}.{}A.{}", parts[0], parts[1], parts[2]);
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    for (what, value) in [
        ("forged", forged.as_str()),
        ("tampered signature", &tampered_sig),
        ("tampered payload", &tampered_payload),
        ("alg none", &alg_none),
        ("garbage", "not-a-cookie"),
    ] {
        b.set_cookie(FLOW_COOKIE, Some(value));
        let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
        assert!(msg.contains("invalid"), "{what}: {msg}");
    }
    assert_no_redemption(&idp, &b);
}

#[tokio::test]
async fn state_cannot_be_replayed_after_a_success() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let flow = b.authorize(&idp, "").await;
    assert_logged_in(&b.callback(&flow).await, UI);
    assert_eq!(idp.count("/token"), 1);
    // Same URL, same (replayed) flow cookie, in a fresh browser.
    b.set_cookie("token", None);
    b.set_cookie(FLOW_COOKIE, Some(&flow.flow_cookie));
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("already used"), "{msg}");
    assert_eq!(
        idp.count("/token"),
        1,
        "the replay reached the token endpoint"
    );
    assert_eq!(b.cookie("token"), None);
}

#[tokio::test]
async fn state_cannot_be_replayed_after_a_failure() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let flow = b.authorize(&idp, "").await;
    idp.set_misbehaviour(Misbehaviour::TokenHttpError(500));
    assert_callback_refused(b.callback(&flow).await, StatusCode::BAD_GATEWAY).await;
    assert_eq!(idp.count("/token"), 1);
    idp.set_misbehaviour(Misbehaviour::None);
    b.set_cookie(FLOW_COOKIE, Some(&flow.flow_cookie));
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("already used"), "{msg}");
    assert_eq!(idp.count("/token"), 1);
    assert_eq!(b.cookie("token"), None);
}

#[tokio::test]
async fn expired_flow_is_refused() {
    let idp = idp().await;
    let clock = Clock::manual();
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).clock(clock.clone())));
    let flow = b.authorize(&idp, "").await;
    clock.advance(601);
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("expired"), "{msg}");
    assert_no_redemption(&idp, &b);
}

#[tokio::test]
async fn idp_error_is_reported_escaped_without_redeeming_anything() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    idp.set_misbehaviour(Misbehaviour::AuthorizeError("access_denied".into()));
    let flow = b.authorize(&idp, "").await;
    assert_eq!(
        flow.callback_param("error").as_deref(),
        Some("access_denied")
    );
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("access_denied"), "{msg}");
    assert_no_redemption(&idp, &b);

    idp.set_misbehaviour(Misbehaviour::AuthorizeError(
        "<script>alert(1)</script>".into(),
    ));
    let flow = b.authorize(&idp, "").await;
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(!msg.contains("script>"), "{msg}");
    assert_no_redemption(&idp, &b);
}

#[tokio::test]
async fn wrong_iss_parameter_is_refused() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    idp.set_misbehaviour(Misbehaviour::WrongIssParameter);
    let flow = b.authorize(&idp, "").await;
    assert_ne!(flow.callback_param("iss"), Some(idp.issuer()));
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("issuer"), "{msg}");
    assert_no_redemption(&idp, &b);
}

#[tokio::test]
async fn missing_iss_parameter_is_refused_when_advertised() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    idp.set_misbehaviour(Misbehaviour::MissingIssParameter);
    let flow = b.authorize(&idp, "").await;
    assert_eq!(flow.callback_param("iss"), None);
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("issuer"), "{msg}");
    assert_no_redemption(&idp, &b);
}

#[tokio::test]
async fn missing_iss_parameter_is_fine_when_not_advertised() {
    let idp = MockIdp::builder()
        .iss_parameter(false)
        .start()
        .await
        .unwrap();
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let flow = b.authorize(&idp, "").await;
    assert_eq!(flow.callback_param("iss"), None);
    assert_logged_in(&b.callback(&flow).await, UI);
}

#[tokio::test]
async fn duplicate_callback_parameters_are_refused() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let flow = b.authorize(&idp, "").await;
    let target = flow.callback_target();
    for extra in [
        "&code=attacker-code",
        "&state=other",
        "&iss=https%3A%2F%2Fevil.example.com",
    ] {
        let res = b.get(&format!("{target}{extra}")).await;
        let msg = assert_refused(res, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains("more than once"), "{msg}");
    }
    assert_no_redemption(&idp, &b);
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

/// A login whose token call fails with `m`: 401 when the provider refuses the code, 502 when it
/// fails (5xx, garbage); one token call, no userinfo, no session.
async fn token_refusal(m: Misbehaviour) -> String {
    token_failure(m, StatusCode::UNAUTHORIZED).await
}

async fn token_failure(m: Misbehaviour, status: StatusCode) -> String {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let flow = b.authorize(&idp, "").await;
    idp.set_misbehaviour(m);
    let msg = assert_callback_refused(b.callback(&flow).await, status).await;
    assert_eq!(idp.count("/token"), 1);
    assert_eq!(idp.count("/userinfo"), 0);
    assert_eq!(b.cookie("token"), None);
    assert!(!msg.contains('{'), "raw body echoed: {msg}");
    assert!(!msg.contains(flow.callback_param("code").unwrap().as_str()));
    msg
}

#[tokio::test]
async fn token_http_error_is_refused() {
    let msg = token_failure(Misbehaviour::TokenHttpError(500), StatusCode::BAD_GATEWAY).await;
    assert!(msg.contains("500"), "{msg}");
    let msg = token_refusal(Misbehaviour::TokenHttpError(400)).await;
    assert!(msg.contains("400"), "{msg}");
}

#[tokio::test]
async fn token_error_in_a_200_body_is_refused() {
    let msg = token_refusal(Misbehaviour::TokenErrorInBody).await;
    assert!(msg.contains("invalid_grant"), "{msg}");
}

#[tokio::test]
async fn token_garbage_is_refused() {
    let msg = token_failure(Misbehaviour::TokenGarbage, StatusCode::BAD_GATEWAY).await;
    assert!(msg.contains("JSON"), "{msg}");
}

#[tokio::test]
async fn token_json_that_is_not_an_object_is_refused() {
    token_failure(Misbehaviour::TokenNotObject, StatusCode::BAD_GATEWAY).await;
}

#[tokio::test]
async fn token_without_access_token_is_refused() {
    let msg = token_refusal(Misbehaviour::TokenMissingAccessToken).await;
    assert!(msg.contains("access_token"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// ID token

/// A login whose id_token is bad in the way `m` says: 401, no userinfo call, no session.
async fn id_token_refusal(m: Misbehaviour) -> (MockIdp, String) {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).user_store(store.clone())));
    let flow = b.authorize(&idp, "").await;
    idp.set_misbehaviour(m);
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::UNAUTHORIZED).await;
    assert_eq!(idp.count("/token"), 1);
    assert_eq!(idp.count("/userinfo"), 0, "{:?}", idp.requests());
    assert_eq!(b.cookie("token"), None);
    assert_eq!(store.user_count(), 0);
    assert!(msg.contains("id_token"), "{msg}");
    (idp, msg)
}

macro_rules! id_token_refused {
    ($($name:ident: $m:expr;)*) => {$(
        #[tokio::test]
        async fn $name() {
            id_token_refusal($m).await;
        }
    )*};
}

id_token_refused! {
    id_token_wrong_issuer_is_refused: Misbehaviour::WrongIssuer;
    id_token_wrong_audience_is_refused: Misbehaviour::WrongAudience;
    id_token_extra_audience_is_refused: Misbehaviour::ExtraAudience;
    id_token_bad_signature_is_refused: Misbehaviour::BadSignature;
    id_token_expired_is_refused: Misbehaviour::Expired;
    id_token_issued_in_the_future_is_refused: Misbehaviour::IssuedInFuture;
    id_token_without_iat_is_refused: Misbehaviour::MissingIat;
    id_token_without_sub_is_refused: Misbehaviour::MissingSub;
    id_token_nonce_mismatch_is_refused: Misbehaviour::NonceMismatch;
    id_token_without_nonce_is_refused: Misbehaviour::MissingNonce;
    id_token_alg_none_is_refused: Misbehaviour::AlgNone;
}

#[tokio::test]
async fn id_token_with_unknown_kid_refetches_the_jwks_once_then_is_refused() {
    let (idp, _) = id_token_refusal(Misbehaviour::UnknownKid).await;
    assert_eq!(idp.count("/jwks"), 2, "{:?}", idp.requests());
}

#[tokio::test]
async fn id_token_without_kid_is_verified_with_the_only_key() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    idp.set_misbehaviour(Misbehaviour::NoKid);
    assert_logged_in(&b.login(&idp, "").await, UI);
}

#[tokio::test]
async fn key_rotation_refetches_the_jwks_once_and_logs_in() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/jwks"), 1);
    let old = idp.current_kid();
    idp.rotate_keys();
    assert_ne!(idp.current_kid(), old);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/jwks"), 2);
    // The refreshed set is used from then on.
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/jwks"), 2);
}

// ---------------------------------------------------------------------------------------------
// Userinfo

#[tokio::test]
async fn userinfo_with_another_sub_is_refused() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).user_store(store.clone())));
    idp.set_misbehaviour(Misbehaviour::UserinfoWrongSub);
    let msg = assert_callback_refused(b.login(&idp, "").await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("sub"), "{msg}");
    assert_eq!(idp.count("/userinfo"), 1);
    assert_eq!(store.user_count(), 0);
}

#[tokio::test]
async fn userinfo_error_falls_back_to_the_id_token_claims() {
    let idp = idp_with(carol()).await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    idp.set_misbehaviour(Misbehaviour::UserinfoError(503));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/userinfo"), 1);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "sub-8f2c");
    assert_eq!(id["email"], "carol.jones@example.com");
}

#[tokio::test]
async fn empty_userinfo_falls_back_to_the_id_token_claims() {
    let idp = idp_with(carol()).await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    idp.set_misbehaviour(Misbehaviour::UserinfoEmpty);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/userinfo"), 1);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "sub-8f2c");
    assert_eq!(id["email"], "carol.jones@example.com");
}

#[tokio::test]
async fn without_an_id_token_the_identity_comes_from_userinfo() {
    let idp = idp_with(carol()).await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    // Without an id_token the identity must come from userinfo alone.
    idp.set_misbehaviour(Misbehaviour::NoIdToken);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["user_id"], "sub-8f2c");
}

// ---------------------------------------------------------------------------------------------
// An unreliable IdP

#[tokio::test]
async fn slow_idp_gives_a_clear_504() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).http_client_config(
        HttpClientConfig {
            timeout: Duration::from_millis(500),
            ..Default::default()
        },
    )));
    let flow = b.authorize(&idp, "").await;
    idp.set_misbehaviour(Misbehaviour::Slow(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let res = b.callback(&flow).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_flow_cookie_cleared(&res);
    let msg = assert_refused(res, StatusCode::GATEWAY_TIMEOUT).await;
    assert!(msg.contains("in time"), "{msg}");
}

#[tokio::test]
async fn idp_down_at_the_callback_gives_502() {
    let idp = idp().await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    let flow = b.authorize(&idp, "").await;
    idp.clone().shutdown().await;
    let res = b.callback(&flow).await;
    assert_flow_cookie_cleared(&res);
    let status = res.status();
    assert!(
        status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
    assert_refused(res, status).await;
}

#[tokio::test]
async fn discovery_issuer_mismatch_fails_login_start_and_is_retried() {
    let idp = idp().await;
    let clock = Clock::manual();
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).clock(clock.clone())));
    idp.set_misbehaviour(Misbehaviour::DiscoveryIssuerMismatch);
    let res = b.get("/sso/key/generate").await;
    assert_eq!(cookie_value(&res, FLOW_COOKIE), None);
    let msg = assert_refused(res, StatusCode::BAD_GATEWAY).await;
    assert!(msg.contains("issuer"), "{msg}");
    assert_eq!(idp.count("/authorize"), 0);
    idp.set_misbehaviour(Misbehaviour::None);
    // The failure is remembered for a few seconds: callers fail fast instead of queueing.
    let res = b.get("/sso/key/generate").await;
    assert_refused(res, StatusCode::BAD_GATEWAY).await;
    assert_eq!(idp.count("/.well-known/openid-configuration"), 1);
    clock.advance(11);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/.well-known/openid-configuration"), 2);
}

// ---------------------------------------------------------------------------------------------
// Claims and access policy through the whole flow

fn bob(email: &str) -> MockUser {
    MockUser::new("bob")
        .claim("preferred_username", "bob")
        .claim("email", email)
}

#[tokio::test]
async fn allowed_email_domains_refuse_before_the_user_is_stored() {
    let idp = MockIdp::builder()
        .user(bob("bob@evil.com"))
        .user(MockUser::alice())
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let layer = layer(
        flow_builder(&idp)
            .allowed_email_domains(["Example.com"])
            .user_store(store.clone()),
    );
    let mut b = Browser::for_layer(&layer);
    let msg = assert_callback_refused(b.login(&idp, "").await, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("not an allowed email domain"), "{msg}");
    assert_eq!(store.user_count(), 0);
    assert_eq!(store.team_count(), 0);
    idp.select_user("alice");
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(store.user_count(), 1);
}

fn groups_claims() -> ClaimMapping {
    ClaimMapping {
        team_ids_field: Some("groups".into()),
        ..ClaimMapping::default()
    }
}

#[tokio::test]
async fn restricted_sso_group_needs_the_group() {
    let idp = MockIdp::builder()
        .user(bob("bob@example.com").claim("groups", json!(["devs"])))
        .user(MockUser::alice().claim("groups", json!(["devs", "llm-users"])))
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let layer = layer(
        builder()
            .provider(oidc(&idp).claims(groups_claims()))
            .ui_access_mode(UiAccessMode::RestrictedSsoGroup {
                group: "llm-users".into(),
                field: Some("groups".into()),
            })
            .user_store(store.clone()),
    );
    let mut b = Browser::for_layer(&layer);
    let res = b.login(&idp, "").await;
    let status = res.status();
    assert!(status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED);
    let msg = assert_callback_refused(res, status).await;
    assert!(!msg.contains("devs"), "groups leaked: {msg}");
    assert_eq!(store.user_count(), 0);

    idp.select_user("alice");
    assert_logged_in(&b.login(&idp, "").await, UI);
    let teams = b.whoami().await["team_ids"].clone();
    assert!(
        teams.as_array().unwrap().contains(&json!("llm-users")),
        "{teams}"
    );
}

#[tokio::test]
async fn admin_only_refuses_a_user_and_admits_the_proxy_admin() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let mut b = Browser::for_layer(&layer(
        flow_builder(&idp)
            .ui_access_mode(UiAccessMode::AdminOnly)
            .user_store(store.clone()),
    ));
    let res = b.login(&idp, "").await;
    let status = res.status();
    assert!(status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED);
    assert_callback_refused(res, status).await;
    assert_eq!(store.user_count(), 0, "refused user was stored");

    let mut b = Browser::for_layer(&layer(
        flow_builder(&idp)
            .ui_access_mode(UiAccessMode::AdminOnly)
            .proxy_admin_id("alice"),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "alice");
    assert_eq!(id["role"], "proxy_admin");
}

#[tokio::test]
async fn admin_only_admits_a_user_stored_as_admin() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let admin = UserRecord {
        user_id: "alice".into(),
        email: Some("alice@example.com".into()),
        role: UserRole::ProxyAdminViewer,
        teams: vec![],
        models: vec!["gpt-4o".into()],
        max_budget: None,
        budget_duration: None,
        metadata: serde_json::Map::new(),
    };
    store
        .clone()
        .oneshot(StoreRequest::InsertUser(admin))
        .await
        .unwrap();
    let mut b = Browser::for_layer(&layer(
        flow_builder(&idp)
            .ui_access_mode(UiAccessMode::AdminOnly)
            .user_store(store.clone()),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "proxy_admin_viewer");
    let user = stored_user(&store, "alice").await.unwrap();
    assert_eq!(user.role, UserRole::ProxyAdminViewer);
    assert_eq!(user.models, vec!["gpt-4o".to_owned()]);
}

#[tokio::test]
async fn role_mappings_turn_groups_into_the_highest_role() {
    let idp = idp_with(MockUser::alice().claim("groups", json!(["devs", "admins"]))).await;
    let store = MemoryUserStore::new();
    let mappings = RoleMappings {
        group_claim: "groups".into(),
        default_role: Some(UserRole::InternalUserViewer),
        roles: BTreeMap::from([
            (UserRole::ProxyAdmin, vec!["admins".to_owned()]),
            (UserRole::InternalUser, vec!["devs".to_owned()]),
        ]),
    };
    let claims = ClaimMapping {
        role_mappings: Some(mappings),
        ..ClaimMapping::default()
    };
    let mut b = Browser::for_layer(&layer(
        builder()
            .provider(oidc(&idp).claims(claims))
            .user_store(store.clone()),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "proxy_admin");
    let user = stored_user(&store, "alice").await.unwrap();
    assert_eq!(user.role, UserRole::ProxyAdmin);
}

#[tokio::test]
async fn keycloak_roles_and_teams_from_the_access_token() {
    let keycloak_user = || {
        MockUser::alice()
            .access_token_claim("realm_access", json!({ "roles": ["admins"] }))
            .access_token_claim("groups", json!(["team-kc"]))
    };
    let claims = ClaimMapping {
        team_ids_field: Some("groups".into()),
        role_mappings: Some(RoleMappings {
            group_claim: "realm_access.roles".into(),
            default_role: None,
            roles: BTreeMap::from([(UserRole::ProxyAdmin, vec!["admins".to_owned()])]),
        }),
        ..ClaimMapping::default()
    };
    let idp = MockIdp::builder()
        .access_token_jwt(true)
        .user(keycloak_user())
        .start()
        .await
        .unwrap();
    let mut b = Browser::for_layer(&layer(
        builder().provider(oidc(&idp).claims(claims.clone())),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["role"], "proxy_admin");
    assert_eq!(id["team_ids"], json!(["team-kc"]));

    // Opaque access tokens are skipped without error: no role, no teams.
    let idp = idp_with(keycloak_user()).await;
    let mut b = Browser::for_layer(&layer(builder().provider(oidc(&idp).claims(claims))));
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["role"], "internal_user_viewer");
    assert_eq!(id["team_ids"], json!([]));
}

#[tokio::test]
async fn a_role_claim_grants_nothing_unless_configured_and_the_stored_role_is_kept() {
    // Some IdPs let users edit profile attributes: a self-set `role` must not make an admin.
    let idp = MockIdp::builder()
        .access_token_jwt(true)
        .user(
            MockUser::alice()
                .claim("role", "proxy_admin")
                .claim("groups", json!(["devs"]))
                .access_token_claim("role", "proxy_admin"),
        )
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let mut admin_set = seeded("alice", "alice@example.com", UserRole::InternalUser);
    admin_set
        .metadata
        .insert("sso_subject".into(), json!("generic|alice"));
    seed(&store, admin_set.clone()).await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).user_store(store.clone())));
    assert_logged_in(&b.login(&idp, "").await, UI);
    // Neither the userinfo/id_token claim nor the access token's: the admin's choice stays.
    assert_eq!(b.whoami().await["role"], "internal_user");
    assert_eq!(stored_user(&store, "alice").await, Some(admin_set));

    // Role mappings are then the only source, without falling back to the claim ...
    let mappings = |default_role| ClaimMapping {
        role: Some("role".into()),
        role_mappings: Some(RoleMappings {
            group_claim: "groups".into(),
            default_role,
            roles: BTreeMap::from([(UserRole::ProxyAdminViewer, vec!["devs".to_owned()])]),
        }),
        ..ClaimMapping::default()
    };
    let mut b = Browser::for_layer(&layer(
        builder()
            .provider(oidc(&idp).claims(mappings(None)))
            .user_store(store.clone()),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    // ... and a role they give keeps syncing to the store at each login.
    assert_eq!(b.whoami().await["role"], "proxy_admin_viewer");
    assert_eq!(
        stored_user(&store, "alice").await.unwrap().role,
        UserRole::ProxyAdminViewer
    );
    idp.add_user(
        MockUser::alice()
            .claim("role", "proxy_admin")
            .claim("groups", json!(["x"])),
    );
    let mut b = Browser::for_layer(&layer(
        builder()
            .provider(oidc(&idp).claims(mappings(None)))
            .user_store(store.clone()),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(
        b.whoami().await["role"],
        "proxy_admin_viewer",
        "no match: kept"
    );

    // An explicitly configured claim is trusted (the operator's deliberate choice).
    let explicit = ClaimMapping {
        role: Some("role".into()),
        ..ClaimMapping::default()
    };
    let mut b = Browser::for_layer(&layer(
        builder()
            .provider(oidc(&idp).claims(explicit))
            .user_store(store.clone()),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "proxy_admin");
    assert_eq!(
        stored_user(&store, "alice").await.unwrap().role,
        UserRole::ProxyAdmin
    );
}

#[tokio::test]
async fn google_never_reads_a_role_claim() {
    let idp = idp_with(
        MockUser::new("goog-1")
            .claim("email", "g@example.com")
            .claim("email_verified", true)
            .claim("role", "proxy_admin")
            .claim("roles", json!(["proxy_admin"])),
    )
    .await;
    let google = tower_sso::provider::Provider::google(idp.client_id(), idp.client_secret())
        .issuer(idp.issuer());
    let mut b = Browser::for_layer(&layer(builder().provider(google)));
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "goog-1");
    assert_eq!(id["role"], "internal_user_viewer");
}

#[tokio::test]
async fn unverified_email_is_neither_stored_nor_in_the_session_nor_sent_upstream() {
    let idp = MockIdp::builder()
        .user(idp_user("sub-u", "u", "Boss@Corp.example", Some(false)))
        .user(idp_user("sub-v", "v", "V@Example.com", None))
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let layer = layer(
        flow_builder(&idp)
            .identity_headers(true)
            .user_store(store.clone()),
    );
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let seen = json_body(b.get("/whoami").await).await;
    assert_eq!(seen["identity"]["user_id"], "sub-u");
    assert_eq!(seen["identity"]["email"], serde_json::Value::Null, "{seen}");
    assert!(
        !seen.to_string().to_ascii_lowercase().contains("boss@corp"),
        "{seen}"
    );
    assert_eq!(stored_user(&store, "sub-u").await.unwrap().email, None);

    // Absent `email_verified` (Entra ID never sends it): kept everywhere.
    idp.select_user("sub-v");
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let seen = json_body(b.get("/whoami").await).await;
    assert_eq!(seen["identity"]["email"], "v@example.com");
    let forwarded = seen["forwarded"].to_string();
    assert!(forwarded.contains("v@example.com"), "{seen}");
    assert_eq!(
        stored_user(&store, "sub-v").await.unwrap().email.as_deref(),
        Some("v@example.com")
    );
}

#[tokio::test]
async fn pkce_is_sent_by_default_and_verified_at_the_token_endpoint() {
    let idp = idp().await;
    let (http, seen) = recording_client(&HttpClientConfig::default());
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).http_client(http)));
    let flow = b.authorize(&idp, "").await;
    assert!(flow.authorize_param("code_challenge").is_some());
    assert_logged_in(&b.callback(&flow).await, UI);
    let token = seen_to(&seen, "/token");
    assert_eq!(token.len(), 1);
    assert!(
        token[0].body.contains("code_verifier="),
        "{}",
        token[0].body
    );
    // client_secret_basic by default: credentials in the header, never in the body.
    assert!(
        token[0].headers[http::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    assert!(!token[0].body.contains("client_secret"));
}

#[tokio::test]
async fn pkce_off_sends_no_challenge_and_still_logs_in() {
    let idp = MockIdp::builder()
        .require_pkce(false)
        .start()
        .await
        .unwrap();
    let (http, seen) = recording_client(&HttpClientConfig::default());
    let mut b = Browser::for_layer(&layer(
        builder().provider(oidc(&idp).pkce(false)).http_client(http),
    ));
    let flow = b.authorize(&idp, "").await;
    assert_eq!(flow.authorize_param("code_challenge"), None);
    assert_eq!(flow.authorize_param("code_challenge_method"), None);
    assert_logged_in(&b.callback(&flow).await, UI);
    let token = seen_to(&seen, "/token");
    assert_eq!(token.len(), 1);
    assert!(
        !token[0].body.contains("code_verifier"),
        "{}",
        token[0].body
    );
}

#[tokio::test]
async fn client_secret_post_and_extra_token_headers() {
    let idp = MockIdp::builder()
        .client_auth(ClientAuth::Post)
        .start()
        .await
        .unwrap();
    let (http, seen) = recording_client(&HttpClientConfig::default());
    let mut b = Browser::for_layer(&layer(
        builder()
            .provider(
                oidc(&idp)
                    .client_auth(ClientAuthMethod::Post)
                    .token_header("X-Tenant", "acme"),
            )
            .http_client(http),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    let token = seen_to(&seen, "/token");
    assert_eq!(token.len(), 1);
    assert!(token[0].headers.get(http::header::AUTHORIZATION).is_none());
    assert!(
        token[0].body.contains("client_secret=test-secret"),
        "{}",
        token[0].body
    );
    assert!(token[0].body.contains("client_id=tower-sso-test"));
    assert_eq!(token[0].headers["x-tenant"], "acme");
    // Userinfo gets the bearer token, not the extra header.
    let userinfo = seen_to(&seen, "/userinfo");
    assert_eq!(userinfo.len(), 1);
    assert!(userinfo[0].headers.get("x-tenant").is_none());

    // The same provider refuses client_secret_basic: the login fails cleanly.
    let mut b = Browser::for_layer(&layer(flow_builder(&idp)));
    assert_callback_refused(b.login(&idp, "").await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn from_env_vars_logs_in() {
    let idp = idp_with(carol()).await;
    let mut vars: BTreeMap<String, String> = idp.env_vars().into_iter().collect();
    vars.insert("PROXY_BASE_URL".into(), BASE_URL.into());
    vars.insert("LITELLM_MASTER_KEY".into(), SECRET.into());
    let layer = SsoLayerBuilder::from_env_vars(|k| vars.get(k).cloned())
        .build()
        .expect("env config");
    assert_eq!(layer.callback_url(), CALLBACK_URL);
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "sub-8f2c");
    assert_eq!(id["provider"], "generic");
    // The id_token was verified with keys found by discovery.
    assert_eq!(idp.count("/jwks"), 1);
}

// ---------------------------------------------------------------------------------------------
// Microsoft Entra ID: Graph `/me` as the profile (no `sub` check), UPN with `mail` fallback.
// (More in tests/microsoft.rs.) The provider is `MockIdp`'s Entra stand-in: id_tokens of a tenant
// that is not pinned are verified against the keys and their own tenant's issuer, so the keys and
// Graph are the stand-in's.

const ENTRA_TENANT: &str = "11111111-2222-3333-4444-555555555555";

async fn entra_with(user: MockUser) -> MockIdp {
    MockIdp::builder()
        .entra(ENTRA_TENANT)
        .user(user)
        .start()
        .await
        .expect("MockIdp starts")
}

fn microsoft_at(idp: &MockIdp) -> tower_sso::provider::Provider {
    tower_sso::provider::Provider::microsoft(idp.client_id(), idp.client_secret(), Some("tenant-1"))
        .authorization_endpoint(format!("{}/authorize", idp.issuer()))
        .token_endpoint(format!("{}/token", idp.issuer()))
        .userinfo_endpoint(format!("{}/me", idp.graph_base_url()))
        .jwks_uri(format!("{}/jwks", idp.issuer()))
        .graph_base_url(idp.graph_base_url())
}

#[tokio::test]
async fn microsoft_profile_maps_graph_attributes() {
    let idp = entra_with(
        MockUser::new("aad-subject")
            .claim("id", "msft123")
            .claim("userPrincipalName", "Test.User@Example.com")
            .claim("displayName", "Test User")
            .claim("givenName", "Test")
            .claim("surname", "User"),
    )
    .await;
    let layer = layer(builder().provider(microsoft_at(&idp)));
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "msft123");
    assert_eq!(id["email"], "test.user@example.com");
    assert_eq!(id["display_name"], "Test User");
    assert_eq!(id["provider"], "microsoft");
}

#[tokio::test]
async fn microsoft_profile_without_upn_falls_back_to_mail() {
    let idp = entra_with(
        MockUser::new("aad-subject")
            .claim("id", "msft456")
            .claim("mail", "Microsoft_User@Example.com")
            .claim("displayName", "Microsoft User"),
    )
    .await;
    let layer = layer(builder().provider(microsoft_at(&idp)));
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["email"], "microsoft_user@example.com");
}

#[tokio::test]
async fn microsoft_role_comes_from_the_id_token_app_roles_only() {
    let user = MockUser::new("aad-subject")
        .claim("id", "msft789")
        .claim("userPrincipalName", "m@example.com")
        .claim("role", "proxy_admin");
    // App roles in the id_token: the first valid one.
    let idp = entra_with(user.clone().claim(
        "roles",
        json!(["Reader", "proxy_admin_viewer", "proxy_admin"]),
    ))
    .await;
    let mut b = Browser::for_layer(&layer(builder().provider(microsoft_at(&idp))));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "proxy_admin_viewer");

    // A `role` claim grants nothing.
    let idp = entra_with(user.clone()).await;
    let mut b = Browser::for_layer(&layer(builder().provider(microsoft_at(&idp))));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "internal_user_viewer");

    // No id_token: refused (it used to log in with no role). An Entra login is now tied to
    // the verified id_token's tenant and object id, so roles in the Graph profile never count.
    let idp = entra_with(user.claim("roles", json!(["proxy_admin"]))).await;
    idp.set_misbehaviour(Misbehaviour::NoIdToken);
    let res = Browser::for_layer(&layer(builder().provider(microsoft_at(&idp))))
        .login(&idp, "")
        .await;
    assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
}

// ---------------------------------------------------------------------------------------------
// Several providers: one redirect URI each, and a code only counts at its own provider's URI.

#[tokio::test]
async fn each_provider_has_its_own_redirect_uri_and_mix_up_is_refused() {
    let idp_a = idp().await;
    let idp_b = idp().await;
    let layer = layer(
        builder()
            .provider(oidc(&idp_a).name("a"))
            .provider(oidc(&idp_b).name("b")),
    );
    assert_eq!(layer.callback_url_for("a"), Some(CALLBACK_URL));
    let b_uri = format!("{CALLBACK_URL}/b");
    assert_eq!(layer.callback_url_for("b"), Some(b_uri.as_str()));
    assert_eq!(layer.callback_url_for("c"), None);

    let mut browser = Browser::for_layer(&layer);
    let url = browser.start(&idp_b, "provider=b").await;
    assert_eq!(
        query_param(&url, "redirect_uri").as_deref(),
        Some(b_uri.as_str())
    );

    // A login started with provider `a`, whose code is delivered to `b`'s redirect URI (as a
    // provider mixing up responses would make the browser do), is refused before any redemption.
    let mut browser = Browser::for_layer(&layer);
    let flow = browser.authorize(&idp_a, "provider=a").await;
    let target = flow
        .callback_target()
        .replace("/sso/callback?", "/sso/callback/b?");
    let res = browser.get(&target).await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("another identity provider"), "{msg}");
    assert_eq!(idp_a.count("/token") + idp_b.count("/token"), 0);
    // An unknown provider's callback path is not an endpoint.
    assert_eq!(
        browser
            .get("/sso/callback/zzz?state=x&code=y")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn two_flow_cookies_are_ambiguous_and_refused() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    // A second value for the flow cookie, as a sibling subdomain could plant one.
    let target = flow.callback_target();
    let req = get(
        &target,
        &[(
            "cookie",
            &format!("{FLOW_COOKIE}={}; {FLOW_COOKIE}=planted", flow.flow_cookie),
        )],
    );
    let res = send(&b.app, req).await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("several"), "{msg}");
    assert_eq!(idp.count("/token"), 0);
}

#[tokio::test]
async fn id_token_claims_are_checked_even_without_a_jwks() {
    // Explicit endpoints, no issuer and so no keys (LiteLLM's classic GENERIC_* configuration):
    // the signature cannot be checked, but audience, times, subject and nonce still are.
    let idp = idp().await;
    let provider = tower_sso::provider::Provider::generic(
        idp.client_id(),
        Some(idp.client_secret().to_owned()),
    )
    .authorization_endpoint(format!("{}/authorize", idp.issuer()))
    .token_endpoint(format!("{}/token", idp.issuer()))
    .userinfo_endpoint(format!("{}/userinfo", idp.issuer()));
    let layer = layer(builder().provider(provider));
    assert_logged_in(&Browser::for_layer(&layer).login(&idp, "").await, UI);
    for m in [
        Misbehaviour::WrongAudience,
        Misbehaviour::Expired,
        Misbehaviour::NonceMismatch,
        Misbehaviour::MissingSub,
    ] {
        idp.set_misbehaviour(m.clone());
        let res = Browser::for_layer(&layer).login(&idp, "").await;
        let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
        assert!(msg.starts_with("id_token rejected"), "{m:?}: {msg}");
    }
    assert_eq!(idp.count("/jwks"), 0);
}

#[tokio::test]
async fn cross_site_logout_is_refused_and_logout_ends_at_the_idp() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let token = b.cookie("token").unwrap().to_owned();
    let cookie = format!("token={token}");
    let res = send(
        &b.app,
        get(
            "/sso/logout",
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(b.get("/whoami").await.status(), StatusCode::OK);
    let res = send(
        &b.app,
        get(
            "/sso/logout",
            &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("{}/logout", idp.issuer()));
    assert_eq!(b.get("/whoami").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_new_login_revokes_the_session_the_browser_still_holds() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp));
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let old = b.cookie("token").unwrap().to_owned();
    assert_logged_in(&b.login(&idp, "").await, UI);
    let copy = send(
        &b.app,
        get("/whoami", &[("cookie", &format!("token={old}"))]),
    )
    .await;
    let msg = assert_401_json(copy).await;
    assert!(msg.contains("revoked"), "{msg}");
    assert_eq!(b.get("/whoami").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn microsoft_graph_profile_of_another_object_is_refused() {
    let idp = entra_with(
        MockUser::new("aad-subject")
            .claim("oid", "object-1")
            .claim("id", "object-2")
            .claim("userPrincipalName", "x@example.com"),
    )
    .await;
    let layer = layer(builder().provider(microsoft_at(&idp)));
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("Graph profile"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// Account takeover: how a login finds its stored user (subject binding, e-mail linking, ids).

const BOUND_MSG: &str = "this account is bound to another identity at the identity provider";

/// A stored user created outside SSO (by an admin): no `sso_subject` binding.
fn seeded(id: &str, email: &str, role: UserRole) -> UserRecord {
    UserRecord {
        user_id: id.into(),
        email: Some(email.into()),
        role,
        teams: vec![],
        models: vec![],
        max_budget: None,
        budget_duration: None,
        metadata: serde_json::Map::new(),
    }
}

async fn seed(store: &MemoryUserStore, user: UserRecord) {
    store
        .clone()
        .oneshot(StoreRequest::InsertUser(user))
        .await
        .expect("seeded");
}

/// An IdP user with subject `sub`, user name `name` and e-mail `email`, `email_verified` set to
/// `verified` (absent when `None`).
fn idp_user(sub: &str, name: &str, email: &str, verified: Option<bool>) -> MockUser {
    let u = MockUser::new(sub)
        .claim("preferred_username", name)
        .claim("email", email);
    match verified {
        Some(v) => u.claim("email_verified", v),
        None => u,
    }
}

#[tokio::test]
async fn takeover_by_email_is_refused_by_default() {
    // LiteLLM #36942: an IdP user who puts the admin's address in their profile became the admin.
    let idp = MockIdp::builder()
        .user(idp_user(
            "sub-mallory",
            "mallory",
            "boss@corp.example",
            Some(false),
        ))
        .user(idp_user(
            "sub-mallory2",
            "mallory2",
            "BOSS@corp.example",
            Some(true),
        ))
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let root = seeded("root-admin", "boss@corp.example", UserRole::ProxyAdmin);
    seed(&store, root.clone()).await;
    let layer = layer(flow_builder(&idp).user_store(store.clone()));

    // An address the IdP marks unverified is dropped: mallory logs in as herself, without it,
    // and never as the admin.
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "sub-mallory");
    assert_eq!(id["role"], "internal_user_viewer");
    assert_eq!(id["email"], serde_json::Value::Null);
    let mallory = stored_user(&store, "sub-mallory").await.unwrap();
    assert_eq!(mallory.email, None);

    // E-mails are unique: a verified address that belongs to the admin is refused (409), and
    // is never resolved by handing over the admin's account; linking by e-mail is off by default.
    idp.select_user("sub-mallory2");
    let mut b = Browser::for_layer(&layer);
    let msg = assert_callback_refused(b.login(&idp, "").await, StatusCode::CONFLICT).await;
    assert_eq!(msg, EMAIL_TAKEN_MSG);

    assert_eq!(stored_user(&store, "sub-mallory2").await, None);
    assert_eq!(stored_user(&store, "root-admin").await, Some(root));
    assert_eq!(store.user_count(), 2);
}

const EMAIL_TAKEN_MSG: &str =
    "another account already uses this e-mail address: ask an administrator to link the accounts";

#[tokio::test]
async fn link_accounts_by_email_needs_a_verified_address_and_an_unbound_record() {
    let idp = MockIdp::builder()
        .user(idp_user(
            "sub-mallory",
            "mallory",
            "boss@corp.example",
            Some(false),
        ))
        .user(idp_user("sub-nomark", "nomark", "boss@corp.example", None))
        .user(idp_user(
            "sub-boss",
            "boss",
            "Boss@Corp.example",
            Some(true),
        ))
        .user(idp_user("sub-x", "x", "ops@corp.example", Some(true)))
        .start()
        .await
        .unwrap();
    let root = seeded("root-admin", "boss@corp.example", UserRole::ProxyAdmin);
    let linking = |store: &MemoryUserStore| {
        layer(
            flow_builder(&idp)
                .link_accounts_by_email(true)
                .user_store(store.clone()),
        )
    };

    // Marked unverified: the address is dropped, so nothing to link; a user of its own.
    let store = MemoryUserStore::new();
    seed(&store, root.clone()).await;
    idp.select_user("sub-mallory");
    let mut b = Browser::for_layer(&linking(&store));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["user_id"], "sub-mallory");
    assert_eq!(stored_user(&store, "root-admin").await, Some(root.clone()));
    // Verification unknown: not linked; the address is taken, so refused (409).
    let store = MemoryUserStore::new();
    seed(&store, root.clone()).await;
    idp.select_user("sub-nomark");
    let mut b = Browser::for_layer(&linking(&store));
    let msg = assert_callback_refused(b.login(&idp, "").await, StatusCode::CONFLICT).await;
    assert_eq!(msg, EMAIL_TAKEN_MSG);
    assert_eq!(stored_user(&store, "sub-nomark").await, None);
    assert_eq!(stored_user(&store, "root-admin").await, Some(root.clone()));
    assert_eq!(store.user_count(), 1);

    let store = MemoryUserStore::new();
    seed(&store, root.clone()).await;
    let mut ops = seeded("ops", "ops@corp.example", UserRole::ProxyAdmin);
    ops.metadata
        .insert("sso_subject".into(), json!("generic|someone-else"));
    seed(&store, ops.clone()).await;
    let layer = linking(&store);

    // Verified, unbound record: linked and bound to this subject.
    idp.select_user("sub-boss");
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "root-admin");
    assert_eq!(id["role"], "proxy_admin");
    assert_eq!(stored_user(&store, "sub-boss").await, None);
    let linked = stored_user(&store, "root-admin").await.unwrap();
    assert_eq!(linked.metadata["sso_subject"], "generic|sub-boss");
    assert_eq!(
        (linked.role, linked.email.as_deref()),
        (UserRole::ProxyAdmin, Some("boss@corp.example"))
    );

    // Verified, but the record is bound to another subject: 403, nothing written.
    let before = store.user_count();
    idp.select_user("sub-x");
    let mut b = Browser::for_layer(&layer);
    let msg = assert_callback_refused(b.login(&idp, "").await, StatusCode::FORBIDDEN).await;
    assert_eq!(msg, BOUND_MSG);
    assert_eq!(stored_user(&store, "ops").await, Some(ops));
    assert_eq!(stored_user(&store, "sub-x").await, None);
    assert_eq!(store.user_count(), before);
}

#[tokio::test]
async fn renamed_idp_user_cannot_take_over_a_bound_account() {
    // `preferred_username` is editable at some IdPs: subject B renames itself to `alice`. With
    // upstream's ids (GENERIC_USER_ID_ATTRIBUTE=preferred_username), the binding stops it.
    let idp = MockIdp::builder()
        .user(MockUser::alice())
        .user(idp_user("sub-B", "alice", "b@example.com", Some(true)))
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let layer_for = |mode: UiAccessMode| {
        layer(
            builder()
                .provider(oidc(&idp).claims(upstream_ids()))
                .ui_access_mode(mode)
                .proxy_admin_id("alice")
                .user_store(store.clone()),
        )
    };
    let open = layer_for(UiAccessMode::All);
    let mut b = Browser::for_layer(&open);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let alice = stored_user(&store, "alice").await.unwrap();
    assert_eq!(alice.metadata["sso_subject"], "generic|alice");

    idp.select_user("sub-B");
    // Both the plain path and the admin_only pre-check (which looks the user up before writing).
    for mode in [UiAccessMode::All, UiAccessMode::AdminOnly] {
        let mut b = Browser::for_layer(&layer_for(mode));
        let msg = assert_callback_refused(b.login(&idp, "").await, StatusCode::FORBIDDEN).await;
        assert_eq!(msg, BOUND_MSG);
        assert_eq!(stored_user(&store, "alice").await.as_ref(), Some(&alice));
        assert_eq!(store.user_count(), 1);
        assert_eq!(store.team_count(), 0);
    }

    // The real alice still gets in.
    idp.select_user("alice");
    let mut b = Browser::for_layer(&open);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["user_id"], "alice");
}

#[tokio::test]
async fn an_admin_created_user_is_bound_only_by_a_login_with_its_verified_email() {
    // Subject B renamed itself `alice` (upstream ids) and logs in *before* the real alice.
    let idp = MockIdp::builder()
        .user(idp_user("sub-B", "alice", "b@example.com", Some(true)))
        .user(idp_user("sub-C", "alice", "alice@example.com", None))
        .user(MockUser::alice())
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let created = seeded("alice", "alice@example.com", UserRole::InternalUser);
    seed(&store, created.clone()).await;
    let layer = layer(
        builder()
            .provider(oidc(&idp).claims(upstream_ids()))
            .proxy_admin_id("alice")
            .user_store(store.clone()),
    );
    // Another e-mail, or the right one without the IdP vouching for it: refused, nothing written.
    for sub in ["sub-B", "sub-C"] {
        idp.select_user(sub);
        let res = Browser::for_layer(&layer).login(&idp, "").await;
        let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
        assert_eq!(msg, NOT_LINKED_MSG, "{sub}");
        assert_eq!(stored_user(&store, "alice").await.as_ref(), Some(&created));
        assert_eq!(store.user_count(), 1);
    }

    // The stored address, verified: bound, and (PROXY_ADMIN_ID) promoted only now.
    idp.select_user("alice");
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "proxy_admin");
    let alice = stored_user(&store, "alice").await.unwrap();
    assert_eq!(alice.metadata["sso_subject"], "generic|alice");
    assert_eq!(alice.role, UserRole::ProxyAdmin);

    idp.select_user("sub-B");
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
    assert_eq!(msg, BOUND_MSG);
    assert_eq!(stored_user(&store, "alice").await, Some(alice));
}

#[tokio::test]
async fn an_admin_pre_bound_user_logs_in_without_an_email() {
    let idp = idp_with(MockUser::new("sub-ops").claim("preferred_username", "ops")).await;
    let store = MemoryUserStore::new();
    let mut ops = seeded("sub-ops", "", UserRole::ProxyAdminViewer);
    ops.email = None;
    ops.metadata
        .insert("sso_subject".into(), json!("generic|sub-ops"));
    seed(&store, ops).await;
    let mut b = Browser::for_layer(&layer(flow_builder(&idp).user_store(store.clone())));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "proxy_admin_viewer");
    // Without the binding, the same login is refused (no e-mail to prove anything with).
    let store = MemoryUserStore::new();
    let mut unbound = seeded("sub-ops", "", UserRole::ProxyAdminViewer);
    unbound.email = None;
    seed(&store, unbound).await;
    let res = Browser::for_layer(&layer(flow_builder(&idp).user_store(store.clone())))
        .login(&idp, "")
        .await;
    let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
    assert_eq!(msg, NOT_LINKED_MSG);
}

#[tokio::test]
async fn the_default_user_id_is_the_subject_not_the_editable_user_name() {
    // Subject B renames itself `alice`: by default that changes nothing, B is `sub-B`.
    let idp = MockIdp::builder()
        .user(idp_user("sub-B", "alice", "b@example.com", Some(true)))
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let created = seeded("alice", "alice@example.com", UserRole::InternalUser);
    seed(&store, created.clone()).await;
    let mut b = Browser::for_layer(&layer(
        flow_builder(&idp)
            .proxy_admin_id("alice")
            .user_store(store.clone()),
    ));
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "sub-B");
    assert_eq!(id["role"], "internal_user_viewer");
    assert_eq!(stored_user(&store, "alice").await, Some(created));
}

#[tokio::test]
async fn with_several_providers_ids_of_all_but_the_first_are_namespaced() {
    // The same user id ("alice") at two providers: two users (with two e-mails, which are
    // unique among users).
    let idp_a = idp().await;
    let idp_b = idp_with(
        MockUser::new("alice")
            .claim("email", "alice@b.example")
            .claim("email_verified", true),
    )
    .await;
    let store = MemoryUserStore::new();
    let layer = layer(
        builder()
            .provider(oidc(&idp_a).name("a"))
            .provider(oidc(&idp_b).name("b"))
            .proxy_admin_id("alice")
            .user_store(store.clone()),
    );
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp_a, "provider=a").await, UI);
    let id = b.whoami().await;
    assert_eq!(
        (&id["user_id"], &id["role"]),
        (&json!("alice"), &json!("proxy_admin"))
    );

    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp_b, "provider=b").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "b:alice");
    assert_eq!(id["role"], "internal_user_viewer");
    let other = stored_user(&store, "b:alice").await.unwrap();
    assert_eq!(other.metadata["sso_subject"], "b|alice");
    assert_eq!(store.user_count(), 2);
}

const NOT_LINKED_MSG: &str =
    "this account is not linked to a single sign-on identity yet: ask an administrator";

/// Upstream's user ids: the (user-editable at some IdPs) `preferred_username`.
fn upstream_ids() -> ClaimMapping {
    ClaimMapping {
        user_id: "preferred_username".into(),
        ..ClaimMapping::default()
    }
}

#[tokio::test]
async fn fallback_user_id_is_the_verified_email_or_the_subject_never_the_names() {
    let idp = MockIdp::builder()
        // No preferred_username; a first name that is the admin id.
        .user(
            MockUser::new("sub-d1")
                .claim("email", "Dana@Example.com")
                .claim("email_verified", true)
                .claim("first_name", "admin@corp.example"),
        )
        .user(
            MockUser::new("sub-d2")
                .claim("first_name", "admin@corp.example")
                .claim("last_name", ""),
        )
        .user(
            MockUser::new("sub-d3")
                .claim("email", "jane@example.com")
                .claim("email_verified", false)
                .claim("first_name", "Jane")
                .claim("last_name", "Doe"),
        )
        .user(
            MockUser::new("sub-d4")
                .claim("email", "jane.doe@example.com")
                .claim("first_name", "Jane")
                .claim("last_name", "Doe"),
        )
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    // Upstream ids: `preferred_username`, which these users lack, so the fallback decides.
    let layer = layer(
        builder()
            .provider(oidc(&idp).claims(upstream_ids()))
            .proxy_admin_id("admin@corp.example")
            .user_store(store.clone()),
    );
    for (sub, expected) in [
        ("sub-d1", "dana@example.com"),
        ("sub-d2", "sub-d2"),
        ("sub-d3", "sub-d3"),
        ("sub-d4", "sub-d4"),
    ] {
        idp.select_user(sub);
        let mut b = Browser::for_layer(&layer);
        assert_logged_in(&b.login(&idp, "").await, UI);
        let id = b.whoami().await;
        assert_eq!(id["user_id"], expected, "{sub}");
        assert_eq!(id["role"], "internal_user_viewer", "{sub}");
    }
    assert_eq!(store.user_count(), 4, "the two Jane Does are two users");
    assert_eq!(stored_user(&store, "admin@corp.example").await, None);
    assert_eq!(stored_user(&store, "JaneDoe").await, None);
}

#[tokio::test]
async fn allowed_email_domains_refuse_an_unverified_address_before_the_store() {
    let idp = MockIdp::builder()
        .user(idp_user("sub-e1", "erin", "erin@example.com", Some(false)))
        .user(
            MockUser::new("sub-e2")
                .claim("preferred_username", "erin2")
                .claim("email", "erin2@example.com")
                .claim("email_verified", "false"),
        )
        .user(idp_user("sub-f", "frank", "frank@example.com", None))
        .start()
        .await
        .unwrap();
    let store = MemoryUserStore::new();
    let layer = layer(
        flow_builder(&idp)
            .allowed_email_domains(["example.com"])
            .user_store(store.clone()),
    );
    // An unverified address is dropped at claim mapping: refused as a login without one.
    for sub in ["sub-e1", "sub-e2"] {
        idp.select_user(sub);
        let res = Browser::for_layer(&layer).login(&idp, "").await;
        let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
        assert!(msg.contains("did not return an email address"), "{msg}");
        assert_eq!(store.user_count(), 0);
        assert_eq!(store.team_count(), 0);
    }
    // No `email_verified` at all (Entra ID / Graph never sends it): allowed.
    idp.select_user("sub-f");
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["user_id"], "sub-f");
    assert_eq!(store.user_count(), 1);
}

#[tokio::test]
async fn kelvin_sign_email_does_not_link_to_an_ascii_address() {
    // U+212A KELVIN SIGN lower-cases to an ASCII `k` under Unicode case folding.
    let kelvin = "admin@\u{212A}orp.example";
    let idp = idp_with(idp_user("sub-k", "kelvin", kelvin, Some(true))).await;
    let store = MemoryUserStore::new();
    let admin = seeded("korp-admin", "admin@korp.example", UserRole::ProxyAdmin);
    seed(&store, admin.clone()).await;
    let restricted = layer(
        flow_builder(&idp)
            .link_accounts_by_email(true)
            .allowed_email_domains(["korp.example"])
            .user_store(store.clone()),
    );
    // The domain check does not fold either: not korp.example.
    let res = Browser::for_layer(&restricted).login(&idp, "").await;
    assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(store.user_count(), 1);

    let open = layer(
        flow_builder(&idp)
            .link_accounts_by_email(true)
            .user_store(store.clone()),
    );
    let mut b = Browser::for_layer(&open);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "sub-k");
    assert_eq!(id["role"], "internal_user_viewer");
    assert_ne!(id["email"], "admin@korp.example");
    assert_eq!(stored_user(&store, "korp-admin").await, Some(admin));
    let k = stored_user(&store, "sub-k").await.unwrap();
    assert_eq!(k.email.as_deref(), Some(kelvin));
}

// ---------------------------------------------------------------------------------------------
// Cookie attributes that depend on configuration, and the remaining configuration shapes.

fn session_set_cookie(res: &AppResponse) -> String {
    set_cookies(res)
        .into_iter()
        .find(|c| c.starts_with("token=") && !c.starts_with("token=;"))
        .expect("session cookie")
}

#[tokio::test]
async fn session_cookie_can_be_left_readable_by_javascript() {
    let idp = idp().await;
    let layer = layer(flow_builder(&idp).session_cookie_http_only(false));
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    let cookie = session_set_cookie(&res);
    let attrs: Vec<&str> = cookie.split("; ").collect();
    assert!(!attrs.contains(&"HttpOnly"), "{cookie}");
    for attr in ["Secure", "SameSite=Lax", "Path=/", "Max-Age=86400"] {
        assert!(attrs.contains(&attr), "{attr}: {cookie}");
    }
}

#[tokio::test]
async fn plain_http_base_url_sets_no_secure_cookies() {
    let idp = idp().await;
    let layer = SsoLayer::builder()
        .base_url("http://127.0.0.1:9")
        .session_secret(SECRET)
        .provider(oidc(&idp))
        .session_duration(Duration::from_secs(3600))
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    let start = start_login(&app, "/sso/key/generate").await;
    let res = http_client()
        .get(start.authorize_url.parse().unwrap())
        .await
        .unwrap();
    let callback = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        callback.starts_with("http://127.0.0.1:9/sso/callback?"),
        "{callback}"
    );
    let res = finish_login(&app, &callback, Some(&start.flow_cookie)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = session_set_cookie(&res);
    let attrs: Vec<&str> = cookie.split("; ").collect();
    assert!(!attrs.contains(&"Secure"), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(attrs.contains(&attr), "{attr}: {cookie}");
    }
}

#[tokio::test]
async fn static_state_still_binds_each_login_to_its_browser() {
    let idp = idp().await;
    let layer = layer(builder().provider(oidc(&idp).static_state("litellm")));
    let mut first = Browser::for_layer(&layer);
    let mut second = Browser::for_layer(&layer);
    let a = first.authorize(&idp, "").await;
    let b = second.authorize(&idp, "").await;
    assert_eq!(a.authorize_param("state").as_deref(), Some("litellm"));
    assert_eq!(b.authorize_param("state").as_deref(), Some("litellm"));
    // Concurrent logins with the same state do not collide, and each finishes once.
    assert_logged_in(&second.callback(&b).await, UI);
    assert_logged_in(&first.callback(&a).await, UI);
    assert_callback_refused(first.callback(&a).await, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn allowed_email_domains_refuse_a_user_without_an_email() {
    let idp = idp_with(MockUser::new("no-mail").claim("preferred_username", "nomail")).await;
    let store = MemoryUserStore::default();
    let layer = layer(
        flow_builder(&idp)
            .allowed_email_domains(["example.com"])
            .user_store(store.clone()),
    );
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(stored_user(&store, "no-mail").await, None);
}

#[tokio::test]
async fn explicit_endpoints_with_a_jwks_uri_verify_signatures_without_discovery() {
    let idp = idp().await;
    let provider = tower_sso::provider::Provider::generic(
        idp.client_id(),
        Some(idp.client_secret().to_owned()),
    )
    .authorization_endpoint(format!("{}/authorize", idp.issuer()))
    .token_endpoint(format!("{}/token", idp.issuer()))
    .userinfo_endpoint(format!("{}/userinfo", idp.issuer()))
    .jwks_uri(format!("{}/jwks", idp.issuer()));
    let layer = layer(builder().provider(provider));
    assert_logged_in(&Browser::for_layer(&layer).login(&idp, "").await, UI);
    assert_eq!(idp.count("/jwks"), 1);
    assert_eq!(idp.count("/.well-known/openid-configuration"), 0);
    idp.set_misbehaviour(Misbehaviour::BadSignature);
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("signature"), "{msg}");
}

#[tokio::test]
async fn explicit_endpoints_override_discovered_ones() {
    let other = idp().await;
    let idp = idp_with(carol()).await;
    // Discovery from `idp`, but userinfo explicitly at `other` (which does not know the access
    // token, so the login falls back to the verified id_token claims).
    let provider = oidc(&idp).userinfo_endpoint(format!("{}/userinfo", other.issuer()));
    let layer = layer(builder().provider(provider));
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/.well-known/openid-configuration"), 1);
    assert_eq!(idp.count("/userinfo"), 0);
    assert_eq!(other.count("/userinfo"), 1);
    assert_eq!(b.whoami().await["user_id"], "sub-8f2c");
}

//! End to end against a real, certified OpenID provider (npm `oidc-provider`, see
//! `tests/oidc-provider/`): logins through the layer (discovery, PKCE S256,
//! `client_secret_basic`, id_token verified against the JWKS, userinfo), refused replays and
//! forged states, and a self-check of the fixture that drives the provider by hand.
//!
//! Skipped (with a notice) when node or `tests/oidc-provider/node_modules` is missing, unless
//! `CI=true`, where that fails the tests.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use common::oidc_provider::{self, NodeOidcProvider};
use common::*;
use http::{StatusCode, header};
use http_body_util::Full;
use tower_sso::SsoLayer;
use tower_sso::provider::Provider;
use url::Url;

/// The layer's base URL. Nothing listens there: the app is driven with `oneshot`, and the
/// provider only ever redirects the (simulated) browser to it.
const BASE_URL: &str = "http://127.0.0.1:9";

/// The callback URL the layer derives from [`BASE_URL`], to register at the provider.
fn callback_url() -> String {
    SsoLayer::builder()
        .base_url(BASE_URL)
        .session_secret(SECRET)
        .build()
        .expect("valid config")
        .callback_url()
        .to_owned()
}

/// Starts the provider with our callback URL registered. `None`: skipped (notice printed).
async fn start_provider() -> Option<NodeOidcProvider> {
    oidc_provider::start(&callback_url())
        .await
        .expect("start the oidc-provider fixture")
}

/// The app behind a layer that logs in through `provider`.
fn app_for(provider: &NodeOidcProvider) -> (SsoLayer, App) {
    let layer = SsoLayer::builder()
        .base_url(BASE_URL)
        .session_secret(SECRET)
        .provider(Provider::oidc(
            provider.issuer.as_str(),
            provider.client_id.as_str(),
            provider.client_secret.as_str(),
        ))
        .build()
        .expect("valid config");
    assert_eq!(layer.callback_url(), callback_url());
    let app = Upstream::default().behind(&layer);
    (layer, app)
}

/// Starts a login through `app` and signs in at the provider like a browser; returns the login
/// and the callback URL the provider sent the browser back to.
async fn login_at_provider(
    provider: &NodeOidcProvider,
    layer: &SsoLayer,
    app: &App,
    start_path: &str,
) -> (LoginStart, String) {
    let start = start_login(app, start_path).await;
    let callback = oidc_provider::browser_login(&start.authorize_url, layer.callback_url())
        .await
        .unwrap_or_else(|e| panic!("{e}\nprovider stderr:\n{}", provider.stderr_tail()));
    (start, callback)
}

/// Asserts a successful callback answer: 303 to `target` with a session cookie; returns it.
fn assert_logged_in(res: &AppResponse, target: &str, provider: &NodeOidcProvider) -> String {
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "callback refused: {:?}\nprovider stderr:\n{}",
        res.extensions().get::<tower_sso::SsoError>(),
        provider.stderr_tail()
    );
    assert_eq!(location(res), target);
    let token = cookie_value(res, "token").expect("a session cookie");
    assert!(
        cookie_value(res, FLOW_COOKIE_HTTP).is_none(),
        "the flow cookie is cleared: {:?}",
        set_cookies(res)
    );
    token
}

#[tokio::test]
async fn login_through_the_layer() {
    let Some(provider) = start_provider().await else {
        return;
    };
    let (layer, app) = app_for(&provider);

    let start = start_login(&app, "/sso/key/generate?return_to=/dashboard").await;
    let authorize = Url::parse(&start.authorize_url).expect("authorize URL");
    assert!(
        start.authorize_url.starts_with(&provider.issuer),
        "{authorize} is not at {}",
        provider.issuer
    );
    let param = |name: &str| url_param(&start.authorize_url, name);
    assert_eq!(
        param("client_id").as_deref(),
        Some(oidc_provider::CLIENT_ID)
    );
    assert_eq!(param("redirect_uri").as_deref(), Some(layer.callback_url()));
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("state").is_some_and(|s| s.len() >= 32));
    assert!(param("nonce").is_some_and(|s| s.len() >= 32));

    let callback = oidc_provider::browser_login(&start.authorize_url, layer.callback_url())
        .await
        .unwrap_or_else(|e| panic!("{e}\nprovider stderr:\n{}", provider.stderr_tail()));
    assert!(callback.starts_with(layer.callback_url()), "{callback}");
    assert_eq!(url_param(&callback, "iss"), Some(provider.issuer.clone()));
    assert_eq!(url_param(&callback, "state"), param("state"));

    let res = finish_login(&app, &callback, Some(&start.flow_cookie)).await;
    let token = assert_logged_in(&res, "/dashboard", &provider);

    let res = send(
        &app,
        get("/whoami", &[("cookie", &format!("token={token}"))]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = json_body(res).await;
    assert_eq!(seen["path"], "/whoami");
    let id = &seen["identity"];
    // `ClaimMapping::default()`: user id and display name from `sub` (the user id is never the
    // user-editable `preferred_username` unless configured so).
    assert_eq!(id["user_id"], oidc_provider::USER_SUB, "{id}");
    assert_ne!(id["user_id"], oidc_provider::USER_USERNAME, "{id}");
    assert_eq!(id["display_name"], oidc_provider::USER_SUB, "{id}");
    assert_eq!(id["email"], oidc_provider::USER_EMAIL, "{id}");
    assert_eq!(id["provider"], "generic", "{id}");
    // A new user without a role claim gets the default role, and no teams.
    assert_eq!(id["role"], "internal_user_viewer", "{id}");
    assert_eq!(id["team_ids"], serde_json::json!([]), "{id}");

    // The same session works as a bearer token.
    let res = send(
        &app,
        get("/whoami", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn replayed_callback_is_refused() {
    let Some(provider) = start_provider().await else {
        return;
    };
    let (layer, app) = app_for(&provider);
    let (start, callback) = login_at_provider(&provider, &layer, &app, "/sso/key/generate").await;
    let res = finish_login(&app, &callback, Some(&start.flow_cookie)).await;
    assert_logged_in(&res, "/ui/?login=success", &provider);

    // Replayed with the flow cookie (as an attacker holding both would) and without it.
    for cookie in [Some(start.flow_cookie.as_str()), None] {
        let res = finish_login(&app, &callback, cookie).await;
        let refused = cookie_value(&res, "token");
        let message = assert_401_json(res).await;
        assert_eq!(refused, None, "replay with cookie {cookie:?}: {message}");
    }
}

#[tokio::test]
async fn callback_with_tampered_state_is_refused() {
    let Some(provider) = start_provider().await else {
        return;
    };
    let (layer, app) = app_for(&provider);
    let (start, callback) = login_at_provider(&provider, &layer, &app, "/sso/key/generate").await;
    let state = url_param(&callback, "state").expect("state");

    for forged in [format!("{state}x"), state[1..].to_owned(), "x".repeat(43)] {
        let tampered = with_query_param(&callback, "state", &forged);
        let res = finish_login(&app, &tampered, Some(&start.flow_cookie)).await;
        let token = cookie_value(&res, "token");
        let message = assert_401_json(res).await;
        assert_eq!(token, None, "state {forged:?}: {message}");
        assert!(message.contains("state"), "{message}");
    }

    // The forgeries were refused before anything was redeemed: the genuine callback still works
    // (the provider's codes are single use, and the login state is taken only once).
    let res = finish_login(&app, &callback, Some(&start.flow_cookie)).await;
    assert_logged_in(&res, "/ui/?login=success", &provider);
}

/// The fixture itself: a hand-rolled authorization code flow with PKCE against the provider,
/// independent of the layer (pins what the provider does, so a layer failure is the layer's).
#[tokio::test]
async fn fixture_self_check_code_flow_with_pkce() {
    const CODE_VERIFIER: &str = "e2e-fixed-code-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    let Some(provider) = start_provider().await else {
        return;
    };
    let redirect_uri = callback_url();
    let issuer = provider.issuer.clone();
    let client = http_client();

    let (status, discovery) = fetch_json(
        &client,
        get(&format!("{issuer}/.well-known/openid-configuration"), &[]),
    )
    .await
    .expect("discovery");
    assert_eq!(status, StatusCode::OK, "{discovery}");
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"], true,
        "{discovery}"
    );
    let endpoint = |name: &str| {
        discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing from discovery: {discovery}"))
            .to_owned()
    };

    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        CODE_VERIFIER.as_bytes(),
    ));
    let state = "e2e-state-42";
    let authorize_url = Url::parse_with_params(
        &endpoint("authorization_endpoint"),
        [
            ("client_id", provider.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("response_type", "code"),
            ("scope", "openid email profile"),
            ("state", state),
            ("nonce", "e2e-nonce-7"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("authorize url");

    let callback = oidc_provider::browser_login(authorize_url.as_str(), &redirect_uri)
        .await
        .unwrap_or_else(|e| panic!("{e}\nprovider stderr:\n{}", provider.stderr_tail()));
    assert!(callback.starts_with(&redirect_uri), "{callback}");
    let code = url_param(&callback, "code").expect("code in callback");
    assert!(!code.is_empty());
    assert_eq!(url_param(&callback, "state").as_deref(), Some(state));
    assert_eq!(url_param(&callback, "iss"), Some(issuer.clone()));

    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("code_verifier", CODE_VERIFIER)
        .finish();
    let basic = STANDARD.encode(format!("{}:{}", provider.client_id, provider.client_secret));
    let (status, tokens) = fetch_json(
        &client,
        http::Request::post(endpoint("token_endpoint"))
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .expect("token request"),
    )
    .await
    .expect("token endpoint");
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(
        tokens["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3),
        "{tokens}"
    );
    let access_token = tokens["access_token"].as_str().unwrap_or_default();
    assert!(!access_token.is_empty(), "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");

    // The claims the layer's mapping reads come from userinfo.
    let (status, info) = fetch_json(
        &client,
        get(
            &endpoint("userinfo_endpoint"),
            &[("authorization", &format!("Bearer {access_token}"))],
        ),
    )
    .await
    .expect("userinfo");
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], oidc_provider::USER_SUB, "{info}");
    assert_eq!(
        info["preferred_username"],
        oidc_provider::USER_USERNAME,
        "{info}"
    );
    assert_eq!(info["email"], oidc_provider::USER_EMAIL, "{info}");

    // PKCE is enforced for this confidential client too.
    let mut no_pkce = authorize_url.clone();
    let kept: Vec<(String, String)> = authorize_url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    no_pkce.query_pairs_mut().clear().extend_pairs(kept);
    let refused = oidc_provider::browser_login(no_pkce.as_str(), &redirect_uri)
        .await
        .expect("an error redirect to the client");
    assert_eq!(
        url_param(&refused, "error").as_deref(),
        Some("invalid_request"),
        "authorize without PKCE must fail: {refused}"
    );
}

/// Back-Channel Logout 1.0 with the provider's `backchannelLogout` feature: the layer is
/// served on a loopback port registered as the client's `backchannel_logout_uri`; the user
/// logs in, then ends the session at the provider (its logout form, confirmed); the provider
/// posts a logout token to the layer, which revokes the session.
#[tokio::test]
async fn ending_the_session_at_the_provider_logs_the_user_out() {
    // The layer's own listener, for the provider's server-to-server POST.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    let backchannel_uri = format!("http://127.0.0.1:{port}/sso/backchannel-logout");
    let Some(provider) =
        oidc_provider::start_with_backchannel_logout(&callback_url(), Some(&backchannel_uri))
            .await
            .expect("start the oidc-provider fixture")
    else {
        return;
    };
    let (layer, app) = app_for(&provider);
    let router = axum::Router::new()
        .fallback(|| async { "inner service" })
        .layer(layer.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let start = start_login(&app, "/sso/key/generate").await;
    let (callback, jar) =
        oidc_provider::browser_login_keeping_cookies(&start.authorize_url, layer.callback_url())
            .await
            .unwrap_or_else(|e| panic!("{e}\nprovider stderr:\n{}", provider.stderr_tail()));
    let res = finish_login(&app, &callback, Some(&start.flow_cookie)).await;
    let token = assert_logged_in(&res, "/ui/?login=success", &provider);
    let whoami = |token: String| {
        let app = app.clone();
        async move {
            send(
                &app,
                get("/whoami", &[("cookie", &format!("token={token}"))]),
            )
            .await
            .status()
        }
    };
    assert_eq!(whoami(token.clone()).await, StatusCode::OK);
    // The session remembers the provider's session id.
    let payload = token.split('.').nth(1).expect("JWT payload");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("JSON claims");
    assert!(
        claims["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{claims}"
    );
    assert_eq!(claims["sub"], oidc_provider::USER_SUB);

    // The provider answers the confirmation only after its back-channel requests settled.
    oidc_provider::end_session(&provider.issuer, &jar)
        .await
        .unwrap_or_else(|e| panic!("{e}\nprovider stderr:\n{}", provider.stderr_tail()));
    let stderr = provider.stderr_tail();
    assert!(
        stderr.contains("backchannel.success"),
        "the provider's logout token was not accepted:\n{stderr}"
    );
    assert_eq!(whoami(token).await, StatusCode::UNAUTHORIZED);
    server.abort();
}

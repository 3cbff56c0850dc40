//! `GET /sso/get/ui_settings` and `GET /sso/readiness`: upstream's answers (fields, variable
//! names, messages, 200/503), from the environment and from code, plus the crate's live checks.

mod common;

use http::StatusCode;
use serde_json::{Value, json};
use tower_sso::provider::Provider;
use tower_sso::testing::MockIdp;
use tower_sso::{SsoLayer, SsoLayerBuilder, UiSettings};

use common::*;

/// A layer from `vars` (as `SsoLayer::from_env` would read them).
fn from_env(vars: Vec<(String, String)>) -> SsoLayer {
    SsoLayerBuilder::from_env_vars(move |k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .build()
    .expect("layer from env")
}

fn env(idp: &MockIdp, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = idp.env_vars();
    vars.extend(
        [("PROXY_BASE_URL", BASE_URL), ("LITELLM_MASTER_KEY", SECRET)]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

/// `GET path` with a fresh session of `layer`: (status, JSON body).
async fn fetch(layer: &SsoLayer, path: &str) -> (StatusCode, Value) {
    let app = Upstream::default().behind(layer);
    let token = token_for(layer, alice());
    let res = send(&app, get(path, &[("cookie", &format!("token={token}"))])).await;
    let status = res.status();
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    (status, json_body(res).await)
}

#[tokio::test]
async fn both_need_a_session() {
    let layer = builder().build().expect("layer");
    let app = Upstream::default().behind(&layer);
    for path in ["/sso/get/ui_settings", "/sso/readiness"] {
        assert_401_json(send(&app, get(path, &[])).await).await;
    }
}

#[tokio::test]
async fn ui_settings_from_the_environment() {
    let idp = MockIdp::start().await.expect("MockIdp");
    let layer = from_env(env(
        &idp,
        &[
            ("PROXY_LOGOUT_URL", "https://idp.example.com/bye"),
            (
                "LITELLM_UI_API_DOC_BASE_URL",
                "https://docs.example.com/api",
            ),
            ("PROXY_DEFAULT_TEAM_DISABLED", "true"),
        ],
    ));
    let (status, v) = fetch(&layer, "/sso/get/ui_settings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["PROXY_BASE_URL"], BASE_URL);
    assert_eq!(v["PROXY_LOGOUT_URL"], "https://idp.example.com/bye");
    assert_eq!(
        v["LITELLM_UI_API_DOC_BASE_URL"],
        "https://docs.example.com/api"
    );
    assert_eq!(v["DEFAULT_TEAM_DISABLED"], true);
    assert_eq!(v["SSO_ENABLED"], true);
    assert_eq!(v["NUM_SPEND_LOGS_ROWS"], Value::Null);
    assert_eq!(v["DISABLE_EXPENSIVE_DB_QUERIES"], false);
    assert_eq!(v["SSO_PROVIDERS"], json!(["generic"]));
    assert_eq!(v["LOGIN_URL"], "/sso/key/generate");

    // Unset: upstream's defaults.
    let layer = from_env(env(&idp, &[]));
    let (_, v) = fetch(&layer, "/sso/get/ui_settings").await;
    assert_eq!(v["PROXY_LOGOUT_URL"], Value::Null);
    assert_eq!(v["LITELLM_UI_API_DOC_BASE_URL"], Value::Null);
    assert_eq!(v["DEFAULT_TEAM_DISABLED"], false);
}

#[tokio::test]
async fn ui_settings_in_code_with_integrator_values() {
    let mut extra = serde_json::Map::new();
    extra.insert("THEME".into(), json!("dark"));
    // A clash with a field of the crate's: the crate's value wins.
    extra.insert("SSO_ENABLED".into(), json!("yes please"));
    let layer = builder()
        .ui_settings(UiSettings {
            api_doc_base_url: Some("https://docs.example.com".into()),
            default_team_disabled: true,
            num_spend_logs_rows: Some(2_000_000),
            disable_expensive_db_queries: true,
            extra,
        })
        .ui_setting("FEATURE_FLAGS", json!({"beta": true}))
        .build()
        .expect("layer");
    let (status, v) = fetch(&layer, "/sso/get/ui_settings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["LITELLM_UI_API_DOC_BASE_URL"], "https://docs.example.com");
    assert_eq!(v["DEFAULT_TEAM_DISABLED"], true);
    assert_eq!(v["NUM_SPEND_LOGS_ROWS"], 2_000_000);
    assert_eq!(v["DISABLE_EXPENSIVE_DB_QUERIES"], true);
    assert_eq!(v["SSO_ENABLED"], false, "no provider configured");
    assert_eq!(v["THEME"], "dark");
    assert_eq!(v["FEATURE_FLAGS"], json!({"beta": true}));
}

#[tokio::test]
async fn readiness_without_a_provider() {
    let layer = builder().build().expect("layer");
    let (status, v) = fetch(&layer, "/sso/readiness").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["sso_configured"], false);
    assert_eq!(v["message"], "No SSO provider configured");
    assert_eq!(v["verifier_cache"], "ok");
    assert_eq!(v["user_store"], "ok");
}

#[tokio::test]
async fn readiness_healthy_generic_provider() {
    let idp = MockIdp::start().await.expect("MockIdp");
    let layer = from_env(env(&idp, &[]));
    let (status, v) = fetch(&layer, "/sso/readiness").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["sso_configured"], true);
    assert_eq!(v["provider"], "generic");
    assert_eq!(v["message"], "Generic SSO is properly configured");
    assert_eq!(v["missing_environment_variables"], json!([]));
    assert_eq!(v["providers"], json!({"generic": "ok"}));
    assert_eq!(v["verifier_cache"], "ok");
    assert_eq!(v["user_store"], "ok");
    assert!(v.get("detail").is_none());
}

/// Asserts upstream's 503: the fields at the top level and under `detail`.
fn assert_unhealthy(status: StatusCode, v: &Value, provider: &str, missing: &[&str]) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    for body in [v, &v["detail"]] {
        assert_eq!(body["status"], "unhealthy", "{v}");
        assert_eq!(body["sso_configured"], true, "{v}");
        assert_eq!(body["provider"], provider, "{v}");
        assert_eq!(body["missing_environment_variables"], json!(missing), "{v}");
    }
}

#[tokio::test]
async fn readiness_names_upstreams_missing_variables() {
    // Microsoft without a secret or a tenant: upstream's two variables, in its order and words.
    let layer = builder()
        .provider(Provider::microsoft("client-id", "", None))
        .build()
        .expect("layer");
    let (status, v) = fetch(&layer, "/sso/readiness").await;
    assert_unhealthy(
        status,
        &v,
        "microsoft",
        &["MICROSOFT_CLIENT_SECRET", "MICROSOFT_TENANT"],
    );
    // Upstream's words first; the live checks may add what else failed (here Microsoft's
    // public keys, which this offline test cannot reach).
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "Microsoft SSO is configured but missing required environment variables: MICROSOFT_CLIENT_SECRET, MICROSOFT_TENANT"
        ),
        "{message}"
    );
    assert_eq!(v["detail"]["message"], v["message"]);
    // The live checks still report.
    assert_eq!(v["verifier_cache"], "ok");

    // A generic provider with explicit endpoints and no userinfo endpoint (nor an issuer).
    let layer = builder()
        .provider(
            Provider::generic("client-id", Some("secret".into()))
                .authorization_endpoint("https://idp.example.com/authorize")
                .token_endpoint("https://idp.example.com/token"),
        )
        .build()
        .expect("layer");
    let (status, v) = fetch(&layer, "/sso/readiness").await;
    assert_unhealthy(status, &v, "generic", &["GENERIC_USERINFO_ENDPOINT"]);
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Generic SSO is configured but missing required environment variables: GENERIC_USERINFO_ENDPOINT"),
        "{v}"
    );

    // Microsoft with both: healthy once its keys answer (here a loopback stand-in's JWKS).
    let idp = tower_sso::testing::MockIdp::builder()
        .start()
        .await
        .expect("MockIdp");
    let layer = builder()
        .provider(
            Provider::microsoft("client-id", "secret", Some("contoso.onmicrosoft.com"))
                .jwks_uri(format!("{}/jwks", idp.issuer())),
        )
        .build()
        .expect("layer");
    let (status, v) = fetch(&layer, "/sso/readiness").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["message"], "Microsoft SSO is properly configured");
}

#[tokio::test]
async fn readiness_is_503_naming_an_unreachable_provider() {
    let idp = MockIdp::start().await.expect("MockIdp");
    let layer = from_env(env(&idp, &[]));
    idp.shutdown().await;
    let (status, v) = fetch(&layer, "/sso/readiness").await;
    assert_unhealthy(status, &v, "generic", &[]);
    assert_eq!(v["providers"], json!({"generic": "unavailable"}));
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("provider generic: "), "{v}");
    assert_eq!(v["verifier_cache"], "ok");
    assert_eq!(v["user_store"], "ok");
}

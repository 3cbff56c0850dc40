//! The demo app: its routes, its layer configuration and how it is served. Shared by
//! `examples/demo.rs` and `examples/soak.rs` (and, through it, `tests/soak.rs`), so the soak
//! drives exactly the app the demo serves.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use tower_sso::testing::MockUser;
use tower_sso::{ConfigErrors, Identity, SsoLayer, SsoLayerBuilder};
/// Logs to stderr at `info` (`RUST_LOG` overrides it), as every example does.
#[allow(dead_code)] // Not every program that includes this file logs.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_sso=info".into()),
        )
        .init();
}

/// Environment variable `name`, when it is set and not blank.
#[allow(dead_code)]
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Puts a random session secret in `settings` when `LITELLM_MASTER_KEY` is not set, and says so.
#[allow(dead_code)]
pub fn ensure_session_secret(settings: &mut HashMap<String, String>) {
    if env("LITELLM_MASTER_KEY").is_none() {
        eprintln!(
            "warning: LITELLM_MASTER_KEY is not set: using a random session secret; sessions end when this process does"
        );
        settings.insert("LITELLM_MASTER_KEY".into(), random_secret());
    }
}

/// Whether the environment configures an identity provider (else the examples start the
/// built-in one).
#[allow(dead_code)]
pub fn provider_configured() -> bool {
    [
        "GENERIC_CLIENT_ID",
        "GOOGLE_CLIENT_ID",
        "MICROSOFT_CLIENT_ID",
    ]
    .iter()
    .any(|k| env(k).is_some())
}

/// Environment variable `name` parsed, or `default` when it is unset; the error names it.
#[allow(dead_code)]
pub fn env_or<T>(name: &str, default: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    env(name)
        .as_deref()
        .unwrap_or(default)
        .parse()
        .map_err(|e| format!("{name}: {e}"))
}

/// The users of the built-in OpenID provider (the first one is who [`LoginMode::Auto`] signs in).
///
/// [`LoginMode::Auto`]: tower_sso::testing::LoginMode::Auto
pub fn builtin_users() -> Vec<MockUser> {
    vec![
        MockUser::alice().claim("groups", vec!["engineering", "admins"]),
        MockUser::new("bob")
            .claim("email", "Bob@Example.com")
            .claim("preferred_username", "bob")
            .claim("name", "Bob Builder")
            .claim("groups", vec!["engineering"]),
    ]
}

/// The settings the demo uses where the environment says nothing: the base URL from the listen
/// address, `/health` public.
pub fn default_settings(listen: SocketAddr) -> HashMap<String, String> {
    let mut defaults = HashMap::new();
    defaults.insert("PROXY_BASE_URL".into(), format!("http://{listen}"));
    defaults.insert("SSO_PUBLIC_PATHS".into(), "/health".into());
    defaults
}

/// The claim mappings for the built-in provider's users (added when it is used).
pub fn builtin_provider_settings(defaults: &mut HashMap<String, String>) {
    defaults.insert("GENERIC_TEAM_IDS_JWT_FIELD".into(), "groups".into());
    defaults.insert("GENERIC_USER_DISPLAY_NAME_ATTRIBUTE".into(), "name".into());
    // The built-in provider takes any redirect URI, so the debug login works with it.
    defaults.insert("SSO_DEBUG_ENABLED".into(), "true".into());
}

/// The layer, from LiteLLM-style settings (`lookup` answers each variable).
pub fn layer(lookup: impl Fn(&str) -> Option<String>) -> Result<SsoLayer, ConfigErrors> {
    SsoLayerBuilder::from_env_vars(lookup).ui_path("/").build()
}

/// The routes behind the layer: `/` (HTML), `/whoami` (JSON), `/health` (public).
pub fn router(sso: SsoLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/whoami", get(whoami))
        .route("/health", get(|| async { "ok" }))
        .layer(sso)
}

/// Serves `app` on `listener` until the process ends, inserting each connection's peer address
/// (axum's `ConnectInfo`): the layer keeps its rate limits per client address.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn whoami(identity: Identity) -> impl IntoResponse {
    Json(identity)
}

async fn home(identity: Identity) -> Html<String> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
    };
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tower-sso demo</title></head><body>\
         <h1>Hello, {name}</h1>\
         <p>You are signed in as <b>{id}</b> ({email}), role <b>{role}</b>, teams {teams}, via {provider}.</p>\
         <p><a href=\"/whoami\">/whoami</a> · <a href=\"/sso/logout\">log out</a></p>\
         </body></html>",
        name = esc(identity.display_name().unwrap_or(identity.user_id())),
        id = esc(identity.user_id()),
        email = esc(identity.email().unwrap_or("no e-mail")),
        role = identity.role(),
        teams = esc(&identity.team_ids().join(", ")),
        provider = esc(identity.provider().unwrap_or("?")),
    ))
}

/// A random 32-byte session secret, hex.
pub fn random_secret() -> String {
    use std::fmt::Write;
    let mut buf = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut buf).is_err() {
        panic!("the system random number generator failed");
    }
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

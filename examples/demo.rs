//! A protected demo app.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! With no identity provider configured, it starts a built-in OpenID provider ([`MockIdp`]) on a
//! loopback port and logs visitors in through it (pick a user on its login page). With
//! `GENERIC_*`, `GOOGLE_*` or `MICROSOFT_*` variables set, it uses that provider instead; every
//! variable of [`SsoLayer::from_env`] applies.
//!
//! - `GET /` — a small HTML page (protected: a browser is sent to login first)
//! - `GET /whoami` — the [`Identity`] as JSON (protected: 401 JSON without a session)
//! - `GET /health` — public
//! - `GET /sso/logout` — ends the session
//! - `GET /sso/debug/login` — the debug login (on with the built-in provider, else with
//!   `SSO_DEBUG_ENABLED=true`): shows what a login would produce, sets no session
//! - the CLI login: `cargo run --example cli_login` prints a URL to open, then the token
//!
//! `LISTEN_ADDR` (default `127.0.0.1:4000`) is where it listens; `PROXY_BASE_URL` defaults to
//! `http://LISTEN_ADDR`; without `LITELLM_MASTER_KEY` a random session secret is used. The
//! built-in provider listens on `127.0.0.1:DEMO_IDP_PORT` (default 4100); a second demo finding
//! that port taken uses the first one's provider.
//!
//! With `REDIS_URL` (or `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`, or `REDIS_CLUSTER_NODES`)
//! and `DATABASE_URL`, login state and logouts are shared through Redis and users are kept in
//! PostgreSQL; the demo prints which it uses when it starts. Two instances sharing them (and
//! `LITELLM_MASTER_KEY`) finish each other's logins:
//!
//! ```text
//! export REDIS_URL=redis://127.0.0.1:6379 DATABASE_URL=postgres://postgres@127.0.0.1/sso LITELLM_MASTER_KEY=change-me-0123456789
//! LISTEN_ADDR=127.0.0.1:4001 cargo run --example demo &
//! LISTEN_ADDR=127.0.0.1:4000 PROXY_BASE_URL=http://127.0.0.1:4001 cargo run --example demo
//! ```
//!
//! A login started at `http://127.0.0.1:4000/` comes back to (and is finished by) the instance on
//! port 4001, and the session works on both.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Router;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use tower_sso::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LoginMode, MockIdp, MockUser};
use tower_sso::{Identity, SsoLayerBuilder};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_sso=info".into()),
        )
        .init();

    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let listen: SocketAddr = env("LISTEN_ADDR")
        .unwrap_or_else(|| "127.0.0.1:4000".to_owned())
        .parse()
        .map_err(|e| format!("LISTEN_ADDR: {e}"))?;

    let mut defaults: HashMap<String, String> = HashMap::new();
    defaults.insert("PROXY_BASE_URL".into(), format!("http://{listen}"));
    defaults.insert("SSO_PUBLIC_PATHS".into(), "/health".into());
    if env("LITELLM_MASTER_KEY").is_none() {
        eprintln!(
            "warning: LITELLM_MASTER_KEY is not set: using a random session secret; sessions end when this process does"
        );
        defaults.insert("LITELLM_MASTER_KEY".into(), random_secret());
    }

    // No provider configured: log in through a built-in OpenID provider.
    let has_provider = [
        "GENERIC_CLIENT_ID",
        "GOOGLE_CLIENT_ID",
        "MICROSOFT_CLIENT_ID",
    ]
    .iter()
    .any(|k| env(k).is_some());
    let idp_port: u16 = env("DEMO_IDP_PORT")
        .unwrap_or_else(|| "4100".to_owned())
        .parse()
        .map_err(|e| format!("DEMO_IDP_PORT: {e}"))?;
    let _idp = if has_provider {
        None
    } else {
        let started = MockIdp::builder()
            .port(idp_port)
            .login_mode(LoginMode::Form)
            .user(MockUser::alice().claim("groups", vec!["engineering", "admins"]))
            .user(
                MockUser::new("bob")
                    .claim("email", "Bob@Example.com")
                    .claim("preferred_username", "bob")
                    .claim("name", "Bob Builder")
                    .claim("groups", vec!["engineering"]),
            )
            .start()
            .await;
        let idp = match started {
            Ok(idp) => {
                println!(
                    "No identity provider configured: using the built-in OpenID provider at {}",
                    idp.issuer()
                );
                defaults.extend(idp.env_vars());
                Some(idp)
            }
            // Another demo instance runs it: share it (the instances then finish each other's
            // logins, as replicas behind a load balancer do).
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                let issuer = format!("http://127.0.0.1:{idp_port}");
                println!(
                    "No identity provider configured: port {idp_port} is taken, so using the built-in OpenID provider of another demo instance at {issuer}"
                );
                for (k, v) in [
                    ("GENERIC_ISSUER", issuer.clone()),
                    ("GENERIC_CLIENT_ID", DEFAULT_CLIENT_ID.to_owned()),
                    ("GENERIC_CLIENT_SECRET", DEFAULT_CLIENT_SECRET.to_owned()),
                    (
                        "GENERIC_AUTHORIZATION_ENDPOINT",
                        format!("{issuer}/authorize"),
                    ),
                    ("GENERIC_TOKEN_ENDPOINT", format!("{issuer}/token")),
                    ("GENERIC_USERINFO_ENDPOINT", format!("{issuer}/userinfo")),
                ] {
                    defaults.insert(k.to_owned(), v);
                }
                None
            }
            Err(e) => {
                return Err(format!("built-in OpenID provider on port {idp_port}: {e}").into());
            }
        };
        defaults.insert("GENERIC_TEAM_IDS_JWT_FIELD".into(), "groups".into());
        // The built-in provider takes any redirect URI, so the debug login works with it.
        defaults.insert("SSO_DEBUG_ENABLED".into(), "true".into());
        defaults.insert("GENERIC_USER_DISPLAY_NAME_ATTRIBUTE".into(), "name".into());
        idp
    };

    let sso = SsoLayerBuilder::from_env_vars(|k| env(k).or_else(|| defaults.get(k).cloned()))
        .ui_path("/")
        .build()?;
    println!("state: {}", sso.backends());

    let app = Router::new()
        .route("/", get(home))
        .route("/whoami", get(whoami))
        .route("/health", get(|| async { "ok" }))
        .layer(sso);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "tower-sso demo listening: open http://{listen}/ in a browser (GET /health is public)"
    );
    axum::serve(listener, app).await?;
    Ok(())
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

fn random_secret() -> String {
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

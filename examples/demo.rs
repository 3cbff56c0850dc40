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
//! - `GET /sso/auth` — forward authentication for a reverse proxy in front of other apps: `200`
//!   with `X-Forwarded-User` & co. for a valid session, else `401` with the login URL (see
//!   `examples/forward_auth.rs`)
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

#[path = "common/demo_app.rs"]
mod demo_app;

use std::net::SocketAddr;

use tower_sso::testing::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, LoginMode, MockIdp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_app::init_tracing();

    let env = demo_app::env;
    let listen: SocketAddr = demo_app::env_or("LISTEN_ADDR", "127.0.0.1:4000")?;

    let mut defaults = demo_app::default_settings(listen);
    demo_app::ensure_session_secret(&mut defaults);

    // No provider configured: log in through a built-in OpenID provider.
    let has_provider = demo_app::provider_configured();
    let idp_port: u16 = demo_app::env_or("DEMO_IDP_PORT", "4100")?;
    let _idp = if has_provider {
        None
    } else {
        let started = demo_app::builtin_users()
            .into_iter()
            .fold(MockIdp::builder(), |b, u| b.user(u))
            .port(idp_port)
            .login_mode(LoginMode::Form)
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
        demo_app::builtin_provider_settings(&mut defaults);
        idp
    };

    let sso = demo_app::layer(|k| env(k).or_else(|| defaults.get(k).cloned()))?;
    println!("state: {}", sso.backends());
    let sso_forward_auth = sso.forward_auth_path().map(str::to_owned);
    let app = demo_app::router(sso);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "tower-sso demo listening: open http://{listen}/ in a browser (GET /health is public)"
    );
    if let Some(path) = sso_forward_auth {
        println!("forward auth for a reverse proxy: GET http://{listen}{path}");
    }
    demo_app::serve(listener, app).await?;
    Ok(())
}

//! The layer as a forward-auth server behind a reverse proxy.
//!
//! ```text
//! cargo run --example forward_auth
//! ```
//!
//! It answers only the layer's endpoints (anything else is 404); the proxy in front protects
//! the real application by asking `GET /sso/auth` about every request, and sends the login and
//! its callback (`/sso/`) here. The README's "Behind nginx / Traefik / Envoy" has the proxy
//! configurations; `tests/nginx_forward_auth.rs` runs the nginx one against this server.
//!
//! - `GET /sso/auth` — `200` with `X-Forwarded-User`, `-Email`, `-Groups`,
//!   `-Preferred-Username` for a valid session, else `401` with the login URL in
//!   `X-Auth-Request-Redirect` (`?redirect=true`: a `303` to it for a browser)
//! - `GET /sso/key/generate?return_to=...`, `/sso/callback`, `/sso/logout` — the login
//!
//! `LISTEN_ADDR` (default `127.0.0.1:4180`) is where it listens; `PROXY_BASE_URL` (default
//! `http://127.0.0.1:8080`) is the proxy's public URL, where browsers log in; the proxy must
//! connect from an address in `SSO_TRUSTED_PROXIES` (default loopback) for the login to return
//! to the page the browser asked for. Without `LITELLM_MASTER_KEY` a random session secret is
//! used. With no `GENERIC_*`, `GOOGLE_*` or `MICROSOFT_*` provider configured, a built-in
//! OpenID provider ([`MockIdp`]) on a loopback port logs visitors in (pick a user on its page);
//! every variable of [`SsoLayer::from_env`](tower_sso::SsoLayer::from_env) applies.
//!
//! [`MockIdp`]: tower_sso::testing::MockIdp

#[path = "common/forward_auth_app.rs"]
mod forward_auth_app;

// For its session-secret generator and environment helpers.
#[allow(dead_code)]
#[path = "common/demo_app.rs"]
mod demo_app;

use std::net::SocketAddr;

use tower_sso::testing::{LoginMode, MockIdp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_app::init_tracing();

    let env = demo_app::env;
    let listen: SocketAddr = demo_app::env_or("LISTEN_ADDR", "127.0.0.1:4180")?;
    let proxy = env("PROXY_BASE_URL").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());

    let mut defaults = forward_auth_app::default_settings(&proxy);
    demo_app::ensure_session_secret(&mut defaults);
    let has_provider = demo_app::provider_configured();
    let _idp = if has_provider {
        None
    } else {
        let idp = forward_auth_app::builtin_users()
            .into_iter()
            .fold(MockIdp::builder(), |b, u| b.user(u))
            .login_mode(LoginMode::Form)
            .start()
            .await?;
        println!(
            "No identity provider configured: using the built-in OpenID provider at {}",
            idp.issuer()
        );
        defaults.extend(idp.env_vars());
        forward_auth_app::builtin_provider_settings(&mut defaults);
        Some(idp)
    };

    let sso = forward_auth_app::layer(|k| env(k).or_else(|| defaults.get(k).cloned()))?;
    println!("state: {}", sso.backends());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    match sso.forward_auth_path() {
        Some(path) => println!(
            "tower-sso forward-auth server on http://{listen}: point the proxy's auth request at http://{listen}{path} and its /sso/ at http://{listen}; browsers log in at {proxy}"
        ),
        None => println!("tower-sso on http://{listen} (the forward-auth endpoint is off)"),
    }
    forward_auth_app::serve(listener, sso).await?;
    Ok(())
}

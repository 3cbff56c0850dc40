//! A streaming reverse proxy with single sign-on in front of an HTTP upstream (a LiteLLM proxy,
//! say).
//!
//! ```text
//! UPSTREAM_URL=http://127.0.0.1:8000 cargo run --example reverse_proxy
//! ```
//!
//! Every request to `LISTEN` (default `127.0.0.1:4000`) needs a session, except the layer's own
//! endpoints (`/sso/...`) and `SSO_PUBLIC_PATHS`: a browser without one is sent to login, an API
//! client gets 401. With a session, the request goes to `UPSTREAM_URL` (an `http://` URL,
//! optionally with a path prefix) with `X-Forwarded-User`, `-Email`, `-Groups` and
//! `-Preferred-Username` set by the layer and without the session cookie or Bearer token;
//! bodies are streamed both ways (server-sent events arrive event by event). See
//! `examples/common/reverse_proxy.rs` for the header handling.
//!
//! Settings (environment):
//!
//! - `UPSTREAM_URL` (required): where to forward.
//! - `LISTEN` (default `127.0.0.1:4000`): where to listen (plain HTTP; put TLS in front, and
//!   list that terminator in `SSO_TRUSTED_PROXIES` so its `X-Forwarded-*` headers are kept).
//! - `UPSTREAM_TIMEOUT_SECS` (default 60): how long the upstream may take to send response
//!   headers (then 504); bodies are never timed.
//! - Everything [`SsoLayer::from_env`](tower_sso::SsoLayer::from_env) reads. `PROXY_BASE_URL`
//!   defaults to `http://LISTEN`; without `LITELLM_MASTER_KEY` a random session secret is used.
//!   `SSO_IDENTITY_HEADERS` and `SSO_STRIP_SESSION_TOKEN` are always on here.
//! - With no `GENERIC_*`, `GOOGLE_*` or `MICROSOFT_*` provider configured, a built-in OpenID
//!   provider ([`MockIdp`], the demo's users) runs on `127.0.0.1:DEMO_IDP_PORT` (default: any
//!   free port), as in `examples/demo.rs`.
//!
//! Ctrl-C stops accepting connections and lets open ones finish (up to 10 s).

#[allow(dead_code)]
#[path = "common/demo_app.rs"]
mod demo_app;
#[path = "common/reverse_proxy.rs"]
mod reverse_proxy;

use std::net::SocketAddr;
use std::time::Duration;

use tower_sso::testing::{LoginMode, MockIdp};

use reverse_proxy::{Proxy, ProxyConfig, TrustedPeers, UpstreamUrl};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_app::init_tracing();

    let env = demo_app::env;
    let upstream = env("UPSTREAM_URL")
        .ok_or("UPSTREAM_URL is required (for example http://127.0.0.1:8000)")?;
    let upstream = UpstreamUrl::parse(&upstream).map_err(|e| format!("UPSTREAM_URL: {e}"))?;
    let listen: SocketAddr = demo_app::env_or("LISTEN", "127.0.0.1:4000")?;
    let timeout = match env("UPSTREAM_TIMEOUT_SECS") {
        None => reverse_proxy::DEFAULT_RESPONSE_TIMEOUT,
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => Duration::from_secs(n),
            _ => return Err("UPSTREAM_TIMEOUT_SECS: a whole number of seconds above 0".into()),
        },
    };

    let mut defaults = demo_app::default_settings(listen);
    // The demo makes `/health` public; here every upstream path is protected unless configured.
    defaults.remove("SSO_PUBLIC_PATHS");
    demo_app::ensure_session_secret(&mut defaults);

    // No provider configured: log in through a built-in OpenID provider.
    let has_provider = demo_app::provider_configured();
    let _idp = if has_provider {
        None
    } else {
        let port: u16 = match env("DEMO_IDP_PORT") {
            Some(p) => p.parse().map_err(|e| format!("DEMO_IDP_PORT: {e}"))?,
            None => 0,
        };
        let idp = demo_app::builtin_users()
            .into_iter()
            .fold(MockIdp::builder(), |b, u| b.user(u))
            .port(port)
            .login_mode(LoginMode::Form)
            .start()
            .await
            .map_err(|e| format!("built-in OpenID provider: {e}"))?;
        println!(
            "No identity provider configured: using the built-in OpenID provider at {}",
            idp.issuer()
        );
        defaults.extend(idp.env_vars());
        demo_app::builtin_provider_settings(&mut defaults);
        Some(idp)
    };

    let lookup = |k: &str| env(k).or_else(|| defaults.get(k).cloned());
    let trusted = TrustedPeers::parse(lookup("SSO_TRUSTED_PROXIES").unwrap_or_default().split(','))
        .map_err(|e| format!("SSO_TRUSTED_PROXIES: {e}"))?;
    let sso = reverse_proxy::layer(lookup)?;
    println!("state: {}", sso.backends());
    let proxy = Proxy::new(ProxyConfig {
        response_timeout: timeout,
        trusted,
        ..ProxyConfig::new(upstream.clone())
    })?;

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!(
        "tower-sso reverse proxy listening on http://{listen}/, forwarding to http://{}",
        upstream.authority()
    );
    reverse_proxy::serve(listener, sso, proxy, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down: finishing open requests");
    })
    .await?;
    Ok(())
}

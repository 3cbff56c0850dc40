//! The target of the loopback load test (`scripts/load.sh`): the demo app served twice, bare
//! and behind the layer, so one load generator can compare them.
//!
//! ```text
//! cargo run --release --example load_target
//! ```
//!
//! Serves on two loopback ports (`--bare-port N`, `--layer-port N`; default any free port):
//!
//! - **layer**: the demo app exactly as `examples/demo.rs` serves it (`examples/common/demo_app.rs`:
//!   its layer configuration from LiteLLM-style settings, its routes, axum with `ConnectInfo`),
//!   with a built-in [`MockIdp`] (ES256) as its provider;
//! - **bare**: the same server and the same `/whoami` handler work (serialising the test user's
//!   [`Identity`] to JSON) without the layer: the identity is the one the layer's session
//!   codec issued with the session below, cloned into the handler.
//!
//! Then it prints, one per line, `BARE_URL=http://...`, `LAYER_URL=http://...` and
//! `COOKIE=token=...` (a session for a test user, issued with `layer.sessions().issue`), and
//! `READY`, and serves until killed. `GET {LAYER_URL}/whoami` with that cookie is the hot path:
//! a protected request with a valid session.
//!
//! The runtime has one worker thread unless `--workers N` says otherwise (the script pins the
//! process to one core).

#[path = "common/demo_app.rs"]
#[allow(dead_code)]
mod demo_app;

use std::net::SocketAddr;

use axum::Router;
use axum::response::Json;
use axum::routing::get;
use tower_sso::session::NewSession;
use tower_sso::testing::{MockIdp, SigningAlg};
use tower_sso::{Identity, UserRole};

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn port(name: &str) -> Result<u16, String> {
    arg(name)
        .map(|v| v.parse().map_err(|e| format!("{name}: {e}")))
        .unwrap_or(Ok(0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers: usize = arg("--workers")
        .map(|v| v.parse())
        .transpose()
        .map_err(|e| format!("--workers: {e}"))?
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let bare = tokio::net::TcpListener::bind(("127.0.0.1", port("--bare-port")?)).await?;
    let layered = tokio::net::TcpListener::bind(("127.0.0.1", port("--layer-port")?)).await?;
    let layer_addr: SocketAddr = layered.local_addr()?;

    // The demo's configuration, with a built-in provider (never called during the load).
    let idp = MockIdp::builder()
        .signing_alg(SigningAlg::Es256)
        .start()
        .await?;
    let mut settings = demo_app::default_settings(layer_addr);
    settings.insert("LITELLM_MASTER_KEY".into(), demo_app::random_secret());
    settings.extend(idp.env_vars());
    demo_app::builtin_provider_settings(&mut settings);
    let sso = demo_app::layer(|k| settings.get(k).cloned())?;

    // A session as a real login would leave it: two teams, name, e-mail.
    let (token, identity) = sso.sessions().issue(NewSession {
        user_id: "load-user".into(),
        email: Some("load-user@example.com".into()),
        display_name: Some("Load User".into()),
        role: UserRole::InternalUser,
        team_ids: vec!["engineering".into(), "admins".into()],
        provider: Some("generic".into()),
        attributes: serde_json::Map::new(),
    })?;

    let bare_app = Router::new().route(
        "/whoami",
        get(move || {
            let identity: Identity = identity.clone();
            async move { Json(identity) }
        }),
    );
    let layered_app = demo_app::router(sso);

    println!("BARE_URL=http://{}", bare.local_addr()?);
    println!("LAYER_URL=http://{layer_addr}");
    println!("COOKIE=token={token}");
    println!("READY");

    let bare_server = tokio::spawn(demo_app::serve(bare, bare_app));
    let layered_server = tokio::spawn(demo_app::serve(layered, layered_app));
    tokio::select! {
        r = bare_server => r??,
        r = layered_server => r??,
    }
    drop(idp);
    Ok(())
}

//! The demo app with Prometheus metrics.
//!
//! ```text
//! cargo run --example metrics
//! ```
//!
//! The same app as `examples/demo.rs`, logging visitors in through a built-in OpenID provider,
//! plus `GET /metrics` (public) answering the Prometheus text format with the layer's metrics
//! (`tower_sso_*`, see the `tower_sso::metrics` module). Log in at `http://127.0.0.1:4000/`, then
//! look at `http://127.0.0.1:4000/metrics`.
//!
//! The recorder comes from `metrics-exporter-prometheus` without its HTTP listener (its default
//! features are off, so it adds no second HTTP server or TLS stack): the app renders the text
//! itself on its own route. The recorder may be installed before or after the layer is built.
//! `LISTEN_ADDR` (default `127.0.0.1:4000`) and `DEMO_IDP_PORT` (default 4100) as for the demo.

#[path = "common/demo_app.rs"]
mod demo_app;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower_sso::testing::{LoginMode, MockIdp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_app::init_tracing();

    // The recorder: every `tower_sso_*` metric goes here from now on.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    tower_sso::metrics::describe();

    let listen: SocketAddr = demo_app::env_or("LISTEN_ADDR", "127.0.0.1:4000")?;
    let idp_port: u16 = demo_app::env_or("DEMO_IDP_PORT", "4100")?;

    let idp = demo_app::builtin_users()
        .into_iter()
        .fold(MockIdp::builder(), |b, u| b.user(u))
        .port(idp_port)
        .login_mode(LoginMode::Form)
        .start()
        .await
        .map_err(|e| format!("built-in OpenID provider on port {idp_port}: {e}"))?;
    println!("built-in OpenID provider at {}", idp.issuer());

    let mut settings = demo_app::default_settings(listen);
    settings.insert("LITELLM_MASTER_KEY".into(), demo_app::random_secret());
    settings.insert("SSO_PUBLIC_PATHS".into(), "/health,/metrics".into());
    settings.extend(idp.env_vars());
    demo_app::builtin_provider_settings(&mut settings);
    let sso = demo_app::layer(|k| settings.get(k).cloned())?;

    // `/metrics` behind the same layer, where it is a public path.
    let metrics = Router::new()
        .route(
            "/metrics",
            get(move || {
                let prometheus = prometheus.clone();
                async move { prometheus.render() }
            }),
        )
        .layer(sso.clone());
    let app = demo_app::router(sso).merge(metrics);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening: open http://{listen}/ to log in, http://{listen}/metrics for the metrics");
    demo_app::serve(listener, app).await?;
    Ok(())
}

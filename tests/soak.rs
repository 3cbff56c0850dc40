//! A CI-sized loopback soak: the driver of `examples/soak.rs` for a few seconds (`SOAK_SECONDS`,
//! default 6) against the demo app, asserting no 5xx, no unexpected status, both floods refused
//! with 429, and no leaked file descriptors or tasks. Memory flatness is checked only by the
//! long example (seconds are too noisy for it).

#[path = "../examples/common/demo_app.rs"]
mod demo_app;
#[path = "../examples/common/soak_driver.rs"]
mod soak_driver;

use std::time::Duration;

use tower_sso::testing::{LoginMode, MockIdp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_short() {
    let seconds: f64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6.0);
    let idp = demo_app::builtin_users()
        .into_iter()
        .fold(MockIdp::builder(), |b, u| b.user(u))
        .login_mode(LoginMode::Auto)
        .start()
        .await
        .expect("the MockIdp starts");
    let cfg = soak_driver::SoakConfig::short(Duration::from_secs_f64(seconds));
    let report = soak_driver::run(cfg, idp.env_vars())
        .await
        .expect("the soak runs");
    println!("{}", report.summary());
    let failures = report.failures();
    assert!(failures.is_empty(), "soak failed: {failures:#?}");
    idp.shutdown().await;
}

//! A metrics recorder installed after the layer is built and has served requests (the usual
//! order in a `main` that builds the app first) still receives the per-request metrics from
//! then on. Its own binary: the global recorder can be installed once per process.

mod common;

use common::*;
use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test]
async fn a_recorder_installed_after_the_first_requests_counts_from_then_on() {
    let layer = builder().build().unwrap();
    let app = Upstream::default().behind(&layer);
    let bearer = format!("Bearer {}", token_for(&layer, alice()));
    let with_session = || get("/a", &[("authorization", bearer.as_str())]);

    // No recorder yet: the session is verified and remembered, and nothing is counted.
    for _ in 0..2 {
        assert_eq!(send(&app, with_session()).await.status(), StatusCode::OK);
    }
    assert_eq!(
        send(&app, get("/a", &[])).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder");

    for _ in 0..3 {
        assert_eq!(send(&app, with_session()).await.status(), StatusCode::OK);
    }
    assert_eq!(
        send(&app, get("/a", &[])).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let counters: Vec<(String, Vec<String>, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((
                key.key().name().to_owned(),
                key.key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect(),
                n,
            )),
            _ => None,
        })
        .collect();
    let value = |name: &str, label: &str| {
        counters
            .iter()
            .find(|(n, l, _)| n == name && l == &[label.to_owned()])
            .map_or(0, |(_, _, v)| *v)
    };
    assert_eq!(
        value("tower_sso_sessions_verified_total", "outcome=remembered"),
        3,
        "{counters:?}"
    );
    assert_eq!(
        value("tower_sso_sessions_verified_total", "outcome=verified"),
        0,
        "{counters:?}"
    );
    assert_eq!(
        value("tower_sso_sessions_refused_total", "reason=missing"),
        1,
        "{counters:?}"
    );
}

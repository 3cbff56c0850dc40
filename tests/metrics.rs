//! Metrics and spans, read back from a real recorder (`metrics-util`'s `DebuggingRecorder`,
//! installed as the global recorder) and a span-capturing `tracing` subscriber.
//!
//! Every test holds [`LOCK`] (the recorder is shared by the binary). A snapshot drains what it
//! reads (counters start again from zero, histograms lose their values), so each test drains
//! first and then reads exactly what it caused.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use common::log_capture::{self, Capture, Spans};
use common::servers::free_port;
use common::*;
use http::StatusCode;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower_sso::cache::CacheError;
use tower_sso::http::HttpClientConfig;
use tower_sso::provider::Provider;
use tower_sso::store::StoreError;
use tower_sso::testing::MockIdp;
use tower_sso::{ClientAddr, RateLimit, RateLimits};

/// One test at a time: the recorder and the subscriber are the binary's.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The recorder, installed the first time.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("no other recorder in this binary");
        snapshotter
    })
}

/// The subscriber, installed the first time.
fn spans() -> (Capture, Spans) {
    log_capture::capture_with_spans(tracing::Level::TRACE)
}

/// One snapshot: (name, sorted labels) → value.
struct Snapshot(BTreeMap<(String, Vec<(String, String)>), DebugValue>);

fn snapshot() -> Snapshot {
    Snapshot(
        snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                ((key.name().to_owned(), labels), value)
            })
            .collect(),
    )
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

impl Snapshot {
    /// What the counter counted since the previous snapshot.
    fn counter(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        match self.0.get(&(name.to_owned(), labels(pairs))) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    /// How many values the histogram got since the previous snapshot.
    fn observations(&self, name: &str, pairs: &[(&str, &str)]) -> usize {
        match self.0.get(&(name.to_owned(), labels(pairs))) {
            Some(DebugValue::Histogram(v)) => v.len(),
            None => 0,
            Some(other) => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// Every name, label key and label value recorded so far.
    fn all_text(&self) -> Vec<String> {
        self.0
            .keys()
            .flat_map(|(name, labels)| {
                std::iter::once(name.clone())
                    .chain(labels.iter().flat_map(|(k, v)| [k.clone(), v.clone()]))
            })
            .collect()
    }
}

/// Starts counting afresh: a snapshot drains what was recorded before.
fn drain() {
    snapshot();
}

/// Asserts that no metric name or label holds any of `secrets`.
fn assert_no_secret_labels(snap: &Snapshot, secrets: &[(&str, String)]) {
    for text in snap.all_text() {
        for (what, secret) in secrets {
            assert!(!secret.is_empty(), "{what} is empty");
            assert!(
                !text.contains(secret.as_str()),
                "{what} in a metric label: {text}"
            );
        }
    }
}

const PROVIDER: &str = "generic";
const IDP_DURATION: &str = "tower_sso_idp_request_duration_seconds";

/// A request from client `ip` (rate limits are per client).
fn from(ip: &str, path: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = get(path, &[]);
    req.extensions_mut().insert(ClientAddr(
        format!("{ip}:40000").parse::<SocketAddr>().unwrap(),
    ));
    req
}

#[tokio::test]
async fn a_login_is_counted_from_start_to_session_and_labels_hold_no_secret() {
    let _serial = LOCK.lock().await;
    drain();
    let idp = MockIdp::start().await.unwrap();
    let layer = flow_builder(&idp).build().unwrap();
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    let code = flow.callback_param("code").expect("code");
    let state = flow.callback_param("state").expect("state");
    let token = assert_logged_in(&b.callback(&flow).await, "/ui/?login=success");
    let me = b.whoami().await;
    b.whoami().await;
    let after = snapshot();

    let d = |name: &str, pairs: &[(&str, &str)]| after.counter(name, pairs);
    let p = ("provider", PROVIDER);
    assert_eq!(d("tower_sso_logins_started_total", &[p]), 1);
    assert_eq!(d("tower_sso_callbacks_total", &[p, ("outcome", "ok")]), 1);
    assert_eq!(d("tower_sso_logins_succeeded_total", &[p]), 1);
    assert_eq!(
        d("tower_sso_callbacks_total", &[p, ("outcome", "refused")]),
        0
    );
    // One discovery (at the login start), then the code, the keys and the profile.
    for endpoint in ["discovery", "token", "jwks", "userinfo"] {
        assert_eq!(
            after.observations(
                IDP_DURATION,
                &[p, ("endpoint", endpoint), ("outcome", "ok")]
            ),
            1,
            "{endpoint}"
        );
    }
    // The first request verifies the session, the second finds it remembered.
    let verified = "tower_sso_sessions_verified_total";
    assert_eq!(d(verified, &[("outcome", "verified")]), 1);
    assert_eq!(d(verified, &[("outcome", "remembered")]), 1);

    let issued = idp.last_issued();
    let user_id = me["user_id"].as_str().expect("user id").to_owned();
    let email = me["email"].as_str().expect("email").to_owned();
    assert_no_secret_labels(
        &after,
        &[
            ("user id", user_id),
            ("e-mail", email),
            ("code", code),
            ("state", state),
            ("session token", token),
            ("access token", issued.access_token.expect("access token")),
            ("id token", issued.id_token.expect("id token")),
            ("client secret", idp.client_secret().to_owned()),
        ],
    );
}

#[tokio::test]
async fn a_forged_state_is_refused_with_reason_state() {
    let _serial = LOCK.lock().await;
    let idp = MockIdp::start().await.unwrap();
    let layer = flow_builder(&idp).build().unwrap();
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    let forged = with_query_param(
        flow.callback_url.as_str(),
        "state",
        "forged-state-value-0123",
    );
    drain();
    let res = b.get(&path_and_query(&forged)).await;
    assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    let after = snapshot();

    let d = |name: &str, pairs: &[(&str, &str)]| after.counter(name, pairs);
    let p = ("provider", PROVIDER);
    assert_eq!(
        d("tower_sso_logins_refused_total", &[p, ("reason", "state")]),
        1
    );
    assert_eq!(
        d("tower_sso_callbacks_total", &[p, ("outcome", "refused")]),
        1
    );
    assert_eq!(d("tower_sso_logins_succeeded_total", &[p]), 0);
    // Refused before anything was redeemed.
    assert_eq!(
        after.observations(IDP_DURATION, &[p, ("endpoint", "token"), ("outcome", "ok")]),
        0
    );
}

#[tokio::test]
async fn an_unreachable_or_silent_identity_provider_is_timed_as_an_error_or_a_timeout() {
    let _serial = LOCK.lock().await;
    // Nothing listens on the first; the second accepts connections and never answers.
    let down = format!("http://127.0.0.1:{}", free_port());
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let layer = builder()
        .provider(Provider::oidc(down, "client", "secret-of-the-client").name("down"))
        .provider(Provider::oidc(silent_url, "client", "secret-of-the-client").name("silent"))
        .http_client_config(HttpClientConfig {
            timeout: Duration::from_millis(300),
            ..HttpClientConfig::default()
        })
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    drain();
    for provider in ["down", "silent"] {
        let target = format!("/sso/key/generate?provider={provider}");
        let res = send(&app, get(&target, &[])).await;
        assert!(
            res.status().is_server_error(),
            "{provider}: {}",
            res.status()
        );
    }
    let after = snapshot();
    held.abort();

    for (provider, outcome) in [("down", "error"), ("silent", "timeout")] {
        let p = ("provider", provider);
        assert_eq!(
            after.observations(
                IDP_DURATION,
                &[p, ("endpoint", "discovery"), ("outcome", outcome)]
            ),
            1,
            "{provider}"
        );
        assert_eq!(after.counter("tower_sso_logins_started_total", &[p]), 0);
    }
}

#[tokio::test]
async fn sessions_are_counted_by_outcome_and_refusals_by_reason() {
    let _serial = LOCK.lock().await;
    let layer = builder().build().unwrap();
    let app = Upstream::default().behind(&layer);
    let token = token_for(&layer, alice());
    let other = token_for(&layer, alice());
    let cookie = format!("token={token}");
    let bearer = format!("Bearer {token}");
    drain();

    let status = |res: AppResponse| res.status();
    assert_eq!(
        status(send(&app, get("/a", &[])).await),
        StatusCode::UNAUTHORIZED
    );
    let garbage = [("authorization", "Bearer not-a-session-token")];
    assert_eq!(
        status(send(&app, get("/a", &garbage)).await),
        StatusCode::UNAUTHORIZED
    );
    let huge = format!("Bearer {}", "x".repeat(9000));
    let huge = [("authorization", huge.as_str())];
    assert_eq!(
        status(send(&app, get("/a", &huge)).await),
        StatusCode::UNAUTHORIZED
    );
    let two = format!("token={token}; token={other}");
    let two = [("cookie", two.as_str())];
    assert_eq!(
        status(send(&app, get("/a", &two)).await),
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..3 {
        let res = send(&app, get("/a", &[("authorization", bearer.as_str())])).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = send(&app, get("/sso/logout", &[("cookie", cookie.as_str())])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = send(&app, get("/a", &[("authorization", bearer.as_str())])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let after = snapshot();

    let d = |name: &str, pairs: &[(&str, &str)]| after.counter(name, pairs);
    let verified = "tower_sso_sessions_verified_total";
    let refused = "tower_sso_sessions_refused_total";
    // Three requests and the logout: one full verification, three answered from memory.
    assert_eq!(d(verified, &[("outcome", "verified")]), 1);
    assert_eq!(d(verified, &[("outcome", "remembered")]), 3);
    for (reason, n) in [
        ("missing", 1),
        ("invalid", 1),
        ("too_long", 1),
        ("ambiguous", 1),
        ("revoked", 1),
        ("expired", 0),
    ] {
        assert_eq!(d(refused, &[("reason", reason)]), n, "{reason}");
    }
    assert_eq!(
        d(
            "tower_sso_session_revocations_total",
            &[("source", "logout")]
        ),
        1
    );
}

#[tokio::test]
async fn a_back_channel_logout_is_counted_as_its_own_source() {
    let _serial = LOCK.lock().await;
    let idp = MockIdp::start().await.unwrap();
    let layer = flow_builder(&idp).build().unwrap();
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, "/ui/?login=success");
    b.whoami().await;
    let logout_token = idp.logout_token("alice").expect("logout token");
    drain();
    let req = http::Request::post("/sso/backchannel-logout")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(format!(
            "logout_token={logout_token}"
        ))))
        .unwrap();
    assert_eq!(send(&b.app, req).await.status(), StatusCode::OK);
    assert_eq!(b.get("/whoami").await.status(), StatusCode::UNAUTHORIZED);
    let after = snapshot();

    let revocations = "tower_sso_session_revocations_total";
    assert_eq!(after.counter(revocations, &[("source", "backchannel")]), 1);
    assert_eq!(after.counter(revocations, &[("source", "logout")]), 0);
    assert_eq!(
        after.counter("tower_sso_sessions_refused_total", &[("reason", "revoked")]),
        1
    );
    assert_no_secret_labels(&after, &[("logout token", logout_token)]);
}

#[tokio::test]
async fn rate_limited_requests_are_counted_by_action() {
    let _serial = LOCK.lock().await;
    let idp = MockIdp::start().await.unwrap();
    let layer = flow_builder(&idp)
        .rate_limits(
            RateLimits::default()
                .login(RateLimit::new(1, 1))
                .callback(RateLimit::new(1, 1)),
        )
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    drain();
    let ip = "203.0.113.9";
    assert_eq!(
        send(&app, from(ip, "/sso/key/generate")).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        send(&app, from(ip, "/sso/key/generate")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let callback = "/sso/callback?state=some-state-value&code=some-code";
    assert_eq!(
        send(&app, from(ip, callback)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&app, from(ip, callback)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let after = snapshot();

    let d = |name: &str, pairs: &[(&str, &str)]| after.counter(name, pairs);
    let limited = "tower_sso_rate_limited_total";
    assert_eq!(d(limited, &[("action", "login")]), 1);
    assert_eq!(d(limited, &[("action", "callback")]), 1);
    assert_eq!(d(limited, &[("action", "cli_poll")]), 0);
    let p = ("provider", PROVIDER);
    let refused = "tower_sso_logins_refused_total";
    assert_eq!(d(refused, &[p, ("reason", "state")]), 1);
    assert_eq!(d(refused, &[p, ("reason", "rate_limited")]), 1);
    assert_eq!(d("tower_sso_logins_started_total", &[p]), 1);
}

#[tokio::test]
async fn backend_failures_are_counted_by_backend() {
    let _serial = LOCK.lock().await;
    let idp = MockIdp::start().await.unwrap();
    // A user store that is down: the login gets as far as writing the user.
    let store = tower::service_fn(|_req: tower_sso::store::StoreRequest| async {
        Err::<tower_sso::store::StoreResponse, _>(StoreError::Backend("connection refused".into()))
    });
    let layer = flow_builder(&idp).user_store(store).build().unwrap();
    let mut b = Browser::for_layer(&layer);
    drain();
    let res = b.login(&idp, "").await;
    assert_callback_refused(res, StatusCode::SERVICE_UNAVAILABLE).await;
    let after = snapshot();
    let d = |name: &str, pairs: &[(&str, &str)]| after.counter(name, pairs);
    assert_eq!(
        d(
            "tower_sso_logins_refused_total",
            &[("provider", PROVIDER), ("reason", "store")]
        ),
        1
    );
    assert_eq!(
        d(
            "tower_sso_user_store_errors_total",
            &[("backend", "custom")]
        ),
        1
    );

    // A verifier cache that is down: no login can start.
    let cache = tower::service_fn(|_req: tower_sso::cache::CacheRequest| async {
        Err::<tower_sso::cache::CacheResponse, _>(CacheError("connection refused".into()))
    });
    let layer = flow_builder(&idp).verifier_cache(cache).build().unwrap();
    let app = Upstream::default().behind(&layer);
    drain();
    let res = send(&app, get("/sso/key/generate", &[])).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let after = snapshot();
    assert_eq!(
        after.counter(
            "tower_sso_verifier_cache_errors_total",
            &[("backend", "custom")]
        ),
        1
    );
    assert_eq!(
        after.counter(
            "tower_sso_verifier_cache_errors_total",
            &[("backend", "moka")]
        ),
        0
    );
}

#[tokio::test]
async fn endpoints_and_identity_provider_calls_run_in_spans_without_secrets() {
    let _serial = LOCK.lock().await;
    let (logs, spans) = spans();
    let idp = MockIdp::start().await.unwrap();
    let layer = flow_builder(&idp).build().unwrap();
    let app = Upstream::default().behind(&layer);

    // The login start with a request id of the client's: kept, and echoed.
    let res = send(
        &app,
        get("/sso/key/generate", &[("x-request-id", "req-4711.a_B")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["x-request-id"], "req-4711.a_B");
    let authorize_url = location(&res);
    let flow_cookie = cookie_value(&res, FLOW_COOKIE).expect("flow cookie");
    let mut b = Browser::for_layer(&layer);
    b.set_cookie(FLOW_COOKIE, Some(&flow_cookie));
    let callback_url = b
        .authorize_at_idp(&url::Url::parse(&authorize_url).unwrap())
        .await;
    let code = query_param(&callback_url, "code").expect("code");
    let state = query_param(&callback_url, "state").expect("state");
    // The callback with an id that is not a safe token: replaced by a fresh one.
    let unsafe_id = "id with spaces/and=more";
    let cookie = format!("{FLOW_COOKIE}={flow_cookie}");
    let res = send(
        &app,
        get(
            &relative(&callback_url),
            &[("x-request-id", unsafe_id), ("cookie", cookie.as_str())],
        ),
    )
    .await;
    let token = assert_logged_in(&res, "/ui/?login=success");
    let callback_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(callback_id, unsafe_id);
    assert_eq!(callback_id.len(), 16);
    assert!(
        callback_id.bytes().all(|c| c.is_ascii_hexdigit()),
        "{callback_id}"
    );

    let closed = spans.closed();
    let endpoint = |id: &str| {
        closed
            .iter()
            .find(|s| s.name == "sso_endpoint" && s.field("request_id") == Some(id))
            .unwrap_or_else(|| panic!("no endpoint span with request id {id}: {closed:?}"))
    };
    let login = endpoint("req-4711.a_B");
    assert_eq!(login.field("endpoint"), Some("login"));
    assert_eq!(login.field("provider"), Some(PROVIDER));
    assert_eq!(login.field("outcome"), Some("303"));
    let callback = endpoint(&callback_id);
    assert_eq!(callback.field("endpoint"), Some("callback"));
    assert_eq!(callback.field("provider"), Some(PROVIDER));
    assert_eq!(callback.field("outcome"), Some("303"));
    for name in ["discovery", "token", "jwks", "userinfo"] {
        let call = closed
            .iter()
            .find(|s| s.name == "idp_call" && s.field("endpoint") == Some(name))
            .unwrap_or_else(|| panic!("no idp_call span for {name}: {closed:?}"));
        assert_eq!(call.field("provider"), Some(PROVIDER), "{name}");
        assert_eq!(call.field("outcome"), Some("ok"), "{name}");
        let ms: f64 = call
            .field("duration_ms")
            .expect("duration")
            .parse()
            .unwrap();
        assert!(ms >= 0.0, "{name}: {ms}");
    }

    let issued = idp.last_issued();
    let secrets = [
        ("code", code),
        ("state", state),
        ("session token", token),
        ("flow cookie", flow_cookie),
        ("access token", issued.access_token.expect("access token")),
        ("id token", issued.id_token.expect("id token")),
        ("code verifier", issued.code_verifier.expect("verifier")),
        ("client secret", idp.client_secret().to_owned()),
    ];
    let text = logs.text();
    for span in &closed {
        for (field, value) in &span.fields {
            for (what, secret) in &secrets {
                assert!(
                    !value.contains(secret.as_str()),
                    "{what} in span {} field {field}",
                    span.name
                );
            }
        }
    }
    for (what, secret) in &secrets {
        assert!(!text.contains(secret.as_str()), "{what} in the log");
    }
    // Protected requests get no span.
    let count = spans.closed().len();
    let res = send(&app, get("/a", &[])).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get("x-request-id").is_none());
    assert_eq!(spans.closed().len(), count);
}

//! A misbehaving identity provider, endpoint by endpoint and fault by fault: every login through
//! the layer must end with a clear JSON error (LiteLLM's shape) within the configured IdP
//! timeout, without a panic, a session cookie, a stored user, the provider's raw answer in the
//! body, or a connection the layer keeps open after it answered.
//!
//! A provider that does not answer in time gives 504, any other fault 502 ([`expected`]); at
//! the token endpoint too, where LiteLLM answers 401 for a 5xx or garbage: that is the provider
//! failing, not the user's code being refused (a 4xx `invalid_grant` stays 401).
//!
//! Discovery faults fail the login start (`/sso/key/generate`, before any redirect); token, JWKS
//! and userinfo faults fail the callback. For the userinfo row the provider issues no id_token:
//! with one, a failed userinfo falls back to the id_token's claims by design (and the login
//! succeeds, which `userinfo_fault_with_an_id_token_falls_back` pins).

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tower_sso::http::HttpClientConfig;
use tower_sso::store::MemoryUserStore;
use tower_sso::testing::{Endpoint, Fault, Misbehaviour, MockIdp};

/// The IdP timeout the layers under test use.
const IDP_TIMEOUT: Duration = Duration::from_secs(1);
/// The answer must come within this, whatever the fault (generous: a loaded 2-core machine).
const ANSWER_BOUND: Duration = Duration::from_secs(5);
/// A whole case, including the clean-up checks.
const CASE_BOUND: Duration = Duration::from_secs(20);

fn config() -> HttpClientConfig {
    HttpClientConfig {
        timeout: IDP_TIMEOUT,
        ..HttpClientConfig::default()
    }
}

/// What one case produced.
struct Outcome {
    endpoint: Endpoint,
    fault: Fault,
    /// `start` (the login start failed) or `callback`.
    at: &'static str,
    status: StatusCode,
    elapsed: Duration,
}

/// The status a provider fault must produce: 504 when the provider does not answer in time
/// (no answer, stuck after the headers, a body that never ends), 502 for every other failure
/// (5xx, HTML, invalid JSON, an array, too big, cut off) — the provider failing, never the user.
fn expected(fault: Fault) -> StatusCode {
    match fault {
        Fault::NoAnswer | Fault::HangAfterHeaders | Fault::EndlessBody => {
            StatusCode::GATEWAY_TIMEOUT
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Waits until `f` holds, up to `bound`.
async fn eventually(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

async fn run_case(endpoint: Endpoint, fault: Fault) -> Outcome {
    let idp = MockIdp::builder()
        .id_token(endpoint != Endpoint::Userinfo)
        .start()
        .await
        .expect("MockIdp starts");
    let store = MemoryUserStore::new();
    let layer = flow_builder(&idp)
        .user_store(store.clone())
        .http_client_config(config())
        .build()
        .expect("valid config");
    let mut b = Browser::for_layer(&layer);
    let case = format!("{endpoint:?} × {fault:?}");

    let (at, started, res) = if endpoint == Endpoint::Discovery {
        idp.set_misbehaviour(Misbehaviour::Fault(endpoint, fault));
        let started = Instant::now();
        ("start", started, b.get("/sso/key/generate").await)
    } else {
        let flow = b.authorize(&idp, "").await;
        idp.set_misbehaviour(Misbehaviour::Fault(endpoint, fault));
        let started = Instant::now();
        let res = b.callback(&flow).await;
        assert_flow_cookie_cleared(&res);
        ("callback", started, res)
    };
    let elapsed = started.elapsed();
    let status = res.status();
    assert!(elapsed < ANSWER_BOUND, "{case}: answered after {elapsed:?}");
    assert_eq!(status, expected(fault), "{case}");
    assert_eq!(cookie_value(&res, "token"), None, "{case}: a session");
    if at == "start" {
        assert_eq!(cookie_value(&res, FLOW_COOKIE), None, "{case}: a flow");
        assert_eq!(idp.count("/authorize"), 0, "{case}");
    }
    let body = {
        use http_body_util::BodyExt;
        let ct = res.headers()[http::header::CONTENT_TYPE].clone();
        assert_eq!(ct, "application/json", "{case}");
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
    };
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    let e = &v["error"];
    assert_eq!(e["code"], status.as_u16().to_string(), "{case}: {v}");
    assert!(
        e["type"].is_string() && e.get("param").is_some(),
        "{case}: {v}"
    );
    let msg = e["message"].as_str().expect("message");
    assert!(!msg.is_empty(), "{case}");
    if endpoint == Endpoint::Token {
        assert!(msg.starts_with("token exchange failed"), "{case}: {msg}");
    }
    assert!(
        !body.contains(Fault::MARKER) && !body.contains('<') && !body.contains("eyJ"),
        "{case}: the provider's raw answer in {body}"
    );
    assert_eq!(store.user_count(), 0, "{case}: a user was stored");
    assert!(idp.count(endpoint.path()) >= 1, "{case}: fault not reached");

    // The layer hung up: once it answered and is gone, the provider sees no open connection
    // (a streaming endpoint notices on its next write; a silent one when the client closes).
    drop(b);
    drop(layer);
    assert!(
        eventually(Duration::from_secs(5), || idp.open_connections() == 0).await,
        "{case}: {} connection(s) still open at the provider",
        idp.open_connections()
    );
    idp.shutdown().await;
    Outcome {
        endpoint,
        fault,
        at,
        status,
        elapsed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_fault_gives_a_clear_bounded_error() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    // The four endpoints run side by side, each through every fault in turn; each case in its
    // own (local: the test app is not `Sync`) task, so a failed check is reported with the
    // others.
    let local = tokio::task::LocalSet::new();
    let rows = local
        .run_until(async {
            let mut endpoints = Vec::new();
            for endpoint in Endpoint::ALL {
                endpoints.push(tokio::task::spawn_local(async move {
                    let mut rows = Vec::new();
                    for fault in Fault::ALL {
                        let case = tokio::task::spawn_local(tokio::time::timeout(
                            CASE_BOUND,
                            run_case(endpoint, fault),
                        ));
                        rows.push(match case.await {
                            Ok(Ok(o)) => Ok(format!(
                                "{:<11} {:<17} {:<9} {:<7} {:.2}",
                                format!("{:?}", o.endpoint),
                                format!("{:?}", o.fault),
                                o.at,
                                o.status.as_u16(),
                                o.elapsed.as_secs_f64()
                            )),
                            Ok(Err(_)) => Err(format!("{endpoint:?} × {fault:?}: stuck")),
                            Err(e) => {
                                let panic = e.into_panic();
                                Err(panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default())
                            }
                        });
                    }
                    rows
                }));
            }
            let mut all = Vec::new();
            for e in endpoints {
                all.extend(e.await.expect("endpoint task"));
            }
            all
        })
        .await;
    drop(local);
    let mut table = String::from("endpoint    fault             at        status  seconds\n");
    let mut failures = Vec::new();
    for row in rows {
        match row {
            Ok(line) => {
                table.push_str(&line);
                table.push('\n');
            }
            Err(e) => failures.push(e),
        }
    }
    eprintln!("{table}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every task the cases started (provider connections, client connections) is gone.
    assert!(
        eventually(Duration::from_secs(5), || metrics.num_alive_tasks()
            <= baseline)
        .await,
        "{} tasks alive, {baseline} before",
        metrics.num_alive_tasks()
    );
}

#[tokio::test]
async fn userinfo_fault_with_an_id_token_falls_back() {
    let idp = MockIdp::start().await.expect("MockIdp starts");
    let store = MemoryUserStore::new();
    let layer = flow_builder(&idp)
        .user_store(store.clone())
        .http_client_config(config())
        .build()
        .expect("valid config");
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    idp.set_misbehaviour(Misbehaviour::Fault(Endpoint::Userinfo, Fault::EndlessBody));
    let started = Instant::now();
    let res = b.callback(&flow).await;
    assert!(started.elapsed() < ANSWER_BOUND, "{:?}", started.elapsed());
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(cookie_value(&res, "token").is_some());
    assert_eq!(b.whoami().await["user_id"], "alice");
    assert_eq!(idp.count("/userinfo"), 1);
}

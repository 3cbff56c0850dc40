//! One million unauthenticated login starts against the default verifier cache, in release:
//! the figure behind "login state is bounded" in BENCHMARKS.md (`tests/login_state_bound.rs`
//! asserts the same bound with fewer starts in a debug build).
//!
//! ```text
//! cargo run --release --example login_flood -- --starts 1000000
//! ```
//!
//! The layer (default [`MokaVerifierCache`]: 64 MiB of weight, about 89 000 logins in flight;
//! rate limits off, standing for as many clients as there are starts) answers `GET
//! /sso/key/generate` through `oneshot`, no HTTP. Every 100 000 starts it prints the cache's
//! entry count and weight and the process's VmRSS. At the end a real login (start, the
//! [`MockIdp`] over loopback HTTP, callback) must still succeed. Exits 1 if the cache ever
//! held more than its capacity or the login failed.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower::util::BoxCloneService;
use tower_sso::cache::MokaVerifierCache;
use tower_sso::testing::{MockIdp, SigningAlg};
use tower_sso::{RateLimits, SsoLayer};

type App = BoxCloneService<
    Request<Full<Bytes>>,
    Response<tower_sso::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn get(
    app: &App,
    target: &str,
    cookie: Option<&str>,
) -> Response<tower_sso::ResponseBody<Full<Bytes>>> {
    let mut req = Request::get(target);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let req = req.body(Full::new(Bytes::new())).expect("request");
    match app.clone().oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

fn location<B>(res: &Response<B>) -> String {
    res.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `name=value` of the first `Set-Cookie` named `name`.
fn set_cookie<B>(res: &Response<B>, name: &str) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with(&format!("{name}=")) && kv.len() > name.len() + 1)
        .map(str::to_owned)
}

/// A whole login: start through the layer, authorize at the provider over HTTP, callback.
async fn real_login(app: &App) -> Result<String, String> {
    let start = get(app, "/sso/key/generate", None).await;
    if start.status() != StatusCode::SEE_OTHER {
        return Err(format!("start answered {}", start.status()));
    }
    let flow = set_cookie(&start, "tower_sso_flow").ok_or("no flow cookie")?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let authorize = client
        .get(location(&start).parse().map_err(|e| format!("{e}"))?)
        .await
        .map_err(|e| format!("provider: {e}"))?;
    let callback = location(&authorize);
    let target = callback
        .find("/sso/callback")
        .map(|i| &callback[i..])
        .ok_or("provider did not redirect to the callback")?;
    let done = get(app, target, Some(&flow)).await;
    let status = done.status();
    let token = set_cookie(&done, "token");
    let body = done
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match token {
        Some(t) if status == StatusCode::SEE_OTHER => Ok(t),
        _ => Err(format!(
            "callback answered {status}: {}",
            String::from_utf8_lossy(&body)
        )),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut starts: usize = 1_000_000;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--starts" => starts = args.next().ok_or("--starts N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let idp = MockIdp::builder()
        .signing_alg(SigningAlg::Es256)
        .start()
        .await?;
    let cache = MokaVerifierCache::default();
    let layer: SsoLayer = SsoLayer::builder()
        .base_url("http://127.0.0.1:1")
        .session_secret("login-flood-secret-0123456789abcdef-0123")
        .provider(tower_sso::provider::Provider::oidc(
            idp.issuer(),
            idp.client_id(),
            idp.client_secret(),
        ))
        .verifier_cache(cache.clone())
        .rate_limits(RateLimits::disabled())
        .build()?;
    let inner = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let app: App = BoxCloneService::new(tower::ServiceBuilder::new().layer(layer).service(inner));

    // One start to fetch discovery; then the baseline.
    let _ = get(&app, "/sso/key/generate", None).await;
    cache.run_pending_tasks().await;
    let rss0 = vm_rss_kib();
    println!(
        "capacity {} (weight: key + value bytes + 528 per entry); VmRSS before the flood {rss0} KiB",
        cache.max_capacity()
    );
    println!(
        "{:>9} {:>9} {:>11} {:>10} {:>9}",
        "starts", "entries", "weight", "VmRSS KiB", "starts/s"
    );
    let mut over_capacity = false;
    let t0 = Instant::now();
    let mut lap = Instant::now();
    for i in 1..=starts {
        let target = format!("/sso/key/generate?return_to=/ui/page-{i}");
        let res = get(&app, &target, None).await;
        if res.status() != StatusCode::SEE_OTHER {
            return Err(format!("start {i} answered {}", res.status()).into());
        }
        if i % 100_000 == 0 || i == starts {
            cache.run_pending_tasks().await;
            let n = if i % 100_000 == 0 {
                100_000
            } else {
                i % 100_000
            };
            over_capacity |= cache.weighted_size() > cache.max_capacity();
            println!(
                "{i:>9} {:>9} {:>11} {:>10} {:>9.0}",
                cache.entry_count(),
                cache.weighted_size(),
                vm_rss_kib(),
                n as f64 / lap.elapsed().as_secs_f64()
            );
            lap = Instant::now();
        }
    }
    let elapsed = t0.elapsed();
    let rss1 = vm_rss_kib();
    println!(
        "{starts} starts in {:.1} s ({:.0}/s); VmRSS {rss0} -> {rss1} KiB (+{:.1} MiB); {} entries in flight, {:.0} B of VmRSS growth per entry",
        elapsed.as_secs_f64(),
        starts as f64 / elapsed.as_secs_f64(),
        rss1.saturating_sub(rss0) as f64 / 1024.0,
        cache.entry_count(),
        rss1.saturating_sub(rss0) as f64 * 1024.0 / cache.entry_count().max(1) as f64,
    );
    let login = real_login(&app).await;
    match &login {
        Ok(_) => println!("a real login started after the flood: completed (session issued)"),
        Err(e) => println!("a real login started after the flood: FAILED: {e}"),
    }
    idp.shutdown().await;
    if over_capacity || login.is_err() {
        println!("FAIL");
        std::process::exit(1);
    }
    println!("PASS");
    Ok(())
}

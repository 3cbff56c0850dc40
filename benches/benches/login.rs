//! Whole logins in one process: how many per second, and how much of each is the layer's.
//!
//! Run with `cargo bench -p tower-sso-benches --bench login` (see `BENCHMARKS.md`).
//!
//! A login is what a browser does: `GET /sso/key/generate` through the layer (`oneshot`, no
//! HTTP in front of it), `GET` of the authorization URL at a real [`MockIdp`] over loopback HTTP
//! (it signs ES256 and signs the user in at once), then the callback through the layer with the
//! flow cookie, which redeems the code at the provider's `/token`, verifies the id_token,
//! fetches `/userinfo` and issues the session cookie. Everything runs on one current-thread
//! Tokio runtime, so the time of a login is the CPU time of all of it, provider included.
//!
//! - `login/full`: one whole login;
//! - `login/idp_only`: what the provider's side of it costs: the same three provider requests
//!   (authorize, token, userinfo) made directly by a client doing nothing else;
//! - the layer's share of a login is `(full - idp_only) / full`: its endpoints, its outbound
//!   client and the id_token verification, without the provider's server or loopback HTTP that
//!   the provider's side would cost any relying party.
//!
//! Before measuring, the bench checks that the provider's metadata and keys are cached: after
//! warm-up, 100 logins make exactly 100 authorization, token and userinfo requests and no
//! discovery or JWKS request (it panics otherwise). At the end it prints logins/s and the share,
//! from criterion's medians.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower::util::BoxCloneService;
use tower_sso::testing::{MockIdp, SigningAlg};
use tower_sso::{RateLimits, SsoLayer};

type App = BoxCloneService<
    Request<Full<Bytes>>,
    Response<tower_sso::ResponseBody<Full<Bytes>>>,
    Infallible,
>;
type Http<B> = Client<HttpConnector, B>;

const BASE_URL: &str = "https://gateway.example.com";
const CALLBACK: &str = "https://gateway.example.com/sso/callback";
const FLOW_COOKIE: &str = "__Host-tower_sso_flow";
/// A PKCE verifier for the provider-only part, and its S256 challenge (RFC 7636 appendix B).
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Fixture {
    idp: MockIdp,
    app: App,
    get: Http<Empty<Bytes>>,
    post: Http<Full<Bytes>>,
}

async fn fixture() -> Fixture {
    let idp = MockIdp::builder()
        .signing_alg(SigningAlg::Es256)
        .start()
        .await
        .expect("MockIdp starts");
    let layer = SsoLayer::builder()
        .base_url(BASE_URL)
        .session_secret("login-bench-secret-0123456789abcdef-01234")
        .provider(tower_sso::provider::Provider::oidc(
            idp.issuer(),
            idp.client_id(),
            idp.client_secret(),
        ))
        .rate_limits(RateLimits::disabled())
        .build()
        .expect("layer");
    let inner = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    });
    let app = BoxCloneService::new(tower::ServiceBuilder::new().layer(layer).service(inner));
    Fixture {
        idp,
        app,
        get: Client::builder(TokioExecutor::new()).build(connector()),
        post: Client::builder(TokioExecutor::new()).build(connector()),
    }
}

/// A plain-HTTP connector with `TCP_NODELAY`, as the layer's own client has: without it, a
/// request whose head and body go out in two writes waits on Nagle's algorithm.
fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c
}

fn location<B>(res: &Response<B>) -> &str {
    res.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("a Location header")
}

/// `name=value` of the `Set-Cookie` named `name` (not a clearing one).
fn set_cookie<B>(res: &Response<B>, name: &str) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| {
            kv.len() > name.len() + 1 && kv.starts_with(name) && kv.as_bytes()[name.len()] == b'='
        })
        .map(str::to_owned)
}

async fn through_layer(
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

/// `GET url` at the provider; the answer's `Location`.
async fn provider_redirect(f: &Fixture, url: &str) -> String {
    let res = f
        .get
        .get(url.parse().expect("uri"))
        .await
        .expect("provider");
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "provider /authorize");
    let to = location(&res).to_owned();
    // Read to the end, so that the connection goes back to the pool, as a browser keeps it.
    let _ = res.into_body().collect().await;
    to
}

/// One whole login; returns the session cookie.
async fn login(f: &Fixture) -> String {
    let start = through_layer(&f.app, "/sso/key/generate", None).await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER, "login start");
    let flow = set_cookie(&start, FLOW_COOKIE).expect("flow cookie");
    let back = provider_redirect(f, location(&start)).await;
    let target = back
        .strip_prefix(BASE_URL)
        .expect("redirected to our callback");
    let done = through_layer(&f.app, target, Some(&flow)).await;
    assert_eq!(
        done.status(),
        StatusCode::SEE_OTHER,
        "callback: {:?}",
        done.headers()
    );
    set_cookie(&done, "token").expect("session cookie")
}

/// The provider's side of a login, done directly: authorize, token, userinfo.
async fn provider_only(f: &Fixture) {
    let issuer = f.idp.issuer();
    let authorize = format!(
        "{issuer}/authorize?response_type=code&client_id={}&redirect_uri={CALLBACK}&scope=openid%20email%20profile&state=s&nonce=n&code_challenge={CHALLENGE}&code_challenge_method=S256",
        f.idp.client_id()
    );
    let back = provider_redirect(f, &authorize).await;
    let code = back
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .expect("code");
    let form = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={CALLBACK}&code_verifier={VERIFIER}&client_id={}&client_secret={}",
        f.idp.client_id(),
        f.idp.client_secret()
    );
    let req = Request::post(format!("{issuer}/token"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .expect("request");
    let res = f.post.request(req).await.expect("provider /token");
    assert_eq!(res.status(), StatusCode::OK, "provider /token");
    let body = res.into_body().collect().await.expect("body").to_bytes();
    let tokens: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let access = tokens["access_token"].as_str().expect("access token");
    let req = Request::get(format!("{issuer}/userinfo"))
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .body(Empty::new())
        .expect("request");
    let res = f.get.request(req).await.expect("provider /userinfo");
    assert_eq!(res.status(), StatusCode::OK, "provider /userinfo");
    let _ = res.into_body().collect().await;
}

const ENDPOINTS: [&str; 5] = [
    "/.well-known/openid-configuration",
    "/jwks",
    "/authorize",
    "/token",
    "/userinfo",
];

fn counts(idp: &MockIdp) -> [usize; 5] {
    ENDPOINTS.map(|p| idp.count(p))
}

/// Warm-up, then 100 logins must cost exactly 100 authorize, token and userinfo requests and
/// no discovery or JWKS fetch.
async fn check_caching(f: &Fixture) {
    for _ in 0..20 {
        login(f).await;
    }
    let before = counts(&f.idp);
    for _ in 0..100 {
        login(f).await;
    }
    let after = counts(&f.idp);
    let delta: Vec<usize> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    println!("provider requests for 100 warm logins:");
    for (path, n) in ENDPOINTS.iter().zip(&delta) {
        println!("  {path:<36} {n}");
    }
    assert_eq!(
        delta,
        [0, 0, 100, 100, 100],
        "metadata or keys not cached, or extra provider calls"
    );
}

fn median_ns(id: &str) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = dir.join("criterion").join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(fixture());
    rt.block_on(check_caching(&f));

    let mut c = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(10))
        .warm_up_time(Duration::from_secs(2))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("login");
        g.bench_function("full", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        std::hint::black_box(login(&f).await);
                    }
                    t.elapsed()
                })
            })
        });
        g.bench_function("idp_only", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        provider_only(&f).await;
                    }
                    t.elapsed()
                })
            })
        });
        g.finish();
    }
    c.final_summary();

    if let (Some(full), Some(idp)) = (median_ns("login/full"), median_ns("login/idp_only")) {
        println!();
        println!("| | median | per second |");
        println!("|---|---|---|");
        println!(
            "| login/full | {:.0} µs | {:.0} logins/s |",
            full / 1e3,
            1e9 / full
        );
        println!("| login/idp_only | {:.0} µs | |", idp / 1e3);
        println!(
            "| layer's share (full - idp_only) / full | {:.0} µs | {:.0} % |",
            (full - idp) / 1e3,
            100.0 * (full - idp) / full
        );
    }
}

//! The gate's hot path, against the bare service, all in one run so that ratios are meaningful.
//!
//! Run with `cargo bench -p tower-sso-benches --bench gate` (see `BENCHMARKS.md`). Every benchmark calls the
//! service and polls its future once with a no-op waker: the inner service is
//! `service_fn(|_| ready(..))`, so no runtime is involved and nothing but the layer's own work is
//! measured. Requests are built outside the timing (`iter_batched`, in small batches), and
//! responses are dropped outside it too; the request itself is dropped inside (by the inner
//! service), in the baseline as well.
//!
//! Peers, same request and same bare inner service: `p_tower_http_bearer` (tower-http's
//! `ValidateRequestHeaderLayer::bearer`, a constant-token compare: the floor of any check) and
//! `q_axum_login` (axum-login 0.18 over tower-sessions 0.14 with its `MemoryStore`, a user
//! logged in for real at setup; the inner service checks `AuthSession::user` as
//! `login_required!` does). Both complete on the first poll like the layer, so no runtime is
//! involved in any row (checked: a row that returned `Pending` would panic).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::path::PathBuf;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum_login::{AuthManagerLayerBuilder, AuthSession, AuthUser, AuthnBackend, UserId};
use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, Service};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_sessions::{MemoryStore, SessionManagerLayer};
use tower_sso::session::{NewSession, find_cookie};
use tower_sso::{SsoLayer, UserRole};

type Body = Empty<Bytes>;

/// Requests are built outside the timing in batches of 16: small enough that they are still in
/// cache when the service sees them (as after hyper has just parsed one), large enough that the
/// timer's own cost is negligible.
const BATCH: BatchSize = BatchSize::NumIterations(16);

/// The bare inner service: answers 200 immediately.
#[derive(Clone, Copy)]
struct Bare;

impl Service<Request<Body>> for Bare {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        black_box(&req);
        ready(Ok(Response::new(Body::new())))
    }
}

/// The user of the axum-login peer, as an in-memory backend holds it.
#[derive(Clone, Debug)]
struct PeerUser {
    id: u64,
    name: String,
    auth_hash: Vec<u8>,
}

impl AuthUser for PeerUser {
    type Id = u64;

    fn id(&self) -> u64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

/// axum-login's backend: one user in memory; credentials are its id.
#[derive(Clone)]
struct PeerBackend {
    user: PeerUser,
}

impl AuthnBackend for PeerBackend {
    type User = PeerUser;
    type Credentials = u64;
    type Error = Infallible;

    async fn authenticate(&self, id: u64) -> Result<Option<PeerUser>, Infallible> {
        Ok((id == self.user.id).then(|| self.user.clone()))
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<PeerUser>, Infallible> {
        Ok((*id == self.user.id).then(|| self.user.clone()))
    }
}

/// The protected route behind axum-login: 200 with a logged-in user (what `login_required!`
/// checks), 401 without.
#[derive(Clone, Copy)]
struct PeerProtected;

impl Service<Request<Body>> for PeerProtected {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let logged_in = req
            .extensions()
            .get::<AuthSession<PeerBackend>>()
            .is_some_and(|s| {
                s.user
                    .as_ref()
                    .is_some_and(|u| !black_box(&u.name).is_empty())
            });
        black_box(&req);
        let mut res = Response::new(Body::new());
        if !logged_in {
            *res.status_mut() = StatusCode::UNAUTHORIZED;
        }
        ready(Ok(res))
    }
}

/// A logged-in axum-login session: the layer, and the `name=value` of its session cookie from
/// a real login (through the same layer and store).
fn axum_login_peer() -> (
    axum_login::AuthManagerLayer<PeerBackend, MemoryStore>,
    String,
) {
    let backend = PeerBackend {
        user: PeerUser {
            id: 42,
            name: "alice.example".into(),
            auth_hash: b"password-hash-of-alice".to_vec(),
        },
    };
    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let auth = AuthManagerLayerBuilder::new(backend, sessions).build();
    let mut login = auth.layer(tower::service_fn(|req: Request<Body>| async move {
        let mut session = req
            .extensions()
            .get::<AuthSession<PeerBackend>>()
            .cloned()
            .expect("AuthSession");
        let user = session.authenticate(42).await.ok().flatten().expect("user");
        session.login(&user).await.expect("login");
        Ok::<_, Infallible>(Response::new(Body::new()))
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let res = rt.block_on(async {
        std::future::poll_fn(|cx| login.poll_ready(cx))
            .await
            .expect("ready");
        login
            .call(request("/login", &[]))
            .await
            .expect("login response")
    });
    let set_cookie = res
        .headers()
        .get(http::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie");
    let pair = set_cookie.split(';').next().expect("name=value").to_owned();
    (auth, pair)
}

/// [`one`], kept out of line: the unit callgrind counts instructions of (`--toggle-collect`,
/// see `BENCHMARKS.md`). Each service type has its own copy, named after it.
#[inline(never)]
fn measured<S, B>(svc: &mut S, req: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    one(svc, req)
}

/// One request through `svc`: `poll_ready`, `call`, one poll of the future.
#[inline(always)]
fn one<S, B>(svc: &mut S, req: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("always ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        Poll::Pending => unreachable!("ready on first poll"),
    }
}

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";
const OTHER_COOKIES: &str = "_ga=GA1.2.1469331011.1700000000; theme=dark; lang=en-GB; \
     csrftoken=Wq3nV8kZp2LxR7tY0bH5mD1cF9gJ4sA6; sidebar=collapsed";

fn layer(remembered: Option<u64>) -> SsoLayer {
    let mut b = SsoLayer::builder()
        .base_url("https://gateway.example.com")
        .session_secret(SECRET)
        .public_paths(["/health", "/static/*"]);
    if let Some(n) = remembered {
        b = b.remembered_sessions(n);
    }
    b.build().expect("valid config")
}

fn session() -> NewSession {
    NewSession {
        user_id: "alice.example".into(),
        email: Some("alice@example.com".into()),
        display_name: Some("Alice Example".into()),
        role: UserRole::InternalUser,
        team_ids: vec!["team-platform".into(), "team-ml-research".into()],
        provider: Some("generic".into()),
        attributes: serde_json::Map::new(),
    }
}

/// A browser-like request: the usual headers, plus `extra`.
fn request(path: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut b = Request::get(path)
        .header("host", "gateway.example.com")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .header("accept", "application/json")
        .header("accept-encoding", "gzip, deflate, br")
        .header("accept-language", "en-GB,en;q=0.9")
        .header("x-request-id", "4f6c1d2e-9a8b-4c7d-8e6f-0a1b2c3d4e5f");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Body::new()).expect("request")
}

fn benches(c: &mut Criterion) {
    let warm = layer(None);
    let token = warm.sessions().issue(session()).expect("issue").0;
    let cookie = format!("{OTHER_COOKIES}; token={token}");
    let bearer = format!("Bearer {token}");
    println!(
        "session token: {} bytes; Cookie header: {} bytes",
        token.len(),
        cookie.len()
    );

    let mut g = c.benchmark_group("gate");

    // (a) The bare inner service, same request as (b).
    let mut bare = Bare;
    g.bench_function("a_bare", |b| {
        b.iter_batched(
            || request("/api/v1/models", &[("cookie", &cookie)]),
            |req| measured(&mut bare, req),
            BATCH,
        )
    });

    // (a2) The floor of any gate that hands the inner service an identity the way this layer
    // does: the bare service, plus inserting a clone of an already-known `Identity` (one
    // reference count) into the request's empty extensions (three allocations, freed when the
    // request is dropped). Same request as (b).
    let known = warm.sessions().verify(&token).expect("valid");
    let mut floor = tower::service_fn(|mut req: Request<Body>| {
        req.extensions_mut().insert(known.clone());
        bare.call(req)
    });
    g.bench_function("a2_floor_identity_insert", |b| {
        b.iter_batched(
            || request("/api/v1/models", &[("cookie", &cookie)]),
            |req| measured(&mut floor, req),
            BATCH,
        )
    });

    // (b) Layer, valid session cookie among 5 others, verification remembered.
    let mut svc = warm.layer(Bare);
    let res = one(&mut svc, request("/api/v1/models", &[("cookie", &cookie)]));
    assert_eq!(res.status(), StatusCode::OK);
    g.bench_function("b_cookie_warm", |b| {
        b.iter_batched(
            || request("/api/v1/models", &[("cookie", &cookie)]),
            |req| measured(&mut svc, req),
            BATCH,
        )
    });

    // (c) Layer, `Authorization: Bearer`, verification remembered.
    let res = one(
        &mut svc,
        request("/api/v1/models", &[("authorization", &bearer)]),
    );
    assert_eq!(res.status(), StatusCode::OK);
    g.bench_function("c_bearer_warm", |b| {
        b.iter_batched(
            || request("/api/v1/models", &[("authorization", &bearer)]),
            |req| measured(&mut svc, req),
            BATCH,
        )
    });

    // (d) Layer, a token never seen before on every request: the full JWT verification (and the
    // insert into the remembered set). Tokens are issued outside the timing.
    let cold = layer(None);
    let mut cold_svc = cold.layer(Bare);
    g.bench_function("d_cookie_cold", |b| {
        b.iter_batched(
            || {
                let t = cold.sessions().issue(session()).expect("issue").0;
                request(
                    "/api/v1/models",
                    &[("cookie", &format!("{OTHER_COOKIES}; token={t}"))],
                )
            },
            |req| {
                let res = measured(&mut cold_svc, req);
                debug_assert_eq!(res.status(), StatusCode::OK);
                res
            },
            BATCH,
        )
    });

    // (e) Public path (with the same cookies a browser would send).
    let res = one(&mut svc, request("/health", &[("cookie", OTHER_COOKIES)]));
    assert_eq!(res.status(), StatusCode::OK);
    g.bench_function("e_public", |b| {
        b.iter_batched(
            || request("/health", &[("cookie", OTHER_COOKIES)]),
            |req| measured(&mut svc, req),
            BATCH,
        )
    });

    // (f) Protected path, no session, API client: 401 with a JSON body.
    let res = one(&mut svc, request("/api/v1/models", &[]));
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    g.bench_function("f_unauthenticated_401", |b| {
        b.iter_batched(
            || request("/api/v1/models", &[]),
            |req| measured(&mut svc, req),
            BATCH,
        )
    });

    // (p) Peer: tower-http's bearer check (a compare with one configured token), same request
    // as (c).
    // Deprecated in tower-http 0.6 as "too basic for real applications": that is the point
    // here, it is the cheapest check there is.
    #[allow(deprecated)]
    let mut tower_http = ValidateRequestHeaderLayer::bearer(&token).layer(Bare);
    let res = one(
        &mut tower_http,
        request("/api/v1/models", &[("authorization", &bearer)]),
    );
    assert_eq!(res.status(), StatusCode::OK);
    g.bench_function("p_tower_http_bearer", |b| {
        b.iter_batched(
            || request("/api/v1/models", &[("authorization", &bearer)]),
            |req| measured(&mut tower_http, req),
            BATCH,
        )
    });

    // (q) Peer: axum-login + tower-sessions (MemoryStore), a logged-in session cookie among
    // the same five other cookies as (b).
    let (auth, session_cookie) = axum_login_peer();
    let peer_cookie = format!("{OTHER_COOKIES}; {session_cookie}");
    let mut axum_login = auth.layer(PeerProtected);
    let res = one(
        &mut axum_login,
        request("/api/v1/models", &[("cookie", &peer_cookie)]),
    );
    assert_eq!(res.status(), StatusCode::OK, "axum-login: logged in");
    let res = one(
        &mut axum_login,
        request("/api/v1/models", &[("cookie", OTHER_COOKIES)]),
    );
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "axum-login: no session"
    );
    g.bench_function("q_axum_login", |b| {
        b.iter_batched(
            || request("/api/v1/models", &[("cookie", &peer_cookie)]),
            |req| measured(&mut axum_login, req),
            BATCH,
        )
    });

    // (h) The session lookup alone: `SessionCodec::verify` of a remembered token.
    let sessions = warm.sessions().clone();
    g.bench_function("h_verify_warm", |b| {
        b.iter(|| sessions.verify(black_box(&token)).expect("valid"))
    });
    g.finish();

    // (g) Finding the `token` cookie in the header: ours vs the cookie crate's parser.
    let mut g = c.benchmark_group("cookie");
    g.bench_function("find_cookie", |b| {
        b.iter(|| find_cookie(black_box(&cookie), black_box("token")).expect("found"))
    });
    g.bench_function("str_split", |b| {
        b.iter(|| find_cookie_str_split(black_box(&cookie), black_box("token")).expect("found"))
    });
    g.bench_function("cookie_split_parse", |b| {
        b.iter(|| {
            cookie::Cookie::split_parse(black_box(cookie.as_str()))
                .filter_map(Result::ok)
                .find(|c| c.name() == black_box("token"))
                .expect("found")
        })
    });
    g.finish();
}

/// `find_cookie` as first written (`str::split` on `;`), for comparison.
fn find_cookie_str_split<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let pair = pair.trim_start();
        let rest = pair.strip_prefix(name)?;
        let value = rest.strip_prefix('=')?;
        Some(value.trim_end().trim_matches('"'))
    })
}

/// Criterion's output directory, found the way criterion finds it.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // <target>/<profile>/deps/gate-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median of a benchmark of this run, in ns, from criterion's `estimates.json`.
fn median_ns(group: &str, name: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(name)
        .join("new")
        .join("estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Prints the medians as a table: absolute, over the bare service, and as a ratio of it.
fn summary() {
    let Some(base) = median_ns("gate", "a_bare") else {
        eprintln!(
            "(no summary: criterion results not found under {:?})",
            criterion_dir()
        );
        return;
    };
    println!(
        "\n{:<24} {:>10} {:>12} {:>8}",
        "bench", "median ns", "over bare", "ratio"
    );
    for name in [
        "a_bare",
        "a2_floor_identity_insert",
        "b_cookie_warm",
        "c_bearer_warm",
        "d_cookie_cold",
        "e_public",
        "f_unauthenticated_401",
        "p_tower_http_bearer",
        "q_axum_login",
        "h_verify_warm",
    ] {
        if let Some(ns) = median_ns("gate", name) {
            let over = if name.starts_with('h') {
                "-".to_owned()
            } else {
                format!("{:+.0}", ns - base)
            };
            println!("{name:<24} {ns:>10.1} {over:>12} {:>8.2}", ns / base);
        }
    }
    // The peers against the layer: extra ns over bare, as ratios.
    let over = |name| median_ns("gate", name).map(|ns| ns - base);
    for (peer, ours) in [
        ("q_axum_login", "b_cookie_warm"),
        ("q_axum_login", "c_bearer_warm"),
        ("c_bearer_warm", "p_tower_http_bearer"),
    ] {
        if let (Some(p), Some(o)) = (over(peer), over(ours)) {
            println!(
                "{:<44} {:>8.1}",
                format!("over bare: {peer} / {ours}"),
                p / o
            );
        }
    }
    if let Some(ours) = median_ns("cookie", "find_cookie") {
        println!(
            "{:<24} {ours:>10.1} {:>12} {:>8}",
            "find_cookie", "", "1.00"
        );
        for name in ["str_split", "cookie_split_parse"] {
            if let Some(ns) = median_ns("cookie", name) {
                println!("{name:<24} {ns:>10.1} {:>12} {:>8.2}", "", ns / ours);
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40)
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
    // Only after a real measurement run (not `cargo test --benches`, not `--list`).
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        summary();
    }
}

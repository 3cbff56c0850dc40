//! The loopback soak driver, shared by `examples/soak.rs` (minutes, memory checked) and
//! `tests/soak.rs` (seconds). It expects the demo app module at `crate::demo_app`.
//!
//! It starts the demo app on a loopback port, in this process, against an OpenID provider whose
//! settings it is given (a [`MockIdp`](tower_sso::testing::MockIdp) in auto-login mode), and
//! drives it over real HTTP with concurrent workers:
//!
//! - **sessions**: long-lived sessions (logged in at the start) making protected requests, with
//!   the `token` cookie or `Authorization: Bearer`, plus unauthenticated probes (401, 303, the
//!   public `/health`);
//! - **logins**: full logins (start → IdP `/authorize` → callback), a protected request with the
//!   new session, logout, and a check that the logged-out token is refused. Each simulated user
//!   has its own client address (a `127.4.w.n` source address) and logs in at most about once a
//!   second, under the layer's per-client limit (60 a minute, bursts of 20): none may be refused;
//! - **flood**: one client (`127.9.9.9`) hammering `GET /sso/key/generate` and another
//!   (`127.9.9.10`) sending forged callbacks: both must meet 429 (the few allowed through get
//!   303 and 401 respectively), while the real users above still log in.
//!
//! Phases: setup (log the long-lived sessions in), warm-up (every worker), quiet (workers joined,
//! their clients dropped, the open descriptors and tasks settle) and the first measurement; the
//! main phase; quiet again and the last measurement.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Length of the main phase.
    pub duration: Duration,
    /// Length of the warm-up phase.
    pub warmup: Duration,
    /// Long-lived sessions shared by the session workers.
    pub sessions: usize,
    /// Concurrent workers making protected requests.
    pub session_workers: usize,
    /// Concurrent login/logout workers.
    pub login_workers: usize,
    /// Client addresses (simulated users) per login worker.
    pub users_per_login_worker: usize,
    /// Concurrent flood workers (login starts; half as many forge callbacks, at least one).
    pub flood_workers: usize,
    /// Check that RSS stays within `rss_tolerance` (meaningful over minutes, not seconds).
    pub check_memory: bool,
    /// Allowed RSS growth from the first measurement to the last (0.10: 10 %).
    pub rss_tolerance: f64,
    /// Allowed growth of open descriptors and alive tasks from the first quiet measurement to
    /// the last.
    pub leak_margin: usize,
}

impl SoakConfig {
    /// The long soak's defaults, for a run of `duration`.
    pub fn long(duration: Duration) -> Self {
        Self {
            duration,
            warmup: (duration / 6).clamp(Duration::from_secs(3), Duration::from_secs(30)),
            sessions: 200,
            session_workers: 16,
            login_workers: 8,
            users_per_login_worker: 24,
            flood_workers: 4,
            check_memory: true,
            rss_tolerance: 0.10,
            leak_margin: 4,
        }
    }

    /// A CI-sized run: `duration` long, smaller, memory not checked (`tests/soak.rs`).
    #[allow(dead_code)] // not by the example
    pub fn short(duration: Duration) -> Self {
        Self {
            warmup: Duration::from_secs(2),
            sessions: 50,
            session_workers: 8,
            login_workers: 4,
            users_per_login_worker: 8,
            flood_workers: 2,
            check_memory: false,
            ..Self::long(duration)
        }
    }
}

/// What the process looked like at a quiet moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open file descriptors (`/proc/self/fd`).
    pub fds: usize,
    /// Alive Tokio tasks.
    pub tasks: usize,
}

impl Snapshot {
    /// Reads the current values.
    pub fn now() -> Self {
        Self {
            rss_kib: rss_kib(),
            fds: open_fds(),
            tasks: tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        }
    }
}

/// `VmRSS` of this process, KiB (0 where there is no `/proc`).
pub fn rss_kib() -> u64 {
    rss_kib_of("self")
}

/// `VmRSS` of process `pid` (`"self"` for this one), KiB.
pub fn rss_kib_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Latencies, in microseconds, in log buckets (16 a power of two: about 6 % resolution):
/// constant memory however long the run.
#[derive(Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; 64 * 16],
            count: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < 16 {
            return us as usize;
        }
        let e = 63 - us.leading_zeros() as usize; // >= 4
        (e - 3) * 16 + ((us >> (e - 4)) as usize - 16)
    }

    fn lower_bound(idx: usize) -> u64 {
        if idx < 16 {
            return idx as u64;
        }
        let e = idx / 16 + 3;
        ((idx % 16) as u64 + 16) << (e - 4)
    }

    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = Self::index(us).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.count += 1;
        self.max = self.max.max(us);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// The latency at quantile `q` (0..=1), microseconds (a bucket's lower bound).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::lower_bound(i);
            }
        }
        self.max
    }
}

/// Counts for one kind of request.
#[derive(Clone, Default)]
pub struct Kind {
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Responses whose status was not one expected for this kind.
    pub unexpected: u64,
    /// Requests that got no response (connection errors).
    pub errors: u64,
    /// Latencies.
    pub latency: Histogram,
}

impl Kind {
    /// All requests made.
    pub fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.errors
    }

    /// Responses with this status.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

/// Counts by kind of request, and the first few failures in words.
#[derive(Clone, Default)]
pub struct Stats {
    /// Per kind of request.
    pub kinds: BTreeMap<&'static str, Kind>,
    /// Full logins that ended with a working session.
    pub logins: u64,
    /// Logouts after which the old token was refused.
    pub logouts: u64,
    /// The first failures, described.
    pub failures: Vec<String>,
}

impl Stats {
    fn fail(&mut self, what: String) {
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }

    /// Records a response (or a transport error) of `kind`. `expected`: the statuses that are
    /// right for it. Returns the response when its status was expected.
    fn record(
        &mut self,
        kind: &'static str,
        expected: &[u16],
        started: Instant,
        result: Result<Answer, String>,
    ) -> Option<Answer> {
        let k = self.kinds.entry(kind).or_default();
        k.latency.record(started.elapsed());
        match result {
            Ok(a) => {
                let s = a.status.as_u16();
                *k.statuses.entry(s).or_default() += 1;
                if expected.contains(&s) {
                    Some(a)
                } else {
                    k.unexpected += 1;
                    let body = String::from_utf8_lossy(&a.body[..a.body.len().min(200)]);
                    self.fail(format!("{kind}: status {s}, expected {expected:?}: {body}"));
                    None
                }
            }
            Err(e) => {
                k.errors += 1;
                self.fail(format!("{kind}: no response: {e}"));
                None
            }
        }
    }

    fn merge(&mut self, other: Stats) {
        for (name, k) in other.kinds {
            let mine = self.kinds.entry(name).or_default();
            for (s, n) in k.statuses {
                *mine.statuses.entry(s).or_default() += n;
            }
            mine.unexpected += k.unexpected;
            mine.errors += k.errors;
            mine.latency.merge(&k.latency);
        }
        self.logins += other.logins;
        self.logouts += other.logouts;
        for f in other.failures {
            self.fail(f);
        }
    }

    /// Every request made.
    pub fn requests(&self) -> u64 {
        self.kinds.values().map(Kind::total).sum()
    }

    /// Responses with a 5xx status.
    pub fn server_errors(&self) -> u64 {
        self.kinds
            .values()
            .flat_map(|k| k.statuses.iter())
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    /// Responses with an unexpected status, and requests without a response.
    pub fn unexpected(&self) -> u64 {
        self.kinds.values().map(|k| k.unexpected + k.errors).sum()
    }

    /// Every request's latencies together.
    pub fn all_latencies(&self) -> Histogram {
        let mut h = Histogram::default();
        for k in self.kinds.values() {
            h.merge(&k.latency);
        }
        h
    }
}

/// One response, read to the end.
pub struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION)?.to_str().ok()
    }

    /// `name=value` of every `Set-Cookie` that sets a value.
    fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next()?.trim().split_once('='))
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A client whose connections come from `local` (a loopback address: Linux routes all of
/// 127.0.0.0/8 to the loopback interface, so each is a distinct client address to the server).
fn client(local: Option<Ipv4Addr>) -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_local_address(local.map(IpAddr::V4));
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(c)
}

async fn get(
    client: &HttpClient,
    url: &str,
    headers: &[(http::HeaderName, &str)],
) -> Result<Answer, String> {
    let mut req = Request::get(url);
    for (name, value) in headers {
        req = req.header(
            name,
            HeaderValue::from_str(value).map_err(|e| e.to_string())?,
        );
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    let fut = async {
        let res = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(r) => r,
        Err(_) => Err("no answer within 30 s".to_owned()),
    }
}

/// The app under test.
struct Target {
    base: String,
}

impl Target {
    fn url(&self, target: &str) -> String {
        if target.starts_with("http://") {
            target.to_owned()
        } else {
            format!("{}{}", self.base, target)
        }
    }
}

/// One full login from `app_client`'s address: start, the IdP's `/authorize`, the callback.
/// Returns the session token.
async fn login(
    t: &Target,
    app_client: &HttpClient,
    idp_client: &HttpClient,
    stats: &mut Stats,
) -> Option<String> {
    let started = Instant::now();
    let r = get(app_client, &t.url("/sso/key/generate"), &[]).await;
    let start = stats.record("login: start", &[303], started, r)?;
    let flow: Vec<String> = start.cookies().map(|(n, v)| format!("{n}={v}")).collect();
    let Some(authorize) = start.location().map(str::to_owned) else {
        stats.fail("login: start without Location".into());
        return None;
    };

    let started = Instant::now();
    let r = get(idp_client, &authorize, &[]).await;
    let back = stats.record("login: IdP /authorize", &[302, 303], started, r)?;
    let Some(callback) = back.location().map(str::to_owned) else {
        stats.fail("login: /authorize without Location".into());
        return None;
    };

    let started = Instant::now();
    let cookie = flow.join("; ");
    let r = get(app_client, &t.url(&callback), &[(COOKIE, &cookie)]).await;
    let done = stats.record("login: callback", &[303], started, r)?;
    let token = done
        .cookies()
        .find(|(n, v)| *n == "token" && !v.is_empty())
        .map(|(_, v)| v.to_owned());
    if token.is_none() {
        stats.fail("login: callback set no session cookie".into());
    }
    token
}

/// Long-lived sessions: protected requests with the cookie or a bearer token, and probes.
async fn session_worker(
    t: Arc<Target>,
    tokens: Arc<Vec<String>>,
    worker: usize,
    until: Instant,
) -> Stats {
    let mut stats = Stats::default();
    let client = client(None);
    let mut i = worker;
    while Instant::now() < until {
        let token = &tokens[i % tokens.len()];
        let started = Instant::now();
        let (kind, expected, r) = match i % 10 {
            0..=3 => {
                let cookie = format!("token={token}");
                let r = get(&client, &t.url("/whoami"), &[(COOKIE, &cookie)]).await;
                ("protected: cookie /whoami", 200, r)
            }
            4..=6 => {
                let bearer = format!("Bearer {token}");
                let r = get(&client, &t.url("/whoami"), &[(AUTHORIZATION, &bearer)]).await;
                ("protected: bearer /whoami", 200, r)
            }
            7 => {
                let cookie = format!("token={token}");
                let r = get(
                    &client,
                    &t.url("/"),
                    &[(COOKIE, &cookie), (ACCEPT, "text/html")],
                )
                .await;
                ("protected: cookie / (html)", 200, r)
            }
            8 => {
                let r = if i % 20 == 8 {
                    get(&client, &t.url("/whoami"), &[]).await
                } else {
                    get(
                        &client,
                        &t.url("/whoami"),
                        &[(AUTHORIZATION, "Bearer not.a.token")],
                    )
                    .await
                };
                ("unauthenticated /whoami (401)", 401, r)
            }
            _ => {
                if i % 20 == 9 {
                    let r = get(&client, &t.url("/health"), &[]).await;
                    ("public /health", 200, r)
                } else {
                    let r = get(&client, &t.url("/"), &[(ACCEPT, "text/html")]).await;
                    ("unauthenticated / (303 to login)", 303, r)
                }
            }
        };
        stats.record(kind, &[expected], started, r);
        i = i.wrapping_add(7);
    }
    stats
}

/// The address of login worker `w`'s user `n`.
fn user_addr(w: usize, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 4, (w % 256) as u8, (n % 250 + 1) as u8)
}

/// Full logins, a protected request, logout, and the old token refused.
async fn login_worker(t: Arc<Target>, w: usize, users: usize, until: Instant) -> Stats {
    let mut stats = Stats::default();
    let clients: Vec<HttpClient> = (0..users).map(|n| client(Some(user_addr(w, n)))).collect();
    // The earliest next login of each user: about one a second, under the per-client limit.
    let mut next = vec![Instant::now(); users];
    let idp_client = client(None);
    let mut n = 0;
    while Instant::now() < until {
        let wait = next[n].saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        next[n] = Instant::now() + Duration::from_millis(1100);
        let app = &clients[n];
        n = (n + 1) % users;
        let Some(token) = login(&t, app, &idp_client, &mut stats).await else {
            continue;
        };
        let cookie = format!("token={token}");
        let started = Instant::now();
        let r = get(app, &t.url("/whoami"), &[(COOKIE, &cookie)]).await;
        if stats
            .record("login: /whoami after login", &[200], started, r)
            .is_none()
        {
            continue;
        }
        stats.logins += 1;
        let started = Instant::now();
        let r = get(app, &t.url("/sso/logout"), &[(COOKIE, &cookie)]).await;
        if stats.record("logout", &[303], started, r).is_none() {
            continue;
        }
        let started = Instant::now();
        let bearer = format!("Bearer {token}");
        let r = get(app, &t.url("/whoami"), &[(AUTHORIZATION, &bearer)]).await;
        if stats
            .record("logged-out token /whoami (401)", &[401], started, r)
            .is_some()
        {
            stats.logouts += 1;
        }
    }
    stats
}

/// The flood address for login starts.
const FLOOD_LOGIN: Ipv4Addr = Ipv4Addr::new(127, 9, 9, 9);
/// The flood address for forged callbacks.
const FLOOD_CALLBACK: Ipv4Addr = Ipv4Addr::new(127, 9, 9, 10);

/// Unauthenticated login starts (or forged callbacks) from one client address, as fast as they
/// are answered.
async fn flood_worker(t: Arc<Target>, callbacks: bool, w: usize, until: Instant) -> Stats {
    let mut stats = Stats::default();
    let client = client(Some(if callbacks {
        FLOOD_CALLBACK
    } else {
        FLOOD_LOGIN
    }));
    let mut i = 0u64;
    while Instant::now() < until {
        let started = Instant::now();
        if callbacks {
            let url = t.url(&format!(
                "/sso/callback?code=forged-{w}-{i}&state=forged-{i}"
            ));
            let r = get(&client, &url, &[]).await;
            stats.record("flood: forged callback", &[401, 429], started, r);
        } else {
            let r = get(&client, &t.url("/sso/key/generate"), &[]).await;
            stats.record("flood: login start", &[303, 429], started, r);
        }
        i += 1;
    }
    stats
}

/// Runs every worker until `until`; returns their stats once all have stopped (and dropped
/// their clients).
async fn run_phase(
    cfg: &SoakConfig,
    t: &Arc<Target>,
    tokens: &Arc<Vec<String>>,
    until: Instant,
) -> Stats {
    let mut handles = Vec::new();
    for w in 0..cfg.session_workers {
        handles.push(tokio::spawn(session_worker(
            t.clone(),
            tokens.clone(),
            w,
            until,
        )));
    }
    for w in 0..cfg.login_workers {
        handles.push(tokio::spawn(login_worker(
            t.clone(),
            w,
            cfg.users_per_login_worker,
            until,
        )));
    }
    for w in 0..cfg.flood_workers {
        handles.push(tokio::spawn(flood_worker(t.clone(), false, w, until)));
    }
    for w in 0..cfg.flood_workers.div_ceil(2) {
        handles.push(tokio::spawn(flood_worker(t.clone(), true, w, until)));
    }
    let mut stats = Stats::default();
    for h in handles {
        match h.await {
            Ok(s) => stats.merge(s),
            Err(e) => stats.fail(format!("a worker panicked: {e}")),
        }
    }
    stats
}

/// Waits until the open descriptors and alive tasks have not changed for a second (at most
/// 20 s), then takes a snapshot.
async fn quiet_snapshot() -> Snapshot {
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut last = (open_fds(), Snapshot::now().tasks);
    let mut stable_since = Instant::now();
    while Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = (open_fds(), Snapshot::now().tasks);
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    Snapshot::now()
}

/// The outcome of a soak.
pub struct Report {
    /// The configuration run.
    pub config: SoakConfig,
    /// The main phase's requests.
    pub stats: Stats,
    /// The warm-up's requests.
    pub warmup_stats: Stats,
    /// How long the main phase really took.
    pub elapsed: Duration,
    /// Before the server started.
    pub start: Snapshot,
    /// Quiet, after the warm-up.
    pub after_warmup: Snapshot,
    /// Quiet, after the main phase.
    pub end: Snapshot,
    /// Load average at the start and the end (`/proc/loadavg`, 1 minute).
    pub load: (String, String),
}

impl Report {
    /// The criteria that failed, in words (empty: the soak passed).
    pub fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        for (name, s) in [("warm-up", &self.warmup_stats), ("main", &self.stats)] {
            if s.server_errors() > 0 {
                f.push(format!(
                    "{name}: {} responses with a 5xx status",
                    s.server_errors()
                ));
            }
            if s.unexpected() > 0 {
                f.push(format!(
                    "{name}: {} unexpected statuses or transport errors (first: {:?})",
                    s.unexpected(),
                    &s.failures[..s.failures.len().min(3)]
                ));
            }
        }
        let s = &self.stats;
        if s.logins == 0 || s.logouts == 0 {
            f.push("no complete login and logout in the main phase".into());
        }
        let flood = s
            .kinds
            .get("flood: login start")
            .cloned()
            .unwrap_or_default();
        if flood.count(429) == 0 {
            f.push("the login flood was never refused with 429".into());
        }
        // One client gets a burst of 20 and then one a second (the default limit), whatever
        // it sends. Over the warm-up and the main phase together:
        let allowed = flood.count(303)
            + self
                .warmup_stats
                .kinds
                .get("flood: login start")
                .map_or(0, |k| k.count(303));
        let secs = (self.elapsed + self.config.warmup).as_secs_f64();
        let bound = 20 + (secs * 1.1).ceil() as u64 + 5;
        if allowed > bound {
            f.push(format!(
                "the flooding client started {allowed} logins, more than the limit allows (about {bound})"
            ));
        }
        let forged = s
            .kinds
            .get("flood: forged callback")
            .cloned()
            .unwrap_or_default();
        if forged.count(429) == 0 {
            f.push("the forged-callback flood was never refused with 429".into());
        }
        let (a, e) = (self.after_warmup, self.end);
        if e.fds > a.fds + self.config.leak_margin {
            f.push(format!(
                "open file descriptors grew from {} to {} (margin {})",
                a.fds, e.fds, self.config.leak_margin
            ));
        }
        if e.tasks > a.tasks + self.config.leak_margin {
            f.push(format!(
                "alive tasks grew from {} to {} (margin {})",
                a.tasks, e.tasks, self.config.leak_margin
            ));
        }
        if self.config.check_memory && e.rss_kib > self.rss_bound_kib() {
            f.push(format!(
                "RSS grew from {} KiB to {} KiB: more than {:.0} % plus the revoked-session set ({} KiB)",
                a.rss_kib,
                e.rss_kib,
                self.config.rss_tolerance * 100.0,
                self.revoked_set_kib()
            ));
        }
        f
    }

    /// What the logouts of the main phase add to the layer's set of revoked sessions, KiB.
    ///
    /// That set is deliberately unbounded within a session lifetime (a dropped revocation is a
    /// logged-out session that works again; see `RevokedSessions` in `src/session.rs`), at about
    /// 100 bytes an entry, so a soak that logs out 150 times a second grows it by design. The
    /// memory criterion allows for it, and the summary shows it separately.
    pub fn revoked_set_kib(&self) -> u64 {
        self.stats.logouts * 100 / 1024
    }

    /// The most RSS allowed at the end: the RSS after the warm-up plus the tolerance, plus the
    /// revoked-session set's growth.
    pub fn rss_bound_kib(&self) -> u64 {
        (self.after_warmup.rss_kib as f64 * (1.0 + self.config.rss_tolerance)) as u64
            + self.revoked_set_kib()
    }

    /// The summary, for people.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let s = &self.stats;
        let secs = self.elapsed.as_secs_f64();
        let mut out = String::new();
        let ms = |us: u64| us as f64 / 1000.0;
        let _ = writeln!(
            out,
            "soak: main phase {secs:.1} s after a {:.1} s warm-up; load average {} -> {}",
            self.config.warmup.as_secs_f64(),
            self.load.0,
            self.load.1
        );
        let _ = writeln!(
            out,
            "requests: {} ({:.0}/s), 5xx: {}, unexpected: {}; logins {} ({:.1}/s), logouts {} ({:.1}/s)",
            s.requests(),
            s.requests() as f64 / secs,
            s.server_errors(),
            s.unexpected(),
            s.logins,
            s.logins as f64 / secs,
            s.logouts,
            s.logouts as f64 / secs
        );
        let _ = writeln!(
            out,
            "{:<36} {:>9} {:>8}  {:>7} {:>7} {:>7} {:>7}  statuses",
            "kind", "requests", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let mut row = |name: &str, k: &Kind| {
            let statuses: Vec<String> =
                k.statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
            let errors = if k.errors > 0 {
                format!(" errors:{}", k.errors)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{:<36} {:>9} {:>8.1}  {:>7.2} {:>7.2} {:>7.2} {:>7.1}  {}{}",
                name,
                k.total(),
                k.total() as f64 / secs,
                ms(k.latency.quantile(0.5)),
                ms(k.latency.quantile(0.9)),
                ms(k.latency.quantile(0.99)),
                ms(k.latency.max),
                statuses.join(" "),
                errors
            );
        };
        for (name, k) in &s.kinds {
            row(name, k);
        }
        let all = Kind {
            statuses: BTreeMap::new(),
            unexpected: 0,
            errors: 0,
            latency: s.all_latencies(),
        };
        let _ = writeln!(
            out,
            "all requests: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms",
            ms(all.latency.quantile(0.5)),
            ms(all.latency.quantile(0.9)),
            ms(all.latency.quantile(0.99)),
            ms(all.latency.quantile(0.999)),
            ms(all.latency.max)
        );
        let (b, a, e) = (self.start, self.after_warmup, self.end);
        let _ = writeln!(
            out,
            "RSS: {} KiB at start, {} KiB after warm-up, {} KiB at the end ({:+.1} %)",
            b.rss_kib,
            a.rss_kib,
            e.rss_kib,
            (e.rss_kib as f64 / a.rss_kib.max(1) as f64 - 1.0) * 100.0
        );
        let other = e.rss_kib.saturating_sub(self.revoked_set_kib());
        let _ = writeln!(
            out,
            "  of which the revoked-session set, by design: about {} KiB ({} logouts x ~100 B); without it {:+.1} %; bound {} KiB{}",
            self.revoked_set_kib(),
            self.stats.logouts,
            (other as f64 / a.rss_kib.max(1) as f64 - 1.0) * 100.0,
            self.rss_bound_kib(),
            if self.config.check_memory {
                ""
            } else {
                " (not checked)"
            }
        );
        let _ = writeln!(
            out,
            "open fds: {} at start, {} after warm-up, {} at the end; alive tasks: {} at start, {} after warm-up, {} at the end",
            b.fds, a.fds, e.fds, b.tasks, a.tasks, e.tasks
        );
        out
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs the soak against the demo app, which it starts here with the provider `idp_env`
/// describes (`MockIdp::env_vars`; the provider must sign users in without a form).
pub async fn run(cfg: SoakConfig, idp_env: Vec<(String, String)>) -> Result<Report, String> {
    let start = Snapshot::now();
    let load_start = loadavg();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let listen: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut settings: HashMap<String, String> = crate::demo_app::default_settings(listen);
    settings.extend(idp_env);
    crate::demo_app::builtin_provider_settings(&mut settings);
    settings.insert(
        "LITELLM_MASTER_KEY".into(),
        crate::demo_app::random_secret(),
    );
    let sso = crate::demo_app::layer(|k| settings.get(k).cloned()).map_err(|e| e.to_string())?;
    let app = crate::demo_app::router(sso);
    let server = tokio::spawn(crate::demo_app::serve(listener, app));
    let t = Arc::new(Target {
        base: format!("http://{listen}"),
    });

    // Setup: the long-lived sessions, each logged in from its own address.
    let mut setup = Stats::default();
    let mut tokens = Vec::with_capacity(cfg.sessions);
    {
        let idp_client = client(None);
        for i in 0..cfg.sessions {
            let n = 0x7f03_0001u32 + i as u32;
            let app = client(Some(Ipv4Addr::from(n)));
            if let Some(token) = login(&t, &app, &idp_client, &mut setup).await {
                tokens.push(token);
            }
        }
    }
    if tokens.len() != cfg.sessions {
        server.abort();
        return Err(format!(
            "setup: only {} of {} sessions logged in: {:?}",
            tokens.len(),
            cfg.sessions,
            setup.failures
        ));
    }
    let tokens = Arc::new(tokens);

    let warmup_stats = run_phase(&cfg, &t, &tokens, Instant::now() + cfg.warmup).await;
    let after_warmup = quiet_snapshot().await;

    let began = Instant::now();
    let stats = run_phase(&cfg, &t, &tokens, began + cfg.duration).await;
    let elapsed = began.elapsed();
    let end = quiet_snapshot().await;
    let load_end = loadavg();

    server.abort();
    let _ = server.await;
    Ok(Report {
        config: cfg,
        stats,
        warmup_stats,
        elapsed,
        start,
        after_warmup,
        end,
        load: (load_start, load_end),
    })
}

//! Login state is bounded: a flood of unauthenticated login starts from many clients (the rate
//! limiter caps each client, not their number) cannot grow the in-process verifier cache past
//! its capacity or the process past a fixed amount of memory, and real users can still log in
//! while the cache is full. A login whose state was evicted is refused with a clear 401 and
//! can simply be started again.
//!
//! The flood here is 100 000 starts in a debug build (about 35 s of CPU, a minute on two loaded cores;
//! `LOGIN_FLOOD_STARTS` overrides it) against a cache sized for 10 000 logins in flight, so the
//! cache is full ten times over. The one-million-start figure for the default capacity comes
//! from the release build: `cargo run --release --example login_flood` (see BENCHMARKS.md).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use http::StatusCode;
use tower::ServiceExt;
use tower_sso::cache::{CacheRequest, MokaVerifierCache};
use tower_sso::testing::{MockIdp, SigningAlg};
use tower_sso::{RateLimits, SsoLayer};

const UI: &str = "/ui/?login=success";

/// What one login in flight weighs in the moka cache: a 58-byte key, a 164-byte value and the
/// 528-byte per-entry overhead (`src/endpoints/flow.rs`, `src/cache/moka.rs`).
const ENTRY_WEIGHT: u64 = 58 + 164 + 528;

/// A moka verifier cache, and what was put into it: the number of puts and every distinct
/// value length seen.
#[derive(Clone)]
struct Observed {
    moka: MokaVerifierCache,
    puts: Arc<AtomicUsize>,
    value_lens: Arc<Mutex<Vec<usize>>>,
}

impl Observed {
    fn new(logins_in_flight: u64) -> Self {
        Observed {
            moka: MokaVerifierCache::new(logins_in_flight * ENTRY_WEIGHT),
            puts: Arc::default(),
            value_lens: Arc::default(),
        }
    }

    /// The layer around this cache, `idp` its provider, rate limits off (the flood stands for
    /// many clients, each under its own limit).
    fn layer(&self, idp: &MockIdp) -> SsoLayer {
        let this = self.clone();
        let cache = tower::service_fn(move |req: CacheRequest| {
            if let CacheRequest::Put { value, .. } = &req {
                this.puts.fetch_add(1, Ordering::Relaxed);
                let mut lens = this.value_lens.lock().unwrap();
                if !lens.contains(&value.len()) {
                    lens.push(value.len());
                }
            }
            this.moka.clone().oneshot(req)
        });
        flow_builder(idp)
            .verifier_cache(cache)
            .rate_limits(RateLimits::disabled())
            .build()
            .expect("layer")
    }
}

/// Resident memory of this process, from `/proc/self/status`, in KiB (`None` off Linux).
fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `n` login starts through `app`, each from a new browser with a different return target.
async fn flood(app: &App, n: usize, offset: usize) {
    for i in offset..offset + n {
        let target = format!("/sso/key/generate?return_to=/ui/page-{i}");
        let res = send(app, get(&target, &[])).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "start {i}");
    }
}

async fn es256_idp() -> MockIdp {
    MockIdp::builder()
        .signing_alg(SigningAlg::Es256)
        .start()
        .await
        .expect("MockIdp starts")
}

#[tokio::test]
async fn a_flood_of_login_starts_stays_within_the_cache_bound_and_real_users_still_log_in() {
    let starts: usize = std::env::var("LOGIN_FLOOD_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    const IN_FLIGHT: u64 = 10_000;
    let idp = es256_idp().await;
    let cache = Observed::new(IN_FLIGHT);
    let layer = cache.layer(&idp);
    let app = Upstream::default().behind(&layer);

    // Warm up (discovery, allocator arenas) with one cache-full of starts, then measure.
    flood(&app, IN_FLIGHT as usize, 0).await;
    cache.moka.run_pending_tasks().await;
    let rss_full = vm_rss_kib();
    let chunk = 10_000;
    let mut done = 0;
    let mut rss_half = None;
    while done < starts {
        let n = chunk.min(starts - done);
        flood(&app, n, IN_FLIGHT as usize + done).await;
        done += n;
        cache.moka.run_pending_tasks().await;
        assert!(
            cache.moka.weighted_size() <= cache.moka.max_capacity(),
            "after {done} starts the cache holds {} of {}",
            cache.moka.weighted_size(),
            cache.moka.max_capacity()
        );
        assert!(
            cache.moka.entry_count() <= IN_FLIGHT,
            "after {done} starts the cache holds {} entries",
            cache.moka.entry_count()
        );
        if rss_half.is_none() && done >= starts / 2 {
            rss_half = vm_rss_kib();
        }
    }
    assert_eq!(
        cache.puts.load(Ordering::Relaxed),
        IN_FLIGHT as usize + starts
    );
    // Whatever the return target's length, every login cached the same 164 bytes.
    assert_eq!(*cache.value_lens.lock().unwrap(), vec![164]);
    // The cache is full, not empty: the bound is what limited it.
    assert!(cache.moka.entry_count() > IN_FLIGHT * 9 / 10);

    // Memory: once the cache is full, more starts add nothing that stays. The second half of
    // the flood (`starts / 2` starts, each of which would keep ~1 KiB if nothing were evicted)
    // may grow the process by allocator noise only, and the whole flood by less than what the
    // cache may hold, counted generously at 2 KiB of heap per 750-weight entry.
    let rss_end = vm_rss_kib();
    if let (Some(full), Some(half), Some(end)) = (rss_full, rss_half, rss_end) {
        let second_half = end.saturating_sub(half);
        let whole = end.saturating_sub(full);
        eprintln!(
            "VmRSS: {full} KiB with the cache full, {half} KiB after {} more starts, {end} KiB \
             after {starts} (+{whole} KiB); cache: {} entries, {} of {} weight",
            starts / 2,
            cache.moka.entry_count(),
            cache.moka.weighted_size(),
            cache.moka.max_capacity()
        );
        assert!(
            second_half <= 8 * 1024,
            "the second {} starts grew VmRSS by {second_half} KiB",
            starts / 2
        );
        assert!(
            whole <= IN_FLIGHT * 2 + 16 * 1024,
            "{starts} starts grew VmRSS by {whole} KiB"
        );
    } else {
        eprintln!("no /proc/self/status: memory not measured");
    }

    // A real user who starts now, with the cache full of the flood, finishes the login:
    // the LRU policy admits every new entry (TinyLFU could refuse one after reporting it
    // stored).
    let mut browser = Browser::new(app.clone());
    let res = browser.login(&idp, "").await;
    assert_logged_in(&res, UI);
    let identity = browser.whoami().await;
    assert_eq!(identity["user_id"], "alice", "{identity}");
}

#[tokio::test]
async fn a_login_whose_state_was_evicted_is_refused_clearly_and_a_new_one_works() {
    const IN_FLIGHT: u64 = 200;
    let idp = es256_idp().await;
    let cache = Observed::new(IN_FLIGHT);
    let layer = cache.layer(&idp);
    let app = Upstream::default().behind(&layer);

    let mut browser = Browser::new(app.clone());
    let flow = browser.authorize(&idp, "").await;
    // Other clients start more logins than the cache holds: this one is the least recently
    // used and is evicted.
    flood(&app, 3 * IN_FLIGHT as usize, 0).await;
    cache.moka.run_pending_tasks().await;
    assert!(cache.moka.entry_count() <= IN_FLIGHT);

    let res = browser.callback(&flow).await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        msg,
        "login state unknown, expired or already used: start the login again"
    );
    // The IdP issued the code but it was never redeemed.
    assert_eq!(idp.count("/token"), 0);

    // Starting again works, although the flood goes on around it.
    let flow = browser.authorize(&idp, "").await;
    flood(&app, IN_FLIGHT as usize / 2, 10_000).await;
    let res = browser.callback(&flow).await;
    assert_logged_in(&res, UI);
    assert_eq!(browser.whoami().await["user_id"], "alice");
}

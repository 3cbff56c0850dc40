//! The default verifier cache: a bounded, in-process moka cache with per-entry TTL.
//!
//! Every entry carries its own expiry instant, checked again on `Take` and `Get`, so an expired entry
//! is never returned even when moka has not evicted it yet (moka's `remove` hands back expired
//! entries). `Take` and `Put { only_if_absent: true }` run under moka's per-key compute lock, so they
//! are atomic with respect to each other.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use super::{CacheError, CacheRequest, CacheResponse};

/// A stored value with the instant it stops being live.
#[derive(Clone)]
struct Slot {
    value: Bytes,
    ttl: Duration,
    expires_at: Instant,
}

impl Slot {
    fn new(value: Bytes, ttl: Duration, now: Instant) -> Self {
        let ttl = ttl.min(MokaVerifierCache::MAX_TTL);
        // `MAX_TTL` is small enough that this never saturates in practice; fall back to `now`
        // (already expired) rather than panic if it ever does.
        let expires_at = now.checked_add(ttl).unwrap_or(now);
        Self {
            value,
            ttl,
            expires_at,
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// Per-entry TTL for moka: each entry lives for its own `ttl`, also after being replaced.
struct SlotExpiry;

impl Expiry<String, Slot> for SlotExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Slot,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Slot,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The default verifier cache: a bounded, in-process [moka](https://docs.rs/moka) cache with a
/// per-entry TTL.
///
/// Suitable for one process. With several replicas behind a load balancer, plug in a shared cache
/// (Redis, ...) instead, or logins that land on another replica fail.
///
/// Cheap to clone: clones share the same entries.
#[derive(Clone)]
pub struct MokaVerifierCache {
    inner: Cache<String, Slot>,
}

impl MokaVerifierCache {
    /// The default capacity: 64 MiB of weight, which is close to the memory the entries take
    /// (keys, values and a measured per-entry overhead). A login in flight weighs
    /// 58 + 164 + 528 = 750, so about 89 000 logins fit (`examples/login_flood.rs` measures it).
    pub const DEFAULT_CAPACITY: u64 = 64 * 1024 * 1024;

    /// What one entry counts for beyond its key and value bytes: moka's own node, its timer
    /// wheel and deque entries, the key and value allocations. Measured with
    /// `examples/login_flood.rs` (about 750 bytes of process memory per login in flight), so
    /// that the capacity bounds the memory, not just the payload.
    const ENTRY_OVERHEAD: u32 = 528;

    /// The longest time an entry may live; longer TTLs are shortened to this (one year).
    ///
    /// Verifier-cache entries live for minutes; the bound keeps instant arithmetic from overflowing.
    pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    /// A cache holding at most `max_capacity` bytes (keys, values and a small per-entry
    /// overhead), so that unauthenticated login starts cannot grow it without bound.
    ///
    /// When it is full, the least recently used entries are evicted to make room (LRU): a `Put`
    /// that reports success is always there for the next `Take` or `Get` (until it expires or
    /// is itself evicted by newer entries). moka's default admission policy (TinyLFU) would
    /// instead refuse a new entry that looks less popular than the ones it would evict, after
    /// reporting it stored: a flood of login starts could then lock real users out.
    pub fn new(max_capacity: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_capacity)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .weigher(|k: &String, v: &Slot| {
                u32::try_from(k.len().saturating_add(v.value.len()))
                    .unwrap_or(u32::MAX)
                    .saturating_add(Self::ENTRY_OVERHEAD)
            })
            .expire_after(SlotExpiry)
            .build();
        Self { inner }
    }

    /// The approximate number of entries (expired entries not yet evicted included).
    pub fn entry_count(&self) -> u64 {
        self.inner.entry_count()
    }

    /// The approximate weight held, in the unit of the capacity: key and value bytes plus a
    /// 64-byte overhead per entry (expired entries not yet evicted included).
    pub fn weighted_size(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// The capacity this cache was built with (see [`MokaVerifierCache::new`]).
    pub fn max_capacity(&self) -> u64 {
        self.inner.policy().max_capacity().unwrap_or(u64::MAX)
    }

    /// Runs moka's pending maintenance now (evictions, expirations), which it otherwise does
    /// in small steps on later calls; [`entry_count`](Self::entry_count) and
    /// [`weighted_size`](Self::weighted_size) are exact afterwards. For tests and metrics:
    /// never needed for correctness.
    pub async fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks().await;
    }

    async fn put(&self, key: String, value: Bytes, ttl: Duration, only_if_absent: bool) -> bool {
        let now = Instant::now();
        let slot = Slot::new(value, ttl, now);
        let result = self
            .inner
            .entry(key)
            .and_compute_with(move |existing| {
                let op = match existing {
                    Some(e) if only_if_absent && e.value().is_live(now) => Op::Nop,
                    _ => Op::Put(slot),
                };
                std::future::ready(op)
            })
            .await;
        matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        )
    }

    async fn take(&self, key: String) -> Option<Bytes> {
        let now = Instant::now();
        let result = self
            .inner
            .entry(key)
            .and_compute_with(|existing| {
                // Expired entries are removed too, but never returned.
                let op = if existing.is_some() {
                    Op::Remove
                } else {
                    Op::Nop
                };
                std::future::ready(op)
            })
            .await;
        match result {
            CompResult::Removed(entry) => {
                let slot = entry.into_value();
                slot.is_live(now).then_some(slot.value)
            }
            _ => None,
        }
    }

    async fn get(&self, key: &str) -> Option<Bytes> {
        let slot = self.inner.get(key).await?;
        slot.is_live(Instant::now()).then_some(slot.value)
    }

    async fn call_inner(self, req: CacheRequest) -> CacheResponse {
        match req {
            CacheRequest::Put {
                key,
                value,
                ttl,
                only_if_absent,
            } => CacheResponse::Stored(self.put(key, value, ttl, only_if_absent).await),
            CacheRequest::Take { key } => CacheResponse::Value(self.take(key).await),
            CacheRequest::Get { key } => CacheResponse::Value(self.get(&key).await),
            CacheRequest::Delete { key } => {
                self.inner.invalidate(&key).await;
                CacheResponse::Done
            }
            CacheRequest::Ping => CacheResponse::Done,
        }
    }
}

impl Default for MokaVerifierCache {
    /// A cache of [`MokaVerifierCache::DEFAULT_CAPACITY`] bytes.
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for MokaVerifierCache {
    /// Shows the size only: the entries are login secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaVerifierCache")
            .field("entry_count", &self.inner.entry_count())
            .field("max_capacity", &self.inner.policy().max_capacity())
            .finish_non_exhaustive()
    }
}

impl tower::Service<CacheRequest> for MokaVerifierCache {
    type Response = CacheResponse;
    type Error = CacheError;
    type Future = Pin<Box<dyn Future<Output = Result<CacheResponse, CacheError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CacheRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.call_inner(req).await) })
    }
}

#[cfg(test)]
mod tests {
    //! What every verifier cache must do is one suite, run against each backend:
    //! `tests/verifier_cache.rs`. Here only what is particular to moka (expired slots it still
    //! holds, per-entry TTLs, the byte bound, LRU admission).

    use std::sync::Arc;

    use tower::ServiceExt;

    use super::*;

    async fn call(cache: &MokaVerifierCache, req: CacheRequest) -> CacheResponse {
        cache.clone().oneshot(req).await.unwrap()
    }

    fn put(key: &str, value: &'static str, ttl: Duration, only_if_absent: bool) -> CacheRequest {
        CacheRequest::Put {
            key: key.into(),
            value: Bytes::from_static(value.as_bytes()),
            ttl,
            only_if_absent,
        }
    }

    fn take(key: &str) -> CacheRequest {
        CacheRequest::Take { key: key.into() }
    }

    fn get(key: &str) -> CacheRequest {
        CacheRequest::Get { key: key.into() }
    }

    const LONG: Duration = Duration::from_secs(60);
    const SHORT: Duration = Duration::from_millis(50);
    const PAST_SHORT: Duration = Duration::from_millis(120);

    fn value(v: &'static str) -> CacheResponse {
        CacheResponse::Value(Some(Bytes::from_static(v.as_bytes())))
    }

    #[tokio::test]
    async fn only_if_absent_treats_expired_entry_as_absent() {
        let c = MokaVerifierCache::default();
        assert_eq!(
            call(&c, put("k", "old", SHORT, true)).await,
            CacheResponse::Stored(true)
        );
        tokio::time::sleep(PAST_SHORT).await;
        assert_eq!(
            call(&c, put("k", "new", LONG, true)).await,
            CacheResponse::Stored(true)
        );
        assert_eq!(call(&c, take("k")).await, value("new"));
    }

    #[tokio::test]
    async fn expired_entries_are_never_returned() {
        let c = MokaVerifierCache::default();
        call(&c, put("t", "v", SHORT, false)).await;
        call(&c, put("g", "v", SHORT, false)).await;
        tokio::time::sleep(PAST_SHORT).await;
        assert_eq!(call(&c, take("t")).await, CacheResponse::Value(None));
        assert_eq!(call(&c, get("g")).await, CacheResponse::Value(None));
        assert_eq!(call(&c, take("g")).await, CacheResponse::Value(None));
    }

    #[tokio::test]
    async fn expired_slot_is_not_returned_by_take_even_if_moka_still_holds_it() {
        // Insert a slot whose own expiry has passed while moka's TTL has not: the re-check wins.
        let c = MokaVerifierCache::default();
        let now = Instant::now();
        let mut slot = Slot::new(Bytes::from_static(b"v"), LONG, now);
        slot.expires_at = now;
        c.inner.insert("k".to_owned(), slot).await;
        assert_eq!(call(&c, get("k")).await, CacheResponse::Value(None));
        assert_eq!(call(&c, take("k")).await, CacheResponse::Value(None));
    }

    #[tokio::test]
    async fn replaced_entry_gets_the_new_ttl() {
        let c = MokaVerifierCache::default();
        call(&c, put("k", "short", SHORT, false)).await;
        call(&c, put("k", "long", LONG, false)).await;
        tokio::time::sleep(PAST_SHORT).await;
        assert_eq!(call(&c, get("k")).await, value("long"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_takes_of_one_key_yield_the_value_once() {
        for round in 0..10 {
            let c = MokaVerifierCache::default();
            call(&c, put("k", "v", LONG, false)).await;
            let barrier = Arc::new(tokio::sync::Barrier::new(64));
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let c = c.clone();
                    let barrier = barrier.clone();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        c.oneshot(take("k")).await.unwrap()
                    })
                })
                .collect();
            let mut hits = 0;
            for t in tasks {
                if t.await.unwrap() == value("v") {
                    hits += 1;
                }
            }
            assert_eq!(hits, 1, "round {round}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_only_if_absent_puts_store_once() {
        let c = MokaVerifierCache::default();
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let c = c.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    c.oneshot(put("k", "v", LONG, true)).await.unwrap()
                })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            if t.await.unwrap() == CacheResponse::Stored(true) {
                stored += 1;
            }
        }
        assert_eq!(stored, 1);
    }

    #[tokio::test]
    async fn capacity_is_bounded() {
        // Ten empty entries' worth of bytes.
        let c = MokaVerifierCache::new(10 * (u64::from(MokaVerifierCache::ENTRY_OVERHEAD) + 4));
        for i in 0..200 {
            call(
                &c,
                CacheRequest::Put {
                    key: format!("k{i}"),
                    value: Bytes::new(),
                    ttl: LONG,
                    only_if_absent: false,
                },
            )
            .await;
        }
        c.inner.run_pending_tasks().await;
        assert!(c.entry_count() <= 10, "entry_count = {}", c.entry_count());
    }

    #[tokio::test]
    async fn a_full_cache_keeps_what_it_reports_stored() {
        // Fill a small cache with entries that are read often (what a flood of login starts,
        // each polled, looks like to a frequency-based admission policy).
        let c = MokaVerifierCache::new(16 * 1024);
        let junk = Bytes::from(vec![b'x'; 200]);
        for i in 0..400 {
            let key = format!("junk{i}");
            let req = CacheRequest::Put {
                key: key.clone(),
                value: junk.clone(),
                ttl: LONG,
                only_if_absent: true,
            };
            call(&c, req).await;
            c.inner.run_pending_tasks().await;
            for _ in 0..3 {
                call(&c, CacheRequest::Get { key: key.clone() }).await;
                c.inner.run_pending_tasks().await;
            }
        }
        c.inner.run_pending_tasks().await;
        // A real user's login state: stored, so it must be there.
        for i in 0..20 {
            let key = format!("real{i}");
            let req = CacheRequest::Put {
                key: key.clone(),
                value: Bytes::from(vec![b'r'; 400]),
                ttl: LONG,
                only_if_absent: true,
            };
            assert_eq!(call(&c, req).await, CacheResponse::Stored(true));
            c.inner.run_pending_tasks().await;
            assert_eq!(
                call(&c, CacheRequest::Take { key }).await,
                CacheResponse::Value(Some(Bytes::from(vec![b'r'; 400]))),
                "entry {i} was reported stored but is gone"
            );
        }
        assert!(c.inner.weighted_size() <= 16 * 1024);
    }

    #[tokio::test]
    async fn huge_ttl_does_not_panic() {
        let c = MokaVerifierCache::default();
        assert_eq!(
            call(&c, put("k", "v", Duration::MAX, false)).await,
            CacheResponse::Stored(true)
        );
        assert_eq!(call(&c, get("k")).await, value("v"));
    }

    #[test]
    fn debug_does_not_show_values() {
        let c = MokaVerifierCache::new(5);
        let s = format!("{c:?}");
        assert!(s.contains("MokaVerifierCache"));
    }
}

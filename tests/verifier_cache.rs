//! One verifier-cache suite, run against every backend: the in-process moka default, a real Redis
//! server and a real three-master Redis Cluster. Plus what only Redis has: key prefixes, outages
//! and reconnection.
//!
//! The Redis tests skip without `redis-server` (and fail under `CI=true`).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis_server::{RedisCluster, RedisServer};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_sso::cache::{
    CacheError, CacheRequest, CacheResponse, MokaVerifierCache, RedisVerifierCache, VerifierCache,
};

const LONG: Duration = Duration::from_secs(600);

async fn call(cache: &VerifierCache, req: CacheRequest) -> Result<CacheResponse, CacheError> {
    cache.clone().oneshot(req).await
}

async fn ok(cache: &VerifierCache, req: CacheRequest, label: &str) -> CacheResponse {
    let what = format!("{req:?}");
    call(cache, req)
        .await
        .unwrap_or_else(|e| panic!("[{label}] {what}: {e}"))
}

fn put(key: &str, value: impl Into<Bytes>, ttl: Duration, only_if_absent: bool) -> CacheRequest {
    CacheRequest::Put {
        key: key.into(),
        value: value.into(),
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

fn delete(key: &str) -> CacheRequest {
    CacheRequest::Delete { key: key.into() }
}

fn value(v: &'static [u8]) -> CacheResponse {
    CacheResponse::Value(Some(Bytes::from_static(v)))
}

const NONE: CacheResponse = CacheResponse::Value(None);
const STORED: CacheResponse = CacheResponse::Stored(true);
const KEPT: CacheResponse = CacheResponse::Stored(false);

// ---------------------------------------------------------------------------------------------
// The suite: what the layer relies on, for any backend. `a` and `b` are two clients of one
// backend (for Redis: two independently built caches, as two instances of a service would have).

async fn suite(a: VerifierCache, b: VerifierCache, label: &str) {
    ping(&a, label).await;
    round_trip(&a, &b, label).await;
    only_if_absent_keeps_the_live_entry(&a, &b, label).await;
    take_is_single_use(&a, &b, label).await;
    concurrent_takes_yield_the_value_once(&a, &b, label).await;
    concurrent_create_once_stores_once(&a, &b, label).await;
    many_keys(&a, &b, label).await;
    binary_values_round_trip(&a, &b, label).await;
    entries_expire(&a, &b, label).await;
}

async fn ping(a: &VerifierCache, label: &str) {
    assert_eq!(ok(a, CacheRequest::Ping, label).await, CacheResponse::Done);
}

async fn round_trip(a: &VerifierCache, b: &VerifierCache, label: &str) {
    assert_eq!(ok(a, put("rt", "v1", LONG, false), label).await, STORED);
    assert_eq!(ok(b, get("rt"), label).await, value(b"v1"));
    assert_eq!(
        ok(b, get("rt"), label).await,
        value(b"v1"),
        "[{label}] get keeps"
    );
    assert_eq!(
        ok(b, put("rt", "v2", LONG, false), label).await,
        STORED,
        "[{label}] replace"
    );
    assert_eq!(ok(a, take("rt"), label).await, value(b"v2"));
    assert_eq!(
        ok(a, get("rt"), label).await,
        NONE,
        "[{label}] take removes"
    );
    assert_eq!(ok(a, put("rt-del", "v", LONG, false), label).await, STORED);
    assert_eq!(ok(b, delete("rt-del"), label).await, CacheResponse::Done);
    assert_eq!(ok(a, get("rt-del"), label).await, NONE);
    assert_eq!(ok(a, take("rt-del"), label).await, NONE);
    assert_eq!(
        ok(a, delete("rt-missing"), label).await,
        CacheResponse::Done,
        "[{label}] deleting a missing key is fine"
    );
    assert_eq!(ok(a, get("rt-missing"), label).await, NONE);
}

async fn only_if_absent_keeps_the_live_entry(a: &VerifierCache, b: &VerifierCache, label: &str) {
    assert_eq!(ok(a, put("nx", "first", LONG, true), label).await, STORED);
    assert_eq!(ok(b, put("nx", "second", LONG, true), label).await, KEPT);
    assert_eq!(ok(b, get("nx"), label).await, value(b"first"));
    // Once taken, the key is free again.
    assert_eq!(ok(b, take("nx"), label).await, value(b"first"));
    assert_eq!(ok(a, put("nx", "third", LONG, true), label).await, STORED);
    assert_eq!(ok(b, take("nx"), label).await, value(b"third"));
}

async fn take_is_single_use(a: &VerifierCache, b: &VerifierCache, label: &str) {
    assert_eq!(ok(a, put("once", "v", LONG, false), label).await, STORED);
    assert_eq!(ok(b, take("once"), label).await, value(b"v"));
    assert_eq!(ok(a, take("once"), label).await, NONE);
    assert_eq!(ok(b, take("once"), label).await, NONE);
}

/// Of 16 concurrent takes of one key, half through each client, exactly one gets the value.
async fn concurrent_takes_yield_the_value_once(a: &VerifierCache, b: &VerifierCache, label: &str) {
    const TAKERS: usize = 16;
    for round in 0..5 {
        let key = format!("race-{round}");
        assert_eq!(ok(a, put(&key, "v", LONG, false), label).await, STORED);
        let barrier = Arc::new(tokio::sync::Barrier::new(TAKERS));
        let tasks: Vec<_> = (0..TAKERS)
            .map(|i| {
                let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
                let barrier = barrier.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache.oneshot(take(&key)).await
                })
            })
            .collect();
        let mut hits = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(r) if r == value(b"v") => hits += 1,
                Ok(r) => assert_eq!(r, NONE, "[{label}]"),
                Err(e) => panic!("[{label}] take: {e}"),
            }
        }
        assert_eq!(
            hits, 1,
            "[{label}] round {round}: {hits} takers got the value"
        );
    }
}

/// Of 16 concurrent create-once puts of one key, exactly one stores.
async fn concurrent_create_once_stores_once(a: &VerifierCache, b: &VerifierCache, label: &str) {
    const WRITERS: usize = 16;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .oneshot(put("create-once", format!("w{i}"), LONG, true))
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for t in tasks {
        if t.await.expect("task").expect("put") == STORED {
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "[{label}]");
}

/// Fifty keys (on a cluster: spread over the slots of every master) all work.
async fn many_keys(a: &VerifierCache, b: &VerifierCache, label: &str) {
    for i in 0..50 {
        let key = format!("flow:{i}");
        assert_eq!(
            ok(a, put(&key, format!("value {i}"), LONG, true), label).await,
            STORED
        );
    }
    for i in 0..50 {
        let key = format!("flow:{i}");
        let want = CacheResponse::Value(Some(Bytes::from(format!("value {i}"))));
        assert_eq!(ok(b, get(&key), label).await, want, "[{label}] {key}");
        assert_eq!(ok(b, take(&key), label).await, want, "[{label}] {key}");
        assert_eq!(ok(a, take(&key), label).await, NONE, "[{label}] {key}");
    }
}

async fn binary_values_round_trip(a: &VerifierCache, b: &VerifierCache, label: &str) {
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let all_bytes = Bytes::from(all_bytes);
    assert_eq!(
        ok(a, put("bin", all_bytes.clone(), LONG, false), label).await,
        STORED
    );
    assert_eq!(
        ok(b, take("bin"), label).await,
        CacheResponse::Value(Some(all_bytes))
    );
    assert_eq!(
        ok(a, put("empty", Bytes::new(), LONG, false), label).await,
        STORED
    );
    assert_eq!(
        ok(b, take("empty"), label).await,
        CacheResponse::Value(Some(Bytes::new())),
        "[{label}] an empty value is a value"
    );
    // Keys may hold any text.
    let odd_key = "flow:\u{e9}t\u{e9} \r\n*1\r\n$4\r\nPING {slot}";
    assert_eq!(ok(a, put(odd_key, "v", LONG, false), label).await, STORED);
    assert_eq!(ok(b, take(odd_key), label).await, value(b"v"));
}

async fn entries_expire(a: &VerifierCache, b: &VerifierCache, label: &str) {
    let ttl = Duration::from_secs(1);
    assert_eq!(ok(a, put("exp-get", "v", ttl, false), label).await, STORED);
    assert_eq!(ok(a, put("exp-take", "v", ttl, false), label).await, STORED);
    assert_eq!(ok(a, put("exp-nx", "old", ttl, true), label).await, STORED);
    assert_eq!(
        ok(b, get("exp-get"), label).await,
        value(b"v"),
        "[{label}] live"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ok(b, get("exp-get"), label).await,
        NONE,
        "[{label}] expired"
    );
    assert_eq!(
        ok(b, take("exp-get"), label).await,
        NONE,
        "[{label}] expired"
    );
    assert_eq!(
        ok(b, take("exp-take"), label).await,
        NONE,
        "[{label}] expired"
    );
    assert_eq!(
        ok(b, put("exp-nx", "new", LONG, true), label).await,
        STORED,
        "[{label}] an expired entry does not block a create-once put"
    );
    assert_eq!(ok(a, take("exp-nx"), label).await, value(b"new"));
}

// ---------------------------------------------------------------------------------------------
// Backends.

fn boxed(cache: RedisVerifierCache) -> VerifierCache {
    BoxCloneSyncService::new(cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moka_default_cache() {
    let cache = tower_sso::cache::default_cache();
    suite(cache.clone(), cache, "moka default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moka_cache() {
    let cache = BoxCloneSyncService::new(MokaVerifierCache::new(1024 * 1024));
    suite(cache.clone(), cache, "moka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_single_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = RedisVerifierCache::from_url(&server.url).expect("cache a");
    let b = RedisVerifierCache::from_url(&server.url).expect("cache b");
    suite(boxed(a), boxed(b), "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_single_server_with_password_and_database() {
    let Some(server) = RedisServer::start_with_password("s3cret-pw") else {
        return;
    };
    let url = format!("{}/3", server.url);
    let a = RedisVerifierCache::from_url(&url).expect("cache a");
    let b = RedisVerifierCache::from_url(&url).expect("cache b");
    suite(boxed(a), boxed(b), "redis with password, db 3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_single_server_from_host_port_and_a_password_with_url_characters() {
    let password = "p@ss/w:rd#?%";
    let Some(server) = RedisServer::start_with_password(password) else {
        return;
    };
    let a =
        RedisVerifierCache::from_host("127.0.0.1", server.port, Some(password)).expect("cache a");
    // The same password, percent-encoded in a URL.
    let b = RedisVerifierCache::from_url(&server.url).expect("cache b");
    suite(boxed(a), boxed(b), "redis from host and port").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let a = RedisVerifierCache::cluster(&cluster.nodes, None).expect("cache a");
    // The second instance knows only one seed node: it finds the others.
    let b = RedisVerifierCache::cluster(&cluster.nodes[2..], None).expect("cache b");
    suite(boxed(a), boxed(b), "redis cluster").await;
}

// ---------------------------------------------------------------------------------------------
// Redis only.

#[tokio::test]
async fn key_prefix_isolates_caches_on_one_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let one = boxed(
        RedisVerifierCache::from_url(&server.url)
            .expect("cache")
            .key_prefix("app-one:"),
    );
    let two = boxed(
        RedisVerifierCache::from_url(&server.url)
            .expect("cache")
            .key_prefix("app-two:"),
    );
    assert_eq!(ok(&one, put("k", "one", LONG, true), "one").await, STORED);
    assert_eq!(ok(&two, get("k"), "two").await, NONE);
    assert_eq!(ok(&two, put("k", "two", LONG, true), "two").await, STORED);
    assert_eq!(ok(&two, delete("k"), "two").await, CacheResponse::Done);
    assert_eq!(ok(&one, take("k"), "one").await, value(b"one"));
    // The default prefix is a third namespace, and keys are stored under prefix + key.
    let default = boxed(RedisVerifierCache::from_url(&server.url).expect("cache"));
    assert_eq!(
        ok(&default, put("k", "d", LONG, true), "default").await,
        STORED
    );
    let raw = boxed(
        RedisVerifierCache::from_url(&server.url)
            .expect("cache")
            .key_prefix(""),
    );
    assert_eq!(ok(&raw, get("tower-sso:k"), "raw").await, value(b"d"));
}

/// Every kind of request, for the outage tests.
fn every_request() -> Vec<CacheRequest> {
    vec![
        CacheRequest::Ping,
        put("k", "v", LONG, true),
        put("k", "v", LONG, false),
        take("k"),
        get("k"),
        delete("k"),
    ]
}

/// Asserts that `req` fails within the 500 ms timeout (generously bounded) with a clean message.
async fn assert_fails_fast(cache: &VerifierCache, req: CacheRequest, server: &RedisServer) {
    let what = format!("{req:?}");
    let started = Instant::now();
    let err = call(cache, req)
        .await
        .expect_err(&format!("{what} with Redis down"));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "{what} took {elapsed:?} with Redis down"
    );
    assert!(err.0.starts_with("redis: "), "{what}: {err}");
    assert!(!err.0.contains(&server.url), "{what}: URL in {err}");
    if let Some(pw) = &server.password {
        assert!(!err.0.contains(pw.as_str()), "{what}: password in {err}");
    }
}

/// Polls `Ping` until it succeeds (for up to 10 s); panics otherwise.
async fn wait_until_it_answers(cache: &VerifierCache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call(cache, CacheRequest::Ping).await {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => panic!("Redis is back but the cache fails: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn redis_down_fails_fast_and_the_same_cache_recovers() {
    let Some(mut server) = RedisServer::start_with_password("hunter2-pw") else {
        return;
    };
    let cache = boxed(
        RedisVerifierCache::from_url(&server.url)
            .expect("cache")
            .timeout(Duration::from_millis(500)),
    );
    assert_eq!(
        ok(&cache, put("kept", "v", LONG, false), "up").await,
        STORED
    );

    server.stop();
    for _round in 0..2 {
        for req in every_request() {
            assert_fails_fast(&cache, req, &server).await;
        }
    }

    server.restart();
    wait_until_it_answers(&cache).await;
    // The restarted server is empty (no persistence); the cache works as before.
    assert_eq!(ok(&cache, get("kept"), "back").await, NONE);
    assert_eq!(ok(&cache, put("k", "v", LONG, true), "back").await, STORED);
    assert_eq!(ok(&cache, take("k"), "back").await, value(b"v"));
}

#[tokio::test]
async fn cache_built_while_redis_is_down_starts_and_works_once_it_is_up() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    server.stop();
    let cache = boxed(
        RedisVerifierCache::from_url(&server.url)
            .expect("building does not connect")
            .timeout(Duration::from_millis(500)),
    );
    for req in every_request() {
        assert_fails_fast(&cache, req, &server).await;
    }
    server.restart();
    wait_until_it_answers(&cache).await;
    assert_eq!(ok(&cache, put("k", "v", LONG, true), "up").await, STORED);
    assert_eq!(ok(&cache, take("k"), "up").await, value(b"v"));
}

#[tokio::test]
async fn wrong_password_is_an_error_without_the_password() {
    let Some(server) = RedisServer::start_with_password("right-pw") else {
        return;
    };
    let url = format!("redis://:wrong-pw@127.0.0.1:{}", server.port);
    let cache = boxed(
        RedisVerifierCache::from_url(&url)
            .expect("cache")
            .timeout(Duration::from_millis(500)),
    );
    let err = call(&cache, CacheRequest::Ping)
        .await
        .expect_err("wrong password");
    assert!(err.0.starts_with("redis: "), "{err}");
    assert!(
        !err.0.contains("wrong-pw") && !err.0.contains("right-pw"),
        "{err}"
    );
    let unauthenticated = boxed(
        RedisVerifierCache::from_url(&format!("redis://127.0.0.1:{}", server.port)).expect("cache"),
    );
    let err = call(&unauthenticated, get("k"))
        .await
        .expect_err("no password");
    assert_eq!(err.0, "redis: server error NOAUTH");
}

#[test]
fn debug_never_shows_the_password() {
    let cache =
        RedisVerifierCache::from_url("redis://user:hunter2@10.1.2.3:6379/1").expect("cache");
    let shown = format!("{cache:?} {:?}", cache.revocations());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("10.1.2.3:6379"), "{shown}");
}

#[tokio::test]
async fn a_frozen_redis_never_holds_a_call_past_the_timeout() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let cache = boxed(
        RedisVerifierCache::from_url(&server.url)
            .expect("cache")
            .timeout(Duration::from_millis(500)),
    );
    assert_eq!(ok(&cache, put("k", "v", LONG, false), "up").await, STORED);

    server.pause();
    for req in every_request() {
        let what = format!("{req:?}");
        let started = Instant::now();
        let err = call(&cache, req).await.expect_err(&what);
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{what} took {took:?}");
        assert!(err.0.starts_with("redis: "), "{what}: {err}");
    }
    server.resume();
    wait_until_it_answers(&cache).await;
    // The commands that timed out may still run once Redis thaws (the `Take` and `Delete` above
    // did): a timed-out take counts as used, and the login that needed it starts again.
    assert_eq!(
        ok(&cache, put("k2", "v2", LONG, true), "thawed").await,
        STORED
    );
    assert_eq!(ok(&cache, take("k2"), "thawed").await, value(b"v2"));
}

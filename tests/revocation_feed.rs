//! The Redis revocation feed, against a real Redis server and a real Redis Cluster: what one
//! instance publishes, every instance reads, incrementally, in bounded batches, and old entries are
//! trimmed.
//!
//! Skips without `redis-server` (and fails under `CI=true`).

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{RedisCluster, RedisServer};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_sso::cache::{CacheRequest, RedisVerifierCache, VerifierCache};
use tower_sso::revocation::{
    RevocationFeed, RevocationRequest, RevocationResponse, RevokedSession,
};

fn feed(cache: &RedisVerifierCache) -> RevocationFeed {
    BoxCloneSyncService::new(cache.revocations())
}

fn revoked(sid: &str, expires_at: u64) -> RevokedSession {
    RevokedSession::session(sid, expires_at)
}

async fn publish(feed: &RevocationFeed, session: RevokedSession) {
    let answer = feed
        .clone()
        .oneshot(RevocationRequest::Publish(session))
        .await
        .expect("publish");
    assert_eq!(answer, RevocationResponse::Published);
}

/// One `Since` answer: (sessions, cursor, more).
async fn since(
    feed: &RevocationFeed,
    cursor: Option<String>,
) -> (Vec<RevokedSession>, Option<String>, bool) {
    match feed
        .clone()
        .oneshot(RevocationRequest::Since { cursor })
        .await
        .expect("since")
    {
        RevocationResponse::Revoked {
            sessions,
            cursor,
            more,
        } => (sessions, cursor, more),
        other => panic!("unexpected answer {other:?}"),
    }
}

/// What every feed must do; `a` and `b` are two instances' feeds on one Redis.
async fn feed_suite(a: RevocationFeed, b: RevocationFeed, label: &str) {
    // Empty: nothing, no cursor; a given cursor is kept.
    assert_eq!(since(&b, None).await, (vec![], None, false), "[{label}]");
    assert_eq!(
        since(&b, Some("0-0".into())).await,
        (vec![], Some("0-0".into()), false),
        "[{label}]"
    );

    // Published on one instance, seen on the other.
    publish(&a, revoked("s1", 1_900_000_000)).await;
    let (sessions, cursor, more) = since(&b, None).await;
    assert_eq!(sessions, vec![revoked("s1", 1_900_000_000)], "[{label}]");
    assert!(!more, "[{label}]");
    let cursor = cursor.expect("a cursor after an entry");

    // Incremental: only what is newer than the cursor, oldest first, from either instance.
    publish(&b, revoked("s2", 1_900_000_001)).await;
    publish(&a, revoked("s3", 1_900_000_002)).await;
    let (sessions, next, more) = since(&a, Some(cursor.clone())).await;
    assert_eq!(
        sessions,
        vec![revoked("s2", 1_900_000_001), revoked("s3", 1_900_000_002)],
        "[{label}]"
    );
    assert!(!more, "[{label}]");
    let next = next.expect("cursor");
    assert_ne!(next, cursor, "[{label}] the cursor moves on");
    // Nothing new: nothing, and the cursor stays.
    assert_eq!(
        since(&b, Some(next.clone())).await,
        (vec![], Some(next.clone()), false),
        "[{label}]"
    );
    // From the start again: everything still held.
    assert_eq!(since(&b, None).await.0.len(), 3, "[{label}]");

    // Batches of 1000: `more` until the feed is drained.
    for i in 0..2100u64 {
        publish(&a, revoked(&format!("bulk-{i}"), 2_000_000_000 + i)).await;
    }
    let mut cursor = Some(next);
    let mut seen = Vec::new();
    let mut batches = Vec::new();
    loop {
        let (sessions, next, more) = since(&b, cursor.clone()).await;
        batches.push(sessions.len());
        seen.extend(sessions);
        cursor = next;
        if !more {
            break;
        }
        assert!(batches.len() < 10, "[{label}] never drained: {batches:?}");
    }
    assert_eq!(batches, vec![1000, 1000, 100], "[{label}]");
    let want: Vec<RevokedSession> = (0..2100u64)
        .map(|i| revoked(&format!("bulk-{i}"), 2_000_000_000 + i))
        .collect();
    assert_eq!(seen, want, "[{label}] in order, none lost, none repeated");
}

#[tokio::test]
async fn redis_single_server_feed() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = RedisVerifierCache::from_url(&server.url).expect("cache a");
    let b = RedisVerifierCache::from_url(&server.url).expect("cache b");
    feed_suite(feed(&a), feed(&b), "redis").await;
}

#[tokio::test]
async fn redis_cluster_feed() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let a = RedisVerifierCache::cluster(&cluster.nodes, None).expect("cache a");
    let b = RedisVerifierCache::cluster(&cluster.nodes[1..2], None).expect("cache b");
    feed_suite(feed(&a), feed(&b), "redis cluster").await;
}

#[tokio::test]
async fn key_prefix_separates_feeds() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let one = RedisVerifierCache::from_url(&server.url)
        .expect("cache")
        .key_prefix("one:");
    let two = RedisVerifierCache::from_url(&server.url)
        .expect("cache")
        .key_prefix("two:");
    publish(&feed(&one), revoked("s1", 1)).await;
    assert_eq!(since(&feed(&two), None).await.0, vec![]);
    assert_eq!(since(&feed(&one), None).await.0, vec![revoked("s1", 1)]);
}

#[tokio::test]
async fn retention_trims_old_entries() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let cache = RedisVerifierCache::from_url(&server.url)
        .expect("cache")
        .revocation_retention(Duration::from_secs(1));
    let feed = feed(&cache);
    publish(&feed, revoked("old", 1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(&feed, revoked("new", 2)).await;
    assert_eq!(since(&feed, None).await.0, vec![revoked("new", 2)]);
}

#[tokio::test]
async fn malformed_entries_are_skipped_and_the_cursor_passes_them() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let cache = RedisVerifierCache::from_url(&server.url).expect("cache");
    let feed = feed(&cache);
    publish(&feed, revoked("good-1", 10)).await;
    // Entries another (broken) writer added, through redis-cli.
    let cli = common::servers::find_binary(&["redis-cli", "/usr/bin/redis-cli"]);
    let Some(cli) = cli else {
        common::servers::unavailable("redis", "redis-cli not found");
        return;
    };
    for fields in [
        &["sid", "no-exp"][..],
        &["sid", "bad-exp", "exp", "tomorrow"],
        &["exp", "5"],
    ] {
        let status = std::process::Command::new(&cli)
            .args([
                "-p",
                &server.port.to_string(),
                "XADD",
                "tower-sso:revocations",
                "*",
            ])
            .args(fields)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(status.success());
    }
    let (sessions, cursor, more) = since(&feed, None).await;
    assert_eq!(sessions, vec![revoked("good-1", 10)]);
    assert!(!more);
    publish(&feed, revoked("good-2", 20)).await;
    let (sessions, _, _) = since(&feed, cursor).await;
    assert_eq!(
        sessions,
        vec![revoked("good-2", 20)],
        "the cursor passed the bad entries"
    );
}

#[tokio::test]
async fn feed_fails_fast_while_redis_is_down_and_recovers() {
    let Some(mut server) = RedisServer::start_with_password("feed-pw") else {
        return;
    };
    let cache = RedisVerifierCache::from_url(&server.url)
        .expect("cache")
        .timeout(Duration::from_millis(500));
    let feed = feed(&cache);
    publish(&feed, revoked("s1", 1)).await;
    server.stop();
    for req in [
        RevocationRequest::Publish(revoked("s2", 2)),
        RevocationRequest::Since { cursor: None },
    ] {
        let started = Instant::now();
        let err = feed.clone().oneshot(req).await.expect_err("Redis is down");
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert!(err.0.starts_with("redis: "), "{err}");
        assert!(
            !err.0.contains("feed-pw") && !err.0.contains(&server.url),
            "{err}"
        );
    }
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match feed
            .clone()
            .oneshot(RevocationRequest::Publish(revoked("s3", 3)))
            .await
        {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("feed did not recover: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    // The restarted server kept nothing; what was published since is there.
    assert_eq!(since(&feed, None).await.0, vec![revoked("s3", 3)]);
}

#[tokio::test]
async fn the_stream_key_is_not_a_cache_value() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let cache = RedisVerifierCache::from_url(&server.url).expect("cache");
    publish(&feed(&cache), revoked("s1", 1)).await;
    // Reading the stream as a cache entry is a server error, reported by kind only.
    let raw: VerifierCache = BoxCloneSyncService::new(cache.clone().key_prefix(""));
    let err = raw
        .oneshot(CacheRequest::Get {
            key: "tower-sso:revocations".into(),
        })
        .await
        .expect_err("wrong type");
    assert_eq!(err.0, "redis: server error WRONGTYPE");
}

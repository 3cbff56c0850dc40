//! The verifier cache on Redis or Redis Cluster (feature `redis`), and the revocation feed on the
//! same connection. The user-facing documentation is on [`RedisVerifierCache`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use ::redis::{Cmd, Value};
use bytes::Bytes;

use self::connection::{Connection, Failure};
use super::{CacheError, CacheRequest, CacheResponse};

mod connection;
mod revocations;

pub use self::revocations::RedisRevocations;

/// A verifier cache on Redis or Redis Cluster (feature `redis`), shared by every instance that
/// uses the same Redis and [key prefix](Self::key_prefix); [`revocations`](Self::revocations) is
/// the [revocation feed](crate::revocation) on the same connection.
///
/// Cheap to clone: clones share one connection.
///
/// # Key layout
///
/// Every cache entry is one string key, `{prefix}{key}` (prefix `"tower-sso:"` by default), written
/// with `SET .. PX` so Redis enforces the TTL, and consumed with `GETDEL`, so of concurrent takes
/// exactly one gets the value, across instances. The revocation feed is one stream,
/// `{prefix}revocations` (see [`RedisRevocations`]). Every command touches one key, so everything
/// works on a Redis Cluster.
///
/// # Connection, timeout and outages
///
/// The constructors are synchronous and do not connect: the connection is made on first use, so a
/// service starts while Redis is down. A single server is reached through a
/// [`ConnectionManager`](::redis::aio::ConnectionManager), which reconnects by itself after the
/// connection breaks (with a short bounded backoff); a cluster through the async cluster client,
/// which follows slot moves. If making the connection fails, the next call tries again.
///
/// Every call, connecting included, is bounded by [`timeout`](Self::timeout) (2 s by default).
/// While Redis is down or slow, calls fail fast with a [`CacheError`] (the layer answers 503 to
/// the login that needed it) and succeed again once it is back, without rebuilding anything.
/// Error messages start with `redis: ` and name the kind of failure only (`connection refused`,
/// `timed out after ..`, `server error NOAUTH`, ...): never the URL (which may hold a password), a
/// key or a value. `Debug` shows the host (or the number of cluster nodes), the prefix and the
/// timeout, never the password.
///
/// Needs Redis 6.2 or later (`GETDEL`, `XADD .. MINID`, exclusive `XRANGE` ranges). Plain TCP only
/// (`redis://`); no TLS.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_sso::cache::RedisVerifierCache;
///
/// let cache = RedisVerifierCache::from_url("redis://:password@redis.internal:6379/0")?
///     .key_prefix("my-app:sso:")
///     .timeout(Duration::from_secs(1));
/// # Ok::<(), tower_sso::cache::CacheError>(())
/// ```
#[derive(Clone)]
pub struct RedisVerifierCache {
    conn: Connection,
    prefix: String,
    timeout: Duration,
    retention: Duration,
}

impl RedisVerifierCache {
    /// The default key prefix.
    pub const DEFAULT_KEY_PREFIX: &'static str = "tower-sso:";

    /// The default bound on every call.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// How long published revocations are kept by default (seven days).
    pub const DEFAULT_REVOCATION_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

    /// A cache on the single Redis server at `url`
    /// (`redis://[[username]:password@]host[:port][/db]`). Does not connect yet.
    ///
    /// # Errors
    ///
    /// If `url` is not a Redis URL (the message does not repeat it).
    pub fn from_url(url: &str) -> Result<Self, CacheError> {
        Connection::single(url)
            .map(Self::with_connection)
            .map_err(cache_error)
    }

    /// A cache on the single Redis server at `host:port`, with `password` if given (taken as is,
    /// so it needs no URL encoding: the way to build one from `REDIS_HOST`, `REDIS_PORT` and
    /// `REDIS_PASSWORD`). Database 0. Does not connect yet.
    ///
    /// # Errors
    ///
    /// If `host` is empty.
    pub fn from_host(host: &str, port: u16, password: Option<&str>) -> Result<Self, CacheError> {
        Connection::single_host(host, port, password)
            .map(Self::with_connection)
            .map_err(cache_error)
    }

    /// A cache on the Redis Cluster reached through `nodes` (`host:port` entries; some or all of
    /// the cluster's masters), with `password` if the cluster needs one. Does not connect yet.
    ///
    /// # Errors
    ///
    /// If `nodes` is empty or an entry is not a `host:port`.
    pub fn cluster(
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
        password: Option<&str>,
    ) -> Result<Self, CacheError> {
        Connection::cluster(nodes, password)
            .map(Self::with_connection)
            .map_err(cache_error)
    }

    fn with_connection(conn: Connection) -> Self {
        Self {
            conn,
            prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            retention: Self::DEFAULT_REVOCATION_RETENTION,
        }
    }

    /// Prefixes every key with `prefix` (default [`DEFAULT_KEY_PREFIX`](Self::DEFAULT_KEY_PREFIX)),
    /// so that several services or environments can share one Redis.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bounds every call, connecting included (default
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)); a call that takes longer fails with
    /// `redis: timed out after ..`.
    ///
    /// The bound also applies to each connection attempt and each answer; those are set when the
    /// connection is made, on first use.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long the [revocation feed](Self::revocations) keeps a published revocation (default
    /// [`DEFAULT_REVOCATION_RETENTION`](Self::DEFAULT_REVOCATION_RETENTION), seven days). Set it at
    /// least as long as your session duration: an instance that starts later learns only the
    /// revocations still kept.
    pub fn revocation_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The revocation feed on the same connection, key prefix, timeout and retention.
    pub fn revocations(&self) -> RedisRevocations {
        RedisRevocations::new(
            self.conn.clone(),
            &self.prefix,
            self.timeout,
            self.retention,
        )
    }

    fn key(&self, key: &str) -> String {
        prefixed(&self.prefix, key)
    }

    async fn call_inner(self, req: CacheRequest) -> Result<CacheResponse, CacheError> {
        match req {
            CacheRequest::Put {
                key,
                value,
                ttl,
                only_if_absent,
            } => {
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(self.key(&key))
                    .arg(value.as_ref())
                    .arg("PX")
                    .arg(ttl_millis(ttl));
                if only_if_absent {
                    cmd.arg("NX");
                }
                let answer = self.query(&cmd).await?;
                match answer {
                    Value::Okay | Value::SimpleString(_) => Ok(CacheResponse::Stored(true)),
                    Value::Nil => Ok(CacheResponse::Stored(false)),
                    _ => Err(unexpected("SET")),
                }
            }
            CacheRequest::Take { key } => {
                let answer = self
                    .query(::redis::cmd("GETDEL").arg(self.key(&key)))
                    .await?;
                value_answer(answer, "GETDEL")
            }
            CacheRequest::Get { key } => {
                let answer = self.query(::redis::cmd("GET").arg(self.key(&key))).await?;
                value_answer(answer, "GET")
            }
            CacheRequest::Delete { key } => {
                self.query(::redis::cmd("DEL").arg(self.key(&key))).await?;
                Ok(CacheResponse::Done)
            }
            CacheRequest::Ping => {
                self.query(&::redis::cmd("PING")).await?;
                Ok(CacheResponse::Done)
            }
        }
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, CacheError> {
        self.conn
            .query(cmd, self.timeout)
            .await
            .map_err(cache_error)
    }
}

/// `prefix + key`.
fn prefixed(prefix: &str, key: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + key.len());
    k.push_str(prefix);
    k.push_str(key);
    k
}

/// A TTL in whole milliseconds for `SET .. PX`: rounded up, at least 1, at most `i64::MAX`.
fn ttl_millis(ttl: Duration) -> u64 {
    let nanos = ttl.as_nanos();
    let millis = nanos.div_ceil(1_000_000).max(1);
    // Redis refuses expiries that overflow when added to the current time; a century is plenty.
    const MAX_MILLIS: u128 = 100 * 365 * 24 * 60 * 60 * 1000;
    u64::try_from(millis.min(MAX_MILLIS)).unwrap_or(u64::MAX)
}

/// The answer to `GET`/`GETDEL`.
fn value_answer(answer: Value, op: &str) -> Result<CacheResponse, CacheError> {
    match answer {
        Value::Nil => Ok(CacheResponse::Value(None)),
        Value::BulkString(bytes) => Ok(CacheResponse::Value(Some(Bytes::from(bytes)))),
        _ => Err(unexpected(op)),
    }
}

fn unexpected(op: &str) -> CacheError {
    CacheError(format!("redis: unexpected answer to {op}"))
}

fn cache_error(f: Failure) -> CacheError {
    CacheError(f.0)
}

impl fmt::Debug for RedisVerifierCache {
    /// Shows where (host and database, or the number of cluster nodes), the prefix and the timeout:
    /// never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisVerifierCache")
            .field("server", &self.conn.describe_target())
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("revocation_retention", &self.retention)
            .finish()
    }
}

impl tower::Service<CacheRequest> for RedisVerifierCache {
    type Response = CacheResponse;
    type Error = CacheError;
    type Future = Pin<Box<dyn Future<Output = Result<CacheResponse, CacheError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CacheRequest) -> Self::Future {
        Box::pin(self.clone().call_inner(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed() {
        let c = RedisVerifierCache::from_url("redis://localhost").unwrap();
        assert_eq!(c.key("flow:abc"), "tower-sso:flow:abc");
        let c = c.key_prefix("app:");
        assert_eq!(c.key("k"), "app:k");
        assert_eq!(c.key(""), "app:");
    }

    #[test]
    fn ttl_is_rounded_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(ttl_millis(Duration::from_secs(600)), 600_000);
        assert_eq!(
            ttl_millis(Duration::MAX),
            100 * 365 * 24 * 60 * 60 * 1000,
            "huge TTLs are capped, not overflowed"
        );
    }

    #[test]
    fn value_answers() {
        assert_eq!(
            value_answer(Value::Nil, "GET").unwrap(),
            CacheResponse::Value(None)
        );
        assert_eq!(
            value_answer(Value::BulkString(vec![0, 255]), "GET").unwrap(),
            CacheResponse::Value(Some(Bytes::from_static(&[0, 255])))
        );
        let e = value_answer(Value::Int(3), "GETDEL").unwrap_err();
        assert_eq!(e.0, "redis: unexpected answer to GETDEL");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = RedisVerifierCache::from_url("redis://user:hunter2@redis.internal:6380/2")
            .unwrap()
            .timeout(Duration::from_millis(300));
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("redis.internal:6380"), "{d}");
        assert!(d.contains("tower-sso:") && d.contains("300ms"), "{d}");
        let c = RedisVerifierCache::cluster(["a:1", "b:2"], Some("hunter2")).unwrap();
        let d = format!("{c:?}");
        assert!(
            !d.contains("hunter2") && d.contains("cluster with 2 nodes"),
            "{d}"
        );
        let d = format!("{:?}", c.revocations());
        assert!(!d.contains("hunter2"), "{d}");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let e = RedisVerifierCache::from_url("not a url hunter2").unwrap_err();
        assert!(
            e.0.starts_with("redis: ") && !e.0.contains("hunter2"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn unreachable_server_fails_fast_with_a_clean_message() {
        // A port nobody listens on: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut c = RedisVerifierCache::from_url(&format!("redis://:hunter2@127.0.0.1:{port}"))
            .unwrap()
            .timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let e = tower::Service::call(&mut c, CacheRequest::Ping)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(e.0.starts_with("redis: "), "{e}");
        assert!(
            !e.0.contains("hunter2") && !e.0.contains(&port.to_string()),
            "{e}"
        );
    }
}

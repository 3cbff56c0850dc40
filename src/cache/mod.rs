//! The verifier cache: short-lived, single-use login state (PKCE verifiers, state, nonces, CLI logins).
//!
//! It is a [`tower::Service`] answering [`CacheRequest`]s, so any implementation (the default
//! [`MokaVerifierCache`], [`RedisVerifierCache`] (feature `redis`), a test closure) can be plugged
//! in and wrapped with tower middleware.

use std::time::Duration;

use bytes::Bytes;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

mod moka;
#[cfg(feature = "redis")]
mod redis;

pub use self::moka::MokaVerifierCache;
#[cfg(feature = "redis")]
pub use self::redis::{RedisRevocations, RedisVerifierCache};

/// A request to the verifier cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRequest {
    /// Store `value` under `key` for `ttl`. With `only_if_absent`, an existing live entry is kept
    /// and the answer is [`CacheResponse::Stored(false)`](CacheResponse::Stored).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// How long the entry lives.
        ttl: Duration,
        /// Keep an existing live entry instead of replacing it.
        only_if_absent: bool,
    },
    /// Remove and return the live entry under `key`, atomically: of concurrent takes of one key,
    /// exactly one gets the value. Never returns an expired entry.
    Take {
        /// The key.
        key: String,
    },
    /// Read the live entry under `key` without removing it.
    Get {
        /// The key.
        key: String,
    },
    /// Remove the entry under `key`, if any.
    Delete {
        /// The key.
        key: String,
    },
    /// Check that the cache answers (readiness).
    Ping,
}

/// The verifier cache's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheResponse {
    /// Answer to `Put`: whether the value was stored.
    Stored(bool),
    /// Answer to `Take` and `Get`: the live value, if any.
    Value(Option<Bytes>),
    /// Answer to `Delete` and `Ping`.
    Done,
}

/// The verifier cache failed (for example, Redis is unreachable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheError(pub String);

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "verifier cache error: {}", self.0)
    }
}

impl std::error::Error for CacheError {}

/// A type-erased verifier cache, as the layer holds it.
pub type VerifierCache = BoxCloneSyncService<CacheRequest, CacheResponse, CacheError>;

/// The default verifier cache: a [`MokaVerifierCache`] of
/// [`DEFAULT_CAPACITY`](MokaVerifierCache::DEFAULT_CAPACITY) entries, boxed.
pub fn default_cache() -> VerifierCache {
    BoxCloneSyncService::new(MokaVerifierCache::default())
}

fn unexpected(op: &str, res: &CacheResponse) -> CacheError {
    let kind = match res {
        CacheResponse::Stored(_) => "Stored",
        CacheResponse::Value(_) => "Value",
        CacheResponse::Done => "Done",
    };
    CacheError(format!("unexpected answer {kind} to {op}"))
}

/// Stores `value` under `key` for `ttl`; with `only_if_absent`, keeps a live entry. Whether it stored.
pub(crate) async fn put(
    cache: &VerifierCache,
    key: impl Into<String>,
    value: Bytes,
    ttl: Duration,
    only_if_absent: bool,
) -> Result<bool, CacheError> {
    let req = CacheRequest::Put {
        key: key.into(),
        value,
        ttl,
        only_if_absent,
    };
    match cache.clone().oneshot(req).await? {
        CacheResponse::Stored(stored) => Ok(stored),
        other => Err(unexpected("Put", &other)),
    }
}

/// Removes and returns the live value under `key` (single use).
pub(crate) async fn take(
    cache: &VerifierCache,
    key: impl Into<String>,
) -> Result<Option<Bytes>, CacheError> {
    match cache
        .clone()
        .oneshot(CacheRequest::Take { key: key.into() })
        .await?
    {
        CacheResponse::Value(v) => Ok(v),
        other => Err(unexpected("Take", &other)),
    }
}

/// Reads the live value under `key` without removing it.
#[cfg(test)]
pub(crate) async fn get(
    cache: &VerifierCache,
    key: impl Into<String>,
) -> Result<Option<Bytes>, CacheError> {
    match cache
        .clone()
        .oneshot(CacheRequest::Get { key: key.into() })
        .await?
    {
        CacheResponse::Value(v) => Ok(v),
        other => Err(unexpected("Get", &other)),
    }
}

/// Removes the entry under `key`, if any.
#[cfg(test)]
pub(crate) async fn delete(
    cache: &VerifierCache,
    key: impl Into<String>,
) -> Result<(), CacheError> {
    match cache
        .clone()
        .oneshot(CacheRequest::Delete { key: key.into() })
        .await?
    {
        CacheResponse::Done => Ok(()),
        other => Err(unexpected("Delete", &other)),
    }
}

/// Checks that the cache answers.
pub(crate) async fn ping(cache: &VerifierCache) -> Result<(), CacheError> {
    match cache.clone().oneshot(CacheRequest::Ping).await? {
        CacheResponse::Done => Ok(()),
        other => Err(unexpected("Ping", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn typed_helpers_round_trip() {
        let cache = default_cache();
        ping(&cache).await.unwrap();
        let ttl = Duration::from_secs(60);
        assert!(
            put(&cache, "k", Bytes::from_static(b"v"), ttl, true)
                .await
                .unwrap()
        );
        assert!(
            !put(&cache, "k", Bytes::from_static(b"w"), ttl, true)
                .await
                .unwrap()
        );
        assert_eq!(
            get(&cache, "k").await.unwrap(),
            Some(Bytes::from_static(b"v"))
        );
        assert_eq!(
            take(&cache, "k").await.unwrap(),
            Some(Bytes::from_static(b"v"))
        );
        assert_eq!(take(&cache, "k").await.unwrap(), None);
        assert!(put(&cache, "d", Bytes::new(), ttl, false).await.unwrap());
        delete(&cache, "d").await.unwrap();
        assert_eq!(get(&cache, "d").await.unwrap(), None);
    }

    #[tokio::test]
    async fn helpers_report_errors_and_wrong_answers() {
        let failing: VerifierCache =
            BoxCloneSyncService::new(tower::service_fn(|_req: CacheRequest| async {
                Err::<CacheResponse, _>(CacheError("down".into()))
            }));
        assert_eq!(ping(&failing).await, Err(CacheError("down".into())));
        let wrong: VerifierCache =
            BoxCloneSyncService::new(tower::service_fn(|_req: CacheRequest| async {
                Ok::<_, CacheError>(CacheResponse::Done)
            }));
        assert!(take(&wrong, "k").await.is_err());
        assert!(
            put(&wrong, "k", Bytes::new(), Duration::from_secs(1), false)
                .await
                .is_err()
        );
    }
}

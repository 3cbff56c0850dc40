//! The verifier cache: short-lived, single-use login state (PKCE verifiers, state, nonces, CLI logins).
//!
//! It is a [`tower::Service`] answering [`CacheRequest`]s, so any implementation (the default
//! [`MokaVerifierCache`], Redis, a test closure) can be plugged in and wrapped with tower middleware.

use std::time::Duration;

use bytes::Bytes;
use tower::util::BoxCloneSyncService;

mod moka;

pub use self::moka::MokaVerifierCache;

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

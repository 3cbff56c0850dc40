//! The revocation feed: how a logout on one instance reaches every other instance.
//!
//! Each instance keeps the revoked session ids in memory (the gate never makes a network call);
//! a feed shares them. When a session is revoked, the layer revokes it locally at once and
//! [`Publish`](RevocationRequest::Publish)es it; a background task asks the feed for what other
//! instances revoked ([`Since`](RevocationRequest::Since) the last cursor) every
//! [`sync_interval`](crate::SsoLayerBuilder::revocation_sync_interval) and applies it. A
//! revocation that could not be published (the feed is down) is kept and published again at the
//! next tick, so nothing is lost.
//!
//! It is a [`tower::Service`]; without one (the default) revocation holds in this process only.
//! [`RedisVerifierCache::revocations`](crate::cache::RedisVerifierCache::revocations) is the
//! Redis feed (feature `redis`).

use tower::util::BoxCloneSyncService;

/// One revoked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSession {
    /// The session id (the token's `jti`, [`crate::Identity::session_id`]).
    pub session_id: String,
    /// When the session expires anyway (seconds since the epoch): the revocation may be forgotten
    /// after that.
    pub expires_at: u64,
}

/// A request to the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationRequest {
    /// Tell every instance that a session is revoked.
    Publish(RevokedSession),
    /// The revocations published after `cursor` (by any instance, this one included), oldest
    /// first. `None`: every revocation the feed still holds. The answer carries the cursor to ask
    /// from next time.
    Since {
        /// The cursor of the previous answer.
        cursor: Option<String>,
    },
}

/// The revocation feed's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationResponse {
    /// Answer to `Publish`.
    Published,
    /// Answer to `Since`.
    Revoked {
        /// The revocations, oldest first (at most a feed-chosen batch: ask again with `cursor`
        /// until `more` is false).
        sessions: Vec<RevokedSession>,
        /// Where the next `Since` starts.
        cursor: Option<String>,
        /// Whether the feed holds more after `cursor` already.
        more: bool,
    },
}

/// The revocation feed failed (for example, Redis is unreachable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationError(pub String);

impl std::fmt::Display for RevocationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "revocation feed error: {}", self.0)
    }
}

impl std::error::Error for RevocationError {}

/// A type-erased revocation feed, as the layer holds it.
pub type RevocationFeed =
    BoxCloneSyncService<RevocationRequest, RevocationResponse, RevocationError>;

mod sync;

pub(crate) use self::sync::RevocationSync;

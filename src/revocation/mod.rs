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

/// One revocation: a session, or every session of an identity-provider session or subject.
///
/// `session_id` says what is revoked:
/// - a session id (the token's `jti`, [`crate::Identity::session_id`]): that session;
/// - `sid:<provider>|<sid>` ([`RevokedSession::idp_session`]): every session logged in through
///   provider `<provider>` (its configured name) within the identity provider's session `<sid>`
///   (the id_token's `sid`);
/// - `sub:<provider>|<sub>` ([`RevokedSession::idp_subject`]): every session of subject `<sub>`
///   at that provider.
///
/// Session ids never contain `:`, so the kinds cannot be confused. The last two come from an
/// OpenID Connect back-channel logout and hold only for sessions issued at or before
/// `issued_before`, so a login after the logout works. An instance that predates them reads
/// them as session ids that match nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSession {
    /// What is revoked (see above).
    pub session_id: String,
    /// When the session expires anyway (seconds since the epoch): the revocation may be forgotten
    /// after that. For the `sid:`/`sub:` kinds, when every session it covers has expired.
    pub expires_at: u64,
    /// For the `sid:`/`sub:` kinds: only sessions issued at or before this instant (seconds since
    /// the epoch) are revoked (`None`: all of them). Ignored for a session id.
    pub issued_before: Option<u64>,
}

impl RevokedSession {
    /// Revokes the session with id `session_id`.
    pub fn session(session_id: impl Into<String>, expires_at: u64) -> Self {
        Self {
            session_id: session_id.into(),
            expires_at,
            issued_before: None,
        }
    }

    /// Revokes every session issued at or before `issued_before` within the identity provider's
    /// session `sid` at provider `provider` (its configured name).
    pub fn idp_session(provider: &str, sid: &str, issued_before: u64, expires_at: u64) -> Self {
        Self {
            session_id: principal_key(SID_PREFIX, provider, sid),
            expires_at,
            issued_before: Some(issued_before),
        }
    }

    /// Revokes every session issued at or before `issued_before` of subject `sub` at provider
    /// `provider` (its configured name).
    pub fn idp_subject(provider: &str, sub: &str, issued_before: u64, expires_at: u64) -> Self {
        Self {
            session_id: principal_key(SUB_PREFIX, provider, sub),
            expires_at,
            issued_before: Some(issued_before),
        }
    }

    /// Whether this revokes sessions by identity-provider session or subject (`sid:`/`sub:`)
    /// rather than one session id.
    pub fn is_principal(&self) -> bool {
        self.session_id.starts_with(SID_PREFIX) || self.session_id.starts_with(SUB_PREFIX)
    }
}

const SID_PREFIX: &str = "sid:";
const SUB_PREFIX: &str = "sub:";

/// `sid:<provider>|<value>` or `sub:<provider>|<value>`. Provider names are letters, digits,
/// `-` and `_`, so the first `|` ends the name.
fn principal_key(prefix: &str, provider: &str, value: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + provider.len() + 1 + value.len());
    key.push_str(prefix);
    key.push_str(provider);
    key.push('|');
    key.push_str(value);
    key
}

/// The revocation keys of a session from `provider` with identity-provider session `sid` and
/// subject `sub`: (`sid:` key, `sub:` key).
pub(crate) fn principal_keys(
    provider: &str,
    sid: Option<&str>,
    sub: Option<&str>,
) -> (Option<String>, Option<String>) {
    (
        sid.map(|s| principal_key(SID_PREFIX, provider, s)),
        sub.map(|s| principal_key(SUB_PREFIX, provider, s)),
    )
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

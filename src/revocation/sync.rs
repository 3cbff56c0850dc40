//! Keeping this instance's revoked-session set in step with the revocation feed.
//!
//! [`RevocationSync::revoke`] revokes locally at once, then publishes; a revocation the feed did
//! not take is queued and published again at the next tick. A background task asks the feed
//! every interval for what other instances revoked and applies it. The task holds only a weak
//! reference, so it ends when the layer is dropped; it is spawned on the Tokio runtime the layer
//! is built in, or, if it is built outside one, at its first request.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tower::ServiceExt;

use super::{
    RevocationError, RevocationFeed, RevocationRequest, RevocationResponse, RevokedSession,
};
use crate::clock::Clock;
use crate::session::SessionCodec;

/// The most revocations kept for a later publish while the feed is down; past that the oldest
/// are dropped (with an error in the log), since each still holds on this instance.
const MAX_PENDING: usize = 100_000;

/// The most `Since` batches read in one tick (a feed that always says `more` cannot hold the
/// task forever).
const MAX_BATCHES_PER_TICK: usize = 100;

/// The revocation feed, as the layer drives it.
pub(crate) struct RevocationSync {
    state: Arc<State>,
    started: OnceLock<()>,
}

struct State {
    feed: RevocationFeed,
    sessions: SessionCodec,
    clock: Clock,
    interval: Duration,
    /// Revocations not yet published.
    pending: Mutex<Vec<RevokedSession>>,
    /// Where the next `Since` starts.
    cursor: Mutex<Option<String>>,
    /// Whether the last tick failed (so an outage is logged once, and its end too).
    failing: Mutex<bool>,
}

impl RevocationSync {
    pub(crate) fn new(
        feed: RevocationFeed,
        sessions: SessionCodec,
        clock: Clock,
        interval: Duration,
    ) -> Self {
        let sync = Self {
            state: Arc::new(State {
                feed,
                sessions,
                clock,
                interval,
                pending: Mutex::new(Vec::new()),
                cursor: Mutex::new(None),
                failing: Mutex::new(false),
            }),
            started: OnceLock::new(),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            sync.ensure_started();
        }
        sync
    }

    /// Starts the background task if it is not running yet (needs a Tokio runtime; a no-op
    /// after the first call).
    pub(crate) fn ensure_started(&self) {
        if self.started.get().is_some() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.started.get_or_init(|| {
            handle.spawn(run(Arc::downgrade(&self.state)));
        });
    }

    /// Revokes a session here at once, and on every instance sharing the feed within one sync
    /// interval (or, if the feed is down, within one interval of its return).
    pub(crate) async fn revoke(&self, session: RevokedSession) {
        self.ensure_started();
        self.state.sessions.apply(&session);
        if let Err(e) = self.state.publish(session.clone()).await {
            tracing::warn!(error = %e, "revocation not published yet: retried at the next sync");
            self.state.queue(vec![session]);
        }
    }
}

impl State {
    async fn publish(&self, session: RevokedSession) -> Result<(), RevocationError> {
        match self
            .feed
            .clone()
            .oneshot(RevocationRequest::Publish(session))
            .await?
        {
            RevocationResponse::Published => Ok(()),
            RevocationResponse::Revoked { .. } => {
                Err(RevocationError("unexpected answer to Publish".into()))
            }
        }
    }

    fn queue(&self, mut sessions: Vec<RevokedSession>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.append(&mut pending);
        *pending = sessions;
        if pending.len() > MAX_PENDING {
            let dropped = pending.len() - MAX_PENDING;
            pending.drain(..dropped);
            tracing::error!(
                dropped,
                "revocation feed down too long: oldest unpublished revocations dropped (they still hold on this instance)"
            );
        }
    }

    /// Publishes what is pending; the first failure puts the rest back.
    async fn flush(&self) -> Result<(), RevocationError> {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let now = self.clock.now();
        let mut rest = pending.into_iter().filter(|s| s.expires_at > now);
        while let Some(session) = rest.next() {
            if let Err(e) = self.publish(session.clone()).await {
                self.queue(std::iter::once(session).chain(rest).collect());
                return Err(e);
            }
        }
        Ok(())
    }

    /// Applies what the feed holds after the cursor.
    async fn pull(&self) -> Result<(), RevocationError> {
        for _ in 0..MAX_BATCHES_PER_TICK {
            let cursor = self
                .cursor
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let answer = self
                .feed
                .clone()
                .oneshot(RevocationRequest::Since { cursor })
                .await?;
            let RevocationResponse::Revoked {
                sessions,
                cursor,
                more,
            } = answer
            else {
                return Err(RevocationError("unexpected answer to Since".into()));
            };
            let now = self.clock.now();
            for s in sessions.iter().filter(|s| s.expires_at > now) {
                self.sessions.apply(s);
                crate::metrics::session_revoked(crate::metrics::RevocationSource::Feed);
            }
            *self.cursor.lock().unwrap_or_else(PoisonError::into_inner) = cursor;
            if !more {
                break;
            }
        }
        Ok(())
    }

    async fn tick(&self) {
        let result = match self.flush().await {
            Ok(()) => self.pull().await,
            Err(e) => Err(e),
        };
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        match (&result, *failing) {
            (Err(e), false) => {
                tracing::warn!(error = %e, "revocation feed unavailable: logouts on other instances are not seen until it is back");
            }
            (Ok(()), true) => tracing::info!("revocation feed available again"),
            _ => {}
        }
        *failing = result.is_err();
    }
}

async fn run(state: Weak<State>) {
    while let Some(s) = state.upgrade() {
        s.tick().await;
        let interval = s.interval;
        // Not held while asleep: dropping the layer ends the task at its next tick.
        drop(s);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tower::util::BoxCloneSyncService;

    use super::*;
    use crate::session::{NewSession, SessionFields};

    /// An in-memory feed shared by "instances", with an outage switch.
    #[derive(Clone, Default)]
    struct Feed {
        log: Arc<Mutex<Vec<RevokedSession>>>,
        down: Arc<AtomicBool>,
        sinces: Arc<Mutex<Vec<Option<String>>>>,
    }

    impl Feed {
        fn service(&self) -> RevocationFeed {
            let feed = self.clone();
            BoxCloneSyncService::new(tower::service_fn(move |req: RevocationRequest| {
                let feed = feed.clone();
                async move {
                    if feed.down.load(Ordering::SeqCst) {
                        return Err(RevocationError("down".into()));
                    }
                    let mut log = feed.log.lock().unwrap();
                    match req {
                        RevocationRequest::Publish(s) => {
                            log.push(s);
                            Ok(RevocationResponse::Published)
                        }
                        RevocationRequest::Since { cursor } => {
                            feed.sinces.lock().unwrap().push(cursor.clone());
                            let from = cursor.map_or(0, |c| c.parse::<usize>().unwrap());
                            let batch: Vec<_> = log.iter().skip(from).take(2).cloned().collect();
                            let next = from + batch.len();
                            Ok(RevocationResponse::Revoked {
                                sessions: batch,
                                cursor: Some(next.to_string()),
                                more: next < log.len(),
                            })
                        }
                    }
                }
            }))
        }
    }

    fn codec(clock: &Clock) -> SessionCodec {
        SessionCodec::new(
            b"revocation-sync-test-secret-0123",
            Duration::from_secs(3600),
            SessionFields::default(),
            clock.clone(),
            1000,
        )
    }

    fn session(codec: &SessionCodec, user: &str) -> (String, RevokedSession) {
        let (token, id) = codec
            .issue(NewSession {
                user_id: user.into(),
                email: None,
                display_name: None,
                role: crate::identity::UserRole::InternalUser,
                team_ids: vec![],
                provider: None,
                attributes: serde_json::Map::new(),
            })
            .unwrap();
        let revoked = RevokedSession::session(id.session_id(), id.expires_at());
        (token, revoked)
    }

    fn sync(feed: &Feed, codec: &SessionCodec, clock: &Clock) -> RevocationSync {
        RevocationSync::new(
            feed.service(),
            codec.clone(),
            clock.clone(),
            Duration::from_secs(3600),
        )
    }

    #[tokio::test]
    async fn a_revocation_reaches_the_other_instance_at_its_next_tick() {
        let clock = Clock::system();
        let feed = Feed::default();
        let (a, b) = (codec(&clock), codec(&clock));
        let (sync_a, sync_b) = (sync(&feed, &a, &clock), sync(&feed, &b, &clock));
        let tokens: Vec<_> = (0..5).map(|i| session(&a, &format!("u{i}"))).collect();
        for (token, _) in &tokens {
            assert!(b.verify(token).is_ok());
        }
        for (_, revoked) in &tokens {
            sync_a.revoke(revoked.clone()).await;
        }
        assert!(a.verify(&tokens[0].0).is_err(), "revoked here at once");
        sync_b.state.tick().await;
        for (token, _) in &tokens {
            assert_eq!(b.verify(token), Err(crate::session::SessionError::Revoked));
        }
        // Batches of two: the cursor moved through all five.
        assert_eq!(sync_b.state.cursor.lock().unwrap().as_deref(), Some("5"));
    }

    #[tokio::test]
    async fn revocations_made_while_the_feed_is_down_are_published_later() {
        let clock = Clock::system();
        let feed = Feed::default();
        let (a, b) = (codec(&clock), codec(&clock));
        let (sync_a, sync_b) = (sync(&feed, &a, &clock), sync(&feed, &b, &clock));
        let (token, revoked) = session(&a, "alice");
        feed.down.store(true, Ordering::SeqCst);
        sync_a.revoke(revoked).await;
        assert!(a.verify(&token).is_err(), "still revoked here");
        sync_a.state.tick().await;
        sync_b.state.tick().await;
        assert!(b.verify(&token).is_ok(), "the feed is down: B cannot know");
        feed.down.store(false, Ordering::SeqCst);
        sync_a.state.tick().await;
        sync_b.state.tick().await;
        assert!(b.verify(&token).is_err(), "published once the feed is back");
        assert_eq!(feed.log.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_task_runs_by_itself_and_ends_with_the_layer() {
        let clock = Clock::system();
        let feed = Feed::default();
        let sync = RevocationSync::new(
            feed.service(),
            codec(&clock),
            clock.clone(),
            Duration::from_millis(10),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = feed.sinces.lock().unwrap().len();
        assert!(before >= 2, "ticks: {before}");
        drop(sync);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = feed.sinces.lock().unwrap().len();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(feed.sinces.lock().unwrap().len(), after, "stopped");
    }
}

//! [`PostgresUserStore`]: users, teams and memberships in PostgreSQL (feature `postgres`).
//!
//! `mod.rs` holds the store and its options, `migrate.rs` the schema and how it is applied,
//! `requests.rs` the SQL answering each request, `rows.rs` row decoding, `error.rs` error mapping.

mod error;
mod migrate;
mod requests;
mod rows;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::OnceCell;

use super::{StoreError, StoreRequest, StoreResponse};

/// Pool and timeout settings of a [`PostgresUserStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    max_connections: u32,
    acquire_timeout: Duration,
    statement_timeout: Duration,
    request_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl PostgresOptions {
    /// The defaults: 10 connections, 2 s acquire timeout, 5 s statement timeout, 5 s request
    /// timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most connections the pool opens (default 10; at least 1).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a request waits for a connection, including connecting (default 2 s). With
    /// PostgreSQL down, requests fail after about this long.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// PostgreSQL's `statement_timeout` for the store's connections (default 5 s; rounded to
    /// whole milliseconds, at least 1). Schema migrations allow themselves 60 s.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// The bound on one whole request as the caller sees it, measured here rather than by the
    /// server (default 5 s): a server that stops answering mid-request (frozen, or a network
    /// partition that drops packets) fails the request after this long instead of holding the
    /// login until TCP gives up. A transaction cut short is rolled back by PostgreSQL when its
    /// connection closes.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// The user store in PostgreSQL (feature `postgres`).
///
/// A `tower::Service<StoreRequest>`, always ready; cheap to clone (clones share the pool). Box it
/// into a [`UserStore`](super::UserStore) with `BoxCloneSyncService::new`:
///
/// ```no_run
/// # async fn demo() -> Result<(), tower_sso::store::StoreError> {
/// use std::time::Duration;
/// use tower::util::BoxCloneSyncService;
/// use tower_sso::store::{PostgresOptions, PostgresUserStore, UserStore};
///
/// let options = PostgresOptions::new().acquire_timeout(Duration::from_secs(1));
/// let store = PostgresUserStore::connect_with("postgres://sso@db.internal/gateway", options).await?;
/// let store: UserStore = BoxCloneSyncService::new(store);
/// # Ok(()) }
/// ```
///
/// # Tables
///
/// The store keeps its data in its own tables, all named `tower_sso_*`; it never reads or writes
/// LiteLLM's tables (`LiteLLM_UserTable`, `LiteLLM_TeamTable`, ...), so it can share a database
/// with a LiteLLM proxy, and users created by SSO logins do not appear in LiteLLM's user list.
///
/// - `tower_sso_users`: `user_id` (primary key), `email` (stored ASCII-lower-cased, unique),
///   `role` (the wire name, `internal_user_viewer`, ...), `models` (`text[]`), `max_budget`,
///   `budget_duration`, `metadata` (`jsonb` object), `created_at`, `updated_at`.
/// - `tower_sso_teams`: `team_id` (primary key), `alias`, `models`, `max_budget`,
///   `budget_duration`, `created_at`.
/// - `tower_sso_memberships`: `(team_id, user_id)` (primary key, both foreign keys, deleted with
///   the user or team), and `seq`, so a user's teams come back in the order they were added.
///
/// # Migrations
///
/// The schema ships with the crate (SQL embedded in the binary) and the store applies it itself,
/// recording applied versions in its own table, `tower_sso_migrations` (not sqlx's
/// `_sqlx_migrations`, which an application's own migrations use). Applying is one transaction
/// holding a fixed advisory lock (`pg_advisory_xact_lock`): idempotent, and safe when several
/// instances start at once. [`PostgresUserStore::connect`] migrates before returning;
/// [`PostgresUserStore::connect_lazy`] migrates before serving its first request, and retries on
/// the next request if that failed (for example while PostgreSQL is still down).
///
/// # Pool and timeouts
///
/// Requests run on a connection pool ([`PostgresOptions`]: at most 10 connections by default).
/// Waiting for a connection is bounded by the acquire timeout (2 s by default: with PostgreSQL
/// down a request fails after about that long) and every statement by a server-side
/// `statement_timeout` (5 s by default), and each whole request, as the caller sees it, by a
/// request timeout measured here (5 s by default), so a server that stops answering (frozen, or
/// behind a partition that drops packets) never holds a login longer. Failures are [`StoreError::Backend`] errors such as
/// `postgres: unavailable (pool timed out)`: the kind of failure only, never the connection URL,
/// the password or a stored value. [`Debug`](std::fmt::Debug) shows the host, port and database.
///
/// # Concurrency
///
/// Every request is atomic, and the store behaves like
/// [`MemoryUserStore`](crate::store::MemoryUserStore) when several instances share the database:
///
/// - Two instances inserting the same new user: one succeeds, the other gets
///   [`StoreError::Conflict`], which the login resolves by reading and updating the stored user.
///   An insert writes the user and its memberships in one transaction.
/// - [`StoreRequest::SetMetadataIfAbsent`] is a single conditional `UPDATE`: exactly one of
///   several concurrent callers sets the key, and all of them are answered with the winner.
/// - [`StoreRequest::FindOrCreateTeam`] and [`StoreRequest::AddMember`] are idempotent:
///   concurrent callers get the same team and one membership.
#[derive(Clone)]
pub struct PostgresUserStore {
    inner: Arc<Inner>,
}

struct Inner {
    connect: PgConnectOptions,
    options: PostgresOptions,
    /// Built on first use, inside the runtime (a pool spawns maintenance tasks), so that
    /// [`PostgresUserStore::connect_lazy`] also works outside one.
    pool: OnceLock<PgPool>,
    /// Set once the migrations have been applied.
    migrated: OnceCell<()>,
}

impl PostgresUserStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?...`) with the default
    /// [`PostgresOptions`], and applies the schema migrations.
    ///
    /// Fails with [`StoreError::Backend`] if the URL is malformed, PostgreSQL cannot be reached
    /// within the acquire timeout, or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`connect`](Self::connect) with `options`.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let store = Self::connect_lazy_with(url, options)?;
        store.migrate().await?;
        Ok(store)
    }

    /// A store for `url` that connects on its first request, with the default
    /// [`PostgresOptions`]. Synchronous, and needs no runtime, so an instance can be configured
    /// and start while PostgreSQL is down.
    ///
    /// The schema migrations run before the first request is answered; if they fail (PostgreSQL
    /// still down), that request fails with [`StoreError::Backend`] and the next one tries again.
    /// Only a malformed URL fails here.
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        Self::connect_lazy_with(url, PostgresOptions::default())
    }

    /// [`connect_lazy`](Self::connect_lazy) with `options`.
    pub fn connect_lazy_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        // The parse error can quote the URL, password included: say only what failed.
        let invalid = || StoreError::Backend("postgres: invalid connection URL".into());
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Err(invalid());
        }
        let connect = PgConnectOptions::from_str(url).map_err(|_| invalid())?;
        let statement_ms = options
            .statement_timeout
            .as_millis()
            .clamp(1, u32::MAX.into());
        let connect = connect.options([("statement_timeout", statement_ms)]);
        Ok(Self {
            inner: Arc::new(Inner {
                connect,
                options,
                pool: OnceLock::new(),
                migrated: OnceCell::new(),
            }),
        })
    }

    /// Applies the schema migrations now, if this store has not yet done so.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.ready_pool().await.map(drop)
    }

    fn pool(&self) -> &PgPool {
        self.inner.pool.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(self.inner.options.max_connections)
                .acquire_timeout(self.inner.options.acquire_timeout)
                .connect_lazy_with(self.inner.connect.clone())
        })
    }

    /// The pool, once the migrations are applied.
    async fn ready_pool(&self) -> Result<PgPool, StoreError> {
        let pool = self.pool().clone();
        self.inner
            .migrated
            .get_or_try_init(|| migrate::run(&pool))
            .await?;
        Ok(pool)
    }
}

type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

impl fmt::Debug for PostgresUserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.connect;
        f.debug_struct("PostgresUserStore")
            .field("host", &c.get_host())
            .field("port", &c.get_port())
            .field("database", &c.get_database())
            .field("options", &self.inner.options)
            .field("migrated", &self.inner.migrated.initialized())
            .finish()
    }
}

impl tower::Service<StoreRequest> for PostgresUserStore {
    type Response = StoreResponse;
    type Error = StoreError;
    type Future = StoreFuture<StoreResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: StoreRequest) -> Self::Future {
        let store = self.clone();
        let bound = self.inner.options.request_timeout;
        Box::pin(async move {
            let request = async {
                let pool = store.ready_pool().await?;
                requests::handle(&pool, req).await
            };
            tokio::time::timeout(bound, request)
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Backend(
                        "postgres: unavailable (request timed out)".to_owned(),
                    ))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_url_fails_without_quoting_it() {
        let err = PostgresUserStore::connect_lazy("postgres://u:hunter2@[::1:5432/db").unwrap_err();
        assert_eq!(
            err,
            StoreError::Backend("postgres: invalid connection URL".into())
        );
        for url in ["mysql://u:hunter2@h/db", "u:hunter2@h/db", ""] {
            let err = PostgresUserStore::connect_lazy(url).unwrap_err();
            assert_eq!(
                err,
                StoreError::Backend("postgres: invalid connection URL".into())
            );
        }
        PostgresUserStore::connect_lazy("postgresql://h/db").expect("either scheme");
    }

    #[test]
    fn lazy_store_builds_without_a_runtime_and_hides_the_password() {
        let store =
            PostgresUserStore::connect_lazy("postgres://u:hunter2@db.internal:6543/sso").unwrap();
        let debug = format!("{store:?}");
        assert!(
            debug.contains("db.internal") && debug.contains("sso"),
            "{debug}"
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[tokio::test]
    async fn unreachable_server_fails_with_the_kind_only() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let url = format!("postgres://u:hunter2@127.0.0.1:{port}/sso");
        let options = PostgresOptions::new().acquire_timeout(Duration::from_millis(200));
        let err = PostgresUserStore::connect_with(&url, options)
            .await
            .unwrap_err();
        let StoreError::Backend(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.starts_with("postgres: unavailable"), "{msg}");
        assert!(
            !msg.contains("hunter2") && !msg.contains("127.0.0.1"),
            "{msg}"
        );
    }
}

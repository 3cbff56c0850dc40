//! The store's schema: SQL files shipped in the crate, applied in order and recorded in the
//! store's own table, `tower_sso_migrations` (not sqlx's `_sqlx_migrations`, which belongs to
//! the application's own migrations).

use sqlx::{Executor as _, PgPool};

use super::error::backend;
use crate::store::StoreError;

/// One schema version.
struct Migration {
    version: i32,
    description: &'static str,
    sql: &'static str,
}

/// Every schema version, oldest first. Never edit a shipped one: add the next.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "users, teams and memberships",
        sql: include_str!("migrations/0001_create_tables.sql"),
    },
    Migration {
        version: 2,
        description: "team rate limits",
        sql: include_str!("migrations/0002_team_limits.sql"),
    },
];

/// The key of the transaction-scoped advisory lock that serialises migrations across instances
/// (the bytes of `"towersso"`).
const LOCK_KEY: i64 = 0x746f_7765_7273_736f;

/// Applies every migration not yet recorded, in one transaction holding the advisory lock:
/// idempotent, and safe when several instances start at once (they take turns; the later ones
/// find everything applied).
pub(super) async fn run(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(backend)?;
    // DDL can outlast the per-statement timeout meant for requests, and instances starting
    // together wait for each other's lock.
    sqlx::query("SET LOCAL statement_timeout = '60s'")
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS tower_sso_migrations (\
             version integer PRIMARY KEY, \
             description text NOT NULL, \
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM tower_sso_migrations")
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(
            version = m.version,
            description = m.description,
            "applying tower-sso schema migration"
        );
        // A query without arguments goes over the simple protocol, which runs every statement
        // of the file.
        (&mut *tx).execute(m.sql).await.map_err(backend)?;
        sqlx::query("INSERT INTO tower_sso_migrations (version, description) VALUES ($1, $2)")
            .bind(m.version)
            .bind(m.description)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert!(MIGRATIONS.iter().all(|m| m.version > 0));
    }
}

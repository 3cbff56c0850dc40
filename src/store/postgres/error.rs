//! Mapping `sqlx` errors to [`StoreError`]s that carry no connection URL, password or user value.

use sqlx::error::ErrorKind;

use crate::store::StoreError;

/// A constraint a write ran into, recognised by its name in the shipped schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Violation {
    /// `tower_sso_users_pkey`: the user id exists.
    UserIdTaken,
    /// `tower_sso_users_email_key`: another user has the e-mail.
    EmailTaken,
    /// `tower_sso_memberships_team_fkey`: the team does not exist.
    TeamMissing,
    /// `tower_sso_memberships_user_fkey`: the user does not exist.
    UserMissing,
}

/// The constraint `err` violated, if it is one the store handles.
pub(super) fn violation(err: &sqlx::Error) -> Option<Violation> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    match (db.kind(), db.constraint()?) {
        (ErrorKind::UniqueViolation, "tower_sso_users_pkey") => Some(Violation::UserIdTaken),
        (ErrorKind::UniqueViolation, "tower_sso_users_email_key") => Some(Violation::EmailTaken),
        (ErrorKind::ForeignKeyViolation, "tower_sso_memberships_team_fkey") => {
            Some(Violation::TeamMissing)
        }
        (ErrorKind::ForeignKeyViolation, "tower_sso_memberships_user_fkey") => {
            Some(Violation::UserMissing)
        }
        _ => None,
    }
}

/// `err` as a [`StoreError::Backend`]: the kind of failure only.
///
/// Server messages are left out on purpose: their detail can quote the values of a row (an
/// e-mail, a user id), and connection errors can name the host and user.
pub(super) fn backend(err: sqlx::Error) -> StoreError {
    let what = match &err {
        sqlx::Error::PoolTimedOut => "unavailable (pool timed out)".to_owned(),
        sqlx::Error::PoolClosed => "unavailable (pool closed)".to_owned(),
        sqlx::Error::WorkerCrashed => "unavailable (connection worker crashed)".to_owned(),
        sqlx::Error::Io(e) => format!("unavailable (io: {:?})", e.kind()),
        sqlx::Error::Tls(_) => "unavailable (tls)".to_owned(),
        sqlx::Error::Protocol(_) => "unavailable (protocol error)".to_owned(),
        sqlx::Error::Configuration(_) => "invalid configuration".to_owned(),
        sqlx::Error::Database(db) => database(db.code().as_deref().unwrap_or("")),
        sqlx::Error::ColumnDecode { index, .. } => format!("unexpected data in column {index}"),
        sqlx::Error::ColumnNotFound(column) => format!("missing column {column}"),
        sqlx::Error::Decode(_) | sqlx::Error::TypeNotFound { .. } => "unexpected data".to_owned(),
        sqlx::Error::RowNotFound => "row not found".to_owned(),
        _ => "error".to_owned(),
    };
    StoreError::Backend(format!("postgres: {what}"))
}

/// A database error by its SQLSTATE.
fn database(code: &str) -> String {
    match code {
        "57014" => "statement timeout".to_owned(),
        "57P01" | "57P02" | "57P03" => "unavailable (server shutting down)".to_owned(),
        "3D000" => "unavailable (no such database)".to_owned(),
        c if c.starts_with("08") => "unavailable (connection failure)".to_owned(),
        c if c.starts_with("28") => "unavailable (authentication failed)".to_owned(),
        c if c.starts_with("53") => "unavailable (insufficient resources)".to_owned(),
        c if c.starts_with("40") => format!("transaction rolled back ({c})"),
        c => format!("database error {c}"),
    }
}

/// A value read from the database that the store cannot represent.
pub(super) fn bad_data(what: &str) -> StoreError {
    StoreError::Backend(format!("postgres: unexpected data ({what})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_name_the_kind_only() {
        let err = backend(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connect to postgres://user:hunter2@db.internal failed",
        )));
        assert_eq!(
            err,
            StoreError::Backend("postgres: unavailable (io: ConnectionRefused)".into())
        );
        assert_eq!(
            backend(sqlx::Error::PoolTimedOut),
            StoreError::Backend("postgres: unavailable (pool timed out)".into())
        );
        let err = backend(sqlx::Error::Configuration(
            "postgres://user:hunter2@db.internal".into(),
        ));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn sqlstates() {
        assert_eq!(database("57014"), "statement timeout");
        assert_eq!(database("08006"), "unavailable (connection failure)");
        assert_eq!(database("22P02"), "database error 22P02");
    }
}

//! Reading users and teams from rows of the store's tables.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::error::{backend, bad_data};
use crate::identity::UserRole;
use crate::store::{StoreError, TeamRecord, UserRecord};

/// The select list of a user row (table alias `u`), with its teams in the order they were added.
pub(super) const USER_COLUMNS: &str = "u.user_id, u.email, u.role, u.models, u.max_budget, \
     u.budget_duration, u.metadata, ARRAY(SELECT m.team_id FROM tower_sso_memberships m \
     WHERE m.user_id = u.user_id ORDER BY m.seq) AS teams";

/// The select list of a team row (table alias `t`).
pub(super) const TEAM_COLUMNS: &str =
    "t.team_id, t.alias, t.models, t.max_budget, t.budget_duration, t.tpm_limit, t.rpm_limit";

/// A user from a row selected with [`USER_COLUMNS`].
pub(super) fn user(row: &PgRow) -> Result<UserRecord, StoreError> {
    let role: String = row.try_get("role").map_err(backend)?;
    let role = UserRole::ALL
        .into_iter()
        .find(|r| r.as_str() == role)
        .ok_or_else(|| bad_data("unknown user role"))?;
    let metadata = match row
        .try_get::<serde_json::Value, _>("metadata")
        .map_err(backend)?
    {
        serde_json::Value::Object(map) => map,
        _ => return Err(bad_data("user metadata is not a JSON object")),
    };
    Ok(UserRecord {
        user_id: row.try_get("user_id").map_err(backend)?,
        email: row.try_get("email").map_err(backend)?,
        role,
        teams: row.try_get("teams").map_err(backend)?,
        models: row.try_get("models").map_err(backend)?,
        max_budget: row.try_get("max_budget").map_err(backend)?,
        budget_duration: row.try_get("budget_duration").map_err(backend)?,
        metadata,
    })
}

/// A team from a row selected with [`TEAM_COLUMNS`].
pub(super) fn team(row: &PgRow) -> Result<TeamRecord, StoreError> {
    Ok(TeamRecord {
        team_id: row.try_get("team_id").map_err(backend)?,
        alias: row.try_get("alias").map_err(backend)?,
        models: row.try_get("models").map_err(backend)?,
        max_budget: row.try_get("max_budget").map_err(backend)?,
        budget_duration: row.try_get("budget_duration").map_err(backend)?,
        tpm_limit: limit(row.try_get("tpm_limit").map_err(backend)?),
        rpm_limit: limit(row.try_get("rpm_limit").map_err(backend)?),
    })
}

/// A stored limit (`bigint`); a negative one (written by something else) is no limit.
fn limit(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok())
}

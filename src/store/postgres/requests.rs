//! Answering each [`StoreRequest`] with SQL, with the semantics of the memory store.

use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};

use super::error::{Violation, backend, violation};
use super::rows::{self, TEAM_COLUMNS, USER_COLUMNS};
use crate::identity::UserRole;
use crate::store::{StoreError, StoreRequest, StoreResponse, TeamRecord, UserRecord};

/// Answers `req` on `pool` (migrations already applied).
pub(super) async fn handle(pool: &PgPool, req: StoreRequest) -> Result<StoreResponse, StoreError> {
    match req {
        StoreRequest::FindUserById(id) => find_user(pool, &id).await.map(StoreResponse::User),
        StoreRequest::FindUserByEmail(email) => find_user_by_email(pool, &email).await,
        StoreRequest::InsertUser(user) => insert_user(pool, user).await,
        StoreRequest::UpdateUser {
            user_id,
            email,
            role,
        } => update_user(pool, &user_id, email, role).await,
        StoreRequest::SetMetadataIfAbsent {
            user_id,
            key,
            value,
        } => set_metadata_if_absent(pool, &user_id, &key, &value).await,
        StoreRequest::FindOrCreateTeam(team) => find_or_create_team(pool, &team).await,
        StoreRequest::AddMember { team_id, user_id } => add_member(pool, &team_id, &user_id).await,
        StoreRequest::ListTeams { user_id } => list_teams(pool, &user_id).await,
        StoreRequest::Ping => {
            sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map_err(backend)?;
            Ok(StoreResponse::Done)
        }
    }
}

/// The user `user_id`, with its teams.
async fn find_user<'c>(
    conn: impl PgExecutor<'c>,
    user_id: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM tower_sso_users u WHERE u.user_id = $1");
    let row = sqlx::query(&sql)
        .bind(user_id)
        .fetch_optional(conn)
        .await
        .map_err(backend)?;
    row.as_ref().map(rows::user).transpose()
}

/// E-mails are stored ASCII-lower-cased, so a lookup folds its argument the same way and
/// compares equal (SQL `lower()` would fold Unicode: U+212A KELVIN SIGN would find `k`).
async fn find_user_by_email(pool: &PgPool, email: &str) -> Result<StoreResponse, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM tower_sso_users u WHERE u.email = $1");
    let row = sqlx::query(&sql)
        .bind(email.to_ascii_lowercase())
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    Ok(StoreResponse::User(
        row.as_ref().map(rows::user).transpose()?,
    ))
}

/// The user and its memberships in one transaction; nothing is written on any error.
async fn insert_user(pool: &PgPool, mut user: UserRecord) -> Result<StoreResponse, StoreError> {
    user.email = user.email.map(|e| e.to_ascii_lowercase());
    let mut seen = std::collections::HashSet::new();
    user.teams.retain(|t| seen.insert(t.clone()));

    let mut tx = pool.begin().await.map_err(backend)?;
    // `ON CONFLICT (user_id)` waits for a concurrent insert of the same id and then does
    // nothing, so that race is always a `Conflict`, never the e-mail index's violation.
    let inserted = sqlx::query(
        "INSERT INTO tower_sso_users \
             (user_id, email, role, models, max_budget, budget_duration, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(&user.user_id)
    .bind(&user.email)
    .bind(user.role.as_str())
    .bind(&user.models)
    .bind(user.max_budget)
    .bind(&user.budget_duration)
    .bind(Json(&user.metadata))
    .execute(&mut *tx)
    .await
    .map_err(|e| match violation(&e) {
        Some(Violation::EmailTaken) => StoreError::EmailTaken,
        _ => backend(e),
    })?;
    if inserted.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("user {}", user.user_id)));
    }
    if !user.teams.is_empty() {
        let missing: Option<String> = sqlx::query_scalar(
            "SELECT x.t FROM unnest($1::text[]) WITH ORDINALITY AS x(t, n) \
             WHERE NOT EXISTS (SELECT 1 FROM tower_sso_teams WHERE team_id = x.t) \
             ORDER BY x.n LIMIT 1",
        )
        .bind(&user.teams)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        if let Some(team_id) = missing {
            return Err(StoreError::NotFound(format!("team {team_id}")));
        }
        sqlx::query(
            "INSERT INTO tower_sso_memberships (team_id, user_id) \
             SELECT x.t, $2 FROM unnest($1::text[]) WITH ORDINALITY AS x(t, n) ORDER BY x.n",
        )
        .bind(&user.teams)
        .bind(&user.user_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match violation(&e) {
            // A team deleted since the check above.
            Some(Violation::TeamMissing) => StoreError::NotFound("team".into()),
            _ => backend(e),
        })?;
    }
    let stored = find_user(&mut *tx, &user.user_id).await?;
    tx.commit().await.map_err(backend)?;
    Ok(StoreResponse::User(stored))
}

async fn update_user(
    pool: &PgPool,
    user_id: &str,
    email: Option<String>,
    role: Option<UserRole>,
) -> Result<StoreResponse, StoreError> {
    let sql = format!(
        "UPDATE tower_sso_users AS u \
         SET email = COALESCE($2, u.email), role = COALESCE($3, u.role), updated_at = now() \
         WHERE u.user_id = $1 RETURNING {USER_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(user_id)
        .bind(email.map(|e| e.to_ascii_lowercase()))
        .bind(role.map(UserRole::as_str))
        .fetch_optional(pool)
        .await
        .map_err(|e| match violation(&e) {
            Some(Violation::EmailTaken) => StoreError::EmailTaken,
            _ => backend(e),
        })?;
    match row {
        Some(row) => Ok(StoreResponse::User(Some(rows::user(&row)?))),
        None => Err(StoreError::NotFound(format!("user {user_id}"))),
    }
}

/// One conditional `UPDATE` (a compare-and-set: concurrent callers re-check the condition on
/// the row they waited for, so exactly one sets the key); when it changes nothing, the user as
/// stored tells the caller whose value won.
async fn set_metadata_if_absent(
    pool: &PgPool,
    user_id: &str,
    key: &str,
    value: &serde_json::Value,
) -> Result<StoreResponse, StoreError> {
    let sql = format!(
        "UPDATE tower_sso_users AS u \
         SET metadata = jsonb_set(u.metadata, ARRAY[$2::text], $3::jsonb), updated_at = now() \
         WHERE u.user_id = $1 \
           AND ((u.metadata -> $2::text) IS NULL OR (u.metadata -> $2::text) = 'null'::jsonb) \
         RETURNING {USER_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(user_id)
        .bind(key)
        .bind(Json(value))
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    let user = match row {
        Some(row) => Some(rows::user(&row)?),
        None => find_user(pool, user_id).await?,
    };
    match user {
        Some(user) => Ok(StoreResponse::User(Some(user))),
        None => Err(StoreError::NotFound(format!("user {user_id}"))),
    }
}

/// `INSERT .. ON CONFLICT DO NOTHING` waits for a concurrent creator of the same team, so the
/// `SELECT` after it sees the one row every creator answers with.
async fn find_or_create_team(
    pool: &PgPool,
    team: &TeamRecord,
) -> Result<StoreResponse, StoreError> {
    let sql = format!(
        "INSERT INTO tower_sso_teams AS t \
         (team_id, alias, models, max_budget, budget_duration, tpm_limit, rpm_limit) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (team_id) DO NOTHING RETURNING {TEAM_COLUMNS}"
    );
    let created = sqlx::query(&sql)
        .bind(&team.team_id)
        .bind(&team.alias)
        .bind(&team.models)
        .bind(team.max_budget)
        .bind(&team.budget_duration)
        // `bigint`: a limit beyond its range is stored as its largest value.
        .bind(team.tpm_limit.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
        .bind(team.rpm_limit.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    if let Some(row) = created {
        return Ok(StoreResponse::Team(rows::team(&row)?));
    }
    let sql = format!("SELECT {TEAM_COLUMNS} FROM tower_sso_teams t WHERE t.team_id = $1");
    let row = sqlx::query(&sql)
        .bind(&team.team_id)
        .fetch_optional(pool)
        .await
        .map_err(backend)?
        // Deleted between the two statements.
        .ok_or_else(|| StoreError::NotFound(format!("team {}", team.team_id)))?;
    Ok(StoreResponse::Team(rows::team(&row)?))
}

async fn add_member(
    pool: &PgPool,
    team_id: &str,
    user_id: &str,
) -> Result<StoreResponse, StoreError> {
    let res = sqlx::query(
        "INSERT INTO tower_sso_memberships (team_id, user_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(team_id)
    .bind(user_id)
    .execute(pool)
    .await;
    match res {
        Ok(_) => Ok(StoreResponse::Done),
        Err(e)
            if matches!(
                violation(&e),
                Some(Violation::TeamMissing | Violation::UserMissing)
            ) =>
        {
            // Name the team first when both are missing, as the memory store does.
            let team_exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM tower_sso_teams WHERE team_id = $1)",
            )
            .bind(team_id)
            .fetch_one(pool)
            .await
            .map_err(backend)?;
            Err(StoreError::NotFound(if team_exists {
                format!("user {user_id}")
            } else {
                format!("team {team_id}")
            }))
        }
        Err(e) => Err(backend(e)),
    }
}

/// An unknown user belongs to no team.
async fn list_teams(pool: &PgPool, user_id: &str) -> Result<StoreResponse, StoreError> {
    let sql = format!(
        "SELECT {TEAM_COLUMNS} FROM tower_sso_memberships m \
         JOIN tower_sso_teams t ON t.team_id = m.team_id \
         WHERE m.user_id = $1 ORDER BY m.seq"
    );
    let teams = sqlx::query(&sql)
        .bind(user_id)
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    Ok(StoreResponse::Teams(
        teams.iter().map(rows::team).collect::<Result<_, _>>()?,
    ))
}

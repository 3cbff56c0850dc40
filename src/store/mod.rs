//! The user store: users and team memberships, as the SSO callback finds, creates and updates them.
//!
//! It is a [`tower::Service`] answering [`StoreRequest`]s; the default is [`MemoryUserStore`].

use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::identity::UserRole;

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod upsert;

pub use self::memory::MemoryUserStore;
#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresOptions, PostgresUserStore};
pub(crate) use self::upsert::{LoginLookup, ensure_named_teams, find_login_user, upsert_sso_user};
pub use self::upsert::{NewTeamDefaults, NewUserDefaults};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The user id.
    pub user_id: String,
    /// The e-mail, lower-cased.
    pub email: Option<String>,
    /// The role.
    pub role: UserRole,
    /// Teams the user is a member of.
    pub teams: Vec<String>,
    /// Models the user may use (kept across logins).
    pub models: Vec<String>,
    /// Budget, from `default_internal_user_params` when the user was created.
    pub max_budget: Option<f64>,
    /// Budget period (`30d`, ...).
    pub budget_duration: Option<String>,
    /// Free-form metadata: `auth_provider`, and `sso_subject` (`"<provider name>|<sub>"`, the
    /// IdP subject the user is bound to; see [`crate::SsoLayerBuilder::link_accounts_by_email`]).
    /// Remove `sso_subject` (or set it to `null`) to let the next SSO login re-bind the user.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A stored team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRecord {
    /// The team id.
    pub team_id: String,
    /// A human name.
    pub alias: Option<String>,
    /// Models the team may use.
    pub models: Vec<String>,
    /// Budget.
    pub max_budget: Option<f64>,
    /// Budget period.
    pub budget_duration: Option<String>,
    /// Tokens per minute the team may use (`tpm_limit`).
    #[serde(default)]
    pub tpm_limit: Option<u64>,
    /// Requests per minute the team may make (`rpm_limit`).
    #[serde(default)]
    pub rpm_limit: Option<u64>,
}

/// A request to the user store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreRequest {
    /// Find a user by id.
    FindUserById(String),
    /// Find a user by e-mail (compared lower-cased). The SSO login asks only with ASCII
    /// addresses, and only when e-mail linking is on; a store should compare ASCII
    /// case-insensitively and must not apply Unicode case folding (U+212A KELVIN SIGN is not `k`).
    FindUserByEmail(String),
    /// Insert a new user, with its team memberships, all or nothing.
    ///
    /// - The e-mail is stored ASCII-lower-cased (Unicode letters are kept as they are).
    /// - [`UserRecord::teams`] are the new user's memberships, in order (duplicates dropped),
    ///   written together with the user: every listed team must exist, else the store answers
    ///   [`StoreError::NotFound`] (`"team <id>"`) and writes nothing.
    /// - Fails with [`StoreError::Conflict`] (`"user <id>"`) if the id exists (the stored user is
    ///   kept), else with [`StoreError::EmailTaken`] if another user has the same e-mail
    ///   (compared after ASCII lower-casing).
    ///
    /// Answers the user as stored.
    InsertUser(UserRecord),
    /// Update a user's e-mail and/or role (fields left `None` are unchanged); answers the user as
    /// stored, or fails with [`StoreError::NotFound`].
    ///
    /// The e-mail is stored ASCII-lower-cased and stays unique: an e-mail another user has fails
    /// with [`StoreError::EmailTaken`] and changes nothing. Setting the e-mail the user already
    /// has is fine.
    UpdateUser {
        /// The user to update.
        user_id: String,
        /// The new e-mail.
        email: Option<String>,
        /// The new role.
        role: Option<UserRole>,
    },
    /// Set `metadata[key]` to `value` unless the key already holds a value (`null` counts as no
    /// value). Answers the user as stored afterwards, so the caller sees whose value won; fails
    /// with [`StoreError::NotFound`] if the user does not exist.
    ///
    /// The SSO login binds a user to its IdP subject with it (`metadata.sso_subject`); make it
    /// atomic (compare-and-set), or two first logins from different subjects could both win.
    SetMetadataIfAbsent {
        /// The user.
        user_id: String,
        /// The metadata key.
        key: String,
        /// The value to set.
        value: serde_json::Value,
    },
    /// Find a team by id, creating it from the given record if it does not exist (an existing
    /// team is answered as stored, unchanged). A store keeps every field of the record.
    FindOrCreateTeam(TeamRecord),
    /// Add a user to a team (no-op if already a member).
    AddMember {
        /// The team.
        team_id: String,
        /// The user.
        user_id: String,
    },
    /// The teams a user belongs to.
    ListTeams {
        /// The user.
        user_id: String,
    },
    /// Check that the store answers (readiness).
    Ping,
}

/// The user store's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreResponse {
    /// Answer to finds, inserts and updates: the user, if found.
    User(Option<UserRecord>),
    /// Answer to `FindOrCreateTeam`.
    Team(TeamRecord),
    /// Answer to `ListTeams`.
    Teams(Vec<TeamRecord>),
    /// Answer to `AddMember` and `Ping`.
    Done,
}

/// The user store failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A user or team with that id already exists (`"user <id>"`).
    Conflict(String),
    /// Another user already has this e-mail (e-mails are unique, compared ASCII
    /// case-insensitively). The address is deliberately not part of the error.
    EmailTaken,
    /// The user or team does not exist.
    NotFound(String),
    /// The backend failed (connection lost, ...).
    Backend(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(what) => write!(f, "user store conflict: {what} already exists"),
            StoreError::EmailTaken => f.write_str("user store conflict: e-mail already in use"),
            StoreError::NotFound(what) => write!(f, "user store: {what} not found"),
            StoreError::Backend(msg) => write!(f, "user store error: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A type-erased user store, as the layer holds it.
pub type UserStore = BoxCloneSyncService<StoreRequest, StoreResponse, StoreError>;

/// The default user store: an empty [`MemoryUserStore`], boxed.
pub fn default_store() -> UserStore {
    BoxCloneSyncService::new(MemoryUserStore::new())
}

fn unexpected(op: &str, res: &StoreResponse) -> StoreError {
    let kind = match res {
        StoreResponse::User(_) => "User",
        StoreResponse::Team(_) => "Team",
        StoreResponse::Teams(_) => "Teams",
        StoreResponse::Done => "Done",
    };
    StoreError::Backend(format!("unexpected answer {kind} to {op}"))
}

async fn call(store: &UserStore, req: StoreRequest) -> Result<StoreResponse, StoreError> {
    store.clone().oneshot(req).await
}

/// Finds a user by id.
pub(crate) async fn find_user_by_id(
    store: &UserStore,
    user_id: impl Into<String>,
) -> Result<Option<UserRecord>, StoreError> {
    match call(store, StoreRequest::FindUserById(user_id.into())).await? {
        StoreResponse::User(u) => Ok(u),
        other => Err(unexpected("FindUserById", &other)),
    }
}

/// Finds a user by e-mail (case-insensitive).
pub(crate) async fn find_user_by_email(
    store: &UserStore,
    email: impl Into<String>,
) -> Result<Option<UserRecord>, StoreError> {
    match call(store, StoreRequest::FindUserByEmail(email.into())).await? {
        StoreResponse::User(u) => Ok(u),
        other => Err(unexpected("FindUserByEmail", &other)),
    }
}

/// Inserts a new user with its memberships; [`StoreError::Conflict`] if the id exists,
/// [`StoreError::EmailTaken`] if the e-mail belongs to another user. Returns the stored user.
pub(crate) async fn insert_user(
    store: &UserStore,
    user: UserRecord,
) -> Result<UserRecord, StoreError> {
    let user_id = user.user_id.clone();
    match call(store, StoreRequest::InsertUser(user)).await? {
        StoreResponse::User(Some(u)) => Ok(u),
        // A store that does not echo the record: read it back.
        StoreResponse::User(None) => find_user_by_id(store, user_id.clone())
            .await?
            .ok_or(StoreError::NotFound(format!("user {user_id}"))),
        other => Err(unexpected("InsertUser", &other)),
    }
}

/// Updates a user's e-mail and/or role (`None` leaves a field unchanged). Returns the updated user.
pub(crate) async fn update_user(
    store: &UserStore,
    user_id: impl Into<String>,
    email: Option<String>,
    role: Option<UserRole>,
) -> Result<UserRecord, StoreError> {
    let user_id = user_id.into();
    match call(
        store,
        StoreRequest::UpdateUser {
            user_id: user_id.clone(),
            email,
            role,
        },
    )
    .await?
    {
        StoreResponse::User(Some(u)) => Ok(u),
        StoreResponse::User(None) => Err(StoreError::NotFound(format!("user {user_id}"))),
        other => Err(unexpected("UpdateUser", &other)),
    }
}

/// Sets `metadata[key]` unless it already holds a value; returns the user as stored afterwards.
pub(crate) async fn set_metadata_if_absent(
    store: &UserStore,
    user_id: impl Into<String>,
    key: impl Into<String>,
    value: serde_json::Value,
) -> Result<UserRecord, StoreError> {
    let user_id = user_id.into();
    match call(
        store,
        StoreRequest::SetMetadataIfAbsent {
            user_id: user_id.clone(),
            key: key.into(),
            value,
        },
    )
    .await?
    {
        StoreResponse::User(Some(u)) => Ok(u),
        StoreResponse::User(None) => Err(StoreError::NotFound(format!("user {user_id}"))),
        other => Err(unexpected("SetMetadataIfAbsent", &other)),
    }
}

/// Finds a team by id, creating it from `team` if it does not exist.
pub(crate) async fn find_or_create_team(
    store: &UserStore,
    team: TeamRecord,
) -> Result<TeamRecord, StoreError> {
    match call(store, StoreRequest::FindOrCreateTeam(team)).await? {
        StoreResponse::Team(t) => Ok(t),
        other => Err(unexpected("FindOrCreateTeam", &other)),
    }
}

/// Adds a user to a team (no-op if already a member).
pub(crate) async fn add_member(
    store: &UserStore,
    team_id: impl Into<String>,
    user_id: impl Into<String>,
) -> Result<(), StoreError> {
    match call(
        store,
        StoreRequest::AddMember {
            team_id: team_id.into(),
            user_id: user_id.into(),
        },
    )
    .await?
    {
        StoreResponse::Done => Ok(()),
        other => Err(unexpected("AddMember", &other)),
    }
}

/// The teams a user belongs to.
#[cfg(test)]
pub(crate) async fn list_teams(
    store: &UserStore,
    user_id: impl Into<String>,
) -> Result<Vec<TeamRecord>, StoreError> {
    match call(
        store,
        StoreRequest::ListTeams {
            user_id: user_id.into(),
        },
    )
    .await?
    {
        StoreResponse::Teams(t) => Ok(t),
        other => Err(unexpected("ListTeams", &other)),
    }
}

/// Checks that the store answers.
pub(crate) async fn ping(store: &UserStore) -> Result<(), StoreError> {
    match call(store, StoreRequest::Ping).await? {
        StoreResponse::Done => Ok(()),
        other => Err(unexpected("Ping", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRecord {
        UserRecord {
            user_id: id.into(),
            email: Some("A@B.c".into()),
            role: UserRole::InternalUser,
            teams: vec![],
            models: vec![],
            max_budget: None,
            budget_duration: None,
            metadata: serde_json::Map::new(),
        }
    }

    #[tokio::test]
    async fn typed_helpers_round_trip() {
        let s = default_store();
        ping(&s).await.unwrap();
        let u = insert_user(&s, user("u1")).await.unwrap();
        assert_eq!(u.email.as_deref(), Some("a@b.c"));
        assert_eq!(find_user_by_id(&s, "u1").await.unwrap(), Some(u.clone()));
        assert_eq!(find_user_by_email(&s, "a@B.C").await.unwrap(), Some(u));
        let u = update_user(&s, "u1", None, Some(UserRole::ProxyAdmin))
            .await
            .unwrap();
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert!(matches!(
            update_user(&s, "nope", None, None).await,
            Err(StoreError::NotFound(_))
        ));
        let u = set_metadata_if_absent(&s, "u1", "k", "v1".into())
            .await
            .unwrap();
        assert_eq!(u.metadata["k"], "v1");
        let u = set_metadata_if_absent(&s, "u1", "k", "v2".into())
            .await
            .unwrap();
        assert_eq!(u.metadata["k"], "v1", "the first value stays");
        assert!(matches!(
            set_metadata_if_absent(&s, "nope", "k", "v".into()).await,
            Err(StoreError::NotFound(_))
        ));
        let t = TeamRecord {
            team_id: "t".into(),
            alias: None,
            models: vec![],
            max_budget: None,
            budget_duration: None,
            tpm_limit: Some(1000),
            rpm_limit: None,
        };
        assert_eq!(find_or_create_team(&s, t.clone()).await.unwrap(), t);
        add_member(&s, "t", "u1").await.unwrap();
        assert_eq!(list_teams(&s, "u1").await.unwrap(), vec![t]);
    }

    #[tokio::test]
    async fn helpers_reject_wrong_answers() {
        let wrong: UserStore =
            BoxCloneSyncService::new(tower::service_fn(|_req: StoreRequest| async {
                Ok::<_, StoreError>(StoreResponse::Done)
            }));
        assert!(matches!(
            find_user_by_id(&wrong, "u").await,
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(
            list_teams(&wrong, "u").await,
            Err(StoreError::Backend(_))
        ));
    }
}

//! The user store: users and team memberships, as the SSO callback finds, creates and updates them.
//!
//! It is a [`tower::Service`] answering [`StoreRequest`]s; the default is [`MemoryUserStore`].

use serde::{Deserialize, Serialize};
use tower::util::BoxCloneSyncService;

use crate::identity::UserRole;

mod memory;

pub use self::memory::MemoryUserStore;

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
    /// Free-form metadata (`auth_provider`, ...).
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
}

/// A request to the user store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreRequest {
    /// Find a user by id.
    FindUserById(String),
    /// Find a user by e-mail (compared lower-cased).
    FindUserByEmail(String),
    /// Insert a new user. Fails with [`StoreError::Conflict`] if the id exists.
    InsertUser(UserRecord),
    /// Update a user's e-mail and/or role (fields left `None` are unchanged).
    UpdateUser {
        /// The user to update.
        user_id: String,
        /// The new e-mail.
        email: Option<String>,
        /// The new role.
        role: Option<UserRole>,
    },
    /// Find a team by id, creating it from the given record if it does not exist.
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
    /// A user or team with that id already exists.
    Conflict(String),
    /// The user or team does not exist.
    NotFound(String),
    /// The backend failed (connection lost, ...).
    Backend(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Conflict(what) => write!(f, "user store conflict: {what} already exists"),
            StoreError::NotFound(what) => write!(f, "user store: {what} not found"),
            StoreError::Backend(msg) => write!(f, "user store error: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A type-erased user store, as the layer holds it.
pub type UserStore = BoxCloneSyncService<StoreRequest, StoreResponse, StoreError>;

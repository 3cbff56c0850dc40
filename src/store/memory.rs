//! The default user store: in memory, for one process.

use std::collections::BTreeMap;
use std::fmt;
use std::future::{Ready, ready};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use super::{StoreError, StoreRequest, StoreResponse, TeamRecord, UserRecord};

#[derive(Default)]
struct State {
    /// Users by id (ordered, so lookups by e-mail are deterministic).
    users: BTreeMap<String, UserRecord>,
    /// Teams by id.
    teams: BTreeMap<String, TeamRecord>,
}

impl State {
    /// The user `user_id`, to change it, or `NotFound`.
    fn user_mut(&mut self, user_id: &str) -> Result<&mut UserRecord, StoreError> {
        self.users
            .get_mut(user_id)
            .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))
    }

    /// `EmailTaken` if a user other than `user_id` has `email` (already ASCII-lower-cased).
    fn check_email_free(&self, email: Option<&str>, user_id: &str) -> Result<(), StoreError> {
        let Some(email) = email else { return Ok(()) };
        let taken = self
            .users
            .values()
            .any(|u| u.user_id != user_id && u.email.as_deref() == Some(email));
        if taken {
            return Err(StoreError::EmailTaken);
        }
        Ok(())
    }
}

/// The default user store: users and teams in memory, lost when the process exits.
///
/// Team membership is kept in each user's [`UserRecord::teams`], in the order it was added.
/// E-mails are stored ASCII-lower-cased and are unique across users (see
/// [`StoreRequest::InsertUser`] and [`StoreRequest::UpdateUser`]); finding by e-mail is a linear
/// scan, which is fine for the numbers of users one process holds. Every request is atomic
/// (one lock). Cheap to clone: clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryUserStore {
    state: Arc<RwLock<State>>,
}

impl MemoryUserStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of users.
    pub fn user_count(&self) -> usize {
        self.read().users.len()
    }

    /// The number of teams.
    pub fn team_count(&self) -> usize {
        self.read().teams.len()
    }

    // A panic while a lock was held cannot leave `State` half-updated in a way that breaks its
    // invariants badly (each request changes at most one user and one team), so poisoning is
    // recovered from instead of propagated.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn handle(&self, req: StoreRequest) -> Result<StoreResponse, StoreError> {
        match req {
            StoreRequest::FindUserById(id) => {
                Ok(StoreResponse::User(self.read().users.get(&id).cloned()))
            }
            StoreRequest::FindUserByEmail(email) => {
                // ASCII case only: Unicode folding would make `admin@\u{212A}orp` (KELVIN SIGN)
                // find `admin@korp`.
                let state = self.read();
                let user = state
                    .users
                    .values()
                    .find(|u| {
                        u.email
                            .as_deref()
                            .is_some_and(|e| e.eq_ignore_ascii_case(&email))
                    })
                    .cloned();
                Ok(StoreResponse::User(user))
            }
            StoreRequest::InsertUser(mut user) => {
                user.email = user.email.map(|e| e.to_ascii_lowercase());
                dedup_in_order(&mut user.teams);
                let mut state = self.write();
                if state.users.contains_key(&user.user_id) {
                    return Err(StoreError::Conflict(format!("user {}", user.user_id)));
                }
                state.check_email_free(user.email.as_deref(), &user.user_id)?;
                if let Some(missing) = user.teams.iter().find(|t| !state.teams.contains_key(*t)) {
                    return Err(StoreError::NotFound(format!("team {missing}")));
                }
                state.users.insert(user.user_id.clone(), user.clone());
                Ok(StoreResponse::User(Some(user)))
            }
            StoreRequest::UpdateUser {
                user_id,
                email,
                role,
            } => {
                let mut state = self.write();
                let email = email.map(|e| e.to_ascii_lowercase());
                // NotFound before EmailTaken, and nothing changes unless both checks pass.
                if !state.users.contains_key(&user_id) {
                    return Err(StoreError::NotFound(format!("user {user_id}")));
                }
                state.check_email_free(email.as_deref(), &user_id)?;
                let user = state.user_mut(&user_id)?;
                if let Some(email) = email {
                    user.email = Some(email);
                }
                if let Some(role) = role {
                    user.role = role;
                }
                Ok(StoreResponse::User(Some(user.clone())))
            }
            StoreRequest::SetMetadataIfAbsent {
                user_id,
                key,
                value,
            } => {
                let mut state = self.write();
                let user = state.user_mut(&user_id)?;
                if user
                    .metadata
                    .get(&key)
                    .is_none_or(serde_json::Value::is_null)
                {
                    user.metadata.insert(key, value);
                }
                Ok(StoreResponse::User(Some(user.clone())))
            }
            StoreRequest::FindOrCreateTeam(team) => {
                let mut state = self.write();
                let team = state
                    .teams
                    .entry(team.team_id.clone())
                    .or_insert(team)
                    .clone();
                Ok(StoreResponse::Team(team))
            }
            StoreRequest::AddMember { team_id, user_id } => {
                let mut state = self.write();
                if !state.teams.contains_key(&team_id) {
                    return Err(StoreError::NotFound(format!("team {team_id}")));
                }
                let user = state.user_mut(&user_id)?;
                if !user.teams.contains(&team_id) {
                    user.teams.push(team_id);
                }
                Ok(StoreResponse::Done)
            }
            StoreRequest::ListTeams { user_id } => {
                // An unknown user belongs to no team.
                let state = self.read();
                let teams = state
                    .users
                    .get(&user_id)
                    .map(|u| {
                        u.teams
                            .iter()
                            .filter_map(|t| state.teams.get(t).cloned())
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(StoreResponse::Teams(teams))
            }
            StoreRequest::Ping => Ok(StoreResponse::Done),
        }
    }
}

fn dedup_in_order(items: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    items.retain(|t| seen.insert(t.clone()));
}

impl fmt::Debug for MemoryUserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.read();
        f.debug_struct("MemoryUserStore")
            .field("users", &state.users.len())
            .field("teams", &state.teams.len())
            .finish()
    }
}

impl tower::Service<StoreRequest> for MemoryUserStore {
    type Response = StoreResponse;
    type Error = StoreError;
    type Future = Ready<Result<StoreResponse, StoreError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: StoreRequest) -> Self::Future {
        ready(self.handle(req))
    }
}

#[cfg(test)]
mod tests {
    //! What every store must do is one suite, run against each backend: `tests/user_store.rs`.
    //! Here only what is particular to this one.

    use tower::ServiceExt;

    use super::*;
    use crate::identity::UserRole;

    fn user(id: &str) -> UserRecord {
        UserRecord {
            user_id: id.into(),
            email: None,
            role: UserRole::InternalUserViewer,
            teams: vec![],
            models: vec![],
            max_budget: None,
            budget_duration: None,
            metadata: serde_json::Map::new(),
        }
    }

    #[tokio::test]
    async fn recovers_from_a_poisoned_lock() {
        let s = MemoryUserStore::new();
        let s2 = s.clone();
        let _ = std::thread::spawn(move || {
            let _guard = s2.state.write().unwrap();
            panic!("poison");
        })
        .join();
        assert!(s.state.is_poisoned());
        s.clone()
            .oneshot(StoreRequest::InsertUser(user("u1")))
            .await
            .unwrap();
        assert_eq!(s.user_count(), 1);
    }
}

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
    use tower::ServiceExt;

    use super::*;
    use crate::identity::UserRole;

    fn user(id: &str, email: Option<&str>) -> UserRecord {
        UserRecord {
            user_id: id.into(),
            email: email.map(Into::into),
            role: UserRole::InternalUserViewer,
            teams: vec![],
            models: vec![],
            max_budget: None,
            budget_duration: None,
            metadata: serde_json::Map::new(),
        }
    }

    fn team(id: &str) -> TeamRecord {
        TeamRecord {
            team_id: id.into(),
            alias: None,
            models: vec![],
            max_budget: None,
            budget_duration: None,
        }
    }

    async fn call(s: &MemoryUserStore, req: StoreRequest) -> Result<StoreResponse, StoreError> {
        s.clone().oneshot(req).await
    }

    #[tokio::test]
    async fn insert_and_find() {
        let s = MemoryUserStore::new();
        let res = call(
            &s,
            StoreRequest::InsertUser(user("u1", Some("Alice@Example.COM"))),
        )
        .await
        .unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.email.as_deref(), Some("alice@example.com"));

        let res = call(&s, StoreRequest::FindUserById("u1".into()))
            .await
            .unwrap();
        assert_eq!(res, StoreResponse::User(Some(u.clone())));
        let res = call(&s, StoreRequest::FindUserById("nope".into()))
            .await
            .unwrap();
        assert_eq!(res, StoreResponse::User(None));

        let res = call(
            &s,
            StoreRequest::FindUserByEmail("ALICE@example.com".into()),
        )
        .await
        .unwrap();
        assert_eq!(res, StoreResponse::User(Some(u)));
        let res = call(&s, StoreRequest::FindUserByEmail("bob@example.com".into()))
            .await
            .unwrap();
        assert_eq!(res, StoreResponse::User(None));
        assert_eq!(s.user_count(), 1);
    }

    #[tokio::test]
    async fn emails_fold_ascii_case_only() {
        let s = MemoryUserStore::new();
        let kelvin = "admin@\u{212A}orp.example";
        call(&s, StoreRequest::InsertUser(user("k", Some(kelvin))))
            .await
            .unwrap();
        let res = call(&s, StoreRequest::FindUserById("k".into()))
            .await
            .unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.email.as_deref(), Some(kelvin));
        let res = call(
            &s,
            StoreRequest::FindUserByEmail("admin@korp.example".into()),
        )
        .await
        .unwrap();
        assert_eq!(res, StoreResponse::User(None));
    }

    #[tokio::test]
    async fn set_metadata_if_absent_keeps_the_first_value() {
        let s = MemoryUserStore::new();
        call(&s, StoreRequest::InsertUser(user("u1", None)))
            .await
            .unwrap();
        let set = |v: serde_json::Value| StoreRequest::SetMetadataIfAbsent {
            user_id: "u1".into(),
            key: "sso_subject".into(),
            value: v,
        };
        for (value, expected) in [
            (serde_json::Value::Null, serde_json::Value::Null),
            ("a".into(), "a".into()),
            ("b".into(), "a".into()),
        ] {
            let res = call(&s, set(value)).await.unwrap();
            let StoreResponse::User(Some(u)) = res else {
                panic!("{res:?}")
            };
            assert_eq!(u.metadata["sso_subject"], expected);
        }
        let err = call(
            &s,
            StoreRequest::SetMetadataIfAbsent {
                user_id: "nope".into(),
                key: "k".into(),
                value: "v".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn insert_conflicts_on_existing_id() {
        let s = MemoryUserStore::new();
        call(&s, StoreRequest::InsertUser(user("u1", None)))
            .await
            .unwrap();
        let err = call(&s, StoreRequest::InsertUser(user("u1", Some("x@y.z"))))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let res = call(&s, StoreRequest::FindUserById("u1".into()))
            .await
            .unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.email, None, "the first insert is kept");
    }

    #[tokio::test]
    async fn update_user() {
        let s = MemoryUserStore::new();
        call(&s, StoreRequest::InsertUser(user("u1", Some("a@x.com"))))
            .await
            .unwrap();

        let res = call(
            &s,
            StoreRequest::UpdateUser {
                user_id: "u1".into(),
                email: None,
                role: Some(UserRole::ProxyAdmin),
            },
        )
        .await
        .unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(
            u.email.as_deref(),
            Some("a@x.com"),
            "None leaves the e-mail unchanged"
        );

        let res = call(
            &s,
            StoreRequest::UpdateUser {
                user_id: "u1".into(),
                email: Some("B@X.com".into()),
                role: None,
            },
        )
        .await
        .unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.email.as_deref(), Some("b@x.com"));
        assert_eq!(
            u.role,
            UserRole::ProxyAdmin,
            "None leaves the role unchanged"
        );

        let err = call(
            &s,
            StoreRequest::UpdateUser {
                user_id: "nope".into(),
                email: None,
                role: None,
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn find_or_create_team_keeps_existing() {
        let s = MemoryUserStore::new();
        let mut t = team("t1");
        t.max_budget = Some(10.0);
        assert_eq!(
            call(&s, StoreRequest::FindOrCreateTeam(t.clone()))
                .await
                .unwrap(),
            StoreResponse::Team(t.clone())
        );
        let mut other = team("t1");
        other.alias = Some("other".into());
        assert_eq!(
            call(&s, StoreRequest::FindOrCreateTeam(other))
                .await
                .unwrap(),
            StoreResponse::Team(t)
        );
        assert_eq!(s.team_count(), 1);
    }

    #[tokio::test]
    async fn add_member_and_list_teams() {
        let s = MemoryUserStore::new();
        call(&s, StoreRequest::InsertUser(user("u1", None)))
            .await
            .unwrap();
        call(&s, StoreRequest::FindOrCreateTeam(team("t1")))
            .await
            .unwrap();
        call(&s, StoreRequest::FindOrCreateTeam(team("t2")))
            .await
            .unwrap();

        let add = |t: &str, u: &str| StoreRequest::AddMember {
            team_id: t.into(),
            user_id: u.into(),
        };
        assert_eq!(
            call(&s, add("t2", "u1")).await.unwrap(),
            StoreResponse::Done
        );
        assert_eq!(
            call(&s, add("t1", "u1")).await.unwrap(),
            StoreResponse::Done
        );
        assert_eq!(
            call(&s, add("t1", "u1")).await.unwrap(),
            StoreResponse::Done,
            "idempotent"
        );

        let res = call(&s, StoreRequest::FindUserById("u1".into()))
            .await
            .unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.teams, vec!["t2".to_owned(), "t1".to_owned()]);

        let res = call(
            &s,
            StoreRequest::ListTeams {
                user_id: "u1".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(res, StoreResponse::Teams(vec![team("t2"), team("t1")]));
        let res = call(
            &s,
            StoreRequest::ListTeams {
                user_id: "nope".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(res, StoreResponse::Teams(vec![]));

        let err = call(&s, add("missing", "u1")).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = call(&s, add("t1", "missing")).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn emails_are_unique_across_users() {
        let s = MemoryUserStore::new();
        call(&s, StoreRequest::InsertUser(user("u1", Some("a@x.com"))))
            .await
            .unwrap();
        call(&s, StoreRequest::InsertUser(user("u2", Some("b@x.com"))))
            .await
            .unwrap();
        let err = call(&s, StoreRequest::InsertUser(user("u3", Some("A@X.COM"))))
            .await
            .unwrap_err();
        assert_eq!(err, StoreError::EmailTaken);
        assert!(!err.to_string().contains("a@x.com"), "{err}");
        assert_eq!(s.user_count(), 2);

        let update = |id: &str, email: &str| StoreRequest::UpdateUser {
            user_id: id.into(),
            email: Some(email.into()),
            role: Some(UserRole::ProxyAdmin),
        };
        let err = call(&s, update("u2", "A@x.com")).await.unwrap_err();
        assert_eq!(err, StoreError::EmailTaken);
        let res = call(&s, StoreRequest::FindUserById("u2".into()))
            .await
            .unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.email.as_deref(), Some("b@x.com"), "nothing changed");
        assert_eq!(u.role, UserRole::InternalUserViewer, "nothing changed");
        // The user's own e-mail, in another case, is fine.
        call(&s, update("u1", "A@X.com")).await.unwrap();
        // An unknown user is NotFound, even with a taken e-mail.
        let err = call(&s, update("nope", "a@x.com")).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn insert_user_writes_its_memberships() {
        let s = MemoryUserStore::new();
        for t in ["t1", "t2"] {
            call(&s, StoreRequest::FindOrCreateTeam(team(t)))
                .await
                .unwrap();
        }
        let mut u = user("u1", None);
        u.teams = vec!["t2".into(), "t1".into(), "t2".into()];
        let res = call(&s, StoreRequest::InsertUser(u)).await.unwrap();
        let StoreResponse::User(Some(u)) = res else {
            panic!("{res:?}")
        };
        assert_eq!(u.teams, vec!["t2".to_owned(), "t1".to_owned()]);
        let res = call(
            &s,
            StoreRequest::ListTeams {
                user_id: "u1".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(res, StoreResponse::Teams(vec![team("t2"), team("t1")]));

        let mut u = user("u2", Some("u2@x.com"));
        u.teams = vec!["t1".into(), "missing".into()];
        let err = call(&s, StoreRequest::InsertUser(u)).await.unwrap_err();
        assert_eq!(err, StoreError::NotFound("team missing".into()));
        assert_eq!(s.user_count(), 1, "nothing written");
    }

    #[tokio::test]
    async fn ping() {
        assert_eq!(
            call(&MemoryUserStore::new(), StoreRequest::Ping)
                .await
                .unwrap(),
            StoreResponse::Done
        );
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
        call(&s, StoreRequest::InsertUser(user("u1", None)))
            .await
            .unwrap();
        assert_eq!(s.user_count(), 1);
    }
}

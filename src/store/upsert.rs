//! What a login does to the user store: find or create the user, sync the role and e-mail, add the
//! user to the IdP's teams, and promote `PROXY_ADMIN_ID`. Ported from LiteLLM's `ui_sso.py`
//! (`get_user_info_from_db`, `upsert_sso_user`, `add_missing_team_member`,
//! `check_and_update_if_proxy_admin_id`).

use crate::error::SsoError;
use crate::identity::{SsoUser, UserRole};

use super::{StoreError, TeamRecord, UserRecord, UserStore};

/// Defaults applied to users created by SSO (LiteLLM's `default_internal_user_params`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewUserDefaults {
    /// The role of a new user whose IdP grants none (`internal_user_viewer` when unset). A role from
    /// the IdP always wins over this one.
    pub role: Option<UserRole>,
    /// The new user's budget.
    pub max_budget: Option<f64>,
    /// The new user's budget period (`30d`, ...).
    pub budget_duration: Option<String>,
    /// Models the new user may use.
    pub models: Vec<String>,
}

/// Defaults applied to teams created by SSO (LiteLLM's `default_team_params`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTeamDefaults {
    /// The new team's budget.
    pub max_budget: Option<f64>,
    /// The new team's budget period (`1d`, ...).
    pub budget_duration: Option<String>,
    /// Models the new team may use.
    pub models: Vec<String>,
}

fn store_unavailable(step: &'static str, err: StoreError) -> SsoError {
    tracing::warn!(step, error = %err, "user store failed during SSO login");
    SsoError::unavailable("user store unavailable")
}

/// Finds or creates the user who just logged in, and brings the stored record up to date.
///
/// 1. Look the user up by `user_id`, then (if not found and the IdP gave one) by e-mail.
/// 2. Not found: create it with the IdP's role, else `users.role`, else `internal_user_viewer`,
///    and the budgets and models from `users`; the e-mail lower-cased, `metadata.auth_provider` set.
///    Found: the stored user id and models are kept; the e-mail is updated (lower-cased) and, when
///    the IdP grants a role, the role. Nothing is written when nothing changes.
/// 3. Add the user to every IdP team they are not yet in, creating missing teams from `teams`
///    (also for brand-new users; upstream bug #17051).
/// 4. If the user's (stored) id is `proxy_admin_id`, promote them to `proxy_admin`.
///
/// Returns the final record. Any store failure becomes a 503 with a short message.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) async fn upsert_sso_user(
    store: &UserStore,
    user: &SsoUser,
    user_id: &str,
    users: &NewUserDefaults,
    teams: &NewTeamDefaults,
    proxy_admin_id: Option<&str>,
) -> Result<UserRecord, SsoError> {
    let email = user.email.as_deref().map(str::to_lowercase);

    let mut found = super::find_user_by_id(store, user_id)
        .await
        .map_err(|e| store_unavailable("find user", e))?;
    if found.is_none()
        && let Some(email) = email.as_deref().filter(|e| !e.is_empty())
    {
        found = super::find_user_by_email(store, email)
            .await
            .map_err(|e| store_unavailable("find user", e))?;
    }

    let mut record = match found {
        Some(existing) => update_existing(store, existing, email, user.role).await?,
        None => {
            let new = new_user_record(user, user_id, email.clone(), users);
            match super::insert_user(store, new).await {
                Ok(record) => record,
                // Another login created the user meanwhile: update it instead.
                Err(StoreError::Conflict(_)) => {
                    let existing = super::find_user_by_id(store, user_id)
                        .await
                        .map_err(|e| store_unavailable("find user", e))?
                        .ok_or_else(|| {
                            store_unavailable(
                                "insert user",
                                StoreError::NotFound(user_id.to_owned()),
                            )
                        })?;
                    update_existing(store, existing, email, user.role).await?
                }
                Err(e) => return Err(store_unavailable("insert user", e)),
            }
        }
    };

    add_missing_teams(store, &mut record, &user.team_ids, teams).await?;

    if proxy_admin_id.is_some_and(|admin| admin == record.user_id)
        && record.role != UserRole::ProxyAdmin
    {
        super::update_user(
            store,
            record.user_id.clone(),
            None,
            Some(UserRole::ProxyAdmin),
        )
        .await
        .map_err(|e| store_unavailable("promote proxy admin", e))?;
        record.role = UserRole::ProxyAdmin;
    }

    Ok(record)
}

fn new_user_record(
    user: &SsoUser,
    user_id: &str,
    email: Option<String>,
    defaults: &NewUserDefaults,
) -> UserRecord {
    let mut metadata = serde_json::Map::new();
    if let Some(provider) = &user.provider {
        metadata.insert(
            "auth_provider".to_owned(),
            serde_json::Value::String(provider.clone()),
        );
    }
    UserRecord {
        user_id: user_id.to_owned(),
        email,
        // PR #21503: the IdP's role beats default_internal_user_params.
        role: user
            .role
            .or(defaults.role)
            .unwrap_or(UserRole::InternalUserViewer),
        teams: Vec::new(),
        models: defaults.models.clone(),
        max_budget: defaults.max_budget,
        budget_duration: defaults.budget_duration.clone(),
        metadata,
    }
}

async fn update_existing(
    store: &UserStore,
    existing: UserRecord,
    email: Option<String>,
    role: Option<UserRole>,
) -> Result<UserRecord, SsoError> {
    let email = email.filter(|e| existing.email.as_ref() != Some(e));
    let role = role.filter(|r| *r != existing.role);
    if email.is_none() && role.is_none() {
        return Ok(existing);
    }
    super::update_user(store, existing.user_id.clone(), email, role)
        .await
        .map_err(|e| store_unavailable("update user", e))
}

async fn add_missing_teams(
    store: &UserStore,
    record: &mut UserRecord,
    team_ids: &[String],
    defaults: &NewTeamDefaults,
) -> Result<(), SsoError> {
    for team_id in team_ids {
        if team_id.is_empty() || record.teams.contains(team_id) {
            continue;
        }
        let team = TeamRecord {
            team_id: team_id.clone(),
            alias: None,
            models: defaults.models.clone(),
            max_budget: defaults.max_budget,
            budget_duration: defaults.budget_duration.clone(),
        };
        super::find_or_create_team(store, team)
            .await
            .map_err(|e| store_unavailable("create team", e))?;
        super::add_member(store, team_id.clone(), record.user_id.clone())
            .await
            .map_err(|e| store_unavailable("add team member", e))?;
        record.teams.push(team_id.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::StatusCode;
    use tower::ServiceExt;
    use tower::util::BoxCloneSyncService;

    use super::*;
    use crate::store::{MemoryUserStore, StoreRequest, StoreResponse};

    /// A memory store that records every write.
    #[derive(Clone, Default)]
    struct Recorder {
        inner: MemoryUserStore,
        writes: Arc<Mutex<Vec<StoreRequest>>>,
    }

    impl Recorder {
        fn store(&self) -> UserStore {
            let this = self.clone();
            BoxCloneSyncService::new(tower::service_fn(move |req: StoreRequest| {
                let this = this.clone();
                async move {
                    if !matches!(
                        req,
                        StoreRequest::FindUserById(_)
                            | StoreRequest::FindUserByEmail(_)
                            | StoreRequest::ListTeams { .. }
                            | StoreRequest::Ping
                    ) {
                        this.writes.lock().unwrap().push(req.clone());
                    }
                    this.inner.oneshot(req).await
                }
            }))
        }

        fn take_writes(&self) -> Vec<StoreRequest> {
            std::mem::take(&mut *self.writes.lock().unwrap())
        }

        async fn seed(&self, user: UserRecord) {
            self.inner
                .clone()
                .oneshot(StoreRequest::InsertUser(user))
                .await
                .unwrap();
        }

        async fn get(&self, id: &str) -> UserRecord {
            match self
                .inner
                .clone()
                .oneshot(StoreRequest::FindUserById(id.into()))
                .await
                .unwrap()
            {
                StoreResponse::User(Some(u)) => u,
                other => panic!("{other:?}"),
            }
        }
    }

    fn stored(id: &str, email: &str, role: UserRole) -> UserRecord {
        UserRecord {
            user_id: id.into(),
            email: Some(email.into()),
            role,
            teams: vec![],
            models: vec![],
            max_budget: None,
            budget_duration: None,
            metadata: serde_json::Map::new(),
        }
    }

    fn sso(id: &str, email: &str, role: Option<UserRole>) -> SsoUser {
        SsoUser {
            id: Some(id.into()),
            email: Some(email.into()),
            provider: Some("generic".into()),
            role,
            ..SsoUser::default()
        }
    }

    async fn upsert(
        r: &Recorder,
        user: &SsoUser,
        users: &NewUserDefaults,
        admin: Option<&str>,
    ) -> UserRecord {
        let id = user.id.clone().unwrap();
        upsert_sso_user(
            &r.store(),
            user,
            &id,
            users,
            &NewTeamDefaults::default(),
            admin,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn new_user_gets_default_role_and_metadata() {
        let r = Recorder::default();
        let u = upsert(
            &r,
            &sso("new-user-123", "NewUser@Example.com", None),
            &NewUserDefaults::default(),
            None,
        )
        .await;
        assert_eq!(u.user_id, "new-user-123");
        assert_eq!(u.role, UserRole::InternalUserViewer);
        assert_eq!(u.email.as_deref(), Some("newuser@example.com"));
        assert_eq!(u.metadata["auth_provider"], "generic");
        assert_eq!(r.get("new-user-123").await, u);
        assert!(matches!(
            r.take_writes().as_slice(),
            [StoreRequest::InsertUser(_)]
        ));
    }

    #[tokio::test]
    async fn new_user_gets_default_params_role_when_idp_has_none() {
        let r = Recorder::default();
        let defaults = NewUserDefaults {
            role: Some(UserRole::InternalUser),
            ..NewUserDefaults::default()
        };
        let u = upsert(&r, &sso("u", "u@x.com", None), &defaults, None).await;
        assert_eq!(u.role, UserRole::InternalUser);
    }

    #[tokio::test]
    async fn sso_role_beats_default_params_but_budgets_are_kept() {
        // test_role_mappings_override_default_internal_user_params
        let r = Recorder::default();
        let defaults = NewUserDefaults {
            role: Some(UserRole::InternalUser),
            max_budget: Some(100.0),
            budget_duration: Some("30d".into()),
            models: vec!["gpt-3.5-turbo".into()],
        };
        let u = upsert(
            &r,
            &sso("u", "u@x.com", Some(UserRole::ProxyAdmin)),
            &defaults,
            None,
        )
        .await;
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(u.max_budget, Some(100.0));
        assert_eq!(u.budget_duration.as_deref(), Some("30d"));
        assert_eq!(u.models, vec!["gpt-3.5-turbo".to_owned()]);

        // test_sso_role_preserved_without_role_mappings
        let r = Recorder::default();
        let defaults = NewUserDefaults {
            role: Some(UserRole::InternalUser),
            max_budget: Some(50.0),
            ..NewUserDefaults::default()
        };
        let u = upsert(
            &r,
            &sso("u", "u@x.com", Some(UserRole::ProxyAdmin)),
            &defaults,
            None,
        )
        .await;
        assert_eq!((u.role, u.max_budget), (UserRole::ProxyAdmin, Some(50.0)));
    }

    #[tokio::test]
    async fn existing_user_role_updated_when_sso_carries_one() {
        let r = Recorder::default();
        r.seed(stored(
            "test-user-123",
            "old@example.com",
            UserRole::InternalUserViewer,
        ))
        .await;
        let u = upsert(
            &r,
            &sso(
                "test-user-123",
                "Test@Example.com",
                Some(UserRole::ProxyAdmin),
            ),
            &NewUserDefaults::default(),
            None,
        )
        .await;
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(u.email.as_deref(), Some("test@example.com"));
        assert_eq!(
            r.take_writes(),
            vec![StoreRequest::UpdateUser {
                user_id: "test-user-123".into(),
                email: Some("test@example.com".into()),
                role: Some(UserRole::ProxyAdmin),
            }]
        );
    }

    #[tokio::test]
    async fn existing_user_role_kept_without_valid_sso_role() {
        // An invalid IdP role ("invalid_role_not_in_enum") never makes it into SsoUser::role.
        let r = Recorder::default();
        r.seed(stored(
            "test-user-123",
            "old@example.com",
            UserRole::InternalUser,
        ))
        .await;
        let u = upsert(
            &r,
            &sso("test-user-123", "new@example.com", None),
            &NewUserDefaults::default(),
            None,
        )
        .await;
        assert_eq!(u.role, UserRole::InternalUser);
        assert_eq!(u.email.as_deref(), Some("new@example.com"));
        assert_eq!(
            r.take_writes(),
            vec![StoreRequest::UpdateUser {
                user_id: "test-user-123".into(),
                email: Some("new@example.com".into()),
                role: None
            }]
        );
    }

    #[tokio::test]
    async fn sso_role_beats_stored_role_and_models_are_kept() {
        // test_apply_user_info_values_sso_role_takes_precedence
        let r = Recorder::default();
        let mut existing = stored("u", "u@x.com", UserRole::InternalUserViewer);
        existing.models = vec!["model-1".into()];
        r.seed(existing).await;
        let defaults = NewUserDefaults {
            models: vec!["default-model".into()],
            ..NewUserDefaults::default()
        };
        let u = upsert(
            &r,
            &sso("u", "u@x.com", Some(UserRole::ProxyAdminViewer)),
            &defaults,
            None,
        )
        .await;
        assert_eq!(u.role, UserRole::ProxyAdminViewer);
        assert_eq!(u.models, vec!["model-1".to_owned()]);
    }

    #[tokio::test]
    async fn unchanged_user_is_not_written() {
        let r = Recorder::default();
        r.seed(stored("u", "u@x.com", UserRole::InternalUser)).await;
        upsert(
            &r,
            &sso("u", "U@X.com", Some(UserRole::InternalUser)),
            &NewUserDefaults::default(),
            None,
        )
        .await;
        assert_eq!(r.take_writes(), vec![]);
    }

    #[tokio::test]
    async fn found_by_email_keeps_stored_user_id() {
        // test_apply_user_info_values_to_sso_user_defined_values: DB "123", SSO "456" -> "123".
        let r = Recorder::default();
        let mut existing = stored("123", "a@x.com", UserRole::InternalUser);
        existing.models = vec!["no-default-models".into()];
        r.seed(existing).await;
        let u = upsert(
            &r,
            &sso("456", "A@x.com", None),
            &NewUserDefaults::default(),
            None,
        )
        .await;
        assert_eq!(u.user_id, "123");
        assert_eq!(u.models, vec!["no-default-models".to_owned()]);
        assert_eq!(r.inner.user_count(), 1);
    }

    #[tokio::test]
    async fn missing_teams_are_added() {
        // TestAddMissingTeamMember (parametrised): existing ["team-1"] + SSO ["team-1","team-2"].
        let r = Recorder::default();
        let s = r.store();
        let mut existing = stored("u", "u@x.com", UserRole::InternalUser);
        existing.teams = vec!["team-1".into()];
        r.seed(existing).await;
        crate::store::find_or_create_team(
            &s,
            TeamRecord {
                team_id: "team-1".into(),
                alias: None,
                models: vec![],
                max_budget: None,
                budget_duration: None,
            },
        )
        .await
        .unwrap();
        r.take_writes();

        let mut user = sso("u", "u@x.com", None);
        user.team_ids = vec!["team-1".into(), "team-2".into()];
        let team_defaults = NewTeamDefaults {
            max_budget: Some(10.0),
            budget_duration: Some("1d".into()),
            models: vec!["special-gpt-5".into()],
        };
        let u = upsert_sso_user(
            &s,
            &user,
            "u",
            &NewUserDefaults::default(),
            &team_defaults,
            None,
        )
        .await
        .unwrap();
        assert_eq!(u.teams, vec!["team-1".to_owned(), "team-2".to_owned()]);
        let team2 = TeamRecord {
            team_id: "team-2".into(),
            alias: None,
            models: vec!["special-gpt-5".into()],
            max_budget: Some(10.0),
            budget_duration: Some("1d".into()),
        };
        assert_eq!(
            r.take_writes(),
            vec![
                StoreRequest::FindOrCreateTeam(team2.clone()),
                StoreRequest::AddMember {
                    team_id: "team-2".into(),
                    user_id: "u".into()
                },
            ]
        );
        assert_eq!(r.get("u").await.teams, u.teams);
        assert_eq!(
            crate::store::list_teams(&s, "u").await.unwrap().last(),
            Some(&team2)
        );
    }

    #[tokio::test]
    async fn new_user_is_added_to_sso_teams() {
        // Upstream #17051: teams=None on a new user -> 2 adds.
        let r = Recorder::default();
        let mut user = sso("u", "u@x.com", None);
        user.team_ids = vec!["team-from-entra-1".into(), "team-from-entra-2".into()];
        let u = upsert(&r, &user, &NewUserDefaults::default(), None).await;
        assert_eq!(u.teams, user.team_ids);
        assert_eq!(r.get("u").await.teams, user.team_ids);
        let adds = r
            .take_writes()
            .into_iter()
            .filter(|w| matches!(w, StoreRequest::AddMember { .. }))
            .count();
        assert_eq!(adds, 2);
    }

    #[tokio::test]
    async fn proxy_admin_id_is_promoted() {
        // test_check_and_update_if_proxy_admin_id
        let r = Recorder::default();
        r.seed(stored(
            "test_admin_123",
            "admin@x.com",
            UserRole::InternalUser,
        ))
        .await;
        let mut user = sso("test_admin_123", "admin@x.com", None);
        user.team_ids = vec!["t".into()];
        let u = upsert(
            &r,
            &user,
            &NewUserDefaults::default(),
            Some("test_admin_123"),
        )
        .await;
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(u.teams, vec!["t".to_owned()]);
        assert_eq!(r.get("test_admin_123").await.role, UserRole::ProxyAdmin);
        let writes = r.take_writes();
        assert_eq!(
            writes.last(),
            Some(&StoreRequest::UpdateUser {
                user_id: "test_admin_123".into(),
                email: None,
                role: Some(UserRole::ProxyAdmin)
            })
        );
        assert_eq!(
            writes
                .iter()
                .filter(|w| matches!(w, StoreRequest::UpdateUser { .. }))
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn new_proxy_admin_id_user_is_promoted() {
        let r = Recorder::default();
        let u = upsert(
            &r,
            &sso("boss", "boss@x.com", None),
            &NewUserDefaults::default(),
            Some("boss"),
        )
        .await;
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(r.get("boss").await.role, UserRole::ProxyAdmin);
    }

    #[tokio::test]
    async fn proxy_admin_already_admin_is_not_written() {
        let r = Recorder::default();
        r.seed(stored(
            "test_admin_123",
            "admin@x.com",
            UserRole::ProxyAdmin,
        ))
        .await;
        let u = upsert(
            &r,
            &sso("test_admin_123", "admin@x.com", None),
            &NewUserDefaults::default(),
            Some("test_admin_123"),
        )
        .await;
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(r.take_writes(), vec![]);
    }

    #[tokio::test]
    async fn other_users_are_not_promoted() {
        let r = Recorder::default();
        let u = upsert(
            &r,
            &sso("someone", "s@x.com", None),
            &NewUserDefaults::default(),
            Some("test_admin_123"),
        )
        .await;
        assert_eq!(u.role, UserRole::InternalUserViewer);
    }

    #[tokio::test]
    async fn store_failure_is_a_short_503() {
        let failing: UserStore =
            BoxCloneSyncService::new(tower::service_fn(|_req: StoreRequest| async {
                Err::<StoreResponse, _>(StoreError::Backend(
                    "connection to 10.0.0.5:5432 refused (password=hunter2)".into(),
                ))
            }));
        let err = upsert_sso_user(
            &failing,
            &sso("u", "u@x.com", None),
            "u",
            &NewUserDefaults::default(),
            &NewTeamDefaults::default(),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.message(), "user store unavailable");
    }
}

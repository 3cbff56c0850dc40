//! What a login does to the user store: find or create the user (bound to its IdP subject), sync
//! the role and e-mail, add the user to the IdP's teams, and promote `PROXY_ADMIN_ID`. Ported
//! from LiteLLM's `ui_sso.py` (`get_user_info_from_db`, `upsert_sso_user`,
//! `add_missing_team_member`, `check_and_update_if_proxy_admin_id`).
//!
//! Unlike upstream, a login finds a stored user by e-mail only when
//! [`link_accounts_by_email`](crate::SsoLayerBuilder::link_accounts_by_email) is on (and then only
//! with a verified ASCII address), and every user is bound to the IdP subject that created or
//! first logged it in (`metadata.sso_subject`): another subject gets 403 (LiteLLM #36942).
//!
//! A stored user that is not bound yet (created by an administrator or imported) is not simply
//! handed to whichever login first presents its id: the login must present the e-mail stored for
//! that user, marked verified by the IdP; otherwise it is refused with 403 and nothing is
//! written. An administrator can instead pre-bind the user by setting its
//! `metadata.sso_subject` to `"<provider name>|<sub>"`. `PROXY_ADMIN_ID` is promoted only once
//! bound to the login's subject.

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
    /// The new team's tokens-per-minute limit (`tpm_limit`).
    pub tpm_limit: Option<u64>,
    /// The new team's requests-per-minute limit (`rpm_limit`).
    pub rpm_limit: Option<u64>,
}

fn store_unavailable(step: &'static str, err: StoreError) -> SsoError {
    if err == StoreError::EmailTaken {
        return email_taken();
    }
    tracing::warn!(step, error = %err, "user store failed during SSO login");
    SsoError::unavailable("user store unavailable").with_refusal(crate::metrics::Refusal::Store)
}

/// 409: the login's e-mail belongs to another stored user (e-mails are unique). Never resolved by
/// taking that user over; an administrator links the accounts, or, with
/// [`link_accounts_by_email`](crate::SsoLayerBuilder::link_accounts_by_email), a verified
/// address finds the stored user in the first place.
fn email_taken() -> SsoError {
    tracing::warn!("SSO login refused: its e-mail belongs to another stored user");
    SsoError::new(
        http::StatusCode::CONFLICT,
        "conflict",
        "another account already uses this e-mail address: ask an administrator to link the accounts",
    )
}

/// The metadata key holding the IdP subject a user is bound to: `"<provider name>|<sub>"`.
pub(crate) const SUBJECT_KEY: &str = "sso_subject";

/// How a login is matched to a stored user.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoginLookup<'a> {
    /// The login's user id ([`crate::claims::fallback_user_id`]).
    pub(crate) user_id: &'a str,
    /// The configured name of the provider the login came through (not the IdP's `provider`
    /// claim, which the IdP controls).
    pub(crate) provider: &'a str,
    /// Whether a login whose user id is not stored may be linked to a user by e-mail.
    pub(crate) link_by_email: bool,
}

impl LoginLookup<'_> {
    /// The subject binding this login carries (`"<provider>|<sub>"`), if the IdP sent a `sub`.
    pub(crate) fn binding(&self, user: &SsoUser) -> Option<String> {
        user.subject
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|sub| format!("{}|{sub}", self.provider))
    }
}

fn bound_elsewhere(user_id: &str) -> SsoError {
    tracing::warn!(
        user_id,
        "SSO login refused: the stored user is bound to another IdP subject"
    );
    SsoError::forbidden("this account is bound to another identity at the identity provider")
}

/// 403: the stored user is not bound to an IdP subject, and this login cannot prove it is that
/// user (by the stored e-mail, verified by the IdP).
fn not_linked(user_id: &str) -> SsoError {
    tracing::warn!(
        user_id,
        "SSO login refused: the stored user is not bound to an IdP subject and the login does not present its verified e-mail"
    );
    SsoError::forbidden(
        "this account is not linked to a single sign-on identity yet: ask an administrator",
    )
}

/// Whether a login may take an unbound stored user: the record has an e-mail, and the login
/// presents the same address (ASCII case-insensitive) marked verified by the IdP. 403 otherwise.
/// A bound record is left to [`check_binding`].
fn check_may_claim(record: &UserRecord, user: &SsoUser) -> Result<(), SsoError> {
    if is_bound(record) {
        return Ok(());
    }
    let stored = record.email.as_deref().filter(|e| !e.is_empty());
    let presented = user.email.as_deref().filter(|e| !e.is_empty());
    match (stored, presented) {
        (Some(stored), Some(presented))
            if user.email_verified == Some(true) && stored.eq_ignore_ascii_case(presented) =>
        {
            Ok(())
        }
        _ => Err(not_linked(&record.user_id)),
    }
}

/// Whether `record` is bound to exactly `binding` (never when `binding` is `None`).
pub(crate) fn is_bound_to(record: &UserRecord, binding: Option<&str>) -> bool {
    matches!(
        (record.metadata.get(SUBJECT_KEY), binding),
        (Some(serde_json::Value::String(stored)), Some(b)) if stored == b
    )
}

/// Whether `record` is bound to an IdP subject (`null` counts as not bound).
fn is_bound(record: &UserRecord) -> bool {
    record
        .metadata
        .get(SUBJECT_KEY)
        .is_some_and(|v| !v.is_null())
}

/// 403 when `record` is bound to a subject other than `binding` (also when the login has no
/// subject at all); an unbound record passes.
fn check_binding(record: &UserRecord, binding: Option<&str>) -> Result<(), SsoError> {
    if !is_bound(record) {
        return Ok(());
    }
    match (record.metadata.get(SUBJECT_KEY), binding) {
        (Some(serde_json::Value::String(stored)), Some(b)) if stored == b => Ok(()),
        _ => Err(bound_elsewhere(&record.user_id)),
    }
}

/// An e-mail that may link a login to a stored user: non-empty, ASCII, with an `@`; lower-cased.
fn linkable_email(email: Option<&str>) -> Option<String> {
    email
        .filter(|e| !e.is_empty() && e.is_ascii() && e.contains('@'))
        .map(str::to_ascii_lowercase)
}

/// Finds the stored user a login belongs to, without writing anything. Used both before the
/// store is written (the `admin_only` check) and by [`upsert_sso_user`].
///
/// 1. By `lookup.user_id`. If that user is bound to an IdP subject (`metadata.sso_subject`) other
///    than this login's `"<provider>|<sub>"` (or the login has no `sub`), the login is refused
///    with 403. An unbound user is returned (and [`upsert_sso_user`] binds it) only when it has
///    an e-mail and the login presents the same one (ASCII case-insensitive) marked verified
///    (`email_verified == Some(true)`); otherwise 403 ("not linked yet"). This applies to a
///    login without a `sub` too, which then reaches the user without binding it.
/// 2. Not found, and only when `lookup.link_by_email` is on (upstream always does this): by
///    e-mail, when the IdP marks it verified (`email_verified == Some(true)`), the address is
///    ASCII, and the IdP sent a `sub`. A user found so must have that same address (compared
///    ASCII case-insensitively, whatever the store does) and pass the rules of step 1
///    (403 otherwise).
///
/// `Ok(None)`: the login creates a new user. Store failures become a short 503.
pub(crate) async fn find_login_user(
    store: &UserStore,
    user: &SsoUser,
    lookup: &LoginLookup<'_>,
) -> Result<Option<UserRecord>, SsoError> {
    let binding = lookup.binding(user);
    if let Some(found) = super::find_user_by_id(store, lookup.user_id)
        .await
        .map_err(|e| store_unavailable("find user", e))?
    {
        check_binding(&found, binding.as_deref())?;
        check_may_claim(&found, user)?;
        return Ok(Some(found));
    }
    if !lookup.link_by_email || binding.is_none() || user.email_verified != Some(true) {
        return Ok(None);
    }
    let Some(email) = linkable_email(user.email.as_deref()) else {
        return Ok(None);
    };
    let found = super::find_user_by_email(store, email.clone())
        .await
        .map_err(|e| store_unavailable("find user", e))?
        .filter(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&email))
        });
    if let Some(found) = &found {
        check_binding(found, binding.as_deref())?;
        check_may_claim(found, user)?;
    }
    Ok(found)
}

/// Binds `record` to `binding` if it is not bound yet (an atomic set-if-absent in the store);
/// 403 if another login bound it to another subject meanwhile. No binding: nothing happens.
/// Callers have checked [`check_may_claim`] first.
async fn bind_subject(
    store: &UserStore,
    record: UserRecord,
    binding: Option<&str>,
) -> Result<UserRecord, SsoError> {
    let Some(binding) = binding else {
        return Ok(record);
    };
    if is_bound(&record) {
        check_binding(&record, Some(binding))?;
        return Ok(record);
    }
    let stored = super::set_metadata_if_absent(
        store,
        record.user_id.clone(),
        SUBJECT_KEY,
        serde_json::Value::String(binding.to_owned()),
    )
    .await
    .map_err(|e| store_unavailable("bind user", e))?;
    check_binding(&stored, Some(binding))?;
    Ok(stored)
}

/// Finds or creates the user who just logged in, and brings the stored record up to date.
///
/// 1. Find the user with [`find_login_user`] (by id, then, only if enabled, by verified e-mail;
///    403 if the user is bound to another IdP subject, or unbound and the login does not present
///    its e-mail verified). Nothing has been written at that point.
/// 2. Not found: create it with the IdP's role, else `users.role`, else `internal_user_viewer`,
///    and the budgets and models from `users`; the e-mail lower-cased (ASCII),
///    `metadata.auth_provider` set, and `metadata.sso_subject` set to `"<provider>|<sub>"` when
///    the IdP sent a `sub`. Found: first bind an unbound user to this login's subject (a
///    set-if-absent in the store: 403 if another subject won), then keep the stored user id and
///    models, update the e-mail (lower-cased) and, when the IdP grants a role, the role. Nothing
///    is written when nothing changes.
/// 3. Add the user to every IdP team they are not yet in, creating missing teams from `teams`
///    (also for brand-new users; upstream bug #17051).
/// 4. If the user's (stored) id is `proxy_admin_id` and the user is bound to this login's subject
///    (after steps 1-2: a new user created by a login with a `sub` is), promote them to
///    `proxy_admin`. A login without a `sub` never promotes.
///
/// Returns the final record. Any store failure becomes a 503 with a short message.
pub(crate) async fn upsert_sso_user(
    store: &UserStore,
    user: &SsoUser,
    lookup: &LoginLookup<'_>,
    users: &NewUserDefaults,
    teams: &NewTeamDefaults,
    proxy_admin_id: Option<&str>,
) -> Result<UserRecord, SsoError> {
    let user_id = lookup.user_id;
    let binding = lookup.binding(user);
    let email = user.email.as_deref().map(str::to_ascii_lowercase);

    let found = find_login_user(store, user, lookup).await?;
    let mut record = match found {
        Some(existing) => {
            let existing = bind_subject(store, existing, binding.as_deref()).await?;
            update_existing(store, existing, email, user.role).await?
        }
        None => {
            // The user's teams first, so that the user and its memberships are written in one
            // request (one transaction in a database): a failure leaves no member-less user.
            let team_ids = create_teams(store, &user.team_ids, teams).await?;
            let mut new = new_user_record(user, user_id, email.clone(), binding.as_deref(), users);
            new.teams = team_ids;
            match super::insert_user(store, new).await {
                Ok(record) => record,
                // Another login created the user meanwhile: update it instead, if it is ours.
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
                    check_binding(&existing, binding.as_deref())?;
                    check_may_claim(&existing, user)?;
                    let existing = bind_subject(store, existing, binding.as_deref()).await?;
                    update_existing(store, existing, email, user.role).await?
                }
                Err(e) => return Err(store_unavailable("insert user", e)),
            }
        }
    };

    add_missing_teams(store, &mut record, &user.team_ids, teams).await?;

    if proxy_admin_id.is_some_and(|admin| !admin.is_empty() && admin == record.user_id)
        && is_bound_to(&record, binding.as_deref())
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
    binding: Option<&str>,
    defaults: &NewUserDefaults,
) -> UserRecord {
    let mut metadata = serde_json::Map::new();
    if let Some(provider) = &user.provider {
        metadata.insert(
            "auth_provider".to_owned(),
            serde_json::Value::String(provider.clone()),
        );
    }
    if let Some(binding) = binding {
        metadata.insert(
            SUBJECT_KEY.to_owned(),
            serde_json::Value::String(binding.to_owned()),
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

/// Finds or creates the team `team_id` (named `alias`) with the configured defaults.
async fn ensure_team(
    store: &UserStore,
    team_id: &str,
    alias: Option<&str>,
    defaults: &NewTeamDefaults,
) -> Result<(), SsoError> {
    let team = TeamRecord {
        team_id: team_id.to_owned(),
        alias: alias.map(str::to_owned),
        models: defaults.models.clone(),
        max_budget: defaults.max_budget,
        budget_duration: defaults.budget_duration.clone(),
        tpm_limit: defaults.tpm_limit,
        rpm_limit: defaults.rpm_limit,
    };
    super::find_or_create_team(store, team)
        .await
        .map(|_| ())
        .map_err(|e| store_unavailable("create team", e))
}

/// Finds or creates each named team the provider announced (Microsoft: the groups assigned to
/// the service principal), with its display name as alias and the configured defaults; a team
/// that exists is left as it is.
pub(crate) async fn ensure_named_teams(
    store: &UserStore,
    teams: &[crate::providers::NamedTeam],
    defaults: &NewTeamDefaults,
) -> Result<(), SsoError> {
    for team in teams.iter().filter(|t| !t.id.is_empty()) {
        ensure_team(store, &team.id, team.alias.as_deref(), defaults).await?;
    }
    Ok(())
}

/// Finds or creates each of the IdP's teams (empty ids skipped); their ids, once each, in order.
async fn create_teams(
    store: &UserStore,
    team_ids: &[String],
    defaults: &NewTeamDefaults,
) -> Result<Vec<String>, SsoError> {
    let mut created: Vec<String> = Vec::new();
    for team_id in team_ids {
        if team_id.is_empty() || created.contains(team_id) {
            continue;
        }
        ensure_team(store, team_id, None, defaults).await?;
        created.push(team_id.clone());
    }
    Ok(created)
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
        ensure_team(store, team_id, None, defaults).await?;
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

    /// A stored user that is not bound to any IdP subject (created by an admin, imported).
    fn unbound(id: &str, email: &str, role: UserRole) -> UserRecord {
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

    /// A stored user bound to the subject `sub-<id>` at `generic` (the one [`sso`] logs in as).
    fn stored(id: &str, email: &str, role: UserRole) -> UserRecord {
        bound_to(unbound(id, email, role), &format!("generic|sub-{id}"))
    }

    /// A login as subject `sub-<id>` at `generic`, with an e-mail the IdP does not vouch for.
    fn sso(id: &str, email: &str, role: Option<UserRole>) -> SsoUser {
        SsoUser {
            id: Some(id.into()),
            email: Some(email.into()),
            provider: Some("generic".into()),
            role,
            subject: Some(format!("sub-{id}")),
            ..SsoUser::default()
        }
    }

    fn lookup(user_id: &str, link_by_email: bool) -> LoginLookup<'_> {
        LoginLookup {
            user_id,
            provider: "generic",
            link_by_email,
        }
    }

    async fn try_upsert(r: &Recorder, user: &SsoUser, link: bool) -> Result<UserRecord, SsoError> {
        let id = user.id.clone().unwrap();
        upsert_sso_user(
            &r.store(),
            user,
            &lookup(&id, link),
            &NewUserDefaults::default(),
            &NewTeamDefaults::default(),
            None,
        )
        .await
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
            &lookup(&id, false),
            users,
            &NewTeamDefaults::default(),
            admin,
        )
        .await
        .unwrap()
    }

    /// `sso(..)` with the IdP subject `sub` and the e-mail marked verified.
    fn verified(id: &str, email: &str, sub: &str) -> SsoUser {
        SsoUser {
            email_verified: Some(true),
            subject: Some(sub.into()),
            ..sso(id, email, None)
        }
    }

    fn bound_to(mut record: UserRecord, binding: &str) -> UserRecord {
        record.metadata.insert(
            SUBJECT_KEY.into(),
            serde_json::Value::String(binding.into()),
        );
        record
    }

    fn assert_bound_elsewhere(err: SsoError) {
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            err.message(),
            "this account is bound to another identity at the identity provider"
        );
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
        // Here only with link_by_email on and a verified e-mail.
        let r = Recorder::default();
        let mut existing = unbound("123", "a@x.com", UserRole::InternalUser);
        existing.models = vec!["no-default-models".into()];
        r.seed(existing).await;
        let u = try_upsert(&r, &verified("456", "A@x.com", "s-456"), true)
            .await
            .unwrap();
        assert_eq!(u.user_id, "123");
        assert_eq!(u.models, vec!["no-default-models".to_owned()]);
        assert_eq!(u.metadata[SUBJECT_KEY], "generic|s-456");
        assert_eq!(r.inner.user_count(), 1);
    }

    #[tokio::test]
    async fn email_is_not_a_key_by_default() {
        // LiteLLM #36942: same e-mail, another IdP user id -> never the stored user. E-mails are
        // unique, so the login is refused (409) and nothing is written.
        let r = Recorder::default();
        let root = stored("root-admin", "boss@corp.example", UserRole::ProxyAdmin);
        r.seed(root.clone()).await;
        r.take_writes();
        for (flag, id) in [(Some(true), "m1"), (Some(false), "m2"), (None, "m3")] {
            let user = SsoUser {
                email_verified: flag,
                ..verified(id, "BOSS@corp.example", id)
            };
            let err = try_upsert(&r, &user, false).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::CONFLICT, "{err:?}");
            assert!(!err.message().contains("boss"), "{}", err.message());
        }
        assert_eq!(r.get("root-admin").await, root);
        assert_eq!(r.inner.user_count(), 1);
        // Only the refused inserts reached the store.
        assert!(
            r.take_writes()
                .iter()
                .all(|w| matches!(w, StoreRequest::InsertUser(_))),
        );
    }

    #[tokio::test]
    async fn changing_to_a_taken_email_is_refused() {
        let r = Recorder::default();
        r.seed(stored("a", "a@x.com", UserRole::InternalUser)).await;
        let b = bound_to(
            stored("b", "b@x.com", UserRole::InternalUser),
            "generic|sub-b",
        );
        r.seed(b.clone()).await;
        let err = try_upsert(&r, &verified("b", "A@x.com", "sub-b"), false)
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::CONFLICT);
        assert_eq!(r.get("b").await, b);
    }

    #[tokio::test]
    async fn email_link_needs_verified_ascii_and_a_subject() {
        let r = Recorder::default();
        let root = unbound("root-admin", "admin@korp.example", UserRole::ProxyAdmin);
        r.seed(root.clone()).await;
        let cases = [
            (
                "unverified",
                SsoUser {
                    email_verified: Some(false),
                    ..verified("a", "admin@korp.example", "s")
                },
            ),
            (
                "unknown",
                SsoUser {
                    email_verified: None,
                    ..verified("b", "admin@korp.example", "s")
                },
            ),
            (
                "no sub",
                SsoUser {
                    subject: None,
                    ..verified("c", "admin@korp.example", "s")
                },
            ),
            ("kelvin", verified("d", "admin@\u{212A}orp.example", "s")),
        ];
        for (what, user) in cases {
            let found = find_login_user(
                &r.store(),
                &user,
                &lookup(user.id.as_deref().unwrap(), true),
            )
            .await
            .unwrap();
            assert_eq!(found, None, "{what}");
        }
        let user = verified("e", "Admin@Korp.Example", "s");
        let found = find_login_user(&r.store(), &user, &lookup("e", true))
            .await
            .unwrap();
        assert_eq!(found, Some(root));
        assert_eq!(r.take_writes(), vec![]);
    }

    #[tokio::test]
    async fn a_unicode_folding_store_does_not_widen_the_email_link() {
        // A store that answers FindUserByEmail with Unicode case folding.
        let root = stored(
            "root-admin",
            "admin@\u{212A}orp.example",
            UserRole::ProxyAdmin,
        );
        let folding: UserStore =
            BoxCloneSyncService::new(tower::service_fn(move |req: StoreRequest| {
                let root = root.clone();
                async move {
                    Ok::<_, StoreError>(match req {
                        StoreRequest::FindUserByEmail(e)
                            if e.to_lowercase()
                                == root.email.as_deref().unwrap().to_lowercase() =>
                        {
                            StoreResponse::User(Some(root))
                        }
                        _ => StoreResponse::User(None),
                    })
                }
            }));
        let user = verified("k", "admin@korp.example", "s");
        let found = find_login_user(&folding, &user, &lookup("k", true))
            .await
            .unwrap();
        assert_eq!(found, None);
    }

    #[tokio::test]
    async fn new_and_unbound_users_are_bound_to_the_subject() {
        let r = Recorder::default();
        let u = try_upsert(&r, &verified("n", "n@x.com", "sub-n"), false)
            .await
            .unwrap();
        assert_eq!(u.metadata[SUBJECT_KEY], "generic|sub-n");
        assert_eq!(r.get("n").await.metadata[SUBJECT_KEY], "generic|sub-n");

        // Created by an admin: bound at the first SSO login that presents its e-mail, verified,
        // before anything else is written.
        r.seed(unbound("adm", "adm@x.com", UserRole::InternalUser))
            .await;
        r.take_writes();
        let user = SsoUser {
            role: Some(UserRole::ProxyAdminViewer),
            ..verified("adm", "adm@x.com", "sub-adm")
        };
        let u = try_upsert(&r, &user, false).await.unwrap();
        assert_eq!(u.metadata[SUBJECT_KEY], "generic|sub-adm");
        assert_eq!(u.role, UserRole::ProxyAdminViewer);
        let writes = r.take_writes();
        assert_eq!(
            writes.first(),
            Some(&StoreRequest::SetMetadataIfAbsent {
                user_id: "adm".into(),
                key: SUBJECT_KEY.into(),
                value: "generic|sub-adm".into(),
            })
        );
        assert_eq!(writes.len(), 2, "{writes:?}");

        // The same subject again: nothing to bind.
        try_upsert(&r, &user, false).await.unwrap();
        assert_eq!(r.take_writes(), vec![]);

        // No `sub`: nothing is bound.
        let user = SsoUser {
            subject: None,
            ..verified("anon", "anon@x.com", "x")
        };
        let u = try_upsert(&r, &user, false).await.unwrap();
        assert!(!u.metadata.contains_key(SUBJECT_KEY));
    }

    #[tokio::test]
    async fn another_subject_is_refused_before_any_write() {
        let r = Recorder::default();
        let alice = bound_to(
            stored("alice", "alice@x.com", UserRole::InternalUser),
            "generic|sub-a",
        );
        r.seed(alice.clone()).await;
        let mut intruder = verified("alice", "evil@x.com", "sub-b");
        intruder.role = Some(UserRole::ProxyAdmin);
        intruder.team_ids = vec!["t".into()];
        for link in [false, true] {
            assert_bound_elsewhere(try_upsert(&r, &intruder, link).await.unwrap_err());
        }
        // The same sub at another provider is another identity.
        let lookup_other = LoginLookup {
            provider: "okta",
            ..lookup("alice", false)
        };
        let user = verified("alice", "alice@x.com", "sub-a");
        let err = find_login_user(&r.store(), &user, &lookup_other)
            .await
            .unwrap_err();
        assert_bound_elsewhere(err);
        // A bound user and a login without any `sub`.
        let user = SsoUser {
            subject: None,
            ..user
        };
        assert_bound_elsewhere(try_upsert(&r, &user, false).await.unwrap_err());
        // By e-mail, too.
        let by_email = verified("alice2", "ALICE@x.com", "sub-c");
        assert_bound_elsewhere(try_upsert(&r, &by_email, true).await.unwrap_err());

        assert_eq!(r.take_writes(), vec![]);
        assert_eq!(r.get("alice").await, alice);
        assert_eq!(r.inner.user_count(), 1);
        assert_eq!(r.inner.team_count(), 0);

        // The owner still gets in.
        let u = try_upsert(&r, &verified("alice", "alice@x.com", "sub-a"), true)
            .await
            .unwrap();
        assert_eq!(u.user_id, "alice");
    }

    #[tokio::test]
    async fn a_lost_binding_race_is_refused() {
        // The store says the user is unbound, but by the time we bind, another subject has won.
        let inner = MemoryUserStore::new();
        inner
            .clone()
            .oneshot(StoreRequest::InsertUser(unbound(
                "u",
                "u@x.com",
                UserRole::InternalUser,
            )))
            .await
            .unwrap();
        let racy = inner.clone();
        let store: UserStore =
            BoxCloneSyncService::new(tower::service_fn(move |req: StoreRequest| {
                let racy = racy.clone();
                async move {
                    if let StoreRequest::SetMetadataIfAbsent { user_id, key, .. } = &req {
                        racy.clone()
                            .oneshot(StoreRequest::SetMetadataIfAbsent {
                                user_id: user_id.clone(),
                                key: key.clone(),
                                value: "generic|winner".into(),
                            })
                            .await?;
                    }
                    racy.oneshot(req).await
                }
            }));
        let err = upsert_sso_user(
            &store,
            &verified("u", "u@x.com", "loser"),
            &lookup("u", false),
            &NewUserDefaults::default(),
            &NewTeamDefaults::default(),
            None,
        )
        .await
        .unwrap_err();
        assert_bound_elsewhere(err);
    }

    #[tokio::test]
    async fn missing_teams_are_added() {
        // TestAddMissingTeamMember (parametrised): existing ["team-1"] + SSO ["team-1","team-2"].
        let r = Recorder::default();
        let s = r.store();
        crate::store::find_or_create_team(
            &s,
            TeamRecord {
                team_id: "team-1".into(),
                alias: None,
                models: vec![],
                max_budget: None,
                budget_duration: None,
                tpm_limit: None,
                rpm_limit: None,
            },
        )
        .await
        .unwrap();
        let mut existing = stored("u", "u@x.com", UserRole::InternalUser);
        existing.teams = vec!["team-1".into()];
        r.seed(existing).await;
        r.take_writes();

        let mut user = sso("u", "u@x.com", None);
        user.team_ids = vec!["team-1".into(), "team-2".into()];
        let team_defaults = NewTeamDefaults {
            max_budget: Some(10.0),
            budget_duration: Some("1d".into()),
            models: vec!["special-gpt-5".into()],
            tpm_limit: Some(1000),
            rpm_limit: Some(10),
        };
        let u = upsert_sso_user(
            &s,
            &user,
            &lookup("u", false),
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
            tpm_limit: Some(1000),
            rpm_limit: Some(10),
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
        // The teams first, then the user with its memberships in one write: a store failure in
        // between leaves no user without its memberships.
        let writes = r.take_writes();
        let kinds: Vec<_> = writes
            .iter()
            .map(|w| match w {
                StoreRequest::FindOrCreateTeam(t) => format!("team {}", t.team_id),
                StoreRequest::InsertUser(u) => format!("user {} {:?}", u.user_id, u.teams),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "team team-from-entra-1",
                "team team-from-entra-2",
                "user u [\"team-from-entra-1\", \"team-from-entra-2\"]",
            ]
        );
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

    const NOT_LINKED: &str =
        "this account is not linked to a single sign-on identity yet: ask an administrator";

    fn assert_not_linked(err: SsoError) {
        assert_eq!(err.status(), StatusCode::FORBIDDEN, "{err:?}");
        assert_eq!(err.message(), NOT_LINKED);
    }

    #[tokio::test]
    async fn an_unbound_user_is_claimed_only_with_its_verified_email() {
        let r = Recorder::default();
        let boss = unbound("boss", "boss@corp.example", UserRole::ProxyAdmin);
        r.seed(boss.clone()).await;
        let mut no_email = unbound("imported", "", UserRole::InternalUser);
        no_email.email = None;
        r.seed(no_email.clone()).await;
        let attacker = |email: Option<&str>, flag: Option<bool>| SsoUser {
            email: email.map(str::to_owned),
            email_verified: flag,
            role: Some(UserRole::InternalUser),
            team_ids: vec!["t".into()],
            ..verified("boss", "x", "sub-evil")
        };
        let cases = [
            (
                "another e-mail",
                attacker(Some("evil@corp.example"), Some(true)),
            ),
            (
                "unknown verification",
                attacker(Some("boss@corp.example"), None),
            ),
            (
                "unverified",
                attacker(Some("boss@corp.example"), Some(false)),
            ),
            ("no e-mail", attacker(None, None)),
            ("no e-mail, verified", attacker(None, Some(true))),
            (
                "no sub",
                SsoUser {
                    subject: None,
                    ..attacker(Some("evil@corp.example"), Some(true))
                },
            ),
        ];
        for (what, user) in cases {
            for link in [false, true] {
                let err = try_upsert(&r, &user, link).await.unwrap_err();
                assert_not_linked(err);
                let err = find_login_user(&r.store(), &user, &lookup("boss", link))
                    .await
                    .unwrap_err();
                assert_eq!(err.message(), NOT_LINKED, "{what}");
            }
        }
        // A stored user without an e-mail cannot be claimed at all.
        let user = verified("imported", "i@x.com", "sub-i");
        assert_not_linked(try_upsert(&r, &user, false).await.unwrap_err());

        assert_eq!(r.take_writes(), vec![]);
        assert_eq!(r.get("boss").await, boss);
        assert_eq!(r.get("imported").await, no_email);
        assert_eq!(r.inner.team_count(), 0);

        // The same address (ASCII case-insensitively), verified: bound to this subject.
        let owner = verified("boss", "BOSS@corp.EXAMPLE", "sub-boss");
        let u = try_upsert(&r, &owner, false).await.unwrap();
        assert_eq!(u.metadata[SUBJECT_KEY], "generic|sub-boss");
        assert_eq!(u.role, UserRole::ProxyAdmin);
        // Now bound: the owner gets in without the e-mail rule; anyone else is "bound elsewhere".
        let later = SsoUser {
            email: None,
            email_verified: None,
            ..owner.clone()
        };
        try_upsert(&r, &later, false).await.unwrap();
        let evil = verified("boss", "boss@corp.example", "sub-evil");
        assert_bound_elsewhere(try_upsert(&r, &evil, false).await.unwrap_err());
    }

    #[tokio::test]
    async fn an_admin_pre_bound_user_needs_no_email() {
        let r = Recorder::default();
        let mut pre = unbound("ops", "", UserRole::ProxyAdminViewer);
        pre.email = None;
        r.seed(bound_to(pre, "generic|sub-ops")).await;
        let user = SsoUser {
            email: None,
            ..verified("ops", "x", "sub-ops")
        };
        let u = try_upsert(&r, &user, false).await.unwrap();
        assert_eq!(u.role, UserRole::ProxyAdminViewer);
    }

    #[tokio::test]
    async fn a_login_without_sub_reaches_an_unbound_user_only_by_email_and_binds_nothing() {
        let r = Recorder::default();
        r.seed(unbound("u", "u@x.com", UserRole::InternalUser))
            .await;
        let no_sub = SsoUser {
            subject: None,
            ..verified("u", "u@x.com", "x")
        };
        let u = upsert(&r, &no_sub, &NewUserDefaults::default(), Some("u")).await;
        assert!(!u.metadata.contains_key(SUBJECT_KEY));
        // Not bound to this login, so PROXY_ADMIN_ID is not promoted.
        assert_eq!(u.role, UserRole::InternalUser);
        assert_eq!(r.get("u").await.role, UserRole::InternalUser);
    }

    #[tokio::test]
    async fn unbound_proxy_admin_id_is_not_handed_to_the_first_login() {
        let r = Recorder::default();
        let admin = unbound("admin", "admin@corp.example", UserRole::InternalUser);
        r.seed(admin.clone()).await;
        let users = NewUserDefaults::default();
        let err = upsert_sso_user(
            &r.store(),
            &sso("admin", "mallory@corp.example", None),
            &lookup("admin", false),
            &users,
            &NewTeamDefaults::default(),
            Some("admin"),
        )
        .await
        .unwrap_err();
        assert_not_linked(err);
        assert_eq!(r.get("admin").await, admin);
        assert_eq!(r.take_writes(), vec![]);
        // Its owner (verified e-mail) is bound, then promoted.
        let u = upsert(
            &r,
            &verified("admin", "admin@corp.example", "sub-a"),
            &users,
            Some("admin"),
        )
        .await;
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(u.metadata[SUBJECT_KEY], "generic|sub-a");
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
            &lookup("u", false),
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

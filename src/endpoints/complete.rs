//! The end every login shares, whoever vouched for the user (an IdP callback, a header sign-in):
//! custom SSO hook → access policy → user store → UI key → session → redirect.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use serde_json::{Map, Value};

use super::{append_cookie, see_other};
use crate::error::SsoError;
use crate::hooks::{
    CustomSsoRequest, CustomSsoResponse, LoginSource, SsoUserValues, UI_KEY_TEAM_ID, UiKeyRequest,
    UiKeyResponse, call_hook, plain_value, refusal_message,
};
use crate::identity::{Identity, SsoUser, UserRole};
use crate::layer::Shared;
use crate::policy::UiAccessMode;
use crate::session::{IdpSession, IssueError, NewSession};
use crate::store::{NewUserDefaults, UserRecord};

/// Where a login comes from.
pub(crate) struct LoginOrigin<'a> {
    /// The configured name of the provider (`trusted-proxy` for a header sign-in): the user
    /// store's subject binding and the logs use it.
    pub(crate) provider: &'a str,
    /// Whether user ids get the `"<provider>:"` prefix (every provider but the first).
    pub(crate) namespaced: bool,
    /// Who vouched for the user.
    pub(crate) source: LoginSource,
    /// Where to land afterwards (validated); the UI path when `None`.
    pub(crate) return_to: Option<String>,
    /// What the provider-specific step leaves for after the access policy (Microsoft's
    /// service-principal teams to create).
    pub(crate) provider_outcome: crate::providers::ProviderOutcome,
    /// The provider's session (the id_token's `sid`), so a back-channel logout revokes this
    /// login's session.
    pub(crate) idp_sid: Option<String>,
}

/// Finishes a browser login for `user`, whose `claims` (bearer credentials removed) an IdP or a
/// trusted proxy vouched for: [`accept_login`], then the session cookie and a 303 to the return
/// target.
pub(crate) async fn complete_login(
    shared: &Shared,
    user: SsoUser,
    claims: &Map<String, Value>,
    origin: LoginOrigin<'_>,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let target = origin
        .return_to
        .clone()
        .unwrap_or_else(|| shared.ui_url.clone());
    let (token, _identity) = accept_login(shared, user, claims, &origin).await?;
    let mut res = see_other(&target);
    append_cookie(&mut res, &super::session_cookie(shared, &token));
    Ok(res)
}

/// The user id a login stands for before any hook: the mapped id, prefixed `"<provider>:"` for
/// every provider but the first (the same id at two providers is two users; the first keeps
/// plain ids, so one provider changes nothing).
pub(crate) fn default_user_id(user: &SsoUser, provider: &str, namespaced: bool) -> Option<String> {
    crate::claims::fallback_user_id(user).map(|id| {
        if namespaced {
            format!("{provider}:{id}")
        } else {
            id
        }
    })
}

/// A login the hook, the access policy and the user store accepted.
pub(crate) struct Admitted {
    /// The user as stored now.
    pub(crate) record: UserRecord,
    /// The mapped user, with the hook's values applied.
    pub(crate) user: SsoUser,
    /// The stored teams, then the login's own.
    pub(crate) team_ids: Vec<String>,
}

/// What every ending of a login shares (browser redirect, CLI, header sign-in): the custom SSO
/// hook, the access policy, then the user store. Nothing is written before the policy passes.
pub(crate) async fn admit(
    shared: &Shared,
    mut user: SsoUser,
    claims: &Map<String, Value>,
    origin: &LoginOrigin<'_>,
) -> Result<Admitted, SsoError> {
    let default_id = default_user_id(&user, origin.provider, origin.namespaced);
    let mut user_defaults = shared.user_defaults.clone();

    // 1. The custom SSO hook (upstream `user_custom_sso`), before anything is checked or written.
    let user_id = match &shared.hooks.custom_sso {
        None => default_id,
        Some(hook) => {
            let values = SsoUserValues {
                user_id: default_id,
                email: user.email.clone(),
                role: user.role,
                models: user_defaults.models.clone(),
                max_budget: user_defaults.max_budget,
                budget_duration: user_defaults.budget_duration.clone(),
                team_ids: user.team_ids.clone(),
            };
            let mut req = CustomSsoRequest::new(user.clone(), claims.clone());
            req.provider = origin.provider.to_owned();
            req.source = origin.source;
            req.values = values;
            match call_hook(hook, req, shared.hooks.timeout, "custom SSO").await? {
                CustomSsoResponse::Accept(values) => {
                    apply_values(&mut user, &mut user_defaults, values)?
                }
                CustomSsoResponse::Refuse { message } => {
                    tracing::info!(provider = %origin.provider, "SSO login refused by the custom SSO hook");
                    return Err(SsoError::forbidden(refusal_message(&message)));
                }
            }
        }
    };

    // 2. Access policy before anything is written.
    shared.policy.check_login(&user)?;
    let user_id = user_id
        .ok_or_else(|| SsoError::unauthorized("the identity provider sent no usable user id"))?;

    // The UI access mode too, with the role this login would end up with: a user it refuses
    // must not be created or updated (the check after the upsert stays as the final word).
    let lookup = crate::store::LoginLookup {
        user_id: &user_id,
        provider: origin.provider,
        link_by_email: shared.link_accounts_by_email,
    };
    if shared.policy.ui_access_mode == UiAccessMode::AdminOnly {
        let role = prospective_role(shared, &user, &lookup).await?;
        shared.policy.check_ui_access(role)?;
    }

    // 3. Users and teams (first those the provider names: Microsoft's service-principal groups).
    origin.provider_outcome.create_teams(shared).await?;
    let record_user = crate::store::upsert_sso_user(
        &shared.store,
        &user,
        &lookup,
        &user_defaults,
        &shared.team_defaults,
        shared.policy.proxy_admin_id.as_deref(),
    )
    .await?;
    // `upsert_sso_user` has applied the `PROXY_ADMIN_ID` promotion (to a bound user only).
    shared.policy.check_ui_access(record_user.role)?;

    let mut team_ids = record_user.teams.clone();
    for t in &user.team_ids {
        if !team_ids.contains(t) {
            team_ids.push(t.clone());
        }
    }
    Ok(Admitted {
        record: record_user,
        user,
        team_ids,
    })
}

/// A browser login's end: [`admit`], then the UI key and a new session (its token and identity).
pub(crate) async fn accept_login(
    shared: &Shared,
    user: SsoUser,
    claims: &Map<String, Value>,
    origin: &LoginOrigin<'_>,
) -> Result<(String, Identity), SsoError> {
    let Admitted {
        record: record_user,
        user,
        team_ids,
    } = admit(shared, user, claims, origin).await?;
    let role = record_user.role;

    // 4. The UI key (upstream `generate_key_helper_fn`), once the user is accepted.
    let email = record_user.email.clone().or(user.email.clone());
    let ui_key = match &shared.hooks.ui_key {
        None => None,
        Some(issuer) => {
            let mut req =
                UiKeyRequest::new(record_user.user_id.clone(), role, shared.sessions.ttl());
            req.email = email.clone();
            req.models = record_user.models.clone();
            req.team_id = UI_KEY_TEAM_ID.to_owned();
            req.max_budget = shared.hooks.ui_key_max_budget;
            match call_hook(issuer, req, shared.hooks.timeout, "UI key").await? {
                UiKeyResponse::Key(key) if plain_value(&key, crate::hooks::MAX_UI_KEY_LEN) => {
                    Some(key)
                }
                UiKeyResponse::Key(_) => {
                    tracing::warn!("SSO login refused: the UI key issuer answered an unusable key");
                    return Err(SsoError::bad_gateway(
                        "the UI key hook failed: the login cannot be completed, try again later",
                    ));
                }
                UiKeyResponse::Refuse { message } => {
                    tracing::info!(user_id = %record_user.user_id, "SSO login refused by the UI key issuer");
                    return Err(SsoError::forbidden(refusal_message(&message)));
                }
            }
        }
    };

    // 5. The session.
    let (token, identity) = shared
        .sessions
        .issue_with(
            NewSession {
                user_id: record_user.user_id.clone(),
                email,
                display_name: user.display_name.clone(),
                role,
                team_ids,
                provider: user.provider.clone(),
                attributes: user.extra.clone(),
            },
            ui_key,
            shared.sessions.ttl(),
            Some(IdpSession {
                provider: origin.provider.to_owned(),
                sid: origin.idp_sid.clone(),
                subject: user.subject.clone(),
            }),
        )
        .map_err(|e| match e {
            IssueError::TooLarge { .. } => {
                tracing::warn!(error = %e, "SSO login refused: session too large");
                SsoError::unauthorized(
                    "the session would not fit in a cookie: the identity provider sent too many groups or attributes",
                )
            }
            IssueError::Encode => SsoError::internal("could not issue the session"),
        })?;
    tracing::info!(user_id = %identity.user_id(), role = %identity.role(), provider = %origin.provider, "SSO login");
    Ok((token, identity))
}

/// Applies the custom SSO hook's values to the login; the user id to use.
fn apply_values(
    user: &mut SsoUser,
    defaults: &mut NewUserDefaults,
    values: SsoUserValues,
) -> Result<Option<String>, SsoError> {
    let bad = |what: &str| {
        tracing::warn!(
            field = what,
            "SSO login refused: the custom SSO hook answered an unusable value"
        );
        SsoError::bad_gateway(
            "the custom SSO hook failed: the login cannot be completed, try again later",
        )
    };
    let user_id = match values.user_id {
        Some(id) if id.is_empty() => None,
        Some(id) if !plain_value(&id, 512) => return Err(bad("user_id")),
        other => other,
    };
    let email = match values.email {
        Some(e) if e.is_empty() => None,
        Some(e) if !plain_value(&e, 320) || !e.contains('@') => return Err(bad("email")),
        Some(e) => Some(e.to_ascii_lowercase()),
        None => None,
    };
    if email != user.email {
        // The IdP vouched for its address, not for the hook's.
        user.email_verified = None;
        user.email = email;
    }
    user.role = values.role;
    if values.team_ids.iter().any(|t| !plain_value(t, 512)) {
        return Err(bad("team_ids"));
    }
    user.team_ids = values.team_ids;
    defaults.models = values.models;
    defaults.max_budget = values.max_budget;
    defaults.budget_duration = values.budget_duration;
    Ok(user_id)
}

/// The role `upsert_sso_user` would give this user, read without writing (the same lookup,
/// [`crate::store::find_login_user`], so a login it would refuse is refused here too): the IdP's
/// role, else the stored user's, else the new-user default, else `internal_user_viewer`; then
/// the `PROXY_ADMIN_ID` promotion, which `upsert_sso_user` applies only to a user bound to this
/// login's subject (a login without a `sub` binds nothing, so it is never promoted).
pub(crate) async fn prospective_role(
    shared: &Shared,
    user: &SsoUser,
    lookup: &crate::store::LoginLookup<'_>,
) -> Result<UserRole, SsoError> {
    let found = crate::store::find_login_user(&shared.store, user, lookup).await?;
    let stored_id = found
        .as_ref()
        .map_or_else(|| lookup.user_id.to_owned(), |u| u.user_id.clone());
    let role = user
        .role
        .or(found.map(|u| u.role))
        .or(shared.user_defaults.role)
        .unwrap_or(UserRole::InternalUserViewer);
    // `find_login_user` let the login through: a found user is bound to this subject or will be
    // bound to it, and a new one is created bound to it, whenever the login has a `sub`.
    Ok(if lookup.binding(user).is_some() {
        shared.policy.effective_role(&stored_id, role)
    } else {
        role
    })
}

//! `GET /sso/callback`: finish a login.
//!
//! Order matters: everything that can be checked without talking to the IdP is checked first
//! (browser binding, single-use state, IdP error, `iss`), then the code is redeemed, the id_token
//! verified, userinfo fetched and matched, claims mapped, the access policy applied, and only then
//! is the user written to the store and a session issued.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Response, header};
use http_body_util::Full;
use serde_json::{Map, Value};

use super::cookies::clear_cookie;
use super::flow;
use super::{append_cookie, param, query_params, see_other};
use crate::error::SsoError;
use crate::identity::{SsoUser, UserRole};
use crate::layer::Shared;
use crate::oidc::{
    ClientAuth, DEFAULT_LEEWAY, IdTokenCheck, TokenRequest, check_unverified_id_token,
    check_userinfo_sub, exchange_code, fetch_userinfo, verify_id_token,
};
use crate::policy::UiAccessMode;
use crate::provider::ClientAuthMethod;
use crate::provider::ProviderKind;
use crate::runtime::Resolved;
use crate::session::{IdpSession, IssueError, NewSession};

pub(crate) async fn finish(
    shared: &Shared,
    provider_index: usize,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    // The flow cookie is single use whatever happens next.
    let (flow_name, flow_path) = flow::cookie_name_and_path(shared);
    let clear_flow = clear_cookie(flow_name, flow_path, shared.cookie.secure);
    let mut res = match run(shared, provider_index, parts).await {
        Ok(res) => res,
        Err(e) => {
            tracing::info!(status = %e.status(), reason = %e.message(), "SSO callback refused");
            e.into_response()
        }
    };
    append_cookie(&mut res, &clear_flow);
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(res)
}

async fn run(
    shared: &Shared,
    provider_index: usize,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let params = query_params(parts)?;
    let state = param(&params, "state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SsoError::bad_request("missing state parameter").with_param("state"))?;

    // 1. This browser started this login.
    let cookie = flow::cookie_from(shared, &parts.headers)?;
    let flow_id = flow::open(shared, cookie, state)?;

    // 2. The login is known, live and unused: take it (single use).
    let record = flow::take(shared, &flow_id).await?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(record.state.as_bytes(), state.as_bytes())
        .is_err()
    {
        return Err(SsoError::unauthorized("login state does not match").with_param("state"));
    }
    // Mix-up defence (RFC 9700 §4.4.2): the code arrived at the redirect URI of the provider
    // the login was started with, or it is refused before anything is redeemed.
    let provider = shared
        .providers
        .get(provider_index)
        .filter(|p| p.config.provider_name() == record.provider)
        .ok_or_else(|| {
            SsoError::unauthorized("this login was started with another identity provider")
        })?;
    // 3. The IdP refused: nothing to redeem, so no outbound call either. The issuer is checked
    //    when the provider's metadata is already known (RFC 9207 applies to error responses too).
    if let Some(error) = param(&params, "error") {
        if let Some(resolved) = provider.resolved_now() {
            check_iss(&params, &resolved)?;
        }
        let description = param(&params, "error_description").unwrap_or("");
        return Err(SsoError::unauthorized(format!(
            "the identity provider refused the login: {}{}{}",
            short(error),
            if description.is_empty() { "" } else { ": " },
            short(description)
        ))
        .with_param("error"));
    }

    // 4. Mix-up defence (RFC 9207).
    let resolved = provider.resolve().await?;
    check_iss(&params, &resolved)?;
    let code = param(&params, "code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| SsoError::bad_request("missing code parameter").with_param("code"))?;

    // 5. Redeem the code.
    let config = &provider.config;
    let headers: Vec<(HeaderName, HeaderValue)> = config
        .extra_headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    let tokens = exchange_code(
        provider.http(),
        &TokenRequest {
            token_endpoint: &resolved.token_endpoint,
            code,
            redirect_uri: &provider.callback_url,
            client_id: &config.client_id,
            client_secret: config.client_secret.as_deref(),
            auth: match config.client_auth {
                ClientAuthMethod::Basic => ClientAuth::Basic,
                ClientAuthMethod::Post => ClientAuth::Post,
            },
            code_verifier: record.verifier.as_deref(),
            extra_headers: &headers,
        },
    )
    .await?;

    // 6. The id_token: verified when the provider's keys are known.
    let mut claims: Map<String, Value> = Map::new();
    let mut id_sub: Option<String> = None;
    let mut id_sid: Option<String> = None;
    // The id_token's own claims, kept apart from the profile merged in below: Microsoft's app
    // roles are read from them only.
    let mut id_token_claims: Map<String, Value> = Map::new();
    if let Some(id_token) = tokens.id_token.as_deref() {
        let check = IdTokenCheck {
            issuer: resolved.issuer.as_deref(),
            client_id: &config.client_id,
            nonce: Some(&record.nonce),
            now: shared.clock.now(),
            leeway: DEFAULT_LEEWAY,
        };
        let id_claims = match &resolved.jwks {
            Some(jwks) => verify_id_token(jwks, id_token, &check).await?,
            // No keys configured: the token came straight from the token endpoint over TLS,
            // which OIDC Core 3.1.3.7 step 6 accepts instead of the signature; every other
            // check (issuer when known, audience, times, subject, nonce) still applies.
            None => check_unverified_id_token(id_token, &check)?,
        };
        id_sub = id_claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // For back-channel logout: the provider's session this login belongs to.
        id_sid = id_claims
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if config.kind() == ProviderKind::Microsoft {
            id_token_claims = id_claims.clone();
        }
        claims = id_claims;
    } else if resolved.jwks.is_some() {
        tracing::debug!(provider = %config.name, "token response carried no id_token; relying on userinfo");
    }

    // 7. Userinfo: wins for identity claims; its `sub` must be the id_token's.
    if let Some(endpoint) = &resolved.userinfo_endpoint {
        match fetch_userinfo(provider.http(), endpoint, &tokens.access_token).await {
            Ok(Some(info)) => {
                // Microsoft's profile comes from Graph `/me`, which is not an OpenID userinfo
                // endpoint and carries no `sub` (its `id` is the object id).
                if config.kind() != ProviderKind::Microsoft {
                    check_userinfo_sub(&info, id_sub.as_deref())?;
                } else if let (Some(oid), Some(id)) = (
                    claims.get("oid").and_then(Value::as_str),
                    info.get("id").and_then(Value::as_str),
                ) && oid != id
                {
                    // Graph's `id` is the user's object id: it must be the id_token's `oid`.
                    return Err(SsoError::unauthorized(
                        "the Graph profile belongs to another user than the id_token",
                    ));
                }
                for (k, v) in info {
                    claims.insert(k, v);
                }
            }
            Ok(None) => {}
            Err(e) if !claims.is_empty() => {
                tracing::warn!(provider = %config.name, error = %e, "userinfo failed; using the id_token claims");
            }
            Err(e) => return Err(e),
        }
    }
    if claims.is_empty() {
        return Err(SsoError::unauthorized(
            "the identity provider sent no user information (userinfo unavailable and no id_token)",
        ));
    }
    // Bearer credentials never come from userinfo.
    for k in ["access_token", "id_token", "refresh_token"] {
        claims.remove(k);
    }

    // 8. Claims to user.
    let mut user = config.claims.map(&claims, config.provider_name());
    if config.kind() == ProviderKind::Microsoft
        && user.email.is_none()
        && user.email_verified != Some(false)
    {
        // Graph users without a UPN-style e-mail fall back to `mail` (upstream behaviour).
        user.email = claims
            .get("mail")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
    }
    config
        .claims
        .apply_access_token(&mut user, &tokens.access_token);
    if config.kind() == ProviderKind::Microsoft {
        // Microsoft: the app roles of the id_token (or the role mappings over its claims), never
        // the Graph profile or the (Graph) access token.
        user.role = match &config.claims.role_mappings {
            Some(rm) => rm.role_for_claims(&id_token_claims),
            None => crate::claims::microsoft_app_role(&id_token_claims),
        };
    }
    if user.subject.is_none() {
        user.subject = id_sub;
    }

    // 9. Access policy before anything is written.
    shared.policy.check_login(&user)?;
    let user_id = crate::claims::fallback_user_id(&user)
        .ok_or_else(|| SsoError::unauthorized("the identity provider sent no usable user id"))?;
    // With several providers, every one but the first gets its own id space: the same id at
    // two providers is two users (the first keeps plain ids, so one provider changes nothing).
    let user_id = if provider_index == 0 {
        user_id
    } else {
        format!("{}:{user_id}", config.provider_name())
    };

    // The UI access mode too, with the role this login would end up with: a user it refuses
    // must not be created or updated (the check after the upsert stays as the final word).
    let lookup = crate::store::LoginLookup {
        user_id: &user_id,
        provider: config.provider_name(),
        link_by_email: shared.link_accounts_by_email,
    };
    if shared.policy.ui_access_mode == UiAccessMode::AdminOnly {
        let role = prospective_role(shared, &user, &lookup).await?;
        shared.policy.check_ui_access(role)?;
    }

    // 10. Users and teams.
    let record_user = crate::store::upsert_sso_user(
        &shared.store,
        &user,
        &lookup,
        &shared.user_defaults,
        &shared.team_defaults,
        shared.policy.proxy_admin_id.as_deref(),
    )
    .await?;
    // `upsert_sso_user` has applied the `PROXY_ADMIN_ID` promotion (to a bound user only).
    let role = record_user.role;
    shared.policy.check_ui_access(role)?;

    // 11. The session.
    let mut team_ids = record_user.teams.clone();
    for t in &user.team_ids {
        if !team_ids.contains(t) {
            team_ids.push(t.clone());
        }
    }
    let (token, identity) = shared
        .sessions
        .issue_linked(NewSession {
            user_id: record_user.user_id.clone(),
            email: record_user.email.clone().or(user.email.clone()),
            display_name: user.display_name.clone(),
            role,
            team_ids,
            provider: user.provider.clone(),
            attributes: user.extra.clone(),
        }, Some(IdpSession {
            provider: config.provider_name().to_owned(),
            sid: id_sid,
            subject: user.subject.clone(),
        }))
        .map_err(|e| match e {
            IssueError::TooLarge { .. } => {
                tracing::warn!(error = %e, "SSO login refused: session too large");
                SsoError::unauthorized(
                    "the session would not fit in a cookie: the identity provider sent too many groups or attributes",
                )
            }
            IssueError::Encode => SsoError::internal("could not issue the session"),
        })?;
    tracing::info!(user_id = %identity.user_id(), role = %identity.role(), provider = %config.name, "SSO login");

    let target = record
        .return_to
        .clone()
        .unwrap_or_else(|| shared.ui_url.clone());
    let mut res = see_other(&target);
    append_cookie(&mut res, &super::session_cookie(shared, &token));
    Ok(res)
}

/// The role `upsert_sso_user` would give this user, read without writing (the same lookup,
/// [`crate::store::find_login_user`], so a login it would refuse is refused here too): the IdP's
/// role, else the stored user's, else the new-user default, else `internal_user_viewer`; then
/// the `PROXY_ADMIN_ID` promotion, which `upsert_sso_user` applies only to a user bound to this
/// login's subject (a login without a `sub` binds nothing, so it is never promoted).
async fn prospective_role(
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

/// An IdP-supplied error text, shortened and reduced to harmless characters.
fn short(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || " _-.,:;()'".contains(*c))
        .take(200)
        .collect()
}

/// The `iss` authorization response parameter (RFC 9207): when present it must be the provider's
/// issuer; when the provider promised it, it must be present.
fn check_iss(params: &[(String, String)], resolved: &Resolved) -> Result<(), SsoError> {
    match (param(params, "iss"), &resolved.issuer) {
        (Some(iss), Some(expected)) if iss != expected => Err(SsoError::unauthorized(
            "authorization response issuer does not match the provider",
        )
        .with_param("iss")),
        (None, Some(_)) if resolved.iss_parameter_supported => Err(SsoError::unauthorized(
            "authorization response lacks the issuer the provider promised",
        )
        .with_param("iss")),
        _ => Ok(()),
    }
}

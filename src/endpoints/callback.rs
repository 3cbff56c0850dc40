//! `GET /sso/callback`: finish a login (and, through [`verify`], the debug login).
//!
//! Order matters: everything that can be checked without talking to the IdP is checked first
//! (browser binding, single-use state, IdP error, `iss`), then the code is redeemed, the id_token
//! verified, userinfo fetched and matched, claims mapped, the access policy applied, and only then
//! is the user written to the store and a session issued (or, for a CLI login, kept for the
//! CLI's poll).

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Response, header};
use http_body_util::Full;
use serde_json::{Map, Value};

use super::cookies::clear_cookie;
use super::flow;
use super::{append_cookie, param, query_params};
use crate::error::SsoError;
use crate::identity::SsoUser;
use crate::layer::Shared;
use crate::oidc::{
    ClientAuth, DEFAULT_LEEWAY, IdTokenCheck, TokenRequest, check_unverified_id_token,
    check_userinfo_sub, exchange_code, fetch_userinfo, verify_id_token,
};
use crate::provider::ClientAuthMethod;
use crate::provider::ProviderKind;
use crate::runtime::{ProviderRuntime, Resolved};

/// Finishes a login at the callback of provider `provider_index`; `debug`: at the debug callback.
pub(crate) async fn finish(
    shared: &Shared,
    provider_index: usize,
    parts: &Parts,
    debug: bool,
) -> Result<Response<Full<Bytes>>, SsoError> {
    // The flow cookie is single use whatever happens next.
    let (flow_name, flow_path) = flow::cookie_name_and_path(shared);
    let clear_flow = clear_cookie(flow_name, flow_path, shared.cookie.secure);
    let result = if debug {
        super::debug::run(shared, provider_index, parts).await
    } else {
        run(shared, provider_index, parts).await
    };
    if let Some(provider) = shared.providers.get(provider_index) {
        let name = provider.config.provider_name();
        crate::metrics::callback_finished(name, result.as_ref().map(|_| ()), debug);
    }
    let mut res = match result {
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

/// A login the provider vouched for, its claims mapped; the access policy not yet applied.
pub(super) struct Verified<'a> {
    /// The flow record the login was started with.
    pub(super) record: flow::FlowRecord,
    /// The provider.
    pub(super) provider: &'a ProviderRuntime,
    /// The mapped user.
    pub(super) user: SsoUser,
    /// The user id the login stands for before any hook (prefixed for every provider but the
    /// first); `None` when the provider sent none (a custom SSO hook may still supply one).
    pub(super) user_id: Option<String>,
    /// The claims received (id_token and userinfo merged), bearer credentials removed at the top.
    pub(super) claims: Map<String, Value>,
    /// What the provider-specific step leaves for after the access policy.
    pub(super) provider_outcome: crate::providers::ProviderOutcome,
    /// The id_token's `sid` (the provider's session, for back-channel logout).
    pub(super) id_sid: Option<String>,
}

/// Steps 1 to 8: the browser binding, the single-use state, the code redeemed, the id_token and
/// userinfo verified, the claims mapped. `debug`: the login must have been started as a debug
/// login (and so was redirected to the debug callback).
pub(super) async fn verify<'a>(
    shared: &'a Shared,
    provider_index: usize,
    parts: &Parts,
    debug: bool,
) -> Result<Verified<'a>, SsoError> {
    let params = query_params(parts)?;
    let state = param(&params, "state")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SsoError::bad_request("missing state parameter").with_param("state"))?;

    // 1. This browser started this login.
    let cookie = flow::cookie_from(shared, &parts.headers)?;
    let flow_id = flow::open(shared, cookie, state)?;

    // 2. The login is known, live and unused: take it (single use).
    let record = flow::take(shared, &flow_id).await?;
    // A login finishes where it was meant to: a debug login never at the real callback (where it
    // would set a session), a real one never at the debug callback.
    if record.debug != debug {
        return Err(SsoError::unauthorized(
            "this login was started for another endpoint: start the login again",
        )
        .with_param("state"));
    }
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
            redirect_uri: if debug {
                &provider.debug_callback_url
            } else {
                &provider.callback_url
            },
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
    // The id_token's own claims, kept apart from the profile merged in below: Microsoft's
    // tenant and app roles and Google's hosted domain are read from them only.
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
        if config.kind() != ProviderKind::Generic {
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
    // Google's hosted domain; Microsoft's tenant, Graph groups and app roles (never from the
    // Graph profile or the access token): `crate::providers`.
    let provider_outcome = crate::providers::finish_login(
        shared,
        provider,
        &tokens.access_token,
        &id_token_claims,
        &mut user,
    )
    .await?;
    if user.subject.is_none() {
        user.subject = id_sub;
    }
    let user_id =
        super::complete::default_user_id(&user, config.provider_name(), provider_index != 0);
    Ok(Verified {
        record,
        provider,
        user,
        user_id,
        claims,
        provider_outcome,
        id_sid,
    })
}

/// Steps 9 to 11: the custom SSO hook, the access policy, users and teams, then the ending: a
/// browser session, or, for a CLI login, the CLI's session kept for its poll.
async fn run(
    shared: &Shared,
    provider_index: usize,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let Verified {
        record,
        provider,
        user,
        claims,
        provider_outcome,
        id_sid,
        ..
    } = verify(shared, provider_index, parts, false).await?;
    let origin = super::complete::LoginOrigin {
        provider: provider.config.provider_name(),
        namespaced: provider_index != 0,
        source: crate::hooks::LoginSource::IdentityProvider,
        return_to: record.return_to.clone(),
        provider_outcome,
        idp_sid: id_sid,
    };
    // A CLI login: the session waits in the verifier cache for the CLI's poll; this browser gets
    // a page saying so, and no session.
    if let Some(key_hash) = &record.cli {
        let admitted = super::complete::admit(shared, user, &claims, &origin).await?;
        return super::cli::keep_session(
            shared,
            key_hash,
            &admitted.record,
            &admitted.user,
            admitted.team_ids,
        )
        .await;
    }
    super::complete::complete_login(shared, user, &claims, origin).await
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

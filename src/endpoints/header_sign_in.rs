//! Header sign-in: a login start from a trusted proxy that names the user in headers
//! ([`crate::hooks::HeaderSignIn`]).

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response, header};
use http_body_util::Full;

use super::complete::{LoginOrigin, complete_login};
use super::{cross_site, param, query_params};
use crate::error::SsoError;
use crate::hooks::{HeaderSignInConfig, LoginSource, plain_value};
use crate::identity::SsoUser;
use crate::layer::Shared;
use crate::session::token_from_headers;

/// The provider name header sign-ins are stored and bound under.
pub(crate) const PROVIDER: &str = "trusted-proxy";

/// Signs the user in from the headers when header sign-in is on, the peer is a trusted proxy and
/// the user id header is present; `None` otherwise (the login goes to the IdP).
pub(crate) async fn try_sign_in(
    shared: &Shared,
    parts: &Parts,
) -> Option<Result<Response<Full<Bytes>>, SsoError>> {
    let config = shared.hooks.header_sign_in.as_ref()?;
    if !shared.trusted_proxies.peer_is_trusted(&parts.extensions)
        || !parts.headers.contains_key(&config.user_id)
    {
        return None;
    }
    Some(sign_in(shared, config, parts).await)
}

async fn sign_in(
    shared: &Shared,
    config: &HeaderSignInConfig,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let user_id = single(&parts.headers, &config.user_id)?
        .filter(|v| plain_value(v, 512))
        .ok_or_else(|| SsoError::bad_request("the trusted proxy sent an unusable user id"))?;
    let email = match single(&parts.headers, &config.email)? {
        None => None,
        Some(e) if plain_value(e, 320) && e.contains('@') => Some(e.to_ascii_lowercase()),
        Some(_) => {
            return Err(SsoError::bad_request(
                "the trusted proxy sent an unusable e-mail",
            ));
        }
    };
    let params = query_params(parts)?;
    let return_to = param(&params, "return_to")
        .or_else(|| param(&params, "redirect_to"))
        .and_then(|t| shared.redirects.validate(t));
    tracing::debug!(user_id, "header sign-in from a trusted proxy");

    let user = SsoUser {
        id: Some(user_id.to_owned()),
        email_verified: email.as_ref().map(|_| true),
        email,
        provider: Some(PROVIDER.to_owned()),
        // The proxy vouches for the id: it binds the stored user to `trusted-proxy|<id>`.
        subject: Some(user_id.to_owned()),
        ..SsoUser::default()
    };
    let mut res = complete_login(
        shared,
        user,
        &serde_json::Map::new(),
        LoginOrigin {
            provider: PROVIDER,
            namespaced: false,
            source: LoginSource::TrustedProxy,
            return_to,
            provider_outcome: Default::default(),
            idp_sid: None,
        },
    )
    .await?;
    // A new login replaces any old session, as a login start does (not when another site sent
    // the browser here).
    if !cross_site(&parts.headers)
        && let Some(token) = token_from_headers(&parts.headers, &shared.cookie.name)
        && let Ok(old) = shared.sessions.verify(token)
    {
        shared.revoke(&old).await;
        crate::metrics::session_revoked(crate::metrics::RevocationSource::Login);
    }
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    Ok(res)
}

/// The one value of header `name` as text; 400 when it is given more than once or is not text.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, SsoError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SsoError::bad_request(
            "the trusted proxy sent a sign-in header more than once",
        ));
    }
    first.to_str().map(|v| Some(v.trim())).map_err(|_| {
        SsoError::bad_request("the trusted proxy sent a sign-in header that is not text")
    })
}

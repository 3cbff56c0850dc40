//! `GET|POST /sso/logout`: end the session here, then at the IdP.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response};
use http_body_util::Full;

use super::{append_cookie, clear_cookie, see_other};
use crate::error::SsoError;
use crate::layer::Shared;
use crate::session::token_from_headers;

pub(crate) async fn logout(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    // A cross-site page must not log users out (logout CSRF): browsers say where a request came
    // from in `Sec-Fetch-Site`.
    if super::cross_site(&parts.headers) {
        return Err(SsoError::forbidden("cross-site logout refused"));
    }
    let mut provider = shared.providers.first();
    if let Some(token) = token_from_headers(&parts.headers, &shared.cookie.name)
        && let Ok(identity) = shared.sessions.verify(token)
    {
        shared.revoke(&identity).await;
        crate::metrics::session_revoked(crate::metrics::RevocationSource::Logout);
        tracing::info!(user_id = %identity.user_id(), "SSO logout");
        if let Some(p) = identity.provider().and_then(|name| {
            shared
                .providers
                .iter()
                .find(|p| p.config.provider_name() == name)
        }) {
            provider = Some(p);
        }
    }
    // Never wait for an IdP here: the end-session endpoint is used only if discovery already ran.
    let target = shared
        .logout_url
        .clone()
        .or_else(|| provider.and_then(|p| p.resolved_now()?.end_session_endpoint.clone()))
        .unwrap_or_else(|| format!("{}/", shared.root_path));
    let mut res = see_other(&target);
    append_cookie(
        &mut res,
        &clear_cookie(&shared.cookie.name, "/", shared.cookie.secure),
    );
    res.headers_mut()
        .insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
    Ok(res)
}

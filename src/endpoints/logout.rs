//! `GET|POST /sso/logout`: end the session here, then at the IdP.

use bytes::Bytes;
use http::Response;
use http::request::Parts;
use http_body_util::Full;

use super::{append_cookie, clear_cookie, see_other};
use crate::error::SsoError;
use crate::layer::Shared;
use crate::session::token_from_headers;

pub(crate) async fn logout(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    if let Some(token) = token_from_headers(&parts.headers, &shared.cookie.name)
        && let Ok(identity) = shared.sessions.verify(token)
    {
        shared
            .sessions
            .revoke(identity.session_id(), identity.expires_at());
        tracing::info!(user_id = %identity.user_id(), "SSO logout");
    }
    let mut target = shared.logout_url.clone();
    if target.is_none()
        && let Some(p) = shared.providers.first()
        && let Ok(resolved) = p.resolve().await
    {
        target = resolved.end_session_endpoint.clone();
    }
    let target = target.unwrap_or_else(|| format!("{}/", shared.root_path));
    let mut res = see_other(&target);
    append_cookie(
        &mut res,
        &clear_cookie(&shared.cookie.name, "/", shared.cookie.secure),
    );
    res.headers_mut().insert(
        "clear-site-data",
        http::HeaderValue::from_static("\"cookies\""),
    );
    Ok(res)
}

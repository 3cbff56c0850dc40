//! `Set-Cookie` values the layer writes.

use cookie::{Cookie, SameSite};

use crate::layer::Shared;

/// The session cookie: `Path=/`, `SameSite=Lax`, `Max-Age` from the session duration, `Secure`
/// when the base URL is https, `HttpOnly` unless switched off.
pub(crate) fn session_cookie(shared: &Shared, token: &str) -> String {
    let c = &shared.cookie;
    Cookie::build((c.name.as_str(), token))
        .path("/")
        .same_site(SameSite::Lax)
        .http_only(c.http_only)
        .secure(c.secure)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(c.max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// A short-lived, HttpOnly, SameSite=Lax cookie scoped to `path`.
pub(crate) fn flow_cookie(
    name: &str,
    value: &str,
    path: &str,
    secure: bool,
    max_age_secs: i64,
) -> String {
    Cookie::build((name, value))
        .path(path)
        .same_site(SameSite::Lax)
        .http_only(true)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

/// A cookie that removes cookie `name` at `path`.
pub(crate) fn clear_cookie(name: &str, path: &str, secure: bool) -> String {
    Cookie::build((name, ""))
        .path(path)
        .same_site(SameSite::Lax)
        .http_only(true)
        .secure(secure)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

//! `GET /sso/auth`: forward authentication for a reverse proxy that asks, for every request it
//! proxies, whether the browser has a session (nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz` in HTTP mode).
//!
//! - A valid session (the `token` cookie or a Bearer token, verified exactly as the gate does):
//!   `200`, empty body, the identity as `X-Forwarded-User`, `-Email`, `-Groups` and
//!   `-Preferred-Username` response headers for the proxy to copy onto the upstream request.
//! - Otherwise: `401` with the gate's JSON error and `X-Auth-Request-Redirect: <login URL>`, the
//!   absolute login URL (`{base}/sso/key/generate?return_to=...`) that comes back to where the
//!   browser was going. nginx treats any status but 2xx, 401 and 403 as an error, so `401` is the
//!   answer its `error_page 401` turns into a redirect.
//! - With `?redirect=true` (Traefik, which hands the answer to the browser as it is) and on the
//!   Envoy form below, a browser navigation (original method GET or HEAD, `Accept` preferring
//!   HTML) gets a `303` to that login URL instead; API clients still get the `401`.
//!
//! Where the browser was going is read from `X-Original-URL` (nginx), else from
//! `X-Forwarded-Proto` + `X-Forwarded-Host` + `X-Forwarded-Uri` (Traefik), and only when the
//! connection's peer is a [trusted proxy](crate::SsoLayerBuilder::trusted_proxies): without one
//! the login returns to the UI path. Envoy appends the original path to the authorization
//! server's path (`/sso/auth/app/page?q`): that path, whatever the method, is the Envoy form.
//! Whatever its source, the target goes through the same open-redirect validation as every
//! `return_to` ([`RedirectPolicy`](crate::redirect::RedirectPolicy)): an absolute URL is kept only
//! for an allowed domain, else only its path is kept (back on this site), and a path that is not
//! a safe same-origin path is dropped.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Response, header};
use http_body_util::Full;
use percent_encoding::utf8_percent_encode;

use super::{QUERY_VALUE, append_cookie, clear_cookie, prefers_html, see_other};
use crate::error::SsoError;
use crate::headers::set_identity_headers;
use crate::layer::Shared;
use crate::redirect::same_origin_relative;
use crate::session::{SessionError, session_token};

/// The forward-auth path under the endpoint prefix unless configured.
pub(crate) const DEFAULT_PATH: &str = "/auth";

/// The response header carrying the login URL (oauth2-proxy's name for the post-login target).
pub(crate) const AUTH_REQUEST_REDIRECT: HeaderName =
    HeaderName::from_static("x-auth-request-redirect");

/// nginx: `proxy_set_header X-Original-URL $scheme://$http_host$request_uri;`.
const ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");

/// The endpoints' paths under the prefix that a forward-auth path must not shadow.
const RESERVED: [&str; 9] = [
    "/key/generate",
    "/login",
    "/callback",
    "/cli",
    "/debug",
    "/backchannel-logout",
    "/get/ui_settings",
    "/readiness",
    "/logout",
];

/// Checks a configured forward-auth path (relative to the endpoint prefix): a plain path such as
/// `/auth`, not `/` and not one of the other endpoints (or a parent or child of one).
pub(crate) fn validate_path(raw: &str) -> Result<String, String> {
    let path = raw.trim().trim_end_matches('/');
    if !path.starts_with('/') || !crate::path::is_plain(path) {
        return Err(format!(
            "{raw:?} must be a plain path under the endpoint prefix, like /auth"
        ));
    }
    let clash = RESERVED.iter().find(|r| {
        let under = |a: &str, b: &str| a.strip_prefix(b).is_some_and(|rest| rest.starts_with('/'));
        path == **r || under(path, r) || under(r, path)
    });
    match clash {
        Some(r) => Err(format!("{raw:?} clashes with the {r} endpoint")),
        None => Ok(path.to_owned()),
    }
}

/// Answers a forward-auth request; `envoy`: the Envoy form (`{forward auth path}{original
/// path}`), else the plain path.
pub(crate) fn check(shared: &Shared, parts: &Parts, envoy: bool) -> Response<Full<Bytes>> {
    let verified = session_token(&parts.headers, &shared.cookie.name)
        .and_then(|token| shared.sessions.verify(token));
    let err = match verified {
        Ok(identity) => {
            let mut res = Response::new(Full::new(Bytes::new()));
            set_identity_headers(res.headers_mut(), &identity);
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return res;
        }
        Err(err) => {
            crate::metrics::session_refused(err);
            err
        }
    };
    let original_path = match (envoy, &shared.paths.forward_auth) {
        (true, Some(auth)) => parts.uri.path().strip_prefix(auth.as_str()),
        _ => None,
    };
    let return_to = original_target(shared, parts, original_path);
    let login = login_url(shared, return_to.as_deref());
    // As at the gate: several session cookies would survive a new login, and loop forever.
    let redirect = err != SessionError::Ambiguous
        && (original_path.is_some() || redirect_requested(parts))
        && browser_navigation(shared, parts, original_path.is_some());
    if redirect {
        let mut res = see_other(&login);
        if err != SessionError::Missing {
            // A stale or forged cookie would otherwise be sent again after login.
            append_cookie(
                &mut res,
                &clear_cookie(&shared.cookie.name, "/", shared.cookie.secure),
            );
        }
        return res;
    }
    let mut res = SsoError::unauthorized(err.message())
        .with_param("token")
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&login) {
        res.headers_mut().insert(AUTH_REQUEST_REDIRECT, v);
    }
    res
}

/// The absolute login URL, returning to `return_to` (an already validated target) if any.
fn login_url(shared: &Shared, return_to: Option<&str>) -> String {
    let start = format!("{}{}/key/generate", shared.base_url, shared.paths.prefix);
    match return_to {
        Some(t) => format!("{start}?return_to={}", utf8_percent_encode(t, QUERY_VALUE)),
        None => start,
    }
}

/// Whether the query of the forward-auth request itself asks for a redirect
/// (`redirect=true` or `redirect=1`).
fn redirect_requested(parts: &Parts) -> bool {
    parts.uri.query().is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "redirect=true" | "redirect=1"))
    })
}

/// Whether the original request is a browser navigation: GET or HEAD (Traefik names the original
/// method in `X-Forwarded-Method`, believed from a trusted proxy; Envoy replays it), and an
/// `Accept` that prefers HTML.
fn browser_navigation(shared: &Shared, parts: &Parts, envoy: bool) -> bool {
    let forwarded_method = (!envoy && shared.trusted_proxies.peer_is_trusted(&parts.extensions))
        .then(|| parts.headers.get(FORWARDED_METHOD))
        .flatten();
    let navigation = match forwarded_method {
        Some(m) => m == "GET" || m == "HEAD",
        None => parts.method == Method::GET || parts.method == Method::HEAD,
    };
    navigation && prefers_html(&parts.headers)
}

/// Where the browser was going, validated: see the module docs.
fn original_target(shared: &Shared, parts: &Parts, original_path: Option<&str>) -> Option<String> {
    let trusted = shared.trusted_proxies.peer_is_trusted(&parts.extensions);
    let text = |name: &HeaderName| {
        trusted
            .then(|| parts.headers.get(name))
            .flatten()
            .and_then(|v| v.to_str().ok())
    };
    if let Some(path) = original_path {
        let uri = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        return absolute_or_path(shared, text(&FORWARDED_PROTO), text(&header::HOST), &uri);
    }
    if let Some(url) = text(&ORIGINAL_URL) {
        return validated(shared, url);
    }
    let uri = text(&FORWARDED_URI)?;
    absolute_or_path(shared, text(&FORWARDED_PROTO), text(&FORWARDED_HOST), uri)
}

/// `proto://host{uri}` when both are known, else `uri`, validated.
fn absolute_or_path(
    shared: &Shared,
    proto: Option<&str>,
    host: Option<&str>,
    uri: &str,
) -> Option<String> {
    match (proto, host) {
        (Some(proto), Some(host)) if uri.starts_with('/') => {
            validated(shared, &format!("{proto}://{host}{uri}"))
        }
        _ => validated(shared, uri),
    }
}

/// `target` if the redirect policy accepts it; else, for an absolute URL, its path if that is a
/// safe same-origin path (the browser comes back to this site); else nothing.
fn validated(shared: &Shared, target: &str) -> Option<String> {
    if let Some(ok) = shared.redirects.validate(target) {
        return Some(ok);
    }
    let scheme_len = ["https://", "http://"].iter().find_map(|s| {
        target
            .get(..s.len())
            .filter(|p| p.eq_ignore_ascii_case(s))
            .map(|_| s.len())
    })?;
    let rest = &target[scheme_len..];
    let path = &rest[rest.find('/')?..];
    same_origin_relative(path).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_paths() {
        assert_eq!(validate_path("/auth").unwrap(), "/auth");
        assert_eq!(validate_path("/forward/auth/").unwrap(), "/forward/auth");
        assert_eq!(validate_path("/verify").unwrap(), "/verify");
        for bad in [
            "",
            "/",
            "auth",
            "//auth",
            "/a/../b",
            "/login",
            "/callback",
            "/callback/x",
            "/cli",
            "/cli/poll",
            "/debug",
            "/key",
            "/get",
            "/logout",
            "/readiness",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn redirect_switch() {
        let parts = |uri: &str| http::Request::get(uri).body(()).unwrap().into_parts().0;
        assert!(redirect_requested(&parts("/sso/auth?redirect=true")));
        assert!(redirect_requested(&parts("/sso/auth?x=1&redirect=1")));
        assert!(!redirect_requested(&parts("/sso/auth")));
        assert!(!redirect_requested(&parts("/sso/auth?redirect=false")));
        assert!(!redirect_requested(&parts("/sso/auth?noredirect=true")));
    }
}

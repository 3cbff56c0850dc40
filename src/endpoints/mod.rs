//! The layer's own endpoints, and the answer to an unauthenticated request.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::Full;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tracing::Instrument;

use crate::error::SsoError;
use crate::future::EndpointFuture;
use crate::identity::Identity;
use crate::layer::Shared;
use crate::path::is_plain;
use crate::rate_limit::Action;
use crate::session::{SessionError, session_token};

mod admin_ui;
mod backchannel;
mod callback;
mod cli;
mod complete;
mod cookies;
mod debug;
mod flow;
pub(crate) mod forward_auth;
mod header_sign_in;
mod html;
mod login;
mod logout;
mod settings;

pub(crate) use self::cookies::{clear_cookie, session_cookie};
pub(crate) use self::html::html_escape;

/// One of the layer's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Login,
    /// The callback of the provider at this index (`/callback` is the first provider's,
    /// `/callback/{name}` every other one's).
    Callback(usize),
    /// `/debug/login` (only when the debug endpoints are on).
    DebugLogin,
    /// The debug callback of the provider at this index (as for [`Endpoint::Callback`]).
    DebugCallback(usize),
    /// `/cli/poll/{key}`.
    CliPoll,
    UiSettings,
    Readiness,
    Logout,
    /// Forward authentication for a reverse proxy; `envoy`: the Envoy form, the original path
    /// appended to the forward-auth path.
    ForwardAuth {
        envoy: bool,
    },
    /// The back-channel logout of the provider at this index (answered with its body by
    /// [`handle_with_body`], never by [`handle`]).
    BackchannelLogout(usize),
    /// A path under the prefix that is not an endpoint, or a method the endpoint does not take.
    NotFound,
    MethodNotAllowed,
}

impl Endpoint {
    /// The `endpoint` field of the request's span.
    fn name(self) -> &'static str {
        match self {
            Endpoint::Login => "login",
            Endpoint::Callback(_) => "callback",
            Endpoint::DebugLogin => "debug_login",
            Endpoint::DebugCallback(_) => "debug_callback",
            Endpoint::CliPoll => "cli_poll",
            Endpoint::UiSettings => "ui_settings",
            Endpoint::Readiness => "readiness",
            Endpoint::Logout => "logout",
            Endpoint::BackchannelLogout(_) => "backchannel_logout",
            Endpoint::NotFound => "not_found",
            Endpoint::MethodNotAllowed => "method_not_allowed",
            Endpoint::ForwardAuth { .. } => "forward_auth",
        }
    }

    /// The name of the provider the endpoint belongs to, when the path says.
    fn provider(self, shared: &Shared) -> Option<&str> {
        match self {
            Endpoint::Callback(i) | Endpoint::DebugCallback(i) | Endpoint::BackchannelLogout(i) => {
                shared.providers.get(i).map(|p| p.config.provider_name())
            }
            _ => None,
        }
    }
}

/// Which endpoint, if any, a request is for. Only plain paths under the prefix are endpoints;
/// everything under the prefix is answered by the layer (unknown ones with 404).
pub(crate) fn route(shared: &Shared, method: &Method, path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix(shared.paths.prefix.as_str())?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    if !is_plain(path) {
        return Some(Endpoint::NotFound);
    }
    let get = method == Method::GET || method == Method::HEAD;
    if let Some(auth) = &shared.paths.forward_auth
        && let Some(after) = path.strip_prefix(auth.as_str())
    {
        if after.is_empty() {
            return Some(if get {
                Endpoint::ForwardAuth { envoy: false }
            } else {
                Endpoint::MethodNotAllowed
            });
        }
        // Envoy replays the original method (without the body) on `{path}{original path}`.
        if after.starts_with('/') {
            return Some(Endpoint::ForwardAuth { envoy: true });
        }
    }
    let endpoint = match rest {
        "/key/generate" | "/login" => Endpoint::Login,
        "/callback" => Endpoint::Callback(0),
        other if other.starts_with("/callback/") => match callback_index(shared, &other[10..]) {
            Some(i) => Endpoint::Callback(i),
            None => return Some(Endpoint::NotFound),
        },
        // GET only: a HEAD would take the token and drop it with the body.
        other if other.starts_with("/cli/poll/") && !other[10..].contains('/') => {
            return Some(if method == Method::GET {
                Endpoint::CliPoll
            } else {
                Endpoint::MethodNotAllowed
            });
        }
        _ if !shared.debug_endpoints && rest.starts_with("/debug/") => {
            return Some(Endpoint::NotFound);
        }
        "/debug/login" => Endpoint::DebugLogin,
        "/debug/callback" => Endpoint::DebugCallback(0),
        other if other.starts_with("/debug/callback/") => {
            match callback_index(shared, &other[16..]) {
                Some(i) => Endpoint::DebugCallback(i),
                None => return Some(Endpoint::NotFound),
            }
        }
        other if other.starts_with("/backchannel-logout") => {
            if let Some(e) = backchannel::route(shared, method, other) {
                return Some(e);
            }
            return Some(Endpoint::NotFound);
        }
        "/get/ui_settings" => Endpoint::UiSettings,
        "/readiness" => Endpoint::Readiness,
        "/logout" => {
            return Some(if get || method == Method::POST {
                Endpoint::Logout
            } else {
                Endpoint::MethodNotAllowed
            });
        }
        _ => return Some(Endpoint::NotFound),
    };
    Some(if get {
        endpoint
    } else {
        Endpoint::MethodNotAllowed
    })
}

/// The index of the provider whose callback is `/callback/{name}`: every provider but the
/// first (whose callback is plain `/callback`).
fn callback_index(shared: &Shared, name: &str) -> Option<usize> {
    shared
        .providers
        .iter()
        .skip(1)
        .position(|p| p.config.provider_name() == name)
        .map(|i| i + 1)
}

/// Answers an endpoint.
pub(crate) fn handle(shared: Arc<Shared>, endpoint: Endpoint, parts: Parts) -> EndpointFuture {
    Box::pin(async move {
        if let Some(res) = rate_limited(&shared, endpoint, &parts) {
            return res;
        }
        if shared.hooks.admin_ui_disabled
            && matches!(endpoint, Endpoint::Login | Endpoint::Callback(_))
        {
            return admin_ui::disabled();
        }
        let result = match endpoint {
            Endpoint::Login => login::start(&shared, &parts, false).await,
            Endpoint::Callback(index) => callback::finish(&shared, index, &parts, false).await,
            Endpoint::DebugLogin => login::start(&shared, &parts, true).await,
            Endpoint::DebugCallback(i) => callback::finish(&shared, i, &parts, true).await,
            Endpoint::CliPoll => cli::poll(&shared, &parts).await,
            Endpoint::UiSettings => settings::ui_settings(&shared, &parts),
            Endpoint::Readiness => settings::readiness(&shared, &parts).await,
            Endpoint::Logout => logout::logout(&shared, &parts).await,
            Endpoint::ForwardAuth { envoy } => Ok(forward_auth::check(&shared, &parts, envoy)),
            Endpoint::NotFound | Endpoint::BackchannelLogout(_) => {
                Err(SsoError::not_found("no such SSO endpoint"))
            }
            Endpoint::MethodNotAllowed => Err(SsoError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            )),
        };
        result.unwrap_or_else(SsoError::into_response)
    })
}

/// Answers an endpoint, in an `sso_endpoint` span ([`crate::metrics`]): the back-channel
/// logout with the request body, every other endpoint through [`handle`]. The response carries
/// the request id as `X-Request-Id`.
pub(crate) fn handle_with_body<B>(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    parts: Parts,
    body: B,
) -> EndpointFuture
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let id = crate::metrics::request_id(&parts.headers);
    let span = crate::metrics::endpoint_span(endpoint.name(), endpoint.provider(&shared), &id);
    let answer = match endpoint {
        Endpoint::BackchannelLogout(index) => backchannel::handle(shared, index, parts, body),
        other => handle(shared, other, parts),
    };
    Box::pin(async move {
        let mut res = answer.instrument(span.clone()).await;
        crate::metrics::finish_endpoint(&span, &id, &mut res);
        res
    })
}

/// Takes a token from the client's bucket for a login start, a callback or a CLI poll; a 429
/// with `Retry-After` when it is empty.
fn rate_limited(
    shared: &Shared,
    endpoint: Endpoint,
    parts: &Parts,
) -> Option<Response<Full<Bytes>>> {
    let action = match endpoint {
        Endpoint::Login | Endpoint::DebugLogin => Action::Login,
        Endpoint::Callback(_) | Endpoint::DebugCallback(_) => Action::Callback,
        Endpoint::CliPoll => Action::CliPoll,
        _ => return None,
    };
    let peer = shared
        .trusted_proxies
        .client_ip(&parts.extensions, &parts.headers);
    let retry_after = shared.rate_limiter.check(action, peer).err()?;
    tracing::info!(client = ?peer.ip(), ?action, retry_after, "SSO rate limit reached");
    crate::metrics::rate_limited(action);
    let what = if action == Action::CliPoll {
        "polls"
    } else {
        "login attempts"
    };
    let err = SsoError::too_many_requests(format!(
        "too many {what} from this address: try again in {retry_after} s"
    ));
    if let Some(provider) = endpoint.provider(shared) {
        let debug = matches!(endpoint, Endpoint::DebugCallback(_));
        crate::metrics::callback_finished(provider, Err(&err), debug);
    }
    let mut res = err.into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    Some(res)
}

/// Whether a browser says another site sent this request (`Sec-Fetch-Site: cross-site`).
pub(crate) fn cross_site(headers: &http::HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

/// The session of a request to an endpoint that needs one (settings, readiness).
pub(crate) fn require_session(shared: &Shared, parts: &Parts) -> Result<Identity, SsoError> {
    session_token(&parts.headers, &shared.cookie.name)
        .and_then(|token| shared.sessions.verify(token))
        .map_err(|e| {
            crate::metrics::session_refused(e);
            SsoError::unauthorized(e.message())
        })
}

/// The answer to a protected request without a valid session: a 303 to login for a browser that
/// asked for a page, 401 JSON for everything else.
pub(crate) fn unauthenticated<B>(
    shared: &Shared,
    req: &Request<B>,
    err: SessionError,
) -> Response<Full<Bytes>> {
    crate::metrics::session_refused(err);
    let method = req.method();
    // Several session cookies (one planted with `Domain=` from a sibling host) survive our
    // clearing and a new login alike: sending the browser to login would loop forever, so it gets
    // the error instead, like an API client.
    if err != SessionError::Ambiguous
        && (method == Method::GET || method == Method::HEAD)
        && prefers_html(req.headers())
    {
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let location = format!(
            "{}/key/generate?return_to={}",
            shared.paths.prefix,
            utf8_percent_encode(target, QUERY_VALUE)
        );
        let mut res = see_other(&location);
        if err != SessionError::Missing {
            // A stale or forged cookie would otherwise be sent again after login.
            append_cookie(
                &mut res,
                &clear_cookie(&shared.cookie.name, "/", shared.cookie.secure),
            );
        }
        return res;
    }
    SsoError::unauthorized(err.message())
        .with_param("token")
        .into_response()
}

/// Characters escaped in a query parameter value.
pub(crate) const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'=')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'|')
    .add(b'^')
    .add(b'\'');

/// Whether the client prefers an HTML page over JSON (`Accept` ranks `text/html` at least as
/// high as `application/json`, and above zero).
pub(crate) fn prefers_html(headers: &http::HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut html = 0.0f32;
    let mut json = 0.0f32;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            "application/json" => json = json.max(q),
            _ => {}
        }
    }
    html > 0.0 && html >= json
}

/// A 303 See Other to `location`, not cacheable.
pub(crate) fn see_other(location: &str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            return SsoError::internal("redirect target is not a valid header value")
                .into_response();
        }
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(value).unwrap_or_default(),
    )));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Adds a `Set-Cookie` header.
pub(crate) fn append_cookie(res: &mut Response<Full<Bytes>>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The most query parameters an endpoint request may carry. Logins and callbacks use a handful
/// (an identity provider adds a few of its own); more is refused before it costs anything.
pub(crate) const MAX_QUERY_PARAMS: usize = 64;

/// The query parameters of a request. A parameter given twice is an error (no parameter
/// pollution on the login and callback endpoints), and so are more than [`MAX_QUERY_PARAMS`].
pub(crate) fn query_params(parts: &Parts) -> Result<Vec<(String, String)>, SsoError> {
    parse_query(parts.uri.query().unwrap_or(""), &mut 0)
}

/// [`query_params`] of `query`; `steps` counts the pairs decoded and the key lookups made, so a
/// test can see the work stays bounded whatever the query.
///
/// One pass: each pair is decoded once and its key looked up once in a hash set of the keys
/// seen so far; decoding stops at the first pair past the bound.
pub(crate) fn parse_query(
    query: &str,
    steps: &mut usize,
) -> Result<Vec<(String, String)>, SsoError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        *steps += 1;
        if out.len() == MAX_QUERY_PARAMS {
            return Err(SsoError::bad_request(format!(
                "more than {MAX_QUERY_PARAMS} query parameters"
            )));
        }
        *steps += 1;
        if !seen.insert(k.clone().into_owned()) {
            return Err(SsoError::bad_request(format!(
                "query parameter {:?} given more than once",
                html_escape(&k)
            )));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// The value of parameter `name`.
pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(header::ACCEPT, v.parse().unwrap());
            m
        };
        assert!(prefers_html(&h(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!prefers_html(&h("application/json")));
        assert!(!prefers_html(&h("*/*")));
        assert!(!prefers_html(&h("text/html;q=0.5, application/json")));
        assert!(!prefers_html(&h("text/html;q=0")));
        assert!(!prefers_html(&http::HeaderMap::new()));
    }

    #[test]
    fn query_parsing_is_linear_and_bounded() {
        // 64 kB of distinct keys: refused after the bound, having looked at no more than it.
        let query: String = (0..8000)
            .map(|i| format!("k{i:05}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(query.len() >= 64 * 1024);
        let mut steps = 0;
        let err = parse_query(&query, &mut steps).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.message().contains("more than 64"), "{}", err.message());
        assert!(steps <= 2 * MAX_QUERY_PARAMS + 1, "{steps} steps");

        // Up to the bound: every pair, each looked at once (linear, not quadratic).
        let query: String = (0..MAX_QUERY_PARAMS)
            .map(|i| format!("k{i}=v{i}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut steps = 0;
        let params = parse_query(&query, &mut steps).unwrap();
        assert_eq!(params.len(), MAX_QUERY_PARAMS);
        assert_eq!(param(&params, "k0"), Some("v0"));
        assert_eq!(param(&params, "k63"), Some("v63"));
        assert_eq!(steps, 2 * MAX_QUERY_PARAMS);

        // Repeated keys are still refused, wherever the repeat is.
        let query = format!("{query}&k0=again");
        let err = parse_query(&query, &mut 0).unwrap_err();
        assert!(err.message().contains("more than"), "{}", err.message());
        let err = parse_query("state=a&code=b&state=c", &mut 0).unwrap_err();
        assert!(
            err.message().contains("more than once"),
            "{}",
            err.message()
        );
        // Percent-encoded spellings of one key are the same key.
        assert!(parse_query("state=a&st%61te=b", &mut 0).is_err());
        assert_eq!(parse_query("", &mut 0).unwrap(), vec![]);
    }
}

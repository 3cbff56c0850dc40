//! Shared fixtures for the flow tests: an inner service that reports what it saw, request
//! builders, and response readers.
#![allow(dead_code)]

pub mod oidc_provider;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;
use tower::util::BoxCloneService;
use tower_sso::session::NewSession;
use tower_sso::{Identity, SsoLayer, SsoLayerBuilder, UserRole};

/// The app under test: the layer around [`Upstream`].
pub type App = BoxCloneService<
    Request<Full<Bytes>>,
    Response<tower_sso::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

/// A response of [`App`].
pub type AppResponse = Response<tower_sso::ResponseBody<Full<Bytes>>>;

/// A session secret for tests.
pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";
/// The base URL the test layers are configured with.
pub const BASE_URL: &str = "https://gateway.example.com";

/// The app behind the layer in tests: answers 200 with a JSON report of the identity it received
/// and every `x-forwarded-*` header that reached it. Counts its calls.
#[derive(Clone, Default)]
pub struct Upstream {
    pub calls: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The app wrapped in `layer`, boxed for `oneshot`.
    pub fn behind(&self, layer: &SsoLayer) -> App {
        let calls = self.calls.clone();
        let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let identity = req.extensions().get::<Identity>().cloned();
                let forwarded: serde_json::Map<String, serde_json::Value> = req
                    .headers()
                    .iter()
                    .filter(|(k, _)| {
                        let k = k.as_str().to_ascii_lowercase().replace('_', "-");
                        k.starts_with("x-forwarded-") && k != "x-forwarded-for"
                    })
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").into()))
                    .collect();
                let body = serde_json::json!({
                    "path": req.uri().path(),
                    "identity": identity,
                    "forwarded": forwarded,
                });
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body.to_string()))))
            }
        });
        BoxCloneService::new(
            tower::ServiceBuilder::new()
                .layer(layer.clone())
                .service(inner),
        )
    }
}

/// A builder with the test base URL and secret.
pub fn builder() -> SsoLayerBuilder {
    SsoLayer::builder()
        .base_url(BASE_URL)
        .session_secret(SECRET)
}

/// A session for alice.
pub fn alice() -> NewSession {
    NewSession {
        user_id: "alice".into(),
        email: Some("alice@example.com".into()),
        display_name: Some("Alice Example".into()),
        role: UserRole::InternalUser,
        team_ids: vec!["team-a".into(), "team-b".into()],
        provider: Some("generic".into()),
        attributes: serde_json::Map::new(),
    }
}

/// Issues a session token for `session`.
pub fn token_for(layer: &SsoLayer, session: NewSession) -> String {
    layer.sessions().issue(session).expect("issue session").0
}

/// `GET path` with the given headers.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::get(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

/// Sends one request through `svc`.
pub async fn send(svc: &App, req: Request<Full<Bytes>>) -> AppResponse {
    svc.clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|never| match never {})
}

/// The body of a response as JSON.
pub async fn json_body<B>(res: Response<B>) -> serde_json::Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
}

/// Asserts a 401 with the LiteLLM error shape, and returns the message.
pub async fn assert_401_json<B>(res: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let v = json_body(res).await;
    let e = &v["error"];
    assert_eq!(e["code"], "401", "{v}");
    assert!(e["type"].is_string() && e.get("param").is_some(), "{v}");
    e["message"].as_str().expect("message").to_owned()
}

/// Every `Set-Cookie` value of a response.
pub fn set_cookies<B>(res: &Response<B>) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect()
}

/// The value of cookie `name` from a response's `Set-Cookie` headers (None if absent or cleared).
pub fn cookie_value<B>(res: &Response<B>, name: &str) -> Option<String> {
    set_cookies(res).into_iter().find_map(|c| {
        let first = c.split(';').next()?.trim().to_owned();
        let (k, v) = first.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// The `Location` header.
pub fn location<B>(res: &Response<B>) -> String {
    res.headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// The name of the cookie that binds a login to the browser that started it.
pub const FLOW_COOKIE: &str = "tower_sso_flow";

/// A plain-HTTP client, the "browser" side of logins against identity providers on loopback.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A new [`HttpClient`].
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `request` with `client` and reads the answer as JSON.
pub async fn fetch_json(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, serde_json::Value), String> {
    let uri = request.uri().clone();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{uri}: reading body: {e}"))?
        .to_bytes();
    let json = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{uri}: {status}, body is not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok((status, json))
}

/// The value of query parameter `name` in the absolute URL `url` (first occurrence).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap_or_else(|e| panic!("not an absolute URL ({e}): {url}"))
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` with query parameter `name` set to `value` (other parameters kept, in order).
pub fn with_query_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("absolute URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name { value.into() } else { v };
            (k.into_owned(), v.into_owned())
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.into()
}

/// A login started through the layer: where it sends the browser, and the flow cookie it set.
#[derive(Debug, Clone)]
pub struct LoginStart {
    /// The `Location` of the layer's 303: the IdP's authorization endpoint with our parameters.
    pub authorize_url: String,
    /// The value of the [`FLOW_COOKIE`].
    pub flow_cookie: String,
}

/// `GET start_path` (for example `/sso/key/generate?return_to=/x`) through `app`; asserts the
/// 303 to the identity provider with a flow cookie.
pub async fn start_login(app: &App, start_path: &str) -> LoginStart {
    let res = send(app, get(start_path, &[])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "GET {start_path}");
    let authorize_url = location(&res);
    assert!(
        authorize_url.starts_with("http://") || authorize_url.starts_with("https://"),
        "GET {start_path}: Location {authorize_url:?} is not the IdP"
    );
    let flow_cookie = cookie_value(&res, FLOW_COOKIE).unwrap_or_else(|| {
        panic!(
            "GET {start_path}: no flow cookie in {:?}",
            set_cookies(&res)
        )
    });
    LoginStart {
        authorize_url,
        flow_cookie,
    }
}

/// The path and query of the absolute URL `url` (how a request for it reaches the app).
pub fn path_and_query(url: &str) -> String {
    let parsed =
        url::Url::parse(url).unwrap_or_else(|e| panic!("not an absolute URL ({e}): {url}"));
    match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    }
}

/// The browser arriving back at the layer: `GET` the path and query of `callback_url` through
/// `app`, with the flow cookie if given.
pub async fn finish_login(app: &App, callback_url: &str, flow_cookie: Option<&str>) -> AppResponse {
    let cookie = flow_cookie.map(|c| format!("{FLOW_COOKIE}={c}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    send(app, get(&path_and_query(callback_url), &headers)).await
}

/// `GET authorize_url` over real HTTP at a provider that answers at once with a redirect (the
/// `MockIdp` in its default `LoginMode::Auto`); returns the absolute `Location`.
pub async fn authorize_redirect(idp: &HttpClient, authorize_url: &str) -> String {
    let request = get(authorize_url, &[]);
    let response = idp
        .request(request)
        .await
        .unwrap_or_else(|e| panic!("GET {authorize_url}: {e}"));
    let status = response.status();
    let target = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match target {
        Some(target) if status.is_redirection() => url::Url::parse(authorize_url)
            .and_then(|base| base.join(&target))
            .unwrap_or_else(|e| panic!("GET {authorize_url}: bad Location {target:?}: {e}"))
            .into(),
        _ => {
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            panic!(
                "GET {authorize_url}: {status} instead of a redirect: {:?}",
                body.map(|b| String::from_utf8_lossy(&b).into_owned())
            )
        }
    }
}

/// A whole login through `app` against a `MockIdp` in `LoginMode::Auto`: `GET start_path` at the
/// layer, the IdP's authorization endpoint over real HTTP with `idp`, then the callback back
/// through the layer with the flow cookie. Returns the layer's answer to the callback.
pub async fn mock_login(app: &App, idp: &HttpClient, start_path: &str) -> AppResponse {
    let start = start_login(app, start_path).await;
    let callback = authorize_redirect(idp, &start.authorize_url).await;
    finish_login(app, &callback, Some(&start.flow_cookie)).await
}

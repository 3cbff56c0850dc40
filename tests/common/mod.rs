//! Shared fixtures for the flow tests: an inner service that reports what it saw, request
//! builders, and response readers.
#![allow(dead_code)]

pub mod log_capture;
pub mod nginx_server;
pub mod oidc_provider;
pub mod postgres_server;
pub mod redis_server;
pub mod servers;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
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
                    "cookie": req.headers().get("cookie").and_then(|v| v.to_str().ok()),
                    "authorization": req.headers().get("authorization").and_then(|v| v.to_str().ok()),
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
pub async fn send(
    svc: &App,
    req: Request<Full<Bytes>>,
) -> Response<tower_sso::ResponseBody<Full<Bytes>>> {
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

// ---------------------------------------------------------------------------------------------
// Login flows against `MockIdp`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_sso::http::{HttpClient, HttpClientConfig, HttpRequest, default_client};
use tower_sso::provider::Provider;
use tower_sso::store::{MemoryUserStore, StoreRequest, StoreResponse, UserRecord};
use tower_sso::testing::MockIdp;
use url::Url;

/// The response type of [`App`].
pub type AppResponse = Response<tower_sso::ResponseBody<Full<Bytes>>>;

/// The callback URL of the test layers (base URL + `/sso/callback`).
pub const CALLBACK_URL: &str = "https://gateway.example.com/sso/callback";
/// The debug login's callback URL of the test layers.
pub const DEBUG_CALLBACK_URL: &str = "https://gateway.example.com/sso/debug/callback";
/// The flow cookie's name.
pub const FLOW_COOKIE: &str = "__Host-tower_sso_flow";
/// The flow cookie's name when the base URL is plain http (the e2e tests).
pub const FLOW_COOKIE_HTTP: &str = "tower_sso_flow";

/// A provider pointing at `idp` by discovery.
pub fn oidc(idp: &MockIdp) -> Provider {
    Provider::oidc(idp.issuer(), idp.client_id(), idp.client_secret())
}

/// A builder with the test base URL and secret and `idp` as the only provider.
pub fn flow_builder(idp: &MockIdp) -> SsoLayerBuilder {
    builder().provider(oidc(idp))
}

/// A browser in front of the app: keeps the cookies the app sets (by name, ignoring paths) and
/// sends them back on every request to the app; talks to the identity provider over real HTTP.
pub struct Browser {
    pub app: App,
    pub cookies: BTreeMap<String, String>,
    http: Client<HttpConnector, Empty<Bytes>>,
}

/// The steps of a login that has been started and authorized at the IdP, before the callback.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The IdP authorization URL the app redirected to.
    pub authorize_url: Url,
    /// Where the IdP redirected back to (our callback URL with `code`/`error`, `state`, `iss`).
    pub callback_url: Url,
    /// The flow cookie the login start set.
    pub flow_cookie: String,
}

impl Authorized {
    /// A query parameter of the callback URL.
    pub fn callback_param(&self, name: &str) -> Option<String> {
        query_param(&self.callback_url, name)
    }

    /// A query parameter of the authorization URL.
    pub fn authorize_param(&self, name: &str) -> Option<String> {
        query_param(&self.authorize_url, name)
    }

    /// The app-relative callback request target (`/sso/callback?...`).
    pub fn callback_target(&self) -> String {
        relative(&self.callback_url)
    }
}

/// A query parameter of `url`.
pub fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Path and query of `url`.
pub fn relative(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

impl Browser {
    /// A browser without cookies in front of `app`.
    pub fn new(app: App) -> Self {
        Browser {
            app,
            cookies: BTreeMap::new(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A browser in front of `layer` around a fresh [`Upstream`].
    pub fn for_layer(layer: &SsoLayer) -> Self {
        Self::new(Upstream::default().behind(layer))
    }

    /// The current value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Sets (or with `None` removes) a cookie, as a tampering user would.
    pub fn set_cookie(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => self.cookies.insert(name.to_owned(), v.to_owned()),
            None => self.cookies.remove(name),
        };
    }

    /// `GET target` at the app with the stored cookies; stores the cookies the answer sets or
    /// clears.
    pub async fn get(&mut self, target: &str) -> AppResponse {
        let mut b = Request::get(target);
        if !self.cookies.is_empty() {
            let header = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            b = b.header(header::COOKIE, header);
        }
        let res = send(&self.app, b.body(Full::new(Bytes::new())).expect("request")).await;
        for c in set_cookies(&res) {
            let first = c.split(';').next().unwrap_or("").trim();
            let Some((k, v)) = first.split_once('=') else {
                continue;
            };
            let cleared = v.is_empty() || c.to_ascii_lowercase().contains("max-age=0");
            if cleared {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        res
    }

    /// Starts a login (`/sso/key/generate?{query}`), asserting a 303 to `idp`'s authorization
    /// endpoint and a flow cookie; returns the authorization URL.
    pub async fn start(&mut self, idp: &MockIdp, query: &str) -> Url {
        let target = if query.is_empty() {
            "/sso/key/generate".to_owned()
        } else {
            format!("/sso/key/generate?{query}")
        };
        let res = self.get(&target).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "login start: {target}");
        assert!(
            cookie_value(&res, FLOW_COOKIE).is_some(),
            "login start sets no flow cookie: {:?}",
            set_cookies(&res)
        );
        let url = Url::parse(&location(&res)).expect("authorization URL");
        assert!(
            url.as_str()
                .starts_with(&format!("{}/authorize?", idp.issuer())),
            "{url}"
        );
        url
    }

    /// Fetches the IdP authorization URL over real HTTP, as the browser would, and returns where
    /// the IdP redirected back to (asserting a 303 to our callback URL).
    pub async fn authorize_at_idp(&self, authorize_url: &Url) -> Url {
        let uri: http::Uri = authorize_url.as_str().parse().expect("uri");
        let res = self.http.get(uri).await.expect("IdP reachable");
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "IdP /authorize");
        let loc = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("IdP redirect location")
            .to_owned();
        // `/sso/callback` for the first provider, `/sso/callback/{name}` for the others (and
        // the same under `/sso/debug/` for the debug login).
        assert!(
            [CALLBACK_URL, DEBUG_CALLBACK_URL].iter().any(|c| {
                loc.starts_with(&format!("{c}?")) || loc.starts_with(&format!("{c}/"))
            }),
            "{loc}"
        );
        Url::parse(&loc).expect("callback URL")
    }

    /// Starts a login and lets the IdP authorize it; stops before the callback.
    pub async fn authorize(&mut self, idp: &MockIdp, query: &str) -> Authorized {
        let authorize_url = self.start(idp, query).await;
        let flow_cookie = self.cookie(FLOW_COOKIE).expect("flow cookie").to_owned();
        let callback_url = self.authorize_at_idp(&authorize_url).await;
        Authorized {
            authorize_url,
            callback_url,
            flow_cookie,
        }
    }

    /// Delivers the IdP's redirect to the app's callback, with whatever cookies the browser holds.
    pub async fn callback(&mut self, flow: &Authorized) -> AppResponse {
        self.get(&flow.callback_target()).await
    }

    /// A whole login: start (with `query`), IdP, callback. Returns the callback's answer.
    pub async fn login(&mut self, idp: &MockIdp, query: &str) -> AppResponse {
        let flow = self.authorize(idp, query).await;
        self.callback(&flow).await
    }

    /// `GET /whoami` with the browser's cookies: the identity the app received (asserts 200).
    pub async fn whoami(&mut self) -> serde_json::Value {
        let res = self.get("/whoami").await;
        assert_eq!(res.status(), StatusCode::OK, "whoami with the session");
        json_body(res).await["identity"].clone()
    }
}

/// Asserts a successful callback: a 303 to `target`, a `token` cookie with the session
/// attributes, the flow cookie cleared. Returns the token.
pub fn assert_logged_in(res: &AppResponse, target: &str) -> String {
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "callback did not succeed: {:?}",
        res.headers()
    );
    assert_eq!(location(res), target);
    assert_flow_cookie_cleared(res);
    cookie_value(res, "token").expect("token cookie")
}

/// Asserts the answer clears the (`__Host-`, so `Path=/`) flow cookie.
pub fn assert_flow_cookie_cleared<B>(res: &Response<B>) {
    let cookies = set_cookies(res);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with(&format!("{FLOW_COOKIE}=;"))
                && c.contains("Max-Age=0")
                && c.split("; ").any(|a| a == "Path=/")),
        "flow cookie not cleared: {cookies:?}"
    );
}

/// Asserts a refused callback: `status` with a JSON error, no session cookie, the flow cookie
/// cleared. Returns the message, which must not carry HTML or a JWT.
pub async fn assert_refused(res: AppResponse, status: StatusCode) -> String {
    assert_eq!(res.status(), status, "{:?}", res.headers());
    assert_eq!(
        cookie_value(&res, "token"),
        None,
        "a refused login set a session"
    );
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    let v = json_body(res).await;
    assert_eq!(v["error"]["code"], status.as_u16().to_string(), "{v}");
    let msg = v["error"]["message"].as_str().expect("message").to_owned();
    assert!(!msg.contains('<') && !msg.contains('>'), "HTML in {msg:?}");
    assert!(!msg.contains("eyJ"), "a JWT in {msg:?}");
    msg
}

/// Like [`assert_refused`] for a callback, also checking that the flow cookie is cleared.
pub async fn assert_callback_refused(res: AppResponse, status: StatusCode) -> String {
    assert_flow_cookie_cleared(&res);
    assert_refused(res, status).await
}

/// The user `id` in `store`.
pub async fn stored_user(store: &MemoryUserStore, id: &str) -> Option<UserRecord> {
    match store
        .clone()
        .oneshot(StoreRequest::FindUserById(id.to_owned()))
        .await
        .expect("store answers")
    {
        StoreResponse::User(u) => u,
        other => panic!("unexpected store answer {other:?}"),
    }
}

/// One outbound request as [`recording_client`] saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: http::Method,
    pub url: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

/// The default IdP client, wrapped to record every request it sends (headers and body too,
/// which [`MockIdp`] does not record).
pub fn recording_client(cfg: &HttpClientConfig) -> (HttpClient, Arc<Mutex<Vec<SeenRequest>>>) {
    let inner = default_client(cfg);
    let seen: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
    let log = seen.clone();
    let svc = tower::service_fn(move |req: HttpRequest| {
        log.lock().unwrap().push(SeenRequest {
            method: req.method().clone(),
            url: req.uri().to_string(),
            headers: req.headers().clone(),
            body: String::from_utf8_lossy(req.body()).into_owned(),
        });
        inner.clone().oneshot(req)
    });
    (tower::util::BoxCloneSyncService::new(svc), seen)
}

/// The recorded requests to URLs ending in `path`.
pub fn seen_to(seen: &Arc<Mutex<Vec<SeenRequest>>>, path: &str) -> Vec<SeenRequest> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|r| r.url.split('?').next().unwrap_or("").ends_with(path))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Logins driven at the app level (used by the oidc-provider e2e and the open-redirect corpus).

/// A plain-HTTP client, the "browser" side of logins against identity providers on loopback.
pub type PlainClient = Client<HttpConnector, Full<Bytes>>;

/// A new [`PlainClient`].
pub fn http_client() -> PlainClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `request` with `client` and reads the answer as JSON.
pub async fn fetch_json(
    client: &PlainClient,
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
pub fn url_param(url: &str, name: &str) -> Option<String> {
    query_param(&absolute(url), name)
}

/// Parses an absolute URL (panics with the text otherwise).
fn absolute(url: &str) -> Url {
    Url::parse(url).unwrap_or_else(|e| panic!("not an absolute URL ({e}): {url}"))
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
    /// The value of the [`FLOW_COOKIE_HTTP`].
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
    let flow_cookie = cookie_value(&res, FLOW_COOKIE_HTTP).unwrap_or_else(|| {
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
    relative(&absolute(url))
}

/// The browser arriving back at the layer: `GET` the path and query of `callback_url` through
/// `app`, with the flow cookie if given.
pub async fn finish_login(app: &App, callback_url: &str, flow_cookie: Option<&str>) -> AppResponse {
    let cookie = flow_cookie.map(|c| format!("{FLOW_COOKIE_HTTP}={c}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    send(app, get(&path_and_query(callback_url), &headers)).await
}

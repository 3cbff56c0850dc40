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

//! The forward-auth server: the layer in front of a service that knows nothing else, so a
//! reverse proxy (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`) can ask it
//! whether a request has a session, and send browsers through its login. Shared by
//! `examples/forward_auth.rs` and `tests/nginx_forward_auth.rs`, so the test drives exactly the
//! server the example runs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_sso::testing::MockUser;
use tower_sso::{ClientAddr, ConfigErrors, SsoLayer, SsoLayerBuilder};

/// The users of the built-in OpenID provider (the first one is who `LoginMode::Auto` signs in).
pub fn builtin_users() -> Vec<MockUser> {
    vec![
        MockUser::alice().claim("groups", vec!["engineering", "admins"]),
        MockUser::new("bob")
            .claim("email", "bob@example.com")
            .claim("email_verified", true)
            .claim("preferred_username", "bob")
            .claim("name", "Bob Builder")
            .claim("groups", vec!["engineering"]),
    ]
}

/// The settings where the environment says nothing: `PROXY_BASE_URL` is the proxy's public URL
/// (the login and its callback go through the proxy), and the proxy on loopback is trusted to
/// say where the browser was going (`SSO_TRUSTED_PROXIES`).
pub fn default_settings(proxy_base_url: &str) -> HashMap<String, String> {
    let mut defaults = HashMap::new();
    defaults.insert("PROXY_BASE_URL".into(), proxy_base_url.to_owned());
    defaults.insert("SSO_TRUSTED_PROXIES".into(), "127.0.0.1,::1".into());
    defaults
}

/// The claim mappings for the built-in provider's users (added when it is used).
pub fn builtin_provider_settings(defaults: &mut HashMap<String, String>) {
    defaults.insert("GENERIC_TEAM_IDS_JWT_FIELD".into(), "groups".into());
    defaults.insert("GENERIC_USER_DISPLAY_NAME_ATTRIBUTE".into(), "name".into());
}

/// The layer, from LiteLLM-style settings (`lookup` answers each variable). After login without
/// a return target the browser lands on `/` (at the proxy).
pub fn layer(lookup: impl Fn(&str) -> Option<String>) -> Result<SsoLayer, ConfigErrors> {
    SsoLayerBuilder::from_env_vars(lookup).ui_path("/").build()
}

/// Answers every connection on `listener` with the layer around a service that answers 404:
/// everything useful is one of the layer's endpoints (`/sso/auth`, the login, the callback,
/// logout). Each request carries its connection's peer address ([`ClientAddr`]), which the
/// layer needs to trust the proxy. Runs until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, sso: SsoLayer) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let svc = ServiceBuilder::new()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                req
            })
            .layer(sso.clone())
            .service_fn(not_found);
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                .await;
        });
    }
}

async fn not_found(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *res.status_mut() = StatusCode::NOT_FOUND;
    Ok(res)
}

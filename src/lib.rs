//! Single sign-on for any hyper or axum service, as one [`tower::Layer`].
//!
//! `tower-sso` rebuilds the SSO module of the LiteLLM proxy for Rust. [`SsoLayer`] serves the SSO
//! endpoints itself, checks the session on every protected route, and forwards authenticated
//! requests with the user's [`Identity`] in the request extensions.
//!
//! # What the layer does with a request
//!
//! 1. **Its own endpoints** (under `{SERVER_ROOT_PATH}/sso`), answered by the layer, never forwarded:
//!    - `GET /sso/key/generate` starts a login: a random single-use `state`, a PKCE S256 verifier
//!      and a `nonce` go into the [verifier cache](cache) for 600 s under a random flow id (so
//!      that even a static `state` cannot make two logins collide), an HttpOnly flow cookie
//!      signed for that purpose carries the flow id and a hash of the state and binds the login
//!      to this browser, and the browser is sent to the identity provider. A
//!      `return_to` parameter says where to land afterwards (validated: relative paths on our
//!      origin, or absolute URLs on [allowed domains](SsoLayerBuilder::allowed_redirect_domains));
//!      it travels in the signed flow cookie, so the cached record stays small and fixed-size.
//!    - `GET /sso/callback` checks the flow cookie against `state` and takes the flow record
//!      (single use) *before* anything is redeemed, checks the `iss` response parameter (RFC 9207),
//!      exchanges the code, verifies the id_token (JWKS signature, `iss`, `aud`, `exp`, `iat`,
//!      `nonce`), fetches userinfo (whose `sub` must match), maps claims to a user
//!      ([`claims`]), applies the [access policy](policy), upserts the user through the
//!      [user store](store), sets the `token` session cookie and redirects.
//!    - `GET /sso/get/ui_settings` and `GET /sso/readiness` (both need a session), and
//!      `GET|POST /sso/logout`.
//!    - `GET /sso/auth`, forward authentication for nginx `auth_request`, Traefik `forwardAuth`
//!      and Envoy `ext_authz`: 200 with the identity headers for a valid session, else 401 with
//!      the login URL ([`SsoLayerBuilder::forward_auth_path`]).
//!
//!    Login starts and callbacks are [rate limited](SsoLayerBuilder::rate_limits) per client
//!    ([`ClientAddr`], axum's `ConnectInfo`, or a
//!    [trusted proxy](SsoLayerBuilder::trusted_proxies)'s `X-Forwarded-For`).
//! 2. **Public paths** ([`SsoLayerBuilder::public_paths`]) go straight through.
//! 3. **Everything else is protected.** The session token comes from the `token` cookie or an
//!    `Authorization: Bearer` header and is verified ([`session`]). With a valid session the
//!    request reaches the inner service with an [`Identity`] in its extensions (and, when
//!    configured, `X-Forwarded-User`/`-Email`/`-Groups`/`-Preferred-Username` headers; inbound copies of those are
//!    always removed). Without one, a browser (`Accept: text/html`) gets a 303 to login that
//!    remembers where it was going, and anything else gets 401 with a JSON body
//!    `{"error": {"message", "type", "param", "code"}}`.
//!
//! Paths are matched only when they are *plain*: no dot segments, no empty segments, no `;`, no
//! backslash and no percent-escape. `/health/../whoami`, `/health%2F..%2Fwhoami` or
//! `/health;x/../whoami` are therefore never public, whatever the inner service makes of them.
//!
//! The layer's error type is the inner service's and every rejection is a response, so axum
//! takes it as it is:
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_sso::{Identity, SsoLayer, provider::Provider};
//!
//! # fn main() -> Result<(), tower_sso::ConfigErrors> {
//! let sso = SsoLayer::builder()
//!     .base_url("https://gateway.example.com")
//!     .session_secret("at least sixteen random bytes, from your secret store")
//!     .provider(Provider::oidc("https://login.example.com", "client-id", "client-secret"))
//!     .public_paths(["/health"])
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/whoami", get(|me: Identity| async move { me.user_id().to_owned() }))
//!     .route("/health", get(|| async { "ok" }))
//!     .layer(sso);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Or from the environment variables LiteLLM documents ([`mod@env`]): `SsoLayer::from_env()?`.
//!
//! # Pluggable parts
//!
//! The verifier cache ([`cache`]), the user store ([`store`]) and the IdP HTTP client
//! ([`mod@http`]) are [`tower::Service`]s with small request and response enums, so they can be
//! replaced (Redis, PostgreSQL, a test closure) and wrapped with any tower middleware.
//!
//! The login itself can be shaped in code the same way ([`hooks`]): a custom SSO hook that sees
//! every login before the access policy and may change or refuse it
//! ([`SsoLayerBuilder::custom_sso`]), a UI key issuer that mints the credential the LiteLLM UI
//! uses ([`SsoLayerBuilder::ui_key_issuer`]), header sign-in behind a trusted proxy
//! ([`SsoLayerBuilder::header_sign_in`]) and the admin UI switch
//! ([`SsoLayerBuilder::disable_admin_ui`], `DISABLE_ADMIN_UI`).
//!
//! # Several instances
//!
//! Replicas behind a load balancer share login state and logouts through Redis
//! (`cache::RedisVerifierCache`, feature `redis`, also on Redis Cluster) and users through
//! PostgreSQL (`store::PostgresUserStore`, feature `postgres`). A logout on one instance is
//! refused by every other within the [`revocation`] sync interval (500 ms) plus one
//! Redis call, without any network call on the gate's path. `from_env` reads `REDIS_URL` (or
//! `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`, or `REDIS_CLUSTER_NODES`) and `DATABASE_URL`.
//!
//! ```no_run
//! # #[cfg(all(feature = "redis", feature = "postgres"))]
//! # async fn several() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_sso::{SsoLayer, cache::RedisVerifierCache, store::PostgresUserStore};
//!
//! let redis = RedisVerifierCache::from_url("redis://cache.internal:6379")?;
//! let users = PostgresUserStore::connect("postgres://sso@db.internal/gateway").await?;
//! let sso = SsoLayer::builder()
//!     .base_url("https://gateway.example.com")
//!     .session_secret(std::env::var("SESSION_SECRET")?)
//!     .verifier_cache(redis.clone())
//!     .revocation_feed(redis.revocations())
//!     .user_store(users)
//!     .build()?;
//! println!("{}", sso.backends());
//! # Ok(())
//! # }
//! ```
//!
//! # Testing your routes
//!
//! With the `test-util` feature, [`testing::MockIdp`] is a real OpenID provider on a loopback
//! port, with switches to misbehave, so integrators can test their protected routes through the
//! layer with `tower::ServiceExt::oneshot`. Or skip the login: issue a session directly with
//! [`SsoLayer::sessions`]:
//!
//! ```
//! use http::{Request, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_sso::{Identity, SsoLayer, UserRole, session::NewSession};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sso = SsoLayer::builder()
//!     .base_url("https://gateway.example.com")
//!     .session_secret("test secret, sixteen bytes at least")
//!     .build()?;
//! let (token, _) = sso.sessions().issue(NewSession {
//!     user_id: "alice".into(),
//!     email: Some("alice@example.com".into()),
//!     display_name: None,
//!     role: UserRole::ProxyAdmin,
//!     team_ids: vec![],
//!     provider: None,
//!     attributes: Default::default(),
//! })?;
//! let app = ServiceBuilder::new().layer(sso).service_fn(|req: Request<String>| async move {
//!     let me = req.extensions().get::<Identity>().expect("the layer inserted it");
//!     Ok::<_, std::convert::Infallible>(http::Response::new(me.role().to_string()))
//! });
//! let req = Request::get("/admin").header("cookie", format!("token={token}")).body(String::new())?;
//! let res = app.oneshot(req).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod cache;
pub mod claims;
mod client_addr;
pub mod clock;
pub mod config;
mod endpoints;
pub mod env;
pub mod error;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod future;
mod headers;
pub mod hooks;
pub mod http;
pub mod identity;
mod layer;
pub mod metrics;
pub mod oidc;
mod path;
pub mod policy;
pub mod provider;
mod providers;
mod random;
mod rate_limit;
pub mod redirect;
mod remembered;
pub mod revocation;
mod runtime;
mod service;
pub mod session;
pub mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
mod ui_settings;

/// Entry points for the fuzz targets in `fuzz/` and their corpus replay test (feature `fuzzing`).
/// Not part of the supported API: it may change in any release.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;

pub use crate::body::ResponseBody;
pub use crate::client_addr::ClientAddr;
pub use crate::config::{ConfigError, ConfigErrors};
pub use crate::error::SsoError;
pub use crate::future::ResponseFuture;
pub use crate::identity::{Identity, IdentityData, SsoUser, UserRole};
pub use crate::layer::{Backends, SsoLayer, SsoLayerBuilder};
pub use crate::rate_limit::{RateLimit, RateLimits};
pub use crate::service::SsoService;
pub use crate::ui_settings::UiSettings;

//! [`SsoLayer`] and its builder.

use std::sync::Arc;
use std::time::Duration;

use tower::util::BoxCloneSyncService;
use tower_layer::Layer;

use crate::cache::{CacheError, CacheRequest, CacheResponse, MokaVerifierCache, VerifierCache};
use crate::client_addr::{IpRange, TrustedProxies};
use crate::clock::Clock;
use crate::config::{ConfigErrors, Problems, redact_url};
use crate::hooks::{
    CustomSsoRequest, CustomSsoResponse, HeaderSignIn, Hooks, UiKeyRequest, UiKeyResponse,
};
use crate::http::{HttpClient, HttpClientConfig, HttpError, HttpRequest, HttpResponse};
use crate::identity::Identity;
use crate::path::{PathPattern, PublicPaths, is_plain};
use crate::policy::{AccessPolicy, UiAccessMode};
use crate::provider::Provider;
use crate::rate_limit::{RateLimiter, RateLimits};
use crate::redirect::RedirectPolicy;
use crate::revocation::{
    RevocationError, RevocationFeed, RevocationRequest, RevocationResponse, RevocationSync,
    RevokedSession,
};
use crate::runtime::ProviderRuntime;
use crate::service::SsoService;
use crate::session::{SessionCodec, SessionFields, derive_key};
use crate::store::{
    MemoryUserStore, NewTeamDefaults, NewUserDefaults, StoreError, StoreRequest, StoreResponse,
    UserStore,
};
use crate::ui_settings::UiSettings;

/// How often the revocation feed is read unless configured.
const DEFAULT_REVOCATION_SYNC: Duration = Duration::from_millis(500);

/// The shortest session secret accepted, in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 16;

/// A [`tower::Layer`] that puts single sign-on in front of a service.
///
/// It answers its own endpoints (under `/sso` by default), lets public paths through, and checks
/// the session on every other request: a valid one reaches the inner service with an
/// [`Identity`](crate::Identity) in the request extensions; anything else is answered by the layer
/// (303 to login for browsers, 401 JSON for API clients).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_sso::{Identity, SsoLayer, provider::Provider};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sso = SsoLayer::builder()
///     .base_url("https://gateway.example.com")
///     .session_secret("a long random secret, at least 16 bytes")
///     .provider(Provider::oidc("https://idp.example.com", "client-id", "client-secret"))
///     .public_paths(["/health"])
///     .build()?;
///
/// let app = ServiceBuilder::new().layer(sso).service_fn(|req: Request<String>| async move {
///     let who = req.extensions().get::<Identity>().map(|i| i.user_id().to_owned());
///     Ok::<_, Infallible>(Response::new(format!("hello {who:?}")))
/// });
///
/// // No session: an API client gets 401 with a JSON error body.
/// let res = app.clone().oneshot(Request::get("/whoami").body(String::new())?).await?;
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
///
/// // Public paths go straight through.
/// let res = app.oneshot(Request::get("/health").body(String::new())?).await?;
/// assert_eq!(res.status(), StatusCode::OK);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SsoLayer {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SsoLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoLayer")
            .field("base_url", &self.shared.base_url)
            .field("endpoints", &self.shared.paths.prefix)
            .field(
                "providers",
                &self
                    .shared
                    .providers
                    .iter()
                    .map(|p| p.config.provider_name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SsoLayer {
    type Service = SsoService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SsoService::new(inner, self.shared.clone())
    }
}

impl SsoLayer {
    /// A builder with defaults for everything but the base URL and the session secret.
    pub fn builder() -> SsoLayerBuilder {
        SsoLayerBuilder::default()
    }

    /// The full path of the forward-auth endpoint (`/sso/auth` by default), or `None` when it is
    /// off ([`SsoLayerBuilder::forward_auth`]).
    pub fn forward_auth_path(&self) -> Option<&str> {
        self.shared.paths.forward_auth.as_deref()
    }

    /// Where this layer keeps its state (verifier cache, user store, revocation feed), for a
    /// start-up line such as `println!("{}", layer.backends())`.
    pub fn backends(&self) -> &Backends {
        &self.shared.backends
    }

    /// The session codec (to issue sessions yourself, for example in tests, or to revoke one).
    pub fn sessions(&self) -> &SessionCodec {
        &self.shared.sessions
    }

    /// The URL the identity provider redirects back to (`{base}{root}/sso/callback`): register it.
    pub fn callback_url(&self) -> &str {
        &self.shared.callback_url
    }

    /// The callback URL of the provider named `name`: the first provider uses
    /// [`callback_url`](Self::callback_url), every other one `{base}{root}/sso/callback/{name}`, so
    /// that a code can only be redeemed with the provider the login was started with (mix-up
    /// defence, RFC 9700 §4.4). `None` for an unknown name.
    pub fn callback_url_for(&self, name: &str) -> Option<&str> {
        self.shared
            .providers
            .iter()
            .find(|p| p.config.provider_name() == name)
            .map(|p| p.callback_url.as_str())
    }

    /// The redirect URI of the debug login for the provider named `name`, when the debug
    /// endpoints are on ([`SsoLayerBuilder::debug_endpoints`]): `{base}{root}/sso/debug/callback`
    /// for the first provider, `.../sso/debug/callback/{name}` for every other one. The
    /// provider must allow it as a redirect URI, next to [`callback_url_for`](Self::callback_url_for).
    pub fn debug_callback_url_for(&self, name: &str) -> Option<&str> {
        if !self.shared.debug_endpoints {
            return None;
        }
        self.shared
            .providers
            .iter()
            .find(|p| p.config.provider_name() == name)
            .map(|p| p.debug_callback_url.as_str())
    }
}

/// Where a layer keeps its state: what [`SsoLayer::backends`] describes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backends {
    /// The verifier cache (login state): the in-process moka cache unless configured.
    pub verifier_cache: String,
    /// The user store: in memory unless configured.
    pub user_store: String,
    /// The revocation feed, if logouts are shared with other instances.
    pub revocation_feed: Option<String>,
}

impl Default for Backends {
    fn default() -> Self {
        Self {
            verifier_cache: "in-process cache (moka)".to_owned(),
            user_store: "in memory".to_owned(),
            revocation_feed: None,
        }
    }
}

impl std::fmt::Display for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "verifier cache: {}; user store: {}; revocations: {}",
            self.verifier_cache,
            self.user_store,
            self.revocation_feed
                .as_deref()
                .unwrap_or("this process only")
        )
    }
}

/// The layer's own endpoint paths.
#[derive(Debug, Clone)]
pub(crate) struct EndpointPaths {
    /// `{root}{prefix}` (for example `/sso`).
    pub(crate) prefix: String,
    /// The forward-auth endpoint's full path (for example `/sso/auth`), if it is on.
    pub(crate) forward_auth: Option<String>,
}

/// Session cookie attributes.
#[derive(Debug, Clone)]
pub(crate) struct CookieSettings {
    pub(crate) name: String,
    pub(crate) http_only: bool,
    pub(crate) secure: bool,
    pub(crate) max_age: Duration,
}

/// Everything the service needs, built once.
pub(crate) struct Shared {
    pub(crate) base_url: String,
    pub(crate) root_path: String,
    pub(crate) paths: EndpointPaths,
    pub(crate) callback_url: String,
    pub(crate) ui_url: String,
    pub(crate) cookie: CookieSettings,
    pub(crate) flow_key: Vec<u8>,
    /// Keys the hashes CLI login keys are stored under.
    pub(crate) cli_key: Vec<u8>,
    pub(crate) public: PublicPaths,
    pub(crate) sessions: SessionCodec,
    pub(crate) providers: Vec<ProviderRuntime>,
    pub(crate) policy: AccessPolicy,
    pub(crate) redirects: RedirectPolicy,
    pub(crate) user_defaults: NewUserDefaults,
    pub(crate) team_defaults: NewTeamDefaults,
    /// Whether a login whose user id is not stored may be linked to a stored user by e-mail
    /// ([`SsoLayerBuilder::link_accounts_by_email`]).
    pub(crate) link_accounts_by_email: bool,
    pub(crate) identity_headers: bool,
    pub(crate) strip_session_token: bool,
    pub(crate) logout_url: Option<String>,
    /// What `/sso/get/ui_settings` reports beyond the configuration.
    pub(crate) ui_settings: UiSettings,
    pub(crate) cache: VerifierCache,
    pub(crate) store: UserStore,
    /// Shares revocations with the other instances, if a feed is configured.
    pub(crate) revocations: Option<RevocationSync>,
    pub(crate) backends: Backends,
    pub(crate) clock: Clock,
    /// Per-client limits on login starts and callbacks.
    pub(crate) rate_limiter: RateLimiter,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub(crate) trusted_proxies: TrustedProxies,
    /// Integrator hooks and switches ([`crate::hooks`]).
    pub(crate) hooks: Hooks,
    /// Whether `/sso/debug/login` and `/sso/debug/callback` are served.
    pub(crate) debug_endpoints: bool,
    /// How long the session token a CLI login hands out lasts.
    pub(crate) cli_token_ttl: Duration,
}

impl Shared {
    /// Revokes `identity`'s session here at once and, with a revocation feed, on every other
    /// instance within one sync interval.
    pub(crate) async fn revoke(&self, identity: &Identity) {
        self.publish_revocation(RevokedSession::session(
            identity.session_id(),
            identity.expires_at(),
        ))
        .await;
    }

    /// Applies `revocation` here at once and, with a revocation feed, on every other instance
    /// within one sync interval.
    pub(crate) async fn publish_revocation(&self, revocation: RevokedSession) {
        match &self.revocations {
            Some(sync) => sync.revoke(revocation).await,
            None => self.sessions.apply(&revocation),
        }
    }

    /// The provider named `name`, or the first one.
    pub(crate) fn provider(&self, name: Option<&str>) -> Option<&ProviderRuntime> {
        match name {
            None | Some("") => self.providers.first(),
            Some(n) => self
                .providers
                .iter()
                .find(|p| p.config.provider_name() == n),
        }
    }
}

/// Builds an [`SsoLayer`]. Every setter is infallible; [`build`](Self::build) reports every
/// problem at once.
#[derive(Default)]
pub struct SsoLayerBuilder {
    base_url: Option<String>,
    secret: Option<Vec<u8>>,
    session_duration: Option<Duration>,
    cookie_http_only: Option<bool>,
    root_path: Option<String>,
    prefix: Option<String>,
    public_paths: Vec<String>,
    providers: Vec<Provider>,
    ui_path: Option<String>,
    logout_url: Option<String>,
    ui_settings: UiSettings,
    policy: AccessPolicy,
    redirect_domains: Vec<String>,
    user_defaults: NewUserDefaults,
    team_defaults: NewTeamDefaults,
    link_accounts_by_email: bool,
    identity_headers: bool,
    strip_session_token: bool,
    session_fields: Option<SessionFields>,
    cache: Option<VerifierCache>,
    store: Option<UserStore>,
    revocations: Option<RevocationFeed>,
    revocation_sync_interval: Option<Duration>,
    backends: Backends,
    http: Option<HttpClient>,
    http_config: HttpClientConfig,
    clock: Option<Clock>,
    remembered_sessions: Option<u64>,
    rate_limits: Option<RateLimits>,
    trusted_proxies: Vec<String>,
    hooks: Hooks,
    header_sign_in: Option<HeaderSignIn>,
    debug_endpoints: bool,
    cli_token_duration: Option<Duration>,
    forward_auth: Option<bool>,
    forward_auth_path: Option<String>,
    pub(crate) env_problems: Vec<crate::config::ConfigError>,
}

impl std::fmt::Debug for SsoLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoLayerBuilder")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SsoLayerBuilder {
    /// The public URL of the protected service (`PROXY_BASE_URL`), for example
    /// `https://gateway.example.com`. The callback URL and the cookies' `Secure` flag derive from
    /// it; it is never taken from request headers.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The secret session tokens are signed with (in env mode, `LITELLM_MASTER_KEY`). At least
    /// 16 bytes; signing keys are derived from it, so the secret itself never signs anything.
    pub fn session_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(secret.as_ref().to_vec());
        self
    }

    /// How long a session lasts (`LITELLM_UI_SESSION_DURATION`, default 24 h).
    pub fn session_duration(mut self, d: Duration) -> Self {
        self.session_duration = Some(d);
        self
    }

    /// Whether the `token` cookie is `HttpOnly` (default `true`). Turn it off only for a UI that
    /// must read the token from JavaScript (LiteLLM's admin UI does).
    pub fn session_cookie_http_only(mut self, on: bool) -> Self {
        self.cookie_http_only = Some(on);
        self
    }

    /// The fixed fields copied into every session token (premium flag, auth header name, ...).
    pub fn session_fields(mut self, fields: SessionFields) -> Self {
        self.session_fields = Some(fields);
        self
    }

    /// How many verified sessions are remembered in memory (default 100 000).
    pub fn remembered_sessions(mut self, n: u64) -> Self {
        self.remembered_sessions = Some(n);
        self
    }

    /// The path prefix the service is mounted at (`SERVER_ROOT_PATH`), for example `/litellm`.
    pub fn root_path(mut self, path: impl Into<String>) -> Self {
        self.root_path = Some(path.into());
        self
    }

    /// The prefix of the layer's own endpoints under the root path (default `/sso`).
    pub fn endpoint_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Paths served without a session: exact paths (`/health`) or prefixes (`/static/*`).
    /// Matched only on plain paths (see the crate docs), never on the query. These are full
    /// request paths as the layer sees them: the root path is *not* prepended (with
    /// `root_path("/litellm")`, write `/litellm/health`).
    pub fn public_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.public_paths.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Adds an identity provider. The first one added is the default; others are chosen per login
    /// with `?provider=NAME`.
    ///
    /// User ids are namespaced per provider: the first provider's ids are used as they are (so a
    /// one-provider setup is unchanged), every other provider's are `"<provider name>:<id>"`, so
    /// that the same id at two providers is never one user (nor `PROXY_ADMIN_ID`, which must
    /// carry the prefix for a user of another provider). Reordering providers changes the ids.
    pub fn provider(mut self, provider: Provider) -> Self {
        self.providers.push(provider);
        self
    }

    /// Where users land after login when no valid return target was given
    /// (default `/ui/?login=success` under the root path).
    pub fn ui_path(mut self, path: impl Into<String>) -> Self {
        self.ui_path = Some(path.into());
        self
    }

    /// Where logout sends the browser (`PROXY_LOGOUT_URL`); default: the IdP's end-session
    /// endpoint, else the root path.
    pub fn logout_url(mut self, url: impl Into<String>) -> Self {
        self.logout_url = Some(url.into());
        self
    }

    /// What `GET /sso/get/ui_settings` reports beyond the layer's configuration (replacing
    /// what was set before, from the environment too). See [`UiSettings`].
    pub fn ui_settings(mut self, settings: UiSettings) -> Self {
        self.ui_settings = settings;
        self
    }

    /// One integrator value for `GET /sso/get/ui_settings` ([`UiSettings::extra`]), kept
    /// alongside the other settings.
    pub fn ui_setting(
        mut self,
        name: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.ui_settings.extra.insert(name.into(), value.into());
        self
    }

    /// The whole access policy.
    pub fn access_policy(mut self, policy: AccessPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Only users whose e-mail is in one of these domains may log in (`ALLOWED_EMAIL_DOMAINS`).
    pub fn allowed_email_domains<I, S>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let joined: Vec<String> = domains.into_iter().map(|d| d.as_ref().to_owned()).collect();
        self.policy.allowed_email_domains = AccessPolicy::parse_domains(&joined.join(","));
        self
    }

    /// Who may log in to the UI: everyone, admins only, or members of one SSO group.
    pub fn ui_access_mode(mut self, mode: UiAccessMode) -> Self {
        self.policy.ui_access_mode = mode;
        self
    }

    /// The user id that is always promoted to `proxy_admin` (`PROXY_ADMIN_ID`).
    pub fn proxy_admin_id(mut self, id: impl Into<String>) -> Self {
        self.policy.proxy_admin_id = Some(id.into()).filter(|s| !s.is_empty());
        self
    }

    /// Domains an absolute post-login return target may point at (`example.com` exactly,
    /// `.example.com` for it and its subdomains). Relative paths on our origin are always allowed.
    pub fn allowed_redirect_domains<I, S>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.redirect_domains
            .extend(domains.into_iter().map(Into::into));
        self
    }

    /// Defaults for users created at their first login (`default_internal_user_params`).
    pub fn new_user_defaults(mut self, defaults: NewUserDefaults) -> Self {
        self.user_defaults = defaults;
        self
    }

    /// Defaults for teams created from SSO groups (`default_team_params`).
    pub fn new_team_defaults(mut self, defaults: NewTeamDefaults) -> Self {
        self.team_defaults = defaults;
        self
    }

    /// Whether a login whose user id is not in the user store may be linked to a stored user with
    /// the same e-mail (`SSO_LINK_ACCOUNTS_BY_EMAIL`, default `false`).
    ///
    /// Upstream LiteLLM always falls back to the e-mail, which lets anyone who can put an address
    /// into their IdP profile take over the stored account with that address. Here the fallback is
    /// off by default; when on, a stored user is linked only if the IdP marks the e-mail verified
    /// (`email_verified` is `true`), the address is ASCII, the IdP sent a `sub`, and the stored
    /// user is not already bound to another IdP subject. Every user SSO creates or logs in is
    /// bound to its IdP subject (`metadata.sso_subject`), and a login from another subject is
    /// refused with 403 whether it matched by id or by e-mail.
    ///
    /// The binding is `"<provider name>|<sub>"` with the configured provider name
    /// ([`Provider::name`]): renaming a provider makes its users' next logins fail with 403
    /// until their `sso_subject` is cleared. When several stored users share an address, the
    /// store decides which one the e-mail finds; if that one is bound elsewhere the login is
    /// refused rather than tried against the others.
    pub fn link_accounts_by_email(mut self, on: bool) -> Self {
        self.link_accounts_by_email = on;
        self
    }

    /// Also pass the identity to the inner service as `X-Forwarded-User`, `X-Forwarded-Email`,
    /// `X-Forwarded-Groups` and `X-Forwarded-Preferred-Username` (for a proxied upstream).
    /// Inbound copies of these headers are always removed, whether this is on or not.
    pub fn identity_headers(mut self, on: bool) -> Self {
        self.identity_headers = on;
        self
    }

    /// Remove the session credential (the `token` cookie, or the `Authorization: Bearer` header
    /// that carried it) from requests before they reach the inner service. Off by default (the
    /// LiteLLM UI backend reads it); turn it on when the inner service is a proxy to an upstream
    /// that must not receive a gateway-wide credential. The [`Identity`](crate::Identity) (and the
    /// identity headers, when on) still tell it who the user is.
    ///
    /// On [public paths](Self::public_paths) the session cookie is removed too (browsers send
    /// the `Path=/` cookie everywhere); a Bearer header there is left alone, since the client sent
    /// it to that route on purpose. Other cookies are kept byte for byte, UTF-8 or not.
    pub fn strip_session_token(mut self, on: bool) -> Self {
        self.strip_session_token = on;
        self
    }

    /// The verifier cache (default: an in-process moka cache).
    pub fn verifier_cache<C>(mut self, cache: C) -> Self
    where
        C: tower::Service<CacheRequest, Response = CacheResponse, Error = CacheError>
            + Clone
            + Send
            + Sync
            + 'static,
        C::Future: Send + 'static,
    {
        self.cache = Some(BoxCloneSyncService::new(cache));
        self.backends.verifier_cache = std::any::type_name::<C>().to_owned();
        self
    }

    /// The user store (default: in memory).
    pub fn user_store<U>(mut self, store: U) -> Self
    where
        U: tower::Service<StoreRequest, Response = StoreResponse, Error = StoreError>
            + Clone
            + Send
            + Sync
            + 'static,
        U::Future: Send + 'static,
    {
        self.store = Some(BoxCloneSyncService::new(store));
        self.backends.user_store = std::any::type_name::<U>().to_owned();
        self
    }

    /// The revocation feed that shares logouts with every instance (default: none, revocation
    /// holds in this process only). See [`crate::revocation`].
    ///
    /// A session revoked on one instance is refused by the others within one
    /// [`revocation_sync_interval`](Self::revocation_sync_interval) plus one call to the feed;
    /// the gate itself never calls the feed.
    pub fn revocation_feed<F>(mut self, feed: F) -> Self
    where
        F: tower::Service<
                RevocationRequest,
                Response = RevocationResponse,
                Error = RevocationError,
            > + Clone
            + Send
            + Sync
            + 'static,
        F::Future: Send + 'static,
    {
        self.revocations = Some(BoxCloneSyncService::new(feed));
        self.backends.revocation_feed = Some(std::any::type_name::<F>().to_owned());
        self
    }

    /// Replaces the descriptions of the backends set (for `from_env`, which knows where they
    /// point).
    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn label_backends(
        mut self,
        verifier_cache: Option<String>,
        user_store: Option<String>,
        revocation_feed: Option<String>,
    ) -> Self {
        if let Some(l) = verifier_cache {
            self.backends.verifier_cache = l;
        }
        if let Some(l) = user_store {
            self.backends.user_store = l;
        }
        if revocation_feed.is_some() {
            self.backends.revocation_feed = revocation_feed;
        }
        self
    }

    /// How often the revocation feed is read (default 500 ms; at least 10 ms).
    pub fn revocation_sync_interval(mut self, interval: Duration) -> Self {
        self.revocation_sync_interval = Some(interval);
        self
    }

    /// The HTTP client used to reach identity providers (default: hyper over rustls, with
    /// timeouts, no redirects and a body size cap).
    pub fn http_client<H>(mut self, client: H) -> Self
    where
        H: tower::Service<HttpRequest, Response = HttpResponse, Error = HttpError>
            + Clone
            + Send
            + Sync
            + 'static,
        H::Future: Send + 'static,
    {
        self.http = Some(BoxCloneSyncService::new(client));
        self
    }

    /// Timeouts and body cap of the default HTTP client.
    pub fn http_client_config(mut self, config: HttpClientConfig) -> Self {
        self.http_config = config;
        self
    }

    /// Per-client rate limits on login starts and callbacks (default [`RateLimits::default`]:
    /// 60 a minute with bursts of 20, each; [`RateLimits::disabled`] switches them off). A
    /// refused request gets 429 with `Retry-After` and the usual JSON error body. Protected
    /// requests are never rate limited.
    ///
    /// The client is the connection's peer address, read from the request extensions
    /// ([`ClientAddr`](crate::ClientAddr), or axum's `ConnectInfo<SocketAddr>` with the `axum`
    /// feature), or the `X-Forwarded-For` client when the peer is a
    /// [trusted proxy](Self::trusted_proxies). Requests without an address share one bucket
    /// with [larger limits](RateLimits::unknown_client_factor).
    pub fn rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = Some(limits);
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` header is believed (`SSO_TRUSTED_PROXIES`):
    /// addresses or CIDR ranges, IPv4 or IPv6, for example `["10.0.0.0/8", "127.0.0.1"]`.
    /// None by default: the header is ignored. When the peer is a trusted proxy, the client is
    /// the right-most `X-Forwarded-For` address that is not itself a trusted proxy. Entries that
    /// do not parse are reported by [`build`](Self::build).
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.trusted_proxies
            .extend(proxies.into_iter().map(Into::into));
        self
    }

    /// The custom SSO hook (upstream `user_custom_sso`): a [`tower::Service`] that sees every
    /// login's mapped user and claims before the access policy and the user store, and answers
    /// the values the login goes on with, or refuses it (403, with its message). See
    /// [`CustomSsoRequest`] for what it may change and an example; [`custom_sso_fn`] takes an
    /// async closure. Default: none.
    ///
    /// [`custom_sso_fn`]: Self::custom_sso_fn
    pub fn custom_sso<H>(mut self, hook: H) -> Self
    where
        H: tower::Service<CustomSsoRequest, Response = CustomSsoResponse>
            + Clone
            + Send
            + Sync
            + 'static,
        H::Error: Into<tower::BoxError>,
        H::Future: Send + 'static,
    {
        self.hooks.custom_sso = Some(BoxCloneSyncService::new(tower::ServiceExt::map_err(
            hook,
            Into::into,
        )));
        self
    }

    /// [`custom_sso`](Self::custom_sso) with an async closure (or `async fn`).
    pub fn custom_sso_fn<F, Fut, E>(self, hook: F) -> Self
    where
        F: Fn(CustomSsoRequest) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<CustomSsoResponse, E>> + Send + 'static,
        E: Into<tower::BoxError>,
    {
        self.custom_sso(tower::service_fn(hook))
    }

    /// The UI key issuer (upstream `generate_key_helper_fn` with the UI defaults): mints, for
    /// every successful login, the credential the LiteLLM admin UI uses; it becomes the session
    /// token's `key` field. See [`UiKeyRequest`] for what it is asked and an example;
    /// [`ui_key_fn`](Self::ui_key_fn) takes an async closure. Default: none, `key` is the
    /// session id and the session token itself is the credential.
    pub fn ui_key_issuer<H>(mut self, issuer: H) -> Self
    where
        H: tower::Service<UiKeyRequest, Response = UiKeyResponse> + Clone + Send + Sync + 'static,
        H::Error: Into<tower::BoxError>,
        H::Future: Send + 'static,
    {
        self.hooks.ui_key = Some(BoxCloneSyncService::new(tower::ServiceExt::map_err(
            issuer,
            Into::into,
        )));
        self
    }

    /// [`ui_key_issuer`](Self::ui_key_issuer) with an async closure (or `async fn`).
    pub fn ui_key_fn<F, Fut, E>(self, issuer: F) -> Self
    where
        F: Fn(UiKeyRequest) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<UiKeyResponse, E>> + Send + 'static,
        E: Into<tower::BoxError>,
    {
        self.ui_key_issuer(tower::service_fn(issuer))
    }

    /// The budget a minted UI key gets ([`UiKeyRequest::max_budget`]; upstream
    /// `max_ui_session_budget`, default [`DEFAULT_UI_SESSION_BUDGET`](crate::hooks::DEFAULT_UI_SESSION_BUDGET)).
    /// `None`: no budget.
    pub fn max_ui_session_budget(mut self, budget: Option<f64>) -> Self {
        self.hooks.ui_key_max_budget = budget;
        self
    }

    /// How long a hook may take before the login is refused with 503 (default
    /// [`DEFAULT_HOOK_TIMEOUT`](crate::hooks::DEFAULT_HOOK_TIMEOUT), 5 s). Applies to each
    /// hook call.
    pub fn hook_timeout(mut self, timeout: Duration) -> Self {
        self.hooks.timeout = timeout;
        self
    }

    /// Header sign-in behind a [trusted proxy](Self::trusted_proxies) (upstream's custom UI
    /// sign-in handler; `SSO_HEADER_SIGN_IN=true` for the default headers). Off by default; see
    /// [`HeaderSignIn`] for what it does and what the proxy must do. [`build`](Self::build)
    /// refuses it without trusted proxies.
    pub fn header_sign_in(mut self, sign_in: HeaderSignIn) -> Self {
        self.header_sign_in = Some(sign_in);
        self
    }

    /// Switches the admin UI login off (`DISABLE_ADMIN_UI=true`): login start and callback
    /// answer upstream's "admin UI disabled" page (200, HTML) instead. Sessions already issued
    /// and API clients with a Bearer session keep working, and so does the rest of the layer.
    pub fn disable_admin_ui(mut self, disabled: bool) -> Self {
        self.hooks.admin_ui_disabled = disabled;
        self
    }

    /// Serves the debug login (default **off**): `GET /sso/debug/login` runs a login like
    /// `/sso/key/generate` (same state, PKCE, nonce and browser binding) that ends at
    /// `/sso/debug/callback` in an HTML page of the identity the login would produce and the
    /// claims the provider sent (bearer tokens removed, everything escaped), with no session and
    /// no store write. The provider must allow the debug redirect URI
    /// ([`SsoLayer::debug_callback_url_for`]). Upstream serves these pages to anyone, always;
    /// here they are off unless switched on (`SSO_DEBUG_ENABLED=true`), since they show every
    /// claim of whoever logs in, to them, without the access policy's refusal.
    pub fn debug_endpoints(mut self, on: bool) -> Self {
        self.debug_endpoints = on;
        self
    }

    /// Serve the forward-auth endpoint (on by default) at `{root}{prefix}/auth`: a reverse proxy
    /// (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`) asks it whether a request
    /// has a session. `200` with the identity in `X-Forwarded-User`, `-Email`, `-Groups` and
    /// `-Preferred-Username`, else `401` with the login URL in `X-Auth-Request-Redirect`
    /// (`?redirect=true`: a `303` to it for a browser). The page the browser was going to is read
    /// from `X-Original-URL` or `X-Forwarded-Proto`/`-Host`/`-Uri` only when the peer is a
    /// [trusted proxy](Self::trusted_proxies), and passes the same open-redirect checks as any
    /// `return_to`. The README's "Behind nginx / Traefik / Envoy" has working proxy
    /// configurations.
    pub fn forward_auth(mut self, on: bool) -> Self {
        self.forward_auth = Some(on);
        self
    }

    /// The forward-auth endpoint's path under the endpoint prefix (default `/auth`, so
    /// `/sso/auth`). Must not clash with another endpoint.
    pub fn forward_auth_path(mut self, path: impl Into<String>) -> Self {
        self.forward_auth_path = Some(path.into());
        self
    }

    /// How long the session token a CLI login hands out lasts (default 24 hours;
    /// `LITELLM_CLI_JWT_EXPIRATION_HOURS`). At least one second.
    pub fn cli_token_duration(mut self, d: Duration) -> Self {
        self.cli_token_duration = Some(d);
        self
    }

    /// The clock (tests use [`Clock::manual`]).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates everything and builds the layer, or returns every problem found.
    pub fn build(self) -> Result<SsoLayer, ConfigErrors> {
        let mut p = Problems(self.env_problems);

        let base_url = match self.base_url.as_deref().map(str::trim) {
            None | Some("") => {
                p.add("base_url (PROXY_BASE_URL)", "is not set");
                None
            }
            Some(raw) => match url::Url::parse(raw).map_err(|e| (e, redact_url(raw))) {
                Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                    let raw = redact_url(raw);
                    p.add(
                        "base_url (PROXY_BASE_URL)",
                        format!("{raw:?} must be an http or https URL"),
                    );
                    None
                }
                Ok(u)
                    if u.query().is_some()
                        || u.fragment().is_some()
                        || !u.username().is_empty() =>
                {
                    let raw = redact_url(raw);
                    p.add(
                        "base_url (PROXY_BASE_URL)",
                        format!("{raw:?} must not carry credentials, a query or a fragment"),
                    );
                    None
                }
                Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                    let raw = redact_url(raw);
                    p.add("base_url (PROXY_BASE_URL)", format!("{raw:?} has no host"));
                    None
                }
                Ok(u) => Some(u),
                Err((e, raw)) => {
                    p.add(
                        "base_url (PROXY_BASE_URL)",
                        format!("{raw:?} is not a valid URL ({e})"),
                    );
                    None
                }
            },
        };

        match &self.secret {
            None => p.add("session_secret (LITELLM_MASTER_KEY)", "is not set"),
            Some(s) if s.len() < MIN_SECRET_LEN => p.add(
                "session_secret (LITELLM_MASTER_KEY)",
                format!(
                    "is {} bytes long; use at least {MIN_SECRET_LEN} random bytes",
                    s.len()
                ),
            ),
            Some(_) => {}
        }

        let session_duration = self
            .session_duration
            .unwrap_or(Duration::from_secs(24 * 3600));
        if session_duration.as_secs() == 0 {
            p.add(
                "session_duration (LITELLM_UI_SESSION_DURATION)",
                "must be at least one second",
            );
        }

        let cli_token_ttl = self
            .cli_token_duration
            .unwrap_or(Duration::from_secs(24 * 3600));
        if cli_token_ttl.as_secs() == 0 {
            p.add(
                "cli_token_duration (LITELLM_CLI_JWT_EXPIRATION_HOURS)",
                "must be at least one second",
            );
        }

        let root_path = normalise_prefix(
            self.root_path.as_deref().unwrap_or(""),
            "root_path (SERVER_ROOT_PATH)",
            &mut p,
        );
        let prefix = normalise_prefix(
            self.prefix.as_deref().unwrap_or("/sso"),
            "endpoint_prefix",
            &mut p,
        );
        if prefix.is_empty() {
            p.add("endpoint_prefix", "must not be empty");
        }

        let mut patterns = Vec::new();
        for raw in &self.public_paths {
            match PathPattern::parse(raw) {
                Ok(pat) => patterns.push(pat),
                Err(e) => p.add("public_paths", e),
            }
        }

        let mut names = std::collections::HashSet::new();
        for provider in &self.providers {
            provider.validate(&mut p);
            if !names.insert(provider.provider_name().to_owned()) {
                p.add(
                    format!("provider {:?}", provider.provider_name()),
                    "two providers have this name; give each a distinct name()",
                );
            }
        }

        let ui_path = self
            .ui_path
            .clone()
            .unwrap_or_else(|| "/ui/?login=success".to_owned());
        if !ui_path.starts_with('/') || ui_path.starts_with("//") {
            p.add(
                "ui_path",
                format!("{ui_path:?} must be a path starting with a single '/'"),
            );
        }
        if let Some(l) = &self.logout_url {
            match url::Url::parse(l) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => p.add(
                    "logout_url (PROXY_LOGOUT_URL)",
                    format!("{:?} must be an absolute http(s) URL", redact_url(l)),
                ),
            }
        }

        let forward_auth = if self.forward_auth.unwrap_or(true) {
            let raw = self
                .forward_auth_path
                .as_deref()
                .unwrap_or(crate::endpoints::forward_auth::DEFAULT_PATH);
            match crate::endpoints::forward_auth::validate_path(raw) {
                Ok(path) => Some(path),
                Err(e) => {
                    p.add("forward_auth_path", e);
                    None
                }
            }
        } else {
            None
        };

        let rate_limits = self.rate_limits.unwrap_or_default();
        rate_limits.validate(&mut p);
        let mut trusted = Vec::new();
        for raw in &self.trusted_proxies {
            match IpRange::parse(raw) {
                Ok(r) => trusted.push(r),
                Err(e) => p.add("trusted_proxies (SSO_TRUSTED_PROXIES)", e),
            }
        }

        let mut hooks = self.hooks;
        if hooks.timeout.is_zero() {
            p.add("hook_timeout", "must be longer than zero");
        }
        if hooks
            .ui_key_max_budget
            .is_some_and(|b| !b.is_finite() || b < 0.0)
        {
            p.add(
                "max_ui_session_budget",
                "must be a finite amount, zero or more",
            );
        }
        if let Some(sign_in) = self.header_sign_in {
            if self.trusted_proxies.is_empty() {
                p.add(
                    "header_sign_in (SSO_HEADER_SIGN_IN)",
                    "needs trusted_proxies (SSO_TRUSTED_PROXIES): only a trusted proxy may name the user",
                );
            }
            hooks.header_sign_in = sign_in.validate(&mut p);
        }

        let (Some(base_url), Some(secret)) = (base_url, self.secret) else {
            return Err(ConfigErrors(p.0));
        };
        if !p.0.is_empty() {
            return Err(ConfigErrors(p.0));
        }

        let base = base_url.as_str().trim_end_matches('/').to_owned();
        let secure = base_url.scheme() == "https";
        let endpoint_prefix = format!("{root_path}{prefix}");
        let callback_url = format!("{base}{endpoint_prefix}/callback");
        let debug_callback_url = format!("{base}{endpoint_prefix}/debug/callback");
        let ui_url = format!("{root_path}{ui_path}");
        let clock = self.clock.unwrap_or_default();
        let mut fields = self.session_fields.unwrap_or_default();
        if fields.server_root_path.is_empty() {
            fields.server_root_path = root_path.clone();
        }
        let sessions = SessionCodec::new(
            &secret,
            session_duration,
            fields,
            clock.clone(),
            self.remembered_sessions.unwrap_or(100_000),
        );
        let revocations = self.revocations.map(|feed| {
            let interval = self
                .revocation_sync_interval
                .unwrap_or(DEFAULT_REVOCATION_SYNC)
                .max(Duration::from_millis(10));
            RevocationSync::new(feed, sessions.clone(), clock.clone(), interval)
        });
        let http = self
            .http
            .unwrap_or_else(|| crate::http::default_client(&self.http_config));
        let providers = self
            .providers
            .into_iter()
            .enumerate()
            .map(|(i, pc)| {
                let (url, debug_url) = if i == 0 {
                    (callback_url.clone(), debug_callback_url.clone())
                } else {
                    (
                        format!("{callback_url}/{}", pc.provider_name()),
                        format!("{debug_callback_url}/{}", pc.provider_name()),
                    )
                };
                let http = crate::metrics::idp_client(http.clone(), pc.provider_name());
                ProviderRuntime::new(pc, http, clock.clone(), url, debug_url)
            })
            .collect();
        let shared = Shared {
            base_url: base,
            root_path,
            paths: EndpointPaths {
                forward_auth: forward_auth.map(|path| format!("{endpoint_prefix}{path}")),
                prefix: endpoint_prefix,
            },
            callback_url,
            ui_url,
            cookie: CookieSettings {
                name: "token".to_owned(),
                http_only: self.cookie_http_only.unwrap_or(true),
                secure,
                max_age: session_duration,
            },
            flow_key: derive_key(&secret, "flow"),
            cli_key: derive_key(&secret, "cli-key"),
            public: PublicPaths::new(patterns),
            sessions,
            providers,
            policy: self.policy,
            redirects: RedirectPolicy::new(self.redirect_domains),
            user_defaults: self.user_defaults,
            team_defaults: self.team_defaults,
            link_accounts_by_email: self.link_accounts_by_email,
            identity_headers: self.identity_headers,
            strip_session_token: self.strip_session_token,
            logout_url: self.logout_url,
            ui_settings: self.ui_settings,
            cache: crate::metrics::count_cache_errors(
                self.cache
                    .unwrap_or_else(|| BoxCloneSyncService::new(MokaVerifierCache::default())),
                &self.backends.verifier_cache,
            ),
            store: crate::metrics::count_store_errors(
                self.store
                    .unwrap_or_else(|| BoxCloneSyncService::new(MemoryUserStore::default())),
                &self.backends.user_store,
            ),
            revocations,
            backends: self.backends,
            clock,
            rate_limiter: RateLimiter::new(rate_limits),
            trusted_proxies: TrustedProxies::new(trusted),
            hooks,
            debug_endpoints: self.debug_endpoints,
            cli_token_ttl,
        };
        Ok(SsoLayer {
            shared: Arc::new(shared),
        })
    }
}

/// `""` stays `""`; otherwise a plain path starting with `/`, without a trailing `/`.
fn normalise_prefix(raw: &str, setting: &str, p: &mut Problems) -> String {
    let t = raw.trim().trim_end_matches('/');
    if t.is_empty() {
        return String::new();
    }
    let with_slash = if t.starts_with('/') {
        t.to_owned()
    } else {
        format!("/{t}")
    };
    if !is_plain(&with_slash) {
        p.add(
            setting,
            format!("{raw:?} must be a plain path like /litellm"),
        );
    }
    with_slash
}

//! A real OpenID Connect provider, in process, on a loopback port: [`MockIdp`].
//!
//! It speaks the authorization code flow over real HTTP (discovery, `/authorize`, `/token`,
//! `/userinfo`, `/jwks`, `/logout`), signs id_tokens with a key generated at start (RS256, or ES256
//! with [`MockIdpBuilder::signing_alg`]), checks
//! PKCE S256, client authentication, redirect URIs and single-use codes like a strict provider,
//! and can be told to misbehave ([`Misbehaviour`]) in each of the ways a relying party must
//! detect, including transport faults at one endpoint ([`Misbehaviour::Fault`]: no answer, a
//! body that never ends, 50 MB, HTML, ...). It records every request it receives, so a test can
//! assert that a rejected login never reached the token or userinfo endpoint, and the last
//! credentials it issued ([`MockIdp::last_issued`]), so a test can assert they never leak.
//!
//! `/token` issues an access token, an id_token (unless [`MockIdpBuilder::id_token`] is off) and
//! a refresh token (which it does not accept back: only the authorization code grant is served).
//!
//! Available with the crate feature `test-util`.
//!
//! | endpoint | path |
//! |---|---|
//! | discovery | `GET /.well-known/openid-configuration` |
//! | authorization | `GET /authorize` (and `POST /authorize` or `POST /login` from the login form) |
//! | token | `POST /token` |
//! | userinfo | `GET` or `POST /userinfo` |
//! | JWKS | `GET /jwks` |
//! | end session | `GET` or `POST /logout` |
//!
//! # Microsoft Entra ID stand-in
//!
//! Started with [`MockIdpBuilder::entra`], the provider also plays Entra ID, so a relying party
//! configured like a real Entra application (explicit endpoints, a JWKS URI, a Graph base URL;
//! see [`MockIdp::microsoft_env_vars`]) runs its real code path over loopback, signatures
//! included:
//!
//! - id_tokens carry `tid` (the user's `tid` claim, else the configured tenant), `oid` (the
//!   user's `oid`, else `id`, else `sub`) and `iss` = `https://login.microsoftonline.com/{tid}/v2.0`;
//!   authorization responses carry no `iss` parameter (Entra sends none);
//! - Microsoft Graph under `{issuer}/graph/v1.0` ([`MockIdp::graph_base_url`]), every call with
//!   the access token as Bearer:
//!
//! | Graph endpoint | answer |
//! |---|---|
//! | `GET /graph/v1.0/me` | the user's claims as a profile (no `sub`; `id` defaults to the object id); [`Misbehaviour::UserinfoError`] and [`Misbehaviour::UserinfoEmpty`] apply |
//! | `GET /graph/v1.0/me/memberOf` | the objects set with [`MockIdp::set_member_of`], [`MockIdp::set_graph_page_size`] per page, each page but the last with an `@odata.nextLink` (`?$skiptoken=N`) |
//! | `GET /graph/v1.0/servicePrincipals/{id}/appRoleAssignedTo` | the objects set with [`MockIdp::set_app_role_assigned_to`], paged the same way; 404 for an unknown id |
//!
//! [`Misbehaviour::GraphError`] fails the two listings (not `/me`);
//! [`Misbehaviour::TenantIssuerMismatch`] forges the id_token's `iss`/`tid` pair.
//!
//! Each signed-in user has a provider session: its id_tokens carry a `sid`, the same for every
//! login until [`MockIdp::logout_token`] ends it and hands back the back-channel logout token a
//! provider would post (the test delivers it to `/sso/backchannel-logout`).

mod crypto;
mod entra;
mod server;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::crypto::SigningKey;

/// The client id [`MockIdp::start`] registers.
pub const DEFAULT_CLIENT_ID: &str = "tower-sso-test";
/// The client secret [`MockIdp::start`] registers.
pub const DEFAULT_CLIENT_SECRET: &str = "test-secret";

/// A user the mock provider can sign in.
///
/// `claims` go into both the userinfo answer and the id_token (and the access token when
/// [`MockIdpBuilder::access_token_jwt`] is on). Claims named like the registered id_token
/// claims (`iss`, `sub`, `aud`, `exp`, `iat`, `nonce`, ...) are overridden by the provider.
#[derive(Clone, Debug, PartialEq)]
pub struct MockUser {
    /// The subject identifier (`sub`).
    pub sub: String,
    /// Every other claim: `email`, `preferred_username`, `name`, `groups`, `role`, ...
    pub claims: Map<String, Value>,
    /// Claims that only the JWT access token carries (with [`MockIdpBuilder::access_token_jwt`]),
    /// as Keycloak puts roles in the access token only.
    pub access_token_claims: Map<String, Value>,
}

impl MockUser {
    /// A user with subject `sub` and no other claims.
    pub fn new(sub: impl Into<String>) -> Self {
        MockUser {
            sub: sub.into(),
            claims: Map::new(),
            access_token_claims: Map::new(),
        }
    }

    /// Adds (or replaces) a claim that only the JWT access token carries (never the id_token
    /// or userinfo). Without [`MockIdpBuilder::access_token_jwt`] it is not sent at all.
    pub fn access_token_claim(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.access_token_claims.insert(key.into(), value.into());
        self
    }

    /// Adds (or replaces) one claim.
    ///
    /// ```
    /// # use tower_sso::testing::MockUser;
    /// let bob = MockUser::new("bob")
    ///     .claim("email", "bob@example.com")
    ///     .claim("groups", serde_json::json!(["admins", "devs"]));
    /// assert_eq!(bob.claims["email"], "bob@example.com");
    /// ```
    pub fn claim(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(key.into(), value.into());
        self
    }

    /// The default user: `alice`, `alice@example.com`, "Alice Example".
    pub fn alice() -> Self {
        MockUser::new("alice")
            .claim("email", "alice@example.com")
            .claim("email_verified", true)
            .claim("preferred_username", "alice")
            .claim("name", "Alice Example")
    }
}

/// How `/authorize` signs the visitor in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoginMode {
    /// `/authorize` redirects straight back as the selected user ([`MockIdp::select_user`]).
    #[default]
    Auto,
    /// `/authorize` shows an HTML page with a user picker; submitting it (a `POST` to
    /// `/authorize`) redirects back as the chosen user, "Cancel" redirects back with
    /// `error=access_denied`.
    Form,
}

/// Which client authentication methods `/token` accepts (RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic` only: HTTP Basic with the form-urlencoded id and secret.
    Basic,
    /// `client_secret_post` only: `client_id` and `client_secret` in the form body.
    Post,
    /// Either of the two (never both in one request).
    #[default]
    Any,
}

/// A way for the provider to go wrong, set with [`MockIdp::set_misbehaviour`].
///
/// It applies to every later request until replaced (set [`Misbehaviour::None`] to behave
/// again). Requests are still validated normally first: a misbehaviour changes the answer to a
/// request the provider would otherwise have accepted (except [`Misbehaviour::Slow`], which only
/// delays, [`Misbehaviour::UserinfoError`], which fails userinfo whatever the token, and
/// [`Misbehaviour::Fault`], which answers its endpoint before any validation).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Misbehaviour {
    /// Behave.
    None,
    /// id_token `iss` is `https://evil.example.com` instead of the issuer.
    WrongIssuer,
    /// id_token `aud` is another client's id.
    WrongAudience,
    /// id_token `aud` is `[client_id, "untrusted-audience"]` (with `azp` = client_id).
    ExtraAudience,
    /// id_token signature is corrupted.
    BadSignature,
    /// id_token header carries a `kid` the JWKS does not have (the token is otherwise valid).
    UnknownKid,
    /// id_token header carries no `kid` (the JWKS holds exactly one key, which verifies it).
    NoKid,
    /// id_token `exp` is 10 minutes in the past (`iat` 15 minutes in the past).
    Expired,
    /// id_token `iat` is one hour in the future.
    IssuedInFuture,
    /// id_token has no `iat`.
    MissingIat,
    /// id_token has no `sub`.
    MissingSub,
    /// id_token `nonce` differs from the one sent to `/authorize`.
    NonceMismatch,
    /// id_token has no `nonce` although one was sent.
    MissingNonce,
    /// id_token is unsigned: `alg: none`, empty signature.
    AlgNone,
    /// `/token` answers this HTTP status with a JSON error body (500 if the number is no status).
    TokenHttpError(u16),
    /// `/token` answers 200 with `{"error":"invalid_grant","error_description":"Code already used"}`.
    TokenErrorInBody,
    /// `/token` answers 200 with a body that is not JSON.
    TokenGarbage,
    /// `/token` answers 200 with JSON that is not an object (`[1,2]`).
    TokenNotObject,
    /// `/token` answer has no `access_token`.
    TokenMissingAccessToken,
    /// `/token` answer has no `id_token`.
    NoIdToken,
    /// `/userinfo` answers with a `sub` other than the id_token's.
    UserinfoWrongSub,
    /// `/userinfo` answers this HTTP status with a JSON error body (500 if the number is no status).
    UserinfoError(u16),
    /// `/userinfo` answers 200 with `{}` (no `sub`, no claims).
    UserinfoEmpty,
    /// Every endpoint waits this long before answering.
    Slow(Duration),
    /// The discovery document's `issuer` is `{issuer}/other` instead of the issuer.
    DiscoveryIssuerMismatch,
    /// `/authorize` redirects back with `error=<this>` (and `error_description`, `state`, `iss`).
    AuthorizeError(String),
    /// The authorization response carries `iss=https://evil.example.com` (RFC 9207 mix-up).
    WrongIssParameter,
    /// The authorization response carries no `iss` although the metadata advertises it.
    MissingIssParameter,
    /// A transport or format fault at one endpoint (the others behave): see [`Fault`]. The
    /// request is recorded but not validated (a faulted `/token` redeems nothing).
    Fault(Endpoint, Fault),
    /// Entra stand-in: the Graph listings (`/me/memberOf`, `appRoleAssignedTo`) answer this HTTP
    /// status with a Graph error body (500 if the number is no status); `/me` still answers.
    GraphError(u16),
    /// Entra stand-in: the id_token's `iss` names this tenant while its `tid` stays the user's
    /// (a forged issuer/tenant pair, correctly signed).
    TenantIssuerMismatch(String),
}

/// An endpoint a [`Misbehaviour::Fault`] targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `GET /.well-known/openid-configuration`.
    Discovery,
    /// `POST /token`.
    Token,
    /// `GET|POST /userinfo`.
    Userinfo,
    /// `GET /jwks`.
    Jwks,
}

impl Endpoint {
    /// Every endpoint, in flow order.
    pub const ALL: [Endpoint; 4] = [
        Endpoint::Discovery,
        Endpoint::Token,
        Endpoint::Jwks,
        Endpoint::Userinfo,
    ];

    /// The endpoint's path at the mock provider.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Discovery => "/.well-known/openid-configuration",
            Endpoint::Token => "/token",
            Endpoint::Userinfo => "/userinfo",
            Endpoint::Jwks => "/jwks",
        }
    }
}

/// How a faulted endpoint ([`Misbehaviour::Fault`]) answers: the ways a real provider (or
/// the network in front of it) goes wrong that a relying party must survive with a clear
/// error, in bounded time, without reading without bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The request is read but never answered (the connection stays open until the client
    /// gives up or the provider stops).
    NoAnswer,
    /// `200` with JSON headers and `Content-Length: 100`, then nothing: the body never comes.
    HangAfterHeaders,
    /// `200`, chunked, one byte of JSON-looking whitespace every 50 ms, forever: a slow drip
    /// that never reaches any size cap and never ends.
    EndlessBody,
    /// `500` with an HTML error page.
    ServerError,
    /// `200` `text/html`: a login page or proxy interstitial instead of JSON.
    Html,
    /// `200` `application/json` whose body is cut off mid-object.
    InvalidJson,
    /// `200` `application/json` whose body is a JSON array, not an object.
    JsonArray,
    /// `200` `application/json` with `Content-Length` of 50 MB, streamed as fast as the client
    /// reads.
    HugeBody,
    /// `200` with `Content-Length: 1000`; 100 bytes are sent and the connection is aborted.
    CloseMidBody,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 9] = [
        Fault::NoAnswer,
        Fault::HangAfterHeaders,
        Fault::EndlessBody,
        Fault::ServerError,
        Fault::Html,
        Fault::InvalidJson,
        Fault::JsonArray,
        Fault::HugeBody,
        Fault::CloseMidBody,
    ];

    /// A marker string every faulty body carries (never the whole of it, for the streamed
    /// ones): a relying party's error message must not repeat it.
    pub const MARKER: &'static str = "MOCKIDP-RAW-ANSWER";
}

/// The credentials the provider issued or received most recently ([`MockIdp::last_issued`]),
/// so a test can check that none of them shows up where it must not (logs, error bodies).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Issued {
    /// The last authorization code `/authorize` issued.
    pub code: Option<String>,
    /// The last PKCE `code_verifier` `/token` received (with a valid code).
    pub code_verifier: Option<String>,
    /// The last access token `/token` issued.
    pub access_token: Option<String>,
    /// The last id_token `/token` issued.
    pub id_token: Option<String>,
    /// The last refresh token `/token` issued.
    pub refresh_token: Option<String>,
}

/// One request the provider received: method and path only (never the query or body, which may
/// carry codes and secrets).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: http::Method,
    /// The path, without the query.
    pub path: String,
}

/// The algorithm a [`MockIdp`] signs its id_tokens (and logout tokens and JWT access tokens)
/// with: [`MockIdpBuilder::signing_alg`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an RSA-2048 key (JWK `kty: RSA`). The default, and
    /// what most providers use.
    #[default]
    Rs256,
    /// ECDSA with P-256 and SHA-256 (JWK `kty: EC`, `crv: P-256`): smaller keys and
    /// signatures, and cheaper to sign, so a provider that is not the bottleneck of a benchmark.
    Es256,
}

/// Configures a [`MockIdp`] before it starts. Obtain one with [`MockIdp::builder`].
#[derive(Debug, Clone)]
pub struct MockIdpBuilder {
    client_id: String,
    client_secret: String,
    users: Vec<MockUser>,
    login_mode: LoginMode,
    iss_parameter: bool,
    access_token_jwt: bool,
    require_pkce: bool,
    client_auth: ClientAuth,
    port: u16,
    id_token: bool,
    entra_tenant: Option<String>,
    signing_alg: SigningAlg,
}

impl Default for MockIdpBuilder {
    fn default() -> Self {
        MockIdpBuilder {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            users: Vec::new(),
            login_mode: LoginMode::Auto,
            iss_parameter: true,
            access_token_jwt: false,
            require_pkce: true,
            client_auth: ClientAuth::Any,
            port: 0,
            id_token: true,
            entra_tenant: None,
            signing_alg: SigningAlg::Rs256,
        }
    }
}

impl MockIdpBuilder {
    /// The one registered client (default `tower-sso-test` / `test-secret`).
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.client_id = id.into();
        self.client_secret = secret.into();
        self
    }

    /// Registers a user. The first user registered is the one [`LoginMode::Auto`] signs in.
    /// Without any, the provider has the single user [`MockUser::alice`].
    pub fn user(mut self, user: MockUser) -> Self {
        self.users.retain(|u| u.sub != user.sub);
        self.users.push(user);
        self
    }

    /// How `/authorize` signs the visitor in (default [`LoginMode::Auto`]).
    pub fn login_mode(mut self, mode: LoginMode) -> Self {
        self.login_mode = mode;
        self
    }

    /// Advertise `authorization_response_iss_parameter_supported` and send `iss` with every
    /// authorization response (RFC 9207). Default on.
    pub fn iss_parameter(mut self, on: bool) -> Self {
        self.iss_parameter = on;
        self
    }

    /// Issue access tokens as signed JWTs (the id_token's algorithm) carrying the user's claims (as Keycloak does) instead of
    /// opaque random strings. Default off.
    pub fn access_token_jwt(mut self, on: bool) -> Self {
        self.access_token_jwt = on;
        self
    }

    /// Default on: `/authorize` rejects a request without an S256 `code_challenge`. Whatever
    /// this says, `/token` checks the verifier whenever a challenge was sent, and rejects a
    /// verifier when none was (PKCE downgrade, RFC 9700 §4.8.2).
    pub fn require_pkce(mut self, on: bool) -> Self {
        self.require_pkce = on;
        self
    }

    /// Which client authentication `/token` accepts (default [`ClientAuth::Any`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Whether `/token` issues an id_token (default on). Off, a relying party has only the
    /// access token and must get the user from `/userinfo`.
    pub fn id_token(mut self, on: bool) -> Self {
        self.id_token = on;
        self
    }

    /// Play Microsoft Entra ID for tenant `tenant_id` (a GUID): Entra-shaped id_tokens and the
    /// Microsoft Graph endpoints (see the [module documentation](self#microsoft-entra-id-stand-in)).
    pub fn entra(mut self, tenant_id: impl Into<String>) -> Self {
        self.entra_tenant = Some(tenant_id.into());
        self
    }

    /// The algorithm tokens are signed with (default [`SigningAlg::Rs256`]). The JWKS serves
    /// the matching public key, discovery advertises the algorithm, and
    /// [`MockIdp::rotate_keys`] keeps it.
    pub fn signing_alg(mut self, alg: SigningAlg) -> Self {
        self.signing_alg = alg;
        self
    }

    /// The loopback port to listen on (default: any free port). A fixed port lets several
    /// processes (two demo instances, say) share one provider.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Generates the signing key, binds `127.0.0.1` (on [`port`](Self::port), or any free port)
    /// and starts serving.
    ///
    /// Must be called within a Tokio runtime. Fails if the port cannot be bound or the key
    /// cannot be generated.
    pub async fn start(self) -> std::io::Result<MockIdp> {
        // Key generation blocks for a moment (longer on a loaded machine): off the runtime's
        // threads, so it never stalls other tasks' requests (and their timeouts) on this one.
        let alg = self.signing_alg;
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(alg))
            .await
            .map_err(std::io::Error::other)??;
        let key = Arc::new(key);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        let addr = listener.local_addr()?;
        let mut users = self.users;
        if users.is_empty() {
            users.push(MockUser::alice());
        }
        let selected = users.first().map(|u| u.sub.clone()).unwrap_or_default();
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            client_id: self.client_id,
            client_secret: self.client_secret,
            login_mode: self.login_mode,
            iss_parameter: self.iss_parameter,
            access_token_jwt: self.access_token_jwt,
            require_pkce: self.require_pkce,
            client_auth: self.client_auth,
            issue_id_token: self.id_token,
            entra_tenant: self.entra_tenant,
            signing_alg: self.signing_alg,
            open_connections: AtomicUsize::new(0),
            state: Mutex::new(State {
                users,
                selected,
                misbehaviour: Misbehaviour::None,
                key,
                codes: HashMap::new(),
                tokens: HashMap::new(),
                requests: Vec::new(),
                issued: Issued::default(),
                graph: entra::GraphState::default(),
                sessions: HashMap::new(),
                purged_at: Instant::now(),
            }),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, shared.clone(), stop_rx));
        Ok(MockIdp {
            shared,
            guard: Arc::new(Guard {
                stop: stop_tx,
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

/// A real OpenID Connect provider running in this process on a loopback port.
///
/// A cheap, cloneable handle: the server stops when the last handle is dropped, or at once with
/// [`MockIdp::shutdown`]. See the [module documentation](self) for the endpoints.
///
/// ```
/// use tower_sso::testing::{MockIdp, MockUser, Misbehaviour};
/// use http_body_util::{BodyExt, Empty};
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let idp = MockIdp::start().await?;
/// idp.add_user(MockUser::new("bob").claim("email", "bob@example.com").claim("role", "admin"));
/// idp.select_user("bob");
///
/// // Point the layer at it: `SsoLayer::from_env()` reads these.
/// for (name, value) in idp.env_vars() {
///     println!("{name}={value}");
/// }
///
/// // It is real HTTP.
/// let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
/// let url = format!("{}/.well-known/openid-configuration", idp.issuer());
/// let res = client.get(url.parse()?).await?;
/// let body = res.into_body().collect().await?.to_bytes();
/// let meta: serde_json::Value = serde_json::from_slice(&body)?;
/// assert_eq!(meta["issuer"], idp.issuer().as_str());
///
/// // Make it misbehave for the next logins, and check what it was asked.
/// idp.set_misbehaviour(Misbehaviour::WrongIssuer);
/// assert_eq!(idp.count("/.well-known/openid-configuration"), 1);
/// assert_eq!(idp.count("/userinfo"), 0);
/// idp.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MockIdp {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
}

impl MockIdp {
    /// Starts a provider with the defaults: client `tower-sso-test` / `test-secret`, the single
    /// user [`MockUser::alice`], [`LoginMode::Auto`], PKCE required, `iss` parameter on, either
    /// client authentication method accepted.
    pub async fn start() -> std::io::Result<MockIdp> {
        MockIdpBuilder::default().start().await
    }

    /// A builder to configure the provider before it starts.
    pub fn builder() -> MockIdpBuilder {
        MockIdpBuilder::default()
    }

    /// The issuer, `http://127.0.0.1:PORT` (no trailing slash). Discovery lives under it.
    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The registered client id.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The registered client secret.
    pub fn client_secret(&self) -> &str {
        &self.shared.client_secret
    }

    /// Makes every later request misbehave this way ([`Misbehaviour::None`] to stop).
    pub fn set_misbehaviour(&self, m: Misbehaviour) {
        self.shared.lock().misbehaviour = m;
    }

    /// The user [`LoginMode::Auto`] signs in as (and the one the login form preselects). An
    /// unknown `sub` makes `/authorize` answer `error=access_denied`.
    pub fn select_user(&self, sub: &str) {
        self.shared.lock().selected = sub.to_owned();
    }

    /// Adds a user, replacing any user with the same `sub`. It takes effect for later logins.
    pub fn add_user(&self, user: MockUser) {
        let mut state = self.shared.lock();
        if let Some(existing) = state.users.iter_mut().find(|u| u.sub == user.sub) {
            *existing = user;
        } else {
            state.users.push(user);
        }
    }

    /// Replaces the signing key with a new one under a new `kid`. The JWKS then serves only the
    /// new key, so a relying party with a stale JWKS cache must refetch it.
    ///
    /// Generating the key blocks for a moment. Should generation fail (it does not in practice),
    /// the old key stays and a warning is logged.
    pub fn rotate_keys(&self) {
        match SigningKey::generate(self.shared.signing_alg) {
            Ok(key) => self.shared.lock().key = Arc::new(key),
            Err(err) => tracing::warn!(%err, "MockIdp: key rotation failed; keeping the old key"),
        }
    }

    /// The `kid` of the current signing key.
    pub fn current_kid(&self) -> String {
        self.shared.lock().key.kid.clone()
    }

    /// Ends `sub`'s session at the provider and returns the logout token an OpenID Connect
    /// Back-Channel Logout 1.0 provider would post to the client's `backchannel_logout_uri`
    /// (form field `logout_token`): signed with the current key, `typ: logout+jwt`, `iss`, `aud`
    /// (the client), `iat`, `exp` (two minutes), a fresh `jti`, the
    /// `http://schemas.openid.net/event/backchannel-logout` event, `sub`, and the `sid` that
    /// user's id_tokens carried. `None` when the user has no session (never signed in, or
    /// already logged out). The next login gets a new `sid`.
    ///
    /// It does not post the token itself: the test sends it where it likes (with `oneshot`, say).
    pub fn logout_token(&self, sub: &str) -> Option<String> {
        let (sid, key) = {
            let mut state = self.shared.lock();
            (state.sessions.remove(sub)?, state.key.clone())
        };
        let now = server::unix_now();
        let claims = serde_json::json!({
            "iss": self.shared.issuer,
            "aud": self.shared.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": crypto::random_token(16)?,
            "sub": sub,
            "sid": sid,
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        self.sign_logout_token(&claims, &key)
    }

    /// Signs `claims` as a logout token (current key, `typ: logout+jwt`) exactly as
    /// given: for tests of malformed logout tokens.
    pub fn sign_logout_claims(&self, claims: &Value) -> Option<String> {
        let key = self.shared.lock().key.clone();
        self.sign_logout_token(claims, &key)
    }

    fn sign_logout_token(&self, claims: &Value, key: &SigningKey) -> Option<String> {
        crypto::jwt(key, claims, crypto::JwtShape::LogoutToken)
    }

    /// The provider session (`sid`) `sub` is signed in with, if any.
    pub fn session_id(&self, sub: &str) -> Option<String> {
        self.shared.lock().sessions.get(sub).cloned()
    }

    /// Every request received so far, in order (method and path only).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests (any method) were received for `path` (without query).
    pub fn count(&self, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// The credentials issued (code, access, id and refresh tokens) and received (PKCE
    /// verifier) most recently. A test tool only: a real provider keeps no such record.
    pub fn last_issued(&self) -> Issued {
        self.shared.lock().issued.clone()
    }

    /// How many client connections are open right now. After a client gives up on a request
    /// (a timeout, a size cap) its connection must close: a hanging or streaming endpoint
    /// notices when it next writes, a silent one when the server stops.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections.load(Ordering::SeqCst)
    }

    /// The environment `SsoLayer::from_env` reads for a generic OIDC provider:
    /// `GENERIC_ISSUER`, `GENERIC_CLIENT_ID`, `GENERIC_CLIENT_SECRET`, and the explicit
    /// endpoints LiteLLM requires (`GENERIC_AUTHORIZATION_ENDPOINT`, `GENERIC_TOKEN_ENDPOINT`,
    /// `GENERIC_USERINFO_ENDPOINT`).
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let iss = &self.shared.issuer;
        [
            ("GENERIC_ISSUER", iss.clone()),
            ("GENERIC_CLIENT_ID", self.shared.client_id.clone()),
            ("GENERIC_CLIENT_SECRET", self.shared.client_secret.clone()),
            ("GENERIC_AUTHORIZATION_ENDPOINT", format!("{iss}/authorize")),
            ("GENERIC_TOKEN_ENDPOINT", format!("{iss}/token")),
            ("GENERIC_USERINFO_ENDPOINT", format!("{iss}/userinfo")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Entra stand-in: the tenant it plays ([`MockIdpBuilder::entra`]), `None` otherwise.
    pub fn entra_tenant(&self) -> Option<&str> {
        self.shared.entra_tenant.as_deref()
    }

    /// Entra stand-in: the issuer of tenant `tid`'s id_tokens,
    /// `https://login.microsoftonline.com/{tid}/v2.0`.
    pub fn entra_issuer(tid: &str) -> String {
        entra::issuer(tid)
    }

    /// Entra stand-in: the Microsoft Graph base URL, `{issuer}/graph/v1.0`.
    pub fn graph_base_url(&self) -> String {
        format!("{}{}", self.shared.issuer, entra::GRAPH_PREFIX)
    }

    /// Entra stand-in: the directory objects `GET /me/memberOf` lists for user `sub` (groups are
    /// `{"@odata.type": "#microsoft.graph.group", "id": ..., "displayName": ...}`; anything goes,
    /// objects without an `id` included). Replaces the previous list.
    pub fn set_member_of(&self, sub: &str, objects: Vec<Value>) {
        self.shared
            .lock()
            .graph
            .member_of
            .insert(sub.to_owned(), objects);
    }

    /// Entra stand-in: the app role assignments `GET /servicePrincipals/{id}/appRoleAssignedTo`
    /// lists for service principal `id` (`{"principalType": "Group", "principalId": ...,
    /// "principalDisplayName": ...}`, or `"User"` principals). Replaces the previous list.
    pub fn set_app_role_assigned_to(&self, id: &str, objects: Vec<Value>) {
        self.shared
            .lock()
            .graph
            .app_role_assigned_to
            .insert(id.to_owned(), objects);
    }

    /// Entra stand-in: objects per Graph page (default 100; at least 1).
    pub fn set_graph_page_size(&self, n: usize) {
        self.shared.lock().graph.page_size = n.max(1);
    }

    /// Entra stand-in: the environment `SsoLayer::from_env` reads for Microsoft, pointing every
    /// endpoint at this provider: `MICROSOFT_CLIENT_ID`, `_CLIENT_SECRET`, `_TENANT`,
    /// `_AUTHORIZATION_ENDPOINT`, `_TOKEN_ENDPOINT`, `_USERINFO_ENDPOINT` (Graph `/me`),
    /// `_JWKS_URI` and `_GRAPH_BASE_URL`.
    pub fn microsoft_env_vars(&self) -> Vec<(String, String)> {
        let iss = &self.shared.issuer;
        let graph = self.graph_base_url();
        [
            ("MICROSOFT_CLIENT_ID", self.shared.client_id.clone()),
            ("MICROSOFT_CLIENT_SECRET", self.shared.client_secret.clone()),
            (
                "MICROSOFT_TENANT",
                self.shared
                    .entra_tenant
                    .clone()
                    .unwrap_or_else(|| "common".to_owned()),
            ),
            (
                "MICROSOFT_AUTHORIZATION_ENDPOINT",
                format!("{iss}/authorize"),
            ),
            ("MICROSOFT_TOKEN_ENDPOINT", format!("{iss}/token")),
            ("MICROSOFT_USERINFO_ENDPOINT", format!("{graph}/me")),
            ("MICROSOFT_JWKS_URI", format!("{iss}/jwks")),
            ("MICROSOFT_GRAPH_BASE_URL", graph),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Stops the server now (for every handle) and waits until the port is closed.
    pub async fn shutdown(self) {
        let _ = self.guard.stop.send(true);
        let task = self
            .guard
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Held only by the handles: dropping the last one stops the server.
#[derive(Debug)]
struct Guard {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Configuration and state shared by the handles and the server.
#[derive(Debug)]
struct Shared {
    issuer: String,
    client_id: String,
    client_secret: String,
    login_mode: LoginMode,
    iss_parameter: bool,
    access_token_jwt: bool,
    require_pkce: bool,
    client_auth: ClientAuth,
    issue_id_token: bool,
    /// The Entra tenant, when playing Entra ID.
    entra_tenant: Option<String>,
    /// The algorithm of every key this provider generates.
    signing_alg: SigningAlg,
    /// Connections accepted and not yet closed.
    open_connections: AtomicUsize,
    state: Mutex<State>,
}

impl Shared {
    /// Locks the state; a poisoned lock is still usable (the state stays consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct State {
    users: Vec<MockUser>,
    selected: String,
    misbehaviour: Misbehaviour,
    key: Arc<SigningKey>,
    codes: HashMap<String, CodeGrant>,
    /// When expired codes and access tokens were last dropped ([`State::purge_expired`]).
    purged_at: Instant,
    tokens: HashMap<String, AccessGrant>,
    requests: Vec<RecordedRequest>,
    issued: Issued,
    graph: entra::GraphState,
    /// The provider session (`sid`) of each signed-in user, by `sub`: the same for every login
    /// until [`MockIdp::logout_token`] ends it.
    sessions: HashMap<String, String>,
}

impl State {
    /// Drops expired authorization codes and access tokens, at most once a second: scanning
    /// them on every request would make each request cost more the longer the provider runs
    /// (a benchmark issues thousands of codes a second, each kept for [`server::CODE_TTL`]).
    fn purge_expired(&mut self, now: Instant) {
        if now.duration_since(self.purged_at) < Duration::from_secs(1) {
            return;
        }
        self.purged_at = now;
        self.codes
            .retain(|_, g| now.duration_since(g.issued) < server::CODE_TTL);
        self.tokens.retain(|_, g| g.expires > now);
    }
}

/// What an authorization code stands for.
#[derive(Debug)]
struct CodeGrant {
    redirect_uri: String,
    nonce: Option<String>,
    code_challenge: Option<String>,
    scope: String,
    user: MockUser,
    issued: Instant,
    /// Set once redeemed; a second redemption revokes this access token.
    redeemed: Option<String>,
}

/// What an access token stands for (for `/userinfo`).
#[derive(Debug)]
struct AccessGrant {
    user: MockUser,
    expires: Instant,
}

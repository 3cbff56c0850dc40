//! Metrics, through the [`metrics`](https://docs.rs/metrics) facade: every metric the layer
//! records, its labels, and the one-line recording functions the rest of the crate calls.
//!
//! The layer installs no exporter: install the recorder of your choice (for Prometheus,
//! `metrics-exporter-prometheus`) and the metrics below appear in it. With no recorder
//! installed, recording costs next to nothing.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `tower_sso_logins_started_total` | counter | `provider` | a login was sent to the identity provider (`/sso/key/generate`, `/sso/debug/login`) |
//! | `tower_sso_logins_succeeded_total` | counter | `provider` | a callback ended in a session (or, for a CLI login, a session kept for the CLI's poll) |
//! | `tower_sso_logins_refused_total` | counter | `provider`, `reason` | a callback was refused; `reason` below |
//! | `tower_sso_callbacks_total` | counter | `provider`, `outcome` | every callback, the debug callback included: `ok` or `refused` |
//! | `tower_sso_idp_request_duration_seconds` | histogram | `provider`, `endpoint`, `outcome` | one call to the identity provider: `endpoint` is `discovery`, `jwks`, `token`, `userinfo`, `graph` or `other`; `outcome` is `ok` (a 2xx answer), `http_error` (any other status), `timeout` or `error` (unreachable, TLS, body too large, ...) |
//! | `tower_sso_sessions_verified_total` | counter | `outcome` | a session token was accepted: `remembered` (verified before, one in-process lookup) or `verified` (a full signature check) |
//! | `tower_sso_sessions_refused_total` | counter | `reason` | a protected request (or an endpoint that needs a session) without a valid session: `missing`, `too_long`, `invalid`, `expired`, `revoked`, `ambiguous` |
//! | `tower_sso_session_revocations_total` | counter | `source` | sessions revoked in this process: `logout`, `login` (a new login replaced the browser's old session), `backchannel` (OpenID back-channel logout), `feed` (read from the shared revocation feed; with a feed, this instance's own revocations come back through it too) |
//! | `tower_sso_verifier_cache_errors_total` | counter | `backend` | the verifier cache failed (`moka`, `redis` or `custom`) |
//! | `tower_sso_user_store_errors_total` | counter | `backend` | the user store failed (`memory`, `postgres` or `custom`); a conflict or a missing record is an answer, not an error |
//! | `tower_sso_rate_limited_total` | counter | `action` | a request refused by a rate limit: `login`, `callback`, `cli_poll` |
//!
//! The `reason` of a refused login: `state` (the login state or flow cookie: missing, forged,
//! expired, replayed, from another browser), `code` (no code, or the token endpoint refused it),
//! `issuer` (the `iss` response parameter, RFC 9207), `idp_refused` (the provider answered with
//! `error=`), `id_token` (the id_token, or the userinfo/Graph profile matched against it, failed
//! verification), `policy` (the access policy, a hook, a tenant or hosted-domain check refused
//! the user), `conflict` (the e-mail belongs to another stored user), `idp_error` (the provider
//! answered garbage or could not be reached), `idp_timeout`, `cache` (verifier cache
//! unavailable), `store` (user store unavailable), `unavailable` (provider metadata or another
//! part unavailable), `rate_limited`, `bad_request`, `internal`.
//!
//! Labels hold configuration (provider names) and fixed words only: never a user id, an e-mail,
//! a token, a code, a URL or an address.
//!
//! # When to install the recorder
//!
//! Any time. The per-request metrics (sessions verified and refused) use handles registered once
//! with the recorder in force when they are first used, and kept as long as that recorder is
//! the current one; installing the global recorder later (after the layer is built, or even
//! after the first requests) registers them once more with it. The check costs one
//! thread-local read and one atomic load per request, and nothing is allocated: measured on a
//! shared 2-core machine, recording one verified session costs about 7 ns without a recorder
//! and 8 ns with the Prometheus exporter's (the recorder check is about 3 ns of it). The other
//! metrics (logins, IdP calls, errors) are recorded through the recorder in force at the time.
//!
//! Thread-local recorders (`metrics::with_local_recorder`) work too, but the per-request
//! handles are kept for at most two recorders, told apart by address: prefer the global
//! recorder (`metrics::set_global_recorder`, or the exporter's `install`).
//!
//! # Spans
//!
//! With a `tracing` subscriber, each request to an SSO endpoint runs in an `sso_endpoint` span
//! (fields `endpoint`, `provider` when known, `request_id`, and `outcome`: the response status)
//! and each call to an identity provider in an `idp_call` span (`provider`, `endpoint`,
//! `outcome` as above, `duration_ms`). The request id is the inbound `X-Request-Id` when it is
//! a short safe token (at most 64 of `A-Z a-z 0-9 . _ -`), otherwise 16 random hex digits; the
//! endpoint's response carries it back as `X-Request-Id`. Protected requests get no span.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use ::metrics::{Counter, counter, histogram};
use http::HeaderValue;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_service::Service;
use tracing::Instrument;

use crate::cache::VerifierCache;
use crate::error::SsoError;
use crate::http::{HttpClient, HttpError, HttpRequest, HttpResponse};
use crate::rate_limit::Action;
use crate::session::SessionError;
use crate::store::{StoreError, UserStore};

/// `tower_sso_logins_started_total`.
pub const LOGINS_STARTED: &str = "tower_sso_logins_started_total";
/// `tower_sso_logins_succeeded_total`.
pub const LOGINS_SUCCEEDED: &str = "tower_sso_logins_succeeded_total";
/// `tower_sso_logins_refused_total`.
pub const LOGINS_REFUSED: &str = "tower_sso_logins_refused_total";
/// `tower_sso_callbacks_total`.
pub const CALLBACKS: &str = "tower_sso_callbacks_total";
/// `tower_sso_idp_request_duration_seconds`.
pub const IDP_REQUEST_DURATION: &str = "tower_sso_idp_request_duration_seconds";
/// `tower_sso_sessions_verified_total`.
pub const SESSIONS_VERIFIED: &str = "tower_sso_sessions_verified_total";
/// `tower_sso_sessions_refused_total`.
pub const SESSIONS_REFUSED: &str = "tower_sso_sessions_refused_total";
/// `tower_sso_session_revocations_total`.
pub const SESSION_REVOCATIONS: &str = "tower_sso_session_revocations_total";
/// `tower_sso_verifier_cache_errors_total`.
pub const VERIFIER_CACHE_ERRORS: &str = "tower_sso_verifier_cache_errors_total";
/// `tower_sso_user_store_errors_total`.
pub const USER_STORE_ERRORS: &str = "tower_sso_user_store_errors_total";
/// `tower_sso_rate_limited_total`.
pub const RATE_LIMITED: &str = "tower_sso_rate_limited_total";

/// Every metric name, for exporters that want them described up front.
pub const ALL: [&str; 11] = [
    LOGINS_STARTED,
    LOGINS_SUCCEEDED,
    LOGINS_REFUSED,
    CALLBACKS,
    IDP_REQUEST_DURATION,
    SESSIONS_VERIFIED,
    SESSIONS_REFUSED,
    SESSION_REVOCATIONS,
    VERIFIER_CACHE_ERRORS,
    USER_STORE_ERRORS,
    RATE_LIMITED,
];

/// Describes every metric (unit and meaning) to the recorder in force. Optional: call it once
/// after installing the recorder if your exporter shows descriptions (Prometheus `# HELP`).
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(LOGINS_STARTED, "Logins sent to the identity provider");
    describe_counter!(LOGINS_SUCCEEDED, "Callbacks that ended in a session");
    describe_counter!(LOGINS_REFUSED, "Callbacks refused, by reason");
    describe_counter!(CALLBACKS, "Callbacks, by outcome");
    describe_histogram!(
        IDP_REQUEST_DURATION,
        Unit::Seconds,
        "Calls to the identity provider, by endpoint and outcome"
    );
    describe_counter!(SESSIONS_VERIFIED, "Session tokens accepted");
    describe_counter!(
        SESSIONS_REFUSED,
        "Requests without a valid session, by reason"
    );
    describe_counter!(SESSION_REVOCATIONS, "Sessions revoked, by source");
    describe_counter!(VERIFIER_CACHE_ERRORS, "Verifier cache failures");
    describe_counter!(USER_STORE_ERRORS, "User store failures");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit");
}

// ---------------------------------------------------------------------------------------------
// Label values.

/// Why a login was refused (the `reason` of `tower_sso_logins_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    State,
    Code,
    Issuer,
    IdpRefused,
    IdToken,
    Policy,
    Conflict,
    IdpError,
    IdpTimeout,
    Cache,
    Store,
    Unavailable,
    RateLimited,
    BadRequest,
    Internal,
}

impl Refusal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::State => "state",
            Refusal::Code => "code",
            Refusal::Issuer => "issuer",
            Refusal::IdpRefused => "idp_refused",
            Refusal::IdToken => "id_token",
            Refusal::Policy => "policy",
            Refusal::Conflict => "conflict",
            Refusal::IdpError => "idp_error",
            Refusal::IdpTimeout => "idp_timeout",
            Refusal::Cache => "cache",
            Refusal::Store => "store",
            Refusal::Unavailable => "unavailable",
            Refusal::RateLimited => "rate_limited",
            Refusal::BadRequest => "bad_request",
            Refusal::Internal => "internal",
        }
    }

    /// The reason of `err`: the one its origin gave it, else from its parameter and kind.
    pub(crate) fn of(err: &SsoError) -> Self {
        if let Some(r) = err.refusal() {
            return r;
        }
        match err.param() {
            Some("state") => return Refusal::State,
            Some("code") => return Refusal::Code,
            Some("iss") => return Refusal::Issuer,
            Some("error") => return Refusal::IdpRefused,
            _ => {}
        }
        match err.kind() {
            "auth_error" => Refusal::IdToken,
            "forbidden" => Refusal::Policy,
            "conflict" => Refusal::Conflict,
            "idp_error" => Refusal::IdpError,
            "idp_timeout" => Refusal::IdpTimeout,
            "service_unavailable" => Refusal::Unavailable,
            "rate_limited" => Refusal::RateLimited,
            "bad_request" => Refusal::BadRequest,
            _ => Refusal::Internal,
        }
    }
}

/// Which identity-provider endpoint a call is for (the `endpoint` label of
/// `tower_sso_idp_request_duration_seconds`). Travels in the request's extensions, from
/// [`crate::oidc`] to the timing wrapper around each provider's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdpEndpoint {
    Discovery,
    Jwks,
    Token,
    Userinfo,
    Graph,
}

impl IdpEndpoint {
    fn as_str(self) -> &'static str {
        match self {
            IdpEndpoint::Discovery => "discovery",
            IdpEndpoint::Jwks => "jwks",
            IdpEndpoint::Token => "token",
            IdpEndpoint::Userinfo => "userinfo",
            IdpEndpoint::Graph => "graph",
        }
    }
}

/// Where a revocation came from (the `source` of `tower_sso_session_revocations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevocationSource {
    Logout,
    Login,
    Backchannel,
    Feed,
}

impl RevocationSource {
    fn as_str(self) -> &'static str {
        match self {
            RevocationSource::Logout => "logout",
            RevocationSource::Login => "login",
            RevocationSource::Backchannel => "backchannel",
            RevocationSource::Feed => "feed",
        }
    }
}

fn action_label(action: Action) -> &'static str {
    match action {
        Action::Login => "login",
        Action::Callback => "callback",
        Action::CliPoll => "cli_poll",
    }
}

// ---------------------------------------------------------------------------------------------
// Logins and callbacks (a few per login: recorded through the recorder in force).

/// A login was sent to the identity provider.
pub(crate) fn login_started(provider: &str) {
    counter!(LOGINS_STARTED, "provider" => provider.to_owned()).increment(1);
}

/// A callback of `provider` ended: `Ok` or the error it was refused with. A debug callback
/// counts as a callback only (it never makes a session).
pub(crate) fn callback_finished(provider: &str, result: Result<(), &SsoError>, debug: bool) {
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    counter!(CALLBACKS, "provider" => provider.to_owned(), "outcome" => outcome).increment(1);
    if debug {
        return;
    }
    match result {
        Ok(()) => counter!(LOGINS_SUCCEEDED, "provider" => provider.to_owned()).increment(1),
        Err(e) => login_refused(provider, Refusal::of(e)),
    }
}

/// A login of `provider` was refused for `reason`.
pub(crate) fn login_refused(provider: &str, reason: Refusal) {
    counter!(
        LOGINS_REFUSED,
        "provider" => provider.to_owned(),
        "reason" => reason.as_str()
    )
    .increment(1);
}

/// A request was refused by the rate limit of `action`.
pub(crate) fn rate_limited(action: Action) {
    counter!(RATE_LIMITED, "action" => action_label(action)).increment(1);
}

/// A session was revoked in this process.
pub(crate) fn session_revoked(source: RevocationSource) {
    counter!(SESSION_REVOCATIONS, "source" => source.as_str()).increment(1);
}

// ---------------------------------------------------------------------------------------------
// Sessions: the per-request metrics, through handles registered once per recorder.

/// Handles registered with one recorder, kept for as long as it is the current one: at most
/// two recorders are remembered (the no-op one before the global recorder is installed, and the
/// global one), any other gets its handles registered on each use.
struct PerRecorder<T: 'static> {
    first: OnceLock<(usize, T)>,
    second: OnceLock<(usize, T)>,
    register: fn() -> T,
}

impl<T> PerRecorder<T> {
    const fn new(register: fn() -> T) -> Self {
        Self {
            first: OnceLock::new(),
            second: OnceLock::new(),
            register,
        }
    }

    /// Runs `f` with the handles of the current recorder.
    #[inline]
    fn with(&self, f: impl FnOnce(&T)) {
        let current = current_recorder();
        for slot in [&self.first, &self.second] {
            let (recorder, handles) = slot.get_or_init(|| (current, (self.register)()));
            if *recorder == current {
                return f(handles);
            }
        }
        f(&(self.register)());
    }
}

/// The address of the recorder in force (the no-op recorder's when none is installed): one
/// thread-local read and one atomic load.
#[inline]
fn current_recorder() -> usize {
    ::metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize)
}

struct SessionHandles {
    remembered: Counter,
    verified: Counter,
    /// By [`SessionError`], in the order of [`refusal_index`].
    refused: [Counter; 6],
}

const SESSION_REFUSALS: [&str; 6] = [
    "missing",
    "too_long",
    "invalid",
    "expired",
    "revoked",
    "ambiguous",
];

fn refusal_index(err: SessionError) -> usize {
    match err {
        SessionError::Missing => 0,
        SessionError::TooLong => 1,
        SessionError::Invalid => 2,
        SessionError::Expired => 3,
        SessionError::Revoked => 4,
        SessionError::Ambiguous => 5,
    }
}

impl SessionHandles {
    fn register() -> Self {
        Self {
            remembered: counter!(SESSIONS_VERIFIED, "outcome" => "remembered"),
            verified: counter!(SESSIONS_VERIFIED, "outcome" => "verified"),
            refused: SESSION_REFUSALS.map(|reason| counter!(SESSIONS_REFUSED, "reason" => reason)),
        }
    }
}

static SESSIONS: PerRecorder<SessionHandles> = PerRecorder::new(SessionHandles::register);

/// A session token was accepted: `remembered` when it was answered from memory.
#[inline]
pub(crate) fn session_verified(remembered: bool) {
    SESSIONS.with(|h| {
        if remembered {
            h.remembered.increment(1)
        } else {
            h.verified.increment(1)
        }
    });
}

/// A request carried no valid session.
#[inline]
pub(crate) fn session_refused(err: SessionError) {
    SESSIONS.with(|h| h.refused[refusal_index(err)].increment(1));
}

// ---------------------------------------------------------------------------------------------
// Backends: errors counted by wrapping the services once, at build time.

/// The `backend` label of a verifier cache described as `description` ([`crate::Backends`]).
fn cache_backend(description: &str) -> &'static str {
    let d = description.to_ascii_lowercase();
    if d.contains("redis") {
        "redis"
    } else if d.contains("moka") {
        "moka"
    } else {
        "custom"
    }
}

/// The `backend` label of a user store described as `description`.
fn store_backend(description: &str) -> &'static str {
    let d = description.to_ascii_lowercase();
    if d.contains("postgres") {
        "postgres"
    } else if d.contains("memory") {
        "memory"
    } else {
        "custom"
    }
}

/// `cache`, counting its errors in `tower_sso_verifier_cache_errors_total`.
pub(crate) fn count_cache_errors(cache: VerifierCache, description: &str) -> VerifierCache {
    let backend = cache_backend(description);
    BoxCloneSyncService::new(cache.map_err(move |e| {
        counter!(VERIFIER_CACHE_ERRORS, "backend" => backend).increment(1);
        e
    }))
}

/// `store`, counting its failures (not its conflicts or misses) in
/// `tower_sso_user_store_errors_total`.
pub(crate) fn count_store_errors(store: UserStore, description: &str) -> UserStore {
    let backend = store_backend(description);
    BoxCloneSyncService::new(store.map_err(move |e| {
        if matches!(e, StoreError::Backend(_)) {
            counter!(USER_STORE_ERRORS, "backend" => backend).increment(1);
        }
        e
    }))
}

// ---------------------------------------------------------------------------------------------
// Identity-provider calls: timed and traced at one place, the client each provider holds.

/// `http` for provider `provider`: each call is timed into
/// `tower_sso_idp_request_duration_seconds` and runs in an `idp_call` span. The endpoint comes
/// from the request's extensions ([`tag`]).
pub(crate) fn idp_client(http: HttpClient, provider: &str) -> HttpClient {
    BoxCloneSyncService::new(IdpCalls {
        inner: http,
        provider: Arc::from(provider),
    })
}

/// Marks `req` as a call to `endpoint`.
pub(crate) fn tag(req: &mut HttpRequest, endpoint: IdpEndpoint) {
    req.extensions_mut().insert(endpoint);
}

#[derive(Clone)]
struct IdpCalls {
    inner: HttpClient,
    provider: Arc<str>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Service<HttpRequest> for IdpCalls {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = BoxFuture<Result<HttpResponse, HttpError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HttpError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest) -> Self::Future {
        let endpoint = req
            .extensions()
            .get::<IdpEndpoint>()
            .map_or("other", |e| e.as_str());
        let provider = self.provider.clone();
        let span = tracing::info_span!(
            "idp_call",
            provider = &*provider,
            endpoint,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let call = self.inner.call(req);
        Box::pin(
            async move {
                let start = Instant::now();
                let result = call.await;
                let elapsed = start.elapsed();
                let outcome = match &result {
                    Ok(res) if res.status().is_success() => "ok",
                    Ok(_) => "http_error",
                    Err(HttpError::Timeout) => "timeout",
                    Err(_) => "error",
                };
                let span = tracing::Span::current();
                span.record("outcome", outcome);
                span.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
                histogram!(
                    IDP_REQUEST_DURATION,
                    "provider" => provider.to_string(),
                    "endpoint" => endpoint,
                    "outcome" => outcome
                )
                .record(elapsed.as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoint spans and request ids.

/// The longest inbound `X-Request-Id` taken as it is.
const MAX_REQUEST_ID: usize = 64;

/// The header carrying the request id, both ways.
pub(crate) const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The inbound `X-Request-Id` when it is a short safe token, else a new random one.
pub(crate) fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .map(HeaderValue::as_bytes)
        .filter(|v| is_safe_request_id(v))
        .and_then(|v| std::str::from_utf8(v).ok())
        .map_or_else(crate::random::hex_id, str::to_owned)
}

fn is_safe_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The span an endpoint request runs in; `outcome` is recorded by [`finish_endpoint`].
pub(crate) fn endpoint_span(
    endpoint: &'static str,
    provider: Option<&str>,
    id: &str,
) -> tracing::Span {
    tracing::info_span!(
        "sso_endpoint",
        endpoint,
        provider = provider,
        request_id = id,
        outcome = tracing::field::Empty,
    )
}

/// Records the provider of the endpoint request in progress, once it is known.
pub(crate) fn record_provider(provider: &str) {
    tracing::Span::current().record("provider", provider);
}

/// Records the outcome of an endpoint request in `span` and echoes the request id.
pub(crate) fn finish_endpoint<B>(span: &tracing::Span, id: &str, res: &mut http::Response<B>) {
    span.record("outcome", res.status().as_u16());
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_reasons_come_from_the_error() {
        let cases = [
            (SsoError::unauthorized("x").with_param("state"), "state"),
            (SsoError::bad_request("x").with_param("code"), "code"),
            (SsoError::unauthorized("x").with_param("iss"), "issuer"),
            (
                SsoError::unauthorized("x").with_param("error"),
                "idp_refused",
            ),
            (SsoError::unauthorized("bad signature"), "id_token"),
            (SsoError::forbidden("domain"), "policy"),
            (SsoError::bad_gateway("x"), "idp_error"),
            (SsoError::gateway_timeout("x"), "idp_timeout"),
            (SsoError::unavailable("x"), "unavailable"),
            (SsoError::too_many_requests("x"), "rate_limited"),
            (SsoError::bad_request("x"), "bad_request"),
            (SsoError::internal("x"), "internal"),
            (
                SsoError::unavailable("x").with_refusal(Refusal::Store),
                "store",
            ),
            (
                SsoError::unavailable("x").with_refusal(Refusal::Cache),
                "cache",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(Refusal::of(&err).as_str(), want, "{err}");
        }
    }

    #[test]
    fn request_ids_are_taken_only_when_safe() {
        let with = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(REQUEST_ID, HeaderValue::from_str(v).unwrap());
            request_id(&h)
        };
        assert_eq!(with("req-42.a_B"), "req-42.a_B");
        let long = "a".repeat(64);
        assert_eq!(with(&long), long);
        for bad in [
            "a".repeat(65),
            "a b".into(),
            "a/b".into(),
            "tok=en".into(),
            String::new(),
        ] {
            let id = with(&bad);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
        let fresh = request_id(&http::HeaderMap::new());
        assert_eq!(fresh.len(), 16);
        assert_ne!(fresh, request_id(&http::HeaderMap::new()));
    }

    #[test]
    fn backend_labels_are_fixed_words() {
        assert_eq!(cache_backend("in-process cache (moka)"), "moka");
        assert_eq!(
            cache_backend("tower_sso::cache::redis::RedisVerifierCache"),
            "redis"
        );
        assert_eq!(cache_backend("Redis at redis://***@cache:6379"), "redis");
        assert_eq!(cache_backend("my_app::Cache"), "custom");
        assert_eq!(store_backend("in memory"), "memory");
        assert_eq!(store_backend("PostgreSQL at postgres://db/x"), "postgres");
        assert_eq!(store_backend("my_app::Store"), "custom");
    }

    /// The per-recorder handles follow the recorder in force: registered with a first
    /// recorder, then with a second, and with a third on each use.
    #[test]
    fn session_handles_follow_the_recorder() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        static COUNTS: PerRecorder<Counter> =
            PerRecorder::new(|| counter!("tower_sso_test_per_recorder_total"));
        let value = |r: &DebuggingRecorder| {
            r.snapshotter()
                .snapshot()
                .into_vec()
                .into_iter()
                .find_map(|(k, _, _, v)| {
                    (k.key().name() == "tower_sso_test_per_recorder_total").then_some(v)
                })
        };
        let recorders = [
            DebuggingRecorder::new(),
            DebuggingRecorder::new(),
            DebuggingRecorder::new(),
        ];
        for _ in 0..2 {
            for r in &recorders {
                ::metrics::with_local_recorder(r, || COUNTS.with(|c| c.increment(1)));
            }
        }
        for r in &recorders {
            assert_eq!(value(r), Some(DebugValue::Counter(2)));
        }
    }
}

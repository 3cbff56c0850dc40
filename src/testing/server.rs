//! The HTTP side of the mock provider: accept loop, routing and the endpoints.

// Validation helpers return the finished HTTP answer as their error; it is moved once per request
// of a test server, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

use super::crypto::{self, JwtShape};
use super::{
    AccessGrant, ClientAuth, CodeGrant, Fault, LoginMode, Misbehaviour, MockUser, RecordedRequest,
    Shared,
};

/// Largest request body read (bigger ones get 413).
const MAX_BODY: usize = 64 * 1024;
/// How long an authorization code can be redeemed.
pub(super) const CODE_TTL: Duration = Duration::from_secs(600);
/// Access token lifetime (`expires_in`).
const ACCESS_TTL_SECS: u64 = 3600;
/// id_token lifetime.
const ID_TOKEN_TTL_SECS: u64 = 300;
/// The issuer the "wrong issuer" misbehaviours use.
const EVIL_ISSUER: &str = "https://evil.example.com";

pub(super) type Resp = Response<Full<Bytes>>;
/// The body the server sends: a complete one, or one of the faulty streams.
type MockBody = BoxBody<Bytes, io::Error>;

/// Accepts connections until `stop` fires (or its sender is dropped).
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::debug!(%err, "MockIdp: accept failed");
                // Back off a little so a persistent error (too many open files) does not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let mut stop = stop.clone();
        shared.open_connections.fetch_add(1, Ordering::SeqCst);
        let gauge = ConnectionGauge(shared.clone());
        tokio::spawn(async move {
            let _gauge = gauge;
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                res = conn => {
                    if let Err(err) = res {
                        tracing::debug!(%err, "MockIdp: connection error");
                    }
                }
                _ = stop.changed() => {}
            }
        });
    }
}

/// Decrements the open-connection count when a connection task ends (however it ends).
struct ConnectionGauge(Arc<Shared>);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records one request, then answers it: with the fault when one targets its endpoint, else
/// by routing it.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<MockBody> {
    let misbehaviour = {
        let mut state = shared.lock();
        state.requests.push(RecordedRequest {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
        });
        state.misbehaviour.clone()
    };
    if let Misbehaviour::Fault(endpoint, fault) = misbehaviour
        && req.uri().path() == endpoint.path()
    {
        return fault_response(fault).await;
    }
    route(shared, req, misbehaviour)
        .await
        .map(|body| body.map_err(|never| match never {}).boxed())
}

/// Routes one request.
async fn route(shared: &Shared, req: Request<Incoming>, misbehaviour: Misbehaviour) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    if let Misbehaviour::Slow(d) = misbehaviour {
        tokio::time::sleep(d).await;
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "body too large",
            );
        }
    };
    let m = &misbehaviour;
    if shared.entra_tenant.is_some()
        && let Some(rest) = path.strip_prefix(super::entra::GRAPH_PREFIX)
    {
        return super::entra::graph(shared, m, &method, rest, &query, &parts.headers);
    }
    match (method, path.as_str()) {
        (Method::GET, "/.well-known/openid-configuration") => discovery(shared, m),
        (Method::GET, "/authorize") => authorize(shared, m, &query, false),
        (Method::POST, "/authorize" | "/login") => match form_body(&parts.headers, &body) {
            Some(form) => authorize(shared, m, &form, true),
            None => html(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "<p>Expected a form body.</p>",
            ),
        },
        (Method::POST, "/token") => token(shared, m, &parts.headers, &body),
        (Method::GET | Method::POST, "/userinfo") => userinfo(shared, m, &parts.headers),
        (Method::GET, "/jwks") => jwks(shared),
        (Method::GET, "/logout") => logout(&query),
        (Method::POST, "/logout") => logout(&form_body(&parts.headers, &body).unwrap_or_default()),
        (
            _,
            "/.well-known/openid-configuration"
            | "/authorize"
            | "/login"
            | "/token"
            | "/userinfo"
            | "/jwks"
            | "/logout",
        ) => oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method not allowed",
        ),
        _ => oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints

fn discovery(shared: &Shared, m: &Misbehaviour) -> Resp {
    let iss = &shared.issuer;
    let advertised_issuer = if *m == Misbehaviour::DiscoveryIssuerMismatch {
        format!("{iss}/other")
    } else {
        iss.clone()
    };
    let auth_methods = match shared.client_auth {
        ClientAuth::Basic => json!(["client_secret_basic"]),
        ClientAuth::Post => json!(["client_secret_post"]),
        ClientAuth::Any => json!(["client_secret_basic", "client_secret_post"]),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": advertised_issuer,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "userinfo_endpoint": format!("{iss}/userinfo"),
            "jwks_uri": format!("{iss}/jwks"),
            "end_session_endpoint": format!("{iss}/logout"),
            // Logout tokens are minted on request (`MockIdp::logout_token`), not posted.
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [match shared.signing_alg {
                super::SigningAlg::Rs256 => "RS256",
                super::SigningAlg::Es256 => "ES256",
            }],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": auth_methods,
            "authorization_response_iss_parameter_supported": shared.iss_parameter,
            "scopes_supported": ["openid", "email", "profile", "groups"],
            "claims_supported": [
                "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "sid",
                "email", "email_verified", "preferred_username", "name", "groups", "role",
            ],
        }),
    )
}

/// A validated authorization request.
struct AuthzRequest {
    redirect_uri: Url,
    /// The exact string the client sent (the token request must repeat it).
    redirect_uri_raw: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    scope: String,
}

/// `GET /authorize` (params from the query) and the login form's `POST` (`submitted`).
fn authorize(shared: &Shared, m: &Misbehaviour, raw_params: &str, submitted: bool) -> Resp {
    let params = match parse_params(raw_params) {
        Ok(p) => p,
        Err(msg) => {
            return html(
                StatusCode::BAD_REQUEST,
                "Bad request",
                &format!("<p>{}</p>", esc(&msg)),
            );
        }
    };
    let req = match validate_authorize(shared, m, &params) {
        Ok(req) => req,
        Err(resp) => return resp,
    };
    let (user, users, selected) = {
        let state = shared.lock();
        let wanted = if submitted {
            params.get("login").cloned().unwrap_or_default()
        } else {
            state.selected.clone()
        };
        let user = state.users.iter().find(|u| u.sub == wanted).cloned();
        (user, state.users.clone(), state.selected.clone())
    };
    if submitted {
        if params.get("action").map(String::as_str) == Some("cancel") {
            return error_redirect(
                shared,
                m,
                &req,
                "access_denied",
                "The user cancelled the login.",
            );
        }
        if user.is_none() {
            return html(
                StatusCode::BAD_REQUEST,
                "Unknown user",
                "<p>Pick a user from the list.</p>",
            );
        }
    } else if shared.login_mode == LoginMode::Form {
        return login_form(&params, &users, &selected);
    }
    let Some(user) = user else {
        return error_redirect(
            shared,
            m,
            &req,
            "access_denied",
            "No such user at the mock provider.",
        );
    };
    let Some(code) = crypto::random_token(24) else {
        return error_redirect(shared, m, &req, "server_error", "No randomness.");
    };
    {
        let mut state = shared.lock();
        let now = Instant::now();
        state.purge_expired(now);
        state.codes.insert(
            code.clone(),
            CodeGrant {
                redirect_uri: req.redirect_uri_raw.clone(),
                nonce: req.nonce.clone(),
                code_challenge: req.code_challenge.clone(),
                scope: req.scope.clone(),
                user,
                issued: now,
                redeemed: None,
            },
        );
        state.issued.code = Some(code.clone());
    }
    authz_redirect(shared, m, &req, &[("code", &code)])
}

/// Checks an authorization request. Problems with the client or redirect URI are shown as a
/// page (never redirected, RFC 6749 §4.1.2.1); anything else is redirected back as an error.
fn validate_authorize(
    shared: &Shared,
    m: &Misbehaviour,
    params: &HashMap<String, String>,
) -> Result<AuthzRequest, Resp> {
    let get = |k: &str| params.get(k).cloned();
    match get("client_id") {
        Some(id) if id == shared.client_id => {}
        Some(_) => {
            return Err(html(
                StatusCode::BAD_REQUEST,
                "Unknown client",
                "<p>The client_id is not registered.</p>",
            ));
        }
        None => {
            return Err(html(
                StatusCode::BAD_REQUEST,
                "Missing client",
                "<p>The client_id parameter is missing.</p>",
            ));
        }
    }
    let Some(redirect_uri_raw) = get("redirect_uri") else {
        return Err(html(
            StatusCode::BAD_REQUEST,
            "Missing redirect_uri",
            "<p>The redirect_uri parameter is missing.</p>",
        ));
    };
    let redirect_uri = match Url::parse(&redirect_uri_raw) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https") && u.has_host() && u.fragment().is_none() =>
        {
            u
        }
        _ => {
            return Err(html(
                StatusCode::BAD_REQUEST,
                "Invalid redirect_uri",
                "<p>The redirect_uri must be an absolute http(s) URL without a fragment.</p>",
            ));
        }
    };
    let req = AuthzRequest {
        redirect_uri,
        redirect_uri_raw,
        state: get("state"),
        nonce: get("nonce"),
        code_challenge: get("code_challenge"),
        scope: get("scope").unwrap_or_default(),
    };
    let fail =
        |error: &str, description: &str| Err(error_redirect(shared, m, &req, error, description));
    if let Misbehaviour::AuthorizeError(error) = m {
        return fail(
            error,
            "The mock provider was told to fail the authorization.",
        );
    }
    if get("response_type").as_deref() != Some("code") {
        return fail(
            "unsupported_response_type",
            "Only response_type=code is supported.",
        );
    }
    if get("response_mode").is_some_and(|mode| mode != "query") {
        return fail("invalid_request", "Only response_mode=query is supported.");
    }
    if !req.scope.split(' ').any(|s| s == "openid") {
        return fail("invalid_scope", "The openid scope is required.");
    }
    match (&req.code_challenge, get("code_challenge_method").as_deref()) {
        (Some(challenge), Some("S256")) => {
            if challenge.len() != 43 || !challenge.bytes().all(is_b64url_byte) {
                return fail(
                    "invalid_request",
                    "code_challenge is not a BASE64URL SHA-256 value.",
                );
            }
        }
        (Some(_), _) => {
            return fail(
                "invalid_request",
                "Only code_challenge_method=S256 is supported.",
            );
        }
        (None, Some(_)) => {
            return fail(
                "invalid_request",
                "code_challenge_method without code_challenge.",
            );
        }
        (None, None) if shared.require_pkce => {
            return fail(
                "invalid_request",
                "PKCE is required: send code_challenge with S256.",
            );
        }
        (None, None) => {}
    }
    Ok(req)
}

fn login_form(params: &HashMap<String, String>, users: &[MockUser], selected: &str) -> Resp {
    let ordered: BTreeMap<_, _> = params
        .iter()
        .filter(|(k, _)| *k != "login" && *k != "action")
        .collect();
    let mut hidden = String::new();
    for (k, v) in ordered {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            esc(k),
            esc(v)
        ));
    }
    let mut options = String::new();
    for u in users {
        let label = u
            .claims
            .get("name")
            .or_else(|| u.claims.get("email"))
            .and_then(Value::as_str)
            .map(|l| format!("{l} ({})", u.sub))
            .unwrap_or_else(|| u.sub.clone());
        let sel = if u.sub == selected { " selected" } else { "" };
        options.push_str(&format!(
            "<option value=\"{}\"{sel}>{}</option>\n",
            esc(&u.sub),
            esc(&label)
        ));
    }
    let body = format!(
        "<form method=\"post\" action=\"/authorize\">\n{hidden}<label>Sign in as \
         <select name=\"login\">\n{options}</select></label>\n\
         <button type=\"submit\" name=\"action\" value=\"login\">Sign in</button>\n\
         <button type=\"submit\" name=\"action\" value=\"cancel\">Cancel</button>\n</form>"
    );
    html(StatusCode::OK, "Mock IdP: sign in", &body)
}

/// `POST /token`.
fn token(shared: &Shared, m: &Misbehaviour, headers: &HeaderMap, body: &[u8]) -> Resp {
    let Some(raw) = form_body(headers, body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    let params = match parse_params(&raw) {
        Ok(p) => p,
        Err(msg) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &msg),
    };
    match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only authorization_code is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing",
            );
        }
    }
    if let Err(resp) = authenticate_client(shared, headers, &params) {
        return resp;
    }
    let Some(code) = params.get("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        );
    };

    // Redeem the code (single use; a replay revokes what the first redemption issued).
    let Some(opaque) = crypto::random_token(32) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        );
    };
    let (user, nonce, scope, key) = {
        let mut guard = shared.lock();
        let state = &mut *guard;
        let Some(grant) = state.codes.get_mut(code) else {
            return invalid_grant("unknown or expired code");
        };
        if let Some(issued) = grant.redeemed.replace(String::new()) {
            state.tokens.remove(&issued);
            return invalid_grant("code already used");
        }
        if grant.issued.elapsed() >= CODE_TTL {
            return invalid_grant("code expired");
        }
        if params.get("redirect_uri") != Some(&grant.redirect_uri) {
            return invalid_grant("redirect_uri does not match the authorization request");
        }
        match (&grant.code_challenge, params.get("code_verifier")) {
            (Some(challenge), Some(verifier)) => {
                let well_formed = (43..=128).contains(&verifier.len())
                    && verifier
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                if !well_formed || !crypto::secure_eq(&crypto::s256(verifier), challenge) {
                    return invalid_grant("PKCE verification failed");
                }
            }
            (Some(_), None) => return invalid_grant("code_verifier is missing"),
            (None, Some(_)) => {
                return invalid_grant("code_verifier sent but no code_challenge was");
            }
            (None, None) => {}
        }
        grant.redeemed = Some(opaque.clone());
        state.issued.code_verifier = params.get("code_verifier").cloned();
        let out = (
            grant.user.clone(),
            grant.nonce.clone(),
            grant.scope.clone(),
            state.key.clone(),
        );
        let now = Instant::now();
        state.purge_expired(now);
        let expires = now + Duration::from_secs(ACCESS_TTL_SECS);
        state.tokens.insert(
            opaque.clone(),
            AccessGrant {
                user: out.0.clone(),
                expires,
            },
        );
        out
    };

    // The access token the client sees: the opaque value, or a JWT standing in for it.
    let now = unix_now();
    let access_token = if shared.access_token_jwt {
        let mut claims = user.claims.clone();
        claims.extend(user.access_token_claims.clone());
        claims.insert("iss".into(), json!(shared.issuer));
        claims.insert("sub".into(), json!(user.sub));
        claims.insert("aud".into(), json!(shared.client_id));
        claims.insert("azp".into(), json!(shared.client_id));
        claims.insert("scope".into(), json!(scope));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + ACCESS_TTL_SECS));
        claims.insert("jti".into(), json!(opaque));
        let Some(jwt) = crypto::jwt(&key, &Value::Object(claims), JwtShape::Normal) else {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "signing failed",
            );
        };
        let mut guard = shared.lock();
        let state = &mut *guard;
        if let Some(g) = state.tokens.remove(&opaque) {
            state.tokens.insert(jwt.clone(), g);
        }
        if let Some(grant) = state.codes.get_mut(code) {
            grant.redeemed = Some(jwt.clone());
        }
        jwt
    } else {
        opaque
    };

    let Some(id_token) = id_token(shared, m, &key, &user, nonce.as_deref(), now) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "signing failed",
        );
    };

    let Some(refresh_token) = crypto::random_token(32) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        );
    };
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL_SECS,
        "id_token": id_token,
        "refresh_token": refresh_token,
        "scope": scope,
    });
    if !shared.issue_id_token
        && let Some(o) = answer.as_object_mut()
    {
        o.remove("id_token");
    }
    {
        let mut state = shared.lock();
        state.issued.access_token = Some(access_token.clone());
        state.issued.id_token = shared.issue_id_token.then(|| id_token.clone());
        state.issued.refresh_token = Some(refresh_token);
    }
    match m {
        Misbehaviour::TokenHttpError(status) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return oauth_error(status, "server_error", "the mock provider was told to fail");
        }
        Misbehaviour::TokenErrorInBody => {
            answer = json!({"error": "invalid_grant", "error_description": "Code already used"});
        }
        Misbehaviour::TokenGarbage => {
            return with_no_store(raw_response(
                StatusCode::OK,
                "application/json",
                "<html>this is not JSON",
            ));
        }
        Misbehaviour::TokenNotObject => answer = json!([1, 2]),
        Misbehaviour::TokenMissingAccessToken => {
            if let Some(o) = answer.as_object_mut() {
                o.remove("access_token");
            }
        }
        Misbehaviour::NoIdToken => {
            if let Some(o) = answer.as_object_mut() {
                o.remove("id_token");
            }
        }
        _ => {}
    }
    with_no_store(json_response(StatusCode::OK, &answer))
}

/// The id_token for `user`, shaped by the misbehaviour.
fn id_token(
    shared: &Shared,
    m: &Misbehaviour,
    key: &crypto::SigningKey,
    user: &MockUser,
    nonce: Option<&str>,
    now: u64,
) -> Option<String> {
    let mut claims: Map<String, Value> = user.claims.clone();
    claims.insert("iss".into(), json!(shared.issuer));
    claims.insert("sub".into(), json!(user.sub));
    claims.insert("aud".into(), json!(shared.client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("auth_time".into(), json!(now));
    // The provider session: one per signed-in user, until a back-channel logout ends it.
    let sid = {
        let mut state = shared.lock();
        state
            .sessions
            .entry(user.sub.clone())
            .or_insert_with(|| crypto::random_token(16).unwrap_or_default())
            .clone()
    };
    claims.insert("sid".into(), json!(sid));
    claims.insert("exp".into(), json!(now + ID_TOKEN_TTL_SECS));
    claims.remove("nonce");
    claims.remove("azp");
    if let Some(nonce) = nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    if let Some(tenant) = &shared.entra_tenant {
        super::entra::id_token_claims(tenant, m, user, &mut claims);
    }
    let mut shape = JwtShape::Normal;
    match m {
        Misbehaviour::WrongIssuer => {
            claims.insert("iss".into(), json!(EVIL_ISSUER));
        }
        Misbehaviour::WrongAudience => {
            claims.insert("aud".into(), json!("some-other-client"));
        }
        Misbehaviour::ExtraAudience => {
            claims.insert(
                "aud".into(),
                json!([shared.client_id, "untrusted-audience"]),
            );
            claims.insert("azp".into(), json!(shared.client_id));
        }
        Misbehaviour::BadSignature => shape = JwtShape::BadSignature,
        Misbehaviour::UnknownKid => shape = JwtShape::UnknownKid,
        Misbehaviour::NoKid => shape = JwtShape::NoKid,
        Misbehaviour::AlgNone => shape = JwtShape::AlgNone,
        Misbehaviour::Expired => {
            claims.insert("iat".into(), json!(now.saturating_sub(900)));
            claims.insert("auth_time".into(), json!(now.saturating_sub(900)));
            claims.insert("exp".into(), json!(now.saturating_sub(600)));
        }
        Misbehaviour::IssuedInFuture => {
            claims.insert("iat".into(), json!(now + 3600));
            claims.insert("exp".into(), json!(now + 3600 + ID_TOKEN_TTL_SECS));
        }
        Misbehaviour::MissingIat => {
            claims.remove("iat");
        }
        Misbehaviour::MissingSub => {
            claims.remove("sub");
        }
        Misbehaviour::NonceMismatch => {
            claims.insert("nonce".into(), json!("not-the-nonce-you-sent"));
        }
        Misbehaviour::MissingNonce => {
            claims.remove("nonce");
        }
        _ => {}
    }
    crypto::jwt(key, &Value::Object(claims), shape)
}

/// Checks client credentials per [`ClientAuth`].
fn authenticate_client(
    shared: &Shared,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(), Resp> {
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, creds)| creds.trim());
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    let (id, secret) = match (basic, body_secret) {
        (Some(_), Some(_)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method",
            ));
        }
        (Some(creds), None) => {
            if shared.client_auth == ClientAuth::Post {
                return Err(invalid_client(
                    true,
                    "client_secret_basic is not allowed for this client",
                ));
            }
            let Some((id, secret)) = decode_basic(creds) else {
                return Err(invalid_client(true, "malformed Basic credentials"));
            };
            if body_id.is_some_and(|b| *b != id) {
                return Err(invalid_client(
                    true,
                    "client_id in the body differs from the Basic credentials",
                ));
            }
            (id, secret)
        }
        (None, Some(secret)) => {
            if shared.client_auth == ClientAuth::Basic {
                return Err(invalid_client(
                    true,
                    "client_secret_post is not allowed for this client",
                ));
            }
            let Some(id) = body_id else {
                return Err(invalid_client(false, "client_id is missing"));
            };
            (id.clone(), secret.clone())
        }
        (None, None) => return Err(invalid_client(true, "client authentication is required")),
    };
    // Compare both, whatever the first result (no early exit on the id).
    let id_ok = crypto::secure_eq(&id, &shared.client_id);
    let secret_ok = crypto::secure_eq(&secret, &shared.client_secret);
    if id_ok && secret_ok {
        Ok(())
    } else {
        Err(invalid_client(
            basic.is_some(),
            "client authentication failed",
        ))
    }
}

/// `base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn decode_basic(creds: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(crypto::b64_std_decode(creds)?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `GET|POST /userinfo`.
fn userinfo(shared: &Shared, m: &Misbehaviour, headers: &HeaderMap) -> Resp {
    if let Misbehaviour::UserinfoError(status) = m {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return oauth_error(status, "server_error", "the mock provider was told to fail");
    }
    let user = match bearer_user(shared, headers) {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    let mut claims = user.claims;
    claims.insert("sub".into(), json!(user.sub));
    match m {
        Misbehaviour::UserinfoEmpty => claims = Map::new(),
        Misbehaviour::UserinfoWrongSub => {
            claims.insert("sub".into(), json!("someone-else"));
        }
        _ => {}
    }
    json_response(StatusCode::OK, &Value::Object(claims))
}

/// The user a request's Bearer access token stands for, or the 401 to answer.
pub(super) fn bearer_user(shared: &Shared, headers: &HeaderMap) -> Result<MockUser, Resp> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let Some(bearer) = bearer else {
        let mut resp = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "a Bearer token is required",
        );
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(resp);
    };
    let user = {
        let state = shared.lock();
        state
            .tokens
            .get(&bearer)
            .filter(|g| g.expires > Instant::now())
            .map(|g| g.user.clone())
    };
    let Some(user) = user else {
        let mut resp = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown or expired access token",
        );
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return Err(resp);
    };
    Ok(user)
}

/// `GET /jwks`: only the current key.
fn jwks(shared: &Shared) -> Resp {
    let key = shared.lock().key.clone();
    json_response(StatusCode::OK, &json!({"keys": [key.jwk()]}))
}

/// `GET|POST /logout`: back to `post_logout_redirect_uri` when it is an http(s) URL, else a page.
fn logout(raw_params: &str) -> Resp {
    let params = parse_params(raw_params).unwrap_or_default();
    let target = params
        .get("post_logout_redirect_uri")
        .and_then(|u| Url::parse(u).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
    match target {
        Some(mut url) => {
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            redirect(&url)
        }
        None => html(
            StatusCode::OK,
            "Signed out",
            "<p>You are signed out of the mock provider.</p>",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Authorization responses

/// 303 back to the client with `pairs`, `state` and (per configuration) `iss`.
fn authz_redirect(
    shared: &Shared,
    m: &Misbehaviour,
    req: &AuthzRequest,
    pairs: &[(&str, &str)],
) -> Resp {
    let mut url = req.redirect_uri.clone();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(state) = &req.state {
            q.append_pair("state", state);
        }
        match m {
            Misbehaviour::WrongIssParameter => {
                q.append_pair("iss", EVIL_ISSUER);
            }
            Misbehaviour::MissingIssParameter => {}
            // Entra ID sends no `iss` with its authorization responses.
            _ if shared.iss_parameter && shared.entra_tenant.is_none() => {
                q.append_pair("iss", &shared.issuer);
            }
            _ => {}
        }
    }
    redirect(&url)
}

fn error_redirect(
    shared: &Shared,
    m: &Misbehaviour,
    req: &AuthzRequest,
    error: &str,
    description: &str,
) -> Resp {
    authz_redirect(
        shared,
        m,
        req,
        &[("error", error), ("error_description", description)],
    )
}

// ---------------------------------------------------------------------------------------------
// Faults

/// The answer of a faulted endpoint.
async fn fault_response(fault: Fault) -> Response<MockBody> {
    let marker = Fault::MARKER;
    let (status, content_type, body) = match fault {
        Fault::NoAnswer => std::future::pending().await,
        Fault::HangAfterHeaders => (
            StatusCode::OK,
            "application/json",
            FaultBody::new(FaultStream::Pending, Some(100)).boxed(),
        ),
        Fault::EndlessBody => (
            StatusCode::OK,
            "application/json",
            FaultBody::new(FaultStream::Drip, None).boxed(),
        ),
        Fault::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/html; charset=utf-8",
            full(format!(
                "<html><body><h1>500 Internal Server Error</h1>{marker}</body></html>"
            )),
        ),
        Fault::Html => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            full(format!(
                "<!doctype html><html><body><form>Sign in {marker}</form></body></html>"
            )),
        ),
        Fault::InvalidJson => (
            StatusCode::OK,
            "application/json",
            full(format!("{{\"{marker}\": \"unterminated")),
        ),
        Fault::JsonArray => (
            StatusCode::OK,
            "application/json",
            full(format!("[\"{marker}\", 1, 2]")),
        ),
        Fault::HugeBody => {
            let len = 50 * 1024 * 1024;
            (
                StatusCode::OK,
                "application/json",
                FaultBody::new(FaultStream::Fast { remaining: len }, Some(len as u64)).boxed(),
            )
        }
        Fault::CloseMidBody => (
            StatusCode::OK,
            "application/json",
            FaultBody::new(FaultStream::Truncated { sent: false }, Some(1000)).boxed(),
        ),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn full(body: String) -> MockBody {
    Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed()
}

/// What a [`FaultBody`] streams.
enum FaultStream {
    /// Nothing, ever.
    Pending,
    /// One space every 50 ms, forever.
    Drip,
    /// `remaining` bytes of JSON-looking filler, 64 KiB at a time, as fast as they are read.
    Fast { remaining: usize },
    /// 100 bytes, then (after a tick) an error: hyper aborts the connection.
    Truncated { sent: bool },
}

/// A streamed faulty body, with a declared length (`Content-Length`) or none (chunked).
struct FaultBody {
    stream: FaultStream,
    len: Option<u64>,
    tick: Pin<Box<tokio::time::Sleep>>,
}

impl FaultBody {
    fn new(stream: FaultStream, len: Option<u64>) -> Self {
        FaultBody {
            stream,
            len,
            tick: Box::pin(tokio::time::sleep(DRIP_INTERVAL)),
        }
    }
}

const DRIP_INTERVAL: Duration = Duration::from_millis(50);
const FILLER: &[u8; 64 * 1024] = &[b' '; 64 * 1024];

impl http_body::Body for FaultBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let data = |b: Bytes| Poll::Ready(Some(Ok(http_body::Frame::data(b))));
        match &mut this.stream {
            FaultStream::Pending => Poll::Pending,
            FaultStream::Drip => {
                if this.tick.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.tick
                    .as_mut()
                    .reset(tokio::time::Instant::now() + DRIP_INTERVAL);
                data(Bytes::from_static(b" "))
            }
            FaultStream::Fast { remaining } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let n = (*remaining).min(FILLER.len());
                *remaining -= n;
                data(Bytes::from_static(&FILLER[..n]))
            }
            FaultStream::Truncated { sent } => {
                if *sent {
                    // A moment first, so the head and the partial body are on the wire.
                    if this.tick.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    Poll::Ready(Some(Err(io::Error::other(
                        "MockIdp: connection aborted mid-body",
                    ))))
                } else {
                    *sent = true;
                    this.tick
                        .as_mut()
                        .reset(tokio::time::Instant::now() + DRIP_INTERVAL);
                    data(Bytes::from(format!(
                        "{{\"{}\": \"{}",
                        Fault::MARKER,
                        "x".repeat(76)
                    )))
                }
            }
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.len {
            Some(n) => http_body::SizeHint::with_exact(n),
            None => http_body::SizeHint::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Parses form-urlencoded parameters. Empty values count as absent (RFC 6749 §3.1); a
/// parameter sent twice is an error (RFC 6749 §3.1, §3.2).
fn parse_params(raw: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!("parameter {k} was sent more than once"));
        }
    }
    Ok(out)
}

/// The body as text when it is declared form-urlencoded.
fn form_body(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next()?.trim();
    if !mime.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return None;
    }
    String::from_utf8(body.to_vec()).ok()
}

/// Decodes one application/x-www-form-urlencoded value (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn is_b64url_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn raw_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Resp {
    raw_response(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

fn with_no_store(mut resp: Resp) -> Resp {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Resp {
    with_no_store(json_response(
        status,
        &json!({"error": error, "error_description": description}),
    ))
}

fn invalid_grant(description: &str) -> Resp {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// 401 `invalid_client`, with a Basic challenge when the client tried (or should try) Basic.
fn invalid_client(challenge: bool, description: &str) -> Resp {
    let mut resp = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if challenge {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mock-idp\""),
        );
    }
    resp
}

fn html(status: StatusCode, title: &str, body_html: &str) -> Resp {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>\n{body_html}\n</body></html>\n",
        t = esc(title)
    );
    let mut resp = raw_response(status, "text/html; charset=utf-8", page);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn redirect(url: &Url) -> Resp {
    match HeaderValue::from_str(url.as_str()) {
        Ok(location) => {
            let mut resp = raw_response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
            resp.headers_mut().insert(LOCATION, location);
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(_) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "unencodable redirect",
        ),
    }
}

//! End-to-end tests of the mock provider over real loopback HTTP.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use url::Url;

use super::crypto::{b64url, s256};
use super::*;

const REDIRECT: &str = "http://app.example.test/sso/callback";
const VERIFIER: &str = "test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn location(&self) -> Url {
        let loc = self
            .headers
            .get("location")
            .expect("a Location header")
            .to_str()
            .unwrap();
        Url::parse(loc).unwrap()
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn call(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let res = client().request(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(url: &str) -> Reply {
    call(Method::GET, url, &[], "").await
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", b64_std(format!("{id}:{secret}").as_bytes()))
}

/// Standard base64 with padding (tests only).
fn b64_std(input: &[u8]) -> String {
    let mut s = b64url(input).replace('-', "+").replace('_', "/");
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fn authorize_url(idp: &MockIdp, extra: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&format!("{}/authorize", idp.issuer())).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", idp.client_id())
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid email profile")
            .append_pair("state", "st4te")
            .append_pair("nonce", "n0nce")
            .append_pair("code_challenge", &s256(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

fn query_map(url: &Url) -> HashMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Runs `/authorize` in Auto mode and returns the code.
async fn code_for(idp: &MockIdp) -> String {
    let reply = get(&authorize_url(idp, &[])).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let q = query_map(&reply.location());
    q.get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code in {q:?}"))
}

async fn redeem(idp: &MockIdp, code: &str, verifier: &str) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", verifier)
        .finish();
    call(
        Method::POST,
        &format!("{}/token", idp.issuer()),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            (
                "authorization",
                &basic(idp.client_id(), idp.client_secret()),
            ),
        ],
        &body,
    )
    .await
}

/// Verifies `token` against the provider's JWKS the way a relying party would.
async fn verify(idp: &MockIdp, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let jwks = get(&format!("{}/jwks", idp.issuer())).await.json();
    let key = &jwks["keys"][0];
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let dk =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&[idp.client_id()]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub", "iat"]);
    Ok(jsonwebtoken::decode::<Value>(token, &dk, &validation)?.claims)
}

/// The claims of a JWT, unverified.
fn peek(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut part = || {
        let p = parts.next().unwrap();
        let bytes = super::crypto::b64_std_decode(&p.replace('-', "+").replace('_', "/")).unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    };
    (part(), part())
}

#[tokio::test]
async fn discovery_document() {
    let idp = MockIdp::start().await.unwrap();
    let iss = idp.issuer();
    assert!(iss.starts_with("http://127.0.0.1:") && !iss.ends_with('/'));
    let reply = get(&format!("{iss}/.well-known/openid-configuration")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let meta = reply.json();
    assert_eq!(meta["issuer"], iss.as_str());
    for (field, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(meta[field], format!("{iss}{path}"), "{field}");
    }
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert!(meta["subject_types_supported"].is_array());
    assert!(
        meta["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&"openid".into())
    );
    assert!(
        meta["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&"email".into())
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );

    idp.set_misbehaviour(Misbehaviour::DiscoveryIssuerMismatch);
    let meta = get(&format!("{iss}/.well-known/openid-configuration"))
        .await
        .json();
    assert_ne!(meta["issuer"], iss.as_str());

    let env: HashMap<_, _> = idp.env_vars().into_iter().collect();
    assert_eq!(env["GENERIC_ISSUER"], iss);
    assert_eq!(env["GENERIC_CLIENT_ID"], "tower-sso-test");
    assert_eq!(env["GENERIC_CLIENT_SECRET"], "test-secret");
}

#[tokio::test]
async fn full_code_flow() {
    let idp = MockIdp::start().await.unwrap();
    let reply = get(&authorize_url(&idp, &[])).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let location = reply.location();
    assert!(location.as_str().starts_with(REDIRECT));
    let q = query_map(&location);
    assert_eq!(q["state"], "st4te");
    assert_eq!(q["iss"], idp.issuer());

    let reply = redeem(&idp, &q["code"], VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let answer = reply.json();
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 3600);
    assert_eq!(answer["scope"], "openid email profile");
    let claims = verify(&idp, answer["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], "n0nce");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["name"], "Alice Example");

    let access = answer["access_token"].as_str().unwrap();
    let info = call(
        Method::GET,
        &format!("{}/userinfo", idp.issuer()),
        &[("authorization", &format!("Bearer {access}"))],
        "",
    )
    .await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["preferred_username"], "alice");

    let bad = call(
        Method::GET,
        &format!("{}/userinfo", idp.issuer()),
        &[("authorization", "Bearer nope")],
        "",
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

    let seen: Vec<_> = idp
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Method::GET, "/authorize".to_owned()),
            (Method::POST, "/token".to_owned()),
            (Method::GET, "/jwks".to_owned()),
            (Method::GET, "/userinfo".to_owned()),
            (Method::GET, "/userinfo".to_owned()),
        ]
    );
    assert_eq!(idp.count("/userinfo"), 2);
    assert_eq!(idp.count("/logout"), 0);
}

#[tokio::test]
async fn code_is_single_use_and_replay_revokes() {
    let idp = MockIdp::start().await.unwrap();
    let code = code_for(&idp).await;
    let first = redeem(&idp, &code, VERIFIER).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = redeem(&idp, &code, VERIFIER).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.json()["error"], "invalid_grant");
    let access = first.json()["access_token"].as_str().unwrap().to_owned();
    let info = call(
        Method::GET,
        &format!("{}/userinfo", idp.issuer()),
        &[("authorization", &format!("Bearer {access}"))],
        "",
    )
    .await;
    assert_eq!(info.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pkce_is_enforced() {
    let idp = MockIdp::start().await.unwrap();
    let code = code_for(&idp).await;
    let reply = redeem(
        &idp,
        &code,
        "another-verifier-0123456789-abcdefghijklmnopqrstuvwxyz",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_grant");
    // The code was consumed by the failed attempt.
    assert_eq!(
        redeem(&idp, &code, VERIFIER).await.status,
        StatusCode::BAD_REQUEST
    );

    // Without a challenge the authorization request itself is refused, by redirect.
    let mut url = Url::parse(&authorize_url(&idp, &[])).unwrap();
    let pairs: Vec<_> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let reply = get(url.as_str()).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let q = query_map(&reply.location());
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "st4te");
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn client_authentication() {
    let idp = MockIdp::builder()
        .client("app", "s3cr+t/x")
        .client_auth(ClientAuth::Post)
        .start()
        .await
        .unwrap();
    let code = code_for(&idp).await;
    let form = |secret: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", &code)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("code_verifier", VERIFIER)
            .append_pair("client_id", "app")
            .append_pair("client_secret", secret)
            .finish()
    };
    let token = format!("{}/token", idp.issuer());
    let ct = ("content-type", "application/x-www-form-urlencoded");
    let wrong = call(Method::POST, &token, &[ct], &form("wrong")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "invalid_client");
    // Basic is not allowed for a Post client, even with the right secret.
    let body = form("s3cr+t/x").replace("&client_secret=s3cr%2Bt%2Fx", "");
    let via_basic = call(
        Method::POST,
        &token,
        &[ct, ("authorization", &basic("app", "s3cr%2Bt%2Fx"))],
        &body,
    )
    .await;
    assert_eq!(via_basic.status, StatusCode::UNAUTHORIZED);
    // The failed authentications did not burn the code.
    let ok = call(Method::POST, &token, &[ct], &form("s3cr+t/x")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

    // Basic: the id and secret are form-urlencoded inside the base64 (RFC 6749 §2.3.1).
    let idp = MockIdp::builder()
        .client("app", "s3cr+t/x")
        .client_auth(ClientAuth::Basic)
        .start()
        .await
        .unwrap();
    let code = code_for(&idp).await;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", VERIFIER)
        .finish();
    let token = format!("{}/token", idp.issuer());
    let wrong = call(
        Method::POST,
        &token,
        &[ct, ("authorization", &basic("app", "s3cr+t/x"))],
        &body,
    )
    .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "a raw '+' decodes to a space"
    );
    let garbage = call(
        Method::POST,
        &token,
        &[ct, ("authorization", "Basic !!!")],
        &body,
    )
    .await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let ok = call(
        Method::POST,
        &token,
        &[ct, ("authorization", &basic("app", "s3cr%2Bt%2Fx"))],
        &body,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
}

#[tokio::test]
async fn authorize_rejects_unknown_client_without_redirect() {
    let idp = MockIdp::start().await.unwrap();
    let url =
        authorize_url(&idp, &[]).replace("client_id=tower-sso-test", "client_id=%3Cscript%3E");
    let reply = get(&url).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get("location").is_none());
    assert!(!reply.body.contains("<script>"));

    let url = authorize_url(&idp, &[]).replace("redirect_uri=http", "redirect_uri=javascript");
    let reply = get(&url).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.headers.get("location").is_none());

    // Duplicate parameters are refused too.
    let reply = get(&authorize_url(&idp, &[("state", "again")])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn id_token_misbehaviours() {
    let idp = MockIdp::start().await.unwrap();

    idp.set_misbehaviour(Misbehaviour::WrongIssuer);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let token = answer["id_token"].as_str().unwrap();
    assert_ne!(peek(token).1["iss"], idp.issuer().as_str());
    assert!(verify(&idp, token).await.is_err());

    idp.set_misbehaviour(Misbehaviour::BadSignature);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let err = verify(&idp, answer["id_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        *err.kind(),
        jsonwebtoken::errors::ErrorKind::InvalidSignature
    );

    idp.set_misbehaviour(Misbehaviour::NonceMismatch);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let claims = verify(&idp, answer["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_ne!(claims["nonce"], "n0nce");

    idp.set_misbehaviour(Misbehaviour::AlgNone);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let token = answer["id_token"].as_str().unwrap();
    assert_eq!(peek(token).0["alg"], "none");
    assert!(token.ends_with('.'));

    idp.set_misbehaviour(Misbehaviour::ExtraAudience);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let (_, claims) = peek(answer["id_token"].as_str().unwrap());
    assert_eq!(
        claims["aud"],
        serde_json::json!(["tower-sso-test", "untrusted-audience"])
    );

    idp.set_misbehaviour(Misbehaviour::MissingSub);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    assert!(
        peek(answer["id_token"].as_str().unwrap())
            .1
            .get("sub")
            .is_none()
    );

    idp.set_misbehaviour(Misbehaviour::None);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    assert!(
        verify(&idp, answer["id_token"].as_str().unwrap())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn token_and_userinfo_misbehaviours() {
    let idp = MockIdp::start().await.unwrap();
    let cases = [
        (Misbehaviour::TokenHttpError(502), StatusCode::BAD_GATEWAY),
        (Misbehaviour::TokenGarbage, StatusCode::OK),
        (Misbehaviour::TokenNotObject, StatusCode::OK),
        (Misbehaviour::TokenErrorInBody, StatusCode::OK),
    ];
    for (m, status) in cases {
        idp.set_misbehaviour(m.clone());
        let reply = redeem(&idp, &code_for(&idp).await, VERIFIER).await;
        assert_eq!(reply.status, status, "{m:?}");
        match m {
            Misbehaviour::TokenGarbage => {
                assert!(serde_json::from_str::<Value>(&reply.body).is_err())
            }
            Misbehaviour::TokenNotObject => assert!(reply.json().is_array()),
            Misbehaviour::TokenErrorInBody => assert_eq!(reply.json()["error"], "invalid_grant"),
            _ => {}
        }
    }
    idp.set_misbehaviour(Misbehaviour::NoIdToken);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    assert!(answer.get("id_token").is_none() && answer.get("access_token").is_some());

    idp.set_misbehaviour(Misbehaviour::UserinfoWrongSub);
    let access = answer["access_token"].as_str().unwrap();
    let info = format!("{}/userinfo", idp.issuer());
    let bearer = format!("Bearer {access}");
    let reply = call(Method::GET, &info, &[("authorization", &bearer)], "").await;
    assert_ne!(reply.json()["sub"], "alice");
    idp.set_misbehaviour(Misbehaviour::UserinfoError(503));
    let reply = call(Method::GET, &info, &[("authorization", &bearer)], "").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    idp.set_misbehaviour(Misbehaviour::UserinfoEmpty);
    let reply = call(Method::GET, &info, &[("authorization", &bearer)], "").await;
    assert_eq!(reply.json(), serde_json::json!({}));
}

#[tokio::test]
async fn authorization_response_misbehaviours() {
    let idp = MockIdp::start().await.unwrap();
    idp.set_misbehaviour(Misbehaviour::WrongIssParameter);
    let q = query_map(&get(&authorize_url(&idp, &[])).await.location());
    assert_ne!(q["iss"], idp.issuer());
    idp.set_misbehaviour(Misbehaviour::MissingIssParameter);
    let q = query_map(&get(&authorize_url(&idp, &[])).await.location());
    assert!(!q.contains_key("iss") && q.contains_key("code"));
    idp.set_misbehaviour(Misbehaviour::AuthorizeError("access_denied".into()));
    let q = query_map(&get(&authorize_url(&idp, &[])).await.location());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st4te");
    assert!(!q.contains_key("code"));

    let idp = MockIdp::builder()
        .iss_parameter(false)
        .start()
        .await
        .unwrap();
    let q = query_map(&get(&authorize_url(&idp, &[])).await.location());
    assert!(!q.contains_key("iss"));
    let meta = get(&format!(
        "{}/.well-known/openid-configuration",
        idp.issuer()
    ))
    .await
    .json();
    assert_eq!(
        meta["authorization_response_iss_parameter_supported"],
        false
    );
}

#[tokio::test]
async fn rotate_keys_changes_kid() {
    let idp = MockIdp::start().await.unwrap();
    let old_jwks = get(&format!("{}/jwks", idp.issuer())).await.json();
    let old_kid = old_jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(old_kid, idp.current_kid());
    idp.rotate_keys();
    assert_ne!(idp.current_kid(), old_kid);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let token = answer["id_token"].as_str().unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(token).unwrap().kid.as_deref(),
        Some(idp.current_kid().as_str())
    );
    let jwks = get(&format!("{}/jwks", idp.issuer())).await.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], idp.current_kid().as_str());
    assert!(verify(&idp, token).await.is_ok());
    // The old key no longer verifies the new token.
    let k = &old_jwks["keys"][0];
    let dk = DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap())
        .unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[idp.client_id()]);
    assert!(jsonwebtoken::decode::<Value>(token, &dk, &v).is_err());
}

#[tokio::test]
async fn form_login_and_users() {
    let idp = MockIdp::builder()
        .login_mode(LoginMode::Form)
        .user(
            MockUser::new("bob")
                .claim("name", "Bob <b>")
                .claim("groups", serde_json::json!(["admins"])),
        )
        .user(MockUser::new("carol").claim("email", "carol@example.com"))
        .start()
        .await
        .unwrap();
    let page = get(&authorize_url(&idp, &[])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Bob &lt;b&gt; (bob)"));
    assert!(!page.body.contains("<b>"));
    assert!(page.body.contains("name=\"state\" value=\"st4te\""));

    // Submit the form as the browser would: every hidden field plus the chosen user.
    let original = Url::parse(&authorize_url(&idp, &[])).unwrap();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(original.query_pairs());
    form.append_pair("login", "carol")
        .append_pair("action", "login");
    let reply = call(
        Method::POST,
        &format!("{}/authorize", idp.issuer()),
        &[("content-type", "application/x-www-form-urlencoded")],
        &form.finish(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let code = query_map(&reply.location())["code"].clone();
    let answer = redeem(&idp, &code, VERIFIER).await.json();
    let claims = verify(&idp, answer["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["sub"], "carol");
    assert_eq!(claims["email"], "carol@example.com");

    // Auto mode picks the selected user; an unknown one is access_denied.
    let idp = MockIdp::builder()
        .access_token_jwt(true)
        .start()
        .await
        .unwrap();
    idp.add_user(MockUser::new("dave").claim("role", "proxy_admin"));
    idp.select_user("dave");
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let access = answer["access_token"].as_str().unwrap();
    let at_claims = verify(&idp, access).await.unwrap();
    assert_eq!(at_claims["role"], "proxy_admin");
    let info = call(
        Method::GET,
        &format!("{}/userinfo", idp.issuer()),
        &[("authorization", &format!("Bearer {access}"))],
        "",
    )
    .await
    .json();
    assert_eq!(info["sub"], "dave");
    idp.select_user("nobody");
    let q = query_map(&get(&authorize_url(&idp, &[])).await.location());
    assert_eq!(q["error"], "access_denied");
}

#[tokio::test]
async fn hostile_input_and_shutdown() {
    let idp = MockIdp::start().await.unwrap();
    let token = format!("{}/token", idp.issuer());
    let huge = "a".repeat(70 * 1024);
    let reply = call(
        Method::POST,
        &token,
        &[("content-type", "application/x-www-form-urlencoded")],
        &huge,
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = call(
        Method::POST,
        &token,
        &[("content-type", "application/json")],
        "{}",
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = call(
        Method::POST,
        &token,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", "Basic"),
        ],
        "grant_type=authorization_code&code=%ff%fe",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get(&format!("{}/nope", idp.issuer())).await.status,
        StatusCode::NOT_FOUND
    );
    let reply = get(&format!(
        "{}/logout?post_logout_redirect_uri=http%3A%2F%2Fapp.test%2Fbye&state=x",
        idp.issuer()
    ))
    .await;
    assert_eq!(reply.location().as_str(), "http://app.test/bye?state=x");
    assert_eq!(
        get(&format!("{}/logout", idp.issuer())).await.status,
        StatusCode::OK
    );

    idp.set_misbehaviour(Misbehaviour::Slow(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    get(&format!("{}/jwks", idp.issuer())).await;
    assert!(started.elapsed() >= Duration::from_millis(200));

    let addr = idp.issuer().trim_start_matches("http://").to_owned();
    let other = idp.clone();
    idp.shutdown().await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    drop(other);
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let idp = MockIdp::start().await.unwrap();
    let addr = idp.issuer().trim_start_matches("http://").to_owned();
    drop(idp);
    // The accept loop notices on its next poll.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server is still accepting connections");
}

#[tokio::test]
async fn last_issued_and_refresh_token() {
    let idp = MockIdp::start().await.unwrap();
    assert_eq!(idp.last_issued(), Issued::default());
    let code = code_for(&idp).await;
    assert_eq!(idp.last_issued().code.as_deref(), Some(code.as_str()));
    let answer = redeem(&idp, &code, VERIFIER).await.json();
    let issued = idp.last_issued();
    assert_eq!(issued.code_verifier.as_deref(), Some(VERIFIER));
    assert_eq!(
        issued.access_token.as_deref(),
        answer["access_token"].as_str()
    );
    assert_eq!(issued.id_token.as_deref(), answer["id_token"].as_str());
    assert_eq!(
        issued.refresh_token.as_deref(),
        answer["refresh_token"].as_str()
    );
    assert!(issued.refresh_token.is_some());

    let idp = MockIdp::builder().id_token(false).start().await.unwrap();
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    assert!(answer.get("id_token").is_none() && answer.get("access_token").is_some());
    assert_eq!(idp.last_issued().id_token, None);
}

#[tokio::test]
async fn faults_hit_only_their_endpoint() {
    let idp = MockIdp::start().await.unwrap();
    let jwks = format!("{}/jwks", idp.issuer());
    let discovery = format!("{}/.well-known/openid-configuration", idp.issuer());
    for (fault, status, body_has) in [
        (
            Fault::ServerError,
            StatusCode::INTERNAL_SERVER_ERROR,
            "<html>",
        ),
        (Fault::Html, StatusCode::OK, "<!doctype html>"),
        (Fault::InvalidJson, StatusCode::OK, "unterminated"),
        (Fault::JsonArray, StatusCode::OK, "["),
    ] {
        idp.set_misbehaviour(Misbehaviour::Fault(Endpoint::Jwks, fault));
        let reply = get(&jwks).await;
        assert_eq!(reply.status, status, "{fault:?}");
        assert!(reply.body.contains(body_has), "{fault:?}");
        assert!(reply.body.contains(Fault::MARKER), "{fault:?}");
        assert_eq!(get(&discovery).await.status, StatusCode::OK);
    }
    idp.set_misbehaviour(Misbehaviour::Fault(Endpoint::Jwks, Fault::HugeBody));
    let uri: http::Uri = jwks.parse().unwrap();
    let res = client().get(uri.clone()).await.unwrap();
    assert_eq!(res.headers()["content-length"], "52428800");
    drop(res);
    idp.set_misbehaviour(Misbehaviour::Fault(Endpoint::Jwks, Fault::CloseMidBody));
    let res = client().get(uri.clone()).await.unwrap();
    assert!(res.into_body().collect().await.is_err());
    idp.set_misbehaviour(Misbehaviour::Fault(Endpoint::Jwks, Fault::NoAnswer));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client().get(uri))
            .await
            .is_err()
    );
    assert!(idp.count("/jwks") >= 7);
}

/// Verifies an ES256 `token` against the provider's JWKS (an EC P-256 key) as a relying party
/// would.
async fn verify_es256(idp: &MockIdp, token: &str) -> jsonwebtoken::errors::Result<Value> {
    let jwks = get(&format!("{}/jwks", idp.issuer())).await.json();
    let key = &jwks["keys"][0];
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let dk =
        DecodingKey::from_ec_components(key["x"].as_str().unwrap(), key["y"].as_str().unwrap())?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[idp.issuer()]);
    validation.set_audience(&[idp.client_id()]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub", "iat"]);
    Ok(jsonwebtoken::decode::<Value>(token, &dk, &validation)?.claims)
}

#[tokio::test]
async fn es256_provider_signs_with_a_p256_key_it_publishes() {
    let idp = MockIdp::builder()
        .signing_alg(SigningAlg::Es256)
        .start()
        .await
        .unwrap();
    let meta = get(&format!(
        "{}/.well-known/openid-configuration",
        idp.issuer()
    ))
    .await
    .json();
    assert_eq!(
        meta["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    let jwks = get(&format!("{}/jwks", idp.issuer())).await.json();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert!(key.get("n").is_none());
    for c in ["x", "y"] {
        let raw = super::crypto::b64_std_decode(
            &key[c].as_str().unwrap().replace('-', "+").replace('_', "/"),
        )
        .unwrap();
        assert_eq!(raw.len(), 32, "{c} is a 32-byte coordinate");
    }

    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let token = answer["id_token"].as_str().unwrap();
    let claims = verify_es256(&idp, token).await.unwrap();
    assert_eq!(claims["nonce"], "n0nce");
    // The signature is the JWS form: r and s, 32 bytes each.
    let sig = token.rsplit('.').next().unwrap();
    let sig = super::crypto::b64_std_decode(&sig.replace('-', "+").replace('_', "/")).unwrap();
    assert_eq!(sig.len(), 64);

    // Logout tokens use the same key; a rotated key keeps the algorithm.
    let logout = idp.logout_token("alice").unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&logout).unwrap().alg,
        Algorithm::ES256
    );
    let old_kid = idp.current_kid();
    idp.rotate_keys();
    assert_ne!(idp.current_kid(), old_kid);
    let answer = redeem(&idp, &code_for(&idp).await, VERIFIER).await.json();
    let token = answer["id_token"].as_str().unwrap();
    assert!(verify_es256(&idp, token).await.is_ok());
}

//! Secrets stay secret: with every log line captured at TRACE (from every crate, `log` records
//! included), successful logins (opaque and JWT access tokens), failed ones (a forged state,
//! token endpoint errors, bad id_tokens, a userinfo mismatch, an unreachable userinfo), a
//! tampered session and a logout must not put any of these in a log line, a response body, a
//! `Location`, or the `Debug` of an error the layer produced: the access token, id token,
//! refresh token, client secret, session secret, session token, authorization code, PKCE
//! verifier, flow cookie value. (Responses the test app answers are not checked: it echoes the
//! credentials it received on purpose.)
//!
//! The issued values come from the provider itself (`MockIdp::last_issued`), the others from the
//! responses.
//!
//! A CLI login runs here too: its key and the session token it hands out appear nowhere but in
//! the one poll answer that hands the token out (and the URL the CLI opens).

mod common;

use common::log_capture::{self, Capture};
use common::*;
use http::StatusCode;
use http_body_util::BodyExt;
use tower_sso::SsoError;
use tower_sso::store::MemoryUserStore;
use tower_sso::testing::{Endpoint, Fault, Misbehaviour, MockIdp};

/// Everything logged in this test binary, from `tracing` at TRACE.
fn capture() -> Capture {
    log_capture::capture(tracing::Level::TRACE)
}

/// A distinctive client secret (the default `test-secret` is a prefix of other test strings).
const CLIENT_SECRET: &str = "cs-Vq3nT8yPz0Lw5Kd2Hj7Rb4Mx9Gs6Fc1";

/// What the responses showed: bodies, `Location`s, and the `Debug` of each error.
#[derive(Default)]
struct Seen {
    texts: Vec<(String, String)>,
}

impl Seen {
    /// Records the parts of `res` that must never carry a secret (its `Set-Cookie` may: that
    /// is where the session and flow cookies are handed out) and returns the status.
    async fn record(&mut self, what: &str, res: AppResponse) -> StatusCode {
        let status = res.status();
        self.texts
            .push((format!("{what}: Location"), location(&res)));
        if let Some(e) = res.extensions().get::<SsoError>() {
            self.texts
                .push((format!("{what}: error Debug"), format!("{e:?}")));
            self.texts
                .push((format!("{what}: error Display"), e.to_string()));
        }
        let body = res.into_body().collect().await.expect("body").to_bytes();
        self.texts.push((
            format!("{what}: body"),
            String::from_utf8_lossy(&body).into_owned(),
        ));
        status
    }
}

/// The secrets to look for: each value, and for a JWT its payload and signature too (a log
/// line could print a part).
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: &str, value: Option<&str>) {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return;
        };
        assert!(
            value.len() >= 16,
            "{name} is too short to search for: {value}"
        );
        self.0.push((name.to_owned(), value.to_owned()));
        let parts: Vec<&str> = value.split('.').collect();
        if parts.len() == 3 {
            for (part, label) in parts[1..].iter().zip(["payload", "signature"]) {
                if part.len() >= 16 {
                    self.0.push((format!("{name} {label}"), (*part).to_owned()));
                }
            }
        }
    }

    /// Everything `idp` issued or received last.
    fn add_issued(&mut self, idp: &MockIdp) {
        let issued = idp.last_issued();
        self.add("authorization code", issued.code.as_deref());
        self.add("PKCE verifier", issued.code_verifier.as_deref());
        self.add("access token", issued.access_token.as_deref());
        self.add("id token", issued.id_token.as_deref());
        self.add("refresh token", issued.refresh_token.as_deref());
    }
}

/// A random key body like the one upstream's CLI makes (a UUID).
fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..4 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(i);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

async fn idp() -> MockIdp {
    MockIdp::builder()
        .client("tower-sso-test", CLIENT_SECRET)
        .start()
        .await
        .expect("MockIdp starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs_bodies_or_errors() {
    let logs = capture();
    tracing::trace!(target: "tower_sso", "capture canary");
    let mut secrets = Secrets::default();
    let mut seen = Seen::default();
    secrets.add("client secret", Some(CLIENT_SECRET));
    secrets.add("session secret", Some(SECRET));

    let idp = idp().await;
    let store = MemoryUserStore::new();
    let layer = flow_builder(&idp)
        .user_store(store.clone())
        .build()
        .expect("valid config");
    tracing::info!("secrets test: a successful login");

    // 1. A successful login, a protected request with the cookie and one with the bearer.
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    secrets.add("flow cookie", Some(&flow.flow_cookie));
    secrets.add("authorization code", flow.callback_param("code").as_deref());
    let res = b.callback(&flow).await;
    let session = cookie_value(&res, "token").expect("logged in");
    secrets.add("session token", Some(&session));
    secrets.add_issued(&idp);
    assert_eq!(
        seen.record("successful callback", res).await,
        StatusCode::SEE_OTHER
    );
    // (Answered by the test app, which echoes the credentials it got: not recorded.)
    assert_eq!(b.get("/whoami").await.status(), StatusCode::OK);
    let res = send(
        &b.app,
        get(
            "/whoami",
            &[("authorization", &format!("Bearer {session}"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A tampered copy of the session is refused without being echoed.
    let tampered = format!("{session}x");
    let res = send(
        &b.app,
        get("/whoami", &[("cookie", &format!("token={tampered}"))]),
    )
    .await;
    assert_eq!(
        seen.record("tampered session", res).await,
        StatusCode::UNAUTHORIZED
    );

    // 2. A logout.
    tracing::info!("secrets test: logout");
    let res = b.get("/sso/logout").await;
    seen.record("logout", res).await;
    let res = send(
        &b.app,
        get("/whoami", &[("cookie", &format!("token={session}"))]),
    )
    .await;
    assert_eq!(
        seen.record("after logout", res).await,
        StatusCode::UNAUTHORIZED
    );

    // 3. A forged state.
    tracing::info!("secrets test: forged state");
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    secrets.add("flow cookie", Some(&flow.flow_cookie));
    secrets.add("authorization code", flow.callback_param("code").as_deref());
    let forged = with_query_param(flow.callback_url.as_str(), "state", "forged-state-value");
    let res = b.get(&path_and_query(&forged)).await;
    assert!(seen.record("forged state", res).await.is_client_error());

    // 4. Failures after the code was redeemed: each issues (or receives) fresh secrets.
    for m in [
        Misbehaviour::TokenHttpError(400),
        Misbehaviour::TokenErrorInBody,
        Misbehaviour::TokenHttpError(500),
        Misbehaviour::BadSignature,
        Misbehaviour::WrongAudience,
        Misbehaviour::NonceMismatch,
        Misbehaviour::UserinfoWrongSub,
        Misbehaviour::Fault(Endpoint::Token, Fault::InvalidJson),
        // Userinfo unreachable: the login succeeds on the id_token's claims, logging a warning.
        Misbehaviour::Fault(Endpoint::Userinfo, Fault::CloseMidBody),
    ] {
        tracing::info!(case = ?m, "secrets test: failure");
        let mut b = Browser::for_layer(&layer);
        let flow = b.authorize(&idp, "").await;
        secrets.add("flow cookie", Some(&flow.flow_cookie));
        secrets.add("authorization code", flow.callback_param("code").as_deref());
        idp.set_misbehaviour(m.clone());
        let res = b.callback(&flow).await;
        idp.set_misbehaviour(Misbehaviour::None);
        secrets.add_issued(&idp);
        if let Some(token) = cookie_value(&res, "token") {
            secrets.add("session token", Some(&token));
        }
        seen.record(&format!("{m:?}"), res).await;
    }
    // 5. A provider whose access tokens are JWTs the layer reads roles from (Keycloak-style).
    tracing::info!("secrets test: JWT access token");
    let jwt_idp = MockIdp::builder()
        .client("tower-sso-test", CLIENT_SECRET)
        .access_token_jwt(true)
        .start()
        .await
        .expect("MockIdp starts");
    let jwt_layer = flow_builder(&jwt_idp).build().expect("valid config");
    let mut b = Browser::for_layer(&jwt_layer);
    let flow = b.authorize(&jwt_idp, "").await;
    secrets.add("flow cookie", Some(&flow.flow_cookie));
    let res = b.callback(&flow).await;
    secrets.add_issued(&jwt_idp);
    secrets.add("session token", cookie_value(&res, "token").as_deref());
    assert_eq!(
        seen.record("JWT access token login", res).await,
        StatusCode::SEE_OTHER
    );
    assert!(
        jwt_idp
            .last_issued()
            .access_token
            .is_some_and(|t| t.starts_with("eyJ"))
    );

    // 6. A CLI login: the key and the token it hands out.
    tracing::info!("secrets test: CLI login");
    let cli_key = format!("sk-{}", uuid_like());
    secrets.add("CLI key", Some(&cli_key));
    secrets.add("CLI key (random part)", Some(&cli_key[3..]));
    let mut b = Browser::for_layer(&layer);
    let poll = |query: &str| {
        get(
            &format!("/sso/cli/poll/{cli_key}{query}"),
            &[("accept", "application/json")],
        )
    };
    let res = send(&b.app, poll("")).await;
    assert_eq!(seen.record("CLI poll before", res).await, StatusCode::OK);
    let flow = b
        .authorize(&idp, &format!("source=litellm-cli&key={cli_key}"))
        .await;
    secrets.add("flow cookie", Some(&flow.flow_cookie));
    secrets.add("authorization code", flow.callback_param("code").as_deref());
    let res = b.callback(&flow).await;
    secrets.add_issued(&idp);
    assert_eq!(seen.record("CLI callback", res).await, StatusCode::OK);
    let res = send(&b.app, poll("?team_id=not-a-team")).await;
    assert_eq!(
        seen.record("CLI poll, foreign team", res).await,
        StatusCode::FORBIDDEN
    );
    // The one answer that hands the token out: not recorded.
    let res = send(&b.app, poll("")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer: serde_json::Value =
        serde_json::from_slice(&res.into_body().collect().await.expect("body").to_bytes())
            .expect("JSON");
    let cli_token = answer["key"].as_str().expect("CLI token").to_owned();
    secrets.add("CLI token", Some(&cli_token));
    let res = send(
        &b.app,
        get(
            "/whoami",
            &[("authorization", &format!("Bearer {cli_token}"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = send(&b.app, poll("")).await;
    assert_eq!(seen.record("CLI poll after", res).await, StatusCode::OK);
    let res = send(
        &b.app,
        get(
            "/whoami",
            &[("authorization", &format!("Bearer {cli_token}x"))],
        ),
    )
    .await;
    assert_eq!(
        seen.record("tampered CLI token", res).await,
        StatusCode::UNAUTHORIZED
    );

    // The cases above did go through the token endpoint with a verifier.
    assert!(idp.last_issued().code_verifier.is_some());

    let logs = logs.text();
    if std::env::var_os("SHOW_CAPTURED_LOGS").is_some() {
        eprintln!("{logs}");
    }
    assert!(
        logs.contains("TRACE") && logs.contains("capture canary"),
        "the capture is not at TRACE"
    );
    assert!(
        logs.contains("SSO login")
            && logs.contains("SSO callback refused")
            && logs.contains("SSO CLI token handed out"),
        "the capture missed the layer's own log lines:\n{logs}"
    );
    let mut leaks = Vec::new();
    for (name, value) in &secrets.0 {
        if logs.contains(value.as_str()) {
            let line = logs.lines().find(|l| l.contains(value.as_str())).unwrap();
            leaks.push(format!("{name} in the logs: {line}"));
        }
        for (where_, text) in &seen.texts {
            if text.contains(value.as_str()) {
                leaks.push(format!("{name} in {where_}: {text}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

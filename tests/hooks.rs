//! Integrator hooks through the layer, with `MockIdp`: the custom SSO hook, the UI key issuer,
//! header sign-in behind a trusted proxy, and the admin UI switch.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use tower_sso::hooks::{
    CustomSsoRequest, CustomSsoResponse, HeaderSignIn, LoginSource, UiKeyRequest, UiKeyResponse,
};
use tower_sso::store::MemoryUserStore;
use tower_sso::testing::{MockIdp, MockUser};
use tower_sso::{ClientAddr, SsoLayer, SsoLayerBuilder, UserRole};

const UI: &str = "/ui/?login=success";
const PROXY: &str = "10.0.0.5";

async fn idp() -> MockIdp {
    MockIdp::builder()
        .user(
            MockUser::alice()
                .claim("employee_type", "contractor")
                // Bearer credentials in the profile must never reach a hook.
                .claim("refresh_token", "rt-do-not-leak"),
        )
        .start()
        .await
        .expect("MockIdp starts")
}

fn layer(b: SsoLayerBuilder) -> SsoLayer {
    b.build().expect("valid config")
}

/// The claims of a session token (its payload, not verified: the layer verified it).
fn token_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

// ---------------------------------------------------------------------------------------------
// Custom SSO hook

#[tokio::test]
async fn custom_sso_values_are_applied_stored_and_put_in_the_session() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let seen: Arc<Mutex<Option<CustomSsoRequest>>> = Arc::default();
    let seen2 = seen.clone();
    let layer = layer(
        flow_builder(&idp)
            .user_store(store.clone())
            // Only the hook's address passes: the policy runs on the hook's values.
            .allowed_email_domains(["corp.example"])
            .custom_sso_fn(move |req: CustomSsoRequest| {
                let seen = seen2.clone();
                async move {
                    *seen.lock().unwrap() = Some(req.clone());
                    let mut v = req.values;
                    v.email = Some("Alice@Corp.Example".into());
                    v.role = Some(UserRole::InternalUser);
                    v.models = vec!["gpt-4o-mini".into()];
                    v.max_budget = Some(7.5);
                    v.budget_duration = Some("7d".into());
                    v.team_ids = vec!["contractors".into()];
                    Ok::<_, std::convert::Infallible>(CustomSsoResponse::Accept(v))
                }
            }),
    );
    let mut b = Browser::for_layer(&layer);
    let res = b.login(&idp, "").await;
    let token = assert_logged_in(&res, UI);

    let req = seen.lock().unwrap().take().expect("the hook ran");
    assert_eq!(req.source, LoginSource::IdentityProvider);
    assert_eq!(req.values.user_id.as_deref(), Some("alice"));
    assert_eq!(req.values.email.as_deref(), Some("alice@example.com"));
    assert_eq!(req.claims["employee_type"], "contractor");
    for k in ["access_token", "id_token", "refresh_token"] {
        assert!(!req.claims.contains_key(k), "{k} handed to the hook");
    }

    let claims = token_claims(&token);
    assert_eq!(claims["user_email"], "alice@corp.example");
    assert_eq!(claims["user_role"], "internal_user");
    assert_eq!(claims["teams"], serde_json::json!(["contractors"]));
    let stored = stored_user(&store, "alice").await.expect("stored");
    assert_eq!(stored.email.as_deref(), Some("alice@corp.example"));
    assert_eq!(stored.role, UserRole::InternalUser);
    assert_eq!(stored.models, vec!["gpt-4o-mini".to_owned()]);
    assert_eq!(stored.max_budget, Some(7.5));
    assert_eq!(stored.budget_duration.as_deref(), Some("7d"));
    assert_eq!(stored.teams, vec!["contractors".to_owned()]);
}

#[tokio::test]
async fn custom_sso_refusal_is_a_403_with_its_message_escaped_and_nothing_stored() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let layer = layer(flow_builder(&idp).user_store(store.clone()).custom_sso_fn(
        |req: CustomSsoRequest| async move {
            Ok::<_, std::convert::Infallible>(
                if req.claims.get("employee_type").and_then(|v| v.as_str()) == Some("contractor") {
                    CustomSsoResponse::refuse("<b>Contractors</b> use the partner portal")
                } else {
                    req.accept()
                },
            )
        },
    ));
    let mut b = Browser::for_layer(&layer);
    let res = b.login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
    assert_eq!(
        msg,
        "&lt;b&gt;Contractors&lt;&#x2F;b&gt; use the partner portal"
    );
    assert!(stored_user(&store, "alice").await.is_none());
}

#[tokio::test]
async fn a_slow_custom_sso_hook_times_out_with_503() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let layer = layer(
        flow_builder(&idp)
            .user_store(store.clone())
            .hook_timeout(Duration::from_millis(200))
            .custom_sso_fn(|req: CustomSsoRequest| async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, std::convert::Infallible>(req.accept())
            }),
    );
    let mut b = Browser::for_layer(&layer);
    let started = std::time::Instant::now();
    let res = b.login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(msg.contains("did not answer in time"), "{msg}");
    assert!(stored_user(&store, "alice").await.is_none());
}

#[tokio::test]
async fn a_failing_or_panicking_custom_sso_hook_refuses_with_502_without_its_error() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let failing = layer(flow_builder(&idp).user_store(store.clone()).custom_sso_fn(
        |_req: CustomSsoRequest| async move {
            Err::<CustomSsoResponse, _>("database password rejected: hunter2")
        },
    ));
    let res = Browser::for_layer(&failing).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::BAD_GATEWAY).await;
    assert!(msg.contains("custom SSO hook failed"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");

    let panicking = layer(flow_builder(&idp).user_store(store.clone()).custom_sso_fn(
        |req: CustomSsoRequest| async move {
            assert!(req.provider.is_empty(), "a bug in the hook");
            Ok::<_, std::convert::Infallible>(req.accept())
        },
    ));
    let res = Browser::for_layer(&panicking).login(&idp, "").await;
    assert_callback_refused(res, StatusCode::BAD_GATEWAY).await;

    // A value the rest of the login cannot use is the hook failing too.
    let bad = layer(flow_builder(&idp).user_store(store.clone()).custom_sso_fn(
        |req: CustomSsoRequest| async move {
            let mut v = req.values;
            v.user_id = Some("alice\r\nx-admin: 1".into());
            Ok::<_, std::convert::Infallible>(CustomSsoResponse::Accept(v))
        },
    ));
    let res = Browser::for_layer(&bad).login(&idp, "").await;
    assert_callback_refused(res, StatusCode::BAD_GATEWAY).await;
    assert!(stored_user(&store, "alice").await.is_none());
}

// ---------------------------------------------------------------------------------------------
// UI key issuance

#[tokio::test]
async fn ui_key_is_minted_with_the_ui_defaults_and_is_the_session_key() {
    let idp = idp().await;
    let asked: Arc<Mutex<Option<UiKeyRequest>>> = Arc::default();
    let asked2 = asked.clone();
    let layer = layer(
        flow_builder(&idp)
            .session_duration(Duration::from_secs(3600))
            .ui_key_fn(move |req: UiKeyRequest| {
                let asked = asked2.clone();
                async move {
                    let key = format!("sk-ui-{}", req.user_id);
                    *asked.lock().unwrap() = Some(req);
                    Ok::<_, std::convert::Infallible>(UiKeyResponse::Key(key))
                }
            }),
    );
    let mut b = Browser::for_layer(&layer);
    let token = assert_logged_in(&b.login(&idp, "").await, UI);
    let claims = token_claims(&token);
    assert_eq!(claims["key"], "sk-ui-alice");
    assert_ne!(claims["key"], claims["jti"]);
    let req = asked.lock().unwrap().take().expect("the issuer ran");
    assert_eq!(req.user_id, "alice");
    assert_eq!(req.team_id, "litellm-dashboard");
    assert_eq!(req.duration, Duration::from_secs(3600));
    assert_eq!(req.max_budget, Some(10.0));
    assert_eq!(req.role, UserRole::InternalUserViewer);
    assert_eq!(req.email.as_deref(), Some("alice@example.com"));
    // The session works as any other.
    assert_eq!(b.whoami().await["user_id"], "alice");

    // Without an issuer, `key` is the session id.
    let plain = self::layer(flow_builder(&idp));
    let token = assert_logged_in(&Browser::for_layer(&plain).login(&idp, "").await, UI);
    let claims = token_claims(&token);
    assert_eq!(claims["key"], claims["jti"]);
}

#[tokio::test]
async fn a_ui_key_issuer_that_fails_or_refuses_ends_the_login_without_a_session() {
    let idp = idp().await;
    let failing = layer(
        flow_builder(&idp).ui_key_fn(|_req: UiKeyRequest| async move {
            Err::<UiKeyResponse, _>(std::io::Error::other("key service down"))
        }),
    );
    let res = Browser::for_layer(&failing).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::BAD_GATEWAY).await;
    assert!(msg.contains("UI key hook failed"), "{msg}");

    let refusing = layer(
        flow_builder(&idp)
            .ui_key_fn(|_req: UiKeyRequest| async move {
                Ok::<_, std::convert::Infallible>(UiKeyResponse::Refuse {
                    message: "budget exhausted".into(),
                })
            })
            .max_ui_session_budget(None),
    );
    let res = Browser::for_layer(&refusing).login(&idp, "").await;
    assert_eq!(
        assert_callback_refused(res, StatusCode::FORBIDDEN).await,
        "budget exhausted"
    );
}

// ---------------------------------------------------------------------------------------------
// Header sign-in

/// `GET target` from `peer` with `headers`.
fn from(peer: &str, target: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = get(target, headers);
    req.extensions_mut().insert(ClientAddr(SocketAddr::new(
        peer.parse().expect("ip"),
        40_000,
    )));
    req
}

fn sign_in_builder(idp: &MockIdp) -> SsoLayerBuilder {
    flow_builder(idp)
        .trusted_proxies([PROXY])
        .header_sign_in(HeaderSignIn::new())
}

#[tokio::test]
async fn header_sign_in_from_a_trusted_proxy_runs_the_hook_store_and_session() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let sources: Arc<Mutex<Vec<LoginSource>>> = Arc::default();
    let sources2 = sources.clone();
    let layer = layer(
        sign_in_builder(&idp)
            .user_store(store.clone())
            .custom_sso_fn(move |req: CustomSsoRequest| {
                let sources = sources2.clone();
                async move {
                    sources.lock().unwrap().push(req.source);
                    let mut v = req.values;
                    v.team_ids = vec!["night-shift".into()];
                    Ok::<_, std::convert::Infallible>(CustomSsoResponse::Accept(v))
                }
            }),
    );
    let app = Upstream::default().behind(&layer);
    let headers = [
        ("x-litellm-user-id", "hank"),
        ("x-litellm-user-email", "Hank@Example.com"),
    ];
    for _ in 0..2 {
        // Twice: the second sign-in finds the user the first one created and bound.
        let res = send(
            &app,
            from(PROXY, "/sso/key/generate?return_to=/ui/keys", &headers),
        )
        .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&res), "/ui/keys");
        let token = cookie_value(&res, "token").expect("a session");
        let claims = token_claims(&token);
        assert_eq!(claims["user_id"], "hank");
        assert_eq!(claims["user_email"], "hank@example.com");
        assert_eq!(claims["teams"], serde_json::json!(["night-shift"]));
        assert_eq!(idp.count("/authorize"), 0);
        let res = send(
            &app,
            get("/whoami", &[("authorization", &format!("Bearer {token}"))]),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(
        *sources.lock().unwrap(),
        vec![LoginSource::TrustedProxy, LoginSource::TrustedProxy]
    );
    let stored = stored_user(&store, "hank").await.expect("stored");
    assert_eq!(stored.email.as_deref(), Some("hank@example.com"));
    assert_eq!(stored.metadata["sso_subject"], "trusted-proxy|hank");

    // From the trusted proxy without the user id header: the usual IdP login.
    let res = send(&app, from(PROXY, "/sso/key/generate", &[])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        location(&res).starts_with(&idp.issuer()),
        "{}",
        location(&res)
    );
}

#[tokio::test]
async fn header_sign_in_headers_from_other_addresses_are_stripped_and_ignored() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let layer = layer(sign_in_builder(&idp).user_store(store.clone()));
    // An inner service that reports every header name it received.
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let names: Vec<String> = req
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
            serde_json::json!(names).to_string(),
        ))))
    });
    let app: App = tower::util::BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(inner),
    );
    let spellings = [
        ("x-litellm-user-id", "root"),
        ("X-LiteLLM-User-Id", "root"),
        ("x_litellm_user_id", "root"),
        ("X_LITELLM_USER_ID", "root"),
        ("x-litellm_user-email", "root@example.com"),
    ];
    for (name, value) in spellings {
        // From an untrusted peer, even one that claims to be forwarded by the proxy: the IdP.
        for peer in ["203.0.113.9", "10.0.0.6"] {
            let req = from(
                peer,
                "/sso/key/generate",
                &[(name, value), ("x-forwarded-for", PROXY)],
            );
            let res = send(&app, req).await;
            assert_eq!(res.status(), StatusCode::SEE_OTHER, "{name} from {peer}");
            assert!(
                location(&res).starts_with(&idp.issuer()),
                "{name} from {peer}"
            );
            assert_eq!(cookie_value(&res, "token"), None);
        }
        // Without any peer address: the same.
        let res = send(&app, get("/sso/key/generate", &[(name, value)])).await;
        assert!(location(&res).starts_with(&idp.issuer()), "{name}");
    }
    // A `_` spelling from the trusted proxy itself is no sign-in either.
    let res = send(
        &app,
        from(PROXY, "/sso/key/generate", &[("x_litellm_user_id", "root")]),
    )
    .await;
    assert!(location(&res).starts_with(&idp.issuer()));
    assert!(stored_user(&store, "root").await.is_none());

    // They never reach the inner service from an untrusted peer.
    let token = token_for(&layer, alice());
    let cookie = format!("token={token}");
    let mut headers: Vec<(&str, &str)> = spellings.to_vec();
    headers.push(("cookie", &cookie));
    let res = send(&app, from("203.0.113.9", "/api", &headers)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let names = json_body(res).await;
    let names: Vec<String> = serde_json::from_value(names).unwrap();
    assert!(
        !names
            .iter()
            .any(|n| n.replace('_', "-").starts_with("x-litellm-user")),
        "{names:?}"
    );
    // From the trusted proxy, only its own (canonical) spelling does.
    let res = send(&app, from(PROXY, "/api", &headers)).await;
    let names: Vec<String> = serde_json::from_value(json_body(res).await).unwrap();
    let ours: Vec<&String> = names
        .iter()
        .filter(|n| n.replace('_', "-").starts_with("x-litellm-user"))
        .collect();
    assert_eq!(ours, vec!["x-litellm-user-id"], "{names:?}");
}

#[tokio::test]
async fn header_sign_in_still_applies_the_access_policy() {
    let idp = idp().await;
    let store = MemoryUserStore::new();
    let layer = layer(
        sign_in_builder(&idp)
            .user_store(store.clone())
            .allowed_email_domains(["example.com"]),
    );
    let app = Upstream::default().behind(&layer);
    let res = send(
        &app,
        from(
            PROXY,
            "/sso/key/generate",
            &[
                ("x-litellm-user-id", "eve"),
                ("x-litellm-user-email", "eve@evil.test"),
            ],
        ),
    )
    .await;
    let msg = assert_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("evil.test"), "{msg}");
    assert!(stored_user(&store, "eve").await.is_none());

    // A header given twice is refused, not guessed at.
    let res = send(
        &app,
        from(
            PROXY,
            "/sso/key/generate",
            &[("x-litellm-user-id", "eve"), ("x-litellm-user-id", "root")],
        ),
    )
    .await;
    assert_refused(res, StatusCode::BAD_REQUEST).await;

    // An account an IdP login created is not reachable by header sign-in.
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let res = send(
        &app,
        from(
            PROXY,
            "/sso/key/generate",
            &[
                ("x-litellm-user-id", "alice"),
                ("x-litellm-user-email", "alice@example.com"),
            ],
        ),
    )
    .await;
    assert_refused(res, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn header_sign_in_needs_trusted_proxies() {
    let errors = builder()
        .header_sign_in(HeaderSignIn::new().email_header("bad header"))
        .build()
        .expect_err("refused");
    let text = errors.to_string();
    assert!(text.contains("needs trusted_proxies"), "{text}");
    assert!(text.contains("\"bad header\""), "{text}");

    let env = |k: &str| match k {
        "PROXY_BASE_URL" => Some(BASE_URL.to_owned()),
        "LITELLM_MASTER_KEY" => Some(SECRET.to_owned()),
        "SSO_HEADER_SIGN_IN" => Some("true".to_owned()),
        _ => None,
    };
    assert!(SsoLayerBuilder::from_env_vars(env).build().is_err());
    let env_ok = |k: &str| match k {
        "SSO_TRUSTED_PROXIES" => Some(PROXY.to_owned()),
        other => env(other),
    };
    assert!(SsoLayerBuilder::from_env_vars(env_ok).build().is_ok());
}

// ---------------------------------------------------------------------------------------------
// Admin UI switch

#[tokio::test]
async fn disabled_admin_ui_answers_login_and_callback_but_sessions_keep_working() {
    let idp = idp().await;
    let env = |k: &str| match k {
        "PROXY_BASE_URL" => Some(BASE_URL.to_owned()),
        "LITELLM_MASTER_KEY" => Some(SECRET.to_owned()),
        "DISABLE_ADMIN_UI" => Some("True".to_owned()),
        _ => None,
    };
    let layer = layer(SsoLayerBuilder::from_env_vars(env).provider(oidc(&idp)));
    let app = Upstream::default().behind(&layer);
    for target in [
        "/sso/key/generate",
        "/sso/key/generate?source=litellm-cli&key=cli-test_1234567890",
        "/sso/callback?code=x&state=y",
    ] {
        let res = send(&app, get(target, &[])).await;
        assert_eq!(res.status(), StatusCode::OK, "{target}");
        assert!(
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(cookie_value(&res, "token"), None);
        let body = String::from_utf8(
            http_body_util::BodyExt::collect(res.into_body())
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        assert!(body.contains("admin UI is disabled"), "{body}");
    }
    assert_eq!(idp.count("/authorize"), 0);
    assert_eq!(idp.count("/token"), 0);

    // The gate and API sessions keep working.
    let token = token_for(&layer, alice());
    let res = send(
        &app,
        get("/api", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = send(&app, get("/ui/", &[("cookie", &format!("token={token}"))])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_401_json(send(&app, get("/api", &[])).await).await;

    // The builder switch, off again: the login starts.
    let on = self::layer(
        SsoLayerBuilder::from_env_vars(env)
            .provider(oidc(&idp))
            .disable_admin_ui(false),
    );
    let res = send(
        &Upstream::default().behind(&on),
        get("/sso/key/generate", &[]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

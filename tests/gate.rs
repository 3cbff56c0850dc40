//! The gate: protected routes, public routes, session tokens, identity headers, configuration.

mod common;

use common::*;
use http::StatusCode;
use tower_sso::SsoLayer;
use tower_sso::clock::Clock;
use tower_sso::session::MAX_TOKEN_LEN;

fn layer() -> SsoLayer {
    builder()
        .public_paths(["/health", "/static/*"])
        .build()
        .expect("valid config")
}

#[tokio::test]
async fn valid_session_cookie_reaches_inner_service_with_identity() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let token = token_for(&layer, alice());
    let res = send(
        &app,
        get(
            "/whoami",
            &[("cookie", &format!("theme=dark; token={token}; other=1"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v = json_body(res).await;
    let id = &v["identity"];
    assert_eq!(id["user_id"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["display_name"], "Alice Example");
    assert_eq!(id["role"], "internal_user");
    assert_eq!(id["team_ids"], serde_json::json!(["team-a", "team-b"]));
    assert_eq!(id["provider"], "generic");
    assert!(id["session_id"].as_str().is_some_and(|s| s.len() >= 20));
    assert!(id["expires_at"].as_u64().is_some());
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn bearer_header_is_accepted_too() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let token = token_for(&layer, alice());
    let res = send(
        &app,
        get(
            "/api/models",
            &[("authorization", &format!("Bearer {token}"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json_body(res).await["identity"]["user_id"], "alice");
}

#[tokio::test]
async fn every_kind_of_bad_token_gets_401_json_and_never_reaches_the_app() {
    let clock = Clock::manual();
    let layer = builder().clock(clock.clone()).build().unwrap();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let good = token_for(&layer, alice());
    let other_secret = builder()
        .session_secret("a-completely-different-secret-value")
        .build()
        .unwrap();
    let foreign = token_for(&other_secret, alice());
    let parts: Vec<&str> = good.split('.').collect();
    let none_alg = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    let truncated = good[..good.len() / 2].to_owned();
    let oversized = format!("{good}{}", "A".repeat(MAX_TOKEN_LEN));
    let cases = [
        ("tampered", tampered),
        ("wrong key", foreign),
        ("alg none", none_alg),
        ("truncated", truncated),
        ("oversized", oversized),
        ("garbage", "%%%not-a-jwt%%%".to_owned()),
        ("empty segments", "..".to_owned()),
    ];
    for (what, token) in cases {
        let res = send(
            &app,
            get("/whoami", &[("authorization", &format!("Bearer {token}"))]),
        )
        .await;
        let msg = assert_401_json(res).await;
        assert!(!msg.contains(&token), "{what}: message echoes the token");
        let res = send(
            &app,
            get("/whoami", &[("cookie", &format!("token={token}"))]),
        )
        .await;
        assert_401_json(res).await;
    }
    // No token at all.
    assert_401_json(send(&app, get("/whoami", &[])).await).await;
    // Expired: valid yesterday, refused today (even though it was verified and remembered).
    assert_eq!(
        send(
            &app,
            get("/whoami", &[("cookie", &format!("token={good}"))])
        )
        .await
        .status(),
        StatusCode::OK
    );
    clock.advance(24 * 3600 + 1);
    let msg = assert_401_json(
        send(
            &app,
            get("/whoami", &[("cookie", &format!("token={good}"))]),
        )
        .await,
    )
    .await;
    assert!(msg.contains("expired"), "{msg}");
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn browsers_are_sent_to_login_remembering_where_they_were_going() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let res = send(
        &app,
        get(
            "/admin/keys?page=2&sort=name",
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let loc = location(&res);
    assert_eq!(
        loc,
        "/sso/key/generate?return_to=/admin/keys%3Fpage%3D2%26sort%3Dname"
    );
    // API clients, and browsers POSTing, get 401 instead.
    assert_401_json(send(&app, get("/admin/keys", &[("accept", "application/json")])).await).await;
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn public_paths_pass_without_a_session() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let res = send(&app, get("/health", &[])).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(json_body(res).await["identity"].is_null());
    assert_eq!(
        send(&app, get("/static/app.js?v=1", &[])).await.status(),
        StatusCode::OK
    );
    // The query never makes a path public.
    assert_401_json(send(&app, get("/whoami?/health", &[])).await).await;
    assert_401_json(send(&app, get("/whoami?x=/static/a", &[])).await).await;
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn path_normalisation_tricks_do_not_reach_protected_paths() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    for path in [
        "/health/../whoami",
        "/health%2F..%2Fwhoami",
        "/health%2f..%2fwhoami",
        "/health;x/../whoami",
        "/health/%2e%2e/whoami",
        "/static/../whoami",
        "/static/..%2fwhoami",
        "//health/../whoami",
        "/health/./../whoami",
        "/%68ealth",
    ] {
        let res = send(&app, get(path, &[])).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_inner_service() {
    let spoofs: &[(&str, &str)] = &[
        ("x-forwarded-user", "admin"),
        ("X-Forwarded-Email", "admin@example.com"),
        ("x_forwarded_groups", "admins"),
        ("X_FORWARDED_USER", "root"),
        ("x-forwarded-preferred-username", "admin"),
    ];
    // Public path, no session: stripped.
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let v = json_body(send(&app, get("/health", spoofs)).await).await;
    assert_eq!(v["forwarded"], serde_json::json!({}), "{v}");
    // Authenticated, headers off: stripped.
    let token = token_for(&layer, alice());
    let mut with_token = spoofs.to_vec();
    let auth = format!("Bearer {token}");
    with_token.push(("authorization", &auth));
    let v = json_body(send(&app, get("/whoami", &with_token)).await).await;
    assert_eq!(v["forwarded"], serde_json::json!({}), "{v}");
    // Authenticated, headers on: ours, and only ours.
    let layer = builder().identity_headers(true).build().unwrap();
    let app = up.behind(&layer);
    let token = token_for(&layer, alice());
    let auth = format!("Bearer {token}");
    let mut with_token = spoofs.to_vec();
    with_token.push(("authorization", &auth));
    let v = json_body(send(&app, get("/whoami", &with_token)).await).await;
    assert_eq!(
        v["forwarded"],
        serde_json::json!({
            "x-forwarded-user": "alice",
            "x-forwarded-email": "alice@example.com",
            "x-forwarded-groups": "team-a,team-b",
            "x-forwarded-preferred-username": "Alice Example",
        })
    );
}

#[tokio::test]
async fn sso_paths_are_answered_by_the_layer_never_forwarded() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let res = send(&app, get("/sso/nope", &[])).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = send(&app, get("/sso/../whoami", &[])).await;
    assert_ne!(res.status(), StatusCode::OK);
    // Settings and readiness need a session.
    assert_401_json(send(&app, get("/sso/get/ui_settings", &[])).await).await;
    assert_401_json(send(&app, get("/sso/readiness", &[])).await).await;
    let token = token_for(&layer, alice());
    let res = send(
        &app,
        get("/sso/readiness", &[("cookie", &format!("token={token}"))]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let v = json_body(res).await;
    assert_eq!(v["sso_configured"], false);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let token = token_for(&layer, alice());
    let cookie = format!("token={token}");
    assert_eq!(
        send(&app, get("/whoami", &[("cookie", &cookie)]))
            .await
            .status(),
        StatusCode::OK
    );
    let res = send(&app, get("/sso/logout", &[("cookie", &cookie)])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&res)
            .iter()
            .any(|c| c.starts_with("token=;") && c.contains("Max-Age=0"))
    );
    let msg = assert_401_json(send(&app, get("/whoami", &[("cookie", &cookie)])).await).await;
    assert!(msg.contains("revoked"), "{msg}");
}

#[tokio::test]
async fn build_reports_every_problem_at_once() {
    let err = SsoLayer::builder()
        .base_url("ftp://gateway.example.com")
        .session_secret("short")
        .public_paths(["health", "/a/../b"])
        .root_path("/bad/../path")
        .provider(tower_sso::provider::Provider::generic("", None))
        .build()
        .unwrap_err();
    let text = err.to_string();
    for needle in [
        "base_url",
        "session_secret",
        "public_paths",
        "root_path",
        "client id",
        "authorization endpoint",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(err.errors().len() >= 6, "{text}");
    let missing = SsoLayer::builder().build().unwrap_err();
    assert!(
        missing.mentions("base_url (PROXY_BASE_URL)")
            && missing.mentions("session_secret (LITELLM_MASTER_KEY)")
    );
}

#[tokio::test]
async fn a_browser_posting_without_a_session_gets_401_not_a_redirect() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let req = http::Request::post("/admin/keys")
        .header("accept", "text/html")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_401_json(send(&app, req).await).await;
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn works_as_an_axum_layer_with_the_extractor() {
    use axum::{Router, routing::get as aget};
    let layer = layer();
    let token = token_for(&layer, alice());
    let app: Router = Router::new()
        .route(
            "/whoami",
            aget(|id: tower_sso::Identity| async move { id.user_id().to_owned() }),
        )
        .route(
            "/health",
            aget(|id: Option<tower_sso::Identity>| async move { format!("{}", id.is_some()) }),
        )
        .layer(layer);
    use tower::ServiceExt;
    let res = app
        .clone()
        .oneshot(
            http::Request::get("/whoami")
                .header("cookie", format!("token={token}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"alice");
    let res = app
        .oneshot(
            http::Request::get("/health")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"false");
}

#[tokio::test]
async fn two_different_session_cookies_are_ambiguous_and_refused() {
    let layer = layer();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let victim = token_for(&layer, alice());
    let planted = token_for(
        &layer,
        tower_sso::session::NewSession {
            user_id: "mallory".into(),
            ..alice()
        },
    );
    // A cookie planted from a sibling domain is sent alongside ours: trust neither.
    let res = send(
        &app,
        get(
            "/whoami",
            &[("cookie", &format!("token={planted}; token={victim}"))],
        ),
    )
    .await;
    let msg = assert_401_json(res).await;
    assert!(msg.contains("several session cookies"), "{msg}");
    // A browser is told too, not sent round a login that could never clear the planted cookie.
    let res = send(
        &app,
        get(
            "/whoami",
            &[
                ("cookie", &format!("token={planted}; token={victim}")),
                ("accept", "text/html"),
            ],
        ),
    )
    .await;
    assert_401_json(res).await;
    // Also across separate Cookie headers (HTTP/2 splits them).
    let req = http::Request::get("/whoami")
        .header("cookie", format!("token={planted}"))
        .header("cookie", format!("token={victim}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_401_json(send(&app, req).await).await;
    // The same value twice is not ambiguous.
    let res = send(
        &app,
        get(
            "/whoami",
            &[("cookie", &format!("token={victim}; token={victim}"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(up.calls(), 1);
}

#[tokio::test]
async fn sessions_too_large_for_a_cookie_are_not_issued() {
    let layer = layer();
    let many_teams: Vec<String> = (0..400).map(|i| format!("team-number-{i}")).collect();
    let err = layer
        .sessions()
        .issue(tower_sso::session::NewSession {
            team_ids: many_teams,
            ..alice()
        })
        .unwrap_err();
    assert!(matches!(err, tower_sso::session::IssueError::TooLarge { len } if len > 3800));
}

#[tokio::test]
async fn the_session_credential_can_be_kept_from_the_inner_service() {
    let up = Upstream::default();
    // Default: forwarded as it came (the LiteLLM UI backend reads it).
    let layer = layer();
    let token = token_for(&layer, alice());
    let cookie = format!("theme=dark; token={token}");
    let v = json_body(send(&up.behind(&layer), get("/whoami", &[("cookie", &cookie)])).await).await;
    assert_eq!(v["cookie"], cookie.as_str());
    // Stripped: the inner service learns who the user is, but never holds the credential.
    let layer = builder().strip_session_token(true).build().unwrap();
    let app = up.behind(&layer);
    let token = token_for(&layer, alice());
    let cookie = format!("theme=dark; token={token}");
    let v = json_body(send(&app, get("/whoami", &[("cookie", &cookie)])).await).await;
    assert_eq!(v["identity"]["user_id"], "alice");
    assert_eq!(v["cookie"], "theme=dark");
    let bearer = format!("Bearer {token}");
    let v = json_body(send(&app, get("/whoami", &[("authorization", &bearer)])).await).await;
    assert_eq!(v["identity"]["user_id"], "alice");
    assert!(v["authorization"].is_null(), "{v}");
}

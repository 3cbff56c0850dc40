//! The CLI login (upstream's `litellm-proxy login`) through the layer: the browser part against
//! `MockIdp`, the CLI's polls, the token it gets on a protected route, every refusal, the rate
//! limit, concurrent polls, and the key never stored in clear.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_sso::cache::{CacheRequest, MokaVerifierCache};
use tower_sso::claims::ClaimMapping;
use tower_sso::store::{MemoryUserStore, StoreRequest, TeamRecord};
use tower_sso::testing::{MockIdp, MockUser};
use tower_sso::{ClientAddr, RateLimit, RateLimits, SsoLayer, SsoLayerBuilder};

const KEY: &str = "sk-9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f";

/// An IdP whose users carry their teams in `groups`: alice with `teams`.
async fn idp_with_teams(teams: &[&str]) -> MockIdp {
    MockIdp::builder()
        .user(MockUser::alice().claim("groups", json!(teams)))
        .start()
        .await
        .unwrap()
}

fn cli_builder(idp: &MockIdp) -> SsoLayerBuilder {
    builder().provider(oidc(idp).claims(ClaimMapping {
        team_ids_field: Some("groups".into()),
        ..ClaimMapping::default()
    }))
}

fn from_client(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = get(path, headers);
    req.extensions_mut().insert(ClientAddr(
        "203.0.113.9:4000".parse::<SocketAddr>().unwrap(),
    ));
    req
}

/// One poll from the CLI: status and body text.
async fn poll(app: &App, key: &str, query: &str) -> (StatusCode, String) {
    let path = if query.is_empty() {
        format!("/sso/cli/poll/{key}")
    } else {
        format!("/sso/cli/poll/{key}?{query}")
    };
    let res = send(app, from_client(&path, &[])).await;
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn poll_json(app: &App, key: &str, query: &str) -> Value {
    let (status, body) = poll(app, key, query).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The browser part: login start with the CLI key, the IdP, the callback. Asserts the success
/// page and that no session was set.
async fn browser_login(browser: &mut Browser, idp: &MockIdp, key: &str) {
    let res = browser
        .login(idp, &format!("source=litellm-cli&key={key}"))
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{:?}", res.headers());
    assert_flow_cookie_cleared(&res);
    assert_eq!(
        cookie_value(&res, "token"),
        None,
        "a CLI login set a session"
    );
    assert!(
        res.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("close this window"), "{body}");
    assert!(!body.contains("<script"), "{body}");
    assert!(!body.contains(key), "the key in the page");
}

/// `GET /whoami` with the token as a Bearer header: the identity the app received.
async fn whoami_bearer(app: &App, token: &str) -> Value {
    let auth = format!("Bearer {token}");
    let res = send(app, get("/whoami", &[("authorization", &auth)])).await;
    assert_eq!(res.status(), StatusCode::OK);
    json_body(res).await["identity"].clone()
}

#[tokio::test]
async fn the_whole_flow_with_a_team_choice() {
    let idp = idp_with_teams(&["team-a", "team-b"]).await;
    let store = MemoryUserStore::new();
    // team-a exists already, with an alias.
    store
        .clone()
        .oneshot(StoreRequest::FindOrCreateTeam(TeamRecord {
            team_id: "team-a".into(),
            alias: Some("Team <A>".into()),
            models: vec![],
            max_budget: None,
            budget_duration: None,
            tpm_limit: None,
            rpm_limit: None,
        }))
        .await
        .unwrap();
    let layer = cli_builder(&idp)
        .user_store(store.clone())
        .cli_token_duration(Duration::from_secs(48 * 3600))
        .build()
        .unwrap();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let mut browser = Browser::new(app.clone());

    assert_eq!(poll_json(&app, KEY, "").await, json!({"status": "pending"}));
    browser_login(&mut browser, &idp, KEY).await;
    assert_eq!(
        store.user_count(),
        1,
        "the CLI login writes the user, as upstream"
    );

    // Two teams and no choice yet: the list, no token; the record is kept.
    let details = json!([
        {"team_id": "team-a", "team_alias": "Team <A>"},
        {"team_id": "team-b", "team_alias": null},
    ]);
    for _ in 0..2 {
        let v = poll_json(&app, KEY, "").await;
        assert_eq!(
            v,
            json!({
                "status": "ready",
                "user_id": "alice",
                "teams": ["team-a", "team-b"],
                "team_details": details,
                "requires_team_selection": true,
            })
        );
    }
    // A team alice is not in: 403, the record kept.
    let (status, body) = poll(&app, KEY, "team_id=team-z").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.contains(KEY));

    let v = poll_json(&app, KEY, "team_id=team-b").await;
    assert_eq!(v["status"], "ready");
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["team_id"], "team-b");
    assert_eq!(v["teams"], json!(["team-a", "team-b"]));
    assert_eq!(v["team_details"], details);
    assert!(v.get("requires_team_selection").is_none());
    let token = v["key"].as_str().expect("token").to_owned();

    // The token works as a Bearer token, with the chosen team.
    let id = whoami_bearer(&app, &token).await;
    assert_eq!(id["user_id"], "alice");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["team_ids"], json!(["team-b"]));
    assert_eq!(id["attributes"]["team_id"], "team-b");
    assert_eq!(id["attributes"]["login_method"], "cli");
    let identity = layer.sessions().verify(&token).unwrap();
    let lifetime = identity.expires_at() - now_secs();
    assert!(
        (48 * 3600 - 60..=48 * 3600).contains(&lifetime),
        "{lifetime}"
    );

    // Single use: the next poll is pending, like a key never used.
    assert_eq!(poll_json(&app, KEY, "").await, json!({"status": "pending"}));
    assert_eq!(
        poll_json(&app, KEY, "team_id=team-b").await,
        json!({"status": "pending"})
    );
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn one_team_or_none_get_the_token_at_once() {
    for teams in [&["only-team"][..], &[][..]] {
        let idp = idp_with_teams(teams).await;
        let layer = cli_builder(&idp).build().unwrap();
        let app = Upstream::default().behind(&layer);
        let mut browser = Browser::new(app.clone());
        browser_login(&mut browser, &idp, KEY).await;
        let v = poll_json(&app, KEY, "").await;
        assert_eq!(v["status"], "ready", "{v}");
        assert_eq!(v["teams"], json!(teams));
        let team = teams.first().map_or(Value::Null, |t| json!(t));
        assert_eq!(v["team_id"], team);
        let token = v["key"].as_str().unwrap();
        let id = whoami_bearer(&app, token).await;
        assert_eq!(id["team_ids"], json!(teams));
        assert_eq!(id["attributes"]["team_id"], team);
        assert_eq!(poll_json(&app, KEY, "").await, json!({"status": "pending"}));
        // Defaults: 24 hours.
        let lifetime = layer.sessions().verify(token).unwrap().expires_at() - now_secs();
        assert!((24 * 3600 - 60..=24 * 3600).contains(&lifetime));
    }
}

#[tokio::test]
async fn naming_the_team_of_a_single_team_user_works_and_another_is_refused() {
    let idp = idp_with_teams(&["only-team"]).await;
    let layer = cli_builder(&idp).build().unwrap();
    let app = Upstream::default().behind(&layer);
    let mut browser = Browser::new(app.clone());
    browser_login(&mut browser, &idp, KEY).await;
    assert_eq!(
        poll(&app, KEY, "team_id=other").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(poll(&app, KEY, "team_id=").await.0, StatusCode::FORBIDDEN);
    let v = poll_json(&app, KEY, "team_id=only-team").await;
    assert_eq!(v["team_id"], "only-team");
}

#[tokio::test]
async fn bad_keys_are_refused() {
    let idp = idp_with_teams(&[]).await;
    let layer = cli_builder(&idp).build().unwrap();
    let app = Upstream::default().behind(&layer);
    // Login start: a key not starting with sk- (or none), as upstream; a too short one too.
    for query in [
        "source=litellm-cli",
        "source=litellm-cli&key=",
        "source=litellm-cli&key=cli-test_1234567890abcdefgh",
        "source=litellm-cli&key=sk-short",
        "source=litellm-cli&key=sk-0123456789abcdefghij%3Cb%3E",
    ] {
        let res = send(&app, get(&format!("/sso/key/generate?{query}"), &[])).await;
        let msg = assert_refused(res, StatusCode::BAD_REQUEST).await;
        assert!(msg.contains("sk-"), "{msg}");
    }
    // Poll: 400 for a key not starting with sk-.
    for key in [
        "cli-test_1234567890abcdefgh",
        "SK-0123456789abcdefghijkl",
        "",
    ] {
        let (status, body) = poll(&app, key, "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {body}");
        assert!(body.contains("Invalid key ID format"), "{body}");
    }
    // Only GET polls (a HEAD would take the token and drop it).
    let head = http::Request::head(format!("/sso/cli/poll/{KEY}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        send(&app, head).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    // A malformed sk- key was never used: pending.
    assert_eq!(
        poll_json(&app, "sk-short", "").await,
        json!({"status": "pending"})
    );
}

#[tokio::test]
async fn polls_and_cli_login_starts_are_rate_limited_per_client() {
    let idp = idp_with_teams(&[]).await;
    // The defaults allow a CLI polling once a second.
    assert!(RateLimits::default().cli_poll.unwrap().per_minute() >= 120);
    assert!(RateLimits::default().cli_poll.unwrap().burst() >= 20);
    let layer = cli_builder(&idp)
        .rate_limits(
            RateLimits::default()
                .cli_poll(RateLimit::new(1, 3))
                .login(RateLimit::new(1, 2)),
        )
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    for _ in 0..3 {
        assert_eq!(poll(&app, KEY, "").await.0, StatusCode::OK);
    }
    let res = send(&app, from_client(&format!("/sso/cli/poll/{KEY}"), &[])).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains(KEY));
    // Another client polls on.
    let mut other = get(&format!("/sso/cli/poll/{KEY}"), &[]);
    other
        .extensions_mut()
        .insert(ClientAddr("198.51.100.4:1".parse::<SocketAddr>().unwrap()));
    assert_eq!(send(&app, other).await.status(), StatusCode::OK);

    let start = format!("/sso/key/generate?source=litellm-cli&key={KEY}");
    for _ in 0..2 {
        let res = send(&app, from_client(&start, &[])).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let res = send(&app, from_client(&start, &[])).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn of_two_concurrent_polls_exactly_one_gets_the_token() {
    for teams in [&["t1"][..], &["t1", "t2"][..]] {
        let idp = idp_with_teams(teams).await;
        let layer = cli_builder(&idp).build().unwrap();
        let app = Upstream::default().behind(&layer);
        let mut browser = Browser::new(app.clone());
        browser_login(&mut browser, &idp, KEY).await;
        let query = "team_id=t1";
        let polls = (0..8).map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let path = format!("/sso/cli/poll/{KEY}?{query}");
                let res = app
                    .oneshot(from_client(&path, &[]))
                    .await
                    .unwrap_or_else(|never| match never {});
                assert_eq!(res.status(), StatusCode::OK);
                json_body(res).await
            })
        });
        let answers: Vec<Value> = futures_join(polls).await;
        let tokens = answers.iter().filter(|v| v.get("key").is_some()).count();
        assert_eq!(tokens, 1, "{answers:?}");
        assert!(
            answers
                .iter()
                .filter(|v| v.get("key").is_none())
                .all(|v| *v == json!({"status": "pending"}))
        );
    }
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_key_is_never_stored_in_clear_and_the_browser_keeps_its_session() {
    let idp = idp_with_teams(&["t1", "t2"]).await;
    let seen: Arc<Mutex<Vec<CacheRequest>>> = Arc::default();
    let inner = MokaVerifierCache::default();
    let recorder = {
        let seen = seen.clone();
        tower::service_fn(move |req: CacheRequest| {
            seen.lock().unwrap().push(req.clone());
            inner.clone().oneshot(req)
        })
    };
    let layer: SsoLayer = cli_builder(&idp).verifier_cache(recorder).build().unwrap();
    let app = Upstream::default().behind(&layer);
    let mut browser = Browser::new(app.clone());
    // The browser is logged in to the UI already: the CLI login leaves that session alone.
    let ui_token = token_for(&layer, alice());
    browser.set_cookie("token", Some(&ui_token));
    browser_login(&mut browser, &idp, KEY).await;
    assert_eq!(browser.cookie("token"), Some(ui_token.as_str()));
    assert!(layer.sessions().verify(&ui_token).is_ok());
    // The flow cookie did not carry the key either.
    let v = poll_json(&app, KEY, "").await;
    assert_eq!(v["requires_team_selection"], true);
    let v = poll_json(&app, KEY, "team_id=t2").await;
    assert!(v["key"].is_string());

    let seen = seen.lock().unwrap();
    let random = &KEY[3..];
    let mut cli_entries = 0;
    for req in seen.iter() {
        let text = format!("{req:?}");
        assert!(
            !text.contains(random),
            "the CLI key in a cache request: {text}"
        );
        if let CacheRequest::Put {
            key, value, ttl, ..
        } = req
            && key.contains(":cli:")
        {
            cli_entries += 1;
            assert!(*ttl <= Duration::from_secs(600));
            assert!(!String::from_utf8_lossy(value).contains(random));
        }
    }
    // Stored at the callback, put back after the team list.
    assert_eq!(cli_entries, 2, "{seen:?}");
}

#[tokio::test]
async fn a_cli_login_needs_the_access_policy_too() {
    let idp = idp_with_teams(&[]).await;
    let store = MemoryUserStore::new();
    let layer = cli_builder(&idp)
        .allowed_email_domains(["corp.example"])
        .user_store(store.clone())
        .build()
        .unwrap();
    let app = Upstream::default().behind(&layer);
    let mut browser = Browser::new(app.clone());
    let res = browser
        .login(&idp, &format!("source=litellm-cli&key={KEY}"))
        .await;
    assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert_eq!(store.user_count(), 0);
    assert_eq!(poll_json(&app, KEY, "").await, json!({"status": "pending"}));
}

#[test]
fn the_token_lifetime_comes_from_the_environment() {
    let env = |extra: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            [("PROXY_BASE_URL", BASE_URL), ("LITELLM_MASTER_KEY", SECRET)]
                .iter()
                .chain(extra.iter())
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert!(
        SsoLayerBuilder::from_env_vars(env(&[("LITELLM_CLI_JWT_EXPIRATION_HOURS", "48")]))
            .build()
            .is_ok()
    );
    let err = SsoLayerBuilder::from_env_vars(env(&[("LITELLM_CLI_JWT_EXPIRATION_HOURS", "soon")]))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("LITELLM_CLI_JWT_EXPIRATION_HOURS"),
        "{err}"
    );
    let err = SsoLayerBuilder::from_env_vars(env(&[("LITELLM_CLI_JWT_EXPIRATION_HOURS", "0")]))
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("LITELLM_CLI_JWT_EXPIRATION_HOURS"),
        "{err}"
    );
}

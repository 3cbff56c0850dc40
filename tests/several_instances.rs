//! Several instances sharing one Redis and one PostgreSQL, as replicas behind a load balancer:
//! any instance finishes any login, a logout on one holds on the others within the bound, users
//! survive the instance that created them, and an outage of either backend is answered cleanly
//! and healed without a restart.
//!
//! Real servers: `redis-server` and PostgreSQL's `initdb`/`pg_ctl`, started by the fixtures on
//! free loopback ports (skipped with a notice when missing, a failure under `CI=true`).

mod common;

use std::time::{Duration, Instant};

use http::StatusCode;
use tower::ServiceExt;
use tower_sso::cache::RedisVerifierCache;
use tower_sso::claims::ClaimMapping;
use tower_sso::store::{PostgresUserStore, StoreRequest, StoreResponse, UserRecord};
use tower_sso::testing::{MockIdp, MockUser};
use tower_sso::{SsoLayer, SsoLayerBuilder};

use common::postgres_server::PostgresServer;
use common::redis_server::RedisServer;
use common::*;

const UI: &str = "/ui/?login=success";

/// The bound the README promises for a logout to reach every instance.
const REVOCATION_BOUND: Duration = Duration::from_secs(2);

async fn idp() -> MockIdp {
    MockIdp::builder()
        .user(MockUser::alice().claim("groups", vec!["eng", "ops"]))
        .start()
        .await
        .expect("MockIdp")
}

/// Instance A: configured from the environment, as `SsoLayer::from_env` would be.
fn instance_from_env(idp: &MockIdp, redis_url: &str, database_url: &str) -> SsoLayer {
    let mut vars: Vec<(String, String)> = idp.env_vars();
    vars.extend(
        [
            ("PROXY_BASE_URL", BASE_URL),
            ("LITELLM_MASTER_KEY", SECRET),
            ("REDIS_URL", redis_url),
            ("DATABASE_URL", database_url),
            ("GENERIC_TEAM_IDS_JWT_FIELD", "groups"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let layer = SsoLayerBuilder::from_env_vars(|k| {
        vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .build()
    .expect("layer from env");
    let backends = layer.backends().to_string();
    assert!(
        backends.contains("Redis at redis://127.0.0.1"),
        "{backends}"
    );
    assert!(backends.contains("PostgreSQL at postgres://"), "{backends}");
    layer
}

/// Instance B: the same backends configured in code, with its own connections.
async fn instance_in_code(idp: &MockIdp, redis_url: &str, database_url: &str) -> SsoLayer {
    let cache = RedisVerifierCache::from_url(redis_url).expect("redis cache");
    let store = PostgresUserStore::connect(database_url)
        .await
        .expect("postgres store");
    let claims = ClaimMapping {
        team_ids_field: Some("groups".to_owned()),
        ..ClaimMapping::default()
    };
    builder()
        .provider(oidc(idp).claims(claims))
        .verifier_cache(cache.clone())
        .revocation_feed(cache.revocations())
        .user_store(store)
        .build()
        .expect("layer in code")
}

async fn stored_in(database_url: &str, user_id: &str) -> Option<UserRecord> {
    let store = PostgresUserStore::connect(database_url)
        .await
        .expect("postgres store");
    match store
        .oneshot(StoreRequest::FindUserById(user_id.to_owned()))
        .await
        .expect("find user")
    {
        StoreResponse::User(u) => u,
        other => panic!("unexpected answer {other:?}"),
    }
}

async fn status_with_token(app: &App, token: &str) -> StatusCode {
    send(
        app,
        get("/whoami", &[("authorization", &format!("Bearer {token}"))]),
    )
    .await
    .status()
}

/// Polls `app` with `token` until it is refused; fails if that takes longer than `bound` since
/// `since`.
async fn refused_within(app: &App, token: &str, since: Instant, bound: Duration, who: &str) {
    while status_with_token(app, token).await != StatusCode::UNAUTHORIZED {
        assert!(
            since.elapsed() < bound,
            "{who}: the revoked session is still accepted after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn any_instance_finishes_any_login_and_a_logout_holds_everywhere() {
    let (Some(redis), Some(pg)) = (RedisServer::start(), PostgresServer::start()) else {
        return;
    };
    let database_url = pg.create_database();
    let idp = idp().await;
    let a = instance_from_env(&idp, &redis.url, &database_url);
    let b = instance_in_code(&idp, &redis.url, &database_url).await;
    let (app_a, app_b) = (
        Upstream::default().behind(&a),
        Upstream::default().behind(&b),
    );

    // Started on A, finished on B (the flow record and its single use live in Redis).
    let mut browser = Browser::new(app_a.clone());
    let flow = browser.authorize(&idp, "").await;
    browser.app = app_b.clone();
    let token = assert_logged_in(&browser.callback(&flow).await, UI);

    // The session works on both.
    let me = browser.whoami().await;
    browser.app = app_a.clone();
    assert_eq!(browser.whoami().await, me);
    let user_id = me["user_id"].as_str().expect("user id").to_owned();

    // The user B created is in PostgreSQL, with the IdP's teams, for every instance.
    let stored = stored_in(&database_url, &user_id)
        .await
        .expect("stored user");
    assert_eq!(stored.teams, ["eng", "ops"]);

    // Replaying the callback on A: the flow record was taken once, on B.
    let replay = send(
        &app_a,
        get(
            &flow.callback_target(),
            &[("cookie", &format!("{FLOW_COOKIE}={}", flow.flow_cookie))],
        ),
    )
    .await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);

    // A logout on A is refused on B within the bound, without B asking Redis per request.
    assert_eq!(status_with_token(&app_b, &token).await, StatusCode::OK);
    let res = browser.get("/sso/logout").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let logged_out = Instant::now();
    assert_eq!(
        status_with_token(&app_a, &token).await,
        StatusCode::UNAUTHORIZED
    );
    loop {
        if status_with_token(&app_b, &token).await == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            logged_out.elapsed() < REVOCATION_BOUND,
            "B still accepts the session {REVOCATION_BOUND:?} after the logout on A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // An instance started after the logout learns it too, and still sees the user.
    let c = instance_in_code(&idp, &redis.url, &database_url).await;
    let app_c = Upstream::default().behind(&c);
    refused_within(
        &app_c,
        &token,
        Instant::now(),
        REVOCATION_BOUND,
        "C, started after the logout",
    )
    .await;
    let mut browser = Browser::new(app_c);
    let token_c = assert_logged_in(&browser.login(&idp, "").await, UI);
    assert_eq!(browser.whoami().await["user_id"], user_id.as_str());
    assert_eq!(status_with_token(&app_a, &token_c).await, StatusCode::OK);
}

#[tokio::test]
async fn redis_down_fails_logins_cleanly_keeps_sessions_and_heals() {
    let (Some(mut redis), Some(pg)) = (RedisServer::start(), PostgresServer::start()) else {
        return;
    };
    let database_url = pg.create_database();
    let idp = idp().await;
    let layer = instance_from_env(&idp, &redis.url, &database_url);
    let app = Upstream::default().behind(&layer);
    let mut browser = Browser::new(app.clone());
    let token = assert_logged_in(&browser.login(&idp, "").await, UI);

    redis.stop();
    // A login start answers 503 naming the verifier cache, quickly.
    let started = Instant::now();
    let res = send(&app, get("/sso/key/generate", &[])).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_body(res).await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("verifier cache"), "{body}");
    assert!(
        !message.contains("127.0.0.1"),
        "no address in the body: {body}"
    );
    // Sessions keep working: the gate needs no Redis.
    assert_eq!(status_with_token(&app, &token).await, StatusCode::OK);
    // Readiness says what is down.
    let res = send(
        &app,
        get(
            "/sso/readiness",
            &[("authorization", &format!("Bearer {token}"))],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_body(res).await;
    assert_eq!(body["verifier_cache"], "unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("redis"),
        "{body}"
    );
    // A logout while Redis is down holds here at once, and reaches Redis once it is back.
    let res = send(
        &app,
        get("/sso/logout", &[("cookie", &format!("token={token}"))]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        status_with_token(&app, &token).await,
        StatusCode::UNAUTHORIZED
    );

    // Redis back: logins work again on the same layer, no restart.
    redis.restart();
    let healed = Instant::now();
    let mut browser = Browser::new(app.clone());
    loop {
        let res = browser.get("/sso/key/generate").await;
        if res.status() == StatusCode::SEE_OTHER {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(15),
            "still {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_logged_in(&browser.login(&idp, "").await, UI);
    // The logout made while Redis was down reaches a fresh instance.
    let other = instance_in_code(&idp, &redis.url, &database_url).await;
    let other = Upstream::default().behind(&other);
    let bound = Duration::from_secs(5);
    refused_within(
        &other,
        &token,
        Instant::now(),
        bound,
        "a new instance, after Redis came back",
    )
    .await;
}

#[tokio::test]
async fn postgres_down_fails_the_callback_cleanly_writes_nothing_and_heals() {
    let (Some(redis), Some(pg)) = (RedisServer::start(), PostgresServer::start()) else {
        return;
    };
    let database_url = pg.create_database();
    let idp = idp().await;
    let layer = instance_from_env(&idp, &redis.url, &database_url);
    let app = Upstream::default().behind(&layer);
    // Touch the store once so its tables exist before the outage.
    let mut browser = Browser::new(app.clone());
    idp.add_user(MockUser::new("bob").claim("preferred_username", "bob"));
    idp.select_user("bob");
    let token = assert_logged_in(&browser.login(&idp, "").await, UI);
    idp.select_user("alice");

    pg.stop();
    let mut browser = Browser::new(app.clone());
    let flow = browser.authorize(&idp, "").await;
    let started = Instant::now();
    let res = browser.callback(&flow).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        cookie_value(&res, "token").is_none(),
        "no session without a user"
    );
    let body = json_body(res).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("user store"),
        "{body}"
    );
    // Existing sessions keep working.
    assert_eq!(status_with_token(&app, &token).await, StatusCode::OK);

    pg.start_again();
    assert_eq!(
        stored_in(&database_url, "alice").await,
        None,
        "nothing half-written"
    );
    let healed = Instant::now();
    loop {
        let mut browser = Browser::new(app.clone());
        let flow = browser.authorize(&idp, "").await;
        let res = browser.callback(&flow).await;
        if res.status() == StatusCode::SEE_OTHER {
            assert_logged_in(&res, UI);
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(15),
            "still {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alice = stored_in(&database_url, "alice")
        .await
        .expect("alice stored");
    assert_eq!(alice.teams, ["eng", "ops"]);
}

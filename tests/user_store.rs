//! The user-store contract, written once and run against every backend: the in-memory store and
//! PostgreSQL (a throwaway server; each test on its own fresh database). PostgreSQL-only tests
//! at the end cover restarts, migrations and outages.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_sso::UserRole;
use tower_sso::store::{
    MemoryUserStore, PostgresOptions, PostgresUserStore, StoreError, StoreRequest, StoreResponse,
    TeamRecord, UserRecord, UserStore,
};

use common::postgres_server::PostgresServer;

// ---------------------------------------------------------------------------------------------
// Backends

/// A store under test, and whatever must outlive it.
struct Backend {
    store: UserStore,
    _server: Option<Arc<PostgresServer>>,
}

async fn memory() -> Option<Backend> {
    Some(Backend {
        store: BoxCloneSyncService::new(MemoryUserStore::new()),
        _server: None,
    })
}

async fn postgres() -> Option<Backend> {
    let server = PostgresServer::shared()?;
    let store = PostgresUserStore::connect(&server.create_database())
        .await
        .expect("connect to the test database");
    Some(Backend {
        store: BoxCloneSyncService::new(store),
        _server: Some(server),
    })
}

/// One `#[tokio::test]` per scenario for a backend.
macro_rules! contract_tests {
    ($backend:ident: $($scenario:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    if let Some(backend) = super::$backend().await {
                        super::scenarios::$scenario(backend.store.clone()).await;
                    }
                }
            )*
        }
    };
}

macro_rules! contract {
    ($($backend:ident),*) => {
        $(
            contract_tests!($backend:
                insert_and_find,
                emails_fold_ascii_case_only,
                insert_conflict_keeps_the_first,
                emails_are_unique,
                update_user,
                set_metadata_if_absent,
                teams_and_memberships,
                insert_user_with_teams,
                ping,
                concurrent_inserts_of_one_user,
                concurrent_set_metadata_agree_on_one_winner,
                concurrent_team_and_membership,
            );
        )*
    };
}

contract!(memory, postgres);

// ---------------------------------------------------------------------------------------------
// Helpers

fn user(id: &str, email: Option<&str>) -> UserRecord {
    UserRecord {
        user_id: id.into(),
        email: email.map(Into::into),
        role: UserRole::InternalUserViewer,
        teams: vec![],
        models: vec![],
        max_budget: None,
        budget_duration: None,
        metadata: serde_json::Map::new(),
    }
}

fn team(id: &str) -> TeamRecord {
    TeamRecord {
        team_id: id.into(),
        alias: None,
        models: vec![],
        max_budget: None,
        budget_duration: None,
        tpm_limit: None,
        rpm_limit: None,
    }
}

async fn call(s: &UserStore, req: StoreRequest) -> Result<StoreResponse, StoreError> {
    s.clone().oneshot(req).await
}

async fn insert(s: &UserStore, u: UserRecord) -> Result<UserRecord, StoreError> {
    match call(s, StoreRequest::InsertUser(u)).await? {
        StoreResponse::User(Some(u)) => Ok(u),
        other => panic!("InsertUser answered {other:?}"),
    }
}

async fn by_id(s: &UserStore, id: &str) -> Option<UserRecord> {
    match call(s, StoreRequest::FindUserById(id.into()))
        .await
        .unwrap()
    {
        StoreResponse::User(u) => u,
        other => panic!("FindUserById answered {other:?}"),
    }
}

async fn by_email(s: &UserStore, email: &str) -> Option<UserRecord> {
    match call(s, StoreRequest::FindUserByEmail(email.into()))
        .await
        .unwrap()
    {
        StoreResponse::User(u) => u,
        other => panic!("FindUserByEmail answered {other:?}"),
    }
}

async fn update(
    s: &UserStore,
    id: &str,
    email: Option<&str>,
    role: Option<UserRole>,
) -> Result<UserRecord, StoreError> {
    let req = StoreRequest::UpdateUser {
        user_id: id.into(),
        email: email.map(Into::into),
        role,
    };
    match call(s, req).await? {
        StoreResponse::User(Some(u)) => Ok(u),
        other => panic!("UpdateUser answered {other:?}"),
    }
}

async fn set_if_absent(
    s: &UserStore,
    id: &str,
    key: &str,
    value: serde_json::Value,
) -> Result<UserRecord, StoreError> {
    let req = StoreRequest::SetMetadataIfAbsent {
        user_id: id.into(),
        key: key.into(),
        value,
    };
    match call(s, req).await? {
        StoreResponse::User(Some(u)) => Ok(u),
        other => panic!("SetMetadataIfAbsent answered {other:?}"),
    }
}

async fn find_or_create(s: &UserStore, t: TeamRecord) -> Result<TeamRecord, StoreError> {
    match call(s, StoreRequest::FindOrCreateTeam(t)).await? {
        StoreResponse::Team(t) => Ok(t),
        other => panic!("FindOrCreateTeam answered {other:?}"),
    }
}

async fn add_member(s: &UserStore, team_id: &str, user_id: &str) -> Result<(), StoreError> {
    let req = StoreRequest::AddMember {
        team_id: team_id.into(),
        user_id: user_id.into(),
    };
    match call(s, req).await? {
        StoreResponse::Done => Ok(()),
        other => panic!("AddMember answered {other:?}"),
    }
}

async fn list_teams(s: &UserStore, user_id: &str) -> Vec<TeamRecord> {
    let req = StoreRequest::ListTeams {
        user_id: user_id.into(),
    };
    match call(s, req).await.unwrap() {
        StoreResponse::Teams(t) => t,
        other => panic!("ListTeams answered {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The contract

mod scenarios {
    use super::*;

    pub async fn insert_and_find(s: UserStore) {
        let mut new = user("u1", Some("Alice@Example.COM"));
        new.role = UserRole::ProxyAdminViewer;
        new.models = vec!["gpt-4o".into(), "claude".into()];
        new.max_budget = Some(12.5);
        new.budget_duration = Some("30d".into());
        new.metadata
            .insert("auth_provider".into(), "generic".into());
        new.metadata
            .insert("nested".into(), serde_json::json!({"a": [1, null, "x"]}));
        let stored = insert(&s, new.clone()).await.unwrap();
        let mut expected = new;
        expected.email = Some("alice@example.com".into());
        assert_eq!(stored, expected, "the e-mail is stored lower-cased");

        assert_eq!(by_id(&s, "u1").await, Some(expected.clone()));
        assert_eq!(by_id(&s, "nope").await, None);
        assert_eq!(
            by_email(&s, "ALICE@example.com").await,
            Some(expected.clone())
        );
        assert_eq!(by_email(&s, "alice@example.com").await, Some(expected));
        assert_eq!(by_email(&s, "bob@example.com").await, None);

        let no_email = insert(&s, user("u2", None)).await.unwrap();
        assert_eq!(no_email.email, None);
        insert(&s, user("u3", None))
            .await
            .expect("several users without e-mail");
    }

    pub async fn emails_fold_ascii_case_only(s: UserStore) {
        let kelvin = "admin@\u{212A}orp.example";
        let u = insert(&s, user("k", Some(kelvin))).await.unwrap();
        assert_eq!(u.email.as_deref(), Some(kelvin), "Unicode is not folded");
        assert_eq!(by_email(&s, "admin@korp.example").await, None);
        assert_eq!(by_email(&s, "ADMIN@korp.example").await, None);
        assert_eq!(
            by_email(&s, "ADMIN@\u{212A}ORP.example")
                .await
                .map(|u| u.user_id),
            Some("k".into())
        );
        // Not the same address, so not taken either.
        insert(&s, user("ascii", Some("admin@korp.example")))
            .await
            .unwrap();
        assert_eq!(
            by_email(&s, "admin@KORP.example").await.map(|u| u.user_id),
            Some("ascii".into())
        );
    }

    pub async fn insert_conflict_keeps_the_first(s: UserStore) {
        insert(&s, user("u1", None)).await.unwrap();
        let mut second = user("u1", Some("x@y.z"));
        second.role = UserRole::ProxyAdmin;
        let err = insert(&s, second).await.unwrap_err();
        assert_eq!(err, StoreError::Conflict("user u1".into()));
        let u = by_id(&s, "u1").await.unwrap();
        assert_eq!(u.email, None, "the first insert is kept");
        assert_eq!(u.role, UserRole::InternalUserViewer);
        assert_eq!(by_email(&s, "x@y.z").await, None);
    }

    pub async fn emails_are_unique(s: UserStore) {
        insert(&s, user("u1", Some("a@x.com"))).await.unwrap();
        insert(&s, user("u2", Some("b@x.com"))).await.unwrap();

        let err = insert(&s, user("u3", Some("A@X.COM"))).await.unwrap_err();
        assert_eq!(err, StoreError::EmailTaken);
        assert!(!err.to_string().contains("a@x.com"), "{err}");
        assert_eq!(by_id(&s, "u3").await, None, "nothing written");
        // An id conflict wins over an e-mail conflict.
        let err = insert(&s, user("u2", Some("a@x.com"))).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

        let err = update(&s, "u2", Some("A@x.com"), Some(UserRole::ProxyAdmin))
            .await
            .unwrap_err();
        assert_eq!(err, StoreError::EmailTaken);
        let u2 = by_id(&s, "u2").await.unwrap();
        assert_eq!(u2.email.as_deref(), Some("b@x.com"), "nothing changed");
        assert_eq!(u2.role, UserRole::InternalUserViewer, "nothing changed");

        let u1 = update(&s, "u1", Some("A@X.com"), None).await.unwrap();
        assert_eq!(
            u1.email.as_deref(),
            Some("a@x.com"),
            "its own e-mail is fine"
        );
        let u2 = update(&s, "u2", Some("C@x.com"), None).await.unwrap();
        assert_eq!(u2.email.as_deref(), Some("c@x.com"));
        // The released address is free again.
        insert(&s, user("u3", Some("b@x.com"))).await.unwrap();
    }

    pub async fn update_user(s: UserStore) {
        insert(&s, user("u1", Some("a@x.com"))).await.unwrap();
        let u = update(&s, "u1", None, Some(UserRole::ProxyAdmin))
            .await
            .unwrap();
        assert_eq!(u.role, UserRole::ProxyAdmin);
        assert_eq!(
            u.email.as_deref(),
            Some("a@x.com"),
            "None leaves the e-mail"
        );

        let u = update(&s, "u1", Some("B@X.com"), None).await.unwrap();
        assert_eq!(u.email.as_deref(), Some("b@x.com"));
        assert_eq!(u.role, UserRole::ProxyAdmin, "None leaves the role");
        assert_eq!(by_id(&s, "u1").await, Some(u.clone()));
        assert_eq!(by_email(&s, "b@x.com").await, Some(u.clone()));
        assert_eq!(by_email(&s, "a@x.com").await, None);

        let same = update(&s, "u1", None, None).await.unwrap();
        assert_eq!(same, u);

        let err = update(&s, "nope", None, None).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = update(&s, "nope", Some("b@x.com"), None).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    pub async fn set_metadata_if_absent(s: UserStore) {
        let mut new = user("u1", None);
        new.metadata.insert("auth_provider".into(), "okta".into());
        insert(&s, new).await.unwrap();
        for (value, expected) in [
            (serde_json::Value::Null, serde_json::Value::Null),
            ("a".into(), "a".into()),
            ("b".into(), "a".into()),
            (serde_json::Value::Null, "a".into()),
        ] {
            let u = set_if_absent(&s, "u1", "sso_subject", value).await.unwrap();
            assert_eq!(u.metadata["sso_subject"], expected);
            assert_eq!(u.metadata["auth_provider"], "okta", "other keys kept");
        }
        let u = by_id(&s, "u1").await.unwrap();
        assert_eq!(u.metadata["sso_subject"], "a");
        let u = set_if_absent(&s, "u1", "other", serde_json::json!({"x": 1}))
            .await
            .unwrap();
        assert_eq!(u.metadata["other"], serde_json::json!({"x": 1}));
        assert_eq!(u.metadata["sso_subject"], "a");

        let err = set_if_absent(&s, "nope", "k", "v".into())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }

    pub async fn teams_and_memberships(s: UserStore) {
        let mut t1 = team("t1");
        t1.alias = Some("Team one".into());
        t1.models = vec!["m".into()];
        t1.max_budget = Some(10.0);
        t1.budget_duration = Some("1d".into());
        // Rate limits (DEFAULT_TEAM_PARAMS `tpm_limit` / `rpm_limit`), the largest too.
        t1.tpm_limit = Some(u64::try_from(i64::MAX).unwrap());
        t1.rpm_limit = Some(10);
        assert_eq!(find_or_create(&s, t1.clone()).await.unwrap(), t1);
        let mut other = team("t1");
        other.alias = Some("other".into());
        assert_eq!(
            find_or_create(&s, other).await.unwrap(),
            t1,
            "an existing team is kept"
        );
        find_or_create(&s, team("t2")).await.unwrap();
        find_or_create(&s, team("t3")).await.unwrap();

        insert(&s, user("u1", None)).await.unwrap();
        add_member(&s, "t3", "u1").await.unwrap();
        add_member(&s, "t1", "u1").await.unwrap();
        add_member(&s, "t2", "u1").await.unwrap();
        add_member(&s, "t1", "u1").await.expect("idempotent");
        assert_eq!(
            list_teams(&s, "u1").await,
            vec![team("t3"), t1.clone(), team("t2")],
            "in the order they were added"
        );
        assert_eq!(by_id(&s, "u1").await.unwrap().teams, ["t3", "t1", "t2"]);
        assert_eq!(list_teams(&s, "nope").await, vec![]);
        insert(&s, user("u2", None)).await.unwrap();
        assert_eq!(list_teams(&s, "u2").await, vec![]);

        let err = add_member(&s, "missing", "u1").await.unwrap_err();
        assert_eq!(err, StoreError::NotFound("team missing".into()));
        let err = add_member(&s, "t1", "missing").await.unwrap_err();
        assert_eq!(err, StoreError::NotFound("user missing".into()));
        let err = add_member(&s, "missing", "missing").await.unwrap_err();
        assert_eq!(err, StoreError::NotFound("team missing".into()));
        assert_eq!(list_teams(&s, "u1").await.len(), 3);
    }

    pub async fn insert_user_with_teams(s: UserStore) {
        find_or_create(&s, team("t1")).await.unwrap();
        find_or_create(&s, team("t2")).await.unwrap();
        let mut new = user("u1", Some("u1@x.com"));
        new.teams = vec!["t2".into(), "t1".into(), "t2".into()];
        let u = insert(&s, new).await.unwrap();
        assert_eq!(u.teams, ["t2", "t1"], "in order, duplicates dropped");
        assert_eq!(by_id(&s, "u1").await.unwrap().teams, ["t2", "t1"]);
        assert_eq!(list_teams(&s, "u1").await, vec![team("t2"), team("t1")]);
        add_member(&s, "t1", "u1").await.expect("already a member");

        let mut bad = user("u2", Some("u2@x.com"));
        bad.teams = vec!["t1".into(), "missing".into()];
        let err = insert(&s, bad).await.unwrap_err();
        assert_eq!(err, StoreError::NotFound("team missing".into()));
        assert_eq!(by_id(&s, "u2").await, None, "no user written");
        assert_eq!(by_email(&s, "u2@x.com").await, None);
        assert_eq!(list_teams(&s, "u2").await, vec![], "no membership written");
        // Nothing left behind: the same user can be inserted afterwards.
        insert(&s, user("u2", Some("u2@x.com"))).await.unwrap();
    }

    pub async fn ping(s: UserStore) {
        assert_eq!(call(&s, StoreRequest::Ping).await, Ok(StoreResponse::Done));
    }

    const N: usize = 16;

    pub async fn concurrent_inserts_of_one_user(s: UserStore) {
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let s = s.clone();
                let mut u = user("racer", Some("Racer@X.com"));
                u.role = if i == 0 {
                    UserRole::ProxyAdmin
                } else {
                    UserRole::InternalUser
                };
                u.models = vec![format!("m{i}")];
                tokio::spawn(async move { insert(&s, u).await })
            })
            .collect();
        let mut ok = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(u) => ok.push(u),
                Err(StoreError::Conflict(what)) => assert_eq!(what, "user racer"),
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(ok.len(), 1, "exactly one insert wins");
        assert_eq!(by_id(&s, "racer").await.as_ref(), Some(&ok[0]));
        assert_eq!(
            by_email(&s, "racer@x.com").await.map(|u| u.user_id),
            Some("racer".into())
        );
    }

    pub async fn concurrent_set_metadata_agree_on_one_winner(s: UserStore) {
        insert(&s, user("u1", None)).await.unwrap();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    set_if_absent(&s, "u1", "sso_subject", format!("p|{i}").into()).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap().metadata["sso_subject"].clone());
        }
        let winner = by_id(&s, "u1").await.unwrap().metadata["sso_subject"].clone();
        assert!(winner.is_string(), "{winner}");
        assert!(
            answers.iter().all(|a| *a == winner),
            "every caller sees the winner {winner}: {answers:?}"
        );
    }

    pub async fn concurrent_team_and_membership(s: UserStore) {
        insert(&s, user("u1", None)).await.unwrap();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut t = team("shared");
                    t.alias = Some(format!("creator {i}"));
                    let t = find_or_create(&s, t).await?;
                    add_member(&s, "shared", "u1").await?;
                    Ok::<_, StoreError>(t)
                })
            })
            .collect();
        let mut teams = Vec::new();
        for t in tasks {
            teams.push(t.await.unwrap().expect("no error"));
        }
        assert!(teams.iter().all(|t| *t == teams[0]), "one team: {teams:?}");
        assert_eq!(list_teams(&s, "u1").await, vec![teams[0].clone()]);
        assert_eq!(by_id(&s, "u1").await.unwrap().teams, ["shared"]);
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only

/// The store's schema versions (0001 tables, 0002 team rate limits): each recorded once.
const MIGRATIONS: i64 = 2;

/// A PostgreSQL server of its own (for tests that stop it) and a fresh database on it.
fn own_server() -> Option<(PostgresServer, String)> {
    let server = PostgresServer::start()?;
    let url = server.create_database();
    Some((server, url))
}

async fn count(url: &str, sql: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

/// Runs `sql` (several statements) on `url`.
async fn execute(url: &str, sql: &str) {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute(sql).await.unwrap();
}

#[tokio::test]
async fn postgres_version_1_database_is_upgraded_and_keeps_its_teams() {
    let Some(server) = PostgresServer::shared() else {
        return;
    };
    let url = server.create_database();
    // A database as version 1 left it, with a team.
    execute(
        &url,
        include_str!("../src/store/postgres/migrations/0001_create_tables.sql"),
    )
    .await;
    execute(
        &url,
        "CREATE TABLE tower_sso_migrations (version integer PRIMARY KEY, \
         description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO tower_sso_migrations (version, description) VALUES (1, 'v1'); \
         INSERT INTO tower_sso_teams (team_id, alias) VALUES ('old', 'Old team');",
    )
    .await;
    let s: UserStore = BoxCloneSyncService::new(PostgresUserStore::connect(&url).await.unwrap());
    assert_eq!(
        count(&url, "SELECT count(*) FROM tower_sso_migrations").await,
        MIGRATIONS
    );
    let mut old = team("old");
    old.alias = Some("Old team".into());
    assert_eq!(find_or_create(&s, team("old")).await.unwrap(), old);
    let mut new = team("new");
    new.tpm_limit = Some(1000);
    assert_eq!(find_or_create(&s, new.clone()).await.unwrap(), new);
}

#[tokio::test]
async fn postgres_data_survives_a_new_store() {
    let Some(server) = PostgresServer::shared() else {
        return;
    };
    let url = server.create_database();
    let first: UserStore =
        BoxCloneSyncService::new(PostgresUserStore::connect(&url).await.unwrap());
    find_or_create(&first, team("t1")).await.unwrap();
    let mut u = user("u1", Some("a@x.com"));
    u.teams = vec!["t1".into()];
    let stored = insert(&first, u).await.unwrap();
    set_if_absent(&first, "u1", "sso_subject", "p|1".into())
        .await
        .unwrap();
    drop(first);

    let second: UserStore =
        BoxCloneSyncService::new(PostgresUserStore::connect(&url).await.unwrap());
    let again = by_id(&second, "u1").await.unwrap();
    assert_eq!(again.teams, stored.teams);
    assert_eq!(again.email, stored.email);
    assert_eq!(again.metadata["sso_subject"], "p|1");
    assert_eq!(list_teams(&second, "u1").await, vec![team("t1")]);
    assert_eq!(
        count(&url, "SELECT count(*) FROM tower_sso_migrations").await,
        MIGRATIONS,
        "migrations recorded once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_migrations() {
    let Some(server) = PostgresServer::shared() else {
        return;
    };
    let url = server.create_database();
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresUserStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every instance starts"));
    }
    assert_eq!(
        count(&url, "SELECT count(*) FROM tower_sso_migrations").await,
        MIGRATIONS
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'tower\\_sso\\_%'"
        )
        .await,
        4,
        "users, teams, memberships, migrations"
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'"
        )
        .await,
        0,
        "sqlx's own migration table is left to the application"
    );
    for s in stores {
        let s: UserStore = BoxCloneSyncService::new(s);
        assert_eq!(call(&s, StoreRequest::Ping).await, Ok(StoreResponse::Done));
    }
}

fn quick_timeouts() -> PostgresOptions {
    PostgresOptions::new().acquire_timeout(Duration::from_millis(500))
}

/// Asserts that `req` fails with a `Backend` error within about the acquire timeout.
async fn assert_unavailable(s: &UserStore, req: StoreRequest) {
    let started = Instant::now();
    let err = call(s, req.clone()).await.unwrap_err();
    let took = started.elapsed();
    let StoreError::Backend(msg) = &err else {
        panic!("{req:?}: {err:?}")
    };
    assert!(msg.starts_with("postgres: "), "{msg}");
    assert!(
        !msg.contains("127.0.0.1") && !msg.contains("postgres://"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(2), "{req:?} took {took:?}");
}

#[tokio::test]
async fn postgres_outage_fails_fast_and_the_same_store_recovers() {
    let Some((server, url)) = own_server() else {
        return;
    };
    let store: UserStore = BoxCloneSyncService::new(
        PostgresUserStore::connect_with(&url, quick_timeouts())
            .await
            .unwrap(),
    );
    find_or_create(&store, team("t1")).await.unwrap();
    insert(&store, user("before", Some("before@x.com")))
        .await
        .unwrap();

    server.stop();
    let mut during = user("during", Some("during@x.com"));
    during.teams = vec!["t1".into()];
    assert_unavailable(&store, StoreRequest::InsertUser(during.clone())).await;
    assert_unavailable(&store, StoreRequest::FindUserById("before".into())).await;
    assert_unavailable(&store, StoreRequest::FindOrCreateTeam(team("t2"))).await;
    assert_unavailable(&store, StoreRequest::Ping).await;

    server.start_again();
    // The same store object answers again (its pool reconnects).
    let before = by_id(&store, "before").await.expect("data kept");
    assert_eq!(before.email.as_deref(), Some("before@x.com"));
    assert_eq!(by_id(&store, "during").await, None, "nothing half-written");
    assert_eq!(list_teams(&store, "during").await, vec![]);
    let u = insert(&store, during).await.unwrap();
    assert_eq!(u.teams, ["t1"]);
}

#[tokio::test]
async fn postgres_lazy_store_starts_while_the_server_is_down() {
    let Some((server, url)) = own_server() else {
        return;
    };
    server.stop();
    // Synchronous, and fine without a server.
    let lazy = PostgresUserStore::connect_lazy_with(&url, quick_timeouts()).unwrap();
    let store: UserStore = BoxCloneSyncService::new(lazy.clone());
    assert_unavailable(&store, StoreRequest::Ping).await;
    assert_unavailable(&store, StoreRequest::InsertUser(user("u1", None))).await;

    server.start_again();
    // The migrations run before the first request served, then the request.
    insert(&store, user("u1", Some("a@x.com"))).await.unwrap();
    assert_eq!(by_email(&store, "A@x.com").await.unwrap().user_id, "u1");
    assert_eq!(
        count(&url, "SELECT count(*) FROM tower_sso_migrations").await,
        MIGRATIONS
    );
    let debug = format!("{lazy:?}");
    assert!(!debug.contains("postgres://"), "{debug}");
}

#[tokio::test]
async fn postgres_frozen_server_fails_within_the_request_timeout() {
    let Some((server, url)) = own_server() else {
        return;
    };
    let options = quick_timeouts().request_timeout(Duration::from_millis(800));
    let store: UserStore = BoxCloneSyncService::new(
        PostgresUserStore::connect_with(&url, options)
            .await
            .unwrap(),
    );
    find_or_create(&store, team("t1")).await.unwrap();

    // Connections the pool holds now hang without an answer: only our own bound ends the wait.
    server.pause();
    let mut frozen = user("frozen", Some("frozen@x.com"));
    frozen.teams = vec!["t1".into()];
    assert_unavailable(&store, StoreRequest::InsertUser(frozen.clone())).await;
    assert_unavailable(&store, StoreRequest::FindUserById("frozen".into())).await;
    server.resume();

    // Thawed: the cut-short insert left nothing behind, and the store works again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&store, StoreRequest::Ping).await.is_err() {
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(by_id(&store, "frozen").await, None, "nothing half-written");
    assert_eq!(insert(&store, frozen).await.unwrap().teams, ["t1"]);
}

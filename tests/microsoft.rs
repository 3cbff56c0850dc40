//! Microsoft Entra ID logins over loopback against `MockIdp`'s Entra stand-in (signed id_tokens
//! with `tid`/`oid`, JWKS, Graph `/me`, `/me/memberOf` with next links, `appRoleAssignedTo`):
//! LiteLLM's vectors (attribute mapping, `mail` fallback, empty profile, Graph paging and its cap,
//! service-principal teams, app roles), role mappings and the restricted group over Graph groups,
//! the Graph failure policy, and the multi-tenant id_token checks.

mod common;

use std::collections::BTreeMap;

use common::log_capture::{self, Capture};
use common::*;
use http::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_sso::claims::{ClaimMapping, RoleMappings};
use tower_sso::policy::{AccessPolicy, UiAccessMode};
use tower_sso::provider::Provider;
use tower_sso::store::{MemoryUserStore, NewTeamDefaults, StoreRequest, StoreResponse, TeamRecord};
use tower_sso::testing::{Misbehaviour, MockIdp, MockUser};
use tower_sso::{SsoLayer, SsoLayerBuilder, UserRole};

const UI: &str = "/ui/?login=success";
const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const OTHER_TENANT: &str = "99999999-8888-7777-6666-555555555555";
const SP: &str = "0b7f7c1e-1c7e-4a4f-9d0a-1f2e3d4c5b6a";

// ---------------------------------------------------------------------------------------------
// Set-up

/// Everything logged in this test binary, from `tracing` at WARN.
fn capture() -> Capture {
    log_capture::capture(tracing::Level::WARN)
}

/// Jane, of tenant [`TENANT`]: Graph-style profile claims, object id `obj-jane`.
fn jane() -> MockUser {
    MockUser::new("aad-jane")
        .claim("oid", "obj-jane")
        .claim("userPrincipalName", "Jane.Doe@Contoso.example")
        .claim("displayName", "Jane Doe")
        .claim("givenName", "Jane")
        .claim("surname", "Doe")
}

/// The Entra stand-in for [`TENANT`] with `user` as the one user.
async fn entra(user: MockUser) -> MockIdp {
    MockIdp::builder()
        .entra(TENANT)
        .user(user)
        .start()
        .await
        .expect("MockIdp starts")
}

/// A group directory object.
fn group(id: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.group", "id": id, "displayName": format!("Group {id}")})
}

/// Microsoft for `tenant` with every endpoint (keys and Graph included) at the stand-in.
fn microsoft(idp: &MockIdp, tenant: &str) -> Provider {
    Provider::microsoft(idp.client_id(), idp.client_secret(), Some(tenant))
        .authorization_endpoint(format!("{}/authorize", idp.issuer()))
        .token_endpoint(format!("{}/token", idp.issuer()))
        .userinfo_endpoint(format!("{}/me", idp.graph_base_url()))
        .jwks_uri(format!("{}/jwks", idp.issuer()))
        .graph_base_url(idp.graph_base_url())
}

/// The layer `SsoLayer::from_env()` would build from the stand-in's variables plus `extra`.
fn from_env(idp: &MockIdp, extra: &[(&str, &str)], store: &MemoryUserStore) -> SsoLayer {
    let mut vars: BTreeMap<String, String> = idp.microsoft_env_vars().into_iter().collect();
    vars.insert("PROXY_BASE_URL".into(), BASE_URL.into());
    vars.insert("LITELLM_MASTER_KEY".into(), SECRET.into());
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    SsoLayerBuilder::from_env_vars(move |k| vars.get(k).cloned())
        .user_store(store.clone())
        .build()
        .expect("valid configuration")
}

fn layer(b: SsoLayerBuilder) -> SsoLayer {
    b.build().expect("valid configuration")
}

/// The team `id` as stored (`None` when it does not exist; looking leaves nothing behind only
/// for an existing team, so look only where the team is expected).
async fn stored_team(store: &MemoryUserStore, id: &str) -> TeamRecord {
    let probe = TeamRecord {
        team_id: id.to_owned(),
        alias: Some("probe: the team did not exist".into()),
        models: vec![],
        max_budget: None,
        budget_duration: None,
        tpm_limit: None,
        rpm_limit: None,
    };
    match store
        .clone()
        .oneshot(StoreRequest::FindOrCreateTeam(probe))
        .await
        .expect("store answers")
    {
        StoreResponse::Team(t) => t,
        other => panic!("unexpected store answer {other:?}"),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Profile (upstream's `openid_from_response` vectors)

#[tokio::test]
async fn graph_profile_maps_attributes_from_env() {
    let idp = entra(jane()).await;
    let store = MemoryUserStore::new();
    let layer = from_env(&idp, &[], &store);
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    let scope = flow.authorize_param("scope").unwrap_or_default();
    assert!(
        scope.split(' ').any(|s| s == "profile"),
        "the id_token must carry `oid`: {scope}"
    );
    assert_logged_in(&b.callback(&flow).await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "obj-jane");
    assert_eq!(id["email"], "jane.doe@contoso.example");
    assert_eq!(id["display_name"], "Jane Doe");
    assert_eq!(id["provider"], "microsoft");
    // The real path: keys fetched from the configured JWKS, the profile from Graph `/me`.
    assert_eq!(idp.count("/jwks"), 1);
    assert_eq!(idp.count("/graph/v1.0/me"), 1);
    assert_eq!(idp.count("/graph/v1.0/me/memberOf"), 1);
    assert_eq!(idp.count("/userinfo"), 0);
}

#[tokio::test]
async fn custom_attributes_and_mail_fallback() {
    let user = MockUser::new("aad-x")
        .claim("oid", "msft123")
        .claim("mail", "Microsoft_User@Example.com")
        .claim("displayName", "Microsoft User")
        .claim("custom_first_name", "Micro");
    let idp = entra(user).await;
    let store = MemoryUserStore::new();
    let layer = from_env(
        &idp,
        &[("MICROSOFT_USER_FIRST_NAME_ATTRIBUTE", "custom_first_name")],
        &store,
    );
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "msft123");
    assert_eq!(id["email"], "microsoft_user@example.com", "`mail` fallback");
    let stored = stored_user(&store, "msft123").await.expect("stored");
    assert_eq!(stored.email.as_deref(), Some("microsoft_user@example.com"));
}

#[tokio::test]
async fn empty_graph_profile_leaves_only_the_object_id() {
    // (The stand-in puts a user's claims in the id_token too: this user has none but `oid`.)
    let idp = entra(MockUser::new("aad-jane").claim("oid", "obj-jane")).await;
    idp.set_misbehaviour(Misbehaviour::UserinfoEmpty);
    let store = MemoryUserStore::new();
    let layer = from_env(&idp, &[], &store);
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "obj-jane");
    assert_eq!(id["provider"], "microsoft");
    assert!(id["email"].is_null(), "{id}");
    assert!(id["display_name"].is_null(), "{id}");
    assert_eq!(strings(&id["team_ids"]), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Graph groups

#[tokio::test]
async fn member_of_pages_are_followed_and_become_teams() {
    let idp = entra(jane()).await;
    idp.set_graph_page_size(2);
    idp.set_member_of(
        "aad-jane",
        vec![
            group("g1"),
            json!({"@odata.type": "#microsoft.graph.directoryRole", "displayName": "no id"}),
            group("g2"),
            json!({"id": null}),
            group("g3"),
        ],
    );
    let store = MemoryUserStore::new();
    let layer = from_env(&idp, &[], &store);
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/graph/v1.0/me/memberOf"), 3, "three pages");
    let id = b.whoami().await;
    assert_eq!(strings(&id["team_ids"]), ["g1", "g2", "g3"]);
    let stored = stored_user(&store, "obj-jane").await.expect("stored");
    assert_eq!(stored.teams, ["g1", "g2", "g3"]);
}

#[tokio::test]
async fn member_of_stops_at_200_pages_with_a_warning() {
    let logs = capture();
    let idp = entra(jane()).await;
    idp.set_graph_page_size(1);
    idp.set_member_of(
        "aad-jane",
        (0..205).map(|i| group(&format!("g{i}"))).collect(),
    );
    let store = MemoryUserStore::new();
    let layer = from_env(&idp, &[], &store);
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(idp.count("/graph/v1.0/me/memberOf"), 200);
    let stored = stored_user(&store, "obj-jane").await.expect("stored");
    assert_eq!(stored.teams.len(), 200);
    assert_eq!(stored.teams.last().map(String::as_str), Some("g199"));
    let text = logs.text();
    assert!(
        text.contains("more pages than are read"),
        "no warning at the cap:\n{text}"
    );
}

#[tokio::test]
async fn service_principal_filters_groups_and_creates_named_teams_with_defaults() {
    let idp = entra(jane()).await;
    idp.set_graph_page_size(1);
    idp.set_member_of("aad-jane", vec![group("g1"), group("g2"), group("g4")]);
    idp.set_app_role_assigned_to(
        SP,
        vec![
            json!({"principalType": "Group", "principalId": "g1", "principalDisplayName": "Team One"}),
            json!({"principalType": "User", "principalId": "g2", "principalDisplayName": "a user"}),
            json!({"principalType": "Group", "principalId": "g3", "principalDisplayName": "Team Three"}),
            json!({"principalType": "Group", "principalId": null}),
        ],
    );
    let store = MemoryUserStore::new();
    let layer = from_env(
        &idp,
        &[
            ("MICROSOFT_SERVICE_PRINCIPAL_ID", SP),
            (
                "DEFAULT_TEAM_PARAMS",
                r#"{"max_budget": 10, "budget_duration": "1d", "models": ["special-gpt-5"], "tpm_limit": 1000, "rpm_limit": 10}"#,
            ),
        ],
        &store,
    );
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(
        idp.count(&format!(
            "/graph/v1.0/servicePrincipals/{SP}/appRoleAssignedTo"
        )),
        4,
        "paged like memberOf"
    );
    // Only the user's groups assigned to the enterprise application count.
    assert_eq!(strings(&b.whoami().await["team_ids"]), ["g1"]);
    // Every assigned group is a team, named after the group, with the default parameters.
    for (id, alias) in [("g1", "Team One"), ("g3", "Team Three")] {
        let t = stored_team(&store, id).await;
        assert_eq!(t.alias.as_deref(), Some(alias));
        assert_eq!(t.max_budget, Some(10.0));
        assert_eq!(t.budget_duration.as_deref(), Some("1d"));
        assert_eq!(t.models, ["special-gpt-5"]);
        assert_eq!((t.tpm_limit, t.rpm_limit), (Some(1000), Some(10)));
    }
    assert_eq!(
        stored_user(&store, "obj-jane").await.expect("stored").teams,
        ["g1"]
    );
}

#[tokio::test]
async fn service_principal_teams_without_default_team_params() {
    let idp = entra(jane()).await;
    idp.set_member_of("aad-jane", vec![group("g1")]);
    idp.set_app_role_assigned_to(
        SP,
        vec![json!({"principalType": "Group", "principalId": "g1", "principalDisplayName": "Test Team"})],
    );
    let store = MemoryUserStore::new();
    let layer = from_env(&idp, &[("MICROSOFT_SERVICE_PRINCIPAL_ID", SP)], &store);
    assert_logged_in(&Browser::for_layer(&layer).login(&idp, "").await, UI);
    let t = stored_team(&store, "g1").await;
    assert_eq!(t.alias.as_deref(), Some("Test Team"));
    assert_eq!((t.max_budget, t.budget_duration.as_deref()), (None, None));
    assert!(t.models.is_empty());
    assert_eq!((t.tpm_limit, t.rpm_limit), (None, None));
}

#[tokio::test]
async fn service_principal_without_groups_leaves_no_team_ids() {
    let idp = entra(jane()).await;
    idp.set_member_of("aad-jane", vec![group("g1")]);
    idp.set_app_role_assigned_to(SP, vec![]);
    let store = MemoryUserStore::new();
    let layer = from_env(&idp, &[("MICROSOFT_SERVICE_PRINCIPAL_ID", SP)], &store);
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(strings(&b.whoami().await["team_ids"]), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Roles

#[tokio::test]
async fn app_roles_from_the_id_token_app_roles_over_roles() {
    for (claims, role) in [
        (
            json!({"roles": ["Reader", "proxy_admin_viewer", "proxy_admin"]}),
            "proxy_admin_viewer",
        ),
        (
            json!({"app_roles": ["internal_user"], "roles": ["proxy_admin"]}),
            "internal_user",
        ),
        (json!({"app_roles": "proxy_admin"}), "internal_user_viewer"),
        (json!({"roles": ["proxy_admin", 7]}), "internal_user_viewer"),
        (json!({"role": "proxy_admin"}), "internal_user_viewer"),
    ] {
        let mut user = jane();
        for (k, v) in claims.as_object().unwrap() {
            user = user.claim(k.clone(), v.clone());
        }
        let idp = entra(user).await;
        let layer = from_env(&idp, &[], &MemoryUserStore::new());
        let mut b = Browser::for_layer(&layer);
        assert_logged_in(&b.login(&idp, "").await, UI);
        assert_eq!(b.whoami().await["role"], role, "{claims}");
    }
}

#[tokio::test]
async fn role_mappings_apply_to_graph_groups() {
    let idp = entra(jane().claim("roles", json!(["internal_user"]))).await;
    idp.set_member_of("aad-jane", vec![group("g-users"), group("g-admins")]);
    let vars = [
        (
            "GENERIC_ROLE_MAPPINGS_ROLES",
            "{'proxy_admin': ['g-admins'], 'internal_user': ['g-users']}",
        ),
        ("GENERIC_ROLE_MAPPINGS_GROUP_CLAIM", "groups"),
        ("GENERIC_ROLE_MAPPINGS_DEFAULT_ROLE", "internal_user_viewer"),
    ];
    let layer = from_env(&idp, &vars, &MemoryUserStore::new());
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "proxy_admin");

    // No mapped group: the mappings' default, not the app role.
    idp.set_member_of("aad-jane", vec![group("g-other")]);
    let mut b = Browser::for_layer(&from_env(&idp, &vars, &MemoryUserStore::new()));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["role"], "internal_user_viewer");
}

#[tokio::test]
async fn restricted_sso_group_is_checked_against_graph_groups() {
    let idp = entra(jane()).await;
    idp.set_member_of("aad-jane", vec![group("g-admins")]);
    let vars = [(
        "UI_ACCESS_MODE",
        r#"{"type": "restricted_sso_group", "restricted_sso_group": "g-admins"}"#,
    )];
    let layer = from_env(&idp, &vars, &MemoryUserStore::new());
    assert_logged_in(&Browser::for_layer(&layer).login(&idp, "").await, UI);

    idp.set_member_of("aad-jane", vec![group("g-users")]);
    let store = MemoryUserStore::new();
    let layer = from_env(&idp, &vars, &store);
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
    assert!(msg.contains("restricted SSO group"), "{msg}");
    assert!(stored_user(&store, "obj-jane").await.is_none());
}

// ---------------------------------------------------------------------------------------------
// Graph failures

#[tokio::test]
async fn graph_failure_refuses_the_login_when_a_rule_depends_on_groups() {
    let idp = entra(jane()).await;
    idp.set_member_of("aad-jane", vec![group("g-admins")]);
    idp.set_misbehaviour(Misbehaviour::GraphError(503));
    let rules: [&[(&str, &str)]; 3] = [
        &[
            (
                "GENERIC_ROLE_MAPPINGS_ROLES",
                "{'proxy_admin': ['g-admins']}",
            ),
            ("GENERIC_ROLE_MAPPINGS_GROUP_CLAIM", "groups"),
        ],
        &[(
            "UI_ACCESS_MODE",
            r#"{"type": "restricted_sso_group", "restricted_sso_group": "g-admins"}"#,
        )],
        &[("MICROSOFT_SERVICE_PRINCIPAL_ID", SP)],
    ];
    for vars in rules {
        let store = MemoryUserStore::new();
        let layer = from_env(&idp, vars, &store);
        let res = Browser::for_layer(&layer).login(&idp, "").await;
        let msg = assert_callback_refused(res, StatusCode::BAD_GATEWAY).await;
        assert!(msg.contains("Microsoft Graph"), "{msg}");
        assert!(
            !msg.contains("told to fail"),
            "Graph's answer is not quoted: {msg}"
        );
        assert!(stored_user(&store, "obj-jane").await.is_none(), "{vars:?}");
    }
}

#[tokio::test]
async fn graph_failure_goes_on_without_groups_when_nothing_depends_on_them() {
    let idp = entra(jane()).await;
    idp.set_member_of("aad-jane", vec![group("g1")]);
    idp.set_misbehaviour(Misbehaviour::GraphError(500));
    let layer = from_env(&idp, &[], &MemoryUserStore::new());
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["user_id"], "obj-jane");
    assert_eq!(strings(&id["team_ids"]), Vec::<String>::new());
}

#[tokio::test]
async fn graph_fail_open_keeps_upstreams_continue_without_groups() {
    let idp = entra(jane()).await;
    idp.set_member_of("aad-jane", vec![group("g-admins")]);
    idp.set_misbehaviour(Misbehaviour::GraphError(500));
    let layer = from_env(
        &idp,
        &[
            ("MICROSOFT_GRAPH_FAIL_OPEN", "true"),
            (
                "GENERIC_ROLE_MAPPINGS_ROLES",
                "{'proxy_admin': ['g-admins']}",
            ),
            ("GENERIC_ROLE_MAPPINGS_GROUP_CLAIM", "groups"),
            ("MICROSOFT_SERVICE_PRINCIPAL_ID", SP),
        ],
        &MemoryUserStore::new(),
    );
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(
        id["role"], "internal_user_viewer",
        "no groups, no mapped role"
    );
    assert_eq!(strings(&id["team_ids"]), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Tenants

#[tokio::test]
async fn common_tenant_checks_each_tokens_own_issuer_and_signature() {
    let idp = entra(jane().claim("tid", OTHER_TENANT)).await;
    // Any tenant through `common`: the token's issuer is its own tenant's.
    let mut b = Browser::for_layer(&layer(builder().provider(microsoft(&idp, "common"))));
    assert_logged_in(&b.login(&idp, "").await, UI);
    assert_eq!(b.whoami().await["user_id"], "obj-jane");
    // The keys are checked with `common` too.
    idp.set_misbehaviour(Misbehaviour::BadSignature);
    let res = Browser::for_layer(&layer(builder().provider(microsoft(&idp, "common"))))
        .login(&idp, "")
        .await;
    assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn another_tenant_is_refused_by_allowed_tenants() {
    let idp = entra(jane().claim("tid", OTHER_TENANT)).await;
    let store = MemoryUserStore::new();
    let layer = from_env(
        &idp,
        &[
            ("MICROSOFT_TENANT", "organizations"),
            ("MICROSOFT_ALLOWED_TENANTS", TENANT),
        ],
        &store,
    );
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
    assert!(msg.contains("tenant"), "{msg}");
    assert_eq!(idp.count("/graph/v1.0/me/memberOf"), 0, "no Graph call");
    assert!(stored_user(&store, "obj-jane").await.is_none());

    // The allowed tenant's users log in.
    idp.add_user(jane());
    let layer = from_env(
        &idp,
        &[
            ("MICROSOFT_TENANT", "organizations"),
            (
                "MICROSOFT_ALLOWED_TENANTS",
                &format!("{OTHER_TENANT},{TENANT}"),
            ),
        ],
        &store,
    );
    assert_logged_in(&Browser::for_layer(&layer).login(&idp, "").await, UI);
}

#[tokio::test]
async fn a_forged_issuer_and_tenant_pair_is_refused() {
    let idp = entra(jane()).await;
    // Signed by the (shared) keys, `iss` of one tenant, `tid` of another.
    idp.set_misbehaviour(Misbehaviour::TenantIssuerMismatch(OTHER_TENANT.into()));
    for tenant in ["common", TENANT] {
        let res = Browser::for_layer(&layer(builder().provider(microsoft(&idp, tenant))))
            .login(&idp, "")
            .await;
        let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
        assert!(msg.contains("issuer"), "{tenant}: {msg}");
    }
}

#[tokio::test]
async fn a_pinned_tenant_refuses_other_tenants() {
    let idp = entra(jane().claim("tid", OTHER_TENANT)).await;
    let res = Browser::for_layer(&layer(builder().provider(microsoft(&idp, TENANT))))
        .login(&idp, "")
        .await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("issuer"), "{msg}");
}

#[tokio::test]
async fn a_login_without_id_token_or_oid_is_refused() {
    let idp = entra(jane()).await;
    idp.set_misbehaviour(Misbehaviour::NoIdToken);
    let res = Browser::for_layer(&layer(builder().provider(microsoft(&idp, TENANT))))
        .login(&idp, "")
        .await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("id_token"), "{msg}");
}

#[tokio::test]
async fn the_graph_profile_must_be_the_id_tokens_object() {
    let idp = entra(jane().claim("id", "obj-someone-else")).await;
    let res = Browser::for_layer(&layer(builder().provider(microsoft(&idp, TENANT))))
        .login(&idp, "")
        .await;
    let msg = assert_callback_refused(res, StatusCode::UNAUTHORIZED).await;
    assert!(msg.contains("Graph profile"), "{msg}");
}

#[tokio::test]
async fn programmatic_settings_match_the_environment() {
    // The builder API (no environment): role mappings, restricted group and service principal.
    let idp = entra(jane()).await;
    idp.set_member_of("aad-jane", vec![group("g-admins")]);
    idp.set_app_role_assigned_to(
        SP,
        vec![json!({"principalType": "Group", "principalId": "g-admins", "principalDisplayName": "Admins"})],
    );
    let store = MemoryUserStore::new();
    let claims = ClaimMapping {
        user_id: "id".into(),
        display_name: "displayName".into(),
        email: "userPrincipalName".into(),
        first_name: "givenName".into(),
        last_name: "surname".into(),
        role_mappings: Some(RoleMappings {
            group_claim: "groups".into(),
            default_role: None,
            roles: [(UserRole::ProxyAdmin, vec!["g-admins".to_owned()])].into(),
        }),
        ..ClaimMapping::default()
    };
    let provider = microsoft(&idp, "common")
        .claims(claims)
        .service_principal_id(SP)
        .allowed_tenants([TENANT]);
    let layer = layer(
        builder()
            .provider(provider)
            .user_store(store.clone())
            .new_team_defaults(NewTeamDefaults {
                rpm_limit: Some(5),
                ..NewTeamDefaults::default()
            })
            .access_policy(AccessPolicy {
                ui_access_mode: UiAccessMode::RestrictedSsoGroup {
                    group: "g-admins".into(),
                    field: None,
                },
                ..AccessPolicy::default()
            }),
    );
    let mut b = Browser::for_layer(&layer);
    assert_logged_in(&b.login(&idp, "").await, UI);
    let id = b.whoami().await;
    assert_eq!(id["role"], "proxy_admin");
    assert_eq!(strings(&id["team_ids"]), ["g-admins"]);
    let t = stored_team(&store, "g-admins").await;
    assert_eq!((t.alias.as_deref(), t.rpm_limit), (Some("Admins"), Some(5)));
}

#[tokio::test]
async fn the_debug_page_shows_graph_groups_app_roles_and_service_principal_teams() {
    use http_body_util::BodyExt;
    let idp = entra(jane().claim("app_roles", json!(["internal_user", "<b>x</b>"]))).await;
    idp.set_member_of("aad-jane", vec![group("g1"), group("g2")]);
    idp.set_app_role_assigned_to(
        SP,
        vec![json!({"principalType": "Group", "principalId": "g1", "principalDisplayName": "Team <One>"})],
    );
    let store = MemoryUserStore::new();
    let layer = from_env(
        &idp,
        &[
            ("MICROSOFT_SERVICE_PRINCIPAL_ID", SP),
            ("SSO_DEBUG_ENABLED", "true"),
        ],
        &store,
    );
    let mut b = Browser::for_layer(&layer);
    let res = b.get("/sso/debug/login").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let url = url::Url::parse(&location(&res)).unwrap();
    let back = b.authorize_at_idp(&url).await;
    let res = b.get(&relative(&back)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(cookie_value(&res, "token"), None, "no session");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let page = String::from_utf8_lossy(&body).into_owned();

    assert!(page.contains("<h2>Microsoft</h2>"), "{page}");
    for shown in [
        "&quot;graph_groups&quot;",
        "&quot;g1&quot;",
        "&quot;internal_user&quot;",
        "Team &lt;One&gt;",
    ] {
        assert!(page.contains(shown), "{shown} missing: {page}");
    }
    assert!(!page.contains("<b>x</b>"), "app roles are escaped");
    // g2 is not assigned to the service principal: it does not count.
    assert!(!page.contains("&quot;g2&quot;"), "{page}");
    // Nothing was written: no user, and no service-principal team.
    assert_eq!(stored_user(&store, "obj-jane").await, None);
    assert_eq!(store.team_count(), 0);
}

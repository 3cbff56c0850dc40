//! Google logins over loopback against `MockIdp` (discovery, signed id_tokens): the hosted
//! domain (`hd`) is sent with the login and required in the id_token, and the e-mail must be
//! verified. (`GOOGLE_HOSTED_DOMAIN` itself is read by `env`'s unit tests: the environment's
//! Google provider talks to accounts.google.com.)

mod common;

use common::*;
use http::StatusCode;
use tower_sso::provider::Provider;
use tower_sso::store::MemoryUserStore;
use tower_sso::testing::{MockIdp, MockUser};

const UI: &str = "/ui/?login=success";

fn workspace_user(sub: &str, hd: Option<&str>, verified: bool) -> MockUser {
    let mut u = MockUser::new(sub)
        .claim("email", format!("{sub}@example.com"))
        .claim("email_verified", verified)
        .claim("name", "Goo Gle");
    if let Some(hd) = hd {
        u = u.claim("hd", hd);
    }
    u
}

async fn idp(user: MockUser) -> MockIdp {
    MockIdp::builder()
        .user(user)
        .start()
        .await
        .expect("MockIdp starts")
}

/// Google at the mock provider (discovery from its issuer).
fn google(idp: &MockIdp) -> Provider {
    Provider::google(idp.client_id(), idp.client_secret()).issuer(idp.issuer())
}

#[tokio::test]
async fn hosted_domain_is_sent_and_required_in_the_id_token() {
    let provider = |idp: &MockIdp| google(idp).hosted_domain("Example.com");
    // A Workspace account of the domain.
    let ok = idp(workspace_user("ann", Some("example.com"), true)).await;
    let mut b = Browser::for_layer(&builder().provider(provider(&ok)).build().unwrap());
    let flow = b.authorize(&ok, "").await;
    assert_eq!(flow.authorize_param("hd").as_deref(), Some("example.com"));
    assert_logged_in(&b.callback(&flow).await, UI);
    assert_eq!(b.whoami().await["user_id"], "ann");

    // Another Workspace domain, or a consumer account (no `hd`): 403.
    for hd in [Some("other.example"), None] {
        let idp = idp(workspace_user("bob", hd, true)).await;
        let store = MemoryUserStore::new();
        let layer = builder()
            .provider(provider(&idp))
            .user_store(store.clone())
            .build()
            .unwrap();
        let res = Browser::for_layer(&layer).login(&idp, "").await;
        let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
        assert!(msg.contains("Workspace domain"), "{hd:?}: {msg}");
        assert!(stored_user(&store, "bob").await.is_none());
    }
}

#[tokio::test]
async fn allowed_email_domains_stand_in_for_the_hosted_domain() {
    let idp = idp(workspace_user("cat", Some("other.example"), true)).await;
    let layer = builder()
        .provider(google(&idp))
        .access_policy(tower_sso::policy::AccessPolicy {
            allowed_email_domains: vec!["example.com".into(), "example.org".into()],
            ..Default::default()
        })
        .build()
        .unwrap();
    let mut b = Browser::for_layer(&layer);
    let flow = b.authorize(&idp, "").await;
    assert_eq!(
        flow.authorize_param("hd").as_deref(),
        Some("*"),
        "several domains: any Workspace account"
    );
    let msg = assert_callback_refused(b.callback(&flow).await, StatusCode::FORBIDDEN).await;
    assert!(msg.contains("Workspace domain"), "{msg}");
}

#[tokio::test]
async fn unverified_email_is_refused() {
    let idp = idp(workspace_user("dan", None, false)).await;
    let layer = builder().provider(google(&idp)).build().unwrap();
    let res = Browser::for_layer(&layer).login(&idp, "").await;
    let msg = assert_callback_refused(res, StatusCode::FORBIDDEN).await;
    assert!(msg.contains("verified"), "{msg}");
}

#[tokio::test]
async fn without_a_hosted_domain_any_verified_google_account_logs_in() {
    let idp = idp(workspace_user("eve", None, true)).await;
    let mut b = Browser::for_layer(&builder().provider(google(&idp)).build().unwrap());
    let flow = b.authorize(&idp, "").await;
    assert_eq!(flow.authorize_param("hd"), None);
    assert_logged_in(&b.callback(&flow).await, UI);
}

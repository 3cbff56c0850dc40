//! Regression tests for the security-review findings: session cookie kept from public paths,
//! non-UTF-8 cookies of sibling apps, cross-site login starts, secrets in `Debug` and in
//! configuration errors.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::util::BoxCloneService;
use tower_sso::SsoLayer;
use tower_sso::provider::Provider;

/// A provider with explicit endpoints: a login start needs no network call.
fn offline_provider() -> Provider {
    Provider::generic("client-id", Some("client-secret".into()))
        .authorization_endpoint("https://idp.example.com/authorize")
        .token_endpoint("https://idp.example.com/token")
}

/// An inner service answering with the raw bytes of every `Cookie` header it received, one per
/// line.
fn raw_cookie_echo(layer: &SsoLayer) -> App {
    let inner = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let mut out = Vec::new();
        for v in req.headers().get_all(header::COOKIE) {
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(out))))
    });
    BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(inner),
    )
}

async fn body_bytes(res: AppResponse) -> Vec<u8> {
    use http_body_util::BodyExt;
    res.into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec()
}

fn request_with_cookie(path: &str, cookie: &[u8]) -> Request<Full<Bytes>> {
    let mut req = get(path, &[]);
    req.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_bytes(cookie).expect("obs-text is a valid header value"),
    );
    req
}

#[tokio::test]
async fn stripping_keeps_the_session_cookie_from_public_paths_too() {
    let layer = builder()
        .public_paths(["/health", "/static/*"])
        .strip_session_token(true)
        .build()
        .unwrap();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let token = token_for(&layer, alice());
    for path in ["/health", "/static/app.js"] {
        let cookie = format!("theme=dark; token={token}; lang=en");
        let v = json_body(send(&app, get(path, &[("cookie", &cookie)])).await).await;
        assert_eq!(v["cookie"], "theme=dark; lang=en", "{path}: {v}");
        // A bearer header on a public path is the client's own business (an API key, say): kept.
        let v =
            json_body(send(&app, get(path, &[("authorization", "Bearer sk-1234")])).await).await;
        assert_eq!(v["authorization"], "Bearer sk-1234", "{path}: {v}");
    }
    // Without stripping, public paths see the request as it came.
    let layer = builder().public_paths(["/health"]).build().unwrap();
    let cookie = format!("theme=dark; token={token}");
    let v = json_body(send(&up.behind(&layer), get("/health", &[("cookie", &cookie)])).await).await;
    assert_eq!(v["cookie"], cookie.as_str());
}

#[tokio::test]
async fn a_session_cookie_next_to_a_latin1_cookie_still_works() {
    let layer = builder().build().unwrap();
    let app = Upstream::default().behind(&layer);
    let token = token_for(&layer, alice());
    // A sibling app's cookie in Latin-1 ("français"): the header is not UTF-8.
    let mut cookie = b"lang=fran\xe7ais; token=".to_vec();
    cookie.extend_from_slice(token.as_bytes());
    let res = send(&app, request_with_cookie("/whoami", &cookie)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v = json_body(res).await;
    assert_eq!(v["identity"]["user_id"], "alice", "{v}");
    // Ours first, the Latin-1 one after.
    let mut cookie = format!("token={token}; lang=").into_bytes();
    cookie.extend_from_slice(b"fran\xe7ais");
    let res = send(&app, request_with_cookie("/whoami", &cookie)).await;
    assert_eq!(res.status(), StatusCode::OK);
    // A non-UTF-8 value under our own name is no session.
    let res = send(&app, request_with_cookie("/whoami", b"token=\xe7\xe7")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn stripping_removes_the_session_cookie_from_a_non_utf8_header() {
    let layer = builder()
        .public_paths(["/health"])
        .strip_session_token(true)
        .build()
        .unwrap();
    let app = raw_cookie_echo(&layer);
    let token = token_for(&layer, alice());
    let mut cookie = b"lang=fran\xe7ais; token=".to_vec();
    cookie.extend_from_slice(token.as_bytes());
    cookie.extend_from_slice(b"; x=\xff");
    for path in ["/whoami", "/health"] {
        let res = send(&app, request_with_cookie(path, &cookie)).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let seen = body_bytes(res).await;
        assert_eq!(seen, b"lang=fran\xe7ais; x=\xff\n", "{path}");
    }
    // A header holding only our cookie disappears.
    let res = send(
        &app,
        request_with_cookie("/health", format!("token={token}").as_bytes()),
    )
    .await;
    assert_eq!(body_bytes(res).await, b"");
}

#[tokio::test]
async fn a_cross_site_login_start_does_not_revoke_or_clear_the_session() {
    let layer = builder().provider(offline_provider()).build().unwrap();
    let app = Upstream::default().behind(&layer);
    let token = token_for(&layer, alice());
    let cookie = format!("token={token}");

    // A link on another site: the login may start, but the session stays.
    let res = send(
        &app,
        get(
            "/sso/key/generate",
            &[("cookie", &cookie), ("sec-fetch-site", "cross-site")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("https://idp.example.com/authorize?"));
    assert!(
        !set_cookies(&res).iter().any(|c| c.starts_with("token=")),
        "{:?}",
        set_cookies(&res)
    );
    let res = send(&app, get("/whoami", &[("cookie", &cookie)])).await;
    assert_eq!(res.status(), StatusCode::OK, "the session still works");

    // From our own site (or a browser that does not say): the old session is revoked and cleared.
    for fetch_site in [Some("same-origin"), Some("none"), None] {
        let token = token_for(&layer, alice());
        let cookie = format!("token={token}");
        let mut headers = vec![("cookie", cookie.as_str())];
        if let Some(s) = fetch_site {
            headers.push(("sec-fetch-site", s));
        }
        let res = send(&app, get("/sso/key/generate", &headers)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert!(
            set_cookies(&res)
                .iter()
                .any(|c| c.starts_with("token=;") && c.contains("Max-Age=0")),
            "{fetch_site:?}: {:?}",
            set_cookies(&res)
        );
        let res = send(&app, get("/whoami", &[("cookie", &cookie)])).await;
        assert_eq!(
            assert_401_json(res).await,
            "session revoked",
            "{fetch_site:?}"
        );
    }
}

#[test]
fn provider_debug_redacts_the_client_secret_and_token_headers() {
    let p = Provider::oidc(
        "https://idp.example.com",
        "client-id",
        "s3cr3t-client-secret",
    )
    .token_header("x-api-key", "s3cr3t-header-value");
    let text = format!("{p:?}");
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("***"), "{text}");
    assert!(
        text.contains("client-id") && text.contains("x-api-key"),
        "{text}"
    );
    let text = format!("{p:#?}");
    assert!(!text.contains("s3cr3t"), "{text}");
    // No secret: nothing to hide, and it shows.
    let p = Provider::generic("id", None);
    assert!(format!("{p:?}").contains("client_secret: None"));
}

#[test]
fn configuration_errors_never_print_a_url_password() {
    let err = SsoLayer::builder()
        .base_url("https://admin:hunter2@gateway.example.com")
        .session_secret(SECRET)
        .logout_url("ftp://admin:hunter2@logout.example.com/")
        .provider(Provider::oidc(
            "https://admin:hunter2@idp.example.com",
            "id",
            "secret",
        ))
        .provider(
            Provider::generic("id", Some("secret".into()))
                .name("second")
                .authorization_endpoint("http://admin:hunter2@idp.example.com/auth")
                .token_endpoint("https://admin:hunter2@idp example.com/token"),
        )
        .build()
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("***@"), "{text}");
    assert!(err.mentions("base_url (PROXY_BASE_URL)"), "{text}");
    assert!(err.mentions("logout_url (PROXY_LOGOUT_URL)"), "{text}");
    assert!(err.errors().len() >= 5, "{text}");
    let text = format!("{err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    // Not even a URL that does not parse.
    let err = SsoLayer::builder()
        .base_url("https://admin:hunter2@gate way.example.com")
        .session_secret(SECRET)
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

//! The forward-auth endpoint (`/sso/auth`) through the layer: what a reverse proxy (nginx
//! `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`) gets for each kind of session, where
//! its login URL returns to, and that no forwarded header can turn it into an open redirector.
//! `tests/nginx_forward_auth.rs` runs it behind a real nginx.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower_sso::ClientAddr;
use tower_sso::clock::Clock;

const LOGIN: &str = "https://gateway.example.com/sso/key/generate";
const PROXY: &str = "127.0.0.1:40000";
const ALLOWED_DOMAIN: &str = "www.whitelisteddomain.tld";
const CORPUS: &str = include_str!("data/openredirects.txt");

/// A request to `target` with `headers`, from the connection peer `peer`.
fn request(
    method: Method,
    target: &str,
    peer: &str,
    headers: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let mut req = get(target, headers);
    *req.method_mut() = method;
    let peer: SocketAddr = peer.parse().expect("peer address");
    req.extensions_mut().insert(ClientAddr(peer));
    req
}

/// The layer trusting the proxy at [`PROXY`], around an upstream that counts its calls.
fn app_with(b: tower_sso::SsoLayerBuilder) -> (tower_sso::SsoLayer, Upstream, App) {
    let layer = b
        .trusted_proxies(["127.0.0.1"])
        .build()
        .expect("valid config");
    let up = Upstream::default();
    let app = up.behind(&layer);
    (layer, up, app)
}

fn header_text<B>(res: &http::Response<B>, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
}

/// The login URL a denial names (`X-Auth-Request-Redirect`), asserting it is ours.
fn login_url<B>(res: &http::Response<B>) -> String {
    let url = header_text(res, "x-auth-request-redirect").expect("X-Auth-Request-Redirect");
    assert!(
        url == LOGIN || url.starts_with(&format!("{LOGIN}?return_to=")),
        "{url}"
    );
    url
}

/// Where a denial's login would return to: `None` for the UI path (no `return_to`).
fn return_to<B>(res: &http::Response<B>) -> Option<String> {
    url_param(&login_url(res), "return_to")
}

const IDENTITY_HEADERS: [&str; 4] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
];

/// Asserts a 200 with alice's identity headers, no body, not cacheable.
async fn assert_alice<B>(res: http::Response<B>)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(res.headers()["x-forwarded-user"], "alice");
    assert_eq!(res.headers()["x-forwarded-email"], "alice@example.com");
    assert_eq!(res.headers()["x-forwarded-groups"], "team-a,team-b");
    assert_eq!(
        res.headers()["x-forwarded-preferred-username"],
        "Alice Example"
    );
    for name in IDENTITY_HEADERS {
        assert_eq!(res.headers().get_all(name).iter().count(), 1, "{name}");
    }
    let body = res.into_body().collect().await.expect("body").to_bytes();
    assert!(body.is_empty());
}

/// Asserts a 401 JSON denial that names no identity.
async fn assert_denied<B>(res: http::Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for name in IDENTITY_HEADERS {
        assert!(res.headers().get(name).is_none(), "{name} on a denial");
    }
    login_url(&res);
    assert_401_json(res).await
}

#[tokio::test]
async fn a_valid_cookie_or_bearer_session_gets_200_with_the_identity() {
    let (layer, up, app) = app_with(builder());
    let token = token_for(&layer, alice());
    let cookie = format!("theme=dark; token={token}");
    let res = send(
        &app,
        request(Method::GET, "/sso/auth", PROXY, &[("cookie", &cookie)]),
    )
    .await;
    assert_alice(res).await;
    let bearer = format!("Bearer {token}");
    let res = send(
        &app,
        request(
            Method::GET,
            "/sso/auth",
            PROXY,
            &[("authorization", &bearer)],
        ),
    )
    .await;
    assert_alice(res).await;
    // HEAD too (the answer is all in the headers).
    let res = send(
        &app,
        request(Method::HEAD, "/sso/auth", PROXY, &[("cookie", &cookie)]),
    )
    .await;
    assert_alice(res).await;
    assert_eq!(up.calls(), 0, "the forward-auth endpoint reached the app");
}

#[tokio::test]
async fn missing_expired_revoked_and_forged_sessions_get_401_with_the_login_url() {
    let clock = Clock::manual();
    let (layer, up, app) = app_with(builder().clock(clock.clone()));
    let deny = |token: Option<String>| {
        let app = app.clone();
        async move {
            let cookie = token.map(|t| format!("token={t}"));
            let headers: Vec<(&str, &str)> =
                cookie.iter().map(|c| ("cookie", c.as_str())).collect();
            let res = send(&app, request(Method::GET, "/sso/auth", PROXY, &headers)).await;
            assert_eq!(
                header_text(&res, "x-auth-request-redirect").as_deref(),
                Some(LOGIN)
            );
            assert_denied(res).await
        }
    };
    assert!(deny(None).await.contains("no session token"));

    let good = token_for(&layer, alice());
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    let msg = deny(Some(forged.clone())).await;
    assert!(
        msg.contains("invalid session token") && !msg.contains(&forged),
        "{msg}"
    );
    let other = builder()
        .session_secret("a-completely-different-secret-value")
        .build()
        .unwrap();
    assert!(
        deny(Some(token_for(&other, alice())))
            .await
            .contains("invalid")
    );

    let revoked = token_for(&layer, alice());
    let identity = layer
        .sessions()
        .verify(&revoked)
        .expect("valid before logout");
    layer
        .sessions()
        .revoke(identity.session_id(), identity.expires_at());
    assert!(deny(Some(revoked)).await.contains("revoked"));

    clock.advance(layer.sessions().ttl().as_secs() as i64 + 1);
    assert!(deny(Some(good)).await.contains("expired"));
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn identity_headers_sent_to_it_are_never_echoed() {
    let (layer, _up, app) = app_with(builder());
    let spoofed = [
        ("x-forwarded-user", "mallory"),
        ("X_Forwarded_Email", "mallory@evil.example"),
        ("x-forwarded-groups", "admins"),
        ("x-forwarded-preferred-username", "Mallory"),
    ];
    let res = send(&app, request(Method::GET, "/sso/auth", PROXY, &spoofed)).await;
    assert_denied(res).await;

    let cookie = format!("token={}", token_for(&layer, alice()));
    let mut with_session = spoofed.to_vec();
    with_session.push(("cookie", &cookie));
    let res = send(
        &app,
        request(Method::GET, "/sso/auth", PROXY, &with_session),
    )
    .await;
    assert!(res.headers().get("x_forwarded_email").is_none());
    assert_alice(res).await;
}

#[tokio::test]
async fn the_login_returns_to_where_the_proxy_says_the_browser_was_going() {
    let (_layer, _up, app) = app_with(builder().allowed_redirect_domains([ALLOWED_DOMAIN]));
    let deny = |peer: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let app = app.clone();
        async move { return_to(&send(&app, request(Method::GET, "/sso/auth", peer, &headers)).await) }
    };
    // nginx: `X-Original-URL $scheme://$http_host$request_uri`. Our own host is not an allowed
    // domain (a relative return is what comes back to it), so the path is kept.
    let nginx = vec![(
        "x-original-url",
        "https://gateway.example.com/app/page?x=1&y=two",
    )];
    assert_eq!(
        deny(PROXY, nginx.clone()).await.as_deref(),
        Some("/app/page?x=1&y=two")
    );
    // A path alone is fine too.
    let path = vec![("x-original-url", "/reports/2026?q=a-b")];
    assert_eq!(
        deny(PROXY, path).await.as_deref(),
        Some("/reports/2026?q=a-b")
    );
    // Traefik: proto + host + uri; an allowed domain keeps the absolute URL.
    let traefik = vec![
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", ALLOWED_DOMAIN),
        ("x-forwarded-uri", "/dashboard?tab=1"),
    ];
    assert_eq!(
        deny(PROXY, traefik).await.as_deref(),
        Some("https://www.whitelisteddomain.tld/dashboard?tab=1")
    );
    // Another host: back to this site, same path.
    let elsewhere = vec![
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-uri", "/dashboard"),
    ];
    assert_eq!(deny(PROXY, elsewhere).await.as_deref(), Some("/dashboard"));
    // `X-Forwarded-Uri` without a host.
    let uri_only = vec![("x-forwarded-uri", "/only/uri")];
    assert_eq!(deny(PROXY, uri_only).await.as_deref(), Some("/only/uri"));
    // Not from a trusted proxy: the headers are not believed; the login returns to the UI.
    assert_eq!(deny("198.51.100.7:5000", nginx.clone()).await, None);
    // No peer address at all: the same.
    let res = send(&app, get("/sso/auth", &nginx)).await;
    assert_eq!(return_to(&res), None);
    // The login URL's target is exactly what the login endpoint accepts: it comes back there.
    let res = send(&app, request(Method::GET, "/sso/auth", PROXY, &nginx)).await;
    assert_eq!(
        login_url(&res),
        format!("{LOGIN}?return_to=/app/page%3Fx%3D1%26y%3Dtwo")
    );
}

/// Go's `url.QueryUnescape`, leniently, to bytes (as `tests/open_redirects.rs` reads the corpus).
fn unescape(s: &str) -> Vec<u8> {
    url::form_urlencoded::parse(format!("v={}", s.replace('&', "%26")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default()
}

#[tokio::test]
async fn hostile_forwarded_targets_never_leave_the_site() {
    let (_layer, _up, app) = app_with(builder().allowed_redirect_domains([ALLOWED_DOMAIN]));
    let base = url::Url::parse(BASE_URL).unwrap();
    let mut checked = 0;
    let mut kept = 0;
    for line in CORPUS.lines().filter(|l| !l.trim().is_empty()) {
        for payload in [line.as_bytes().to_vec(), unescape(line)] {
            // Only what a proxy can put in a header.
            let Ok(value) = http::HeaderValue::from_bytes(&payload) else {
                continue;
            };
            let Ok(text) = value.to_str().map(str::to_owned) else {
                continue;
            };
            let variants: [Vec<(&str, &str)>; 3] = [
                vec![("x-original-url", &text)],
                vec![
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "gateway.example.com"),
                    ("x-forwarded-uri", &text),
                ],
                vec![
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", &text),
                    ("x-forwarded-uri", "/x"),
                ],
            ];
            for headers in variants {
                let res = send(&app, request(Method::GET, "/sso/auth", PROXY, &headers)).await;
                assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
                checked += 1;
                let Some(target) = return_to(&res) else {
                    continue;
                };
                kept += 1;
                // Where a browser at our base URL would end up.
                let landed = base
                    .join(&target)
                    .unwrap_or_else(|e| panic!("{target:?}: {e}"));
                let host = landed.host_str().unwrap_or("");
                assert!(
                    host == "gateway.example.com" || host == ALLOWED_DOMAIN,
                    "{headers:?} returns to {landed} (return_to {target:?})"
                );
                assert!(
                    target.starts_with('/') && !target.starts_with("//")
                        || target.starts_with(&format!("https://{ALLOWED_DOMAIN}/"))
                        || target.starts_with(&format!("http://{ALLOWED_DOMAIN}/")),
                    "{target:?}"
                );
            }
        }
    }
    assert!(checked > 1500, "only {checked} payloads checked");
    assert!(
        kept > 0,
        "every payload dropped: the check above checked nothing"
    );
}

#[tokio::test]
async fn redirect_mode_sends_browsers_to_login_and_api_clients_get_401() {
    let (layer, _up, app) = app_with(builder());
    let html = ("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8");
    let uri = ("x-forwarded-uri", "/app?id=7");
    let res = send(
        &app,
        request(Method::GET, "/sso/auth?redirect=true", PROXY, &[html, uri]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("{LOGIN}?return_to=/app%3Fid%3D7"));
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    // A stale cookie is cleared on the way to login (it would be sent again after it).
    let res = send(
        &app,
        request(
            Method::GET,
            "/sso/auth?redirect=1",
            PROXY,
            &[html, uri, ("cookie", "token=stale")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookies(&res).iter().any(|c| c.starts_with("token=;")),
        "{:?}",
        set_cookies(&res)
    );
    // Two session cookies (one planted from a sibling domain) would survive the login and
    // loop: the browser gets the 401 instead, as at the gate.
    let two = ("cookie", "token=one; token=two");
    let res = send(
        &app,
        request(Method::GET, "/sso/auth?redirect=true", PROXY, &[html, two]),
    )
    .await;
    assert_denied(res).await;
    // An API client, and a browser's POST (Traefik names the original method), get the 401.
    let json = ("accept", "application/json");
    let res = send(
        &app,
        request(Method::GET, "/sso/auth?redirect=true", PROXY, &[json]),
    )
    .await;
    assert_denied(res).await;
    let post = ("x-forwarded-method", "POST");
    let res = send(
        &app,
        request(Method::GET, "/sso/auth?redirect=true", PROXY, &[html, post]),
    )
    .await;
    assert_denied(res).await;
    // Without the switch, a browser gets the 401 too (nginx turns it into the redirect).
    let res = send(&app, request(Method::GET, "/sso/auth", PROXY, &[html])).await;
    assert_denied(res).await;
    // A valid session is a 200 in either mode.
    let cookie = format!("token={}", token_for(&layer, alice()));
    let res = send(
        &app,
        request(
            Method::GET,
            "/sso/auth?redirect=true",
            PROXY,
            &[html, ("cookie", &cookie)],
        ),
    )
    .await;
    assert_alice(res).await;
}

#[tokio::test]
async fn envoy_form_checks_any_method_and_returns_to_the_original_path() {
    let (layer, up, app) = app_with(builder());
    let cookie = format!("token={}", token_for(&layer, alice()));
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let res = send(
            &app,
            request(
                method.clone(),
                "/sso/auth/api/items/3",
                PROXY,
                &[("cookie", &cookie)],
            ),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK, "{method}");
        assert_alice(res).await;
        let res = send(&app, request(method, "/sso/auth/api/items/3", PROXY, &[])).await;
        assert_eq!(return_to(&res).as_deref(), Some("/api/items/3"));
        assert_denied(res).await;
    }
    // A browser navigation is sent to login, back to the original page.
    let html = ("accept", "text/html");
    let res = send(
        &app,
        request(Method::GET, "/sso/auth/app/page?x=1", PROXY, &[html]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&res),
        format!("{LOGIN}?return_to=/app/page%3Fx%3D1")
    );
    // An original path that is not a plain path is refused outright.
    let res = send(
        &app,
        request(Method::GET, "/sso/auth//evil.example/x", PROXY, &[html]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn other_methods_get_405() {
    let (layer, _up, app) = app_with(builder());
    let cookie = format!("token={}", token_for(&layer, alice()));
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let res = send(
            &app,
            request(method.clone(), "/sso/auth", PROXY, &[("cookie", &cookie)]),
        )
        .await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert!(res.headers().get("x-forwarded-user").is_none());
    }
}

#[tokio::test]
async fn the_path_can_be_moved_or_the_endpoint_turned_off() {
    let (layer, up, app) = app_with(builder().forward_auth_path("/verify"));
    assert_eq!(layer.forward_auth_path(), Some("/sso/verify"));
    let cookie = format!("token={}", token_for(&layer, alice()));
    let res = send(
        &app,
        request(Method::GET, "/sso/verify", PROXY, &[("cookie", &cookie)]),
    )
    .await;
    assert_alice(res).await;
    let res = send(
        &app,
        request(Method::GET, "/sso/auth", PROXY, &[("cookie", &cookie)]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // Under a root path and another prefix.
    let (layer, _up, app) = app_with(
        builder()
            .root_path("/litellm")
            .endpoint_prefix("/login-sso"),
    );
    assert_eq!(layer.forward_auth_path(), Some("/litellm/login-sso/auth"));
    let res = send(
        &app,
        request(Method::GET, "/litellm/login-sso/auth", PROXY, &[]),
    )
    .await;
    assert_eq!(
        header_text(&res, "x-auth-request-redirect").as_deref(),
        Some("https://gateway.example.com/litellm/login-sso/key/generate")
    );

    let (layer, _up, app) = app_with(builder().forward_auth(false));
    assert_eq!(layer.forward_auth_path(), None);
    let res = send(
        &app,
        request(Method::GET, "/sso/auth", PROXY, &[("cookie", &cookie)]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.headers().get("x-forwarded-user").is_none());
    assert_eq!(up.calls(), 0);

    // A path that would shadow another endpoint is a configuration error.
    for bad in ["/login", "/callback", "/cli", "/", "no-slash"] {
        let err = builder().forward_auth_path(bad).build().unwrap_err();
        assert!(
            err.to_string().contains("forward_auth_path"),
            "{bad}: {err}"
        );
    }
}

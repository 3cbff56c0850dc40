//! The forward-auth server (`examples/common/forward_auth_app.rs`) behind a real nginx with
//! `auth_request`: a browser asking nginx for a protected page is sent to login, logs in at the
//! `MockIdp` with the login and callback going through nginx, comes back to the page it asked
//! for, and the upstream behind nginx receives the identity headers (and neither the session
//! cookie nor anything the browser claimed about itself).
//!
//! The nginx configuration is the README's ("Behind nginx / Traefik / Envoy"), ports aside.

mod common;

#[path = "../examples/common/forward_auth_app.rs"]
mod forward_auth_app;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::nginx_server::NginxServer;
use common::oidc_provider::browser_login;
use common::{PlainClient, SECRET, http_client, url_param};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower_sso::testing::{MockIdp, MockUser};

/// The `http {}` body: nginx on `port` protects everything with `auth_request` against the
/// forward-auth server on `auth`, proxies `/sso/` to it, and the rest to `upstream`.
fn nginx_config(port: u16, auth: u16, upstream: u16) -> String {
    format!(
        r#"
# The session cookie ("token") is for the forward-auth server only: drop it on the way upstream.
map $http_cookie $cookie_without_token {{
    default $http_cookie;
    "~^(?<before>.*?)(?:^|;\s*)token=[^;]*(?<after>.*)$" "$before$after";
}}

server {{
    listen 127.0.0.1:{port};

    # The login, its callback, logout: the forward-auth server's own endpoints.
    location /sso/ {{
        proxy_pass http://127.0.0.1:{auth};
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}

    # Asked (as a subrequest) about every request to a protected location.
    location = /sso/auth {{
        internal;
        proxy_pass http://127.0.0.1:{auth};
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
    }}

    location / {{
        auth_request /sso/auth;
        auth_request_set $sso_user $upstream_http_x_forwarded_user;
        auth_request_set $sso_email $upstream_http_x_forwarded_email;
        auth_request_set $sso_groups $upstream_http_x_forwarded_groups;
        auth_request_set $sso_name $upstream_http_x_forwarded_preferred_username;
        auth_request_set $sso_login $upstream_http_x_auth_request_redirect;
        error_page 401 = @login;

        # Set from the answer, whatever the browser sent (an empty value drops the header).
        proxy_set_header X-Forwarded-User $sso_user;
        proxy_set_header X-Forwarded-Email $sso_email;
        proxy_set_header X-Forwarded-Groups $sso_groups;
        proxy_set_header X-Forwarded-Preferred-Username $sso_name;
        proxy_set_header Cookie $cookie_without_token;
        proxy_set_header Host $http_host;
        proxy_pass http://127.0.0.1:{upstream};
    }}

    # No session: to the login, which comes back to the page asked for.
    location @login {{
        return 302 $sso_login;
    }}
}}
"#
    )
}

/// What the upstream behind nginx received: one entry per request.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: HeaderMap,
}

/// An upstream that records every request and answers 200 "upstream".
async fn upstream(listener: TcpListener, seen: Arc<Mutex<Vec<Seen>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            seen.lock().unwrap().push(Seen {
                target: req.uri().to_string(),
                headers: req.headers().clone(),
            });
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"upstream")))) }
        });
        tokio::spawn(async move {
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A browser at nginx: keeps the cookies it is given, sends them back, never follows redirects.
struct Browser {
    client: PlainClient,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    async fn get(&mut self, url: &str, extra: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
        let mut req = Request::get(url).header(header::ACCEPT, "text/html,*/*;q=0.8");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let res = self
            .client
            .request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let (parts, body) = res.into_parts();
        for c in parts.headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap_or("");
            let Some((k, v)) = c.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

fn location(headers: &HeaderMap) -> String {
    headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_through_nginx_and_the_upstream_gets_the_identity() {
    let auth_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let auth_port = auth_listener.local_addr().unwrap().port();
    let upstream_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_port = upstream_listener.local_addr().unwrap().port();
    let Some(nginx) = NginxServer::start(|port| nginx_config(port, auth_port, upstream_port))
    else {
        return;
    };
    let site = nginx.url();

    let idp = forward_auth_app::builtin_users()
        .into_iter()
        .fold(MockIdp::builder(), |b, u| b.user(u))
        .start()
        .await
        .expect("start MockIdp");
    // A user without groups: nginx must drop a spoofed X-Forwarded-Groups for them too.
    idp.add_user(
        MockUser::new("carol")
            .claim("email", "carol@example.com")
            .claim("email_verified", true),
    );
    let mut settings = forward_auth_app::default_settings(&site);
    settings.insert("LITELLM_MASTER_KEY".into(), SECRET.into());
    settings.extend(idp.env_vars());
    forward_auth_app::builtin_provider_settings(&mut settings);
    let sso = forward_auth_app::layer(|k| settings.get(k).cloned()).expect("valid config");
    let server = tokio::spawn(forward_auth_app::serve(auth_listener, sso));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let upstream_task = tokio::spawn(upstream(upstream_listener, seen.clone()));

    let spoofed = [
        ("x-forwarded-user", "mallory"),
        ("x-forwarded-email", "mallory@evil.example"),
        ("x-forwarded-groups", "admins"),
        ("x-forwarded-preferred-username", "Mallory"),
        ("X_Forwarded_User", "mallory"),
    ];
    let mut browser = Browser {
        client: http_client(),
        cookies: BTreeMap::new(),
    };

    // 1. No session: nginx sends the browser to the login, returning to the page it asked for.
    let page = format!("{site}/app/page?x=1");
    let (status, headers, _) = browser.get(&page, &spoofed).await;
    assert_eq!(status, StatusCode::FOUND, "{}", nginx.error_log());
    let login = location(&headers);
    assert!(
        login.starts_with(&format!("{site}/sso/key/generate?")),
        "{login}"
    );
    assert_eq!(
        url_param(&login, "return_to").as_deref(),
        Some("/app/page?x=1")
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the upstream was reached without a session"
    );

    // 2. The login starts through nginx, 3. the IdP authorizes, 4. the callback through nginx
    //    sets the session and returns to the page.
    let (status, headers, body) = browser.get(&login, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "login start: {body}");
    let authorize = location(&headers);
    let callback = browser_login(&authorize, &format!("{site}/sso/callback"))
        .await
        .expect("IdP login");
    let (status, headers, body) = browser.get(&callback, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "callback: {body}");
    assert_eq!(location(&headers), "/app/page?x=1");
    assert!(browser.cookies.contains_key("token"), "no session cookie");

    // 5. Back at the page: the upstream answers, and sees who the user is.
    browser.cookies.insert("theme".into(), "dark".into());
    let (status, _, body) = browser.get(&format!("{site}/app/page?x=1"), &spoofed).await;
    assert_eq!(status, StatusCode::OK, "{}", nginx.error_log());
    assert_eq!(body, "upstream");
    let last = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("upstream reached");
    assert_eq!(last.target, "/app/page?x=1");
    let h = |name: &str| -> Vec<String> {
        last.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(h("x-forwarded-user"), ["alice"]);
    assert_eq!(h("x-forwarded-email"), ["alice@example.com"]);
    assert_eq!(h("x-forwarded-groups"), ["engineering,admins"]);
    assert_eq!(h("x-forwarded-preferred-username"), ["Alice Example"]);
    assert!(last.headers.get("x_forwarded_user").is_none());
    // The other cookies go through; the session cookie does not.
    let cookie = h("cookie").join("; ");
    assert!(cookie.contains("theme=dark"), "{cookie}");
    assert!(
        !cookie.contains("token="),
        "session cookie reached the upstream: {cookie}"
    );

    // 6. A forged session is a login redirect again; the upstream is not asked.
    let calls = seen.lock().unwrap().len();
    let token = browser.cookies["token"].clone();
    let forged = format!("{}x", &token[..token.len() - 1]);
    browser.cookies.insert("token".into(), forged);
    let (status, headers, _) = browser.get(&format!("{site}/other"), &spoofed).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(
        url_param(&location(&headers), "return_to").as_deref(),
        Some("/other")
    );
    assert_eq!(seen.lock().unwrap().len(), calls);

    // 7. The forward-auth endpoint itself is not reachable from outside.
    browser.cookies.insert("token".into(), token);
    let (status, _, _) = browser.get(&format!("{site}/sso/auth"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // 8. A user without groups: the spoofed groups header is dropped, not passed on.
    idp.select_user("carol");
    browser.cookies.clear();
    let (_, headers, _) = browser.get(&format!("{site}/carol"), &[]).await;
    let (_, headers, _) = browser.get(&location(&headers), &[]).await;
    let callback = browser_login(&location(&headers), &format!("{site}/sso/callback"))
        .await
        .expect("IdP login");
    let (status, _, _) = browser.get(&callback, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = browser.get(&format!("{site}/carol"), &spoofed).await;
    assert_eq!(status, StatusCode::OK);
    let last = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("upstream reached");
    assert_eq!(last.headers["x-forwarded-user"], "carol");
    assert!(
        last.headers.get("x-forwarded-groups").is_none(),
        "{:?}",
        last.headers
    );
    assert!(last.headers.get("x-forwarded-preferred-username").is_none());

    // Nothing the browser claimed ever reached the upstream.
    for s in seen.lock().unwrap().iter() {
        for v in s.headers.values() {
            assert!(
                !v.as_bytes()
                    .windows(7)
                    .any(|w| w.eq_ignore_ascii_case(b"mallory")),
                "{s:?}"
            );
        }
    }
    server.abort();
    upstream_task.abort();
}

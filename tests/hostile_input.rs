//! Hostile input through the whole layer: thousands of generated requests (odd paths, cookies,
//! bearer tokens, callback and login queries) must each get a clear answer, never a panic or a
//! 500, and never reach the protected app without a session.
//!
//! The generator is a fixed-seed xorshift, so every run replays the same inputs.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use tower_sso::testing::MockIdp;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// A string of `len` characters from a palette full of separators and escapes.
    fn text(&mut self, max: usize) -> String {
        const PALETTE: &[&str] = &[
            "a", "Z", "0", "/", ".", "..", "%", "%2F", "%2e", "%00", "%zz", ";", "=", "&", "?",
            "#", "\\", " ", "\t", "\"", "'", "<", ">", "é", "\u{212A}", "token", "state", "code",
            "-", "_", "+", ",", "eyJ", "..", "//",
        ];
        let len = self.below(max + 1);
        (0..len).map(|_| self.pick(PALETTE)).collect()
    }
}

fn percent_encode_unsafe(s: &str) -> String {
    // Keep the request URI parseable: escape what `http::Uri` refuses, keep the rest raw.
    s.chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() => c.to_string(),
            '/' | '.' | '%' | ';' | '=' | '&' | '?' | '-' | '_' | '+' | ',' | '\'' => c.to_string(),
            c => {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

#[tokio::test]
async fn generated_hostile_requests_get_clear_answers() {
    let idp = MockIdp::start().await.expect("MockIdp");
    let layer = flow_builder(&idp)
        .public_paths(["/health", "/static/*"])
        .build()
        .unwrap();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let valid = token_for(&layer, alice());
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut public_hits = 0;
    let mut authenticated = 0;

    for i in 0..3000 {
        let base = rng.pick(&[
            "/whoami",
            "/health",
            "/static/x.js",
            "/sso/callback",
            "/sso/key/generate",
            "/sso/logout",
            "/sso/readiness",
            "/sso/get/ui_settings",
            "/sso/callback/zz",
            "/",
        ]);
        let path = format!("{base}{}", percent_encode_unsafe(&rng.text(6)));
        let query = percent_encode_unsafe(&format!(
            "state={}&code={}&return_to={}&error={}&iss={}",
            rng.text(8),
            rng.text(8),
            rng.text(12),
            rng.text(4),
            rng.text(4)
        ));
        let uri = format!("{path}?{query}");
        let Ok(uri) = uri.parse::<http::Uri>() else {
            continue;
        };
        let mut b = Request::builder()
            .method(rng.pick(&["GET", "POST", "HEAD", "DELETE", "OPTIONS"]))
            .uri(uri);
        let use_valid = i % 7 == 0;
        let cookie_token = if use_valid {
            valid.clone()
        } else {
            format!(
                "{}{}",
                rng.pick(&["", "eyJ", "a.b.c", "...", "\"x\""]),
                rng.text(40)
            )
        };
        let cookie = format!(
            "{}={}; {}={}; tower_sso_flow={}; __Host-tower_sso_flow={}",
            rng.pick(&["token", "Token", "tok", "token ", "x"]),
            cookie_token,
            rng.pick(&["token", "a", "b"]),
            rng.text(10),
            rng.text(20),
            rng.text(20)
        );
        if let Ok(v) =
            http::HeaderValue::from_str(&percent_encode_unsafe(&cookie).replace('%', "x"))
        {
            b = b.header("cookie", v);
        }
        if rng.below(3) == 0 {
            let auth = format!(
                "{} {}",
                rng.pick(&["Bearer", "bearer", "Basic", ""]),
                rng.text(30)
            );
            if let Ok(v) = http::HeaderValue::from_str(&percent_encode_unsafe(&auth)) {
                b = b.header("authorization", v);
            }
        }
        b = b.header(
            "accept",
            rng.pick(&["text/html", "application/json", "*/*", "text/html;q=0", ""]),
        );
        b = b.header(
            rng.pick(&["x-forwarded-user", "X_Forwarded_Email", "x-other"]),
            "admin",
        );
        let req = b.body(Full::new(Bytes::new())).expect("request");
        let calls_before = up.calls();
        let res = send(&app, req).await;
        let status = res.status();
        assert!(
            !status.is_server_error() || status == StatusCode::BAD_GATEWAY,
            "request {i}: {status}"
        );
        assert!(
            [200, 303, 400, 401, 403, 404, 405, 502, 503].contains(&status.as_u16()),
            "request {i}: unexpected {status}"
        );
        if up.calls() > calls_before {
            let body = json_body(res).await;
            assert!(
                body["forwarded"].as_object().is_some_and(|f| f.is_empty()),
                "{body}"
            );
            if body["identity"].is_null() {
                public_hits += 1;
                let path = body["path"].as_str().unwrap_or("");
                assert!(path == "/health" || path.starts_with("/static/"), "{path}");
            } else {
                authenticated += 1;
                assert_eq!(body["identity"]["user_id"], "alice");
            }
        }
    }
    // The generator did reach both kinds of forwarded request.
    assert!(
        public_hits > 0 && authenticated > 0,
        "{public_hits} {authenticated}"
    );
    // Nothing in all that reached the IdP's token endpoint: no forged callback got that far.
    assert_eq!(idp.count("/token"), 0);
}

// ---------------------------------------------------------------------------------------------
// Hand-picked hostile requests: oversized and repeated query parameters, odd and oversized
// cookies, header smuggling. Each must be answered in bounded time with a clear status (never a
// 500), and reach the app only with alice's session.

/// Far more than any request needs, on a loaded 2-core machine.
const BOUND: std::time::Duration = std::time::Duration::from_secs(5);

/// The SSO endpoints the query and cookie cases are sent to.
const SSO_ENDPOINTS: [&str; 5] = [
    "/sso/callback",
    "/sso/key/generate",
    "/sso/logout",
    "/sso/readiness",
    "/sso/get/ui_settings",
];

/// What one hostile request got.
struct Answer {
    status: StatusCode,
    /// The app's report when the request reached it.
    reached: Option<serde_json::Value>,
    location: String,
}

/// Sends `req`, checking what must hold for every hostile request: an answer within [`BOUND`],
/// no 500 (nor any 5xx but a 502/503 from the IdP side), and the app reached only with alice's
/// session (or on a public path) and without a spoofed identity header.
async fn hostile(app: &App, up: &Upstream, case: &str, req: Request<Full<Bytes>>) -> Answer {
    let calls = up.calls();
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(BOUND, send(app, req))
        .await
        .unwrap_or_else(|_| panic!("{case}: no answer within {BOUND:?}"));
    let status = res.status();
    assert!(started.elapsed() < BOUND, "{case}: {:?}", started.elapsed());
    assert!(
        !status.is_server_error()
            || status == StatusCode::BAD_GATEWAY
            || status == StatusCode::SERVICE_UNAVAILABLE,
        "{case}: {status}"
    );
    assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{case}");
    let location = location(&res);
    let reached = if up.calls() > calls {
        let body = json_body(res).await;
        let path = body["path"].as_str().unwrap_or("");
        assert!(
            body["identity"]["user_id"] == "alice" || path == "/health",
            "{case}: the app was reached without a session: {body}"
        );
        let forwarded = body["forwarded"].as_object().cloned().unwrap_or_default();
        assert!(
            forwarded.values().all(|v| v != "evil"),
            "{case}: a spoofed identity header reached the app: {body}"
        );
        Some(body)
    } else {
        None
    };
    Answer {
        status,
        reached,
        location,
    }
}

fn request(method: &str, target: &str, headers: &[(&str, &[u8])]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(target);
    for (k, v) in headers {
        b = b.header(*k, http::HeaderValue::from_bytes(v).expect("header value"));
    }
    b.body(Full::new(Bytes::new())).expect("request")
}

struct Setup {
    idp: MockIdp,
    layer: tower_sso::SsoLayer,
    app: App,
    up: Upstream,
    valid: String,
}

async fn setup(identity_headers: bool) -> Setup {
    let idp = MockIdp::start().await.expect("MockIdp");
    let layer = flow_builder(&idp)
        .public_paths(["/health"])
        .identity_headers(identity_headers)
        .build()
        .unwrap();
    let up = Upstream::default();
    let app = up.behind(&layer);
    let valid = token_for(&layer, alice());
    Setup {
        idp,
        layer,
        app,
        up,
        valid,
    }
}

#[tokio::test]
async fn huge_and_repeated_query_parameters() {
    let s = setup(false).await;
    // A request target cannot exceed 64 KiB (`http::Uri` refuses longer ones, so no tower
    // service ever sees one): every query stays just under 63 000 bytes.
    const MAX: usize = 63_000;
    // ~63 kB of distinct keys.
    let mut distinct = String::new();
    let mut i = 0;
    while distinct.len() < MAX - 100 {
        distinct.push_str(&format!("k{i:05}=v&"));
        i += 1;
    }
    distinct.push_str("state=x&code=y");
    // 10 000 repeated `state` keys: `state=&` would not fit 10 000 times, so the empty value
    // is written without its `=`, and a second case repeats `state=x` as often as fits.
    let repeated_state = vec!["state"; 10_000].join("&") + "&code=y";
    assert!(repeated_state.len() < MAX);
    let repeated_state_x = vec!["state=x"; 7_500].join("&") + "&code=y";
    assert!(repeated_state_x.len() < MAX);
    let repeated_mixed = (0..6_000)
        .map(|i| ["state=x", "code=y", "return_to=/ui"][i % 3])
        .collect::<Vec<_>>()
        .join("&");
    assert!(repeated_mixed.len() < MAX);
    // One ~63 kB value.
    let long_value = format!("state={}&code=y", "s".repeat(MAX - 100));
    for endpoint in SSO_ENDPOINTS {
        for (what, query) in [
            ("63 kB of distinct keys", &distinct),
            ("10 000 state", &repeated_state),
            ("7 500 state=x", &repeated_state_x),
            ("10 000 mixed", &repeated_mixed),
            ("a 63 kB value", &long_value),
        ] {
            // fixed on the hardening branch: the query parser is quadratic in the number of
            // keys, so the distinct-keys case takes ~0.5 s here (debug build) against ~1 ms for
            // the others; only the bound and the kind of answer are asserted, not the speed.
            let case = format!("{endpoint} with {what}");
            let target = format!("{endpoint}?{query}");
            let a = hostile(&s.app, &s.up, &case, request("GET", &target, &[])).await;
            assert!(
                a.reached.is_none(),
                "{case}: an SSO endpoint reached the app"
            );
            assert!(
                a.status.is_client_error() || [200, 303, 503].contains(&a.status.as_u16()),
                "{case}: {}",
                a.status
            );
            if endpoint == "/sso/callback" {
                assert!(a.status.is_client_error(), "{case}: {}", a.status);
            }
            if a.status == StatusCode::SEE_OTHER && endpoint == "/sso/key/generate" {
                // Still our callback, whatever the query carried.
                let redirect_uri = url_param(&a.location, "redirect_uri");
                assert_eq!(redirect_uri.as_deref(), Some(CALLBACK_URL), "{case}");
            }
        }
    }
    // Same against a protected path, with and without a session.
    for query in [&distinct, &repeated_state] {
        let target = format!("/whoami?{query}");
        let a = hostile(
            &s.app,
            &s.up,
            "protected, no session",
            request("GET", &target, &[]),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let cookie = format!("token={}", s.valid);
        let a = hostile(
            &s.app,
            &s.up,
            "protected, session",
            request("GET", &target, &[("cookie", cookie.as_bytes())]),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    assert_eq!(s.idp.count("/token"), 0);
}

#[tokio::test]
async fn odd_oversized_and_repeated_cookies() {
    let s = setup(false).await;
    let valid = format!("token={}", s.valid);
    let many_bad: String = (0..1000)
        .map(|i| format!("token=garbage{i}"))
        .collect::<Vec<_>>()
        .join("; ");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("non-UTF-8 token", b"token=\xff\xfe\x80; a=1".to_vec()),
        ("non-UTF-8 other cookie", b"a=\xff\xfe; token=x".to_vec()),
        (
            "non-UTF-8 flow cookie",
            b"__Host-tower_sso_flow=\xc3\x28\xa0\xa1; tower_sso_flow=\xff".to_vec(),
        ),
        (
            "non-UTF-8 around a valid token",
            [b"a=\xff; ".as_slice(), valid.as_bytes(), b"; b=\xfe"].concat(),
        ),
        (
            "8 kB token",
            format!("token={}", "a".repeat(8 * 1024 + 1)).into_bytes(),
        ),
        (
            "100 kB token",
            format!("token={}", "a".repeat(100 * 1024)).into_bytes(),
        ),
        (
            "100 kB of other cookies around a valid token",
            format!(
                "{}; {valid}; {}",
                "x=1; ".repeat(10_000),
                "y".repeat(50_000)
            )
            .into_bytes(),
        ),
        (
            "100 kB flow cookie",
            format!("__Host-tower_sso_flow={}", "f".repeat(100 * 1024)).into_bytes(),
        ),
        ("1000 bad token cookies", many_bad.clone().into_bytes()),
        (
            "1000 bad token cookies, then a valid one",
            format!("{many_bad}; {valid}").into_bytes(),
        ),
        (
            "a valid token, then 1000 bad ones",
            format!("{valid}; {many_bad}").into_bytes(),
        ),
        (
            "1000 flow cookies",
            (0..1000)
                .map(|i| format!("__Host-tower_sso_flow=f{i}"))
                .collect::<Vec<_>>()
                .join("; ")
                .into_bytes(),
        ),
    ];
    for (what, cookie) in &cases {
        for target in [
            "/whoami",
            "/sso/callback?state=x&code=y",
            "/sso/key/generate",
            "/sso/logout",
            "/health",
        ] {
            let case = format!("{target} with {what}");
            // Non-UTF-8 cookie handling is being changed on the hardening branch: the exact
            // status may change (all of these pass before and after), so only the invariants
            // are asserted, plus 401 for a protected path the app did not answer.
            let a = hostile(
                &s.app,
                &s.up,
                &case,
                request("GET", target, &[("cookie", cookie)]),
            )
            .await;
            if target == "/whoami" && a.reached.is_none() {
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{case}");
            }
            if target.starts_with("/sso/callback") {
                assert!(a.status.is_client_error(), "{case}: {}", a.status);
            }
        }
    }
    // Several `Cookie` headers (HTTP/2 style), one of them non-UTF-8.
    let mut req = request("GET", "/whoami", &[]);
    for v in [b"a=1".as_slice(), b"token=\xff", b"token=also-bad"] {
        req.headers_mut()
            .append("cookie", http::HeaderValue::from_bytes(v).unwrap());
    }
    let a = hostile(&s.app, &s.up, "several cookie headers", req).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.idp.count("/token"), 0);
}

#[tokio::test]
async fn header_smuggling_variants() {
    for identity_headers in [false, true] {
        let s = setup(identity_headers).await;
        let cookie = format!("token={}", s.valid);
        let bearer = format!("Bearer {}", s.valid);
        let session: &[(&str, &[u8])] = &[("cookie", cookie.as_bytes())];

        // Duplicate Authorization headers.
        for (what, values) in [
            ("two bad bearers", vec!["Bearer a.b.c", "Bearer x"]),
            ("valid, then bad", vec![bearer.as_str(), "Bearer x"]),
            ("bad, then valid", vec!["Bearer x", bearer.as_str()]),
            (
                "basic, then valid",
                vec!["Basic YWRtaW46YWRtaW4=", bearer.as_str()],
            ),
            ("valid twice", vec![bearer.as_str(), bearer.as_str()]),
        ] {
            let mut req = request("GET", "/whoami", &[]);
            for v in values {
                req.headers_mut()
                    .append("authorization", http::HeaderValue::from_str(v).unwrap());
            }
            hostile(
                &s.app,
                &s.up,
                &format!("duplicate Authorization: {what}"),
                req,
            )
            .await;
        }

        // Transfer-Encoding / Content-Length oddities that reach a tower service (hyper would
        // refuse most of them on the wire; the layer must not care either way).
        let framing: [&[(&str, &[u8])]; 7] = [
            &[("transfer-encoding", b"chunked"), ("content-length", b"5")],
            &[("transfer-encoding", b"chunked, identity")],
            &[("transfer-encoding", b" chunked")],
            &[("content-length", b"abc")],
            &[("content-length", b"99999999999999999999999")],
            &[("content-length", b"1"), ("content-length", b"2")],
            &[("content-length", b"-1"), ("transfer-encoding", b"gzip")],
        ];
        for headers in framing {
            for method in ["GET", "POST"] {
                for (target, with_session) in [
                    ("/whoami", false),
                    ("/whoami", true),
                    ("/sso/callback?state=x&code=y", false),
                    ("/sso/logout", true),
                    ("/health", false),
                ] {
                    let mut all = headers.to_vec();
                    // A fresh session each time: the logout case revokes the one it carries.
                    let fresh = format!("token={}", token_for(&s.layer, alice()));
                    if with_session {
                        all.push(("cookie", fresh.as_bytes()));
                    }
                    let case = format!("{method} {target} {headers:?} session={with_session}");
                    let mut req = request(method, target, &[]);
                    for (k, v) in &all {
                        req.headers_mut()
                            .append(*k, http::HeaderValue::from_bytes(v).unwrap());
                    }
                    let a = hostile(&s.app, &s.up, &case, req).await;
                    if target == "/whoami" {
                        let expected = if with_session {
                            StatusCode::OK
                        } else {
                            StatusCode::UNAUTHORIZED
                        };
                        assert_eq!(a.status, expected, "{case}");
                    }
                }
            }
        }

        // Spoofed identity headers, with `_` for `-`, any case, repeated.
        let spoofed: Vec<(&str, &[u8])> = vec![
            ("x-forwarded-user", b"evil"),
            ("X_Forwarded_User", b"evil"),
            ("x_forwarded_email", b"evil"),
            ("X-FORWARDED_EMAIL", b"evil"),
            ("x-forwarded_groups", b"evil"),
            ("X_FORWARDED_GROUPS", b"evil"),
            ("x-forwarded-preferred_username", b"evil"),
            ("x_forwarded_preferred_username", b"evil"),
            ("x-forwarded-user", b"evil"),
        ];
        for with_session in [false, true] {
            let mut headers = spoofed.clone();
            if with_session {
                headers.extend_from_slice(session);
            }
            let case = format!("spoofed identity headers, session={with_session}");
            let a = hostile(&s.app, &s.up, &case, request("GET", "/whoami", &headers)).await;
            match a.reached {
                Some(body) => {
                    assert!(with_session, "{case}");
                    let forwarded = body["forwarded"].as_object().unwrap();
                    if identity_headers {
                        assert_eq!(forwarded["x-forwarded-user"], "alice", "{case}: {body}");
                    } else {
                        assert!(forwarded.is_empty(), "{case}: {body}");
                    }
                }
                None => {
                    assert!(!with_session, "{case}");
                    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{case}");
                }
            }
            // A public path gets none of them either.
            let a = hostile(&s.app, &s.up, &case, request("GET", "/health", &spoofed)).await;
            let body = a.reached.expect("public path");
            assert!(body["forwarded"].as_object().unwrap().is_empty(), "{body}");
        }

        // Forwarded host/proto/prefix (and `_` variants) never move the callback URL.
        let forwarded: [(&str, &[u8]); 6] = [
            ("x-forwarded-host", b"evil.example.net"),
            ("X_Forwarded_Host", b"evil.example.net"),
            ("x-forwarded-proto", b"http"),
            ("x_forwarded_proto", b"http"),
            ("x-forwarded-prefix", b"/evil"),
            ("forwarded", b"host=evil.example.net;proto=http"),
        ];
        let mut headers = forwarded.to_vec();
        headers.push(("host", b"evil.example.net"));
        let a = hostile(
            &s.app,
            &s.up,
            "forwarded host",
            request("GET", "/sso/key/generate", &headers),
        )
        .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(
            url_param(&a.location, "redirect_uri").as_deref(),
            Some(CALLBACK_URL)
        );
        assert!(!a.location.contains("evil"), "{}", a.location);
    }
}

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

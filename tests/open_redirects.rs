//! The login flow is no open redirector: oauth2-proxy's 559-payload open-redirect corpus
//! (`tests/data/openredirects.txt`) as `return_to`, each through a whole login against the
//! `MockIdp`, must land on our own UI path.

mod common;

use common::*;
use http::StatusCode;
use tower_sso::testing::MockIdp;

const CORPUS: &str = include_str!("data/openredirects.txt");
const ALLOWED_DOMAIN: &str = "www.whitelisteddomain.tld";
const UI_PATH: &str = "/ui/?login=success";

/// Go's `url.QueryUnescape`, leniently (as `src/redirect.rs`'s corpus test): `+` is a space,
/// `%XX` a byte, a bad escape stays as is. Bytes, not text: a payload may decode to non-UTF-8.
fn query_unescape(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    out
}

/// The login start query with `return_to` set to exactly these bytes (percent-encoded again).
fn return_to_query(return_to: &[u8]) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(return_to).collect();
    format!("return_to={encoded}")
}

async fn setup() -> (MockIdp, App) {
    let idp = MockIdp::start().await.expect("start MockIdp");
    // 559 logins in a second from one (unknown) client: far past any rate limit a real user
    // meets, and not what this test is about.
    let layer = flow_builder(&idp)
        .allowed_redirect_domains([ALLOWED_DOMAIN])
        .rate_limits(tower_sso::RateLimits::disabled())
        .build()
        .expect("valid config");
    let app = Upstream::default().behind(&layer);
    (idp, app)
}

#[test]
fn unescape_and_reencode_round_trip() {
    assert_eq!(query_unescape("a+b%2Fc%zz%4"), b"a b/c%zz%4");
    assert_eq!(query_unescape("%E3%80%82%ff"), b"\xe3\x80\x82\xff");
    let query = return_to_query(b"/a b&c=%\t");
    assert_eq!(query, "return_to=%2Fa+b%26c%3D%25%09");
    let parsed: Vec<_> = url::form_urlencoded::parse(query.as_bytes()).collect();
    assert_eq!(parsed.len(), 1);
    assert_eq!(parsed[0].1, "/a b&c=%\t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirect_corpus_lands_on_our_ui() {
    let (idp, app) = setup().await;
    let payloads: Vec<(&str, Vec<u8>)> = CORPUS
        .lines()
        .map(|line| (line, query_unescape(line)))
        .collect();
    assert_eq!(payloads.len(), 559);

    let started = std::time::Instant::now();
    let mut escaped = Vec::new();
    for (line, payload) in &payloads {
        let res = Browser::new(app.clone())
            .login(&idp, &return_to_query(payload))
            .await;
        let target = location(&res);
        let logged_in = cookie_value(&res, "token").is_some();
        if res.status() != StatusCode::SEE_OTHER || target != UI_PATH || !logged_in {
            escaped.push(format!(
                "{line:?}: {} to {target:?} (session cookie: {logged_in})",
                res.status()
            ));
        }
    }
    eprintln!(
        "{} logins through the layer in {:?}",
        payloads.len(),
        started.elapsed()
    );
    assert!(
        escaped.is_empty(),
        "{} of {} payloads did not land on {UI_PATH}:\n{}",
        escaped.len(),
        payloads.len(),
        escaped.join("\n")
    );
    // Every one was a whole login: the code was redeemed at the IdP each time.
    assert_eq!(idp.count("/authorize"), 559);
    assert_eq!(idp.count("/token"), 559);
}

#[tokio::test]
async fn allowed_return_targets_are_honoured() {
    let (idp, app) = setup().await;
    for target in [
        "https://www.whitelisteddomain.tld/ok",
        "http://www.whitelisteddomain.tld/ok?x=1#y",
        "/dashboard?tab=keys",
    ] {
        let res = Browser::new(app.clone())
            .login(&idp, &return_to_query(target.as_bytes()))
            .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{target}");
        assert_eq!(location(&res), target);
        assert!(cookie_value(&res, "token").is_some(), "{target}");
    }
    assert_eq!(idp.count("/token"), 3);
}

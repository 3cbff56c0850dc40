//! Test support: a real, certified OpenID provider (the npm package `oidc-provider`,
//! see `tests/oidc-provider/`) running on loopback in a Node child process.
//!
//! `start` spawns `tests/oidc-provider/server.mjs` with one confidential client
//! (`client_secret_basic`, PKCE S256 required) and one user; `browser_login` walks the
//! provider's authorize -> interaction -> authorize redirects like a browser would (the
//! fixture's interaction endpoint logs the user in and grants consent without a form).
//!
//! Without `node` or `tests/oidc-provider/node_modules` (`npm ci --prefix tests/oidc-provider`)
//! the fixture is skipped, unless `CI=true`, where that is an error.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

/// Client id registered at the provider.
pub const CLIENT_ID: &str = "tower-sso-e2e";
/// Secret of [`CLIENT_ID`] (sent with HTTP Basic auth).
pub const CLIENT_SECRET: &str = "tower-sso-e2e-secret-0123456789abcdef";
/// Subject of the provider's only account. Deliberately not [`USER_USERNAME`], so a test can
/// tell which claim a value came from.
pub const USER_SUB: &str = "e2e-subject-0001";
/// Email of the provider's only account (`email_verified: true`).
pub const USER_EMAIL: &str = "e2e.user@example.com";
/// `name` claim of the provider's only account.
pub const USER_NAME: &str = "E2E User";
/// `preferred_username` claim of the provider's only account.
pub const USER_USERNAME: &str = "e2e-user";

const READY_TIMEOUT: Duration = Duration::from_secs(15);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
const LOGIN_MAX_HOPS: usize = 20;
const STDERR_KEEP: usize = 16 * 1024;

/// A running `oidc-provider` on `127.0.0.1`; killed when dropped.
pub struct NodeOidcProvider {
    /// Issuer identifier, e.g. `http://127.0.0.1:40123` (no trailing slash).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// `kill_on_drop(true)`; its stdin stays open for as long as we live (the server
    /// exits when stdin closes, so it also dies if this process is killed hard).
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl NodeOidcProvider {
    /// The last few KiB the provider wrote to stderr (warnings, `server_error`s).
    pub fn stderr_tail(&self) -> String {
        lock_text(&self.stderr)
    }
}

impl std::fmt::Debug for NodeOidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOidcProvider")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// `Ok(None)` after a skip notice, or under `CI=true` an `Err`.
fn unavailable(reason: String) -> Result<Option<NodeOidcProvider>, String> {
    if super::servers::running_in_ci() {
        Err(format!(
            "oidc-provider e2e fixture unavailable under CI=true: {reason}"
        ))
    } else {
        // Straight to stderr: the test harness captures `eprintln!`, and a skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "SKIP oidc-provider e2e test: {reason}");
        Ok(None)
    }
}

/// Starts `tests/oidc-provider/server.mjs`. Returns `Ok(None)` with a printed skip message
/// when `node` or `tests/oidc-provider/node_modules` is missing and CI is not `"true"`;
/// under `CI=true` a missing tool is an `Err` (the test must fail).
pub async fn start(redirect_uri: &str) -> Result<Option<NodeOidcProvider>, String> {
    start_with_backchannel_logout(redirect_uri, None).await
}

/// [`start`], with the `backchannelLogout` feature on when `backchannel_logout_uri` is given:
/// the client registers it (`backchannel_logout_session_required`), and [`end_session`] makes
/// the provider post a logout token there.
pub async fn start_with_backchannel_logout(
    redirect_uri: &str,
    backchannel_logout_uri: Option<&str>,
) -> Result<Option<NodeOidcProvider>, String> {
    let dir = fixture_dir();
    let package = dir.join("node_modules/oidc-provider/package.json");
    if !package.is_file() {
        return unavailable(format!(
            "{} is missing (run `npm ci --prefix tests/oidc-provider`)",
            package.display()
        ));
    }
    Url::parse(redirect_uri).map_err(|e| format!("invalid redirect_uri {redirect_uri:?}: {e}"))?;

    let mut command = Command::new("node");
    command
        .arg("server.mjs")
        .current_dir(&dir)
        .env("PORT", "0")
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env("REDIRECT_URI", redirect_uri)
        .env("USER_SUB", USER_SUB)
        .env("USER_EMAIL", USER_EMAIL)
        .env("USER_NAME", USER_NAME)
        .env("USER_USERNAME", USER_USERNAME)
        .env(
            "BACKCHANNEL_LOGOUT_URI",
            backchannel_logout_uri.unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return unavailable("`node` is not on PATH".to_owned());
        }
        Err(e) => return Err(format!("cannot spawn `node server.mjs`: {e}")),
    };

    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(pipe) = child.stderr.take() {
        tokio::spawn(collect_stderr(pipe, Arc::clone(&stderr)));
    }
    let Some(stdout) = child.stdout.take() else {
        return Err("child stdout was not captured".to_owned());
    };

    let mut lines = BufReader::new(stdout).lines();
    let waited = tokio::time::timeout(READY_TIMEOUT, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        return Ok(issuer.trim().to_owned());
                    }
                }
                Ok(None) => return Err("exited before printing READY".to_owned()),
                Err(e) => return Err(format!("reading its stdout failed: {e}")),
            }
        }
    })
    .await;
    let issuer = match waited {
        Ok(Ok(issuer)) => issuer,
        Ok(Err(reason)) => {
            let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(e)) => format!("wait failed: {e}"),
                Err(_) => "still running".to_owned(),
            };
            // Let the stderr task catch up with the last output.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(format!(
                "oidc-provider fixture {reason} ({status}); stderr:\n{}",
                lock_text(&stderr)
            ));
        }
        Err(_) => {
            return Err(format!(
                "oidc-provider fixture printed no READY line within {READY_TIMEOUT:?}; stderr:\n{}",
                lock_text(&stderr)
            ));
        }
    };
    // Keep draining stdout so a stray write never hits a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    Ok(Some(NodeOidcProvider {
        issuer,
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        child,
        stderr,
    }))
}

async fn collect_stderr(mut pipe: impl AsyncRead + Unpin, sink: Arc<Mutex<String>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let Ok(mut text) = sink.lock() else { break };
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.len() > STDERR_KEEP {
            let mut cut = text.len() - STDERR_KEEP;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text.drain(..cut);
        }
    }
}

fn lock_text(text: &Mutex<String>) -> String {
    match text.lock() {
        Ok(text) => text.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Drives a browser-like login at the provider: GET `authorize_url`, follow redirects
/// (keeping the provider's cookies, on the provider's origin only) until a `Location`
/// points at `redirect_uri`'s origin+path; returns that full location (absolute, with
/// `code`, `state`, `iss`). Bounded to 20 hops and 10 s.
pub async fn browser_login(authorize_url: &str, redirect_uri: &str) -> Result<String, String> {
    browser_login_keeping_cookies(authorize_url, redirect_uri)
        .await
        .map(|(location, _)| location)
}

/// The provider's cookies a browser holds (its session at the provider).
pub type CookieJar = Vec<(String, String)>;

/// [`browser_login`], also returning the provider's cookies, for [`end_session`].
pub async fn browser_login_keeping_cookies(
    authorize_url: &str,
    redirect_uri: &str,
) -> Result<(String, CookieJar), String> {
    let mut jar = CookieJar::new();
    let location = tokio::time::timeout(
        LOGIN_TIMEOUT,
        follow_login(authorize_url, redirect_uri, &mut jar),
    )
    .await
    .map_err(|_| format!("browser_login did not finish within {LOGIN_TIMEOUT:?}"))??;
    Ok((location, jar))
}

/// Ends the browser's session at the provider as a user would: `GET /session/end` shows the
/// logout form, which is confirmed ("Yes, sign me out": `xsrf` and `logout=yes` posted to
/// `/session/end/confirm`). With the `backchannelLogout` feature on, the provider posts the
/// logout token to the client's `backchannel_logout_uri` before it answers the confirmation.
pub async fn end_session(issuer: &str, jar: &CookieJar) -> Result<(), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let cookies: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let cookie = cookies.join("; ");
    let form_url = format!("{issuer}/session/end");
    let request = http::Request::get(&form_url)
        .header(http::header::COOKIE, &cookie)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("GET {form_url} failed: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let page = String::from_utf8_lossy(&body).into_owned();
    if status != http::StatusCode::OK {
        return Err(format!("GET {form_url} answered {status}: {page}"));
    }
    let attribute = |html: &str, after: &str, name: &str| -> Option<String> {
        let rest = &html[html.find(after)?..];
        let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
        let end = rest[start..].find('"')?;
        Some(rest[start..start + end].to_owned())
    };
    let action =
        attribute(&page, "<form", "action").ok_or_else(|| format!("no logout form in {page}"))?;
    let xsrf = attribute(&page, "name=\"xsrf\"", "value")
        .ok_or_else(|| format!("no xsrf field in {page}"))?;
    let confirm_url = Url::parse(issuer)
        .and_then(|u| u.join(&action))
        .map_err(|e| format!("bad logout form action {action:?}: {e}"))?;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("xsrf", &xsrf)
        .append_pair("logout", "yes")
        .finish();
    let request = http::Request::post(confirm_url.as_str())
        .header(http::header::COOKIE, &cookie)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| e.to_string())?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("POST {confirm_url} failed: {e}"))?;
    if !response.status().is_redirection() && response.status() != http::StatusCode::OK {
        return Err(format!("POST {confirm_url} answered {}", response.status()));
    }
    Ok(())
}

async fn follow_login(
    authorize_url: &str,
    redirect_uri: &str,
    jar: &mut CookieJar,
) -> Result<String, String> {
    let target = Url::parse(redirect_uri)
        .map_err(|e| format!("invalid redirect_uri {redirect_uri:?}: {e}"))?;
    let mut url = Url::parse(authorize_url)
        .map_err(|e| format!("invalid authorize_url {authorize_url:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("browser_login only speaks plain http, got {url}"));
    }
    let provider_origin = url.origin();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    for hop in 0..LOGIN_MAX_HOPS {
        let mut request = http::Request::get(url.as_str());
        if !jar.is_empty() {
            let cookies: Vec<String> = jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
            request = request.header(http::header::COOKIE, cookies.join("; "));
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build request for {url}: {e}"))?;
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("GET {url} failed: {e}"))?;
        let status = response.status();

        for set_cookie in response.headers().get_all(http::header::SET_COOKIE) {
            if let Some((name, value)) = set_cookie.to_str().ok().and_then(parse_set_cookie) {
                jar.retain(|(n, _)| *n != name);
                if !value.is_empty() {
                    jar.push((name, value));
                }
            }
        }

        let location = response
            .headers()
            .get(http::header::LOCATION)
            .map(|v| v.to_str().map(str::to_owned));
        let location = match (status.is_redirection(), location) {
            (true, Some(Ok(location))) => location,
            (true, Some(Err(_))) => return Err(format!("GET {url}: non-ASCII Location header")),
            _ => {
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&body[..body.len().min(2048)]).into_owned();
                return Err(format!(
                    "GET {url} (hop {hop}) answered {status} instead of a redirect: {text}"
                ));
            }
        };
        let next = url
            .join(&location)
            .map_err(|e| format!("GET {url}: bad Location {location:?}: {e}"))?;
        if next.origin() == target.origin() && next.path() == target.path() {
            return Ok(next.into());
        }
        if next.origin() != provider_origin {
            return Err(format!(
                "GET {url} redirected off the provider to {next}, not to {redirect_uri}"
            ));
        }
        url = next;
    }
    Err(format!(
        "no redirect to {redirect_uri} within {LOGIN_MAX_HOPS} hops (last URL {url})"
    ))
}

/// `name=value` of a `Set-Cookie` header (attributes ignored).
fn parse_set_cookie(header: &str) -> Option<(String, String)> {
    let pair = header.split(';').next()?;
    let (name, value) = pair.split_once('=')?;
    let name = name.trim();
    if name.is_empty() {
        return None;
    }
    Some((name.to_owned(), value.trim().to_owned()))
}

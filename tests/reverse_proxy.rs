//! The reverse proxy of `examples/reverse_proxy.rs` (its code, `examples/common/reverse_proxy.rs`),
//! run in this process on a loopback port in front of a small hyper upstream that records what
//! reaches it: identity headers in, session credential and spoofed headers out, forwarding and
//! hop-by-hop headers, streaming both ways (SSE event by event, 100 MB each way in flat memory),
//! and the answers without an upstream or without a session.

mod common;
#[path = "../examples/common/reverse_proxy.rs"]
mod reverse_proxy;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{Notify, mpsc, oneshot};
use tower_sso::SsoLayer;
use tower_sso::testing::{MockIdp, MockUser};

use common::servers::free_port;
use reverse_proxy::{Proxy, ProxyConfig, UpstreamUrl};

/// Taken (shared) by every test here, and exclusively by the one that measures this process's
/// memory, so nothing else allocates meanwhile.
static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Generous guard against a hung test; never a speed assertion.
const GUARD: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The upstream: a hyper server on a loopback port that records every request's head.

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: http::Method,
    target: String,
    headers: HeaderMap,
}

#[derive(Clone, Default)]
struct UpstreamState {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Fired by the test to let `/events` send its second event.
    release: Arc<Notify>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
}

impl UpstreamState {
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream was called")
    }
}

type UpBody = BoxBody<Bytes, Infallible>;

struct Upstream {
    addr: SocketAddr,
    state: UpstreamState,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream address");
        let state = UpstreamState::default();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| upstream(req, st.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr, state }
    }

    fn url(&self) -> UpstreamUrl {
        UpstreamUrl::parse(&format!("http://{}", self.addr)).expect("upstream URL")
    }
}

async fn upstream(
    req: Request<Incoming>,
    state: UpstreamState,
) -> Result<Response<UpBody>, Infallible> {
    state.seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        target: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_owned();
    let res = match path.as_str() {
        // Reads the whole (small) body back, with response headers to be filtered or kept.
        p if p.starts_with("/echo") => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let body = body.unwrap_or_default();
            Response::builder()
                .status(StatusCode::CREATED)
                .header("content-type", "application/octet-stream")
                .header("connection", "x-resp-hop")
                .header("x-resp-hop", "1")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic realm=\"upstream\"")
                .header("x-resp-kept", "yes")
                .body(Full::new(body).boxed())
        }
        // Server-sent events: the first event at once, the second only once the test says so.
        "/events" => {
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            let release = state.release.clone();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"data: one\n\n")).await;
                release.notified().await;
                let _ = tx.send(Bytes::from_static(b"data: two\n\n")).await;
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(ChannelBody(rx).boxed())
        }
        // Counts and hashes the body frame by frame, never holding more than one frame.
        "/upload" => {
            let mut body = req.into_body();
            let mut hash = Hash::new();
            let mut failed = false;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            hash.update(data);
                        }
                    }
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let report = serde_json::json!({
                "bytes": hash.bytes, "sha256": hash.hex(), "failed": failed,
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(report.to_string())).boxed())
        }
        // `?bytes=N` of the pattern, generated as it is sent.
        "/download" => {
            let n: u64 = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            Response::builder()
                .header("content-type", "application/octet-stream")
                .body(PatternBody::new(n).boxed())
        }
        // Never answers.
        "/hang" => std::future::pending().await,
        _ => Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(format!("upstream saw {path}"))).boxed()),
    };
    Ok(res.expect("upstream response"))
}

/// A body fed by a channel: each message is one frame, sent as soon as it is received.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

// ---------------------------------------------------------------------------------------------
// A deterministic byte pattern, generated 64 KiB at a time, and its running SHA-256.

const CHUNK: usize = 64 * 1024;

/// 64 KiB of xorshift noise; chunk `i` is this with its first 8 bytes replaced by `i`, so a
/// dropped, repeated or reordered chunk changes the hash.
static NOISE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
});

fn pattern_chunk(index: u64, len: usize) -> Bytes {
    let mut chunk = NOISE[..len].to_vec();
    let stamp = index.to_le_bytes();
    let n = len.min(stamp.len());
    chunk[..n].copy_from_slice(&stamp[..n]);
    Bytes::from(chunk)
}

/// `len` bytes of the pattern as a streaming body (exact size hint, so it is sent with a
/// `Content-Length`).
struct PatternBody {
    remaining: u64,
    index: u64,
}

impl PatternBody {
    fn new(len: u64) -> Self {
        Self {
            remaining: len,
            index: 0,
        }
    }

    /// The byte count and SHA-256 of `len` bytes of the pattern.
    fn digest(len: u64) -> (u64, String) {
        let mut hash = Hash::new();
        let mut index = 0;
        let mut left = len;
        while left > 0 {
            let n = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
            hash.update(&pattern_chunk(index, n));
            index += 1;
            left -= n as u64;
        }
        (hash.bytes, hash.hex())
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = CHUNK.min(usize::try_from(self.remaining).unwrap_or(CHUNK));
        let chunk = pattern_chunk(self.index, n);
        self.index += 1;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

struct Hash {
    ctx: aws_lc_rs::digest::Context,
    bytes: u64,
}

impl Hash {
    fn new() -> Self {
        Self {
            ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            bytes: 0,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
        self.bytes += data.len() as u64;
    }

    fn hex(&self) -> String {
        use std::fmt::Write;
        self.ctx
            .clone()
            .finish()
            .as_ref()
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test.

/// The proxy, served in this process on a loopback port until dropped or [`stop`](Self::stop)ped.
struct RunningProxy {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningProxy {
    async fn start(layer: SsoLayer, config: ProxyConfig) -> Self {
        Self::serve(bind().await, layer, config)
    }

    /// Serves on `listener` (bound first when the layer needs the address as its base URL).
    fn serve(listener: tokio::net::TcpListener, layer: SsoLayer, config: ProxyConfig) -> Self {
        let addr = listener.local_addr().expect("proxy address");
        let proxy = Proxy::new(config).expect("proxy");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(reverse_proxy::serve(listener, layer, proxy, async {
            let _ = stopped.await;
        }));
        RunningProxy {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    /// Stops accepting, lets open connections finish, and asserts the server returned cleanly.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = tokio::time::timeout(GUARD, &mut self.task)
            .await
            .expect("the proxy shuts down")
            .expect("the proxy task did not panic");
        served.expect("the proxy served without an I/O error");
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A listener on a free loopback port.
async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the proxy")
}

/// The layer the example builds (identity headers on, session credential stripped), with the
/// test secret.
fn layer() -> SsoLayer {
    reverse_proxy::configure(common::builder())
        .build()
        .expect("layer")
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Response<Incoming> {
    tokio::time::timeout(GUARD, client.request(req))
        .await
        .expect("the proxy answers in time")
        .expect("the proxy answers")
}

async fn text(res: Response<Incoming>) -> String {
    let bytes = tokio::time::timeout(GUARD, res.into_body().collect())
        .await
        .expect("the body ends in time")
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn header_names(headers: &HeaderMap) -> Vec<String> {
    headers.keys().map(|k| k.as_str().to_owned()).collect()
}

// ---------------------------------------------------------------------------------------------
// a. Headers: what the upstream gets and what the client gets back.

#[tokio::test]
async fn upstream_gets_the_identity_not_the_credential_nor_spoofed_or_hop_by_hop_headers() {
    let _shared = MEMORY.read().await;
    let up = Upstream::start().await;
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let proxy = RunningProxy::start(sso, ProxyConfig::new(up.url())).await;
    let client = client();

    let cookie = format!("a=1; token={token}; b=2");
    let res = send(
        &client,
        request(
            "GET",
            &proxy.url("/echo/path?q=1&r=%2F"),
            &[
                ("host", "gateway.test"),
                ("cookie", &cookie),
                ("accept", "application/json"),
                ("x-custom", "kept"),
                // Spoofed identity, in the spellings an upstream framework might fold together.
                ("x-forwarded-user", "mallory"),
                ("x_forwarded_user", "mallory"),
                ("X-Forwarded-Groups", "admins"),
                ("x-forwarded-email", "mallory@example.com"),
                // Spoofed forwarding headers from an untrusted client.
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.test"),
                ("forwarded", "for=6.6.6.6"),
                ("x-real-ip", "6.6.6.6"),
                // Hop-by-hop headers, and a `Connection` that names an identity header: it must
                // not make the proxy drop the one the layer set.
                ("connection", "keep-alive, x-hop, x-forwarded-user"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "keep-alive"),
                ("proxy-authorization", "Basic dXNlcjpwYXNz"),
                ("te", "trailers"),
                ("trailer", "x-checksum"),
            ],
            "",
        ),
    )
    .await;

    // The client gets the upstream's status, body and end-to-end headers, not its hop-by-hop ones.
    assert_eq!(res.status(), StatusCode::CREATED);
    let got = res.headers().clone();
    assert_eq!(got["x-resp-kept"], "yes");
    for name in ["x-resp-hop", "keep-alive", "proxy-authenticate"] {
        assert!(
            !got.contains_key(name),
            "{name} reached the client: {got:?}"
        );
    }

    let seen = up.state.last();
    let h = &seen.headers;
    assert_eq!(seen.method, http::Method::GET);
    assert_eq!(seen.target, "/echo/path?q=1&r=%2F");
    // The identity, once each, from the session.
    for (name, value) in [
        ("x-forwarded-user", "alice"),
        ("x-forwarded-email", "alice@example.com"),
        ("x-forwarded-groups", "team-a,team-b"),
        ("x-forwarded-preferred-username", "Alice Example"),
    ] {
        let values: Vec<_> = h.get_all(name).iter().collect();
        assert_eq!(values, [value], "{name}: {h:?}");
    }
    assert!(
        !h.keys().any(|k| k.as_str().contains('_')),
        "an underscore spelling of an identity header reached the upstream: {h:?}"
    );
    // No session credential; the other cookies byte for byte.
    assert_eq!(h["cookie"], "a=1; b=2");
    assert!(!h.contains_key("authorization"));
    assert!(
        !format!("{h:?}").contains(&token),
        "the session token reached the upstream"
    );
    // Forwarding headers from the connection, not the client.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gateway.test");
    assert!(!h.contains_key("forwarded") && !h.contains_key("x-real-ip"));
    assert_eq!(h["host"], up.addr.to_string().as_str());
    // End-to-end headers arrive intact; hop-by-hop ones do not.
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["accept"], "application/json");
    for name in [
        "connection",
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(
            !h.contains_key(name),
            "{name} reached the upstream: {:?}",
            header_names(h)
        );
    }

    // A Bearer session on a POST: the upstream gets the body, the identity, and no Authorization.
    let bearer = format!("Bearer {token}");
    let res = send(
        &client,
        request(
            "POST",
            &proxy.url("/echo/chat"),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            r#"{"model":"gpt","stream":false}"#,
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(text(res).await, r#"{"model":"gpt","stream":false}"#);
    let seen = up.state.last();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.headers["x-forwarded-user"], "alice");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert!(!seen.headers.contains_key("authorization"));
    assert_eq!(up.state.calls(), 2);

    proxy.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_in_front_keeps_its_forwarding_headers() {
    let _shared = MEMORY.read().await;
    let up = Upstream::start().await;
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let config = ProxyConfig {
        trusted: reverse_proxy::TrustedPeers::parse(["127.0.0.0/8"]).expect("ranges"),
        ..ProxyConfig::new(up.url())
    };
    let proxy = RunningProxy::start(sso, config).await;
    let cookie = format!("token={token}");
    let res = send(
        &client(),
        request(
            "GET",
            &proxy.url("/echo"),
            &[
                ("cookie", &cookie),
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "gateway.example.com"),
            ],
            "",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let h = up.state.last().headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "gateway.example.com");
    // Identity headers are the layer's even from a trusted proxy.
    assert_eq!(h["x-forwarded-user"], "alice");
}

#[tokio::test]
async fn a_browser_logs_in_through_the_proxy_and_the_upstream_learns_who_it_is() {
    let _shared = MEMORY.read().await;
    let idp = MockIdp::builder()
        .user(MockUser::alice().claim("groups", vec!["engineering", "admins"]))
        .start()
        .await
        .expect("the MockIdp starts");
    let up = Upstream::start().await;
    let listener = bind().await;
    let base = format!("http://{}", listener.local_addr().expect("address"));
    // The example's configuration: LiteLLM-style settings.
    let mut vars: HashMap<String, String> = idp.env_vars().into_iter().collect();
    vars.insert("PROXY_BASE_URL".into(), base.clone());
    vars.insert("LITELLM_MASTER_KEY".into(), common::SECRET.into());
    vars.insert("GENERIC_TEAM_IDS_JWT_FIELD".into(), "groups".into());
    let sso = reverse_proxy::layer(|k| vars.get(k).cloned()).expect("layer");
    let proxy = RunningProxy::serve(listener, sso, ProxyConfig::new(up.url()));
    let client = client();
    let html = ("accept", "text/html");

    // A protected page sends the browser to login...
    let res = send(
        &client,
        request("GET", &proxy.url("/chat?x=1"), &[html], ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let start = common::location(&res);
    // ... which sends it to the identity provider with a flow cookie ...
    let res = send(&client, request("GET", &proxy.url(&start), &[html], "")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "login start");
    let flow = common::cookie_value(&res, common::FLOW_COOKIE_HTTP).expect("flow cookie");
    let authorize = common::location(&res);
    assert!(authorize.starts_with(&idp.issuer()), "{authorize}");
    // ... which sends it back to the callback, through the proxy ...
    let res = send(&client, request("GET", &authorize, &[], "")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "IdP /authorize");
    let callback = common::location(&res);
    assert!(
        callback.starts_with(&format!("{base}/sso/callback?")),
        "{callback}"
    );
    let flow_cookie = format!("{}={flow}", common::FLOW_COOKIE_HTTP);
    let res = send(
        &client,
        request("GET", &callback, &[html, ("cookie", &flow_cookie)], ""),
    )
    .await;
    // ... which sets the session and returns to the page.
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "callback");
    assert_eq!(common::location(&res), "/chat?x=1");
    let token = common::cookie_value(&res, "token").expect("session cookie");
    assert_eq!(
        up.state.calls(),
        0,
        "nothing reached the upstream before the login"
    );

    let cookie = format!("token={token}; theme=dark");
    let res = send(
        &client,
        request(
            "GET",
            &proxy.url("/chat?x=1"),
            &[html, ("cookie", &cookie)],
            "",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "upstream saw /chat");
    let h = up.state.last().headers;
    assert_eq!(h["x-forwarded-user"], "alice");
    assert_eq!(h["x-forwarded-email"], "alice@example.com");
    assert_eq!(h["x-forwarded-groups"], "engineering,admins");
    assert_eq!(h["cookie"], "theme=dark");
    assert_eq!(up.state.calls(), 1);
    proxy.stop().await;
    idp.shutdown().await;
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let _shared = MEMORY.read().await;
    let up = Upstream::start().await;
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let proxy = RunningProxy::start(sso, ProxyConfig::new(up.url())).await;
    let client = client();
    let cookie = format!("token={token}");
    const REQUESTS: usize = 20;
    for i in 0..REQUESTS {
        let res = send(
            &client,
            request(
                "GET",
                &proxy.url(&format!("/n/{i}")),
                &[("cookie", &cookie)],
                "",
            ),
        )
        .await;
        assert_eq!(text(res).await, format!("upstream saw /n/{i}"));
    }
    assert_eq!(up.state.calls(), REQUESTS);
    // One connection unless a request raced the previous one's return to the pool; a proxy
    // without a pool would open one per request.
    let opened = up.state.connections.load(Ordering::SeqCst);
    assert!(
        opened <= REQUESTS / 2,
        "{opened} upstream connections for {REQUESTS} requests"
    );
}

#[tokio::test]
async fn an_absolute_form_target_goes_to_the_configured_upstream_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _shared = MEMORY.read().await;
    let up = Upstream::start().await;
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let proxy = RunningProxy::start(sso, ProxyConfig::new(up.url())).await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let raw = format!(
        "GET http://169.254.169.254/latest?x=1 HTTP/1.1\r\nHost: 169.254.169.254\r\n\
         Cookie: token={token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(GUARD, stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.ends_with("upstream saw /latest"), "{answer}");
    let seen = up.state.last();
    assert_eq!(seen.target, "/latest?x=1");
    assert_eq!(seen.headers["host"], up.addr.to_string().as_str());
    assert_eq!(seen.headers["x-forwarded-host"], "169.254.169.254");
}

// ---------------------------------------------------------------------------------------------
// b. Server-sent events stream through, event by event.

/// Reads frames until `want` has arrived whole; panics if the body ends first or the guard
/// expires.
async fn read_until(body: &mut Incoming, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.ends_with(want) {
        let frame = tokio::time::timeout(GUARD, body.frame())
            .await
            .expect("an event arrives (the guard expired)")
            .expect("the stream goes on")
            .expect("a frame");
        if let Some(data) = frame.data_ref() {
            got.extend_from_slice(data);
        }
    }
    got
}

#[tokio::test]
async fn server_sent_events_reach_the_client_one_by_one() {
    let _shared = MEMORY.read().await;
    let up = Upstream::start().await;
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let proxy = RunningProxy::start(sso, ProxyConfig::new(up.url())).await;
    let cookie = format!("token={token}");
    let res = send(
        &client(),
        request(
            "GET",
            &proxy.url("/events"),
            &[("cookie", &cookie), ("accept", "text/event-stream")],
            "",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    // The upstream holds its second event until released, and it is released only once the
    // first has come through the proxy: were anything buffered, this would never return.
    let first = read_until(&mut body, b"data: one\n\n").await;
    assert_eq!(first, b"data: one\n\n");
    up.state.release.notify_one();
    let second = read_until(&mut body, b"data: two\n\n").await;
    assert_eq!(second, b"data: two\n\n");
    let end = tokio::time::timeout(GUARD, body.frame())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "nothing after the last event");
}

#[tokio::test]
async fn the_response_timeout_covers_the_headers_not_the_streamed_body() {
    let _shared = MEMORY.read().await;
    let up = Upstream::start().await;
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let timeout = Duration::from_secs(2);
    let config = ProxyConfig {
        response_timeout: timeout,
        ..ProxyConfig::new(up.url())
    };
    let proxy = RunningProxy::start(sso, config).await;
    let client = client();
    let cookie = format!("token={token}");

    // No response headers: 504 with a short JSON error.
    let res = send(
        &client,
        request("GET", &proxy.url("/hang"), &[("cookie", &cookie)], ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["content-type"], "application/json");
    let v: serde_json::Value = serde_json::from_str(&text(res).await).expect("JSON");
    assert_eq!(v["error"]["code"], "504", "{v}");

    // An event stream that pauses for longer than the timeout between events goes on.
    let res = send(
        &client,
        request("GET", &proxy.url("/events"), &[("cookie", &cookie)], ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    read_until(&mut body, b"data: one\n\n").await;
    tokio::time::sleep(timeout * 2).await;
    up.state.release.notify_one();
    read_until(&mut body, b"data: two\n\n").await;
}

// ---------------------------------------------------------------------------------------------
// c. 100 MB each way, in flat memory.

/// Resident set size of this process in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples the RSS every 5 ms on a thread of its own until stopped; keeps the peak.
struct RssWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib() {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The peak RSS seen, in KiB.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Uploads `len` pattern bytes through the proxy; returns the upstream's count and hash.
async fn upload(proxy: &RunningProxy, cookie: &str, len: u64) -> (u64, String) {
    let client: Client<HttpConnector, PatternBody> =
        Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(proxy.url("/upload"))
        .header("cookie", cookie)
        .header("content-type", "application/octet-stream")
        .body(PatternBody::new(len))
        .expect("request");
    let res = tokio::time::timeout(GUARD, client.request(req))
        .await
        .expect("the upload finishes in time")
        .expect("the proxy answers");
    assert_eq!(res.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&text(res).await).expect("JSON");
    assert_eq!(v["failed"], false, "{v}");
    (
        v["bytes"].as_u64().expect("bytes"),
        v["sha256"].as_str().expect("sha256").to_owned(),
    )
}

/// Downloads `len` pattern bytes through the proxy, hashing frame by frame.
async fn download(proxy: &RunningProxy, cookie: &str, len: u64) -> (u64, String) {
    let req = request(
        "GET",
        &proxy.url(&format!("/download?bytes={len}")),
        &[("cookie", cookie)],
        "",
    );
    let res = send(&client(), req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut hash = Hash::new();
    tokio::time::timeout(GUARD, async {
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.expect("a frame").data_ref() {
                hash.update(data);
            }
        }
    })
    .await
    .expect("the download finishes in time");
    (hash.bytes, hash.hex())
}

/// The bound on RSS growth across the transfers: whatever buffers the three hops (client,
/// proxy, upstream, all in this process) keep is a few frames each; a proxy that buffered a
/// body would grow by about 100 MB.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_megabytes_each_way_stream_in_flat_memory() {
    let _alone = MEMORY.write().await;
    const LEN: u64 = 100 * 1024 * 1024;
    let up = Upstream::start().await;
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let proxy = RunningProxy::start(sso, ProxyConfig::new(up.url())).await;
    let cookie = format!("token={token}");
    let expected = PatternBody::digest(LEN);

    // Warm up: connection pools, buffers, the allocator's arenas.
    let small = 2 * 1024 * 1024;
    assert_eq!(
        upload(&proxy, &cookie, small).await,
        PatternBody::digest(small)
    );
    assert_eq!(
        download(&proxy, &cookie, small).await,
        PatternBody::digest(small)
    );

    let baseline = rss_kib();
    let watch = RssWatch::start();
    let started = std::time::Instant::now();
    let uploaded = upload(&proxy, &cookie, LEN).await;
    let up_secs = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let downloaded = download(&proxy, &cookie, LEN).await;
    let down_secs = started.elapsed().as_secs_f64();
    let peak = watch.finish();

    assert_eq!(uploaded, expected, "the upstream received another body");
    assert_eq!(downloaded, expected, "the client received another body");
    assert_eq!(up.state.calls(), 4, "one upstream request per transfer");

    match baseline {
        Some(base) => {
            let growth = peak.saturating_sub(base);
            println!(
                "100 MiB up in {up_secs:.1} s, down in {down_secs:.1} s; RSS {base} KiB before, peak {peak} KiB (+{growth} KiB)"
            );
            assert!(
                growth < RSS_GROWTH_BOUND_KIB,
                "RSS grew by {growth} KiB during the transfers (bound {RSS_GROWTH_BOUND_KIB} KiB): a body was buffered"
            );
        }
        None => {
            // Only the memory check is skipped (no /proc here); the transfers were checked.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIP memory bound of the 100 MB transfers: no /proc/self/status on this platform"
            );
        }
    }
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// d. No upstream, no session.

#[tokio::test]
async fn an_unreachable_upstream_is_a_clean_502() {
    let _shared = MEMORY.read().await;
    let port = free_port();
    let sso = layer();
    let token = common::token_for(&sso, common::alice());
    let upstream = UpstreamUrl::parse(&format!("http://127.0.0.1:{port}")).expect("URL");
    let proxy = RunningProxy::start(sso, ProxyConfig::new(upstream)).await;
    let cookie = format!("token={token}");
    let res = send(
        &client(),
        request("GET", &proxy.url("/v1/models"), &[("cookie", &cookie)], ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = text(res).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["error"]["code"], "502", "{body}");
    assert_eq!(v["error"]["message"], "upstream unavailable", "{body}");
    for internal in [
        port.to_string().as_str(),
        "127.0.0.1",
        "refused",
        "tcp",
        "hyper",
    ] {
        assert!(
            !body.to_ascii_lowercase().contains(internal),
            "{internal:?} in {body}"
        );
    }
}

#[tokio::test]
async fn without_a_session_the_upstream_is_never_called() {
    let _shared = MEMORY.read().await;
    let up = Upstream::start().await;
    let proxy = RunningProxy::start(layer(), ProxyConfig::new(up.url())).await;
    let client = client();

    // A browser is sent to login, remembering where it was going.
    let res = send(
        &client,
        request(
            "GET",
            &proxy.url("/ui/models?tab=1"),
            &[("accept", "text/html,application/xhtml+xml")],
            "",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()[header::LOCATION].to_str().expect("location");
    assert!(
        location.starts_with("/sso/key/generate?return_to=/ui/models%3Ftab%3D1"),
        "{location}"
    );

    // An API client gets 401 JSON: with no credential, a forged cookie, an API key as Bearer,
    // or only spoofed identity headers.
    for headers in [
        vec![],
        vec![("cookie", "token=forged")],
        vec![("authorization", "Bearer sk-1234")],
        vec![
            ("x-forwarded-user", "admin"),
            ("x-forwarded-groups", "admins"),
        ],
    ] {
        let res = send(
            &client,
            request("POST", &proxy.url("/v1/chat/completions"), &headers, "{}"),
        )
        .await;
        common::assert_401_json(res).await;
    }
    // The layer's own endpoints are answered by the layer, not forwarded.
    let res = send(&client, request("GET", &proxy.url("/sso/logout"), &[], "")).await;
    assert!(res.status().is_redirection(), "{}", res.status());

    assert_eq!(up.state.calls(), 0, "the upstream was called");
}

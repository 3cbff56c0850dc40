//! A streaming reverse proxy with [`SsoLayer`] in front: the reusable part of
//! `examples/reverse_proxy.rs`, also run in-process by `tests/reverse_proxy.rs`, so the tests
//! drive exactly the code the example serves.
//!
//! Per connection the stack is: hop-by-hop headers removed and the peer address recorded
//! ([`ClientAddr`]) → [`SsoLayer`] (sessions, its own `/sso/*` endpoints, identity headers,
//! session credential removed) → [`Proxy`] (forwarding headers, one pooled HTTP/1.1 client to
//! the upstream).
//!
//! What the upstream receives, and why:
//!
//! - Hop-by-hop headers are removed both ways: `Connection` and every header it names,
//!   `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
//!   `Proxy-Authorization` and `Proxy-Authenticate`. On requests this happens *before* the
//!   layer, so `Connection: x-forwarded-user` cannot remove an identity header the layer set.
//!   `TE: trailers` is dropped as well: the upstream leg is plain HTTP/1.1 and trailers are not
//!   relayed by this proxy (no gRPC). `Expect` is dropped too (the server leg already answered
//!   `100-continue`). Upgrades (WebSocket) are not proxied.
//! - `Host` is the upstream's authority (virtual hosts on the upstream work); the host the client
//!   asked for goes in `X-Forwarded-Host`.
//! - `X-Forwarded-For` is the connection's peer address; `X-Forwarded-Proto` is `http` and
//!   `X-Forwarded-Host` the inbound `Host`. Inbound copies of these (and `Forwarded`,
//!   `X-Real-IP`) are discarded unless the peer is a trusted proxy (`SSO_TRUSTED_PROXIES`): then
//!   the peer is appended to its `X-Forwarded-For` and its `-Proto`/`-Host` are kept (a TLS
//!   terminator in front says `https`).
//! - Bodies are streamed both ways, frame by frame, with no buffering: an SSE stream reaches the
//!   client event by event, and a large upload or download holds only a few frames in memory.
//! - No connection to the upstream: 502. The upstream has the response timeout to make
//!   progress: to take each next request body frame (a long upload is fine), then to send the
//!   response headers; else 504. The response body is never timed, so long streams are fine. The error
//!   bodies are short JSON in the layer's `{"error": {...}}` shape, without internals.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tower::{Service, ServiceExt};
use tower_sso::{ClientAddr, ConfigErrors, SsoLayer, SsoLayerBuilder};

/// How long an upstream may take to send its response headers, unless configured.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long open connections may take to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The response body: the upstream's, streamed, or a short error the proxy wrote.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The layer options a proxy in front of an upstream needs, on top of `builder`: identity headers
/// for the upstream, and the session credential kept from it (it is a gateway-wide credential
/// the upstream has no use for).
pub fn configure(builder: SsoLayerBuilder) -> SsoLayerBuilder {
    builder.identity_headers(true).strip_session_token(true)
}

/// The layer from LiteLLM-style settings (`lookup` answers each variable, as for
/// [`SsoLayer::from_env`]), with the options of [`configure`].
pub fn layer(lookup: impl Fn(&str) -> Option<String>) -> Result<SsoLayer, ConfigErrors> {
    configure(SsoLayerBuilder::from_env_vars(lookup)).build()
}

/// The upstream the proxy forwards to: an `http://` URL, optionally with a path prefix.
#[derive(Debug, Clone)]
pub struct UpstreamUrl {
    authority: http::uri::Authority,
    /// Without a trailing `/`; empty for none.
    prefix: String,
}

impl UpstreamUrl {
    /// Parses `http://host:port` or `http://host:port/prefix`. No query, no user info.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .trim()
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{text:?}: only http:// upstreams are supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{text:?}: user info is not supported"));
        }
        if uri.query().is_some() {
            return Err(format!("{text:?}: a query is not supported"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self { authority, prefix })
    }

    /// `host:port` of the upstream.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }

    /// The upstream URI for an inbound request target.
    fn target(&self, inbound: &Uri) -> Option<Uri> {
        let pq = inbound.path_and_query().map_or("/", |pq| pq.as_str());
        format!("http://{}{}{pq}", self.authority, self.prefix)
            .parse()
            .ok()
    }
}

/// Peers whose `X-Forwarded-*` headers are believed: addresses or CIDR ranges, the same list as
/// the layer's `SSO_TRUSTED_PROXIES`.
#[derive(Debug, Clone, Default)]
pub struct TrustedPeers(Vec<(IpAddr, u8)>);

impl TrustedPeers {
    /// Parses entries such as `10.0.0.0/8`, `127.0.0.1`, `fd00::/8`.
    pub fn parse<I, S>(entries: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ranges = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                continue;
            }
            let (addr, prefix) = entry.split_once('/').unwrap_or((entry, ""));
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{entry:?} is not an IP address or CIDR range"))?;
            let addr = addr.to_canonical();
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = if prefix.is_empty() {
                max
            } else {
                match prefix.parse::<u8>() {
                    Ok(p) if p <= max => p,
                    _ => return Err(format!("{entry:?} has an invalid prefix length")),
                }
            };
            ranges.push((addr, prefix));
        }
        Ok(Self(ranges))
    }

    /// Whether `ip` is in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|&(net, prefix)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}

/// What a [`Proxy`] forwards to and how.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The upstream.
    pub upstream: UpstreamUrl,
    /// How long the upstream may go without progress: without taking the next request body
    /// frame, then without sending response headers (504). The response body is not timed.
    pub response_timeout: Duration,
    /// Peers whose forwarding headers are kept and extended rather than replaced.
    pub trusted: TrustedPeers,
}

impl ProxyConfig {
    /// Forwards to `upstream` with the default response timeout and no trusted peers.
    pub fn new(upstream: UpstreamUrl) -> Self {
        Self {
            upstream,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            trusted: TrustedPeers::default(),
        }
    }
}

struct Shared {
    config: ProxyConfig,
    host: HeaderValue,
}

/// The forwarding service: sends each request to the upstream over a pooled HTTP/1.1 client
/// (connections are kept alive and reused) and streams the answer back.
#[derive(Clone)]
pub struct Proxy {
    client: Client<HttpConnector, ProgressBody>,
    shared: Arc<Shared>,
}

impl Proxy {
    /// A proxy to `config.upstream`.
    pub fn new(config: ProxyConfig) -> Result<Self, String> {
        let host = HeaderValue::from_str(config.upstream.authority())
            .map_err(|_| "the upstream authority is not a valid Host header".to_owned())?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self {
            client,
            shared: Arc::new(Shared { config, host }),
        })
    }
}

impl Service<Request<Incoming>> for Proxy {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let client = self.client.clone();
        let shared = self.shared.clone();
        Box::pin(async move { Ok(forward(&client, &shared, req).await) })
    }
}

async fn forward(
    client: &Client<HttpConnector, ProgressBody>,
    shared: &Shared,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let config = &shared.config;
    let Some(target) = config.upstream.target(req.uri()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "invalid request target",
        );
    };
    let peer = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
    let trusted = peer.is_some_and(|ip| config.trusted.contains(ip));
    let inbound_host = req.headers().get(header::HOST).cloned().or_else(|| {
        let authority = req.uri().authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    *req.uri_mut() = target;
    let inbound_version = std::mem::replace(req.version_mut(), http::Version::HTTP_11);
    let headers = req.headers_mut();
    // Already done before the layer when served by `serve`; again here so the service holds up
    // on its own.
    strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    set_forwarding_headers(headers, peer, trusted, inbound_host);
    headers.insert(header::HOST, shared.host.clone());

    // The upstream has `response_timeout` to make progress: to take the next request body frame
    // (so a long upload is fine), then to send response headers. The response body is not timed.
    let progress = Arc::new(tokio::sync::Notify::new());
    let req = req.map(|body| ProgressBody {
        inner: body,
        progress: progress.clone(),
    });
    let response = client.request(req);
    let idle = tokio::time::sleep(config.response_timeout);
    tokio::pin!(response, idle);
    let result = loop {
        tokio::select! {
            biased;
            result = &mut response => break Some(result),
            () = progress.notified() => {
                idle.as_mut().reset(tokio::time::Instant::now() + config.response_timeout);
            }
            () = &mut idle => break None,
        }
    };
    match result {
        Some(Ok(mut res)) => {
            strip_hop_by_hop(res.headers_mut());
            // Answer in the client's HTTP version, not the upstream's (an HTTP/1.0 upstream
            // must not turn the client's connection into HTTP/1.0).
            *res.version_mut() = inbound_version;
            res.map(Either::Left)
        }
        Some(Err(e)) => {
            // The client error and its cause ("tcp connect error: Connection refused"), never
            // the request: no header of it reaches the log.
            tracing::warn!(
                error = %e,
                cause = std::error::Error::source(&e).map(ToString::to_string),
                "upstream request failed"
            );
            error(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "upstream unavailable",
            )
        }
        None => {
            tracing::warn!(
                timeout_ms = u64::try_from(config.response_timeout.as_millis()).unwrap_or(u64::MAX),
                "upstream made no progress in time"
            );
            error(
                StatusCode::GATEWAY_TIMEOUT,
                "gateway_timeout",
                "upstream timed out",
            )
        }
    }
}

/// The inbound request body on its way upstream, unchanged, reporting every frame the upstream
/// connection takes (for the response timeout).
pub struct ProgressBody {
    inner: Incoming,
    progress: Arc<tokio::sync::Notify>,
}

impl http_body::Body for ProgressBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_ready() {
            // Stores a permit when nobody waits, so no progress is missed.
            this.progress.notify_one();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A short JSON error in the layer's shape.
fn error(status: StatusCode, kind: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": status.as_str() }
    });
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// obsolete `Proxy-Connection` and `Keep-Alive`.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Removes the hop-by-hop headers: every header `Connection` names, then the fixed list.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Sets `X-Forwarded-For`/`-Proto`/`-Host`. From an untrusted peer, inbound forwarding headers
/// are replaced; from a trusted proxy, they are kept and the peer appended to its chain.
fn set_forwarding_headers(
    headers: &mut HeaderMap,
    peer: Option<IpAddr>,
    trusted: bool,
    inbound_host: Option<HeaderValue>,
) {
    if !trusted {
        for name in [
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
            X_REAL_IP,
            header::FORWARDED,
        ] {
            headers.remove(name);
        }
    }
    if let Some(ip) = peer {
        let ip = ip.to_canonical().to_string();
        let mut chain: Vec<u8> = Vec::new();
        for prior in headers.get_all(X_FORWARDED_FOR) {
            chain.extend_from_slice(prior.as_bytes());
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(ip.as_bytes());
        let value = HeaderValue::from_bytes(&chain)
            .or_else(|_| HeaderValue::from_str(&ip))
            .ok();
        headers.remove(X_FORWARDED_FOR);
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(X_FORWARDED_HOST)
        && let Some(host) = inbound_host
    {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// Serves the proxy behind `sso` on `listener` until `shutdown` completes, then lets open
/// connections finish their current exchange (up to 10 s) before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sso: SsoLayer,
    proxy: Proxy,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let _ = stream.set_nodelay(true);
        let svc = connection_service(&sso, &proxy, peer);
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let hyper_svc = hyper::service::service_fn(move |req| svc.clone().oneshot(req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), hyper_svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the drain timeout: closing them"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// The service for one connection from `peer`: hop-by-hop headers removed and the peer recorded,
/// then the layer, then the proxy.
fn connection_service(
    sso: &SsoLayer,
    proxy: &Proxy,
    peer: SocketAddr,
) -> impl Service<
    Request<Incoming>,
    Response = Response<tower_sso::ResponseBody<ProxyBody>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    tower::ServiceBuilder::new()
        .map_request(move |mut req: Request<Incoming>| {
            strip_hop_by_hop(req.headers_mut());
            req.extensions_mut().insert(ClientAddr(peer));
            req
        })
        .layer(sso.clone())
        .service(proxy.clone())
}

// Run as part of `tests/reverse_proxy.rs`, which includes this file.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Custom-Hop"),
            ("connection", "x-second-hop"),
            ("x-custom-hop", "1"),
            ("x-second-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic dXNlcjpwYXNz"),
            ("proxy-authenticate", "Basic"),
            ("x-kept", "yes"),
            ("cookie", "a=1"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["cookie", "x-kept"]);
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
        h.insert(X_REAL_IP, HeaderValue::from_static("6.6.6.6"));
        h.insert(header::FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        let peer: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        set_forwarding_headers(
            &mut h,
            Some(peer),
            false,
            Some(HeaderValue::from_static("gw.example")),
        );
        assert_eq!(h[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[X_FORWARDED_HOST], "gw.example");
        assert!(!h.contains_key(X_REAL_IP) && !h.contains_key(header::FORWARDED));
    }

    #[test]
    fn forwarding_headers_from_a_trusted_proxy_are_extended() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("gw.example"));
        set_forwarding_headers(
            &mut h,
            Some("10.0.0.1".parse().unwrap()),
            true,
            Some(HeaderValue::from_static("internal:4000")),
        );
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 10.0.0.2, 10.0.0.1");
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "gw.example");
    }

    #[test]
    fn trusted_peers_match_addresses_and_ranges() {
        let t = TrustedPeers::parse(["10.0.0.0/8", " 127.0.0.1 ", "fd00::/8", ""]).unwrap();
        assert!(t.contains("10.200.1.1".parse().unwrap()));
        assert!(t.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(!t.contains("127.0.0.2".parse().unwrap()));
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(!t.contains("fe80::1".parse().unwrap()));
        assert!(TrustedPeers::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedPeers::parse(["example.com"]).is_err());
        assert!(!TrustedPeers::default().contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn upstream_urls() {
        let u = UpstreamUrl::parse("http://127.0.0.1:4000").unwrap();
        let t = u.target(&"/v1/models?x=1".parse().unwrap()).unwrap();
        assert_eq!(t, "http://127.0.0.1:4000/v1/models?x=1");
        let u = UpstreamUrl::parse("http://litellm:4000/base/").unwrap();
        assert_eq!(u.authority(), "litellm:4000");
        let t = u.target(&"/chat".parse().unwrap()).unwrap();
        assert_eq!(t, "http://litellm:4000/base/chat");
        for bad in [
            "https://litellm:4000",
            "litellm:4000",
            "http://user:pw@litellm",
            "http://litellm/?q=1",
            "",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }
}

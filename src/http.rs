//! The outbound HTTP client the layer uses to talk to identity providers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneSyncService;

/// An outbound request: the body is complete.
pub type HttpRequest = http::Request<Bytes>;
/// An outbound response: the body is complete (and was size-capped).
pub type HttpResponse = http::Response<Bytes>;

/// A type-erased IdP HTTP client, as the layer holds it. Any `tower::Service` with these types can
/// be plugged in (and wrapped with timeouts, retries or metrics).
pub type HttpClient = BoxCloneSyncService<HttpRequest, HttpResponse, HttpError>;

/// The IdP could not be reached or answered too much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// Connecting or sending failed.
    Connect(String),
    /// No answer within the configured time.
    Timeout,
    /// The response body exceeded the size cap.
    BodyTooLarge,
    /// Anything else (malformed response, TLS failure, ...).
    Other(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(m) => write!(f, "could not reach the identity provider: {m}"),
            HttpError::Timeout => f.write_str("the identity provider did not answer in time"),
            HttpError::BodyTooLarge => f.write_str("the identity provider's answer was too large"),
            HttpError::Other(m) => write!(f, "identity provider request failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Settings for [`default_client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpClientConfig {
    /// Upper bound for a whole request: connecting, sending, and reading the full answer.
    /// Default: 10 seconds.
    pub timeout: Duration,
    /// Largest response body accepted, in bytes. Default: 1 MiB.
    pub max_body_bytes: usize,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The client the layer uses when the integrator does not plug in their own: hyper over rustls
/// (aws-lc-rs, the system's root certificates, falling back to the bundled Mozilla roots when
/// none load), HTTP/1.1, `http` and `https` URLs (configuration validation refuses plain `http`
/// except for loopback), redirects NOT followed (a 3xx is returned as it is), one timeout for
/// the whole request ([`HttpError::Timeout`]) and a cap on the response body
/// ([`HttpError::BodyTooLarge`]).
///
/// Build it once and clone it: clones share one connection pool.
pub fn default_client(cfg: &HttpClientConfig) -> HttpClient {
    let timeout = cfg.timeout;
    let max_body = cfg.max_body_bytes;
    let client = match https_connector() {
        Ok(connector) => {
            Some(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector))
        }
        Err(e) => {
            tracing::error!(error = %e, "tower-sso: could not set up TLS for the IdP client");
            None
        }
    };
    BoxCloneSyncService::new(tower::service_fn(move |req: HttpRequest| {
        let client = client.clone();
        async move {
            let Some(client) = client else {
                return Err(HttpError::Other("TLS setup failed".into()));
            };
            match tokio::time::timeout(timeout, send(&client, req, max_body)).await {
                Ok(res) => res,
                Err(_) => Err(HttpError::Timeout),
            }
        }
    }))
}

type HyperClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

fn https_connector() -> Result<HttpsConnector<HttpConnector>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = match HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
    {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "tower-sso: no native root certificates, using the bundled webpki roots");
            HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider)
                .map_err(|e| e.to_string())?
        }
    };
    Ok(builder.https_or_http().enable_http1().build())
}

async fn send(
    client: &HyperClient,
    req: HttpRequest,
    max_body: usize,
) -> Result<HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let res = client
        .request(http::Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| {
            let msg = error_chain(&e);
            if e.is_connect() {
                HttpError::Connect(msg)
            } else {
                HttpError::Other(msg)
            }
        })?;
    let (parts, body) = res.into_parts();
    // A declared length over the cap is refused before a byte of the body is read. A body
    // without one (or lying about it) is still cut at the cap by `Limited`, and one that drips
    // forever under the cap by the caller's timeout, which covers the whole read.
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(HttpError::BodyTooLarge);
    }
    let body = Limited::new(body, max_body).collect().await.map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            HttpError::BodyTooLarge
        } else {
            HttpError::Other(error_chain(&*e))
        }
    })?;
    Ok(http::Response::from_parts(parts, body.to_bytes()))
}

/// An error and its sources on one line, cut to a sane length. hyper's errors name no URL,
/// header or body, so this is safe to show.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if msg.len() > 200 {
        let mut cut = 200;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    msg
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tower::ServiceExt;

    use super::*;

    /// A loopback server answering every request with `response` (raw HTTP), or never when
    /// `None`. Returns its base URL and a request counter.
    async fn raw_server(response: Option<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let response = response.clone();
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                    match response {
                        Some(r) => {
                            let _ = sock.write_all(&r).await;
                            let _ = sock.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(30)).await,
                    }
                });
            }
        });
        (format!("http://{addr}"), count)
    }

    /// A loopback server answering 200 with a chunked body that drips one byte every 50 ms,
    /// forever (until the client goes away). Returns its base URL and whether the connection
    /// is still being written to.
    async fn drip_server() -> (String, Arc<std::sync::atomic::AtomicBool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let o = open.clone();
        tokio::spawn(async move {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            o.store(true, Ordering::SeqCst);
            let mut chunk = [0u8; 1024];
            let _ = sock.read(&mut chunk).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            while sock.write_all(b"1\r\n \r\n").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            o.store(false, Ordering::SeqCst);
        });
        (format!("http://{addr}"), open)
    }

    fn get(url: &str) -> HttpRequest {
        http::Request::get(url)
            .header("accept", "application/json")
            .body(Bytes::new())
            .unwrap()
    }

    fn cfg(timeout_ms: u64, max: usize) -> HttpClientConfig {
        HttpClientConfig {
            timeout: Duration::from_millis(timeout_ms),
            max_body_bytes: max,
        }
    }

    #[test]
    fn config_defaults() {
        let c = HttpClientConfig::default();
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.max_body_bytes, 1024 * 1024);
    }

    #[tokio::test]
    async fn small_body_ok() {
        let (url, _) = raw_server(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}".to_vec(),
        ))
        .await;
        let client = default_client(&cfg(2000, 1000));
        let res = client.oneshot(get(&format!("{url}/x"))).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.body().as_ref(), b"{\"ok\":true}");
    }

    #[tokio::test]
    async fn body_over_cap_is_too_large() {
        let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n".to_vec();
        r.extend(std::iter::repeat_n(b'a', 2000));
        let (url, _) = raw_server(Some(r)).await;
        let client = default_client(&cfg(2000, 1000));
        let err = client.oneshot(get(&url)).await.unwrap_err();
        assert_eq!(err, HttpError::BodyTooLarge);

        // Same without a Content-Length (read until close).
        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        r.extend(std::iter::repeat_n(b'a', 5000));
        let (url, _) = raw_server(Some(r)).await;
        let client = default_client(&cfg(2000, 1000));
        assert_eq!(
            client.oneshot(get(&url)).await.unwrap_err(),
            HttpError::BodyTooLarge
        );
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (url, count) = raw_server(None).await;
        let client = default_client(&cfg(200, 1000));
        let start = std::time::Instant::now();
        let err = client.oneshot(get(&url)).await.unwrap_err();
        assert_eq!(err, HttpError::Timeout);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn slow_drip_body_times_out_and_the_connection_is_dropped() {
        let (url, open) = drip_server().await;
        let client = default_client(&cfg(300, 1000));
        let start = std::time::Instant::now();
        let err = client.oneshot(get(&url)).await.unwrap_err();
        assert_eq!(err, HttpError::Timeout);
        assert!(start.elapsed() < Duration::from_secs(5));
        // The client hung up: the server's next write fails.
        for _ in 0..100 {
            if !open.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the dripping connection is still open");
    }

    #[tokio::test]
    async fn declared_length_over_cap_is_refused_before_reading() {
        // 50 MB declared, a few bytes sent, then the connection closes: refused for the declared
        // length (without the check, it would be a broken body).
        let (url, _) = raw_server(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\n{\"a\":\"xxx\"".to_vec(),
        ))
        .await;
        let client = default_client(&cfg(5000, 1000));
        let start = std::time::Instant::now();
        let err = client.oneshot(get(&url)).await.unwrap_err();
        assert_eq!(err, HttpError::BodyTooLarge);
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn redirect_not_followed() {
        let (target, target_count) = raw_server(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        ))
        .await;
        let r = format!(
            "HTTP/1.1 302 Found\r\nLocation: {target}/elsewhere\r\nContent-Length: 0\r\n\r\n"
        );
        let (url, count) = raw_server(Some(r.into_bytes())).await;
        let client = default_client(&cfg(2000, 1000));
        let res = client.oneshot(get(&url)).await.unwrap();
        assert_eq!(res.status(), 302);
        assert_eq!(
            res.headers()["location"],
            format!("{target}/elsewhere").as_str()
        );
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(target_count.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn refused_connection_is_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = default_client(&cfg(2000, 1000));
        let err = client
            .oneshot(get(&format!("http://{addr}/")))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Connect(_)), "{err:?}");
    }
}

//! The outbound HTTP client the layer uses to talk to identity providers.

use bytes::Bytes;
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

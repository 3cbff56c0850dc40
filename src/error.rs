//! The error every rejection becomes: an HTTP response in LiteLLM's JSON shape.
//!
//! Error bodies carry a short, safe message only: never a token, a secret or a raw IdP response.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// Why the layer refused or failed a request. Turned into a response by [`SsoError::into_response`].
///
/// The message is shown to the client, so it never holds a token, a secret or a raw IdP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoError {
    status: StatusCode,
    kind: &'static str,
    message: Cow<'static, str>,
    param: Option<&'static str>,
    /// Why a login was refused, when the kind and parameter do not tell (metrics only).
    refusal: Option<crate::metrics::Refusal>,
}

impl SsoError {
    /// An error with the given status, machine-readable type and human message.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            refusal: None,
        }
    }

    /// 401: no valid session, or the login could not prove who the user is.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "auth_error", message)
    }

    /// 403: the user is known but not allowed.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404: no such SSO endpoint or resource.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 429: too many attempts.
    pub fn too_many_requests(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    /// 502: the identity provider answered garbage or not at all.
    pub fn bad_gateway(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "idp_error", message)
    }

    /// 504: the identity provider did not answer within the configured timeout.
    pub fn gateway_timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "idp_timeout", message)
    }

    /// 503: a part the layer needs (IdP metadata, verifier cache, user store) is unavailable.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        )
    }

    /// 500: something inside the layer failed.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// Names the request parameter or setting the error is about (`param` in the body).
    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// Names why a login was refused, for the `reason` label of the refused-logins metric, when
    /// the kind and parameter do not tell.
    pub(crate) fn with_refusal(mut self, refusal: crate::metrics::Refusal) -> Self {
        self.refusal = Some(refusal);
        self
    }

    /// The reason set with [`with_refusal`](Self::with_refusal), if any.
    pub(crate) fn refusal(&self) -> Option<crate::metrics::Refusal> {
        self.refusal
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable error type (`type` in the body).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The human-readable message (`message` in the body).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The parameter the error is about, if any.
    pub fn param(&self) -> Option<&'static str> {
        self.param
    }

    /// The JSON body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status.as_u16().to_string(),
            }
        })
    }

    /// The response: status, JSON body, `Cache-Control: no-store`, and this error in the response
    /// extensions so outer layers can inspect it.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res.extensions_mut().insert(self);
        res
    }
}

impl fmt::Display for SsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for SsoError {}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn body_has_litellm_shape() {
        let res = SsoError::unauthorized("no session")
            .with_param("token")
            .into_response();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "no session");
        assert_eq!(v["error"]["type"], "auth_error");
        assert_eq!(v["error"]["param"], "token");
        assert_eq!(v["error"]["code"], "401");
    }
}

//! The authorization-code grant (RFC 6749 §4.1.3, with PKCE per RFC 7636), as LiteLLM's
//! `_pkce_token_exchange` does it, with the same error vectors.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, header};
use serde_json::{Map, Value};
use url::form_urlencoded;

use crate::error::SsoError;
use crate::http::HttpClient;

/// How the client authenticates at the token endpoint (when it has a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientAuth {
    /// `client_secret_basic`: `Authorization: Basic`, nothing secret in the body.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the body.
    Post,
}

/// One code exchange.
#[derive(Clone, Copy)]
pub(crate) struct TokenRequest<'a> {
    /// The provider's token endpoint.
    pub(crate) token_endpoint: &'a str,
    /// The authorization code from the callback.
    pub(crate) code: &'a str,
    /// The exact `redirect_uri` of the authorization request.
    pub(crate) redirect_uri: &'a str,
    /// This client's id.
    pub(crate) client_id: &'a str,
    /// The client secret; `None` for a public client (then `client_id` goes in the body).
    pub(crate) client_secret: Option<&'a str>,
    /// How to send the secret.
    pub(crate) auth: ClientAuth,
    /// The PKCE verifier, if PKCE was used.
    pub(crate) code_verifier: Option<&'a str>,
    /// Extra headers (LiteLLM's `GENERIC_SSO_HEADERS`). They never replace `Content-Type` or
    /// `Accept`, nor `Authorization` when Basic client authentication is used.
    pub(crate) extra_headers: &'a [(HeaderName, HeaderValue)],
}

impl fmt::Debug for TokenRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("token_endpoint", &self.token_endpoint)
            .field("redirect_uri", &self.redirect_uri)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("code", &"[redacted]")
            .field("client_secret", &self.client_secret.map(|_| "[redacted]"))
            .field("code_verifier", &self.code_verifier.map(|_| "[redacted]"))
            .field(
                "extra_headers",
                &self
                    .extra_headers
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Clone, PartialEq)]
pub(crate) struct TokenResponse {
    /// The access token (non-empty).
    pub(crate) access_token: String,
    /// The ID token, if the provider sent one (`null` and `""` count as absent).
    pub(crate) id_token: Option<String>,
    /// Usually `Bearer`.
    pub(crate) token_type: Option<String>,
    /// The refresh token, if any.
    pub(crate) refresh_token: Option<String>,
    /// Access token lifetime in seconds (a numeric string is accepted too).
    pub(crate) expires_in: Option<u64>,
    /// The granted scope.
    pub(crate) scope: Option<String>,
    /// The other fields, minus anything whose name suggests a token or a secret.
    pub(crate) extra: Map<String, Value>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("token_type", &self.token_type)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

const PREFIX: &str = "token exchange failed";

fn fail(msg: &str) -> SsoError {
    SsoError::unauthorized(format!("{PREFIX}: {msg}"))
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 §2.3.1 / Appendix B).
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Exchanges the authorization code for tokens.
///
/// Errors: 401 `token exchange failed: ...` for every answer that is not a usable token
/// response (non-2xx, not JSON, not an object, an `error`, no `access_token`); 502 when the
/// provider could not be reached. Messages carry at most the HTTP status and the OAuth `error`
/// code, never a token or the raw body.
pub(crate) async fn exchange_code(
    http: &HttpClient,
    req: &TokenRequest<'_>,
) -> Result<TokenResponse, SsoError> {
    // Built in a plain function: the form serializer is not `Send` and must not live across the
    // await below.
    let request = build_request(req)?;
    let res = super::send(http, crate::metrics::IdpEndpoint::Token, request)
        .await
        .map_err(|e| super::transport_error(PREFIX, &e))?;
    parse_response(res.status(), res.body())
}

fn build_request(req: &TokenRequest<'_>) -> Result<crate::http::HttpRequest, SsoError> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code");
    form.append_pair("code", req.code);
    form.append_pair("redirect_uri", req.redirect_uri);
    if let Some(v) = req.code_verifier {
        form.append_pair("code_verifier", v);
    }
    let mut basic = None;
    match (req.client_secret, req.auth) {
        (Some(secret), ClientAuth::Basic) => {
            let creds = format!("{}:{}", form_encode(req.client_id), form_encode(secret));
            let mut v = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(creds)))
                .map_err(|_| {
                    SsoError::internal("token exchange failed: invalid client credentials")
                })?;
            v.set_sensitive(true);
            basic = Some(v);
        }
        (Some(secret), ClientAuth::Post) => {
            form.append_pair("client_id", req.client_id);
            form.append_pair("client_secret", secret);
        }
        (None, _) => {
            form.append_pair("client_id", req.client_id);
        }
    }
    let body = form.finish();

    let mut builder = http::Request::builder()
        .method(Method::POST)
        .uri(req.token_endpoint)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )
        .header(header::ACCEPT, HeaderValue::from_static("application/json"));
    let uses_basic = basic.is_some();
    if let Some(v) = basic {
        builder = builder.header(header::AUTHORIZATION, v);
    }
    for (name, value) in req.extra_headers {
        let reserved = *name == header::CONTENT_TYPE
            || *name == header::ACCEPT
            || (uses_basic && *name == header::AUTHORIZATION);
        if reserved {
            tracing::debug!(header = %name, "tower-sso: extra header not sent to the token endpoint (reserved)");
            continue;
        }
        builder = builder.header(name, value);
    }
    builder.body(Bytes::from(body)).map_err(|_| {
        SsoError::internal("token exchange failed: the token endpoint is not a valid URL")
    })
}

pub(crate) fn parse_response(
    status: http::StatusCode,
    body: &[u8],
) -> Result<TokenResponse, SsoError> {
    let parsed: Result<Value, _> = serde_json::from_slice(body);
    if !status.is_success() {
        let code = parsed.ok().and_then(|v| {
            v.get("error")
                .and_then(Value::as_str)
                .filter(|c| super::is_safe_code(c))
                .map(str::to_owned)
        });
        let mut msg = format!(
            "{PREFIX}: the identity provider answered HTTP {}",
            status.as_u16()
        );
        if let Some(code) = code {
            msg.push_str(&format!(" ({code})"));
        }
        // A 4xx refuses this code (401, as upstream); a 5xx is the provider failing (502).
        return Err(if status.is_server_error() {
            SsoError::bad_gateway(msg)
        } else {
            SsoError::unauthorized(msg).with_refusal(crate::metrics::Refusal::Code)
        });
    }
    // A success that is not a JSON object is the provider misbehaving, not a refusal: 502.
    let Ok(value) = parsed else {
        return Err(SsoError::bad_gateway(format!(
            "{PREFIX}: unexpected response format (not JSON)"
        )));
    };
    let Value::Object(mut obj) = value else {
        return Err(SsoError::bad_gateway(format!(
            "{PREFIX}: unexpected response format"
        )));
    };
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        return Err(match err.as_str().filter(|c| super::is_safe_code(c)) {
            Some(code) => fail(&format!("the identity provider returned an error: {code}")),
            None => fail("the identity provider returned an error"),
        });
    }
    let access_token = match obj.remove("access_token") {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => return Err(fail("the response has no access_token")),
    };
    let id_token = match obj.remove("id_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.is_empty() => None,
        Some(Value::String(t)) => Some(t),
        Some(_) => return Err(fail("the response's id_token is not a string")),
    };
    let string = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let token_type = string(obj.remove("token_type"));
    let refresh_token = string(obj.remove("refresh_token"));
    let scope = string(obj.remove("scope"));
    let expires_in = match obj.remove("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    obj.retain(|k, _| !looks_secret(k));
    Ok(TokenResponse {
        access_token,
        id_token,
        token_type,
        refresh_token,
        expires_in,
        scope,
        extra: obj,
    })
}

/// Field names kept out of [`TokenResponse::extra`]: anything that may carry a credential.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("token") || n.contains("secret") || n.contains("password") || n.contains("key")
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::json;

    use super::*;
    use crate::http::HttpRequest;
    use crate::oidc::test_support::{Recorder, fixed, mock_client};

    const AT: &str = "at-SECRET-ACCESS-TOKEN-123";

    fn base<'a>(
        auth: ClientAuth,
        secret: Option<&'a str>,
        extra: &'a [(HeaderName, HeaderValue)],
    ) -> TokenRequest<'a> {
        TokenRequest {
            token_endpoint: "https://idp.example.com/token",
            code: "code-abc",
            redirect_uri: "https://app.example.com/sso/callback",
            client_id: "my client",
            client_secret: secret,
            auth,
            code_verifier: Some("verifier-43-chars-xxxxxxxxxxxxxxxxxxxxxxxxx"),
            extra_headers: extra,
        }
    }

    fn ok_body() -> String {
        json!({"access_token": AT, "id_token": "eyJ.id.token", "token_type": "Bearer", "expires_in": 3600,
               "scope": "openid email", "refresh_token": "rt-1", "ext_expires_in": 3600, "session_token": "s"})
        .to_string()
    }

    fn form(req: &HttpRequest) -> Vec<(String, String)> {
        form_urlencoded::parse(req.body()).into_owned().collect()
    }

    fn get<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
        f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    async fn run(
        req: &TokenRequest<'_>,
        status: u16,
        body: &str,
    ) -> (Result<TokenResponse, SsoError>, Recorder) {
        let (http, rec) = fixed(status, body);
        (exchange_code(&http, req).await, rec)
    }

    #[tokio::test]
    async fn basic_auth_shape() {
        let (res, rec) = run(
            &base(ClientAuth::Basic, Some("s3cr:t/+"), &[]),
            200,
            &ok_body(),
        )
        .await;
        let res = res.unwrap();
        assert_eq!(res.access_token, AT);
        assert_eq!(res.id_token.as_deref(), Some("eyJ.id.token"));
        assert_eq!(res.expires_in, Some(3600));
        assert_eq!(res.scope.as_deref(), Some("openid email"));
        assert_eq!(res.refresh_token.as_deref(), Some("rt-1"));
        assert_eq!(res.extra.get("ext_expires_in"), Some(&json!(3600)));
        assert!(!res.extra.contains_key("session_token"));
        let dbg = format!("{res:?}");
        assert!(!dbg.contains(AT) && !dbg.contains("rt-1") && !dbg.contains("eyJ"));

        let r = &rec.requests()[0];
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "https://idp.example.com/token");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(r.headers()[header::ACCEPT], "application/json");
        let expected = format!("Basic {}", STANDARD.encode("my+client:s3cr%3At%2F%2B"));
        assert_eq!(r.headers()[header::AUTHORIZATION], expected.as_str());
        let f = form(r);
        assert_eq!(get(&f, "grant_type"), Some("authorization_code"));
        assert_eq!(get(&f, "code"), Some("code-abc"));
        assert_eq!(
            get(&f, "redirect_uri"),
            Some("https://app.example.com/sso/callback")
        );
        assert_eq!(
            get(&f, "code_verifier"),
            Some("verifier-43-chars-xxxxxxxxxxxxxxxxxxxxxxxxx")
        );
        assert_eq!(get(&f, "client_id"), None);
        assert_eq!(get(&f, "client_secret"), None);
    }

    #[tokio::test]
    async fn post_auth_body() {
        let (res, rec) = run(
            &base(ClientAuth::Post, Some("s3cret"), &[]),
            200,
            &ok_body(),
        )
        .await;
        res.unwrap();
        let r = &rec.requests()[0];
        assert!(r.headers().get(header::AUTHORIZATION).is_none());
        let f = form(r);
        assert_eq!(get(&f, "client_id"), Some("my client"));
        assert_eq!(get(&f, "client_secret"), Some("s3cret"));
        assert_eq!(
            get(&f, "code_verifier"),
            Some("verifier-43-chars-xxxxxxxxxxxxxxxxxxxxxxxxx")
        );
        assert_eq!(
            get(&f, "redirect_uri"),
            Some("https://app.example.com/sso/callback")
        );
    }

    #[tokio::test]
    async fn public_client() {
        for auth in [ClientAuth::Basic, ClientAuth::Post] {
            let mut req = base(auth, None, &[]);
            req.code_verifier = None;
            let (res, rec) = run(&req, 200, &ok_body()).await;
            res.unwrap();
            let r = &rec.requests()[0];
            assert!(r.headers().get(header::AUTHORIZATION).is_none());
            let f = form(r);
            assert_eq!(get(&f, "client_id"), Some("my client"));
            assert_eq!(get(&f, "client_secret"), None);
            assert_eq!(get(&f, "code_verifier"), None);
        }
    }

    #[tokio::test]
    async fn extra_headers_sent() {
        let extra = [
            (
                HeaderName::from_static("x-custom-header"),
                HeaderValue::from_static("custom-value"),
            ),
            (
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer token123"),
            ),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ];
        // Public client: the extra Authorization is sent; Content-Type stays form-encoded.
        let (res, rec) = run(&base(ClientAuth::Post, None, &extra), 200, &ok_body()).await;
        res.unwrap();
        let r = &rec.requests()[0];
        assert_eq!(r.headers()["x-custom-header"], "custom-value");
        assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer token123");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        // Basic: the client's Basic credentials win.
        let (res, rec) = run(&base(ClientAuth::Basic, Some("s"), &extra), 200, &ok_body()).await;
        res.unwrap();
        let r = &rec.requests()[0];
        assert_eq!(r.headers()["x-custom-header"], "custom-value");
        let auths: Vec<_> = r.headers().get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(auths.len(), 1);
        assert!(auths[0].to_str().unwrap().starts_with("Basic "));
    }

    #[tokio::test]
    async fn id_token_null_is_none() {
        let body =
            json!({"access_token": AT, "id_token": null, "token_type": "Bearer"}).to_string();
        let (res, _) = run(&base(ClientAuth::Basic, Some("s"), &[]), 200, &body).await;
        let res = res.unwrap();
        assert_eq!(res.id_token, None);
        assert_eq!(res.expires_in, None);
        let body = json!({"access_token": AT, "expires_in": "3599"}).to_string();
        let (res, _) = run(&base(ClientAuth::Basic, Some("s"), &[]), 200, &body).await;
        assert_eq!(res.unwrap().expires_in, Some(3599));
    }

    async fn expect_err(status: u16, body: &str, needle: &str) -> SsoError {
        expect_err_as(StatusCode::UNAUTHORIZED, status, body, needle).await
    }

    async fn expect_err_as(
        expected: StatusCode,
        status: u16,
        body: &str,
        needle: &str,
    ) -> SsoError {
        let (res, _) = run(
            &base(ClientAuth::Basic, Some("client-secret-value"), &[]),
            status,
            body,
        )
        .await;
        let err = res.unwrap_err();
        assert_eq!(err.status(), expected, "{body}");
        assert!(
            err.message().starts_with("token exchange failed"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains(needle),
            "{} lacks {needle}",
            err.message()
        );
        assert!(!err.message().contains(AT));
        assert!(!err.message().contains("client-secret-value"));
        err
    }

    #[tokio::test]
    async fn upstream_error_vectors() {
        // 200 with an OAuth error.
        let err = expect_err(
            200,
            r#"{"error":"invalid_grant","error_description":"Code already used"}"#,
            "invalid_grant",
        )
        .await;
        assert!(!err.message().contains("Code already used"));
        // HTTP 401 with a text body.
        let err = expect_err(401, "Unauthorized: token leaked here", "HTTP 401").await;
        assert!(!err.message().contains("leaked"));
        // Non-2xx with an OAuth error object: status + code only.
        let err = expect_err(400, &json!({"error": "invalid_client", "error_description": "bad secret", "access_token": AT}).to_string(), "HTTP 400 (invalid_client)").await;
        assert!(!err.message().contains("bad secret"));
        // Non-2xx with an unsafe error string: status only.
        let err = expect_err(400, r#"{"error":"<script>alert(1)</script>"}"#, "HTTP 400").await;
        assert!(!err.message().contains("script"));
        // The provider failing rather than refusing: 502. A 5xx...
        let err = expect_err_as(
            StatusCode::BAD_GATEWAY,
            503,
            "<html>down</html>",
            "HTTP 503",
        )
        .await;
        assert!(!err.message().contains("down"));
        // ... JSON null / array ...
        let bad = StatusCode::BAD_GATEWAY;
        expect_err_as(bad, 200, "null", "unexpected response format").await;
        expect_err_as(
            bad,
            200,
            &json!([AT]).to_string(),
            "unexpected response format",
        )
        .await;
        // ... not JSON.
        let err = expect_err_as(
            bad,
            200,
            &format!("access_token={AT}&x=1"),
            "unexpected response format (not JSON)",
        )
        .await;
        assert!(!err.message().contains("x=1"));
        // No / null / empty / non-string access_token.
        expect_err(
            200,
            r#"{"token_type":"Bearer","scope":"openid"}"#,
            "access_token",
        )
        .await;
        expect_err(200, r#"{"access_token":null}"#, "access_token").await;
        expect_err(200, r#"{"access_token":""}"#, "access_token").await;
        expect_err(200, r#"{"access_token":12345}"#, "access_token").await;
        // 200 with a non-string error.
        expect_err(
            200,
            &json!({"error": {"nested": AT}, "access_token": AT}).to_string(),
            "returned an error",
        )
        .await;
    }

    #[tokio::test]
    async fn transport_error_is_bad_gateway() {
        let (http, _) = mock_client(std::time::Duration::ZERO, |_| {
            Err(crate::http::HttpError::Connect("refused".into()))
        });
        let err = exchange_code(&http, &base(ClientAuth::Basic, Some("s"), &[]))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        // The transport detail goes to the log, never to the client.
        assert_eq!(
            err.message(),
            "token exchange failed: could not reach the identity provider"
        );
    }

    #[test]
    fn request_debug_redacts() {
        let req = base(ClientAuth::Post, Some("client-secret-value"), &[]);
        let dbg = format!("{req:?}");
        assert!(
            !dbg.contains("client-secret-value")
                && !dbg.contains("code-abc")
                && !dbg.contains("verifier-43")
        );
    }
}

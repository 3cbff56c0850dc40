//! OpenID Connect Discovery 1.0: the provider metadata document.

use serde::Deserialize;

use crate::error::SsoError;
use crate::http::HttpClient;

/// The parts of an OpenID provider's metadata (`/.well-known/openid-configuration`, OpenID
/// Connect Discovery 1.0 §3 and RFC 8414 §2) the layer uses.
///
/// Normally fetched at layer build; integrators whose provider has no discovery document can
/// fill it in by hand.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProviderMetadata {
    /// The issuer identifier. It must equal the configured issuer exactly, and every ID token's
    /// `iss` must equal it.
    pub issuer: String,
    /// Where the browser is sent to log in.
    pub authorization_endpoint: String,
    /// Where the authorization code is exchanged for tokens.
    pub token_endpoint: String,
    /// The userinfo endpoint, if the provider has one.
    pub userinfo_endpoint: Option<String>,
    /// The provider's signing keys (JWK Set). Required to verify ID tokens.
    pub jwks_uri: Option<String>,
    /// RP-initiated logout endpoint, if the provider supports it.
    pub end_session_endpoint: Option<String>,
    /// RFC 9207: the provider puts `iss` in authorization responses, so a callback without it
    /// must be rejected.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    /// PKCE methods the provider supports (RFC 8414); the layer uses `S256`.
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// Algorithms the provider may sign ID tokens with.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// Fetches `{issuer}/.well-known/openid-configuration` (one trailing `/` of `issuer` dropped)
/// and checks that the document names exactly `issuer` (Discovery §4.3: a plain string
/// comparison, no normalisation).
///
/// Errors (502 `idp_error`, message naming the problem, never the document): the request
/// failed, the answer was not HTTP 200, not a metadata JSON object, or for another issuer.
pub(crate) async fn discover(
    http: &HttpClient,
    issuer: &str,
) -> Result<ProviderMetadata, SsoError> {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    let url = format!("{base}/.well-known/openid-configuration");
    let req = super::get_json_request(&url, None).ok_or_else(|| {
        SsoError::unavailable("OIDC discovery failed: the issuer is not a valid URL")
    })?;
    let res = super::send(http, crate::metrics::IdpEndpoint::Discovery, req)
        .await
        .map_err(|e| super::transport_error("OIDC discovery failed", &e))?;
    if res.status() != http::StatusCode::OK {
        return Err(SsoError::bad_gateway(format!(
            "OIDC discovery failed: the identity provider answered HTTP {}",
            res.status().as_u16()
        )));
    }
    parse_metadata(res.body(), issuer)
}

/// The provider metadata in a discovery document, which must name exactly `issuer`. 502 when it
/// is not a metadata JSON object or names another issuer.
pub(crate) fn parse_metadata(body: &[u8], issuer: &str) -> Result<ProviderMetadata, SsoError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| SsoError::bad_gateway("OIDC discovery failed: the metadata is not JSON"))?;
    if !value.is_object() {
        return Err(SsoError::bad_gateway(
            "OIDC discovery failed: the metadata is not a JSON object",
        ));
    }
    // serde's messages can quote values from the document, so they are not shown.
    let meta: ProviderMetadata = serde_json::from_value(value).map_err(|_| {
        SsoError::bad_gateway(
            "OIDC discovery failed: the metadata lacks issuer, authorization_endpoint or token_endpoint, or has a field of the wrong type",
        )
    })?;
    if meta.issuer != issuer {
        return Err(SsoError::bad_gateway(
            "OIDC discovery failed: issuer mismatch (the metadata names a different issuer than the one configured)",
        ));
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use serde_json::json;

    use super::*;
    use crate::oidc::test_support::{fixed, mock_client};

    const ISS: &str = "https://idp.example.com";

    fn doc(issuer: &str) -> String {
        json!({
            "issuer": issuer,
            "authorization_endpoint": "https://idp.example.com/authorize",
            "token_endpoint": "https://idp.example.com/token",
            "userinfo_endpoint": "https://idp.example.com/userinfo",
            "jwks_uri": "https://idp.example.com/jwks",
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
            "unknown_extension": {"x": 1}
        })
        .to_string()
    }

    #[tokio::test]
    async fn discovery_ok() {
        let (http, rec) = fixed(200, &doc(ISS));
        let meta = discover(&http, ISS).await.unwrap();
        assert_eq!(meta.issuer, ISS);
        assert_eq!(meta.token_endpoint, "https://idp.example.com/token");
        assert_eq!(
            meta.jwks_uri.as_deref(),
            Some("https://idp.example.com/jwks")
        );
        assert_eq!(meta.end_session_endpoint, None);
        assert!(meta.authorization_response_iss_parameter_supported);
        assert_eq!(meta.code_challenge_methods_supported, vec!["S256"]);
        assert!(meta.id_token_signing_alg_values_supported.is_empty());
        let reqs = rec.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method(), http::Method::GET);
        assert_eq!(
            reqs[0].uri(),
            "https://idp.example.com/.well-known/openid-configuration"
        );
    }

    #[tokio::test]
    async fn trailing_slash_issuer_is_compared_exactly() {
        let issuer = "https://idp.example.com/tenant/";
        let (http, rec) = fixed(200, &doc(issuer));
        let meta = discover(&http, issuer).await.unwrap();
        assert_eq!(meta.issuer, issuer);
        assert_eq!(
            rec.requests()[0].uri(),
            "https://idp.example.com/tenant/.well-known/openid-configuration"
        );
        // The same document is refused for the issuer without the slash.
        let (http, _) = fixed(200, &doc(issuer));
        let err = discover(&http, "https://idp.example.com/tenant")
            .await
            .unwrap_err();
        assert!(err.message().contains("issuer mismatch"));
    }

    #[tokio::test]
    async fn issuer_mismatch_rejected() {
        let (http, _) = fixed(200, &doc("https://evil.example.com"));
        let err = discover(&http, ISS).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(
            err.message().contains("issuer mismatch"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("evil"));
    }

    #[tokio::test]
    async fn non_200_rejected() {
        let (http, _) = fixed(404, "<html>secret page</html>");
        let err = discover(&http, ISS).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.message().contains("HTTP 404"));
        assert!(!err.message().contains("secret"));
    }

    #[tokio::test]
    async fn garbage_rejected() {
        for body in [
            "not json at all",
            "[1,2]",
            "null",
            r#"{"issuer": "https://idp.example.com"}"#,
        ] {
            let (http, _) = fixed(200, body);
            let err = discover(&http, ISS).await.unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_GATEWAY, "{body}");
            assert!(err.message().starts_with("OIDC discovery failed"));
        }
        let (http, _) = fixed(
            200,
            &json!({"issuer": ISS, "authorization_endpoint": 5, "token_endpoint": "secret-value"})
                .to_string(),
        );
        let err = discover(&http, ISS).await.unwrap_err();
        assert!(!err.message().contains("secret-value"));
    }

    #[tokio::test]
    async fn transport_timeout_is_gateway_timeout() {
        let (http, _) = mock_client(Duration::ZERO, |_| Err(crate::http::HttpError::Timeout));
        let err = discover(&http, ISS).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(err.message().contains("did not answer in time"));
    }
}

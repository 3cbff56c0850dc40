//! The userinfo endpoint (OIDC Core §5.3).

use serde_json::{Map, Value};

use crate::error::SsoError;
use crate::http::HttpClient;

const PREFIX: &str = "userinfo request failed";

/// GETs the userinfo endpoint with the access token as a bearer token.
///
/// `Ok(Some(claims))` for a 200 JSON object with members, `Ok(None)` for a 200 `null` or `{}`.
/// Errors (502, never quoting the body): the request failed, the answer was not HTTP 200, not
/// JSON, or not an object. Callers fall back to the ID token's claims.
pub(crate) async fn fetch_userinfo(
    http: &HttpClient,
    endpoint: &str,
    access_token: &str,
) -> Result<Option<Map<String, Value>>, SsoError> {
    let req = super::get_json_request(endpoint, Some(access_token)).ok_or_else(|| {
        SsoError::internal(format!(
            "{PREFIX}: invalid userinfo endpoint or access token"
        ))
    })?;
    let res = super::send(http, crate::metrics::IdpEndpoint::Userinfo, req)
        .await
        .map_err(|e| super::transport_error(PREFIX, &e))?;
    if res.status() != http::StatusCode::OK {
        return Err(SsoError::bad_gateway(format!(
            "{PREFIX}: the identity provider answered HTTP {}",
            res.status().as_u16()
        )));
    }
    match serde_json::from_slice::<Value>(res.body()) {
        Ok(Value::Object(map)) if map.is_empty() => Ok(None),
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(Value::Null) => Ok(None),
        Ok(_) => Err(SsoError::bad_gateway(format!(
            "{PREFIX}: unexpected response format"
        ))),
        Err(_) => Err(SsoError::bad_gateway(format!(
            "{PREFIX}: unexpected response format (not JSON)"
        ))),
    }
}

/// OIDC Core §5.3.2: the userinfo `sub` must equal the ID token's. When the ID token has a
/// `sub`, a userinfo answer without one (or with a different one) is refused (401).
pub(crate) fn check_userinfo_sub(
    userinfo: &Map<String, Value>,
    id_token_sub: Option<&str>,
) -> Result<(), SsoError> {
    let Some(expected) = id_token_sub else {
        return Ok(());
    };
    match userinfo.get("sub") {
        Some(Value::String(sub)) if sub == expected => Ok(()),
        Some(Value::String(_)) => Err(SsoError::unauthorized("userinfo rejected: sub mismatch")),
        _ => Err(SsoError::unauthorized("userinfo rejected: missing sub")),
    }
}

#[cfg(test)]
mod tests {
    use http::{StatusCode, header};
    use serde_json::json;

    use super::*;
    use crate::oidc::test_support::fixed;

    const EP: &str = "https://idp.example.com/userinfo";

    #[tokio::test]
    async fn ok_object() {
        let (http, rec) = fixed(200, r#"{"sub":"u1","email":"u@example.com"}"#);
        let info = fetch_userinfo(&http, EP, "at-123").await.unwrap().unwrap();
        assert_eq!(info["email"], "u@example.com");
        let r = &rec.requests()[0];
        assert_eq!(r.method(), http::Method::GET);
        assert_eq!(r.uri(), EP);
        assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer at-123");
        assert!(r.headers()[header::AUTHORIZATION].is_sensitive());
        assert_eq!(r.headers()[header::ACCEPT], "application/json");
        // The token is not in the URL.
        assert!(!r.uri().to_string().contains("at-123"));
    }

    #[tokio::test]
    async fn null_and_empty_are_none() {
        for body in ["null", "{}"] {
            let (http, _) = fixed(200, body);
            assert_eq!(
                fetch_userinfo(&http, EP, "at").await.unwrap(),
                None,
                "{body}"
            );
        }
    }

    #[tokio::test]
    async fn errors() {
        let (http, _) = fixed(503, "Service Unavailable at-123");
        let err = fetch_userinfo(&http, EP, "at-123").await.unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        assert!(err.message().contains("HTTP 503"));
        assert!(!err.message().contains("at-123"));
        for body in ["<html>garbage</html>", "[1]", "\"str\""] {
            let (http, _) = fixed(200, body);
            let err = fetch_userinfo(&http, EP, "at").await.unwrap_err();
            assert!(
                err.message().contains("unexpected response format"),
                "{body}"
            );
            assert!(!err.message().contains("garbage"));
        }
    }

    #[test]
    fn sub_check() {
        let info = |v: serde_json::Value| v.as_object().unwrap().clone();
        assert!(check_userinfo_sub(&info(json!({"sub": "u1"})), Some("u1")).is_ok());
        let err = check_userinfo_sub(&info(json!({"sub": "u2"})), Some("u1")).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.message(), "userinfo rejected: sub mismatch");
        let err = check_userinfo_sub(&info(json!({"email": "x"})), Some("u1")).unwrap_err();
        assert_eq!(err.message(), "userinfo rejected: missing sub");
        assert!(check_userinfo_sub(&info(json!({"sub": 5})), Some("u1")).is_err());
        assert!(check_userinfo_sub(&info(json!({"email": "x"})), None).is_ok());
        assert!(check_userinfo_sub(&info(json!({"sub": "any"})), None).is_ok());
    }
}

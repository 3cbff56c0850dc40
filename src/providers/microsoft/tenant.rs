//! Multi-tenant id_token checks, as Microsoft's own libraries make them.
//!
//! With the `common`, `organizations` or `consumers` endpoints the issuer cannot be known in
//! advance: each tenant signs as `https://login.microsoftonline.com/{tid}/v2.0`, with the keys
//! all tenants share. The signature proves Microsoft issued the token, not for which tenant; the
//! `iss` must therefore be the issuer of the token's own `tid`, and the `tid` one of the allowed
//! tenants. With a pinned tenant the issuer is already checked, and these checks agree with it.

use serde_json::{Map, Value};

use super::MicrosoftSettings;
use crate::error::SsoError;

/// Where Entra ID (global cloud) issues tokens from.
const AUTHORITY: &str = "https://login.microsoftonline.com";

/// The issuer of tenant `tid`'s v2.0 tokens.
pub(crate) fn tenant_issuer(tid: &str) -> String {
    format!("{AUTHORITY}/{tid}/v2.0")
}

/// The verified id_token's `tid` is a tenant id, its `iss` is that tenant's issuer (401
/// otherwise), and the tenant is allowed (403 otherwise).
pub(crate) fn check_tenant(
    settings: &MicrosoftSettings,
    id_token_claims: &Map<String, Value>,
) -> Result<(), SsoError> {
    let tid = id_token_claims
        .get("tid")
        .and_then(Value::as_str)
        .filter(|t| crate::provider::is_guid(t))
        .ok_or_else(|| {
            SsoError::unauthorized("the Microsoft id_token carries no valid tenant id (`tid`)")
        })?;
    let iss = id_token_claims.get("iss").and_then(Value::as_str);
    if iss != Some(tenant_issuer(tid).as_str()) {
        return Err(SsoError::unauthorized(
            "the Microsoft id_token's issuer is not the issuer of its own tenant",
        ));
    }
    let tid = tid.to_ascii_lowercase();
    if !settings.allowed_tenants.is_empty() && !settings.allowed_tenants.contains(&tid) {
        return Err(SsoError::forbidden(
            "users of this Microsoft tenant may not log in here",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const A: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const B: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn issuer_must_be_the_tokens_own_tenant() {
        let s = MicrosoftSettings::default();
        let ok = claims(json!({"tid": A, "iss": tenant_issuer(A)}));
        assert!(check_tenant(&s, &ok).is_ok());
        for bad in [
            json!({"tid": B, "iss": tenant_issuer(A)}),
            json!({"tid": A, "iss": format!("https://evil.example.com/{A}/v2.0")}),
            json!({"tid": A}),
            json!({"iss": tenant_issuer(A)}),
            json!({"tid": "common", "iss": tenant_issuer("common")}),
            json!({"tid": 7, "iss": tenant_issuer("7")}),
        ] {
            let e = check_tenant(&s, &claims(bad.clone())).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::UNAUTHORIZED, "{bad}");
        }
    }

    #[test]
    fn allowed_tenants_restrict_and_compare_case_insensitively() {
        let s = MicrosoftSettings {
            allowed_tenants: vec![A.to_owned()],
            ..MicrosoftSettings::default()
        };
        let upper = A.to_ascii_uppercase();
        assert!(
            check_tenant(
                &s,
                &claims(json!({"tid": upper, "iss": tenant_issuer(&upper)}))
            )
            .is_ok()
        );
        let e = check_tenant(&s, &claims(json!({"tid": B, "iss": tenant_issuer(B)}))).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::FORBIDDEN);
    }
}

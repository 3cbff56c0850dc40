//! `GET /sso/get/ui_settings` and `GET /sso/readiness` (both need a session).

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::{json, require_session};
use crate::error::SsoError;
use crate::layer::Shared;

pub(crate) fn ui_settings(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    require_session(shared, parts)?;
    Ok(json(
        StatusCode::OK,
        &json!({
            "PROXY_BASE_URL": shared.base_url,
            "PROXY_LOGOUT_URL": shared.logout_url,
            "SERVER_ROOT_PATH": shared.root_path,
            "DEFAULT_TEAM_DISABLED": false,
            "SSO_ENABLED": !shared.providers.is_empty(),
            "SSO_PROVIDERS": shared.providers.iter().map(|p| p.config.provider_name()).collect::<Vec<_>>(),
            "LOGIN_URL": format!("{}/key/generate", shared.paths.prefix),
            "UI_ACCESS_MODE": shared.policy.ui_access_mode.as_str(),
        }),
    ))
}

pub(crate) async fn readiness(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    require_session(shared, parts)?;
    let Some(provider) = shared.providers.first() else {
        return Ok(json(
            StatusCode::OK,
            &json!({"status": "healthy", "sso_configured": false, "message": "No SSO provider configured"}),
        ));
    };
    let mut problems: Vec<String> = Vec::new();
    let mut providers = serde_json::Map::new();
    for p in &shared.providers {
        let ok = match p.resolve().await {
            Ok(resolved) => match &resolved.jwks {
                Some(jwks) => jwks.ping().await.map(|_| ()),
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &ok {
            problems.push(format!(
                "provider {}: {}",
                p.config.provider_name(),
                e.message()
            ));
        }
        providers.insert(
            p.config.provider_name().to_owned(),
            json!(if ok.is_ok() { "ok" } else { "unavailable" }),
        );
    }
    let cache = crate::cache::ping(&shared.cache).await;
    if let Err(e) = &cache {
        tracing::warn!(error = %e, "verifier cache not ready");
        // The backend's own message names it and the kind of failure (`redis: timed out ...`),
        // never an address or a credential.
        problems.push(format!("verifier cache unavailable ({})", e.0));
    }
    let store = crate::store::ping(&shared.store).await;
    if let Err(e) = &store {
        tracing::warn!(error = %e, "user store not ready");
        let detail = match e {
            crate::store::StoreError::Backend(msg) => msg.as_str(),
            _ => "unexpected answer",
        };
        problems.push(format!("user store unavailable ({detail})"));
    }
    let healthy = problems.is_empty();
    Ok(json(
        if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "sso_configured": true,
            "provider": provider.config.provider_name(),
            "providers": providers,
            "verifier_cache": if cache.is_ok() { "ok" } else { "unavailable" },
            "user_store": if store.is_ok() { "ok" } else { "unavailable" },
            "message": if healthy { "SSO is properly configured".to_owned() } else { problems.join("; ") },
        }),
    ))
}

//! `GET /sso/get/ui_settings` and `GET /sso/readiness` (both need a session).
//!
//! Both answer upstream's JSON (`get_ui_settings`, `sso_readiness`), with this crate's additions
//! alongside. Readiness adds live checks to upstream's configuration check: the providers'
//! metadata and keys, the verifier cache and the user store answer. Healthy: 200. Otherwise:
//! 503 with the same fields at the top level and, as upstream's `HTTPException` puts them, under
//! `detail`.

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use super::{json, require_session};
use crate::error::SsoError;
use crate::layer::Shared;

pub(crate) fn ui_settings(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    require_session(shared, parts)?;
    let settings = &shared.ui_settings;
    let mut answer: Map<String, Value> = settings.extra.clone();
    let ours = json!({
        // Upstream's fields.
        "PROXY_BASE_URL": shared.base_url,
        "PROXY_LOGOUT_URL": shared.logout_url,
        "LITELLM_UI_API_DOC_BASE_URL": settings.api_doc_base_url,
        "DEFAULT_TEAM_DISABLED": settings.default_team_disabled,
        "SSO_ENABLED": !shared.providers.is_empty(),
        "NUM_SPEND_LOGS_ROWS": settings.num_spend_logs_rows,
        "DISABLE_EXPENSIVE_DB_QUERIES": settings.disable_expensive_db_queries,
        // This crate's.
        "SERVER_ROOT_PATH": shared.root_path,
        "SSO_PROVIDERS": shared.providers.iter().map(|p| p.config.provider_name()).collect::<Vec<_>>(),
        "LOGIN_URL": format!("{}/key/generate", shared.paths.prefix),
        "UI_ACCESS_MODE": shared.policy.ui_access_mode.as_str(),
    });
    if let Value::Object(ours) = ours {
        answer.extend(ours);
    }
    Ok(json(StatusCode::OK, &Value::Object(answer)))
}

/// `google` → `Google` (upstream's `str.capitalize` of the family name).
fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

pub(crate) async fn readiness(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    require_session(shared, parts)?;
    let mut problems: Vec<String> = Vec::new();

    // Upstream's check: what the configured providers lack, in its variable names.
    let mut missing: Vec<&'static str> = Vec::new();
    for p in &shared.providers {
        for name in p.config.missing_settings() {
            if !missing.contains(&name) {
                missing.push(name);
            }
        }
    }
    let kind = shared
        .providers
        .first()
        .map(|p| capitalized(p.config.kind().as_str()));
    if let (Some(kind), false) = (&kind, missing.is_empty()) {
        problems.push(format!(
            "{kind} SSO is configured but missing required environment variables: {}",
            missing.join(", ")
        ));
    }

    // Live checks.
    let mut providers = Map::new();
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
    let message = match (&kind, healthy) {
        (None, true) => "No SSO provider configured".to_owned(),
        (Some(kind), true) => format!("{kind} SSO is properly configured"),
        (_, false) => problems.join("; "),
    };
    let status = if healthy { "healthy" } else { "unhealthy" };
    let mut upstream = json!({
        "status": status,
        "sso_configured": kind.is_some(),
        "message": message,
    });
    if kind.is_some() {
        upstream["provider"] = json!(shared.providers.first().map(|p| p.config.kind().as_str()));
        upstream["missing_environment_variables"] = json!(missing);
    }
    let mut answer = upstream.clone();
    answer["providers"] = Value::Object(providers);
    answer["verifier_cache"] = json!(if cache.is_ok() { "ok" } else { "unavailable" });
    answer["user_store"] = json!(if store.is_ok() { "ok" } else { "unavailable" });
    if healthy {
        return Ok(json(StatusCode::OK, &answer));
    }
    answer["detail"] = upstream;
    Ok(json(StatusCode::SERVICE_UNAVAILABLE, &answer))
}

//! `GET /sso/debug/callback`: the end of a debug login (started at `/sso/debug/login`).
//!
//! The login is verified exactly as a real one (browser binding, single-use state, PKCE, nonce,
//! id_token, userinfo), its claims are mapped and the access policy is evaluated, but nothing is
//! written to the user store and no session is set. The answer is an HTML page of the identity
//! the real login would produce, the policy's verdict, and the claims received, with every
//! `access_token`, `id_token` and `refresh_token` removed at any depth and every value escaped.
//! Off unless [`debug_endpoints`](crate::SsoLayerBuilder::debug_endpoints) is on.

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

use super::callback::{Verified, verify};
use super::complete::prospective_role;
use super::html::{html_escape, html_escape_lines, page};
use crate::error::SsoError;
use crate::layer::Shared;

/// Claim names never shown, at any depth (compared ASCII case-insensitively).
const BEARER_CREDENTIALS: [&str; 3] = ["access_token", "id_token", "refresh_token"];

pub(super) async fn run(
    shared: &Shared,
    provider_index: usize,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let Verified {
        provider,
        user,
        user_id,
        claims,
        provider_outcome,
        ..
    } = verify(shared, provider_index, parts, true).await?;
    let user_id = user_id
        .ok_or_else(|| SsoError::unauthorized("the identity provider sent no usable user id"))?;

    // The policy as the real login applies it, reading the store but writing nothing.
    let lookup = crate::store::LoginLookup {
        user_id: &user_id,
        provider: provider.config.provider_name(),
        link_by_email: shared.link_accounts_by_email,
    };
    let verdict = match shared.policy.check_login(&user) {
        Ok(()) => match prospective_role(shared, &user, &lookup).await {
            Ok(role) => shared.policy.check_ui_access(role).map(|()| role),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    tracing::info!(user_id = %user_id, provider = %provider.config.name, allowed = verdict.is_ok(), "SSO debug login");

    let mut identity = serde_json::to_value(&user).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut identity {
        map.insert("user_id".to_owned(), Value::String(user_id));
        if let Ok(role) = &verdict {
            map.insert("role".to_owned(), Value::String(role.as_str().to_owned()));
        }
    }
    let mut claims = Value::Object(claims);
    strip_credentials(&mut claims);
    let verdict_html = match &verdict {
        Ok(_) => "<p>Allowed: the real login would let this user in.</p>".to_owned(),
        Err(e) => format!(
            "<p>Refused ({}): {}</p>",
            e.status().as_u16(),
            html_escape(e.message())
        ),
    };
    // Microsoft: what Graph and the id_token said about groups and app roles (as upstream shows).
    let microsoft_html = match &provider_outcome.microsoft {
        None => String::new(),
        Some(found) => {
            let teams: Vec<Value> = found
                .service_principal_teams
                .iter()
                .map(|t| serde_json::json!({"id": t.id, "display_name": t.alias}))
                .collect();
            let found = serde_json::json!({
                "graph_groups": found.graph_groups,
                "app_roles": found.app_roles,
                "service_principal_teams": teams,
            });
            format!(
                "<h2>Microsoft</h2>\n<p>The user's Graph groups that count (with a service principal, only those \
                 assigned to it), the id_token's app roles, and the service principal's groups \
                 that would become teams.</p>\n<pre>{}</pre>\n",
                html_escape_lines(&pretty(&found))
            )
        }
    };
    let body = format!(
        "<p>Provider: <code>{provider}</code>. Nothing was stored and no session was set.</p>\n\
         <h2>Access policy</h2>\n{verdict_html}\n{microsoft_html}\
         <h2>Identity</h2>\n<p>What the login would store (stored team memberships are added to \
         the teams at a real login).</p>\n<pre>{identity}</pre>\n\
         <h2>Claims received</h2>\n<p>The id_token and userinfo claims, merged, without \
         <code>access_token</code>, <code>id_token</code> or <code>refresh_token</code>.</p>\n\
         <pre>{claims}</pre>",
        provider = html_escape(&provider.config.name),
        identity = html_escape_lines(&pretty(&identity)),
        claims = html_escape_lines(&pretty(&claims)),
    );
    Ok(page(StatusCode::OK, "SSO debug login", &body))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// Removes every bearer credential from `value`, at any depth.
fn strip_credentials(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !BEARER_CREDENTIALS.iter().any(|c| k.eq_ignore_ascii_case(c)));
            map.values_mut().for_each(strip_credentials);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_credentials),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_removed_at_any_depth() {
        let mut v = json!({
            "sub": "a",
            "ID_TOKEN": "x",
            "nested": {"access_token": "x", "keep": [{"refresh_token": "x", "ok": 1}]},
        });
        strip_credentials(&mut v);
        assert_eq!(v, json!({"sub": "a", "nested": {"keep": [{"ok": 1}]}}));
    }
}

//! The Microsoft Entra ID stand-in of [`MockIdp`](super::MockIdp) (see
//! [`MockIdpBuilder::entra`](super::MockIdpBuilder::entra)): Entra-shaped id_tokens and the
//! Microsoft Graph endpoints a login reads.

use std::collections::HashMap;

use http::header::HeaderMap;
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::server::{Resp, bearer_user, json_response, oauth_error};
use super::{Misbehaviour, MockUser, Shared};

/// Where the Graph endpoints live under the provider's issuer.
pub(super) const GRAPH_PREFIX: &str = "/graph/v1.0";

/// The global cloud's authority, which Entra id_tokens name in `iss`.
const AUTHORITY: &str = "https://login.microsoftonline.com";

/// Graph page size unless set with [`MockIdp::set_graph_page_size`](super::MockIdp::set_graph_page_size).
const DEFAULT_PAGE_SIZE: usize = 100;

/// What Graph serves.
#[derive(Debug)]
pub(super) struct GraphState {
    /// `/me/memberOf` directory objects, by user `sub`.
    pub(super) member_of: HashMap<String, Vec<Value>>,
    /// `/servicePrincipals/{id}/appRoleAssignedTo` objects, by service principal id.
    pub(super) app_role_assigned_to: HashMap<String, Vec<Value>>,
    /// Objects per page.
    pub(super) page_size: usize,
}

impl Default for GraphState {
    fn default() -> Self {
        Self {
            member_of: HashMap::new(),
            app_role_assigned_to: HashMap::new(),
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// The v2.0 issuer of tenant `tid`.
pub(super) fn issuer(tid: &str) -> String {
    format!("{AUTHORITY}/{tid}/v2.0")
}

/// The user's tenant: their `tid` claim, else the provider's tenant.
fn tenant_of<'a>(tenant: &'a str, user: &'a MockUser) -> &'a str {
    user.claims
        .get("tid")
        .and_then(Value::as_str)
        .unwrap_or(tenant)
}

/// The user's object id: their `oid` claim, else their `id` claim, else their `sub`.
fn object_id(user: &MockUser) -> Value {
    user.claims
        .get("oid")
        .or_else(|| user.claims.get("id"))
        .cloned()
        .unwrap_or_else(|| json!(user.sub))
}

/// Shapes id_token claims as Entra does: `tid`, `oid`, and `iss` naming the user's tenant
/// (or, with [`Misbehaviour::TenantIssuerMismatch`], another tenant).
pub(super) fn id_token_claims(
    tenant: &str,
    m: &Misbehaviour,
    user: &MockUser,
    claims: &mut Map<String, Value>,
) {
    let tid = tenant_of(tenant, user);
    claims.insert("tid".into(), json!(tid));
    claims.insert("oid".into(), object_id(user));
    claims.insert("ver".into(), json!("2.0"));
    let iss = match m {
        Misbehaviour::TenantIssuerMismatch(other) => issuer(other),
        _ => issuer(tid),
    };
    claims.insert("iss".into(), json!(iss));
}

/// Routes `GET {issuer}/graph/v1.0{rest}`.
pub(super) fn graph(
    shared: &Shared,
    m: &Misbehaviour,
    method: &Method,
    rest: &str,
    query: &str,
    headers: &HeaderMap,
) -> Resp {
    if method != Method::GET {
        return oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "method not allowed",
        );
    }
    let user = match bearer_user(shared, headers) {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    if rest == "/me" {
        return me(m, user);
    }
    if let Misbehaviour::GraphError(status) = m {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return graph_error(status, "the mock provider was told to fail");
    }
    let skip = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("$skiptoken="))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let (objects, page_size) = {
        let state = shared.lock();
        let objects = if rest == "/me/memberOf" {
            Some(
                state
                    .graph
                    .member_of
                    .get(&user.sub)
                    .cloned()
                    .unwrap_or_default(),
            )
        } else {
            rest.strip_prefix("/servicePrincipals/")
                .and_then(|r| r.strip_suffix("/appRoleAssignedTo"))
                .and_then(|sp| state.graph.app_role_assigned_to.get(sp).cloned())
        };
        (objects, state.graph.page_size.max(1))
    };
    let Some(objects) = objects else {
        return graph_error(StatusCode::NOT_FOUND, "no such resource");
    };
    let start = skip.saturating_mul(page_size).min(objects.len());
    let end = start.saturating_add(page_size).min(objects.len());
    let mut page = json!({ "value": objects[start..end] });
    if end < objects.len() {
        page["@odata.nextLink"] = json!(format!(
            "{}{GRAPH_PREFIX}{rest}?$skiptoken={}",
            shared.issuer,
            skip + 1
        ));
    }
    json_response(StatusCode::OK, &page)
}

/// `GET /me`: the user's claims as a Graph profile (no `sub`; `id` is the object id), shaped by
/// the userinfo misbehaviours.
fn me(m: &Misbehaviour, user: MockUser) -> Resp {
    match m {
        Misbehaviour::UserinfoError(status) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            graph_error(status, "the mock provider was told to fail")
        }
        Misbehaviour::UserinfoEmpty => json_response(StatusCode::OK, &json!({})),
        _ => {
            let id = object_id(&user);
            let mut profile = user.claims;
            profile.remove("sub");
            profile.entry("id").or_insert(id);
            json_response(StatusCode::OK, &Value::Object(profile))
        }
    }
}

/// Graph's error shape: `{"error": {"code", "message"}}`.
fn graph_error(status: StatusCode, message: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": "MockIdpGraphError", "message": message}}),
    )
}

//! Microsoft Entra ID: what a login needs beyond OpenID Connect.
//!
//! - [`tenant`]: the id_token's `iss` must be its own tenant's issuer, and the tenant allowed.
//! - [`graph`]: the user's groups from Microsoft Graph (`/me/memberOf`, paged), filtered to the
//!   groups assigned to the configured enterprise application (service principal).
//! - here: the order of the steps, the Graph failure policy, and the role (app roles from the
//!   id_token, or role mappings over the groups).

use serde_json::{Map, Value};

use super::NamedTeam;
use crate::claims::{claim_at, groups_from_value, microsoft_app_role};
use crate::config::Problems;
use crate::error::SsoError;
use crate::identity::SsoUser;
use crate::layer::Shared;
use crate::policy::UiAccessMode;
use crate::runtime::ProviderRuntime;

pub(crate) mod graph;
pub(crate) mod tenant;

/// Microsoft Graph v1.0.
pub(crate) const DEFAULT_GRAPH_BASE_URL: &str = "https://graph.microsoft.com/v1.0";

/// The Entra ID settings of a [`Provider`](crate::provider::Provider) (set with its Microsoft
/// setters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MicrosoftSettings {
    /// Graph's base URL, without a trailing slash.
    pub(crate) graph_base_url: String,
    /// The enterprise application whose assigned groups count.
    pub(crate) service_principal_id: Option<String>,
    /// Continue without groups whenever Graph fails (upstream's behaviour).
    pub(crate) graph_fail_open: bool,
    /// Tenant ids allowed to log in, lower-cased; empty: any.
    pub(crate) allowed_tenants: Vec<String>,
}

impl Default for MicrosoftSettings {
    fn default() -> Self {
        Self {
            graph_base_url: DEFAULT_GRAPH_BASE_URL.to_owned(),
            service_principal_id: None,
            graph_fail_open: false,
            allowed_tenants: Vec::new(),
        }
    }
}

impl MicrosoftSettings {
    pub(crate) fn validate(&self, who: &str, p: &mut Problems) {
        if let Err(e) = crate::config::check_idp_url(&self.graph_base_url) {
            p.add(who, format!("Graph base URL {e}"));
        }
        if let Some(id) = &self.service_principal_id
            && !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            p.add(
                who,
                "service principal id must be an object id (letters, digits and '-')",
            );
        }
        for t in &self.allowed_tenants {
            if !crate::provider::is_guid(t) {
                p.add(
                    who,
                    format!("allowed tenant {t:?} is not a tenant id (GUID)"),
                );
            }
        }
    }
}

/// The Entra ID part of a login, in order: the id_token is required and must belong to an
/// allowed tenant; its `oid` is the user id when the Graph profile gave none; the groups come
/// from Graph (failure policy per [`MicrosoftSettings::graph_fail_open`]) and become team ids;
/// the role is the id_token's first valid app role, or the role mappings' answer over the
/// groups when mappings are configured.
///
/// Returns the teams to create (the service principal's groups), left for after the access
/// policy.
pub(crate) async fn finish_login(
    shared: &Shared,
    provider: &ProviderRuntime,
    access_token: &str,
    id_token_claims: &Map<String, Value>,
    user: &mut SsoUser,
) -> Result<(Vec<NamedTeam>, Vec<String>), SsoError> {
    let config = &provider.config;
    let settings = &config.microsoft;
    if id_token_claims.is_empty() {
        return Err(SsoError::unauthorized(
            "Microsoft sent no id_token: the login cannot be tied to a tenant and a user object",
        ));
    }
    tenant::check_tenant(settings, id_token_claims)?;
    let oid = id_token_claims
        .get("oid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            SsoError::unauthorized(
                "the Microsoft id_token carries no object id (`oid`; the `profile` scope is required)",
            )
        })?;
    // Graph's `id` is the object id (the callback checked they agree): an empty profile still
    // has a user.
    if user.id.is_none() {
        user.id = Some(oid.to_owned());
    }

    let depends_on_groups = config.claims.role_mappings.is_some()
        || settings.service_principal_id.is_some()
        || matches!(
            shared.policy.ui_access_mode,
            UiAccessMode::RestrictedSsoGroup { .. }
        );
    let groups = match graph::user_groups(provider.http(), settings, access_token).await {
        Ok(groups) => groups,
        Err(e) if settings.graph_fail_open || !depends_on_groups => {
            tracing::warn!(
                provider = %config.name,
                error = %e.message(),
                fail_open = settings.graph_fail_open,
                "Microsoft Graph group lookup failed; the login goes on without groups"
            );
            graph::UserGroups::default()
        }
        Err(e) => {
            tracing::warn!(provider = %config.name, error = %e.message(), "Microsoft Graph group lookup failed; login refused");
            return Err(SsoError::bad_gateway(format!(
                "Microsoft Graph group lookup failed, and this login depends on the user's groups \
                 (role mappings, restricted SSO group or service principal): {}",
                e.message()
            )));
        }
    };
    tracing::debug!(provider = %config.name, groups = groups.ids.len(), "Microsoft Graph groups");

    user.role = match &config.claims.role_mappings {
        Some(rm) => {
            // The Graph groups, and any the id_token itself carries under the group claim.
            let mut all = groups.ids.clone();
            if let Some(v) = claim_at(id_token_claims, &rm.group_claim) {
                all.extend(groups_from_value(v));
            }
            rm.role_for_groups(&all)
        }
        None => microsoft_app_role(id_token_claims),
    };
    for id in &groups.ids {
        if !user.team_ids.contains(id) {
            user.team_ids.push(id.clone());
        }
    }
    Ok((groups.service_principal_teams, groups.ids))
}

/// The app roles the id_token carries, as listed (`app_roles`, else `roles`; strings only), for
/// the debug page.
pub(crate) fn listed_app_roles(id_token_claims: &Map<String, Value>) -> Vec<String> {
    ["app_roles", "roles"]
        .iter()
        .filter_map(|k| id_token_claims.get(*k)?.as_array())
        .find(|list| !list.is_empty())
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

//! What a login needs beyond OpenID Connect for the provider families that have extras:
//! Microsoft Entra ID ([`microsoft`]: tenant checks, Graph groups, service-principal teams, app
//! roles) and Google ([`google`]: hosted domain, verified e-mail).
//!
//! The callback calls [`finish_login`] once the user is mapped from the claims, and
//! [`ProviderOutcome::create_teams`] once the access policy has let the login through.

use serde_json::{Map, Value};

use crate::error::SsoError;
use crate::identity::SsoUser;
use crate::layer::Shared;
use crate::provider::ProviderKind;
use crate::runtime::ProviderRuntime;

pub(crate) mod google;
pub(crate) mod microsoft;

/// A team the provider says should exist, with its display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedTeam {
    pub(crate) id: String,
    pub(crate) alias: Option<String>,
}

/// What the provider-specific step leaves for after the access policy.
#[derive(Debug, Default)]
pub(crate) struct ProviderOutcome {
    /// Teams to create when missing (Microsoft: the groups assigned to the service principal).
    teams: Vec<NamedTeam>,
    /// Microsoft: the Graph group ids and the id_token's app roles, as found (the debug page
    /// shows them).
    pub(crate) microsoft: Option<MicrosoftFindings>,
}

/// What a Microsoft login found, for the debug page.
#[derive(Debug, Default)]
pub(crate) struct MicrosoftFindings {
    /// The user's Graph group ids.
    pub(crate) graph_groups: Vec<String>,
    /// The id_token's app roles (`app_roles`, else `roles`), as listed.
    pub(crate) app_roles: Vec<String>,
    /// The service-principal groups that become teams (id, display name).
    pub(crate) service_principal_teams: Vec<NamedTeam>,
}

impl ProviderOutcome {
    /// Creates the teams that do not exist yet (named, with the new-team defaults). Called only
    /// once the login passed the access policy, so a refused login writes nothing.
    pub(crate) async fn create_teams(&self, shared: &Shared) -> Result<(), SsoError> {
        crate::store::ensure_named_teams(&shared.store, &self.teams, &shared.team_defaults).await
    }
}

/// The provider family's own checks and claims, after the generic claim mapping and before the
/// access policy. `id_token_claims` are the verified id_token's claims (empty without one).
pub(crate) async fn finish_login(
    shared: &Shared,
    provider: &ProviderRuntime,
    access_token: &str,
    id_token_claims: &Map<String, Value>,
    user: &mut SsoUser,
) -> Result<ProviderOutcome, SsoError> {
    match provider.config.kind() {
        ProviderKind::Generic => Ok(ProviderOutcome::default()),
        ProviderKind::Google => {
            google::check_login(shared, &provider.config, id_token_claims)?;
            Ok(ProviderOutcome::default())
        }
        ProviderKind::Microsoft => {
            let (teams, graph_groups) =
                microsoft::finish_login(shared, provider, access_token, id_token_claims, user)
                    .await?;
            Ok(ProviderOutcome {
                microsoft: Some(MicrosoftFindings {
                    graph_groups,
                    app_roles: microsoft::listed_app_roles(id_token_claims),
                    service_principal_teams: teams.clone(),
                }),
                teams,
            })
        }
    }
}

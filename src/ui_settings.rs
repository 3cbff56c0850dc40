//! [`UiSettings`]: what `GET /sso/get/ui_settings` answers beyond the layer's own configuration.

use serde_json::{Map, Value};

/// The values `GET /sso/get/ui_settings` reports that are not the layer's own configuration:
/// upstream's fields the admin UI reads, and any values of the integrator's.
///
/// Set them with [`SsoLayerBuilder::ui_settings`](crate::SsoLayerBuilder::ui_settings) (and
/// [`ui_setting`](crate::SsoLayerBuilder::ui_setting) for one extra value);
/// [`SsoLayer::from_env`](crate::SsoLayer::from_env) reads `LITELLM_UI_API_DOC_BASE_URL` and
/// `PROXY_DEFAULT_TEAM_DISABLED`.
///
/// The answer always carries upstream's fields: `PROXY_BASE_URL`, `PROXY_LOGOUT_URL`,
/// `LITELLM_UI_API_DOC_BASE_URL`, `DEFAULT_TEAM_DISABLED`, `SSO_ENABLED`,
/// `NUM_SPEND_LOGS_ROWS`, `DISABLE_EXPENSIVE_DB_QUERIES`; and this crate's `SERVER_ROOT_PATH`,
/// `SSO_PROVIDERS`, `LOGIN_URL` and `UI_ACCESS_MODE`. [`extra`](Self::extra) values are merged
/// in; on a name clash the fields above win.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UiSettings {
    /// `LITELLM_UI_API_DOC_BASE_URL`: where the UI's API documentation links point (`null`
    /// when unset).
    pub api_doc_base_url: Option<String>,
    /// `DEFAULT_TEAM_DISABLED` (environment: `PROXY_DEFAULT_TEAM_DISABLED`).
    pub default_team_disabled: bool,
    /// `NUM_SPEND_LOGS_ROWS`: the proxy's spend-log row count, if the integrator knows it
    /// (`null` otherwise).
    pub num_spend_logs_rows: Option<u64>,
    /// `DISABLE_EXPENSIVE_DB_QUERIES`: tells the UI to avoid queries over the spend logs.
    pub disable_expensive_db_queries: bool,
    /// The integrator's own values, merged into the answer.
    pub extra: Map<String, Value>,
}

//! UI key issuance (upstream `generate_key_helper_fn` with the UI defaults).

use std::time::Duration;

use crate::identity::UserRole;

/// The team a UI key belongs to (upstream `UI_SESSION_TOKEN_TEAM_ID`).
pub const UI_KEY_TEAM_ID: &str = "litellm-dashboard";

/// What the UI key issuer is asked: mint the credential the LiteLLM admin UI will use for this
/// user (upstream mints a virtual key with `generate_key_helper_fn`).
///
/// It runs once per successful login, after the access policy and the user store have accepted
/// the user and just before the session is issued; the key it answers becomes the session
/// token's `key` field, which the LiteLLM UI reads from the `token` cookie and sends back as its
/// API key. Without an issuer, `key` is the session id and the session token itself is the
/// credential. The key is never logged or put in an error.
///
/// ```
/// use std::time::Duration;
/// use tower::{ServiceExt, service_fn};
/// use tower_sso::UserRole;
/// use tower_sso::hooks::{UiKeyRequest, UiKeyResponse};
///
/// // Mint a key at your LiteLLM proxy (`POST /key/generate` with the master key) or in your
/// // own key store; here a made-up one.
/// async fn mint(req: UiKeyRequest) -> Result<UiKeyResponse, std::io::Error> {
///     let key = format!("sk-ui-{}-{}", req.user_id, req.duration.as_secs());
///     Ok(UiKeyResponse::Key(key))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let req = UiKeyRequest::new("alice", UserRole::InternalUser, Duration::from_secs(86_400));
/// assert_eq!(req.team_id, "litellm-dashboard");
/// let res = service_fn(mint).oneshot(req).await?;
/// assert_eq!(res, UiKeyResponse::Key("sk-ui-alice-86400".into()));
///
/// let sso = tower_sso::SsoLayer::builder()
///     .base_url("https://gateway.example.com")
///     .session_secret("a long random secret, at least 16 bytes")
///     .ui_key_fn(mint)
///     .max_ui_session_budget(Some(25.0))
///     .build()?;
/// # let _ = sso;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UiKeyRequest {
    /// The user id, as stored.
    pub user_id: String,
    /// The e-mail.
    pub email: Option<String>,
    /// The user's role after the access policy (`PROXY_ADMIN_ID` promotion included).
    pub role: UserRole,
    /// The models the stored user may use.
    pub models: Vec<String>,
    /// The team the key belongs to: [`UI_KEY_TEAM_ID`].
    pub team_id: String,
    /// How long the key should last: the session duration (`LITELLM_UI_SESSION_DURATION`).
    pub duration: Duration,
    /// The key's budget (upstream `max_ui_session_budget`; see
    /// [`SsoLayerBuilder::max_ui_session_budget`](crate::SsoLayerBuilder::max_ui_session_budget)).
    pub max_budget: Option<f64>,
}

impl UiKeyRequest {
    /// A request for `user_id` with `role`, lasting `duration`, with upstream's defaults for the
    /// rest (team [`UI_KEY_TEAM_ID`], budget
    /// [`DEFAULT_UI_SESSION_BUDGET`](super::DEFAULT_UI_SESSION_BUDGET), no models, no e-mail).
    pub fn new(user_id: impl Into<String>, role: UserRole, duration: Duration) -> Self {
        Self {
            user_id: user_id.into(),
            email: None,
            role,
            models: Vec::new(),
            team_id: UI_KEY_TEAM_ID.to_owned(),
            duration,
            max_budget: Some(super::DEFAULT_UI_SESSION_BUDGET),
        }
    }
}

/// The UI key issuer's answer.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum UiKeyResponse {
    /// The key: 1 to [`MAX_UI_KEY_LEN`] bytes, no control characters or surrounding spaces
    /// (anything else refuses the login with 502).
    Key(String),
    /// Refuse the login (403) with a message shown to the user (HTML-escaped).
    Refuse {
        /// The message.
        message: String,
    },
}

/// The longest UI key accepted, in bytes (the session token must still fit in a cookie).
pub const MAX_UI_KEY_LEN: usize = 512;

impl std::fmt::Debug for UiKeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A credential: never printed.
            UiKeyResponse::Key(k) => write!(f, "Key(<{} bytes>)", k.len()),
            UiKeyResponse::Refuse { message } => {
                f.debug_struct("Refuse").field("message", message).finish()
            }
        }
    }
}

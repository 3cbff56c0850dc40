//! Integrator hooks: shape a login in code.
//!
//! | hook | upstream | default |
//! |---|---|---|
//! | [custom SSO](CustomSsoRequest) ([`SsoLayerBuilder::custom_sso`]) | `user_custom_sso` | none: the mapped claims are used as they are |
//! | [UI key issuance](UiKeyRequest) ([`SsoLayerBuilder::ui_key_issuer`]) | `generate_key_helper_fn` with the UI defaults | none: the session token is the credential |
//! | [header sign-in](HeaderSignIn) ([`SsoLayerBuilder::header_sign_in`]) | `user_custom_ui_sso_sign_in_handler` | off |
//! | admin UI switch ([`SsoLayerBuilder::disable_admin_ui`]) | `DISABLE_ADMIN_UI` | on (the UI login works) |
//!
//! Each hook is a [`tower::Service`] with a small request type and a small response enum, so it
//! can be wrapped with any tower middleware and tested on its own with `oneshot`; the `*_fn`
//! builder methods take an async closure instead. A hook runs under a timeout
//! ([`SsoLayerBuilder::hook_timeout`], default [`DEFAULT_HOOK_TIMEOUT`]) in a task of its own:
//! an error or a panic refuses the login with 502, a timeout with 503, and neither ever reaches
//! the user's browser beyond a short message (the error itself is logged).
//!
//! [`SsoLayerBuilder::custom_sso`]: crate::SsoLayerBuilder::custom_sso
//! [`SsoLayerBuilder::ui_key_issuer`]: crate::SsoLayerBuilder::ui_key_issuer
//! [`SsoLayerBuilder::header_sign_in`]: crate::SsoLayerBuilder::header_sign_in
//! [`SsoLayerBuilder::disable_admin_ui`]: crate::SsoLayerBuilder::disable_admin_ui
//! [`SsoLayerBuilder::hook_timeout`]: crate::SsoLayerBuilder::hook_timeout

use std::time::Duration;

use tower::BoxError;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::error::SsoError;

mod custom_sso;
mod header_sign_in;
mod ui_key;

pub use self::custom_sso::{CustomSsoRequest, CustomSsoResponse, LoginSource, SsoUserValues};
pub use self::header_sign_in::HeaderSignIn;
pub(crate) use self::header_sign_in::HeaderSignInConfig;
pub use self::ui_key::{MAX_UI_KEY_LEN, UI_KEY_TEAM_ID, UiKeyRequest, UiKeyResponse};

/// How long a hook may take unless configured: 5 s.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// The budget of a minted UI key unless configured (upstream `max_ui_session_budget`: 10 USD).
pub const DEFAULT_UI_SESSION_BUDGET: f64 = 10.0;

/// A type-erased custom SSO hook, as the layer holds it.
pub type CustomSso = BoxCloneSyncService<CustomSsoRequest, CustomSsoResponse, BoxError>;

/// A type-erased UI key issuer, as the layer holds it.
pub type UiKeyIssuer = BoxCloneSyncService<UiKeyRequest, UiKeyResponse, BoxError>;

/// The hooks and switches of one layer, built once.
#[derive(Clone)]
pub(crate) struct Hooks {
    pub(crate) custom_sso: Option<CustomSso>,
    pub(crate) ui_key: Option<UiKeyIssuer>,
    pub(crate) timeout: Duration,
    /// The budget put in [`UiKeyRequest::max_budget`].
    pub(crate) ui_key_max_budget: Option<f64>,
    pub(crate) header_sign_in: Option<HeaderSignInConfig>,
    /// `DISABLE_ADMIN_UI`: login start and callback answer the "admin UI disabled" page.
    pub(crate) admin_ui_disabled: bool,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            custom_sso: None,
            ui_key: None,
            timeout: DEFAULT_HOOK_TIMEOUT,
            ui_key_max_budget: Some(DEFAULT_UI_SESSION_BUDGET),
            header_sign_in: None,
            admin_ui_disabled: false,
        }
    }
}

/// Calls `hook` with `req` in a task of its own, under `timeout`. Errors, panics and timeouts
/// become short [`SsoError`]s (502, 502, 503); the hook's error is logged, never shown.
pub(crate) async fn call_hook<Req, Res>(
    hook: &BoxCloneSyncService<Req, Res, BoxError>,
    req: Req,
    timeout: Duration,
    name: &'static str,
) -> Result<Res, SsoError>
where
    Req: Send + 'static,
    Res: Send + 'static,
{
    let mut task = tokio::spawn(hook.clone().oneshot(req));
    match tokio::time::timeout(timeout, &mut task).await {
        Ok(Ok(Ok(res))) => Ok(res),
        Ok(Ok(Err(e))) => {
            tracing::warn!(hook = name, error = %e, "SSO login refused: a hook failed");
            Err(SsoError::bad_gateway(format!(
                "the {name} hook failed: the login cannot be completed, try again later"
            )))
        }
        Ok(Err(e)) => {
            tracing::error!(
                hook = name,
                panicked = e.is_panic(),
                "SSO login refused: a hook did not finish"
            );
            Err(SsoError::bad_gateway(format!(
                "the {name} hook failed: the login cannot be completed, try again later"
            )))
        }
        Err(_) => {
            task.abort();
            tracing::warn!(
                hook = name,
                timeout_ms = timeout.as_millis() as u64,
                "SSO login refused: a hook timed out"
            );
            Err(SsoError::unavailable(format!(
                "the {name} hook did not answer in time: try again later"
            )))
        }
    }
}

/// A message a hook refused the login with, made safe to show: HTML-escaped, without control
/// characters, at most 300 characters; a generic one when empty.
pub(crate) fn refusal_message(message: &str) -> String {
    let trimmed: String = message.trim().chars().take(300).collect();
    if trimmed.is_empty() {
        "the login was refused".to_owned()
    } else {
        crate::endpoints::html_escape(&trimmed)
    }
}

/// Whether `text` is usable as a single-line value (an id, a key): 1 to `max` bytes, no control
/// characters, no surrounding whitespace.
pub(crate) fn plain_value(text: &str, max: usize) -> bool {
    !text.is_empty()
        && text.len() <= max
        && text.trim() == text
        && !text.chars().any(char::is_control)
}

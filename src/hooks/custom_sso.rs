//! The custom SSO hook (upstream `user_custom_sso`).

use serde_json::{Map, Value};

use crate::identity::{SsoUser, UserRole};

/// The bearer credentials never handed to a hook, whatever the IdP sent.
pub(crate) const BEARER_CLAIMS: [&str; 3] = ["access_token", "id_token", "refresh_token"];

/// How the user proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginSource {
    /// An identity provider's callback (`/sso/callback`).
    IdentityProvider,
    /// [Header sign-in](super::HeaderSignIn): a trusted proxy named the user.
    TrustedProxy,
}

/// The values the rest of a login uses: what the [custom SSO hook](CustomSsoRequest) may change.
///
/// [`CustomSsoRequest::values`] holds what the login would use without a hook; return it changed
/// (or as it is) in [`CustomSsoResponse::Accept`].
///
/// - `user_id`: the stored user's id (`None` or empty refuses the login: no usable id). An id
///   the hook sets is used as it is (no `"<provider>:"` prefix).
/// - `email`: lower-cased (ASCII) before use. When the hook changes it, the IdP no longer vouches
///   for it: it is treated as unverified (it cannot link the login to a stored user by e-mail).
/// - `role`: the role the IdP grants, after role mappings; it wins over the stored role, like an
///   IdP role. `None`: the stored role, else the new-user default.
/// - `models`, `max_budget`, `budget_duration`: a **new** user is created with them (they start
///   as [`NewUserDefaults`](crate::store::NewUserDefaults)); an existing user keeps the stored
///   ones (the store answers for them after the first login).
/// - `team_ids`: the teams the user is added to (missing teams are created), as IdP groups are.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SsoUserValues {
    /// The user id.
    pub user_id: Option<String>,
    /// The e-mail.
    pub email: Option<String>,
    /// The role.
    pub role: Option<UserRole>,
    /// Models a new user may use.
    pub models: Vec<String>,
    /// A new user's budget.
    pub max_budget: Option<f64>,
    /// A new user's budget period (`30d`, ...).
    pub budget_duration: Option<String>,
    /// Team ids.
    pub team_ids: Vec<String>,
}

/// What the custom SSO hook is asked: the mapped user, the raw claims, and the values the login
/// would use.
///
/// The hook runs after claim mapping and before the access policy and the user store, on every
/// login (IdP callbacks and [header sign-ins](super::HeaderSignIn)). It answers
/// [`CustomSsoResponse::Accept`] with the values to use, or [`CustomSsoResponse::Refuse`] with a
/// message shown to the user (403). Its errors and timeouts refuse the login too (502, 503).
///
/// ```
/// use tower::{ServiceExt, service_fn};
/// use tower_sso::UserRole;
/// use tower_sso::hooks::{CustomSsoRequest, CustomSsoResponse};
///
/// // Contractors get the viewer role and one model; nobody from the old domain gets in.
/// async fn shape(req: CustomSsoRequest) -> Result<CustomSsoResponse, std::convert::Infallible> {
///     let email = req.values.email.clone().unwrap_or_default();
///     if email.ends_with("@old.example.com") {
///         return Ok(CustomSsoResponse::refuse("please use your new account"));
///     }
///     let mut values = req.values;
///     if req.claims.get("employee_type").and_then(|v| v.as_str()) == Some("contractor") {
///         values.role = Some(UserRole::InternalUserViewer);
///         values.models = vec!["gpt-4o-mini".into()];
///         values.max_budget = Some(5.0);
///     }
///     Ok(CustomSsoResponse::Accept(values))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Test the hook on its own...
/// let mut claims = serde_json::Map::new();
/// claims.insert("employee_type".into(), "contractor".into());
/// let user = tower_sso::SsoUser {
///     id: Some("dana".into()),
///     email: Some("dana@example.com".into()),
///     ..Default::default()
/// };
/// let res = service_fn(shape).oneshot(CustomSsoRequest::new(user, claims)).await?;
/// let CustomSsoResponse::Accept(values) = res else { panic!("refused") };
/// assert_eq!(values.role, Some(UserRole::InternalUserViewer));
///
/// // ...then put it in front of every login.
/// let sso = tower_sso::SsoLayer::builder()
///     .base_url("https://gateway.example.com")
///     .session_secret("a long random secret, at least 16 bytes")
///     .custom_sso_fn(shape)
///     .build()?;
/// # let _ = sso;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CustomSsoRequest {
    /// The user as the claim mapping made it.
    pub user: SsoUser,
    /// The IdP's claims (id_token and userinfo, merged), without the bearer credentials
    /// (`access_token`, `id_token`, `refresh_token`). Empty for a header sign-in.
    pub claims: Map<String, Value>,
    /// The configured name of the provider the login came through (`trusted-proxy` for a header
    /// sign-in).
    pub provider: String,
    /// How the user proved who they are.
    pub source: LoginSource,
    /// The values the login uses unless the hook changes them.
    pub values: SsoUserValues,
}

impl CustomSsoRequest {
    /// A request for `user` with `claims` (bearer credentials removed), as an IdP login of the
    /// first provider would make it: `values` from the user (its id, else its verified e-mail,
    /// else its subject; its e-mail, role and teams), no models or budget. For testing a hook.
    pub fn new(user: SsoUser, mut claims: Map<String, Value>) -> Self {
        for k in BEARER_CLAIMS {
            claims.remove(k);
        }
        let values = SsoUserValues {
            user_id: crate::claims::fallback_user_id(&user),
            email: user.email.clone(),
            role: user.role,
            team_ids: user.team_ids.clone(),
            ..SsoUserValues::default()
        };
        Self {
            provider: user.provider.clone().unwrap_or_default(),
            user,
            claims,
            source: LoginSource::IdentityProvider,
            values,
        }
    }

    /// Accepts the login with the values as they are.
    pub fn accept(self) -> CustomSsoResponse {
        CustomSsoResponse::Accept(self.values)
    }
}

/// The custom SSO hook's answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CustomSsoResponse {
    /// Go on with these values.
    Accept(SsoUserValues),
    /// Refuse the login (403). The message is shown to the user (HTML-escaped, at most 300
    /// characters): say what to do, not why in detail.
    Refuse {
        /// The message.
        message: String,
    },
}

impl CustomSsoResponse {
    /// [`CustomSsoResponse::Refuse`] with `message`.
    pub fn refuse(message: impl Into<String>) -> Self {
        CustomSsoResponse::Refuse {
            message: message.into(),
        }
    }
}

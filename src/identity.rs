//! Who the user is: [`Identity`] (what handlers read from the request extensions), [`UserRole`], and
//! [`SsoUser`] (what a login learned from the identity provider, after claim mapping).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The LiteLLM user roles, from most to least privileged where that order matters for role mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// Full administrator of the proxy.
    ProxyAdmin,
    /// Read-only administrator.
    #[serde(rename = "proxy_admin_viewer")]
    ProxyAdminViewer,
    /// Administrator of an organisation.
    OrgAdmin,
    /// Regular user.
    InternalUser,
    /// Read-only user (the default for new SSO users).
    InternalUserViewer,
    /// A team (service) principal.
    Team,
    /// An end customer.
    Customer,
}

impl UserRole {
    /// Every role, in declaration order.
    pub const ALL: [UserRole; 7] = [
        UserRole::ProxyAdmin,
        UserRole::ProxyAdminViewer,
        UserRole::OrgAdmin,
        UserRole::InternalUser,
        UserRole::InternalUserViewer,
        UserRole::Team,
        UserRole::Customer,
    ];

    /// The wire name (`proxy_admin`, `internal_user_viewer`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::ProxyAdmin => "proxy_admin",
            UserRole::ProxyAdminViewer => "proxy_admin_viewer",
            UserRole::OrgAdmin => "org_admin",
            UserRole::InternalUser => "internal_user",
            UserRole::InternalUserViewer => "internal_user_viewer",
            UserRole::Team => "team",
            UserRole::Customer => "customer",
        }
    }

    /// Whether this role may use the admin UI when the UI access mode is `admin_only`.
    pub fn is_admin(self) -> bool {
        matches!(self, UserRole::ProxyAdmin | UserRole::ProxyAdminViewer)
    }

    /// The role-mapping rank: `proxy_admin` > `proxy_admin_viewer` > `internal_user` >
    /// `internal_user_viewer`. Other roles are never the result of a group mapping (`None`).
    pub fn mapping_rank(self) -> Option<u8> {
        match self {
            UserRole::ProxyAdmin => Some(4),
            UserRole::ProxyAdminViewer => Some(3),
            UserRole::InternalUser => Some(2),
            UserRole::InternalUserViewer => Some(1),
            _ => None,
        }
    }
}

impl fmt::Display for UserRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the [`UserRole`] names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRole(pub String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown user role {:?} (expected one of: ", self.0)?;
        for (i, r) in UserRole::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(r.as_str())?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for UnknownRole {}

impl FromStr for UserRole {
    type Err = UnknownRole;

    /// Case-insensitive, surrounding white space ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        UserRole::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// What a login learned about the user from the identity provider, after claim mapping and before
/// the access policy and the user store have had their say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SsoUser {
    /// The user id claim (`GENERIC_USER_ID_ATTRIBUTE`, default `sub`; upstream
    /// `preferred_username`).
    pub id: Option<String>,
    /// The e-mail, lower-cased (ASCII letters only: no Unicode case folding). `None` when the IdP
    /// sent none, or sent one it marks unverified (`email_verified` is `false`): such an address
    /// is dropped at claim mapping and never stored, put in the session or sent upstream.
    pub email: Option<String>,
    /// Whether the IdP vouches for the e-mail (the `email_verified` claim: `true`/`false`, or
    /// the strings `"true"`/`"false"`). `None` when the IdP did not say (Entra ID / Graph never
    /// does: such an e-mail is accepted), when it said something else, or when there is no
    /// e-mail. `Some(false)` comes with `email: None` (the address was dropped). Only
    /// `Some(true)` lets the e-mail link a login to a stored user, claim an unbound stored user,
    /// or serve as the user id.
    pub email_verified: Option<bool>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// The provider name (`generic`, `google`, `microsoft`, or the provider attribute's value).
    pub provider: Option<String>,
    /// The role the IdP grants, if any (after role mappings).
    pub role: Option<UserRole>,
    /// Team (group) ids from the IdP.
    pub team_ids: Vec<String>,
    /// Extra attributes (`GENERIC_USER_EXTRA_ATTRIBUTES`), keyed by the configured path.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The id_token `sub`, when the IdP sent one.
    pub subject: Option<String>,
}

/// The authenticated user, inserted into the request extensions of every request the layer forwards.
///
/// Cheap to clone (one reference count). Read it with
/// `req.extensions().get::<Identity>()`, or with the axum extractor (feature `axum`).
#[derive(Clone, PartialEq)]
pub struct Identity {
    inner: Arc<IdentityData>,
}

/// The fields of an [`Identity`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityData {
    /// The user id.
    pub user_id: String,
    /// The e-mail, lower-cased.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// The user's role.
    pub role: UserRole,
    /// Teams the user belongs to.
    pub team_ids: Vec<String>,
    /// The provider the user logged in through.
    pub provider: Option<String>,
    /// Extra attributes mapped from the IdP's claims.
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The session's unique id.
    pub session_id: String,
    /// When the session expires, in seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Identity {
    /// Wraps the given fields.
    pub fn new(data: IdentityData) -> Self {
        Self {
            inner: Arc::new(data),
        }
    }

    /// All fields.
    pub fn data(&self) -> &IdentityData {
        &self.inner
    }

    /// The user id.
    pub fn user_id(&self) -> &str {
        &self.inner.user_id
    }

    /// The e-mail, lower-cased.
    pub fn email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }

    /// Display name.
    pub fn display_name(&self) -> Option<&str> {
        self.inner.display_name.as_deref()
    }

    /// The user's role.
    pub fn role(&self) -> UserRole {
        self.inner.role
    }

    /// Teams the user belongs to.
    pub fn team_ids(&self) -> &[String] {
        &self.inner.team_ids
    }

    /// The provider the user logged in through.
    pub fn provider(&self) -> Option<&str> {
        self.inner.provider.as_deref()
    }

    /// Extra attributes mapped from the IdP's claims.
    pub fn attributes(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.inner.attributes
    }

    /// The session's unique id.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// When the session expires, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.inner.expires_at
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Serialize for Identity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_case_insensitively() {
        assert_eq!(
            "PROXY_ADMIN".parse::<UserRole>().unwrap(),
            UserRole::ProxyAdmin
        );
        assert_eq!(
            " internal_user_viewer ".parse::<UserRole>().unwrap(),
            UserRole::InternalUserViewer
        );
        let err = "internal_user_view_only".parse::<UserRole>().unwrap_err();
        assert!(err.to_string().contains("internal_user_viewer"));
    }

    #[test]
    fn roles_serialize_to_wire_names() {
        for r in UserRole::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}

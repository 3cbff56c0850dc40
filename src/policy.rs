//! Who may log in and who may use the UI: allowed e-mail domains, the UI access mode
//! (`admin_only`, `restricted_sso_group`) and the `PROXY_ADMIN_ID` promotion.
//!
//! The e-mail the checks see is the one claim mapping kept: an address the IdP marks
//! unverified is dropped there ([`crate::claims::ClaimMapping::map`]), so with allowed domains
//! such a login is refused as one without an e-mail.
//!
//! The order of the checks follows upstream: [`AccessPolicy::check_login`] runs on the mapped
//! [`SsoUser`] before any user record is created or updated; [`AccessPolicy::effective_role`] and
//! [`AccessPolicy::check_ui_access`] run on the final role. Unlike upstream, `check_ui_access`
//! is meant to run before any session or key is issued, error messages never carry the IdP's
//! answer or the user's groups, and a login without an e-mail is refused when domains are
//! restricted.

use std::fmt;
use std::str::FromStr;

use crate::claims::literal;
use crate::error::SsoError;
use crate::identity::{SsoUser, UserRole};

/// Who may use the UI (`general_settings.ui_access_mode`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UiAccessMode {
    /// Every user who passes the login checks.
    #[default]
    All,
    /// Only `proxy_admin` and `proxy_admin_viewer` ([`UserRole::is_admin`]).
    AdminOnly,
    /// Only members of one IdP group: `group` must be among the user's team ids.
    RestrictedSsoGroup {
        /// The required group (`restricted_sso_group`).
        group: String,
        /// The claim the groups are read from (`sso_group_jwt_field`), when configured. The
        /// policy does not read claims itself: point [`crate::claims::ClaimMapping::team_ids_field`]
        /// at this claim so the groups end up in [`SsoUser::team_ids`].
        field: Option<String>,
    },
}

/// The text given to [`UiAccessMode::from_str`] is not a valid UI access mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUiAccessMode(pub String);

impl fmt::Display for InvalidUiAccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid ui_access_mode: {}", self.0)
    }
}

impl std::error::Error for InvalidUiAccessMode {}

impl FromStr for UiAccessMode {
    type Err = InvalidUiAccessMode;

    /// Accepts (case-insensitively, white space trimmed):
    /// - `admin_only` -> [`UiAccessMode::AdminOnly`];
    /// - `""`, `all`, `user_only` -> [`UiAccessMode::All`] (upstream treats every string other
    ///   than `admin_only` as "no restriction"; here other strings are errors so a typo such as
    ///   `admin-only` does not silently open the UI);
    /// - a JSON or Python-literal dict
    ///   `{"type": "restricted_sso_group", "restricted_sso_group": "G", "sso_group_jwt_field": "groups"}`
    ///   (`sso_group_jwt_field` optional) -> [`UiAccessMode::RestrictedSsoGroup`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.starts_with('{') {
            return Self::parse_dict(t);
        }
        match t.to_ascii_lowercase().as_str() {
            "admin_only" => Ok(UiAccessMode::AdminOnly),
            "" | "all" | "user_only" => Ok(UiAccessMode::All),
            _ => Err(InvalidUiAccessMode(format!(
                "{t:?} (expected \"admin_only\", \"all\" or a restricted_sso_group object)"
            ))),
        }
    }
}

impl UiAccessMode {
    /// Parses the dict form (JSON or Python literal); see [`UiAccessMode::from_str`].
    pub fn parse_dict(text: &str) -> Result<Self, InvalidUiAccessMode> {
        let entries = literal::parse_dict(text).map_err(InvalidUiAccessMode)?;
        let mut kind = None;
        let mut group = None;
        let mut field = None;
        for (key, value) in entries {
            let slot = match key.as_str() {
                "type" => &mut kind,
                "restricted_sso_group" => &mut group,
                "sso_group_jwt_field" => &mut field,
                other => return Err(InvalidUiAccessMode(format!("unknown key {other:?}"))),
            };
            *slot = match value {
                literal::Value::Str(s) => Some(s),
                literal::Value::Null => None,
                literal::Value::List(_) => {
                    return Err(InvalidUiAccessMode(format!("{key:?} must be a string")));
                }
            };
        }
        match kind.as_deref() {
            Some("restricted_sso_group") => {}
            Some(other) => return Err(InvalidUiAccessMode(format!("unknown type {other:?}"))),
            None => return Err(InvalidUiAccessMode("missing \"type\"".to_owned())),
        }
        let group = group
            .filter(|g| !g.is_empty())
            .ok_or_else(|| InvalidUiAccessMode("missing \"restricted_sso_group\"".to_owned()))?;
        Ok(UiAccessMode::RestrictedSsoGroup {
            group,
            field: field.filter(|f| !f.is_empty()),
        })
    }

    /// The upstream name of the mode (`all`, `admin_only`, `restricted_sso_group`).
    pub fn as_str(&self) -> &'static str {
        match self {
            UiAccessMode::All => "all",
            UiAccessMode::AdminOnly => "admin_only",
            UiAccessMode::RestrictedSsoGroup { .. } => "restricted_sso_group",
        }
    }
}

/// The login and UI access rules (`ALLOWED_EMAIL_DOMAINS`, `ui_access_mode`, `PROXY_ADMIN_ID`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Allowed e-mail domains, exact matches (no subdomains). Empty: any e-mail, or none, is
    /// accepted. Build it with [`AccessPolicy::parse_domains`]; entries are compared
    /// case-insensitively either way.
    pub allowed_email_domains: Vec<String>,
    /// Who may use the UI.
    pub ui_access_mode: UiAccessMode,
    /// This user id is promoted to `proxy_admin` at login (in the store and the session), but
    /// only once the stored user is bound to the login's IdP subject: an unbound stored user
    /// with this id is not handed to whichever login first presents the id (see the README's
    /// security notes). With several providers, ids from all but the first are
    /// `"<provider name>:<id>"`.
    pub proxy_admin_id: Option<String>,
}

impl AccessPolicy {
    /// Parses an `ALLOWED_EMAIL_DOMAINS` list: comma-separated, each entry trimmed, lower-cased and
    /// stripped of a leading `@`; empty entries dropped. `" A.com , @example.com,"` ->
    /// `["a.com", "example.com"]`.
    pub fn parse_domains(list: &str) -> Vec<String> {
        list.split(',').filter_map(normalize_domain).collect()
    }

    /// The checks that run on the mapped user before any user record is created or updated:
    ///
    /// 1. E-mail domain, when [`AccessPolicy::allowed_email_domains`] is non-empty: the e-mail
    ///    must be present (else 401), must not be marked unverified by the IdP
    ///    ([`SsoUser::email_verified`] `== Some(false)`: 401), must contain exactly one `@` with a
    ///    non-empty local part, and its domain (ASCII lower-cased, no Unicode case folding) must
    ///    equal one of the allowed domains (401 otherwise). Subdomains do not match.
    ///
    ///    An absent `email_verified` is accepted: some IdPs never send it (Entra ID and its Graph
    ///    profile, for one), and there the domain is as good as the IdP's directory. Upstream
    ///    ignores `email_verified` altogether.
    /// 2. Restricted group, when the mode is [`UiAccessMode::RestrictedSsoGroup`]: the group must
    ///    be in [`SsoUser::team_ids`] (exact match), else 403 with param `restricted_sso_group`.
    pub fn check_login(&self, user: &SsoUser) -> Result<(), SsoError> {
        self.check_email_domain(user.email.as_deref(), user.email_verified)?;
        if let UiAccessMode::RestrictedSsoGroup { group, .. } = &self.ui_access_mode
            && !user.team_ids.iter().any(|t| t == group)
        {
            return Err(SsoError::forbidden(format!(
                "User is not in the restricted SSO group: {group}"
            ))
            .with_param("restricted_sso_group"));
        }
        Ok(())
    }

    fn check_email_domain(
        &self,
        email: Option<&str>,
        email_verified: Option<bool>,
    ) -> Result<(), SsoError> {
        if self.allowed_email_domains.is_empty() {
            return Ok(());
        }
        let Some(email) = email.filter(|e| !e.is_empty()) else {
            return Err(SsoError::unauthorized(
                "The identity provider did not return an email address, and logins are restricted to allowed email domains",
            )
            .with_param("email"));
        };
        if email_verified == Some(false) {
            return Err(SsoError::unauthorized(
                "The email address is not verified by the identity provider, and logins are restricted to allowed email domains",
            )
            .with_param("email"));
        }
        let domain = match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                domain
            }
            _ => {
                return Err(
                    SsoError::unauthorized("The email address is not valid").with_param("email")
                );
            }
        };
        let domain = domain.to_ascii_lowercase();
        let allowed = self
            .allowed_email_domains
            .iter()
            .filter_map(|d| normalize_domain(d))
            .any(|d| d == domain);
        if allowed {
            return Ok(());
        }
        let shown: String = domain.chars().take(255).collect();
        Err(SsoError::unauthorized(format!(
            "The email domain={shown}, is not an allowed email domain. Contact your admin to change this."
        ))
        .with_param("email"))
    }

    /// The role after the `PROXY_ADMIN_ID` promotion: `proxy_admin` when `user_id` equals the
    /// configured id exactly (case-sensitive, non-empty), else `role` unchanged. It does not
    /// know whether the user is bound to the login's subject: callers apply it only to a user
    /// that is (the login flow does).
    pub fn effective_role(&self, user_id: &str, role: UserRole) -> UserRole {
        match self.proxy_admin_id.as_deref() {
            Some(admin) if !admin.is_empty() && admin == user_id => UserRole::ProxyAdmin,
            _ => role,
        }
    }

    /// The UI access check on the final role: in [`UiAccessMode::AdminOnly`] only
    /// `proxy_admin` and `proxy_admin_viewer` pass (403 otherwise). Other modes always pass (the
    /// restricted group is checked in [`AccessPolicy::check_login`]).
    pub fn check_ui_access(&self, role: UserRole) -> Result<(), SsoError> {
        if self.ui_access_mode == UiAccessMode::AdminOnly && !role.is_admin() {
            return Err(SsoError::forbidden(format!(
                "User not allowed to access proxy. User role={role}, proxy mode=admin_only"
            ))
            .with_param("ui_access_mode"));
        }
        Ok(())
    }
}

fn normalize_domain(entry: &str) -> Option<String> {
    let d = entry.trim();
    let d = d.strip_prefix('@').unwrap_or(d).trim();
    (!d.is_empty()).then(|| d.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn with_email(email: &str) -> SsoUser {
        SsoUser {
            email: Some(email.to_owned()),
            ..SsoUser::default()
        }
    }

    fn domains(list: &str) -> AccessPolicy {
        AccessPolicy {
            allowed_email_domains: AccessPolicy::parse_domains(list),
            ..AccessPolicy::default()
        }
    }

    #[test]
    fn parse_domain_lists() {
        assert_eq!(
            AccessPolicy::parse_domains(" A.com , example.com"),
            vec!["a.com", "example.com"]
        );
        assert_eq!(
            AccessPolicy::parse_domains("@Example.COM,,  ,"),
            vec!["example.com"]
        );
        assert!(AccessPolicy::parse_domains("").is_empty());
    }

    #[test]
    fn email_domain_vectors() {
        let p = domains("example.com");
        assert!(p.check_login(&with_email("u@example.com")).is_ok());
        let err = p.check_login(&with_email("x@evil.com")).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert!(
            err.message()
                .starts_with("The email domain=evil.com, is not an allowed email domain")
        );
        assert!(
            !err.message().contains("example.com"),
            "the allowed list is not disclosed"
        );
        assert!(p.check_login(&with_email("u@eng.example.com")).is_err());
        assert!(
            p.check_login(&with_email("u@example.com.evil.com"))
                .is_err()
        );
        assert!(p.check_login(&with_email("a@b@example.com")).is_err());
        assert!(p.check_login(&with_email("@example.com")).is_err());
        assert!(p.check_login(&with_email("example.com")).is_err());
        assert!(p.check_login(&with_email("u@")).is_err());
        assert!(p.check_login(&with_email("")).is_err());
        assert!(p.check_login(&with_email("U@EXAMPLE.COM")).is_ok());
        let err = p.check_login(&SsoUser::default()).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);

        let p = domains(" A.com , example.com");
        assert!(p.check_login(&with_email("u@example.com")).is_ok());
        assert!(p.check_login(&with_email("u@a.com")).is_ok());
        // Entries set directly (not via parse_domains) are normalised too.
        let p = AccessPolicy {
            allowed_email_domains: vec![" Example.COM".into()],
            ..AccessPolicy::default()
        };
        assert!(p.check_login(&with_email("u@example.com")).is_ok());
        // No list: no e-mail needed.
        assert!(
            AccessPolicy::default()
                .check_login(&SsoUser::default())
                .is_ok()
        );
    }

    #[test]
    fn email_domain_needs_a_verified_or_unmarked_address() {
        let p = domains("example.com");
        let user = |verified: Option<bool>| SsoUser {
            email_verified: verified,
            ..with_email("u@example.com")
        };
        assert!(p.check_login(&user(Some(true))).is_ok());
        // Absent (Entra ID / Graph never sends it): accepted.
        assert!(p.check_login(&user(None)).is_ok());
        let err = p.check_login(&user(Some(false))).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.param(), Some("email"));
        assert!(err.message().contains("not verified"), "{}", err.message());
        // No domain list: verification does not matter here.
        assert!(
            AccessPolicy::default()
                .check_login(&user(Some(false)))
                .is_ok()
        );
    }

    #[test]
    fn email_domain_does_not_fold_unicode() {
        // U+212A KELVIN SIGN lower-cases to `k` under Unicode rules.
        let p = domains("korp.example");
        assert!(p.check_login(&with_email("u@KORP.example")).is_ok());
        let err = p
            .check_login(&with_email("u@\u{212A}orp.example"))
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        let p = domains("\u{212A}orp.example");
        assert!(p.check_login(&with_email("u@korp.example")).is_err());
    }

    #[test]
    fn restricted_group() {
        let p = AccessPolicy {
            ui_access_mode: UiAccessMode::RestrictedSsoGroup {
                group: "g-admins".into(),
                field: None,
            },
            ..AccessPolicy::default()
        };
        let member = SsoUser {
            team_ids: vec!["x".into(), "g-admins".into()],
            ..SsoUser::default()
        };
        assert!(p.check_login(&member).is_ok());
        let other = SsoUser {
            team_ids: vec!["secret-group".into(), "G-ADMINS".into()],
            email: Some("u@example.com".into()),
            ..SsoUser::default()
        };
        let err = p.check_login(&other).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert_eq!(err.param(), Some("restricted_sso_group"));
        assert_eq!(
            err.message(),
            "User is not in the restricted SSO group: g-admins"
        );
        assert!(!err.message().contains("secret-group"));
        assert!(p.check_login(&SsoUser::default()).is_err());
    }

    #[test]
    fn admin_only() {
        let p = AccessPolicy {
            ui_access_mode: UiAccessMode::AdminOnly,
            ..AccessPolicy::default()
        };
        assert!(p.check_ui_access(UserRole::ProxyAdmin).is_ok());
        assert!(p.check_ui_access(UserRole::ProxyAdminViewer).is_ok());
        for role in [
            UserRole::InternalUser,
            UserRole::InternalUserViewer,
            UserRole::OrgAdmin,
            UserRole::Team,
        ] {
            let err = p.check_ui_access(role).unwrap_err();
            assert_eq!(err.status(), StatusCode::FORBIDDEN);
            assert_eq!(
                err.message(),
                format!(
                    "User not allowed to access proxy. User role={role}, proxy mode=admin_only"
                )
            );
        }
        assert!(
            AccessPolicy::default()
                .check_ui_access(UserRole::InternalUserViewer)
                .is_ok()
        );
        // admin_only does not affect the login checks.
        assert!(p.check_login(&SsoUser::default()).is_ok());
    }

    #[test]
    fn proxy_admin_id() {
        let p = AccessPolicy {
            proxy_admin_id: Some("test_admin_123".into()),
            ..AccessPolicy::default()
        };
        assert_eq!(
            p.effective_role("test_admin_123", UserRole::InternalUser),
            UserRole::ProxyAdmin
        );
        assert_eq!(
            p.effective_role("test_admin_123", UserRole::ProxyAdmin),
            UserRole::ProxyAdmin
        );
        assert_eq!(
            p.effective_role("Test_Admin_123", UserRole::InternalUser),
            UserRole::InternalUser
        );
        assert_eq!(
            p.effective_role("other", UserRole::InternalUserViewer),
            UserRole::InternalUserViewer
        );
        let empty = AccessPolicy {
            proxy_admin_id: Some(String::new()),
            ..AccessPolicy::default()
        };
        assert_eq!(
            empty.effective_role("", UserRole::InternalUser),
            UserRole::InternalUser
        );
        assert_eq!(
            AccessPolicy::default().effective_role("x", UserRole::Team),
            UserRole::Team
        );
    }

    #[test]
    fn ui_access_mode_parsing() {
        assert_eq!(
            "admin_only".parse::<UiAccessMode>().unwrap(),
            UiAccessMode::AdminOnly
        );
        assert_eq!(
            " ADMIN_ONLY ".parse::<UiAccessMode>().unwrap(),
            UiAccessMode::AdminOnly
        );
        assert_eq!(
            "user_only".parse::<UiAccessMode>().unwrap(),
            UiAccessMode::All
        );
        assert_eq!("".parse::<UiAccessMode>().unwrap(), UiAccessMode::All);
        assert!("admin-only".parse::<UiAccessMode>().is_err());
        let json = r#"{"type":"restricted_sso_group","restricted_sso_group":"G","sso_group_jwt_field":"groups"}"#;
        assert_eq!(
            json.parse::<UiAccessMode>().unwrap(),
            UiAccessMode::RestrictedSsoGroup {
                group: "G".into(),
                field: Some("groups".into())
            }
        );
        let py = "{'type': 'restricted_sso_group', 'restricted_sso_group': 'G',}";
        assert_eq!(
            py.parse::<UiAccessMode>().unwrap(),
            UiAccessMode::RestrictedSsoGroup {
                group: "G".into(),
                field: None
            }
        );
        let none_field = "{'type': 'restricted_sso_group', 'restricted_sso_group': 'G', 'sso_group_jwt_field': None}";
        assert_eq!(
            none_field.parse::<UiAccessMode>().unwrap(),
            UiAccessMode::RestrictedSsoGroup {
                group: "G".into(),
                field: None
            }
        );
        for bad in [
            "{}",
            "{'type': 'other', 'restricted_sso_group': 'G'}",
            "{'type': 'restricted_sso_group'}",
            "{'type': 'restricted_sso_group', 'restricted_sso_group': ''}",
            "{'type': 'restricted_sso_group', 'restricted_sso_group': ['G']}",
            "{'type': 'restricted_sso_group', 'restricted_sso_group': 'G', 'extra': 'x'}",
            "{'type': ",
        ] {
            assert!(bad.parse::<UiAccessMode>().is_err(), "{bad}");
        }
        assert_eq!(UiAccessMode::AdminOnly.as_str(), "admin_only");
    }
}

//! Identity providers: what the layer needs to know to log users in through one.

use crate::claims::ClaimMapping;
use crate::config::{Problems, check_idp_url};
pub(crate) use crate::providers::microsoft::{DEFAULT_GRAPH_BASE_URL, MicrosoftSettings};

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMethod {
    /// HTTP Basic with the client id and secret (`client_secret_basic`, the default).
    #[default]
    Basic,
    /// Client id and secret in the form body (`client_secret_post`; LiteLLM's
    /// `GENERIC_INCLUDE_CLIENT_ID=true`).
    Post,
}

/// Which family a provider belongs to. It sets defaults (claim names, scopes, endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Any OpenID Connect provider.
    Generic,
    /// Google.
    Google,
    /// Microsoft Entra ID.
    Microsoft,
}

impl ProviderKind {
    /// Upstream's name for the family: `generic`, `google`, `microsoft`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Generic => "generic",
            ProviderKind::Google => "google",
            ProviderKind::Microsoft => "microsoft",
        }
    }
}

/// One identity provider.
///
/// Build it with [`Provider::oidc`] (discovery from an issuer), [`Provider::generic`] (explicit
/// endpoints), [`Provider::google`] or [`Provider::microsoft`], then adjust with the consuming
/// setters. Problems are reported by [`SsoLayerBuilder::build`](crate::SsoLayerBuilder::build).
///
/// ```
/// use tower_sso::provider::Provider;
///
/// let okta = Provider::oidc("https://example.okta.com", "client-id", "client-secret")
///     .scopes(["openid", "email", "profile", "groups"]);
/// # let _ = okta;
/// ```
///
/// Its `Debug` output shows the client secret and the values of extra token headers as `***`.
#[derive(Clone)]
pub struct Provider {
    pub(crate) name: String,
    pub(crate) kind: ProviderKind,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) authorization_endpoint: Option<String>,
    pub(crate) token_endpoint: Option<String>,
    pub(crate) userinfo_endpoint: Option<String>,
    pub(crate) jwks_uri: Option<String>,
    pub(crate) end_session_endpoint: Option<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) pkce: bool,
    pub(crate) client_auth: ClientAuthMethod,
    pub(crate) extra_headers: Vec<(String, String)>,
    pub(crate) static_state: Option<String>,
    pub(crate) claims: ClaimMapping,
    /// Microsoft Entra ID only: tenant checks and Graph settings.
    pub(crate) microsoft: MicrosoftSettings,
    /// Google only: the Workspace domain (`hd`) users must belong to.
    pub(crate) hosted_domain: Option<String>,
    /// Microsoft: whether a tenant was given (readiness names `MICROSOFT_TENANT` otherwise).
    pub(crate) tenant_set: bool,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        /// Header names as they are, values hidden (they are often API keys).
        struct Redacted<'a>(&'a [(String, String)]);
        impl std::fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list()
                    .entries(self.0.iter().map(|(name, _)| (name, "***")))
                    .finish()
            }
        }
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("issuer", &self.issuer)
            .field("authorization_endpoint", &self.authorization_endpoint)
            .field("token_endpoint", &self.token_endpoint)
            .field("userinfo_endpoint", &self.userinfo_endpoint)
            .field("jwks_uri", &self.jwks_uri)
            .field("end_session_endpoint", &self.end_session_endpoint)
            .field("scopes", &self.scopes)
            .field("pkce", &self.pkce)
            .field("client_auth", &self.client_auth)
            .field("extra_headers", &Redacted(&self.extra_headers))
            .field("static_state", &self.static_state)
            .field("claims", &self.claims)
            .field("microsoft", &self.microsoft)
            .field("hosted_domain", &self.hosted_domain)
            .finish()
    }
}

impl Provider {
    fn base(
        name: &str,
        kind: ProviderKind,
        client_id: String,
        client_secret: Option<String>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            client_id,
            client_secret: client_secret.filter(|s| !s.is_empty()),
            issuer: None,
            authorization_endpoint: None,
            token_endpoint: None,
            userinfo_endpoint: None,
            jwks_uri: None,
            end_session_endpoint: None,
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            pkce: true,
            client_auth: ClientAuthMethod::Basic,
            extra_headers: Vec::new(),
            static_state: None,
            claims: ClaimMapping::default(),
            microsoft: MicrosoftSettings::default(),
            hosted_domain: None,
            tenant_set: false,
        }
    }

    /// An OpenID Connect provider found by discovery: endpoints and keys come from
    /// `{issuer}/.well-known/openid-configuration`, whose `issuer` must equal `issuer`.
    pub fn oidc(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        let mut p = Self::base(
            "generic",
            ProviderKind::Generic,
            client_id.into(),
            Some(client_secret.into()),
        );
        p.issuer = Some(issuer.into());
        p
    }

    /// An OAuth 2 / OpenID Connect provider with explicit endpoints (set them with
    /// [`authorization_endpoint`](Self::authorization_endpoint), [`token_endpoint`](Self::token_endpoint),
    /// [`userinfo_endpoint`](Self::userinfo_endpoint) and, to verify id_tokens, [`jwks_uri`](Self::jwks_uri)).
    pub fn generic(client_id: impl Into<String>, client_secret: Option<String>) -> Self {
        Self::base(
            "generic",
            ProviderKind::Generic,
            client_id.into(),
            client_secret,
        )
    }

    /// Google (discovery from `https://accounts.google.com`), with Google's claim names. The user
    /// id is `sub`. No role is ever read from a Google claim (users get the stored role, else
    /// the new-user default); [`ClaimMapping::role`] must stay `None`, role mappings may be set.
    ///
    /// Every Google login needs an id_token whose `email_verified` is `true`; with
    /// [`hosted_domain`](Self::hosted_domain) set, its `hd` claim must name that domain too.
    pub fn google(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        let mut p = Self::base(
            "google",
            ProviderKind::Google,
            client_id.into(),
            Some(client_secret.into()),
        );
        p.issuer = Some("https://accounts.google.com".into());
        p.claims = ClaimMapping {
            user_id: "sub".into(),
            display_name: "name".into(),
            email: "email".into(),
            first_name: "given_name".into(),
            last_name: "family_name".into(),
            ..ClaimMapping::default()
        };
        p
    }

    /// Microsoft Entra ID for `tenant` (`common` when `None`), with LiteLLM's endpoints and Graph
    /// claim names (`MICROSOFT_USER_*_ATTRIBUTE` defaults). The profile comes from Graph `/me`.
    ///
    /// The role comes only from the app roles in the id_token
    /// ([`microsoft_app_role`](crate::claims::microsoft_app_role): `app_roles`, else `roles`), as
    /// upstream, never from the Graph profile or another claim; [`ClaimMapping::role`] must stay
    /// `None`. With [`ClaimMapping::role_mappings`] set, the mappings decide instead, over the
    /// id_token's claims.
    ///
    /// A tenant id (GUID) pins the issuer and keys to that tenant. Any other tenant (`common`,
    /// `organizations`, `consumers`, a domain name) still verifies the id_token against
    /// Microsoft's keys for it, and its `iss` must be `https://login.microsoftonline.com/{tid}/v2.0`
    /// for the token's own `tid` (as Microsoft's libraries check it); restrict the tenants with
    /// [`allowed_tenants`](Self::allowed_tenants). The user's groups come from Microsoft Graph
    /// (see [`graph_base_url`](Self::graph_base_url), [`service_principal_id`](Self::service_principal_id),
    /// [`graph_fail_open`](Self::graph_fail_open)).
    pub fn microsoft(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        tenant: Option<&str>,
    ) -> Self {
        let tenant_set = tenant.is_some_and(|t| !t.is_empty());
        let tenant = tenant.filter(|t| !t.is_empty()).unwrap_or("common");
        let mut p = Self::base(
            "microsoft",
            ProviderKind::Microsoft,
            client_id.into(),
            Some(client_secret.into()),
        );
        p.tenant_set = tenant_set;
        let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
        p.authorization_endpoint = Some(format!("{base}/authorize"));
        p.token_endpoint = Some(format!("{base}/token"));
        // A tenant id (a GUID) pins the issuer; `common`, `organizations` or a domain name
        // cannot be pinned this way: the issuer is then checked against the token's own `tid`.
        // The keys are Microsoft's for the tenant either way.
        if is_guid(tenant) {
            p.issuer = Some(format!("https://login.microsoftonline.com/{tenant}/v2.0"));
        }
        p.jwks_uri = Some(format!(
            "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
        ));
        p.userinfo_endpoint = Some(format!("{DEFAULT_GRAPH_BASE_URL}/me"));
        // `profile` makes the id_token carry `oid`, which the Graph profile's `id` must equal.
        p.scopes = vec![
            "openid".into(),
            "profile".into(),
            "email".into(),
            "User.Read".into(),
        ];
        p.claims = ClaimMapping {
            user_id: "id".into(),
            display_name: "displayName".into(),
            email: "userPrincipalName".into(),
            first_name: "givenName".into(),
            last_name: "surname".into(),
            ..ClaimMapping::default()
        };
        p
    }

    /// The name users pick this provider by (`/sso/key/generate?provider=NAME`). Defaults to the
    /// family name (`generic`, `google`, `microsoft`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The issuer: enables discovery and id_token `iss` checks.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The authorization endpoint (overrides discovery).
    pub fn authorization_endpoint(mut self, url: impl Into<String>) -> Self {
        self.authorization_endpoint = Some(url.into());
        self
    }

    /// The token endpoint (overrides discovery).
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// The userinfo endpoint (overrides discovery).
    pub fn userinfo_endpoint(mut self, url: impl Into<String>) -> Self {
        self.userinfo_endpoint = Some(url.into());
        self
    }

    /// The JWKS URI: id_tokens are verified against it (overrides discovery).
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// The end-session endpoint logout redirects to (overrides discovery).
    pub fn end_session_endpoint(mut self, url: impl Into<String>) -> Self {
        self.end_session_endpoint = Some(url.into());
        self
    }

    /// The scopes requested (default `openid email profile`).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// PKCE S256 (on by default). Turn it off only for providers that reject it.
    pub fn pkce(mut self, on: bool) -> Self {
        self.pkce = on;
        self
    }

    /// How the client authenticates at the token endpoint.
    pub fn client_auth(mut self, method: ClientAuthMethod) -> Self {
        self.client_auth = method;
        self
    }

    /// An extra header sent with the token request (`GENERIC_SSO_HEADERS`).
    pub fn token_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_headers.push((name.into(), value.into()));
        self
    }

    /// A fixed `state` value (`GENERIC_CLIENT_STATE`) for providers that insist on one.
    /// Not recommended: the login is still bound to the browser by the flow cookie, but the state
    /// no longer protects against CSRF by itself. A warning is logged at build time.
    pub fn static_state(mut self, state: impl Into<String>) -> Self {
        self.static_state = Some(state.into()).filter(|s| !s.is_empty());
        self
    }

    /// How claims map to the user (attribute paths, role and team mappings).
    pub fn claims(mut self, mapping: ClaimMapping) -> Self {
        self.claims = mapping;
        self
    }

    /// Microsoft only: the Microsoft Graph base URL the groups are read from
    /// (`MICROSOFT_GRAPH_BASE_URL`, default `https://graph.microsoft.com/v1.0`; another for a
    /// national cloud or a test stand-in). Graph calls go through the layer's IdP HTTP client,
    /// with its timeout and size cap; `@odata.nextLink` pages are followed only on this origin.
    ///
    /// The profile (the userinfo endpoint, Graph `/me`) moves along unless it was set explicitly.
    pub fn graph_base_url(mut self, url: impl Into<String>) -> Self {
        let base = url.into().trim_end_matches('/').to_owned();
        let default_me = format!("{}/me", self.microsoft.graph_base_url);
        if self.kind == ProviderKind::Microsoft
            && self.userinfo_endpoint.as_deref() == Some(default_me.as_str())
        {
            self.userinfo_endpoint = Some(format!("{base}/me"));
        }
        self.microsoft.graph_base_url = base;
        self
    }

    /// Microsoft only: the object id of the enterprise application (service principal) whose
    /// assigned groups count (`MICROSOFT_SERVICE_PRINCIPAL_ID`). Only the user's groups assigned
    /// to it become team ids (none when it has no group assigned), and a team is created for each
    /// assigned group that does not exist yet, named after the group (with the
    /// [new-team defaults](crate::SsoLayerBuilder::new_team_defaults)).
    pub fn service_principal_id(mut self, id: impl Into<String>) -> Self {
        self.microsoft.service_principal_id = Some(id.into()).filter(|s| !s.is_empty());
        self
    }

    /// Microsoft only: what a failed Graph group lookup does (`MICROSOFT_GRAPH_FAIL_OPEN`).
    ///
    /// Off (the default): the login is refused with a 502 when anything depends on the groups
    /// (role mappings, a restricted SSO group, a service principal), and goes on without groups,
    /// with a warning, otherwise. On: the login always goes on without groups (upstream's
    /// behaviour), with a warning.
    pub fn graph_fail_open(mut self, on: bool) -> Self {
        self.microsoft.graph_fail_open = on;
        self
    }

    /// Microsoft only: the tenant ids (GUIDs) whose users may log in (`MICROSOFT_ALLOWED_TENANTS`);
    /// empty (the default) allows every tenant the configured tenant admits. Compared with the
    /// verified id_token's `tid`.
    pub fn allowed_tenants<I, S>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.microsoft.allowed_tenants = tenants
            .into_iter()
            .map(|t| t.into().trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        self
    }

    /// Google only: the Google Workspace domain users must belong to (`GOOGLE_HOSTED_DOMAIN`).
    /// It is sent as `hd` with the login, and the id_token's `hd` claim must equal it (the `hd`
    /// parameter alone only preselects accounts); other Google accounts are refused with a 403.
    pub fn hosted_domain(mut self, domain: impl Into<String>) -> Self {
        self.hosted_domain =
            Some(domain.into().trim().to_ascii_lowercase()).filter(|d| !d.is_empty());
        self
    }

    /// The configured name.
    pub fn provider_name(&self) -> &str {
        &self.name
    }

    /// The family.
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// What this provider lacks that upstream's readiness check requires, in upstream's
    /// environment variable names: the client secret (`GOOGLE_CLIENT_SECRET`,
    /// `MICROSOFT_CLIENT_SECRET`, `GENERIC_CLIENT_SECRET`), Microsoft's `MICROSOFT_TENANT`, and
    /// a generic provider's `GENERIC_AUTHORIZATION_ENDPOINT`, `GENERIC_TOKEN_ENDPOINT` and
    /// `GENERIC_USERINFO_ENDPOINT` (each missing only when neither configured nor discovered
    /// from an issuer, unlike upstream, which has no discovery).
    pub(crate) fn missing_settings(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        match self.kind {
            ProviderKind::Google => {
                if self.client_secret.is_none() {
                    missing.push("GOOGLE_CLIENT_SECRET");
                }
            }
            ProviderKind::Microsoft => {
                if self.client_secret.is_none() {
                    missing.push("MICROSOFT_CLIENT_SECRET");
                }
                if !self.tenant_set {
                    missing.push("MICROSOFT_TENANT");
                }
            }
            ProviderKind::Generic => {
                if self.client_secret.is_none() {
                    missing.push("GENERIC_CLIENT_SECRET");
                }
                let discovered = self.issuer.is_some();
                for (name, endpoint) in [
                    (
                        "GENERIC_AUTHORIZATION_ENDPOINT",
                        &self.authorization_endpoint,
                    ),
                    ("GENERIC_TOKEN_ENDPOINT", &self.token_endpoint),
                    ("GENERIC_USERINFO_ENDPOINT", &self.userinfo_endpoint),
                ] {
                    if endpoint.is_none() && !discovered {
                        missing.push(name);
                    }
                }
            }
        }
        missing
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        if self.kind == ProviderKind::Microsoft
            && self.issuer.is_none()
            && self.microsoft.allowed_tenants.is_empty()
        {
            tracing::warn!(
                provider = %self.name,
                "Microsoft tenant is not a tenant id (GUID): users of any tenant can log in; set MICROSOFT_TENANT to your tenant id or list MICROSOFT_ALLOWED_TENANTS"
            );
        }
        let who = format!("provider {:?}", self.name);
        if self.kind == ProviderKind::Microsoft {
            self.microsoft.validate(&who, p);
        } else if self.microsoft != MicrosoftSettings::default() {
            p.add(
                &who,
                "Graph, service principal and tenant settings apply only to Microsoft providers",
            );
        }
        if self.kind != ProviderKind::Google && self.hosted_domain.is_some() {
            p.add(&who, "a hosted domain applies only to Google providers");
        }
        if self.kind != ProviderKind::Generic && self.claims.role.is_some() {
            p.add(
                &who,
                "a role claim (ClaimMapping::role) is read only for generic providers: Google grants no role, Microsoft only its id_token's app roles; use role mappings",
            );
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.add(
                &who,
                "name must be non-empty and use only letters, digits, '-' and '_'",
            );
        }
        if self.client_id.trim().is_empty() {
            p.add(&who, "client id is empty");
        }
        if let Some(iss) = &self.issuer {
            if let Err(e) = check_idp_url(iss) {
                p.add(&who, format!("issuer {e}"));
            }
        } else {
            if self.authorization_endpoint.is_none() {
                p.add(
                    &who,
                    "needs an issuer (discovery) or an authorization endpoint",
                );
            }
            if self.token_endpoint.is_none() {
                p.add(&who, "needs an issuer (discovery) or a token endpoint");
            }
        }
        for (what, url) in [
            ("authorization endpoint", &self.authorization_endpoint),
            ("token endpoint", &self.token_endpoint),
            ("userinfo endpoint", &self.userinfo_endpoint),
            ("jwks uri", &self.jwks_uri),
            ("end-session endpoint", &self.end_session_endpoint),
        ] {
            if let Some(u) = url
                && let Err(e) = check_idp_url(u)
            {
                p.add(&who, format!("{what} {e}"));
            }
        }
        if !self.scopes.iter().any(|s| s == "openid") && self.kind != ProviderKind::Microsoft {
            tracing::warn!(provider = %self.name, "scopes do not include `openid`: no id_token will be verified");
        }
        for (name, value) in &self.extra_headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.add(
                    &who,
                    format!("token header name {name:?} is not a valid header name"),
                );
            }
            if http::HeaderValue::from_str(value).is_err() {
                p.add(
                    &who,
                    format!("token header {name:?} has a value that is not a valid header value"),
                );
            }
        }
        if self.static_state.is_some() {
            tracing::warn!(
                provider = %self.name,
                "a static OAuth state is configured (GENERIC_CLIENT_STATE): logins stay bound to the browser by the flow cookie, but prefer the random per-login state"
            );
        }
    }
}

/// `8-4-4-4-12` hexadecimal digits.
pub(crate) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_and_microsoft_read_no_raw_role_claim() {
        let google = Provider::google("id", "secret");
        let microsoft = Provider::microsoft("id", "secret", None);
        for p in [&google, &microsoft] {
            assert_eq!(p.claims.role, None, "{}", p.name);
        }
        assert_eq!(google.claims.user_id, "sub");
        // Setting one is a configuration error, not a silent trust.
        for p in [google, microsoft] {
            let p = p.claims(ClaimMapping {
                role: Some("role".into()),
                ..ClaimMapping::default()
            });
            let mut problems = Problems::default();
            p.validate(&mut problems);
            assert!(
                format!("{problems:?}").contains("role claim"),
                "{problems:?}"
            );
        }
    }

    #[test]
    fn microsoft_tenant_id_pins_issuer_and_keys() {
        let p = Provider::microsoft("id", "secret", Some("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert_eq!(
            p.issuer.as_deref(),
            Some("https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0")
        );
        assert!(
            p.jwks_uri
                .as_deref()
                .is_some_and(|u| u.ends_with("/discovery/v2.0/keys"))
        );
        // Other tenants: no pinned issuer (it is checked against the token's `tid`), but the
        // keys are still Microsoft's.
        for tenant in [None, Some("common"), Some("contoso.onmicrosoft.com")] {
            let p = Provider::microsoft("id", "secret", tenant);
            assert_eq!(p.issuer, None, "{tenant:?}");
            let name = tenant.unwrap_or("common");
            assert_eq!(
                p.jwks_uri.as_deref(),
                Some(
                    format!("https://login.microsoftonline.com/{name}/discovery/v2.0/keys")
                        .as_str()
                )
            );
        }
        assert!(p.scopes.iter().any(|s| s == "profile"));
        // A national cloud's Graph: the profile moves along, unless set explicitly.
        let p =
            Provider::microsoft("id", "s", None).graph_base_url("https://graph.microsoft.us/v1.0/");
        assert_eq!(
            p.userinfo_endpoint.as_deref(),
            Some("https://graph.microsoft.us/v1.0/me")
        );
        let p = Provider::microsoft("id", "s", None)
            .userinfo_endpoint("https://profile.example.com/me")
            .graph_base_url("https://graph.microsoft.us/v1.0");
        assert_eq!(
            p.userinfo_endpoint.as_deref(),
            Some("https://profile.example.com/me")
        );
    }

    #[test]
    fn family_settings_on_another_family_are_reported() {
        for (p, needle) in [
            (
                Provider::google("id", "s").service_principal_id("sp"),
                "only to Microsoft",
            ),
            (
                Provider::microsoft("id", "s", None).hosted_domain("example.com"),
                "only to Google",
            ),
        ] {
            let mut problems = Problems::default();
            p.validate(&mut problems);
            assert!(format!("{problems:?}").contains(needle), "{problems:?}");
        }
        assert!(
            Provider::microsoft("id", "s", None)
                .authorization_endpoint
                .as_deref()
                .is_some_and(|u| u.contains("/common/"))
        );
    }
}

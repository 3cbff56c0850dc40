//! Configuration from the environment variables LiteLLM documents.
//!
//! | variable | meaning |
//! |---|---|
//! | `PROXY_BASE_URL` | public URL of the service (required) |
//! | `LITELLM_MASTER_KEY` | session secret, at least 16 bytes (required) |
//! | `LITELLM_UI_SESSION_DURATION` | session lifetime: `24h` (default), `30m`, `7d`, seconds |
//! | `SERVER_ROOT_PATH` | path prefix the service is mounted at |
//! | `PROXY_LOGOUT_URL` | where logout redirects |
//! | `LITELLM_UI_API_DOC_BASE_URL` | reported by `GET /sso/get/ui_settings` (see [`crate::UiSettings`]) |
//! | `PROXY_DEFAULT_TEAM_DISABLED` | `true` to report `DEFAULT_TEAM_DISABLED: true` in the UI settings |
//! | `ALLOWED_EMAIL_DOMAINS` | comma-separated e-mail domains allowed to log in |
//! | `PROXY_ADMIN_ID` | user id promoted to `proxy_admin` at login, once that user is bound to the login's IdP subject (see the README's security notes); with several providers, ids from all but the first are `"<provider name>:<id>"` |
//! | `UI_ACCESS_MODE` | `admin_only`, or a JSON `restricted_sso_group` object |
//! | `SSO_PUBLIC_PATHS` | comma-separated public paths (`/health,/static/*`), full request paths (`SERVER_ROOT_PATH` is not prepended) |
//! | `SSO_ALLOWED_REDIRECT_DOMAINS` | domains post-login return targets may point at |
//! | `SSO_IDENTITY_HEADERS` | `true` to send `X-Forwarded-User`/`-Email`/`-Groups`/`-Preferred-Username` upstream |
//! | `SSO_LINK_ACCOUNTS_BY_EMAIL` | `true` to link a login to a stored user by verified e-mail when its user id is unknown (default `false`; see [`SsoLayerBuilder::link_accounts_by_email`]) |
//! | `SSO_STRIP_SESSION_TOKEN` | `true` to remove the session cookie / Bearer token before forwarding |
//! | `SSO_SESSION_COOKIE_HTTP_ONLY` | `false` for a UI that reads the `token` cookie from JavaScript |
//! | `SSO_RATE_LIMIT_LOGIN_PER_MINUTE` | login starts a minute per client (default 60; `0` switches the limit off); see [`SsoLayerBuilder::rate_limits`] |
//! | `SSO_RATE_LIMIT_CALLBACK_PER_MINUTE` | callbacks a minute per client (default 60; `0` switches the limit off) |
//! | `SSO_RATE_LIMIT_CLI_POLL_PER_MINUTE` | CLI login polls a minute per client (default 120; `0` switches the limit off) |
//! | `SSO_RATE_LIMIT_BURST` | the most login starts, callbacks, and CLI polls a client may make at once (default 20) |
//! | `LITELLM_CLI_JWT_EXPIRATION_HOURS` (or upstream's older `CLI_JWT_EXPIRATION_HOURS`) | lifetime of the session token a CLI login hands out, in whole hours (default 24); see [`SsoLayerBuilder::cli_token_duration`] |
//! | `SSO_DEBUG_ENABLED` | `true` to serve the debug login (`/sso/debug/login`, `/sso/debug/callback`); default `false`, see [`SsoLayerBuilder::debug_endpoints`] |
//! | `SSO_TRUSTED_PROXIES` | comma-separated addresses or CIDR ranges (`10.0.0.0/8,127.0.0.1,fd00::/8`) of reverse proxies whose `X-Forwarded-For` names the client (default: none, the header is ignored); see [`SsoLayerBuilder::trusted_proxies`] |
//! | `SSO_HEADER_SIGN_IN` | `true` to let a trusted proxy (`SSO_TRUSTED_PROXIES`, required) sign users in with `x-litellm-user-id` / `x-litellm-user-email` (default `false`); see [`crate::hooks::HeaderSignIn`] |
//! | `DISABLE_ADMIN_UI` | `true` to answer login start and callback with upstream's "admin UI disabled" page; sessions and API clients keep working |
//! | `DEFAULT_INTERNAL_USER_PARAMS`, `DEFAULT_TEAM_PARAMS` | JSON defaults for users/teams created by SSO (`max_budget`, `budget_duration`, `models`; teams also `tpm_limit`, `rpm_limit`) |
//! | `REDIS_URL` | Redis for the verifier cache and shared revocation (feature `redis`): `redis://[:password@]host:port[/db]` |
//! | `REDIS_HOST`, `REDIS_PORT` (default 6379), `REDIS_PASSWORD` | the same, LiteLLM's way (used when `REDIS_URL` is not set) |
//! | `REDIS_CLUSTER_NODES` | a Redis Cluster instead: comma-separated `host:port` seed nodes (or LiteLLM's JSON list of `{"host", "port"}`), with `REDIS_PASSWORD` |
//! | `DATABASE_URL` | PostgreSQL for the user store (feature `postgres`): `postgres://user:password@host:port/db`; tables `tower_sso_*`, created at start-up |
//! | `GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET` | Google |
//! | `GOOGLE_HOSTED_DOMAIN` | the Google Workspace domain users must belong to: sent as `hd` and required in the id_token's `hd` claim (when unset, the `ALLOWED_EMAIL_DOMAINS` are required the same way); other Google accounts get a 403. Google logins always need `email_verified: true` |
//! | `MICROSOFT_CLIENT_ID`, `MICROSOFT_CLIENT_SECRET`, `MICROSOFT_TENANT`, `MICROSOFT_*_ENDPOINT`, `MICROSOFT_USER_*_ATTRIBUTE` (not `_ROLE_`: the role comes only from the id_token's app roles, or from `GENERIC_ROLE_MAPPINGS_*` over the Graph groups) | Microsoft Entra ID |
//! | `MICROSOFT_ALLOWED_TENANTS` | comma-separated tenant ids (GUIDs) whose users may log in (compared with the verified id_token's `tid`); for `common`, `organizations` or `consumers` tenants, whose id_tokens are checked against their own `tid`'s issuer |
//! | `MICROSOFT_SERVICE_PRINCIPAL_ID` | object id of the enterprise application: only the groups assigned to it count, and each becomes a team (named after the group, with `DEFAULT_TEAM_PARAMS`) |
//! | `MICROSOFT_GRAPH_FAIL_OPEN` | `true`: a failed Graph group lookup always continues without groups (upstream). Default `false`: refused with a 502 when role mappings, a restricted SSO group or a service principal depend on the groups |
//! | `MICROSOFT_GRAPH_BASE_URL` | Microsoft Graph (default `https://graph.microsoft.com/v1.0`), for national clouds and test stand-ins |
//! | `MICROSOFT_JWKS_URI` | the keys Microsoft id_tokens are verified against (default Microsoft's keys for the tenant) |
//! | `GENERIC_CLIENT_ID`, `GENERIC_CLIENT_SECRET` (required with the id), `GENERIC_ISSUER` (discovery: alone enough for the endpoints and keys), `GENERIC_AUTHORIZATION_ENDPOINT`, `GENERIC_TOKEN_ENDPOINT`, `GENERIC_USERINFO_ENDPOINT`, `GENERIC_JWKS_URI` (verifies id_token signatures, with or without an issuer), `GENERIC_SCOPE`, `GENERIC_INCLUDE_CLIENT_ID`, `GENERIC_CLIENT_STATE`, `GENERIC_CLIENT_USE_PKCE` (default `true` here), `GENERIC_SSO_HEADERS`, `GENERIC_USER_*_ATTRIBUTE`, `GENERIC_USER_EXTRA_ATTRIBUTES`, `GENERIC_ROLE_MAPPINGS_ROLES`/`_GROUP_CLAIM`/`_DEFAULT_ROLE` (also for Microsoft, over the Graph groups and the id_token's group claim), `GENERIC_TEAM_IDS_JWT_FIELD` | any OpenID Connect provider |
//! | `GENERIC_USER_ID_ATTRIBUTE` | the user id claim: default `sub` (**upstream: `preferred_username`**, which users can edit at some IdPs and so rename themselves into another account); set `preferred_username` to keep upstream's ids |
//! | `GENERIC_USER_ROLE_ATTRIBUTE` | the claim a role is read from: default **none** (**upstream: `role`**). Setting it trusts that claim: anyone who can edit it at the IdP picks their own role, `proxy_admin` included. Ignored when `GENERIC_ROLE_MAPPINGS_*` are set (they are then the only role source) |
//!
//! Upstream variables deliberately not read: `PKCE_STRICT_CACHE_MISS` (a missing verifier always
//! fails the login here), `GENERIC_USER_ROLE_MAPPINGS` and `GENERIC_INCLUDE_TOKEN_CLAIMS`
//! (documented upstream but not read by its code either), `UI_USERNAME`/`UI_PASSWORD` (no password
//! login), `EXPERIMENTAL_UI_LOGIN` (the CLI login works without it), `CLI_SSO_CLAIM_MAP`.
//!
//! Every provider whose client id is set is registered, in the order Google, Microsoft, generic;
//! the first is the default, and user ids from the others are prefixed `"<provider name>:"`
//! (see [`SsoLayerBuilder::provider`]).

mod backends;

use crate::claims::{ClaimMapping, RoleMappings, parse_role_map};
use crate::config::ConfigErrors;
use crate::config::{ConfigError, parse_duration};
use crate::identity::UserRole;
use crate::layer::{SsoLayer, SsoLayerBuilder};
use crate::policy::{AccessPolicy, UiAccessMode};
use crate::provider::{ClientAuthMethod, Provider};
use crate::rate_limit::{RateLimit, RateLimits};
use crate::store::{NewTeamDefaults, NewUserDefaults};

impl SsoLayer {
    /// Builds the layer from the process environment (see the table in the [`mod@crate::env`] docs).
    /// Every missing or malformed variable is reported at once.
    pub fn from_env() -> Result<SsoLayer, ConfigErrors> {
        SsoLayerBuilder::from_env_vars(|k| std::env::var(k).ok()).build()
    }
}

struct Env<F> {
    lookup: F,
    problems: Vec<ConfigError>,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => false,
            Some(_) => {
                self.bad(name, "must be true or false");
                default
            }
        }
    }

    fn bad(&mut self, name: &str, problem: impl Into<String>) {
        self.problems.push(ConfigError::new(name, problem));
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn role(&mut self, name: &str) -> Option<UserRole> {
        let v = self.get(name)?;
        match v.parse::<UserRole>() {
            Ok(r) => Some(r),
            Err(e) => {
                self.bad(name, e.to_string());
                None
            }
        }
    }
}

impl SsoLayerBuilder {
    /// A builder configured from environment variables read through `lookup` (for example
    /// `|k| std::env::var(k).ok()`), so more settings can be added in code before
    /// [`build`](SsoLayerBuilder::build). Problems with the variables are reported by `build`,
    /// together with any others.
    pub fn from_env_vars(lookup: impl Fn(&str) -> Option<String>) -> SsoLayerBuilder {
        let mut env = Env {
            lookup,
            problems: Vec::new(),
        };
        let mut b = SsoLayer::builder();

        match env.get("PROXY_BASE_URL") {
            Some(u) => b = b.base_url(u),
            None => env.bad(
                "PROXY_BASE_URL",
                "is not set (the public URL of this service, e.g. https://gateway.example.com)",
            ),
        }
        match env.get("LITELLM_MASTER_KEY") {
            Some(k) => b = b.session_secret(k),
            None => env.bad(
                "LITELLM_MASTER_KEY",
                "is not set (it signs the session tokens)",
            ),
        }
        if let Some(d) = env.get("LITELLM_UI_SESSION_DURATION") {
            match parse_duration(&d) {
                Ok(d) => b = b.session_duration(d),
                Err(e) => env.bad("LITELLM_UI_SESSION_DURATION", e),
            }
        }
        if let Some(p) = env.get("SERVER_ROOT_PATH") {
            b = b.root_path(p);
        }
        if let Some(u) = env.get("PROXY_LOGOUT_URL") {
            b = b.logout_url(u);
        }
        b = b.ui_settings(crate::UiSettings {
            api_doc_base_url: env.get("LITELLM_UI_API_DOC_BASE_URL"),
            default_team_disabled: env.flag("PROXY_DEFAULT_TEAM_DISABLED", false),
            ..crate::UiSettings::default()
        });
        let mut policy = AccessPolicy {
            allowed_email_domains: AccessPolicy::parse_domains(
                &env.get("ALLOWED_EMAIL_DOMAINS").unwrap_or_default(),
            ),
            proxy_admin_id: env.get("PROXY_ADMIN_ID"),
            ..AccessPolicy::default()
        };
        if let Some(mode) = env.get("UI_ACCESS_MODE") {
            match mode.parse::<UiAccessMode>() {
                Ok(m) => policy.ui_access_mode = m,
                Err(e) => env.bad("UI_ACCESS_MODE", e.to_string()),
            }
        }
        b = b.access_policy(policy);
        b = b.public_paths(env.list("SSO_PUBLIC_PATHS"));
        b = b.allowed_redirect_domains(env.list("SSO_ALLOWED_REDIRECT_DOMAINS"));
        let headers = env.flag("SSO_IDENTITY_HEADERS", false);
        b = b.identity_headers(headers);
        let strip = env.flag("SSO_STRIP_SESSION_TOKEN", false);
        b = b.strip_session_token(strip);
        let link = env.flag("SSO_LINK_ACCOUNTS_BY_EMAIL", false);
        b = b.link_accounts_by_email(link);
        let http_only = env.flag("SSO_SESSION_COOKIE_HTTP_ONLY", true);
        b = b.session_cookie_http_only(http_only);
        b = rate_limits_from_env(&mut env, b);
        if env.flag("SSO_HEADER_SIGN_IN", false) {
            b = b.header_sign_in(crate::hooks::HeaderSignIn::new());
        }
        let admin_ui_disabled = env.flag("DISABLE_ADMIN_UI", false);
        b = b.disable_admin_ui(admin_ui_disabled);
        let debug = env.flag("SSO_DEBUG_ENABLED", false);
        b = b.debug_endpoints(debug);
        for name in [
            "LITELLM_CLI_JWT_EXPIRATION_HOURS",
            "CLI_JWT_EXPIRATION_HOURS",
        ] {
            let Some(v) = env.get(name) else { continue };
            match v.parse::<u64>() {
                Ok(h) if h > 0 && h <= 24 * 366 => {
                    b = b.cli_token_duration(std::time::Duration::from_secs(h * 3600));
                }
                _ => env.bad(
                    name,
                    format!("{v:?} must be a whole number of hours, 1 to 8784"),
                ),
            }
            break;
        }
        if let Some(json) = env.get("DEFAULT_INTERNAL_USER_PARAMS") {
            match parse_user_defaults(&json) {
                Ok(d) => b = b.new_user_defaults(d),
                Err(e) => env.bad("DEFAULT_INTERNAL_USER_PARAMS", e),
            }
        }
        if let Some(json) = env.get("DEFAULT_TEAM_PARAMS") {
            match parse_team_defaults(&json) {
                Ok(d) => b = b.new_team_defaults(d),
                Err(e) => env.bad("DEFAULT_TEAM_PARAMS", e),
            }
        }

        let role_mappings = role_mappings_from_env(&mut env);
        if let Some(id) = env.get("GOOGLE_CLIENT_ID") {
            match env.get("GOOGLE_CLIENT_SECRET") {
                Some(secret) => {
                    let mut p = Provider::google(id, secret);
                    if let Some(hd) = env.get("GOOGLE_HOSTED_DOMAIN") {
                        p = p.hosted_domain(hd);
                    }
                    b = b.provider(p);
                }
                None => env.bad(
                    "GOOGLE_CLIENT_SECRET",
                    "is not set (required with GOOGLE_CLIENT_ID)",
                ),
            }
        }
        if let Some(id) = env.get("MICROSOFT_CLIENT_ID") {
            match env.get("MICROSOFT_CLIENT_SECRET") {
                Some(secret) => {
                    let tenant = env.get("MICROSOFT_TENANT");
                    let p = endpoints_from_env(
                        &env,
                        "MICROSOFT",
                        Provider::microsoft(id, secret, tenant.as_deref()),
                    );
                    let p = microsoft_from_env(&mut env, p);
                    let mut claims = p.claims.clone();
                    attributes_from_env(&mut env, "MICROSOFT", &mut claims);
                    claims.role_mappings = role_mappings.clone();
                    b = b.provider(p.claims(claims));
                }
                None => env.bad(
                    "MICROSOFT_CLIENT_SECRET",
                    "is not set (required with MICROSOFT_CLIENT_ID)",
                ),
            }
        }
        if let Some(id) = env.get("GENERIC_CLIENT_ID")
            && let Some(p) = generic_from_env(&mut env, id)
        {
            let mut claims = p.claims.clone();
            claims.role_mappings = role_mappings;
            b = b.provider(p.claims(claims));
        }
        // A provider's variables without its client id are a half-done configuration: say so
        // now rather than log nobody in later.
        for (family, names) in [
            (
                "GOOGLE",
                &["GOOGLE_CLIENT_SECRET", "GOOGLE_HOSTED_DOMAIN"][..],
            ),
            (
                "MICROSOFT",
                &[
                    "MICROSOFT_CLIENT_SECRET",
                    "MICROSOFT_TENANT",
                    "MICROSOFT_SERVICE_PRINCIPAL_ID",
                    "MICROSOFT_ALLOWED_TENANTS",
                    "MICROSOFT_GRAPH_BASE_URL",
                    "MICROSOFT_JWKS_URI",
                ][..],
            ),
            (
                "GENERIC",
                &[
                    "GENERIC_CLIENT_SECRET",
                    "GENERIC_ISSUER",
                    "GENERIC_AUTHORIZATION_ENDPOINT",
                    "GENERIC_TOKEN_ENDPOINT",
                    "GENERIC_USERINFO_ENDPOINT",
                ][..],
            ),
        ] {
            let id = format!("{family}_CLIENT_ID");
            if env.get(&id).is_none() && names.iter().any(|n| env.get(n).is_some()) {
                env.bad(
                    &id,
                    format!("is not set, but other {family}_* provider variables are"),
                );
            }
        }

        let mut b = backends::backends_from_env(&mut env, b);
        b.env_problems.extend(env.problems);
        b
    }
}

/// `SSO_RATE_LIMIT_*` and `SSO_TRUSTED_PROXIES`.
fn rate_limits_from_env<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    b: SsoLayerBuilder,
) -> SsoLayerBuilder {
    let mut number = |name: &str| -> Option<u32> {
        let v = env.get(name)?;
        match v.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                env.bad(name, format!("{v:?} is not a whole number"));
                None
            }
        }
    };
    let login = number("SSO_RATE_LIMIT_LOGIN_PER_MINUTE");
    let callback = number("SSO_RATE_LIMIT_CALLBACK_PER_MINUTE");
    let cli_poll = number("SSO_RATE_LIMIT_CLI_POLL_PER_MINUTE");
    let burst = number("SSO_RATE_LIMIT_BURST");
    let mut b = b;
    if login.is_some() || callback.is_some() || cli_poll.is_some() || burst.is_some() {
        let default = RateLimits::DEFAULT;
        let burst = burst.unwrap_or(default.burst());
        let limit = |per_minute: Option<u32>, default: RateLimit| match per_minute
            .unwrap_or(default.per_minute())
        {
            0 => None,
            n => Some(RateLimit::new(n, burst)),
        };
        b = b.rate_limits(
            RateLimits::default()
                .login(limit(login, default))
                .callback(limit(callback, default))
                .cli_poll(limit(cli_poll, RateLimits::DEFAULT_CLI_POLL)),
        );
    }
    b.trusted_proxies(env.list("SSO_TRUSTED_PROXIES"))
}

/// `{FAMILY}_AUTHORIZATION_ENDPOINT`, `_TOKEN_ENDPOINT` and `_USERINFO_ENDPOINT`, when set,
/// override the provider's endpoints.
fn endpoints_from_env<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    family: &str,
    mut p: Provider,
) -> Provider {
    if let Some(u) = env.get(&format!("{family}_AUTHORIZATION_ENDPOINT")) {
        p = p.authorization_endpoint(u);
    }
    if let Some(u) = env.get(&format!("{family}_TOKEN_ENDPOINT")) {
        p = p.token_endpoint(u);
    }
    if let Some(u) = env.get(&format!("{family}_USERINFO_ENDPOINT")) {
        p = p.userinfo_endpoint(u);
    }
    p
}

/// `MICROSOFT_GRAPH_BASE_URL`, `MICROSOFT_JWKS_URI`, `MICROSOFT_SERVICE_PRINCIPAL_ID`,
/// `MICROSOFT_GRAPH_FAIL_OPEN` and `MICROSOFT_ALLOWED_TENANTS`.
fn microsoft_from_env<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    mut p: Provider,
) -> Provider {
    if let Some(u) = env.get("MICROSOFT_GRAPH_BASE_URL") {
        p = p.graph_base_url(u);
    }
    if let Some(u) = env.get("MICROSOFT_JWKS_URI") {
        p = p.jwks_uri(u);
    }
    if let Some(id) = env.get("MICROSOFT_SERVICE_PRINCIPAL_ID") {
        p = p.service_principal_id(id);
    }
    let fail_open = env.flag("MICROSOFT_GRAPH_FAIL_OPEN", false);
    p.graph_fail_open(fail_open)
        .allowed_tenants(env.list("MICROSOFT_ALLOWED_TENANTS"))
}

/// `GENERIC_ROLE_MAPPINGS_ROLES`, `_GROUP_CLAIM` and `_DEFAULT_ROLE` (read once; they apply to
/// the generic and the Microsoft provider).
fn role_mappings_from_env<F: Fn(&str) -> Option<String>>(env: &mut Env<F>) -> Option<RoleMappings> {
    let roles = env.get("GENERIC_ROLE_MAPPINGS_ROLES");
    let group_claim = env.get("GENERIC_ROLE_MAPPINGS_GROUP_CLAIM");
    let default_role = env.role("GENERIC_ROLE_MAPPINGS_DEFAULT_ROLE");
    match (roles, group_claim) {
        (Some(text), Some(group_claim)) => match parse_role_map(&text) {
            Ok(roles) => Some(RoleMappings {
                group_claim,
                default_role,
                roles,
            }),
            Err(e) => {
                env.bad("GENERIC_ROLE_MAPPINGS_ROLES", e);
                None
            }
        },
        (Some(_), None) => {
            env.bad(
                "GENERIC_ROLE_MAPPINGS_GROUP_CLAIM",
                "is not set (required with GENERIC_ROLE_MAPPINGS_ROLES)",
            );
            None
        }
        (None, Some(_)) => {
            env.bad(
                "GENERIC_ROLE_MAPPINGS_ROLES",
                "is not set (required with GENERIC_ROLE_MAPPINGS_GROUP_CLAIM)",
            );
            None
        }
        (None, None) => None,
    }
}

/// `{FAMILY}_USER_{ID,DISPLAY_NAME,EMAIL,FIRST_NAME,LAST_NAME,PROVIDER}_ATTRIBUTE`, when set,
/// override the claim names. `GENERIC_USER_ROLE_ATTRIBUTE` sets the (otherwise unread) role
/// claim; `MICROSOFT_USER_ROLE_ATTRIBUTE` is refused (Microsoft roles come only from the
/// id_token's app roles).
fn attributes_from_env<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    family: &str,
    claims: &mut ClaimMapping,
) {
    for (attr, slot) in [
        ("ID", &mut claims.user_id),
        ("DISPLAY_NAME", &mut claims.display_name),
        ("EMAIL", &mut claims.email),
        ("FIRST_NAME", &mut claims.first_name),
        ("LAST_NAME", &mut claims.last_name),
        ("PROVIDER", &mut claims.provider),
    ] {
        if let Some(v) = env.get(&format!("{family}_USER_{attr}_ATTRIBUTE")) {
            *slot = v;
        }
    }
    let role = format!("{family}_USER_ROLE_ATTRIBUTE");
    if let Some(v) = env.get(&role) {
        if family == "GENERIC" {
            claims.role = Some(v);
        } else {
            env.bad(
                &role,
                "is not read: this provider's role comes only from the id_token's app roles (or role mappings)",
            );
        }
    }
}

fn generic_from_env<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    id: String,
) -> Option<Provider> {
    let secret = env.get("GENERIC_CLIENT_SECRET");
    if secret.is_none() {
        env.bad(
            "GENERIC_CLIENT_SECRET",
            "is not set (required with GENERIC_CLIENT_ID)",
        );
    }
    let issuer = env.get("GENERIC_ISSUER");
    let mut p = match &issuer {
        Some(iss) => Provider::oidc(iss.clone(), id, secret.unwrap_or_default()),
        None => {
            for required in ["GENERIC_AUTHORIZATION_ENDPOINT", "GENERIC_TOKEN_ENDPOINT"] {
                if env.get(required).is_none() {
                    env.bad(required, "is not set (set GENERIC_ISSUER for discovery, or the endpoints explicitly)");
                }
            }
            Provider::generic(id, secret)
        }
    };
    p = endpoints_from_env(env, "GENERIC", p);
    if let Some(u) = env.get("GENERIC_JWKS_URI") {
        p = p.jwks_uri(u);
    }
    if let Some(scope) = env.get("GENERIC_SCOPE") {
        p = p.scopes(
            scope
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
    }
    if env.flag("GENERIC_INCLUDE_CLIENT_ID", false) {
        p = p.client_auth(ClientAuthMethod::Post);
    }
    if let Some(state) = env.get("GENERIC_CLIENT_STATE") {
        p = p.static_state(state);
    }
    let pkce = env.flag("GENERIC_CLIENT_USE_PKCE", true);
    p = p.pkce(pkce);
    if let Some(headers) = env.get("GENERIC_SSO_HEADERS") {
        for item in headers.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            // Split at the first '=' only: values such as base64 may contain '='.
            match item.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => p = p.token_header(k.trim(), v.trim()),
                _ => env.bad(
                    "GENERIC_SSO_HEADERS",
                    format!(
                        "entry {:?} is not NAME=VALUE",
                        item.split('=').next().unwrap_or("")
                    ),
                ),
            }
        }
    }

    let mut claims = ClaimMapping::default();
    attributes_from_env(env, "GENERIC", &mut claims);
    claims.extra = env.list("GENERIC_USER_EXTRA_ATTRIBUTES");
    claims.team_ids_field = env.get("GENERIC_TEAM_IDS_JWT_FIELD");
    Some(p.claims(claims))
}

/// A JSON object from a variable's text.
fn json_object(json: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(obj)) => Ok(obj),
        Ok(_) => Err("must be a JSON object".to_owned()),
        Err(e) => Err(format!("is not valid JSON ({e})")),
    }
}

fn parse_user_defaults(json: &str) -> Result<NewUserDefaults, String> {
    let obj = json_object(json)?;
    let role = match obj.get("user_role").and_then(|r| r.as_str()) {
        Some(r) => Some(r.parse::<UserRole>().map_err(|e| e.to_string())?),
        None => None,
    };
    // The budget fields are the same as a team's.
    let NewTeamDefaults {
        max_budget,
        budget_duration,
        models,
        ..
    } = team_defaults_from(&obj);
    Ok(NewUserDefaults {
        role,
        max_budget,
        budget_duration,
        models,
    })
}

fn parse_team_defaults(json: &str) -> Result<NewTeamDefaults, String> {
    json_object(json).map(|obj| team_defaults_from(&obj))
}

fn team_defaults_from(obj: &serde_json::Map<String, serde_json::Value>) -> NewTeamDefaults {
    NewTeamDefaults {
        max_budget: obj.get("max_budget").and_then(serde_json::Value::as_f64),
        budget_duration: obj
            .get("budget_duration")
            .and_then(|d| d.as_str())
            .map(str::to_owned),
        models: string_list(obj.get("models")),
        tpm_limit: whole_number(obj.get("tpm_limit")),
        rpm_limit: whole_number(obj.get("rpm_limit")),
    }
}

/// A non-negative whole number (`1000` or `1000.0`); anything else is no value.
fn whole_number(v: Option<&serde_json::Value>) -> Option<u64> {
    let v = v?;
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
            .map(|f| f as u64)
    })
}

fn string_list(v: Option<&serde_json::Value>) -> Vec<String> {
    v.and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn build(vars: &[(&str, &str)]) -> Result<SsoLayer, ConfigErrors> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SsoLayerBuilder::from_env_vars(move |k| map.get(k).cloned()).build()
    }

    #[test]
    fn nothing_set_names_both_required_variables() {
        let e = build(&[]).unwrap_err();
        assert!(e.mentions("PROXY_BASE_URL"), "{e}");
        assert!(e.mentions("LITELLM_MASTER_KEY"), "{e}");
    }

    #[test]
    fn rate_limits_and_trusted_proxies_from_env() {
        let base = [
            ("PROXY_BASE_URL", "https://gateway.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
        ];
        let layer = build(&base).unwrap();
        assert_eq!(layer.shared.rate_limiter.limits(), &RateLimits::default());
        let mut vars = base.to_vec();
        vars.extend([
            ("SSO_RATE_LIMIT_LOGIN_PER_MINUTE", "120"),
            ("SSO_RATE_LIMIT_CALLBACK_PER_MINUTE", "0"),
            ("SSO_RATE_LIMIT_BURST", "30"),
            ("SSO_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,fd00::/8"),
        ]);
        let layer = build(&vars).unwrap();
        let limits = layer.shared.rate_limiter.limits();
        assert_eq!(limits.login, Some(RateLimit::new(120, 30)));
        assert_eq!(limits.callback, None);
        let mut vars = base.to_vec();
        vars.extend([
            ("SSO_RATE_LIMIT_LOGIN_PER_MINUTE", "lots"),
            ("SSO_RATE_LIMIT_BURST", "0"),
            (
                "SSO_TRUSTED_PROXIES",
                "10.0.0.0/8,10.0.0.1/8,proxy.internal",
            ),
        ]);
        let e = build(&vars).unwrap_err();
        assert!(e.mentions("SSO_RATE_LIMIT_LOGIN_PER_MINUTE"), "{e}");
        assert!(e.mentions("rate_limits (SSO_RATE_LIMIT_*)"), "{e}");
        let proxies = e
            .errors()
            .iter()
            .filter(|p| p.setting == "trusted_proxies (SSO_TRUSTED_PROXIES)")
            .count();
        assert_eq!(proxies, 2, "{e}");
    }

    #[test]
    fn every_bad_variable_reported_at_once() {
        let e = build(&[
            ("PROXY_BASE_URL", "gateway.example.com"),
            ("LITELLM_MASTER_KEY", "short"),
            ("LITELLM_UI_SESSION_DURATION", "forever"),
            ("GENERIC_CLIENT_ID", "x"),
            (
                "GENERIC_ROLE_MAPPINGS_DEFAULT_ROLE",
                "internal_user_view_only",
            ),
            ("GENERIC_CLIENT_USE_PKCE", "maybe"),
            ("UI_ACCESS_MODE", "everyone-but-bob"),
            ("SSO_LINK_ACCOUNTS_BY_EMAIL", "sometimes"),
        ])
        .unwrap_err();
        let text = e.to_string();
        for name in [
            "PROXY_BASE_URL",
            "LITELLM_MASTER_KEY",
            "LITELLM_UI_SESSION_DURATION",
            "GENERIC_AUTHORIZATION_ENDPOINT",
            "GENERIC_TOKEN_ENDPOINT",
            "GENERIC_ROLE_MAPPINGS_DEFAULT_ROLE",
            "GENERIC_CLIENT_USE_PKCE",
            "UI_ACCESS_MODE",
            "SSO_LINK_ACCOUNTS_BY_EMAIL",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(
            !text.contains("short"),
            "secret values never appear in errors"
        );
    }

    #[test]
    fn generic_with_discovery_and_mappings() {
        let layer = build(&[
            ("PROXY_BASE_URL", "https://gateway.example.com/"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("GENERIC_CLIENT_ID", "client"),
            ("GENERIC_CLIENT_SECRET", "secret"),
            ("GENERIC_ISSUER", "https://idp.example.com"),
            (
                "GENERIC_SSO_HEADERS",
                "Authorization=Basic dXNlcjpwYXNz==, X-Custom=1",
            ),
            (
                "GENERIC_ROLE_MAPPINGS_ROLES",
                "{'proxy_admin': ['custom-admin-group'], 'internal_user': ['custom-user-group']}",
            ),
            ("GENERIC_ROLE_MAPPINGS_GROUP_CLAIM", "custom-groups"),
            ("GENERIC_ROLE_MAPPINGS_DEFAULT_ROLE", "internal_user_viewer"),
            ("SERVER_ROOT_PATH", "/litellm"),
        ])
        .unwrap();
        assert_eq!(
            layer.callback_url(),
            "https://gateway.example.com/litellm/sso/callback"
        );
        let p = &layer.shared.providers[0].config;
        assert_eq!(
            p.extra_headers[0],
            (
                "Authorization".to_owned(),
                "Basic dXNlcjpwYXNz==".to_owned()
            )
        );
        let rm = p.claims.role_mappings.as_ref().unwrap();
        assert_eq!(rm.group_claim, "custom-groups");
        assert_eq!(rm.default_role, Some(UserRole::InternalUserViewer));
        assert!(p.pkce);
    }

    #[test]
    fn all_providers_registered_in_upstream_order() {
        let layer = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("GENERIC_CLIENT_ID", "g"),
            ("GENERIC_CLIENT_SECRET", "gs"),
            (
                "GENERIC_AUTHORIZATION_ENDPOINT",
                "https://idp.example.com/auth",
            ),
            ("GENERIC_TOKEN_ENDPOINT", "https://idp.example.com/token"),
            ("GOOGLE_CLIENT_ID", "goog"),
            ("GOOGLE_CLIENT_SECRET", "s"),
        ])
        .unwrap();
        let names: Vec<&str> = layer
            .shared
            .providers
            .iter()
            .map(|p| p.config.provider_name())
            .collect();
        assert_eq!(names, ["google", "generic"]);
    }

    #[test]
    fn microsoft_and_google_variables() {
        let layer = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("GOOGLE_CLIENT_ID", "goog"),
            ("GOOGLE_CLIENT_SECRET", "s"),
            ("GOOGLE_HOSTED_DOMAIN", "Example.COM"),
            ("MICROSOFT_CLIENT_ID", "m"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_TENANT", "organizations"),
            (
                "MICROSOFT_SERVICE_PRINCIPAL_ID",
                "0b7f7c1e-1c7e-4a4f-9d0a-1f2e3d4c5b6a",
            ),
            ("MICROSOFT_GRAPH_FAIL_OPEN", "true"),
            (
                "MICROSOFT_ALLOWED_TENANTS",
                "72F988BF-86F1-41AF-91AB-2D7CD011DB47, 9188040d-6c67-4c5b-b112-36a304b66dad",
            ),
            (
                "MICROSOFT_GRAPH_BASE_URL",
                "https://graph.microsoft.us/v1.0/",
            ),
            (
                "MICROSOFT_JWKS_URI",
                "https://login.microsoftonline.us/common/discovery/v2.0/keys",
            ),
            (
                "GENERIC_ROLE_MAPPINGS_ROLES",
                "{'proxy_admin': ['g-admins']}",
            ),
            ("GENERIC_ROLE_MAPPINGS_GROUP_CLAIM", "groups"),
            (
                "DEFAULT_TEAM_PARAMS",
                r#"{"max_budget": 10, "tpm_limit": 1000, "rpm_limit": 10.0, "models": ["m"]}"#,
            ),
        ])
        .unwrap();
        let google = &layer.shared.providers[0].config;
        assert_eq!(google.hosted_domain.as_deref(), Some("example.com"));
        let ms = &layer.shared.providers[1].config;
        assert_eq!(
            ms.microsoft.graph_base_url,
            "https://graph.microsoft.us/v1.0"
        );
        assert!(ms.microsoft.graph_fail_open);
        assert_eq!(
            ms.microsoft.service_principal_id.as_deref(),
            Some("0b7f7c1e-1c7e-4a4f-9d0a-1f2e3d4c5b6a")
        );
        assert_eq!(
            ms.microsoft.allowed_tenants,
            [
                "72f988bf-86f1-41af-91ab-2d7cd011db47",
                "9188040d-6c67-4c5b-b112-36a304b66dad"
            ]
        );
        assert_eq!(
            ms.jwks_uri.as_deref(),
            Some("https://login.microsoftonline.us/common/discovery/v2.0/keys")
        );
        let rm = ms
            .claims
            .role_mappings
            .as_ref()
            .expect("role mappings for Microsoft");
        assert_eq!(rm.group_claim, "groups");
        let t = &layer.shared.team_defaults;
        assert_eq!(
            (t.tpm_limit, t.rpm_limit, t.max_budget),
            (Some(1000), Some(10), Some(10.0))
        );

        let e = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("MICROSOFT_CLIENT_ID", "m"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_ALLOWED_TENANTS", "contoso.com"),
            ("MICROSOFT_SERVICE_PRINCIPAL_ID", "../../users"),
            ("MICROSOFT_GRAPH_BASE_URL", "http://graph.example.com"),
            ("MICROSOFT_GRAPH_FAIL_OPEN", "perhaps"),
        ])
        .unwrap_err();
        let text = e.to_string();
        for needle in [
            "allowed tenant",
            "service principal",
            "Graph base URL",
            "MICROSOFT_GRAPH_FAIL_OPEN",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        let e = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("MICROSOFT_SERVICE_PRINCIPAL_ID", "sp"),
            ("GOOGLE_HOSTED_DOMAIN", "example.com"),
        ])
        .unwrap_err();
        assert!(
            e.mentions("MICROSOFT_CLIENT_ID") && e.mentions("GOOGLE_CLIENT_ID"),
            "{e}"
        );
    }

    #[test]
    fn link_accounts_by_email_is_off_unless_set() {
        let base = [
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
        ];
        assert!(!build(&base).unwrap().shared.link_accounts_by_email);
        let mut vars = base.to_vec();
        vars.push(("SSO_LINK_ACCOUNTS_BY_EMAIL", "TRUE"));
        assert!(build(&vars).unwrap().shared.link_accounts_by_email);
        vars.pop();
        vars.push(("SSO_LINK_ACCOUNTS_BY_EMAIL", "false"));
        assert!(!build(&vars).unwrap().shared.link_accounts_by_email);
    }

    #[test]
    fn attribute_and_endpoint_overrides_per_family() {
        let layer = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("MICROSOFT_CLIENT_ID", "m"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_USER_EMAIL_ATTRIBUTE", "custom_email_field"),
            (
                "MICROSOFT_TOKEN_ENDPOINT",
                "https://login.example.com/token",
            ),
            ("GENERIC_CLIENT_ID", "g"),
            ("GENERIC_CLIENT_SECRET", "gs"),
            ("GENERIC_ISSUER", "https://idp.example.com"),
            ("GENERIC_USER_ID_ATTRIBUTE", "attributes.userId"),
            ("GENERIC_USER_ROLE_ATTRIBUTE", "litellm_role"),
        ])
        .unwrap();
        let ms = &layer.shared.providers[0].config;
        assert_eq!(ms.claims.email, "custom_email_field");
        assert_eq!(ms.claims.user_id, "id");
        assert_eq!(
            ms.token_endpoint.as_deref(),
            Some("https://login.example.com/token")
        );
        let generic = &layer.shared.providers[1].config;
        assert_eq!(generic.claims.user_id, "attributes.userId");
        assert_eq!(generic.claims.role.as_deref(), Some("litellm_role"));
        assert_eq!(generic.claims.email, "email");
    }

    #[test]
    fn generic_ids_are_subjects_and_no_role_claim_unless_configured() {
        let base = [
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("GENERIC_CLIENT_ID", "g"),
            ("GENERIC_CLIENT_SECRET", "gs"),
            ("GENERIC_ISSUER", "https://idp.example.com"),
        ];
        let layer = build(&base).unwrap();
        let claims = &layer.shared.providers[0].config.claims;
        assert_eq!(
            (claims.user_id.as_str(), claims.role.as_deref()),
            ("sub", None)
        );
        // Upstream's ids and role claim, when asked for.
        let mut vars = base.to_vec();
        vars.push(("GENERIC_USER_ID_ATTRIBUTE", "preferred_username"));
        vars.push(("GENERIC_USER_ROLE_ATTRIBUTE", "role"));
        let layer = build(&vars).unwrap();
        let claims = &layer.shared.providers[0].config.claims;
        assert_eq!(
            (claims.user_id.as_str(), claims.role.as_deref()),
            ("preferred_username", Some("role"))
        );
        // Microsoft: a role attribute is refused, not silently trusted.
        let e = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("MICROSOFT_CLIENT_ID", "m"),
            ("MICROSOFT_CLIENT_SECRET", "s"),
            ("MICROSOFT_USER_ROLE_ATTRIBUTE", "role"),
        ])
        .unwrap_err();
        assert!(e.mentions("MICROSOFT_USER_ROLE_ATTRIBUTE"), "{e}");
    }

    #[test]
    fn provider_variables_without_their_client_id_are_reported() {
        let e = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("GENERIC_ISSUER", "https://idp.example.com"),
            ("GOOGLE_CLIENT_SECRET", "s"),
        ])
        .unwrap_err();
        assert!(e.mentions("GENERIC_CLIENT_ID"), "{e}");
        assert!(e.mentions("GOOGLE_CLIENT_ID"), "{e}");
        let e = build(&[
            ("PROXY_BASE_URL", "https://gw.example.com"),
            ("LITELLM_MASTER_KEY", "sk-0123456789abcdef"),
            ("GENERIC_CLIENT_ID", "g"),
            ("GENERIC_ISSUER", "https://idp.example.com"),
        ])
        .unwrap_err();
        assert!(e.mentions("GENERIC_CLIENT_SECRET"), "{e}");
    }
}

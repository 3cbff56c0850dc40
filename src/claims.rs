//! Claim mapping: how the identity provider's userinfo / token claims become an [`SsoUser`].
//!
//! This is the generic-provider "response convertor" of LiteLLM's SSO module: every user field is
//! read from a configurable claim path ([`ClaimMapping`]), an optional group-to-role table
//! ([`RoleMappings`]) turns IdP groups into a [`UserRole`], and [`ClaimMapping::apply_access_token`]
//! fills the role and teams from a JWT access token when the userinfo answer did not carry them
//! (Keycloak puts roles in the access token only).
//!
//! # Claim paths
//!
//! Every attribute name is a dot path ([`claim_at`]): `a.b.c` walks nested objects, `a\.b` is a key
//! containing a literal dot, and a leading `metadata.` is stripped (as upstream does).

use std::collections::BTreeMap;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::identity::{SsoUser, UserRole};

/// Which claim each [`SsoUser`] field is read from (the `GENERIC_USER_*_ATTRIBUTE` settings).
///
/// Every field is a dot path, see [`claim_at`]. [`Default`] gives the upstream defaults except
/// two, for safety: the user id is read from `sub` (upstream: `preferred_username`), and no role is
/// read from a raw claim unless [`role`](Self::role) is set (upstream: `role`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// User id claim (`GENERIC_USER_ID_ATTRIBUTE`, default `sub`).
    ///
    /// **Deviation from upstream**, which defaults to `preferred_username`: that claim is
    /// user-editable at some providers, so a user could rename themselves to another user's id
    /// (or to `PROXY_ADMIN_ID`). `sub` is assigned by the provider and never changes. Set
    /// `preferred_username` (`GENERIC_USER_ID_ATTRIBUTE=preferred_username`) to keep upstream's
    /// ids; only do so where users cannot edit it.
    pub user_id: String,
    /// Display name claim (`GENERIC_USER_DISPLAY_NAME_ATTRIBUTE`, default `sub`).
    pub display_name: String,
    /// E-mail claim (`GENERIC_USER_EMAIL_ATTRIBUTE`, default `email`). The value is lower-cased
    /// (ASCII letters only). The `email_verified` claim is read only when this is `email`: it
    /// vouches for that claim, not for another one.
    pub email: String,
    /// Given-name claim (`GENERIC_USER_FIRST_NAME_ATTRIBUTE`, default `first_name`).
    pub first_name: String,
    /// Family-name claim (`GENERIC_USER_LAST_NAME_ATTRIBUTE`, default `last_name`).
    pub last_name: String,
    /// Provider-name claim (`GENERIC_USER_PROVIDER_ATTRIBUTE`, default `provider`). When the claim
    /// is absent the provider name passed to [`ClaimMapping::map`] is used.
    pub provider: String,
    /// Role claim (`GENERIC_USER_ROLE_ATTRIBUTE`), read only when set: default `None`, no role
    /// is read from a raw claim. A string or a list of strings; see [`role_from_value`].
    ///
    /// **Deviation from upstream**, which reads a claim named `role` by default. Setting this
    /// trusts that claim completely: anyone who can edit it at the identity provider picks their
    /// own role, `proxy_admin` included. Set it only when the claim is under the administrators'
    /// control (not a profile attribute users can change), or use
    /// [`role_mappings`](Self::role_mappings). Ignored when role mappings are configured (they are
    /// then the only source of a role), and only generic providers may set it: Google never reads
    /// a role claim, Microsoft reads only the app roles of its id_token.
    pub role: Option<String>,
    /// Extra claims copied into [`SsoUser::extra`] (`GENERIC_USER_EXTRA_ATTRIBUTES`), keyed by the
    /// path exactly as written here; a missing claim becomes `null`.
    pub extra: Vec<String>,
    /// Group-to-role mappings (`GENERIC_ROLE_MAPPINGS_*`). When set, they are the only source of
    /// a role from the identity provider: no group matches and no default role means no role
    /// (the stored one is kept), never a fallback to [`role`](Self::role).
    pub role_mappings: Option<RoleMappings>,
    /// The claim holding the user's team ids (`team_ids_jwt_field`), parsed with
    /// [`groups_from_value`]. `None`: no teams are read.
    pub team_ids_field: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            user_id: "sub".to_owned(),
            display_name: "sub".to_owned(),
            email: "email".to_owned(),
            first_name: "first_name".to_owned(),
            last_name: "last_name".to_owned(),
            provider: "provider".to_owned(),
            role: None,
            extra: Vec::new(),
            role_mappings: None,
            team_ids_field: None,
        }
    }
}

/// Group-based role assignment (`GENERIC_ROLE_MAPPINGS_ROLES`, `_GROUP_CLAIM`, `_DEFAULT_ROLE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleMappings {
    /// The claim (dot path) that holds the user's groups.
    pub group_claim: String,
    /// The role given when no group matches (or the user has no groups).
    pub default_role: Option<UserRole>,
    /// For each role, the groups that grant it. Only roles with a
    /// [`UserRole::mapping_rank`] are ever assigned; see [`RoleMappings::role_for_groups`].
    pub roles: BTreeMap<UserRole, Vec<String>>,
}

impl RoleMappings {
    /// The most privileged role any of `groups` grants, else [`RoleMappings::default_role`].
    ///
    /// Ranking: `proxy_admin` > `proxy_admin_viewer` > `internal_user` > `internal_user_viewer`.
    /// Group names match case-sensitively. Roles without a mapping rank (`org_admin`, `team`,
    /// `customer`) are never returned from a group match.
    pub fn role_for_groups(&self, groups: &[String]) -> Option<UserRole> {
        self.roles
            .iter()
            .filter_map(|(role, role_groups)| {
                role.mapping_rank().map(|rank| (rank, *role, role_groups))
            })
            .filter(|(_, _, role_groups)| role_groups.iter().any(|g| groups.contains(g)))
            .max_by_key(|(rank, _, _)| *rank)
            .map(|(_, role, _)| role)
            .or(self.default_role)
    }

    /// The role for the groups found under [`RoleMappings::group_claim`] in `claims`
    /// (no groups: the default role).
    pub fn role_for_claims(&self, claims: &Map<String, Value>) -> Option<UserRole> {
        let groups = claim_at(claims, &self.group_claim)
            .map(groups_from_value)
            .unwrap_or_default();
        self.role_for_groups(&groups)
    }
}

/// Parses `GENERIC_ROLE_MAPPINGS_ROLES`: a map from role name to a list of group names.
///
/// Accepts JSON (`{"proxy_admin": ["admins"]}`) and the Python-literal dict syntax upstream
/// documents (`{'proxy_admin': ['admins'], }`): single- or double-quoted strings with `\'`, `\"`,
/// `\\` (and the JSON escapes), trailing commas, any white space. A single string is taken as a
/// one-element list. Role names are matched case-insensitively; an unknown one is an error that
/// names it and lists the valid roles. A role given twice keeps the last list.
pub fn parse_role_map(text: &str) -> Result<BTreeMap<UserRole, Vec<String>>, String> {
    let entries = literal::parse_dict(text)?;
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let role = UserRole::from_str(&key).map_err(|e| e.to_string())?;
        let groups = match value {
            literal::Value::Str(s) => vec![s],
            literal::Value::List(l) => l,
            literal::Value::Null => {
                return Err(format!(
                    "role {:?}: expected a list of group names, found null",
                    key
                ));
            }
        };
        out.insert(role, groups);
    }
    Ok(out)
}

/// The value at a dot path in `claims`.
///
/// `a.b.c` walks nested objects; `a\.b` names the key `a.b` (a backslash before anything else is
/// kept as is); a leading `metadata.` prefix is stripped. Arrays are not indexed. As upstream
/// (`get_nested_value`), an unescaped dot always separates keys: a top-level key that itself
/// contains a dot is reached only through the escaped form (`kubernetes\.io`). An empty path finds
/// nothing.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    let path = path.strip_prefix("metadata.").unwrap_or(path);
    let mut current: Option<&'a Map<String, Value>> = Some(claims);
    let mut found: Option<&'a Value> = None;
    for part in split_path(path) {
        let value = current?.get(&part)?;
        found = Some(value);
        current = value.as_object();
    }
    found
}

/// Splits a dot path on unescaped dots; `\.` becomes a literal dot.
fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                cur.push('.');
                chars.next();
            }
            '.' => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// Group (or team) names from a claim value.
///
/// A list gives its elements (strings as they are, numbers and booleans in their JSON spelling;
/// `null`, objects and nested lists are skipped); a string is split on commas and trimmed
/// (`"a, b"` -> `["a", "b"]`); another scalar becomes one element (`42` -> `["42"]`); `null`
/// and empty values give no groups.
pub fn groups_from_value(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(scalar_to_string).collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Null | Value::Object(_) => Vec::new(),
        other => scalar_to_string(other).into_iter().collect(),
    }
}

/// A role from a role-claim value (upstream `get_litellm_user_role`): a string is parsed with
/// [`UserRole::from_str`] (case-insensitive); for a list, the first element that is a valid role
/// wins. Anything else, or no valid role, gives `None`.
pub fn role_from_value(value: &Value) -> Option<UserRole> {
    match value {
        Value::String(s) => UserRole::from_str(s).ok(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .find_map(|s| UserRole::from_str(s).ok()),
        _ => None,
    }
}

/// A string, number or boolean as text; anything else `None`.
fn scalar_to_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A scalar claim as an optional, non-empty string.
fn scalar_field(claims: &Map<String, Value>, path: &str) -> Option<String> {
    claim_at(claims, path)
        .and_then(scalar_to_string)
        .filter(|s| !s.is_empty())
}

/// Upper bound on the access-token size [`ClaimMapping::apply_access_token`] will look into.
const MAX_ACCESS_TOKEN_LEN: usize = 64 * 1024;

impl ClaimMapping {
    /// Maps the IdP's claims (the userinfo answer, or id_token claims) to an [`SsoUser`].
    ///
    /// - `id`, `display_name`, `first_name`, `last_name`, `email`: strings, numbers and booleans
    ///   are taken as text; objects, arrays, `null` and empty strings give `None`. The e-mail is
    ///   lower-cased, ASCII letters only (Unicode case folding would turn U+212A KELVIN SIGN
    ///   into `k` and make two addresses one).
    /// - `email_verified`: the `email_verified` claim ([`email_verified_from_value`]), when there
    ///   is an e-mail and it is read from the `email` claim; else `None`. An e-mail the IdP marks
    ///   unverified (`email_verified` is `false`) is dropped: `email` is `None` and
    ///   `email_verified` `Some(false)`, so the address is never stored, put in the session, sent
    ///   upstream or matched against the allowed domains. An absent `email_verified` keeps the
    ///   e-mail (many IdPs, Entra ID for one, never send it).
    /// - `provider`: the provider claim if present, else the `provider` argument.
    /// - `role`: with [`ClaimMapping::role_mappings`], only the groups decide
    ///   ([`RoleMappings::role_for_claims`], which falls back to the default role); without
    ///   mappings, the role claim ([`role_from_value`]) when [`ClaimMapping::role`] is set; else
    ///   `None`.
    /// - `team_ids`: [`groups_from_value`] of [`ClaimMapping::team_ids_field`].
    /// - `extra`: every configured path, keyed as written, `null` when missing.
    /// - `subject`: the `sub` claim, when it is a string.
    pub fn map(&self, claims: &Map<String, Value>, provider: &str) -> SsoUser {
        let role = self.role_from(claims);
        let team_ids = self
            .team_ids_field
            .as_deref()
            .and_then(|f| claim_at(claims, f))
            .map(groups_from_value)
            .unwrap_or_default();
        let extra = self
            .extra
            .iter()
            .map(|path| {
                (
                    path.clone(),
                    claim_at(claims, path).cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        let mut email = scalar_field(claims, &self.email).map(|e| e.to_ascii_lowercase());
        let email_verified = if email.is_some() && self.email == "email" {
            claims
                .get("email_verified")
                .and_then(email_verified_from_value)
        } else {
            None
        };
        if email_verified == Some(false) {
            // The IdP says it does not vouch for this address: it identifies no one.
            email = None;
        }
        SsoUser {
            id: scalar_field(claims, &self.user_id),
            email,
            email_verified,
            first_name: scalar_field(claims, &self.first_name),
            last_name: scalar_field(claims, &self.last_name),
            display_name: scalar_field(claims, &self.display_name),
            provider: scalar_field(claims, &self.provider).or_else(|| Some(provider.to_owned())),
            role,
            team_ids,
            extra,
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        }
    }

    /// The role from `claims` by the rules of [`ClaimMapping::map`]: the role mappings when
    /// configured (and only they), else the configured role claim, else `None`.
    pub fn role_from(&self, claims: &Map<String, Value>) -> Option<UserRole> {
        match (&self.role_mappings, self.role.as_deref()) {
            (Some(rm), _) => rm.role_for_claims(claims),
            (None, Some(path)) => claim_at(claims, path).and_then(role_from_value),
            (None, None) => None,
        }
    }

    /// Fills the role and team ids from a JWT access token, for providers (Keycloak) that put
    /// them only there (upstream `process_sso_jwt_access_token`).
    ///
    /// Only empty fields are filled: the role only when `user.role` is `None`, by the same rules
    /// as [`ClaimMapping::map`] (the role mappings when configured, and only they; else the role
    /// claim only when [`ClaimMapping::role`] is set; upstream also falls back to a claim named
    /// `role`), the team ids only when `user.team_ids` is empty (from
    /// [`ClaimMapping::team_ids_field`]). A token that is not a JWT (an opaque token), or one
    /// larger than 64 KiB, is skipped silently.
    ///
    /// # Why the signature is not checked
    ///
    /// The token is decoded without verifying its signature, as upstream does. That is acceptable
    /// here because the caller received it directly from the provider's token endpoint, over TLS,
    /// in exchange for an authorization code it just redeemed with its own client credentials; no
    /// browser or other party could have substituted it. And it only supplies the role and teams
    /// the provider would otherwise have sent in the (equally unsigned) userinfo answer; the user's
    /// identity still comes from the verified login. Never call this with a token taken from a
    /// request.
    pub fn apply_access_token(&self, user: &mut SsoUser, access_token: &str) {
        let Some(payload) = decode_jwt_payload_unverified(access_token) else {
            tracing::debug!(
                "access token is not a JWT (opaque token); skipping role/team extraction"
            );
            return;
        };
        if user.team_ids.is_empty()
            && let Some(field) = self.team_ids_field.as_deref()
        {
            user.team_ids = claim_at(&payload, field)
                .map(groups_from_value)
                .unwrap_or_default();
        }
        if user.role.is_none() {
            user.role = self.role_from(&payload);
        }
    }
}

/// The role of a Microsoft Entra ID login, from its id_token claims (upstream
/// `MicrosoftSSOHandler.get_app_roles_from_id_token`): the `app_roles` claim when it is present
/// and non-empty, else `roles`. Anything but a list of strings gives `None`; otherwise the first
/// value that is a valid role ([`UserRole::from_str`], case-insensitive) is the role.
///
/// Pass the id_token's claims only: app roles are assigned by the tenant's administrators, and
/// the id_token is what the login verified (the Graph profile is not consulted for roles).
pub fn microsoft_app_role(id_token_claims: &Map<String, Value>) -> Option<UserRole> {
    let non_empty = |v: &&Value| !matches!(v, Value::Null | Value::Bool(false)) && !is_empty(v);
    let roles = id_token_claims
        .get("app_roles")
        .filter(non_empty)
        .or_else(|| id_token_claims.get("roles"))?;
    let Value::Array(items) = roles else {
        return None;
    };
    let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
    names?.into_iter().find_map(|s| UserRole::from_str(s).ok())
}

/// An empty string, list or object (falsy in Python, as upstream's `or` sees them).
fn is_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// The `email_verified` claim: `true`/`false`, or the strings `"true"`/`"false"` (some IdPs,
/// Cognito for one, send strings). Anything else is `None`.
pub fn email_verified_from_value(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// The user id of a login: the id claim; else the e-mail (lower-cased), but only when the IdP
/// marks it verified ([`SsoUser::email_verified`] is `Some(true)`); else the IdP subject
/// ([`SsoUser::subject`]); else `None`. Empty strings count as missing.
///
/// Unlike upstream (`_get_user_email_and_id_from_result`), first and last name are never
/// concatenated into an id: names are not unique (two "Jane Doe"s would share one account) and
/// are user-editable at most IdPs (`first_name = "admin@corp.example"` would become the
/// `PROXY_ADMIN_ID`). And an unverified e-mail is not used either; the subject is.
pub fn fallback_user_id(user: &SsoUser) -> Option<String> {
    if let Some(id) = user.id.as_deref().filter(|s| !s.is_empty()) {
        return Some(id.to_owned());
    }
    if user.email_verified == Some(true)
        && let Some(email) = user.email.as_deref().filter(|s| !s.is_empty())
    {
        return Some(email.to_ascii_lowercase());
    }
    user.subject
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Decodes the payload of a compact JWS (`header.payload.signature`) without checking anything but
/// its shape: three base64url segments, the first two JSON objects. `None` for anything else.
pub(crate) fn decode_jwt_payload_unverified(token: &str) -> Option<Map<String, Value>> {
    if token.is_empty() || token.len() > MAX_ACCESS_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() {
        return None;
    }
    b64url_decode(signature)?;
    let header: Value = serde_json::from_slice(&b64url_decode(header)?).ok()?;
    if !header.is_object() {
        return None;
    }
    match serde_json::from_slice(&b64url_decode(payload)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Decodes unpadded (or padded) base64url. `None` on any invalid character or length.
fn b64url_decode(input: &str) -> Option<Vec<u8>> {
    let input = input.trim_end_matches('=');
    if input.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for b in input.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A tiny parser for dicts written as JSON or as Python literals (strings and lists of strings).
pub(crate) mod literal {
    /// A dict value.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Value {
        /// A string.
        Str(String),
        /// A list of strings.
        List(Vec<String>),
        /// `null` / `None`.
        Null,
    }

    struct Parser<'a> {
        s: &'a [u8],
        text: &'a str,
        pos: usize,
    }

    /// Parses `{key: value, ...}` where keys are strings and values are strings, lists of
    /// strings or `null`/`None`. Entries are returned in source order.
    pub(crate) fn parse_dict(text: &str) -> Result<Vec<(String, Value)>, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            pos: 0,
        };
        p.ws();
        p.expect(b'{')?;
        let mut out = Vec::new();
        loop {
            p.ws();
            if p.eat(b'}') {
                break;
            }
            let key = p.string()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            let value = p.value()?;
            out.push((key, value));
            p.ws();
            if p.eat(b',') {
                continue;
            }
            p.ws();
            p.expect(b'}')?;
            break;
        }
        p.ws();
        if p.pos != p.s.len() {
            return Err(format!(
                "unexpected text after the closing brace at offset {}",
                p.pos
            ));
        }
        Ok(out)
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.pos).copied()
        }

        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }

        fn eat(&mut self, c: u8) -> bool {
            if self.peek() == Some(c) {
                self.pos += 1;
                true
            } else {
                false
            }
        }

        fn expect(&mut self, c: u8) -> Result<(), String> {
            if self.eat(c) {
                Ok(())
            } else {
                Err(self.unexpected(&format!("'{}'", char::from(c))))
            }
        }

        fn unexpected(&self, wanted: &str) -> String {
            match self
                .text
                .get(self.pos..)
                .and_then(|rest| rest.chars().next())
            {
                Some(c) => format!("expected {wanted} at offset {}, found {c:?}", self.pos),
                None => format!("expected {wanted}, found the end of the text"),
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            match self.peek() {
                Some(b'[') => {
                    self.pos += 1;
                    let mut items = Vec::new();
                    loop {
                        self.ws();
                        if self.eat(b']') {
                            break;
                        }
                        items.push(self.string()?);
                        self.ws();
                        if self.eat(b',') {
                            continue;
                        }
                        self.ws();
                        self.expect(b']')?;
                        break;
                    }
                    Ok(Value::List(items))
                }
                Some(b'"' | b'\'') => self.string().map(Value::Str),
                _ => {
                    for word in ["null", "None"] {
                        if self.s.get(self.pos..self.pos + word.len()) == Some(word.as_bytes()) {
                            self.pos += word.len();
                            return Ok(Value::Null);
                        }
                    }
                    Err(self.unexpected("a string or a list of strings"))
                }
            }
        }

        fn string(&mut self) -> Result<String, String> {
            let quote = match self.peek() {
                Some(q @ (b'"' | b'\'')) => q,
                _ => return Err(self.unexpected("a quoted string")),
            };
            self.pos += 1;
            let mut out = String::new();
            loop {
                let rest = self.text.get(self.pos..).unwrap_or("");
                let Some(c) = rest.chars().next() else {
                    return Err("unterminated string".to_owned());
                };
                self.pos += c.len_utf8();
                match c {
                    c if c as u32 == u32::from(quote) => return Ok(out),
                    '\\' => self.escape(&mut out)?,
                    '\n' | '\r' => return Err("line break inside a string".to_owned()),
                    c => out.push(c),
                }
            }
        }

        fn escape(&mut self, out: &mut String) -> Result<(), String> {
            let rest = self.text.get(self.pos..).unwrap_or("");
            let Some(c) = rest.chars().next() else {
                return Err("unterminated string".to_owned());
            };
            self.pos += c.len_utf8();
            match c {
                '\'' | '"' | '\\' | '/' => out.push(c),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hi = self.hex4()?;
                    let code = if (0xD800..0xDC00).contains(&hi) {
                        if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err("unpaired surrogate in \\u escape".to_owned());
                        }
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err("unpaired surrogate in \\u escape".to_owned());
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else {
                        hi
                    };
                    out.push(char::from_u32(code).ok_or_else(|| "invalid \\u escape".to_owned())?);
                }
                // Python keeps unknown escapes as written.
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            Ok(())
        }

        fn hex4(&mut self) -> Result<u32, String> {
            let digits = self
                .text
                .get(self.pos..self.pos + 4)
                .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| "invalid \\u escape".to_owned())?;
            self.pos += 4;
            u32::from_str_radix(digits, 16).map_err(|_| "invalid \\u escape".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn jwt(payload: Value) -> String {
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(payload.to_string().as_bytes()),
            b64(b"not-a-real-signature")
        )
    }

    fn groups(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn base64url_roundtrip() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64url_decode(&b64(&data)).unwrap(), data);
        }
        assert!(b64url_decode("a").is_none());
        assert!(b64url_decode("ab+/").is_none());
    }

    #[test]
    fn defaults_are_upstream_generic_defaults_but_id_and_role() {
        let m = ClaimMapping::default();
        // Deviations: the id is the non-editable `sub` (upstream `preferred_username`), and no
        // raw role claim is read (upstream `role`).
        assert_eq!(
            (
                m.user_id.as_str(),
                m.display_name.as_str(),
                m.email.as_str(),
                m.first_name.as_str()
            ),
            ("sub", "sub", "email", "first_name")
        );
        assert_eq!(
            (m.last_name.as_str(), m.provider.as_str(), m.role.as_deref()),
            ("last_name", "provider", None)
        );
        assert!(m.extra.is_empty() && m.role_mappings.is_none() && m.team_ids_field.is_none());
    }

    #[test]
    fn generic_convertor_normalizes_email() {
        let claims = obj(json!({
            "preferred_username": "user123", "email": "Test.User@Example.COM", "sub": "Test User",
            "first_name": "Test", "last_name": "User"
        }));
        let u = ClaimMapping::default().map(&claims, "generic");
        assert_eq!(u.email.as_deref(), Some("test.user@example.com"));
        // The id is the subject, never the editable user name.
        assert_eq!(u.id.as_deref(), Some("Test User"));
        let upstream_ids = ClaimMapping {
            user_id: "preferred_username".into(),
            ..ClaimMapping::default()
        };
        assert_eq!(
            upstream_ids.map(&claims, "generic").id.as_deref(),
            Some("user123")
        );
        assert_eq!(u.display_name.as_deref(), Some("Test User"));
        assert_eq!(u.subject.as_deref(), Some("Test User"));
        assert_eq!(u.provider.as_deref(), Some("generic"));
        assert_eq!(u.role, None);
        assert!(u.team_ids.is_empty() && u.extra.is_empty());
    }

    #[test]
    fn nested_attributes() {
        let claims = obj(json!({
            "sub": "user-sub-123",
            "attributes": {"given_name": "John", "family_name": "Doe", "userId": "nested-user-456",
                           "email": "john.doe@example.com"},
            "id": "top-level-id-789"
        }));
        let m = ClaimMapping {
            user_id: "attributes.userId".into(),
            email: "attributes.email".into(),
            first_name: "attributes.given_name".into(),
            last_name: "attributes.family_name".into(),
            display_name: "sub".into(),
            ..ClaimMapping::default()
        };
        let u = m.map(&claims, "generic");
        assert_eq!(u.id.as_deref(), Some("nested-user-456"));
        assert_eq!(u.email.as_deref(), Some("john.doe@example.com"));
        assert_eq!(u.first_name.as_deref(), Some("John"));
        assert_eq!(u.last_name.as_deref(), Some("Doe"));
        assert_eq!(u.display_name.as_deref(), Some("user-sub-123"));
    }

    #[test]
    fn scalar_fields_stringify_and_reject_structures() {
        let claims = obj(
            json!({"preferred_username": 42, "first_name": true, "last_name": {"a": 1},
                                "sub": ["x"], "email": "", "provider": "okta"}),
        );
        let m = ClaimMapping {
            user_id: "preferred_username".into(),
            ..ClaimMapping::default()
        };
        let u = m.map(&claims, "generic");
        assert_eq!(u.id.as_deref(), Some("42"));
        assert_eq!(u.first_name.as_deref(), Some("true"));
        assert_eq!(u.last_name, None);
        assert_eq!(u.display_name, None);
        assert_eq!(u.email, None);
        assert_eq!(u.provider.as_deref(), Some("okta"));
        assert_eq!(u.subject, None);
    }

    #[test]
    fn dot_paths() {
        let claims = obj(json!({
            "a": {"b": {"c": "deep"}},
            "kubernetes.io": {"namespace": "default"},
            "x.y": "top-dotted",
            "list": ["a"],
            "s": "str"
        }));
        assert_eq!(claim_at(&claims, "a.b.c"), Some(&json!("deep")));
        assert_eq!(claim_at(&claims, "metadata.a.b.c"), Some(&json!("deep")));
        assert_eq!(
            claim_at(&claims, r"kubernetes\.io.namespace"),
            Some(&json!("default"))
        );
        assert_eq!(claim_at(&claims, r"x\.y"), Some(&json!("top-dotted")));
        // Upstream semantics: an unescaped dot always separates keys.
        assert_eq!(claim_at(&claims, "x.y"), None);
        assert_eq!(claim_at(&claims, "a.b.c.d"), None);
        assert_eq!(claim_at(&claims, "list.0"), None);
        assert_eq!(claim_at(&claims, "s.len"), None);
        assert_eq!(claim_at(&claims, ""), None);
        assert_eq!(claim_at(&claims, "."), None);
        assert_eq!(claim_at(&claims, "a."), None);
        assert_eq!(claim_at(&claims, "a"), Some(&json!({"b": {"c": "deep"}})));
    }

    #[test]
    fn role_claim_is_read_only_when_configured() {
        // By default a `role` claim (a profile attribute at some IdPs) grants nothing.
        let u = ClaimMapping::default().map(&obj(json!({"role": "proxy_admin"})), "generic");
        assert_eq!(u.role, None);
        let u = ClaimMapping::default().map(
            &obj(json!({"role": ["proxy_admin"], "roles": "proxy_admin"})),
            "generic",
        );
        assert_eq!(u.role, None);

        let m = ClaimMapping {
            role: Some("role".into()),
            ..ClaimMapping::default()
        };
        let u = m.map(&obj(json!({"role": "proxy_admin"})), "generic");
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
        let u = m.map(&obj(json!({"role": "invalid_role_value"})), "generic");
        assert_eq!(u.role, None);
        let u = m.map(&obj(json!({"role": "PROXY_ADMIN_VIEWER"})), "generic");
        assert_eq!(u.role, Some(UserRole::ProxyAdminViewer));
    }

    #[test]
    fn role_from_values() {
        assert_eq!(
            role_from_value(&json!("proxy_admin")),
            Some(UserRole::ProxyAdmin)
        );
        assert_eq!(
            role_from_value(&json!(["proxy_admin"])),
            Some(UserRole::ProxyAdmin)
        );
        assert_eq!(role_from_value(&json!([])), None);
        assert_eq!(role_from_value(&json!("not_a_real_role")), None);
        assert_eq!(
            role_from_value(&json!(["proxy_admin", "internal_user"])),
            Some(UserRole::ProxyAdmin)
        );
        assert_eq!(
            role_from_value(&json!(["junk", 3, "internal_user"])),
            Some(UserRole::InternalUser)
        );
        assert_eq!(role_from_value(&json!(7)), None);
        assert_eq!(role_from_value(&json!({"role": "proxy_admin"})), None);
    }

    #[test]
    fn extra_attributes() {
        let claims = obj(json!({
            "custom_field1": "value1", "custom_field2": ["item1", "item2"], "custom_field3": {"nested": "data"},
            "org_info": {"department": "Engineering", "manager": "Jane Smith"}
        }));
        let m = ClaimMapping {
            extra: vec![
                "custom_field1".into(),
                "custom_field2".into(),
                "custom_field3".into(),
            ],
            ..ClaimMapping::default()
        };
        let u = m.map(&claims, "generic");
        assert_eq!(
            Value::Object(u.extra),
            json!({"custom_field1": "value1", "custom_field2": ["item1", "item2"], "custom_field3": {"nested": "data"}})
        );
        let m = ClaimMapping {
            extra: vec![
                "org_info.department".into(),
                "org_info.manager".into(),
                "missing".into(),
            ],
            ..ClaimMapping::default()
        };
        let u = m.map(&claims, "generic");
        assert_eq!(
            Value::Object(u.extra),
            json!({"org_info.department": "Engineering", "org_info.manager": "Jane Smith", "missing": null})
        );
    }

    fn upstream_mappings() -> RoleMappings {
        RoleMappings {
            group_claim: "groups".into(),
            default_role: Some(UserRole::InternalUserViewer),
            roles: BTreeMap::from([
                (UserRole::ProxyAdmin, groups(&["admins"])),
                (UserRole::ProxyAdminViewer, groups(&["auditors"])),
                (UserRole::InternalUser, groups(&["devs"])),
            ]),
        }
    }

    #[test]
    fn role_mapping_highest_wins() {
        let rm = upstream_mappings();
        assert_eq!(
            rm.role_for_groups(&groups(&["devs", "admins"])),
            Some(UserRole::ProxyAdmin)
        );
        assert_eq!(
            rm.role_for_groups(&groups(&["auditors", "devs"])),
            Some(UserRole::ProxyAdminViewer)
        );
        assert_eq!(
            rm.role_for_groups(&groups(&["nobody"])),
            Some(UserRole::InternalUserViewer)
        );
        assert_eq!(
            rm.role_for_groups(&groups(&["Admins"])),
            Some(UserRole::InternalUserViewer)
        );
        assert_eq!(rm.role_for_groups(&[]), Some(UserRole::InternalUserViewer));
        let empty = RoleMappings {
            roles: BTreeMap::new(),
            ..upstream_mappings()
        };
        assert_eq!(
            empty.role_for_groups(&groups(&["admins"])),
            Some(UserRole::InternalUserViewer)
        );
        let org = RoleMappings {
            roles: BTreeMap::from([
                (UserRole::OrgAdmin, groups(&["x"])),
                (UserRole::Team, groups(&["x"])),
            ]),
            ..upstream_mappings()
        };
        assert_eq!(
            org.role_for_groups(&groups(&["x"])),
            Some(UserRole::InternalUserViewer)
        );
        let no_default = RoleMappings {
            default_role: None,
            ..upstream_mappings()
        };
        assert_eq!(no_default.role_for_groups(&groups(&["nobody"])), None);
    }

    #[test]
    fn group_claim_parsing() {
        assert_eq!(
            groups_from_value(&json!(["a", 1, true, null, {"x": 1}])),
            groups(&["a", "1", "true"])
        );
        assert_eq!(groups_from_value(&json!("a, b")), groups(&["a", "b"]));
        assert_eq!(groups_from_value(&json!(" a ,, b ,")), groups(&["a", "b"]));
        assert_eq!(groups_from_value(&json!(42)), groups(&["42"]));
        assert_eq!(groups_from_value(&json!("")), Vec::<String>::new());
        assert_eq!(groups_from_value(&json!([])), Vec::<String>::new());
        assert_eq!(groups_from_value(&json!(null)), Vec::<String>::new());
    }

    #[test]
    fn role_mappings_are_the_only_role_source_when_configured() {
        let m = ClaimMapping {
            role_mappings: Some(upstream_mappings()),
            role: Some("role".into()),
            ..ClaimMapping::default()
        };
        let u = m.map(
            &obj(json!({"groups": "devs, admins", "role": "internal_user"})),
            "generic",
        );
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
        let u = m.map(&obj(json!({"groups": 42})), "generic");
        assert_eq!(u.role, Some(UserRole::InternalUserViewer));
        // Missing group claim: the default role, not the role claim.
        let u = m.map(&obj(json!({"role": "proxy_admin"})), "generic");
        assert_eq!(u.role, Some(UserRole::InternalUserViewer));
        // Unmatched and no default: no role, never the role claim (even when one is configured).
        let m = ClaimMapping {
            role_mappings: Some(RoleMappings {
                default_role: None,
                ..upstream_mappings()
            }),
            role: Some("role".into()),
            ..ClaimMapping::default()
        };
        let u = m.map(
            &obj(json!({"groups": ["nobody"], "role": "proxy_admin"})),
            "generic",
        );
        assert_eq!(u.role, None);
        let u = m.map(&obj(json!({"role": "proxy_admin"})), "generic");
        assert_eq!(u.role, None);
    }

    #[test]
    fn team_ids_field() {
        let m = ClaimMapping {
            team_ids_field: Some("org.teams".into()),
            ..ClaimMapping::default()
        };
        let u = m.map(&obj(json!({"org": {"teams": ["t1", "t2"]}})), "generic");
        assert_eq!(u.team_ids, groups(&["t1", "t2"]));
        let u = m.map(&obj(json!({"org": {"teams": "t1,t3"}})), "generic");
        assert_eq!(u.team_ids, groups(&["t1", "t3"]));
        let u = m.map(&obj(json!({})), "generic");
        assert!(u.team_ids.is_empty());
    }

    #[test]
    fn access_token_role_and_groups() {
        let m = ClaimMapping {
            team_ids_field: Some("groups".into()),
            ..ClaimMapping::default()
        };
        let token = jwt(
            json!({"sub": "user123", "email": "u@example.com", "role": "proxy_admin",
                                "groups": ["team_alpha", "team_beta"]}),
        );
        let mut u = SsoUser::default();
        m.apply_access_token(&mut u, &token);
        // No role claim configured: the token's `role` grants nothing (upstream reads it).
        assert_eq!(u.role, None);
        assert_eq!(u.team_ids, groups(&["team_alpha", "team_beta"]));
        // Configured explicitly: read.
        let m = ClaimMapping {
            role: Some("role".into()),
            ..m
        };
        let mut u = SsoUser::default();
        m.apply_access_token(&mut u, &token);
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
    }

    #[test]
    fn access_token_without_role_or_teams_changes_nothing() {
        let m = ClaimMapping {
            team_ids_field: Some("groups".into()),
            ..ClaimMapping::default()
        };
        let mut u = SsoUser::default();
        m.apply_access_token(&mut u, &jwt(json!({"sub": "user123"})));
        assert_eq!(u, SsoUser::default());
    }

    #[test]
    fn access_token_existing_values_not_overridden() {
        let m = ClaimMapping {
            role: Some("litellm_role".into()),
            team_ids_field: Some("groups".into()),
            ..ClaimMapping::default()
        };
        let token = jwt(json!({"litellm_role": ["internal_user"], "groups": ["t9"]}));
        let mut u = SsoUser {
            role: Some(UserRole::ProxyAdmin),
            team_ids: groups(&["team1"]),
            ..SsoUser::default()
        };
        m.apply_access_token(&mut u, &token);
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
        assert_eq!(u.team_ids, groups(&["team1"]));

        let mut u = SsoUser::default();
        m.apply_access_token(&mut u, &jwt(json!({"litellm_role": ["proxy_admin"]})));
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
    }

    #[test]
    fn access_token_nested_role_path() {
        let m = ClaimMapping {
            role: Some("resource_access.my-client.roles".into()),
            ..ClaimMapping::default()
        };
        let token = jwt(json!({"resource_access": {"my-client": {"roles": ["proxy_admin"]}}}));
        let mut u = SsoUser::default();
        m.apply_access_token(&mut u, &token);
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
    }

    #[test]
    fn access_token_role_mappings() {
        let m = ClaimMapping {
            role_mappings: Some(RoleMappings {
                group_claim: "groups".into(),
                default_role: Some(UserRole::InternalUser),
                roles: BTreeMap::from([
                    (UserRole::ProxyAdmin, groups(&["keycloak-admins"])),
                    (UserRole::InternalUser, groups(&["developers"])),
                ]),
            }),
            ..ClaimMapping::default()
        };
        let mut u = SsoUser::default();
        m.apply_access_token(
            &mut u,
            &jwt(json!({"groups": ["keycloak-admins", "developers"]})),
        );
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
        let mut u = SsoUser::default();
        m.apply_access_token(&mut u, &jwt(json!({"role": "proxy_admin"})));
        assert_eq!(
            u.role,
            Some(UserRole::InternalUser),
            "no groups: the default role"
        );
        // Mappings without a default: no match is no role, never the token's role claim.
        let m = ClaimMapping {
            role_mappings: Some(RoleMappings {
                default_role: None,
                ..m.role_mappings.clone().unwrap()
            }),
            role: Some("role".into()),
            ..m
        };
        let mut u = SsoUser::default();
        m.apply_access_token(
            &mut u,
            &jwt(json!({"groups": ["nobody"], "role": "proxy_admin"})),
        );
        assert_eq!(u.role, None);
    }

    #[test]
    fn opaque_and_malformed_tokens_are_skipped() {
        let m = ClaimMapping {
            team_ids_field: Some("groups".into()),
            ..ClaimMapping::default()
        };
        let good_header = b64(br#"{"alg":"none"}"#);
        let cases = [
            "uTxyjXbS_random_opaque_token_string".to_owned(),
            String::new(),
            "test-jwt-token-header.payload.signature".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            format!("{good_header}.{}.sig", b64(b"[1,2]")),
            format!("{good_header}.{}.sig", b64(b"not json")),
            format!("{}.{}.sig", b64(b"[]"), b64(br#"{"role":"proxy_admin"}"#)),
            format!("{good_header}.{}.s+g", b64(br#"{"role":"proxy_admin"}"#)),
            format!("{good_header}..sig"),
            "...".to_owned(),
            "é.é.é".to_owned(),
        ];
        for token in cases {
            let mut u = SsoUser::default();
            m.apply_access_token(&mut u, &token);
            assert_eq!(u, SsoUser::default(), "{token}");
        }
        // An unsigned JWT with an empty signature segment is still a JWT.
        let m = ClaimMapping {
            role: Some("role".into()),
            ..m
        };
        let mut u = SsoUser::default();
        m.apply_access_token(
            &mut u,
            &format!("{good_header}.{}.", b64(br#"{"role":"proxy_admin"}"#)),
        );
        assert_eq!(u.role, Some(UserRole::ProxyAdmin));
    }

    #[test]
    fn fallback_ids() {
        // Names never become ids (upstream concatenated them: "JaneDoe").
        let u = SsoUser {
            first_name: Some("Jane".into()),
            last_name: Some("Doe".into()),
            ..SsoUser::default()
        };
        assert_eq!(fallback_user_id(&u), None);
        let u = SsoUser {
            first_name: Some("admin@corp.example".into()),
            subject: Some("sub-1".into()),
            ..SsoUser::default()
        };
        assert_eq!(fallback_user_id(&u).as_deref(), Some("sub-1"));
        // A verified e-mail, lower-cased.
        let verified = SsoUser {
            email: Some("A@X.COM".into()),
            email_verified: Some(true),
            subject: Some("sub-1".into()),
            ..SsoUser::default()
        };
        assert_eq!(fallback_user_id(&verified).as_deref(), Some("a@x.com"));
        // Unverified or unknown: the subject.
        for flag in [Some(false), None] {
            let u = SsoUser {
                email_verified: flag,
                ..verified.clone()
            };
            assert_eq!(fallback_user_id(&u).as_deref(), Some("sub-1"), "{flag:?}");
            let u = SsoUser {
                email_verified: flag,
                subject: None,
                ..verified.clone()
            };
            assert_eq!(fallback_user_id(&u), None, "{flag:?}");
        }
        let u = SsoUser {
            id: Some("id1".into()),
            ..verified.clone()
        };
        assert_eq!(fallback_user_id(&u).as_deref(), Some("id1"));
        let u = SsoUser {
            id: Some(String::new()),
            email: Some(String::new()),
            subject: Some("sub-1".into()),
            email_verified: Some(true),
            ..SsoUser::default()
        };
        assert_eq!(fallback_user_id(&u).as_deref(), Some("sub-1"));
        assert_eq!(fallback_user_id(&SsoUser::default()), None);
    }

    #[test]
    fn email_verified_claim() {
        let m = ClaimMapping::default();
        let cases = [
            (json!(true), Some(true)),
            (json!(false), Some(false)),
            (json!("true"), Some(true)),
            (json!("false"), Some(false)),
            (json!("TRUE"), None),
            (json!("yes"), None),
            (json!(1), None),
            (json!(null), None),
            (json!(["true"]), None),
        ];
        for (value, expected) in cases {
            let u = m.map(
                &obj(json!({"email": "a@x.com", "email_verified": value.clone()})),
                "generic",
            );
            assert_eq!(u.email_verified, expected, "{value}");
            // An address the IdP marks unverified is dropped; any other answer keeps it.
            let kept = (expected != Some(false)).then_some("a@x.com");
            assert_eq!(u.email.as_deref(), kept, "{value}");
        }
        assert_eq!(
            m.map(&obj(json!({"email": "a@x.com"})), "generic")
                .email_verified,
            None
        );
        // No e-mail: nothing to vouch for.
        assert_eq!(
            m.map(&obj(json!({"email_verified": true})), "generic")
                .email_verified,
            None
        );
        // The claim vouches for `email`, not for another e-mail attribute.
        let upn = ClaimMapping {
            email: "upn".into(),
            ..ClaimMapping::default()
        };
        let u = upn.map(
            &obj(json!({"upn": "a@x.com", "email": "b@y.com", "email_verified": true})),
            "generic",
        );
        assert_eq!(
            (u.email.as_deref(), u.email_verified),
            (Some("a@x.com"), None)
        );
    }

    #[test]
    fn email_is_lower_cased_ascii_only() {
        let u = ClaimMapping::default().map(
            &obj(json!({"email": "Admin@\u{212A}orp.EXAMPLE"})),
            "generic",
        );
        assert_eq!(u.email.as_deref(), Some("admin@\u{212A}orp.example"));
        assert_ne!(u.email.as_deref(), Some("admin@korp.example"));
    }

    #[test]
    fn unverified_email_is_dropped_at_mapping_time() {
        let u = ClaimMapping::default().map(
            &obj(json!({"sub": "s", "email": "Boss@Corp.example", "email_verified": false})),
            "generic",
        );
        assert_eq!((u.email.as_deref(), u.email_verified), (None, Some(false)));
        // So it can serve as neither the id nor a link.
        assert_eq!(fallback_user_id(&u).as_deref(), Some("s"));
        let u = ClaimMapping::default().map(
            &obj(json!({"sub": "s", "email": "Boss@Corp.example"})),
            "generic",
        );
        assert_eq!(
            (u.email.as_deref(), u.email_verified),
            (Some("boss@corp.example"), None)
        );
    }

    #[test]
    fn microsoft_app_roles_from_the_id_token() {
        let role = |v: Value| microsoft_app_role(&obj(v));
        assert_eq!(
            role(json!({"roles": ["not_a_role", "Proxy_Admin_Viewer", "proxy_admin"]})),
            Some(UserRole::ProxyAdminViewer)
        );
        // `app_roles` wins over `roles` ...
        assert_eq!(
            role(json!({"app_roles": ["internal_user"], "roles": ["proxy_admin"]})),
            Some(UserRole::InternalUser)
        );
        // ... unless empty (upstream: `app_roles or roles`).
        assert_eq!(
            role(json!({"app_roles": [], "roles": ["proxy_admin"]})),
            Some(UserRole::ProxyAdmin)
        );
        // Anything but a list of strings: no role.
        for bad in [
            json!({"roles": "proxy_admin"}),
            json!({"roles": {"proxy_admin": true}}),
            json!({"roles": ["proxy_admin", 1]}),
            json!({"app_roles": "proxy_admin", "roles": ["internal_user"]}),
            json!({"roles": ["junk"]}),
            json!({"roles": []}),
            json!({"role": "proxy_admin", "wids": ["proxy_admin"]}),
            json!({}),
        ] {
            assert_eq!(role(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn role_map_python_and_json() {
        let py = "{'proxy_admin': ['custom-admin-group'], 'internal_user':\n ['custom-user-group'], \
                  'proxy_admin_viewer': ['custom-viewer-group']}";
        let m = parse_role_map(py).unwrap();
        assert_eq!(m[&UserRole::ProxyAdmin], groups(&["custom-admin-group"]));
        assert_eq!(m[&UserRole::InternalUser], groups(&["custom-user-group"]));
        assert_eq!(
            m[&UserRole::ProxyAdminViewer],
            groups(&["custom-viewer-group"])
        );
        let js = r#"{"proxy_admin":["g"]}"#;
        assert_eq!(
            parse_role_map(js).unwrap(),
            BTreeMap::from([(UserRole::ProxyAdmin, groups(&["g"]))])
        );
        let odd = r#" { 'PROXY_ADMIN' : "a\"b" , "internal_user": ['it\'s', "c\\d", 'x\dy', "\u00e9",], } "#;
        let m = parse_role_map(odd).unwrap();
        assert_eq!(m[&UserRole::ProxyAdmin], groups(&["a\"b"]));
        assert_eq!(
            m[&UserRole::InternalUser],
            groups(&["it's", "c\\d", "x\\dy", "é"])
        );
        assert_eq!(parse_role_map("{}").unwrap(), BTreeMap::new());
        assert_eq!(
            parse_role_map("{'team': []}").unwrap(),
            BTreeMap::from([(UserRole::Team, vec![])])
        );
    }

    #[test]
    fn role_map_unknown_role() {
        let err = parse_role_map("{'internal_user_view_only': ['g']}").unwrap_err();
        assert!(err.contains("internal_user_view_only"), "{err}");
        assert!(err.contains("internal_user_viewer"), "{err}");
    }

    #[test]
    fn role_map_malformed_inputs_never_panic() {
        let mut inputs: Vec<String> = [
            "",
            " ",
            "{",
            "}",
            "[",
            "{'a'",
            "{'proxy_admin'",
            "{'proxy_admin':",
            "{'proxy_admin': [",
            "{'proxy_admin': ['g'",
            "{'proxy_admin': ['g',",
            "{'proxy_admin': ['g']",
            "{'proxy_admin': ['g']]",
            "{'proxy_admin': ['g']} x",
            "{'proxy_admin': ['g'] 'x'}",
            "{'proxy_admin' ['g']}",
            "{proxy_admin: ['g']}",
            "{'proxy_admin': [1]}",
            "{'proxy_admin': [None]}",
            "{'proxy_admin': None}",
            "{'proxy_admin': null}",
            "{'proxy_admin': 'g}",
            "{'proxy_admin\": 'g'}",
            "{'x\\",
            "{'x\\u12'}",
            "{\"\\ud800\": []}",
            "{\"\\ud800\\u0041\": []}",
            "{\"\\uzzzz\": []}",
            "{,}",
            "{'proxy_admin': [,]}",
            "{'proxy_admin': ['a' 'b']}",
            "{'a\nb': []}",
            "['proxy_admin']",
            "{'proxy_admin': {'g': 1}}",
            "{'proxy_admin': ('g',)}",
            "{'é': ['g']}",
            "{'proxy_admin': ['é",
            "\u{0}{",
            "{\u{0}}",
            "{'proxy_admin': ['g'],,}",
            "{{}}",
            "{'proxy_admin': ['g']}}",
            "{'proxy_admin': Non",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every prefix of a valid document, and a few byte-level mutations of it.
        let valid = r#"{'proxy_admin': ["a\"b", 'c\'d'], "internal_user": 'x\\y', }"#;
        for (i, _) in valid.char_indices() {
            inputs.push(valid[..i].to_owned());
            inputs.push(format!(
                "{}{}",
                &valid[..i],
                valid.get(i + 1..).unwrap_or("")
            ));
            inputs.push(format!("{}'{}", &valid[..i], &valid[i..]));
            inputs.push(format!("{}\\{}", &valid[..i], &valid[i..]));
        }
        for input in &inputs {
            let r = std::panic::catch_unwind(|| parse_role_map(input));
            assert!(r.is_ok(), "panicked on {input:?}");
        }
        for bad in [
            "",
            "{",
            "{'proxy_admin': [1]}",
            "{'proxy_admin': null}",
            "{'x': []}",
            "{'proxy_admin': ['g']} x",
        ] {
            assert!(parse_role_map(bad).is_err(), "{bad:?}");
        }
    }
}

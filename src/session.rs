//! Session tokens: issue, verify, and the `token` cookie.
//!
//! A session is a JWT (HS256), signed with a key derived from the configured session secret. It
//! carries the LiteLLM UI token fields (`user_id`, `key`, `user_email`, `user_role`, `login_method`,
//! `premium_user`, `auth_header_name`, `disabled_non_admin_personal_key_creation`,
//! `server_root_path`), `exp`, `iat`, a unique session id (`jti`), and the identity the gate hands
//! to the inner service (`name`, `teams`, `provider`, `attrs`), so that a protected request needs no
//! store call. It is accepted from the `token` cookie or an `Authorization: Bearer` header.
//!
//! Verified sessions are remembered (bounded, each until its own expiry), so a repeat request costs
//! one in-process lookup; revocation is in-process too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::hmac;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::identity::{Identity, IdentityData, UserRole};
use crate::remembered::Principal;
use crate::revocation::{RevokedSession, principal_keys};

/// The longest session token the gate will look at. Longer ones are refused without parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

const SESSION_AUDIENCE: &str = "tower-sso:session";
const ISSUER: &str = "tower-sso";

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The user id.
    pub user_id: String,
    /// The credential the LiteLLM UI sends back as its API key (upstream: the UI key): the key a
    /// [UI key issuer](crate::hooks::UiKeyRequest) minted, else the session id (`jti`).
    pub key: String,
    /// The e-mail.
    pub user_email: Option<String>,
    /// The role.
    pub user_role: UserRole,
    /// Always `sso` for sessions this crate issues.
    pub login_method: String,
    /// Upstream field, passed through from configuration.
    pub premium_user: bool,
    /// The header the UI sends its key in (`Authorization` by default).
    pub auth_header_name: String,
    /// Upstream field, passed through from configuration.
    pub disabled_non_admin_personal_key_creation: bool,
    /// `SERVER_ROOT_PATH`.
    pub server_root_path: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Team ids.
    #[serde(default)]
    pub teams: Vec<String>,
    /// The provider the user logged in through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Extra attributes.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attrs: serde_json::Map<String, serde_json::Value>,
    /// The configured name of the provider the session was logged in through (where its
    /// back-channel logouts arrive), when it is tied to an identity-provider session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// The identity provider's session id (the id_token's `sid`), for back-channel logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The user's subject at the identity provider (the id_token's `sub`), for back-channel
    /// logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Unique session id.
    pub jti: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Always `tower-sso`.
    pub iss: String,
    /// Always `tower-sso:session`: a token minted for another purpose never passes as a session.
    pub aud: String,
}

/// Why a session token was refused. The gate answers all of them with the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// No token in the request.
    Missing,
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong,
    /// Not a well-formed, correctly signed session token of ours (tampered, wrong key, `alg: none`,
    /// wrong algorithm, wrong audience, truncated, ...).
    Invalid,
    /// Past its `exp`.
    Expired,
    /// Revoked by logout.
    Revoked,
    /// The request carries several different session cookies (one may have been planted from a
    /// sibling domain): none of them is trusted.
    Ambiguous,
}

impl SessionError {
    /// A short message safe to show a client.
    pub fn message(self) -> &'static str {
        match self {
            SessionError::Missing => "authentication required: no session token",
            SessionError::TooLong => "invalid session token",
            SessionError::Invalid => "invalid session token",
            SessionError::Expired => "session expired",
            SessionError::Revoked => "session revoked",
            SessionError::Ambiguous => "several session cookies: log in again",
        }
    }
}

/// The longest session token issued: browsers drop a cookie over 4096 bytes silently (RFC 6265bis),
/// which would loop the user through login.
pub const MAX_ISSUED_TOKEN_LEN: usize = 3800;

/// Why a session could not be issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueError {
    /// The token would not fit in a cookie (too many teams or attributes).
    TooLarge {
        /// Its length in bytes.
        len: usize,
    },
    /// Signing failed.
    Encode,
}

impl std::fmt::Display for IssueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssueError::TooLarge { len } => write!(
                f,
                "the session would be {len} bytes, over the {MAX_ISSUED_TOKEN_LEN}-byte cookie limit (too many teams or attributes)"
            ),
            IssueError::Encode => f.write_str("could not sign the session"),
        }
    }
}

impl std::error::Error for IssueError {}

/// What a new session is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    /// The user id.
    pub user_id: String,
    /// The e-mail.
    pub email: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// The role.
    pub role: UserRole,
    /// Team ids.
    pub team_ids: Vec<String>,
    /// Provider name.
    pub provider: Option<String>,
    /// Extra attributes.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// The identity-provider session a new session belongs to, so that an OpenID Connect
/// back-channel logout from that provider can revoke it ([`SessionCodec::issue_linked`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdpSession {
    /// The configured name of the provider ([`crate::Provider::provider_name`]).
    pub provider: String,
    /// The id_token's `sid`, if it had one.
    pub sid: Option<String>,
    /// The id_token's `sub` (the user's subject at the provider), if known.
    pub subject: Option<String>,
}

/// Fixed fields copied into every session token (upstream UI settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFields {
    /// `premium_user`.
    pub premium_user: bool,
    /// `auth_header_name`.
    pub auth_header_name: String,
    /// `disabled_non_admin_personal_key_creation`.
    pub disabled_non_admin_personal_key_creation: bool,
    /// `server_root_path`.
    pub server_root_path: String,
}

impl Default for SessionFields {
    fn default() -> Self {
        Self {
            premium_user: false,
            auth_header_name: "Authorization".to_owned(),
            disabled_non_admin_personal_key_creation: false,
            server_root_path: String::new(),
        }
    }
}

/// Derives a purpose-bound key from the session secret, so that the secret itself (in env mode,
/// the LiteLLM master key) never signs anything and each purpose has its own key.
pub(crate) fn derive_key(secret: &[u8], purpose: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::sign(&key, format!("tower-sso/v1/{purpose}").as_bytes())
        .as_ref()
        .to_vec()
}

/// Issues and verifies session tokens, remembering recently verified ones.
#[derive(Clone)]
pub struct SessionCodec {
    inner: Arc<CodecInner>,
}

struct CodecInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    fields: SessionFields,
    clock: Clock,
    verified: crate::remembered::Remembered,
    revoked: RevokedSessions,
}

/// The sessions revoked in this process, each kept until its token expires (plus a little
/// leeway), then forgotten: an expired token is refused anyway.
///
/// Deliberately unbounded: a bounded set would have to drop revocations when full, and a
/// dropped revocation is a logged-out session that works again. The size is bounded by the
/// sessions issued within one session lifetime (each needs a real login at the identity
/// provider, and login starts and callbacks are rate limited). One entry costs about 100 bytes
/// (a 32-byte session id on the heap, its box, the expiry, the hash table's slot and spare
/// capacity); a million revoked sessions, about 100 MB. Expired entries are pruned as the set
/// grows (amortised, on insert), and a warning is logged each time it doubles past a million.
struct RevokedSessions {
    inner: RwLock<RevokedInner>,
}

struct RevokedInner {
    /// Session id → the instant (seconds) after which the entry is useless.
    ids: HashMap<Box<str>, u64>,
    /// `sid:`/`sub:` key → (the instant after which the entry is useless, the sessions it
    /// covers: those issued at or before this instant). Usually empty: the gate looks here only
    /// when it is not.
    principals: HashMap<Box<str>, (u64, u64)>,
    /// Prune expired entries when the set reaches this size.
    prune_at: usize,
    /// Warn when the set reaches this size.
    warn_at: usize,
}

impl RevokedSessions {
    /// Kept this long past the token's own expiry (clock leeway between instances).
    const LEEWAY_SECS: u64 = 120;
    const FIRST_PRUNE: usize = 1024;
    const FIRST_WARNING: usize = 1_000_000;

    fn new() -> Self {
        Self {
            inner: RwLock::new(RevokedInner {
                ids: HashMap::new(),
                principals: HashMap::new(),
                prune_at: Self::FIRST_PRUNE,
                warn_at: Self::FIRST_WARNING,
            }),
        }
    }

    fn insert(&self, session_id: &str, expires_at: u64, now: u64) {
        let until = expires_at.saturating_add(Self::LEEWAY_SECS);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.ids.insert(session_id.into(), until);
        Self::grown(&mut inner, now);
    }

    /// Revokes the sessions a `sid:`/`sub:` key covers, issued at or before `before`. A second
    /// revocation of one key keeps the later bound.
    fn insert_principal(&self, key: &str, before: u64, expires_at: u64, now: u64) {
        let until = expires_at.saturating_add(Self::LEEWAY_SECS);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let entry = inner
            .principals
            .entry(key.into())
            .or_insert((until, before));
        *entry = (entry.0.max(until), entry.1.max(before));
        Self::grown(&mut inner, now);
    }

    /// Prunes expired entries and warns as the set grows.
    fn grown(inner: &mut RevokedInner, now: u64) {
        let len = inner.ids.len() + inner.principals.len();
        if len >= inner.prune_at {
            inner.ids.retain(|_, until| *until > now);
            inner.principals.retain(|_, (until, _)| *until > now);
            let len = inner.ids.len() + inner.principals.len();
            inner.prune_at = (len * 2).max(Self::FIRST_PRUNE);
        }
        let len = inner.ids.len() + inner.principals.len();
        if len >= inner.warn_at {
            tracing::warn!(
                entries = len,
                approx_bytes = len * 100,
                "the in-process set of revoked sessions is large (every entry is kept until its session expires); shorter sessions keep it smaller"
            );
            inner.warn_at = inner.warn_at.saturating_mul(2);
        }
    }

    /// Whether a session with id `session_id` and `principal` (its `sid:`/`sub:` keys and issue
    /// time) is revoked.
    fn refuses(&self, session_id: &str, principal: &Principal) -> bool {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        if inner.ids.contains_key(session_id) {
            return true;
        }
        if inner.principals.is_empty() {
            return false;
        }
        [&principal.sid_key, &principal.sub_key]
            .into_iter()
            .flatten()
            .any(|key| {
                inner
                    .principals
                    .get(key)
                    .is_some_and(|&(_, before)| principal.issued_at <= before)
            })
    }

    fn contains(&self, session_id: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .contains_key(session_id)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .len()
    }
}

impl std::fmt::Debug for SessionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCodec")
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

impl SessionCodec {
    /// A codec signing with a key derived from `secret`, issuing sessions that last `ttl`.
    ///
    /// `remembered` bounds how many verified sessions are kept in memory.
    pub fn new(
        secret: &[u8],
        ttl: Duration,
        fields: SessionFields,
        clock: Clock,
        remembered: u64,
    ) -> Self {
        let key = derive_key(secret, "session");
        // The derived key is 32 bytes, never empty, so these cannot fail; fall back to an
        // unusable key rather than panic if that ever changed.
        let encoding =
            EncodingKey::from_secret(&key).unwrap_or_else(|_| EncodingKey::from_rsa_der(&[]));
        let decoding =
            DecodingKey::from_secret(&key).unwrap_or_else(|_| DecodingKey::from_rsa_der(&[]));
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[SESSION_AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
        // Expiry is checked against our own clock below.
        validation.validate_exp = false;
        validation.leeway = 0;
        let verified = crate::remembered::Remembered::new(remembered);
        let revoked = RevokedSessions::new();
        Self {
            inner: Arc::new(CodecInner {
                encoding,
                decoding,
                validation,
                ttl,
                fields,
                clock,
                verified,
                revoked,
            }),
        }
    }

    /// How long new sessions last.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Issues a session token for `session`. Returns the token and the identity it stands for.
    pub fn issue(&self, session: NewSession) -> Result<(String, Identity), IssueError> {
        self.issue_with(session, None, self.inner.ttl, None)
    }

    /// Like [`issue`](Self::issue), with `key` as the token's `key` field (the credential the
    /// LiteLLM UI uses, minted by a [UI key issuer](crate::hooks::UiKeyRequest)) instead of the
    /// session id.
    pub fn issue_with_key(
        &self,
        session: NewSession,
        key: Option<String>,
    ) -> Result<(String, Identity), IssueError> {
        self.issue_with(session, key, self.inner.ttl, None)
    }

    /// Issues a session token lasting `ttl` instead of the configured duration (the CLI login's
    /// tokens last `LITELLM_CLI_JWT_EXPIRATION_HOURS`).
    pub fn issue_lasting(
        &self,
        session: NewSession,
        ttl: Duration,
    ) -> Result<(String, Identity), IssueError> {
        self.issue_with(session, None, ttl, None)
    }

    /// Issues a session token for `session`, tied to the identity-provider session `idp` (its
    /// `sid` and subject go into the token, so a back-channel logout from that provider revokes
    /// it). Returns the token and the identity it stands for.
    pub fn issue_linked(
        &self,
        session: NewSession,
        idp: Option<IdpSession>,
    ) -> Result<(String, Identity), IssueError> {
        self.issue_with(session, None, self.inner.ttl, idp)
    }

    /// The general form: an optional UI `key`, a lifetime, an optional provider session.
    pub(crate) fn issue_with(
        &self,
        session: NewSession,
        key: Option<String>,
        ttl: Duration,
        idp: Option<IdpSession>,
    ) -> Result<(String, Identity), IssueError> {
        let (idp, sid, sub) = match idp {
            Some(i) if i.sid.is_some() || i.subject.is_some() => {
                (Some(i.provider), i.sid, i.subject)
            }
            _ => (None, None, None),
        };
        let now = self.inner.clock.now();
        let exp = now.saturating_add(ttl.as_secs());
        let jti = crate::random::token(24);
        let fields = &self.inner.fields;
        let claims = SessionClaims {
            user_id: session.user_id,
            key: key.unwrap_or_else(|| jti.clone()),
            user_email: session.email,
            user_role: session.role,
            login_method: "sso".to_owned(),
            premium_user: fields.premium_user,
            auth_header_name: fields.auth_header_name.clone(),
            disabled_non_admin_personal_key_creation: fields
                .disabled_non_admin_personal_key_creation,
            server_root_path: fields.server_root_path.clone(),
            name: session.display_name,
            teams: session.team_ids,
            provider: session.provider,
            attrs: session.attributes,
            idp,
            sid,
            sub,
            jti,
            iat: now,
            exp,
            iss: ISSUER.to_owned(),
            aud: SESSION_AUDIENCE.to_owned(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .map_err(|_| IssueError::Encode)?;
        if token.len() > MAX_ISSUED_TOKEN_LEN {
            return Err(IssueError::TooLarge { len: token.len() });
        }
        let identity = identity_from(claims);
        Ok((token, identity))
    }

    /// Verifies a session token: size, signature, algorithm, issuer, audience, expiry, revocation.
    ///
    /// A token verified before is answered from memory (one lookup), still subject to expiry.
    pub fn verify(&self, token: &str) -> Result<Identity, SessionError> {
        let now = self.inner.clock.now();
        if let Some(identity) = self.inner.verified.get(token) {
            if identity.expires_at() <= now {
                return Err(SessionError::Expired);
            }
            crate::metrics::session_verified(true);
            return Ok(identity);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(SessionError::TooLong);
        }
        let data = jsonwebtoken::decode::<SessionClaims>(
            token,
            &self.inner.decoding,
            &self.inner.validation,
        )
        .map_err(|_| SessionError::Invalid)?;
        let claims = data.claims;
        if claims.exp <= now {
            return Err(SessionError::Expired);
        }
        let principal = principal_of(&claims);
        if self.inner.revoked.refuses(&claims.jti, &principal) {
            return Err(SessionError::Revoked);
        }
        let identity = identity_from(claims);
        self.inner
            .verified
            .insert(token, identity.clone(), principal.clone(), now);
        // A logout that ran between the check above and the insert may have missed this entry:
        // look again now that it is visible (revoke inserts first, then invalidates).
        if self
            .inner
            .revoked
            .refuses(identity.session_id(), &principal)
        {
            self.inner.verified.remove(token);
            return Err(SessionError::Revoked);
        }
        crate::metrics::session_verified(false);
        Ok(identity)
    }

    /// Revokes the session with id `session_id` (expiring at `expires_at`) in this process: later
    /// requests carrying it are refused. The revocation is kept until the session expires,
    /// however many there are (see the module docs for the memory this takes).
    pub fn revoke(&self, session_id: &str, expires_at: u64) {
        self.inner
            .revoked
            .insert(session_id, expires_at, self.inner.clock.now());
        self.inner.verified.remove_session(session_id);
    }

    /// Applies a revocation in this process: a session id, or every session of an
    /// identity-provider session or subject issued up to a bound (see [`RevokedSession`]).
    /// Remembered sessions it covers are dropped, so the next request verifies them again.
    pub fn apply(&self, revocation: &RevokedSession) {
        if !revocation.is_principal() {
            return self.revoke(&revocation.session_id, revocation.expires_at);
        }
        let before = revocation.issued_before.unwrap_or(u64::MAX);
        self.inner.revoked.insert_principal(
            &revocation.session_id,
            before,
            revocation.expires_at,
            self.inner.clock.now(),
        );
        self.inner
            .verified
            .remove_principal(&revocation.session_id, before);
    }

    /// Whether a session id has been revoked in this process.
    pub fn is_revoked(&self, session_id: &str) -> bool {
        self.inner.revoked.contains(session_id)
    }
}

/// The `sid:`/`sub:` revocation keys and issue time of a session.
fn principal_of(claims: &SessionClaims) -> Principal {
    let Some(idp) = claims.idp.as_deref() else {
        return Principal::default();
    };
    let (sid_key, sub_key) = principal_keys(idp, claims.sid.as_deref(), claims.sub.as_deref());
    Principal {
        sid_key: sid_key.map(String::into_boxed_str),
        sub_key: sub_key.map(String::into_boxed_str),
        issued_at: claims.iat,
    }
}

fn identity_from(claims: SessionClaims) -> Identity {
    Identity::new(IdentityData {
        user_id: claims.user_id,
        email: claims.user_email,
        display_name: claims.name,
        role: claims.user_role,
        team_ids: claims.teams,
        provider: claims.provider,
        attributes: claims.attrs,
        session_id: claims.jti,
        expires_at: claims.exp,
    })
}

/// Finds the value of cookie `name` in a `Cookie` header without parsing the other cookies.
///
/// Public only for `benches/gate.rs`; not part of the supported API.
#[doc(hidden)]
pub fn find_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    find_cookie_and_rest(header.as_bytes(), name.as_bytes())
        .and_then(|(value, _)| std::str::from_utf8(value).ok())
}

/// The value of cookie `name` and the rest of the header after its pair, byte-wise: the names
/// and values we look for are ASCII, and the bytes of other cookies (a sibling app's Latin-1
/// cookie, say) do not matter.
pub(crate) fn find_cookie_and_rest<'a>(
    header: &'a [u8],
    name: &[u8],
) -> Option<(&'a [u8], &'a [u8])> {
    // The same as `header.split(';').find_map(..)`, with a faster search for the `;` that ends a
    // pair: the pair we are after is a ~700-byte token, and `split` looks for `;` a byte at a
    // time.
    let mut rest = header;
    loop {
        let (pair, next) = match find_semicolon(rest) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        if let Some(value) = pair
            .trim_ascii_start()
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix(b"="))
        {
            return Some((trim_quotes(value.trim_ascii_end()), next.unwrap_or(b"")));
        }
        rest = next?;
    }
}

/// `value` without surrounding `"` (all of them, like `str::trim_matches('"')`).
fn trim_quotes(mut value: &[u8]) -> &[u8] {
    while let [b'"', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b'"'] = value {
        value = rest;
    }
    value
}

/// The position of the first `;` in `bytes`, looked for a block at a time (the compiler turns
/// each block's test into a few vector instructions; `memchr` in `core` goes a word at a time).
fn find_semicolon(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut offset = 0;
    for block in &mut blocks {
        if block.iter().fold(0u8, |hit, &b| hit | u8::from(b == b';')) != 0 {
            break;
        }
        offset += BLOCK;
    }
    bytes[offset..]
        .iter()
        .position(|&b| b == b';')
        .map(|i| offset + i)
}

/// Stands for a cookie value that is not UTF-8 (never a valid token).
const NOT_TEXT: &str = "\u{FFFD}";

/// A request carries two different values for one cookie.
pub(crate) struct AmbiguousCookie;

/// The non-empty value of cookie `name` across all `Cookie` headers of a request. The same value
/// repeated is fine; two different values (one planted with `Domain=` from a sibling host is sent
/// alongside ours) are [`AmbiguousCookie`], so neither is trusted.
pub(crate) fn unique_cookie<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, AmbiguousCookie> {
    let mut found: Option<&str> = None;
    for value in headers.get_all(http::header::COOKIE) {
        // Byte-wise: a header that is not UTF-8 (another app's Latin-1 cookie) still holds ours.
        let mut rest = value.as_bytes();
        while let Some((v, after)) = find_cookie_and_rest(rest, name.as_bytes()) {
            // A value under our name that is not text is no token of ours, but it is a value:
            // it counts (as something that never verifies) so ambiguity is still detected.
            let v = std::str::from_utf8(v).unwrap_or(NOT_TEXT);
            if !v.is_empty() {
                match found {
                    Some(seen) if seen != v => return Err(AmbiguousCookie),
                    _ => found = Some(v),
                }
            }
            rest = after;
        }
    }
    Ok(found)
}

/// Finds the session token in a request: the `name` cookie first, then `Authorization: Bearer`.
/// `None` when there is none, or when the cookie is ambiguous (see [`session_token`]).
pub(crate) fn token_from_headers<'a>(
    headers: &'a http::HeaderMap,
    cookie_name: &str,
) -> Option<&'a str> {
    session_token(headers, cookie_name).ok()
}

/// The session token of a request: the `name` cookie, else `Authorization: Bearer`.
///
/// Two different values for the cookie (a cookie planted with `Domain=` from a sibling host is
/// sent alongside ours, and browsers put it first for longer paths) make the request
/// [`SessionError::Ambiguous`] rather than trusting either.
pub(crate) fn session_token<'a>(
    headers: &'a http::HeaderMap,
    cookie_name: &str,
) -> Result<&'a str, SessionError> {
    if let Some(token) =
        unique_cookie(headers, cookie_name).map_err(|AmbiguousCookie| SessionError::Ambiguous)?
    {
        return Ok(token);
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(SessionError::Missing)?;
    match auth.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(SessionError::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(clock: Clock) -> SessionCodec {
        SessionCodec::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(3600),
            SessionFields::default(),
            clock,
            100,
        )
    }

    fn alice() -> NewSession {
        NewSession {
            user_id: "alice".into(),
            email: Some("alice@example.com".into()),
            display_name: Some("Alice".into()),
            role: UserRole::InternalUser,
            team_ids: vec!["t1".into()],
            provider: Some("generic".into()),
            attributes: serde_json::Map::new(),
        }
    }

    #[test]
    fn issue_then_verify_round_trips() {
        let c = codec(Clock::manual());
        let (token, id) = c.issue(alice()).unwrap();
        let back = c.verify(&token).unwrap();
        assert_eq!(back, id);
        assert_eq!(back.user_id(), "alice");
        assert_eq!(back.team_ids(), ["t1".to_string()]);
        // Second time from memory.
        assert_eq!(c.verify(&token).unwrap(), id);
    }

    #[test]
    fn upstream_fields_present() {
        let c = codec(Clock::manual());
        let (token, _) = c.issue(alice()).unwrap();
        let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&token)
            .unwrap()
            .claims;
        for f in [
            "user_id",
            "key",
            "user_email",
            "user_role",
            "login_method",
            "premium_user",
            "auth_header_name",
            "disabled_non_admin_personal_key_creation",
            "server_root_path",
            "exp",
            "iat",
            "jti",
        ] {
            assert!(claims.get(f).is_some(), "missing {f}");
        }
        assert_eq!(claims["user_role"], "internal_user");
        assert_eq!(claims["login_method"], "sso");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            3600
        );
    }

    #[test]
    fn expired_even_when_remembered() {
        let clock = Clock::manual();
        let c = codec(clock.clone());
        let (token, _) = c.issue(alice()).unwrap();
        c.verify(&token).unwrap();
        clock.advance(3601);
        assert_eq!(c.verify(&token), Err(SessionError::Expired));
        // A codec that never saw the token refuses it too.
        let other = SessionCodec::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(3600),
            SessionFields::default(),
            clock,
            100,
        );
        assert_eq!(other.verify(&token), Err(SessionError::Expired));
    }

    #[test]
    fn wrong_key_tampered_truncated_none_refused() {
        let c = codec(Clock::manual());
        let (token, _) = c.issue(alice()).unwrap();
        let other = SessionCodec::new(
            b"another-secret-another-secret-xx",
            Duration::from_secs(3600),
            SessionFields::default(),
            Clock::manual(),
            100,
        );
        assert_eq!(other.verify(&token), Err(SessionError::Invalid));
        assert_eq!(
            c.verify(&token[..token.len() - 3]),
            Err(SessionError::Invalid)
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_payload = {
            use base64_helpers::*;
            let mut v: serde_json::Value = serde_json::from_slice(&b64d(parts[1])).unwrap();
            v["user_role"] = "proxy_admin".into();
            b64e(&serde_json::to_vec(&v).unwrap())
        };
        parts[1] = &forged_payload;
        assert_eq!(c.verify(&parts.join(".")), Err(SessionError::Invalid));
        let none_header = base64_helpers::b64e(br#"{"alg":"none","typ":"JWT"}"#);
        let none_token = format!("{}.{}.", none_header, token.split('.').nth(1).unwrap());
        assert_eq!(c.verify(&none_token), Err(SessionError::Invalid));
        assert_eq!(c.verify(""), Err(SessionError::Invalid));
        assert_eq!(c.verify("a.b.c"), Err(SessionError::Invalid));
        assert_eq!(
            c.verify(&"x".repeat(MAX_TOKEN_LEN + 1)),
            Err(SessionError::TooLong)
        );
    }

    #[test]
    fn revoked_sessions_refused() {
        let c = codec(Clock::manual());
        let (token, id) = c.issue(alice()).unwrap();
        c.verify(&token).unwrap();
        c.revoke(id.session_id(), id.expires_at());
        assert_eq!(c.verify(&token), Err(SessionError::Revoked));
    }

    #[test]
    fn idp_session_and_subject_revocations_hold_for_sessions_issued_up_to_the_bound() {
        let clock = Clock::manual();
        let c = codec(clock.clone());
        let idp = |sid: &str| {
            Some(IdpSession {
                provider: "okta".into(),
                sid: Some(sid.into()),
                subject: Some("alice-sub".into()),
            })
        };
        let (s1, _) = c.issue_linked(alice(), idp("sid-1")).unwrap();
        let (s2, _) = c.issue_linked(alice(), idp("sid-2")).unwrap();
        let (plain, _) = c.issue(alice()).unwrap();
        // A fresh codec (another instance) and this one, warm.
        let other = codec(clock.clone());
        for t in [&s1, &s2, &plain] {
            c.verify(t).unwrap();
        }
        let now = clock.now();
        let by_sid = RevokedSession::idp_session("okta", "sid-1", now, now + 3600);
        c.apply(&by_sid);
        other.apply(&by_sid);
        for codec in [&c, &other] {
            assert_eq!(codec.verify(&s1), Err(SessionError::Revoked));
            assert!(codec.verify(&s2).is_ok() && codec.verify(&plain).is_ok());
        }
        // Same sid at another provider: untouched.
        let (elsewhere, _) = c
            .issue_linked(
                alice(),
                Some(IdpSession {
                    provider: "google".into(),
                    sid: Some("sid-1".into()),
                    subject: None,
                }),
            )
            .unwrap();
        assert!(c.verify(&elsewhere).is_ok());
        // By subject: every session of it issued up to the bound; a later login works.
        let by_sub = RevokedSession::idp_subject("okta", "alice-sub", now, now + 3600);
        c.apply(&by_sub);
        assert_eq!(c.verify(&s2), Err(SessionError::Revoked));
        assert!(c.verify(&plain).is_ok());
        clock.advance(1);
        let (later, _) = c.issue_linked(alice(), idp("sid-1")).unwrap();
        assert!(c.verify(&later).is_ok());
        assert!(other.verify(&later).is_ok());
        // The claims carry the provider session.
        let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(&later)
            .unwrap()
            .claims;
        assert_eq!(claims["idp"], "okta");
        assert_eq!(claims["sid"], "sid-1");
        assert_eq!(claims["sub"], "alice-sub");
        assert!(
            jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&plain)
                .unwrap()
                .claims
                .get("sid")
                .is_none()
        );
    }

    #[test]
    fn more_revocations_than_the_old_bound_all_hold() {
        // The set used to be bounded at 1 000 000 entries: past that, revocations were dropped
        // (or never admitted) silently, and a logged-out session worked again.
        let c = codec(Clock::manual());
        let exp = Clock::system().now() + 3600;
        let n: u32 = 1_000_000 + 2_000;
        for i in 0..n {
            c.revoke(&format!("jti-{i}"), exp);
        }
        let missing: Vec<u32> = (0..n)
            .filter(|i| !c.is_revoked(&format!("jti-{i}")))
            .take(5)
            .collect();
        assert!(missing.is_empty(), "dropped revocations, e.g. {missing:?}");
    }

    #[test]
    fn revocations_are_forgotten_once_their_sessions_expire() {
        let clock = Clock::manual();
        let c = codec(clock.clone());
        let now = clock.now();
        for i in 0..3000 {
            c.revoke(&format!("short-{i}"), now + 10);
        }
        c.revoke("long", now + 7200);
        assert!(c.is_revoked("short-0") && c.is_revoked("long"));
        clock.advance(10 + RevokedSessions::LEEWAY_SECS as i64 + 1);
        for i in 0..3000 {
            c.revoke(&format!("later-{i}"), clock.now() + 3600);
        }
        assert!(c.inner.revoked.len() < 4000, "{}", c.inner.revoked.len());
        assert!(c.is_revoked("long") && c.is_revoked("later-0") && c.is_revoked("later-2999"));
    }

    #[test]
    fn remembered_tokens_compared_in_full() {
        let c = codec(Clock::manual());
        let (token, id) = c.issue(alice()).unwrap();
        c.verify(&token).unwrap();
        // Same length and same hashed tail (the signature), different payload: not the remembered
        // session, and not valid either.
        let mut forged = token.clone().into_bytes();
        let i = token.find('.').unwrap() + 1;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(forged.len(), token.len());
        assert!(forged.ends_with(&token[token.len() - 32..]));
        assert_eq!(c.verify(&forged), Err(SessionError::Invalid));
        assert_eq!(c.verify(&token).unwrap(), id);
    }

    #[test]
    fn cookie_lookup() {
        assert_eq!(find_cookie("a=1; token=abc; b=2", "token"), Some("abc"));
        assert_eq!(find_cookie("tokenx=1; token=abc", "token"), Some("abc"));
        assert_eq!(find_cookie("xtoken=1", "token"), None);
        assert_eq!(find_cookie("token=\"q\"", "token"), Some("q"));
        assert_eq!(find_cookie("a=1;token=;token=x", "token"), Some(""));
        assert_eq!(find_cookie(" \ttoken=v  ; b=2", "token"), Some("v"));
        assert_eq!(find_cookie("token", "token"), None);
        assert_eq!(find_cookie("", "token"), None);
        // Pairs longer than a search block, `;` at every position around block edges.
        for n in 0..70 {
            let long = "x".repeat(n);
            let h = format!("a={long};token={long}y;b=1");
            assert_eq!(
                find_cookie(&h, "token"),
                Some(format!("{long}y").as_str()),
                "{n}"
            );
            let h = format!("a={long}");
            assert_eq!(find_cookie(&h, "a"), Some(long.as_str()));
        }
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "Bearer xyz".parse().unwrap());
        assert_eq!(token_from_headers(&h, "token"), Some("xyz"));
        h.insert(http::header::COOKIE, "token=fromcookie".parse().unwrap());
        assert_eq!(token_from_headers(&h, "token"), Some("fromcookie"));
        h.insert(http::header::AUTHORIZATION, "Basic xyz".parse().unwrap());
        h.remove(http::header::COOKIE);
        assert_eq!(token_from_headers(&h, "token"), None);
    }

    mod base64_helpers {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        pub(super) fn b64e(data: &[u8]) -> String {
            let mut out = String::new();
            for chunk in data.chunks(3) {
                let b = [
                    chunk[0],
                    *chunk.get(1).unwrap_or(&0),
                    *chunk.get(2).unwrap_or(&0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..=chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        }
        pub(super) fn b64d(s: &str) -> Vec<u8> {
            let vals: Vec<u32> = s
                .bytes()
                .map(|c| A.iter().position(|&a| a == c).unwrap() as u32)
                .collect();
            let mut out = Vec::new();
            for chunk in vals.chunks(4) {
                let mut n = 0u32;
                for (i, v) in chunk.iter().enumerate() {
                    n |= v << (18 - 6 * i);
                }
                for i in 0..chunk.len() - 1 {
                    out.push((n >> (16 - 8 * i)) as u8);
                }
            }
            out
        }
    }
}

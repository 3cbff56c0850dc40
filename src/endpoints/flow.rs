//! The state of one login between its start and its callback.
//!
//! The secrets (PKCE verifier, nonce, and a hash of the state) live in the verifier cache under a
//! random flow id for 600 s and are taken exactly once. The cached record is small and of fixed
//! size, whatever the request asked for: [`CACHED_FLOW_LEN`] bytes of JSON (164; 123 for a
//! provider without PKCE) under a [`CACHE_KEY_LEN`]-byte key (58), so login starts cannot fill
//! the cache with large records. In the default moka cache one login in flight weighs
//! 58 + 164 + 528 (measured per-entry overhead) = 750 of its 64 MiB: about 89 000 logins in
//! flight before the least recently started are evicted (see `MokaVerifierCache`). The browser
//! holds a flow cookie: a JWT signed with a key derived for this purpose alone, naming the cookie, the flow id, a hash of the state, and the
//! variable-length parts that need integrity but no secrecy (the provider, the return target,
//! the keyed hash of a CLI login key, and whether this is a debug login), so the callback can check that *this* browser started *this* login
//! before anything is redeemed. The cookie stays under [`MAX_FLOW_COOKIE_LEN`] bytes: a return
//! target too long for it is dropped (the user lands on the UI path, as for an invalid one).

use std::time::Duration;

use aws_lc_rs::{constant_time, digest};
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::SsoError;
use crate::layer::Shared;
use crate::metrics::Refusal;
use crate::random::base64url;

/// How long a login may take, from start to callback.
pub(crate) const FLOW_TTL: Duration = Duration::from_secs(600);
/// The flow cookie's name on plain http (local development).
const FLOW_COOKIE_PLAIN: &str = "tower_sso_flow";
/// The flow cookie's name on https: the `__Host-` prefix makes browsers refuse it unless it is
/// `Secure`, host-only and `Path=/`, so a sibling subdomain cannot plant one (login CSRF).
const FLOW_COOKIE_HOST: &str = "__Host-tower_sso_flow";

/// The flow cookie's name and path for this configuration.
pub(crate) fn cookie_name_and_path(shared: &Shared) -> (&'static str, &str) {
    if shared.cookie.secure {
        (FLOW_COOKIE_HOST, "/")
    } else {
        (FLOW_COOKIE_PLAIN, &shared.paths.prefix)
    }
}

/// The flow cookie of a request. More than one distinct value (planted by another site on a
/// shared domain, say) is refused as ambiguous.
pub(crate) fn cookie_from<'a>(
    shared: &Shared,
    headers: &'a http::HeaderMap,
) -> Result<Option<&'a str>, SsoError> {
    let (name, _) = cookie_name_and_path(shared);
    crate::session::unique_cookie(headers, name).map_err(|_| {
        SsoError::unauthorized("several login state cookies: start the login again")
            .with_param("state")
    })
}
const FLOW_AUDIENCE: &str = "tower-sso:flow";

/// The length of the cached value of one login with PKCE (the default): the JSON object of the
/// state hash, the nonce and the PKCE verifier, each 43 base64url characters (32 random bytes
/// or a SHA-256). Without PKCE the verifier is `null` and the value is 123 bytes.
pub(crate) const CACHED_FLOW_LEN: usize = 164;

/// The length of the cache key of one login: `tower-sso:flow:` and a 43-character flow id.
pub(crate) const CACHE_KEY_LEN: usize = 58;

/// The longest flow cookie value issued (and accepted): with its name and attributes it stays
/// well under the 4096 bytes browsers keep for one cookie.
pub(crate) const MAX_FLOW_COOKIE_LEN: usize = 3600;

/// What the callback needs to finish a login.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlowRecord {
    pub(crate) provider: String,
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) verifier: Option<String>,
    pub(crate) return_to: Option<String>,
    /// The keyed hash of the CLI login key (never the key itself), for a CLI login.
    pub(crate) cli: Option<String>,
    /// A debug login (`/sso/debug/login`): it may finish only at the debug callback.
    pub(crate) debug: bool,
}

/// What the verifier cache holds: fixed-size secrets only (each 43 characters).
#[derive(Debug, Serialize, Deserialize)]
struct CachedFlow {
    /// The state's hash (the state itself may be a configured static value of any length).
    sth: String,
    nonce: String,
    verifier: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FlowClaims {
    fid: String,
    sth: String,
    cookie: String,
    aud: String,
    exp: u64,
    /// The provider the login was started with.
    prv: String,
    /// The validated return target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rt: Option<String>,
    /// The keyed hash of the CLI login key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cli: Option<String>,
    /// A debug login.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    dbg: bool,
}

/// A flow cookie checked against the callback's `state`: what it vouches for.
#[derive(Debug)]
pub(crate) struct OpenedFlow {
    flow_id: String,
    state: String,
    provider: String,
    return_to: Option<String>,
    cli: Option<String>,
    debug: bool,
}

pub(crate) fn cache_key(flow_id: &str) -> String {
    let mut key = String::with_capacity(CACHE_KEY_LEN);
    key.push_str("tower-sso:flow:");
    key.push_str(flow_id);
    key
}

fn state_hash(state: &str) -> String {
    base64url(digest::digest(&digest::SHA256, state.as_bytes()).as_ref())
}

/// Signs the flow cookie value. A return target that would make the cookie longer than
/// [`MAX_FLOW_COOKIE_LEN`] is left out.
pub(crate) fn seal(
    shared: &Shared,
    flow_id: &str,
    record: &FlowRecord,
) -> Result<String, SsoError> {
    let mut claims = FlowClaims {
        fid: flow_id.to_owned(),
        sth: state_hash(&record.state),
        cookie: cookie_name_and_path(shared).0.to_owned(),
        aud: FLOW_AUDIENCE.to_owned(),
        exp: shared.clock.now() + FLOW_TTL.as_secs(),
        prv: record.provider.clone(),
        rt: record.return_to.clone(),
        cli: record.cli.clone(),
        dbg: record.debug,
    };
    let key = EncodingKey::from_secret(&shared.flow_key)
        .map_err(|_| SsoError::internal("flow key unusable"))?;
    let sign = |claims: &FlowClaims| {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key)
            .map_err(|_| SsoError::internal("could not sign the login state"))
    };
    let mut sealed = sign(&claims)?;
    if sealed.len() > MAX_FLOW_COOKIE_LEN && claims.rt.is_some() {
        tracing::debug!(
            len = sealed.len(),
            "return target too long for the login state cookie: left out"
        );
        claims.rt = None;
        sealed = sign(&claims)?;
    }
    if sealed.len() > MAX_FLOW_COOKIE_LEN {
        return Err(SsoError::internal(
            "the login state does not fit in a cookie",
        ));
    }
    Ok(sealed)
}

/// Checks the flow cookie against the `state` the IdP sent back.
pub(crate) fn open(
    shared: &Shared,
    cookie: Option<&str>,
    state: &str,
) -> Result<OpenedFlow, SsoError> {
    let cookie = cookie.filter(|c| !c.is_empty()).ok_or_else(|| {
        SsoError::unauthorized(
            "login state cookie missing: start the login again from this browser",
        )
        .with_param("state")
    })?;
    if cookie.len() > MAX_FLOW_COOKIE_LEN {
        return Err(SsoError::unauthorized("login state cookie invalid").with_param("state"));
    }
    let key = DecodingKey::from_secret(&shared.flow_key)
        .map_err(|_| SsoError::internal("flow key unusable"))?;
    let mut v = Validation::new(Algorithm::HS256);
    v.algorithms = vec![Algorithm::HS256];
    v.set_audience(&[FLOW_AUDIENCE]);
    v.set_required_spec_claims(&["exp", "aud"]);
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<FlowClaims>(cookie, &key, &v)
        .map_err(|_| SsoError::unauthorized("login state cookie invalid").with_param("state"))?
        .claims;
    if claims.cookie != cookie_name_and_path(shared).0 {
        return Err(SsoError::unauthorized("login state cookie invalid").with_param("state"));
    }
    if claims.exp <= shared.clock.now() {
        return Err(
            SsoError::unauthorized("login expired: start the login again").with_param("state"),
        );
    }
    if constant_time::verify_slices_are_equal(claims.sth.as_bytes(), state_hash(state).as_bytes())
        .is_err()
    {
        return Err(
            SsoError::unauthorized("login state does not match this browser").with_param("state"),
        );
    }
    Ok(OpenedFlow {
        flow_id: claims.fid,
        state: state.to_owned(),
        provider: claims.prv,
        return_to: claims.rt,
        cli: claims.cli,
        debug: claims.dbg,
    })
}

/// The fixed-size value cached for a login.
fn cached_value(record: &FlowRecord) -> Result<Vec<u8>, SsoError> {
    let mut value = Vec::with_capacity(CACHED_FLOW_LEN);
    serde_json::to_writer(
        &mut value,
        &CachedFlow {
            sth: state_hash(&record.state),
            nonce: record.nonce.clone(),
            verifier: record.verifier.clone(),
        },
    )
    .map_err(|_| SsoError::internal("could not encode the login state"))?;
    Ok(value)
}

/// Stores a new flow record; fails if the (random) flow id were ever taken.
pub(crate) async fn store(
    shared: &Shared,
    flow_id: &str,
    record: &FlowRecord,
) -> Result<(), SsoError> {
    let value = cached_value(record)?;
    let stored = crate::cache::put(
        &shared.cache,
        cache_key(flow_id),
        Bytes::from(value),
        FLOW_TTL,
        true,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "verifier cache refused a login state");
        SsoError::unavailable(
            "verifier cache unavailable: the login cannot start, try again shortly",
        )
        .with_refusal(Refusal::Cache)
    })?;
    if stored {
        Ok(())
    } else {
        Err(SsoError::internal("login state collision"))
    }
}

/// Takes the flow record (single use): the cached secrets, with what the cookie vouched for.
pub(crate) async fn take(shared: &Shared, opened: &OpenedFlow) -> Result<FlowRecord, SsoError> {
    let value = crate::cache::take(&shared.cache, cache_key(&opened.flow_id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "verifier cache failed on take");
            SsoError::unavailable(
                "verifier cache unavailable: the login cannot finish, try again shortly",
            )
            .with_refusal(Refusal::Cache)
        })?;
    let value = value.ok_or_else(|| {
        SsoError::unauthorized(
            "login state unknown, expired or already used: start the login again",
        )
        .with_param("state")
    })?;
    let cached: CachedFlow = serde_json::from_slice(&value)
        .map_err(|_| SsoError::unauthorized("login state unreadable").with_param("state"))?;
    // The cookie's state hash was checked against the request; the cached one must match too.
    if constant_time::verify_slices_are_equal(
        cached.sth.as_bytes(),
        state_hash(&opened.state).as_bytes(),
    )
    .is_err()
    {
        return Err(SsoError::unauthorized("login state does not match").with_param("state"));
    }
    Ok(FlowRecord {
        provider: opened.provider.clone(),
        state: opened.state.clone(),
        nonce: cached.nonce,
        verifier: cached.verifier,
        return_to: opened.return_to.clone(),
        cli: opened.cli.clone(),
        debug: opened.debug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(return_to: Option<String>) -> FlowRecord {
        FlowRecord {
            provider: "generic".into(),
            state: oauth2::CsrfToken::new_random_len(32).secret().clone(),
            nonce: oauth2::CsrfToken::new_random_len(32).secret().clone(),
            verifier: Some(
                oauth2::PkceCodeChallenge::new_random_sha256()
                    .1
                    .secret()
                    .clone(),
            ),
            return_to,
            cli: None,
            debug: false,
        }
    }

    #[test]
    fn the_cached_record_has_one_size_whatever_the_return_target() {
        let small = cached_value(&record(None)).unwrap();
        let empty = cached_value(&record(Some(String::new()))).unwrap();
        let big = cached_value(&record(Some(format!("/{}", "a".repeat(2047))))).unwrap();
        let mut cli = record(Some(format!("/{}", "b".repeat(2047))));
        cli.cli = Some("x".repeat(43));
        cli.debug = true;
        cli.provider = "a-provider-with-a-long-name".into();
        cli.state = "a configured static state of any length at all".repeat(10);
        let cli = cached_value(&cli).unwrap();
        assert_eq!(empty.len(), CACHED_FLOW_LEN);
        assert_eq!(small.len(), CACHED_FLOW_LEN);
        assert_eq!(big.len(), CACHED_FLOW_LEN);
        assert_eq!(cli.len(), CACHED_FLOW_LEN);
        let mut no_pkce = record(Some("/x".repeat(500)));
        no_pkce.verifier = None;
        assert_eq!(cached_value(&no_pkce).unwrap().len(), 123);
    }

    #[test]
    fn the_cache_key_has_one_length() {
        let flow_id = oauth2::CsrfToken::new_random_len(32).secret().clone();
        assert_eq!(cache_key(&flow_id).len(), CACHE_KEY_LEN);
    }
}

//! The state of one login between its start and its callback.
//!
//! The record (PKCE verifier, nonce, state, return target, provider) lives in the verifier cache
//! under a random flow id for 600 s and is taken exactly once. The browser holds a flow cookie: a
//! JWT signed with a key derived for this purpose alone, naming the cookie, the flow id and a
//! hash of the state, so the callback can check that *this* browser started *this* login before
//! anything is redeemed.

use std::time::Duration;

use aws_lc_rs::{constant_time, digest};
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::SsoError;
use crate::layer::Shared;
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

/// What the callback needs to finish a login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FlowRecord {
    pub(crate) provider: String,
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) verifier: Option<String>,
    pub(crate) return_to: Option<String>,
    pub(crate) cli: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FlowClaims {
    fid: String,
    sth: String,
    cookie: String,
    aud: String,
    exp: u64,
}

pub(crate) fn cache_key(flow_id: &str) -> String {
    format!("tower-sso:flow:{flow_id}")
}

fn state_hash(state: &str) -> String {
    base64url(digest::digest(&digest::SHA256, state.as_bytes()).as_ref())
}

/// Signs the flow cookie value.
pub(crate) fn seal(shared: &Shared, flow_id: &str, state: &str) -> Result<String, SsoError> {
    let claims = FlowClaims {
        fid: flow_id.to_owned(),
        sth: state_hash(state),
        cookie: cookie_name_and_path(shared).0.to_owned(),
        aud: FLOW_AUDIENCE.to_owned(),
        exp: shared.clock.now() + FLOW_TTL.as_secs(),
    };
    let key = EncodingKey::from_secret(&shared.flow_key)
        .map_err(|_| SsoError::internal("flow key unusable"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|_| SsoError::internal("could not sign the login state"))
}

/// Checks the flow cookie against the `state` the IdP sent back; returns the flow id.
pub(crate) fn open(shared: &Shared, cookie: Option<&str>, state: &str) -> Result<String, SsoError> {
    let cookie = cookie.filter(|c| !c.is_empty()).ok_or_else(|| {
        SsoError::unauthorized(
            "login state cookie missing: start the login again from this browser",
        )
        .with_param("state")
    })?;
    if cookie.len() > 2048 {
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
    Ok(claims.fid)
}

/// Stores a new flow record; fails if the (random) flow id were ever taken.
pub(crate) async fn store(
    shared: &Shared,
    flow_id: &str,
    record: &FlowRecord,
) -> Result<(), SsoError> {
    let value = serde_json::to_vec(record)
        .map_err(|_| SsoError::internal("could not encode the login state"))?;
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
    })?;
    if stored {
        Ok(())
    } else {
        Err(SsoError::internal("login state collision"))
    }
}

/// Takes the flow record (single use).
pub(crate) async fn take(shared: &Shared, flow_id: &str) -> Result<FlowRecord, SsoError> {
    let value = crate::cache::take(&shared.cache, cache_key(flow_id))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "verifier cache failed on take");
            SsoError::unavailable(
                "verifier cache unavailable: the login cannot finish, try again shortly",
            )
        })?;
    let value = value.ok_or_else(|| {
        SsoError::unauthorized(
            "login state unknown, expired or already used: start the login again",
        )
        .with_param("state")
    })?;
    serde_json::from_slice(&value)
        .map_err(|_| SsoError::unauthorized("login state unreadable").with_param("state"))
}

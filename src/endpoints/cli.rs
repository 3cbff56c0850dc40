//! The CLI login, wire-compatible with upstream's `litellm-proxy login`.
//!
//! 1. The CLI makes a random key `sk-…` and opens
//!    `/sso/key/generate?source=litellm-cli&key=sk-…` in a browser. The login runs as any other
//!    (state, PKCE, nonce, flow cookie), with the keyed hash of the key in the flow cookie.
//! 2. The callback applies the same access policy and user store update as a browser login, then
//!    keeps the CLI session (user id, role, models, e-mail, teams, team details) in the verifier
//!    cache for [`CLI_SESSION_TTL`] under the keyed hash of the key (never the key itself), and
//!    shows the browser a page saying it can be closed. The browser gets no session.
//! 3. The CLI polls `GET /sso/cli/poll/{key}` ([`poll`]): `{"status": "pending"}` until the
//!    session is there (and again once the token was handed out: a poll never tells whether a
//!    key was ever used); a team choice when the user has several teams and the poll names none;
//!    else the session token, once.
//!
//! The token is a session token (see [`crate::session`]) lasting
//! [`cli_token_duration`](crate::SsoLayerBuilder::cli_token_duration). The chosen team is its only
//! team (`Identity::team_ids() == [team]`, empty without one) and its `team_id` attribute (a
//! string, or `null`); its `login_method` attribute is `"cli"`.

use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{json, param, query_params};
use crate::error::SsoError;
use crate::identity::{SsoUser, UserRole};
use crate::layer::Shared;
use crate::random::base64url;
use crate::session::{IssueError, NewSession};
use crate::store::{StoreRequest, StoreResponse, UserRecord};

/// The `source` a CLI login start carries (upstream's `LITELLM_CLI_SOURCE_IDENTIFIER`).
pub(crate) const CLI_SOURCE: &str = "litellm-cli";
/// How long a finished CLI login waits for its poll (upstream: 600 s).
pub(crate) const CLI_SESSION_TTL: Duration = Duration::from_secs(600);
/// The fewest characters after `sk-` a CLI key may have: a short key could be guessed by
/// someone else polling for it (upstream's CLI sends a UUID, 36 characters).
const MIN_KEY_RANDOM: usize = 20;
/// The most characters after `sk-`.
const MAX_KEY_RANDOM: usize = 250;

/// The CLI key of a login start, checked: `sk-` (else 400, as upstream), then 20 to 250 of
/// `[A-Za-z0-9_-]`.
pub(crate) fn checked_key(key: Option<&str>) -> Result<&str, SsoError> {
    let key = key.filter(|k| k.starts_with("sk-")).ok_or_else(|| {
        SsoError::bad_request("Invalid key parameter. Must be a valid key ID starting with 'sk-'")
            .with_param("key")
    })?;
    if !well_formed(key) {
        return Err(SsoError::bad_request(format!(
            "the CLI key must be 'sk-' followed by {MIN_KEY_RANDOM} to {MAX_KEY_RANDOM} letters, digits, '-' or '_'"
        ))
        .with_param("key"));
    }
    Ok(key)
}

/// Whether `key` is `sk-` and 20 to 250 of `[A-Za-z0-9_-]`.
fn well_formed(key: &str) -> bool {
    key.strip_prefix("sk-").is_some_and(|rest| {
        (MIN_KEY_RANDOM..=MAX_KEY_RANDOM).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The keyed hash (HMAC-SHA-256 under a key derived from the session secret) a CLI key is known
/// by: in the flow cookie and in the verifier cache. Keyed, so that neither a cache dump nor a
/// flow cookie lets anyone search for a weak key offline.
pub(crate) fn key_hash(shared: &Shared, key: &str) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, &shared.cli_key);
    base64url(hmac::sign(&k, key.as_bytes()).as_ref())
}

fn cache_key(key_hash: &str) -> String {
    format!("tower-sso:cli:{key_hash}")
}

/// A team as the poll answers it (upstream's `team_details` entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TeamDetail {
    team_id: String,
    team_alias: Option<String>,
}

/// What a finished CLI login keeps for its poll.
#[derive(Debug, Serialize, Deserialize)]
struct CliSession {
    user_id: String,
    user_role: UserRole,
    models: Vec<String>,
    user_email: Option<String>,
    teams: Vec<String>,
    team_details: Vec<TeamDetail>,
    display_name: Option<String>,
    provider: Option<String>,
    attributes: Map<String, Value>,
    /// When the entry expires (seconds since the epoch): it is put back with what is left.
    exp: u64,
}

/// The end of a CLI login's callback: keeps the session for the poll, answers the browser.
pub(super) async fn keep_session(
    shared: &Shared,
    key_hash: &str,
    stored: &UserRecord,
    user: &SsoUser,
    teams: Vec<String>,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let team_details = team_details(shared, &stored.user_id, &teams).await;
    let session = CliSession {
        user_id: stored.user_id.clone(),
        user_role: stored.role,
        models: stored.models.clone(),
        user_email: stored.email.clone().or_else(|| user.email.clone()),
        teams,
        team_details,
        display_name: user.display_name.clone(),
        provider: user.provider.clone(),
        attributes: user.extra.clone(),
        exp: shared.clock.now() + CLI_SESSION_TTL.as_secs(),
    };
    let value = serde_json::to_vec(&session)
        .map_err(|_| SsoError::internal("could not encode the CLI session"))?;
    crate::cache::put(
        &shared.cache,
        cache_key(key_hash),
        Bytes::from(value),
        CLI_SESSION_TTL,
        false,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "verifier cache refused a CLI session");
        SsoError::unavailable("verifier cache unavailable: the CLI login cannot finish")
            .with_refusal(crate::metrics::Refusal::Cache)
    })?;
    tracing::info!(user_id = %session.user_id, teams = session.teams.len(), "SSO CLI login finished; waiting for the CLI's poll");
    Ok(super::html::page(
        StatusCode::OK,
        "Login successful",
        "<p>You are logged in to the command line tool. You can close this window and return to your terminal.</p>",
    ))
}

/// The user's teams with their aliases, from the user store's `ListTeams`; a store failure
/// leaves the aliases out (as upstream does).
async fn team_details(shared: &Shared, user_id: &str, teams: &[String]) -> Vec<TeamDetail> {
    use tower::ServiceExt;
    let listed = match shared
        .store
        .clone()
        .oneshot(StoreRequest::ListTeams {
            user_id: user_id.to_owned(),
        })
        .await
    {
        Ok(StoreResponse::Teams(t)) => t,
        Ok(_) => {
            tracing::warn!("user store answered ListTeams with something else: no team aliases");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "user store failed to list teams: no team aliases");
            Vec::new()
        }
    };
    teams
        .iter()
        .map(|id| TeamDetail {
            team_id: id.clone(),
            team_alias: listed
                .iter()
                .find(|t| &t.team_id == id)
                .and_then(|t| t.alias.clone()),
        })
        .collect()
}

/// `GET /sso/cli/poll/{key}[?team_id=…]`.
///
/// The session is taken from the cache atomically, so of two concurrent polls exactly one gets
/// the token. When only a team choice is answered (or a team the user is not in was named) it
/// is put back for the time it had left; a poll racing with that sees `pending` and polls again.
pub(crate) async fn poll(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let key = parts
        .uri
        .path()
        .rsplit_once("/cli/poll/")
        .map_or("", |(_, k)| k);
    if !key.starts_with("sk-") {
        return Err(SsoError::bad_request("Invalid key ID format").with_param("key"));
    }
    if !well_formed(key) {
        // No login could have started with it.
        return Ok(pending());
    }
    let params = query_params(parts)?;
    let team_id = param(&params, "team_id");
    let entry = cache_key(&key_hash(shared, key));
    let taken = crate::cache::take(&shared.cache, entry.clone())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "verifier cache failed on a CLI poll");
            SsoError::unavailable("verifier cache unavailable: poll again shortly")
        })?;
    let Some(value) = taken else {
        return Ok(pending());
    };
    let session: CliSession = serde_json::from_slice(&value).map_err(|_| {
        tracing::error!("unreadable CLI session in the verifier cache");
        SsoError::internal("the CLI session is unreadable: log in again")
    })?;
    let now = shared.clock.now();
    if session.exp <= now {
        return Ok(pending());
    }

    let chosen = match team_id {
        None if session.teams.len() > 1 => {
            put_back(shared, entry, value, session.exp - now).await?;
            let body = json!({
                "status": "ready",
                "user_id": session.user_id,
                "teams": session.teams,
                "team_details": session.team_details,
                "requires_team_selection": true,
            });
            return Ok(json(StatusCode::OK, &body));
        }
        None => session.teams.first().cloned(),
        Some(t) if session.teams.iter().any(|m| m == t) => Some(t.to_owned()),
        Some(_) => {
            put_back(shared, entry, value, session.exp - now).await?;
            return Err(
                SsoError::forbidden("the user does not belong to this team").with_param("team_id")
            );
        }
    };

    let mut attributes = session.attributes;
    attributes.insert(
        "team_id".to_owned(),
        chosen.clone().map_or(Value::Null, Value::String),
    );
    attributes.insert("login_method".to_owned(), Value::from("cli"));
    let (token, identity) = shared
        .sessions
        .issue_lasting(
            NewSession {
                user_id: session.user_id.clone(),
                email: session.user_email,
                display_name: session.display_name,
                role: session.user_role,
                team_ids: chosen.iter().cloned().collect(),
                provider: session.provider,
                attributes,
            },
            shared.cli_token_ttl,
        )
        .map_err(|e| match e {
            IssueError::TooLarge { .. } => {
                tracing::warn!(error = %e, "CLI login refused: session too large");
                SsoError::unauthorized(
                    "the session would be too large: the identity provider sent too many attributes",
                )
            }
            IssueError::Encode => SsoError::internal("could not issue the session"),
        })?;
    tracing::info!(user_id = %identity.user_id(), team = chosen.as_deref().unwrap_or(""), "SSO CLI token handed out");
    let body = json!({
        "status": "ready",
        "key": token,
        "user_id": session.user_id,
        "team_id": chosen,
        "teams": session.teams,
        "team_details": session.team_details,
    });
    Ok(json(StatusCode::OK, &body))
}

fn pending() -> Response<Full<Bytes>> {
    json(StatusCode::OK, &json!({ "status": "pending" }))
}

/// Puts a taken CLI session back for `ttl_secs` (unless a new login for the same key was
/// stored meanwhile).
async fn put_back(
    shared: &Shared,
    entry: String,
    value: Bytes,
    ttl_secs: u64,
) -> Result<(), SsoError> {
    crate::cache::put(
        &shared.cache,
        entry,
        value,
        Duration::from_secs(ttl_secs),
        true,
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        tracing::error!(error = %e, "verifier cache refused to keep a CLI session");
        SsoError::unavailable("verifier cache unavailable: log in again")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(checked_key(Some("sk-0123456789abcdefABCD")).is_ok());
        assert!(checked_key(Some("sk-9f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f")).is_ok());
        for bad in [
            None,
            Some(""),
            Some("cli-test_1234567890abcdefgh"),
            Some("SK-0123456789abcdefABCD"),
        ] {
            let e = checked_key(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(e.message().contains("starting with 'sk-'"));
        }
        for bad in [
            "sk-short",
            "sk-0123456789abcdef\nABCD",
            "sk-0123456789abcdef/ABCD",
            &format!("sk-{}", "a".repeat(251)),
        ] {
            assert_eq!(
                checked_key(Some(bad)).unwrap_err().status(),
                StatusCode::BAD_REQUEST
            );
        }
    }
}

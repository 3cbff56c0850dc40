//! Google: the Workspace (hosted) domain and the verified e-mail.
//!
//! The `hd` authorization parameter only preselects accounts of a domain in Google's account
//! chooser; anyone can remove it. What counts is the verified id_token's `hd` claim, which
//! Google sets only for accounts of a Workspace domain.

use serde_json::{Map, Value};

use crate::claims::email_verified_from_value;
use crate::error::SsoError;
use crate::layer::Shared;
use crate::provider::{Provider, ProviderKind};

/// The domains a Google login must belong to: [`Provider::hosted_domain`], else the allowed
/// e-mail domains (`ALLOWED_EMAIL_DOMAINS`). Empty: any Google account.
fn required_domains<'a>(shared: &'a Shared, config: &'a Provider) -> Vec<&'a str> {
    match &config.hosted_domain {
        Some(d) => vec![d.as_str()],
        None => shared
            .policy
            .allowed_email_domains
            .iter()
            .map(String::as_str)
            .collect(),
    }
}

/// The `hd` authorization parameter for a Google login: the one required domain, `*` (any
/// Workspace domain) when there are several, nothing when any account may log in.
pub(crate) fn hd_parameter(shared: &Shared, config: &Provider) -> Option<String> {
    if config.kind() != ProviderKind::Google {
        return None;
    }
    match required_domains(shared, config).as_slice() {
        [] => None,
        [one] => Some((*one).to_owned()),
        _ => Some("*".to_owned()),
    }
}

/// A Google login needs a verified id_token whose `email_verified` is `true` and, when domains
/// are required, whose `hd` is one of them (403 otherwise).
pub(crate) fn check_login(
    shared: &Shared,
    config: &Provider,
    id_token_claims: &Map<String, Value>,
) -> Result<(), SsoError> {
    if id_token_claims.is_empty() {
        return Err(SsoError::unauthorized(
            "Google sent no id_token: the account cannot be checked",
        ));
    }
    if id_token_claims
        .get("email_verified")
        .and_then(email_verified_from_value)
        != Some(true)
    {
        return Err(SsoError::forbidden(
            "Google has not verified this account's e-mail address",
        ));
    }
    let required = required_domains(shared, config);
    if required.is_empty() {
        return Ok(());
    }
    let hd = id_token_claims.get("hd").and_then(Value::as_str);
    if hd.is_some_and(|hd| required.iter().any(|d| d.eq_ignore_ascii_case(hd))) {
        Ok(())
    } else {
        Err(SsoError::forbidden(
            "this Google account does not belong to the required Google Workspace domain",
        )
        .with_param("hd"))
    }
}

//! `GET /sso/key/generate`: start a login.

use bytes::Bytes;
use http::request::Parts;
use http::{Response, header};
use http_body_util::Full;
use oauth2::{CsrfToken, PkceCodeChallenge};

use super::cookies::{clear_cookie, flow_cookie};
use super::flow::{self, FLOW_TTL, FlowRecord};
use super::{append_cookie, cross_site, param, query_params, see_other};
use crate::error::SsoError;
use crate::layer::Shared;
use crate::session::token_from_headers;

/// The CLI login handle pattern: `cli-` and 12 to 124 of `[A-Za-z0-9_-]`.
pub(crate) fn valid_cli_handle(key: &str) -> bool {
    key.strip_prefix("cli-").is_some_and(|rest| {
        (12..=124).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

pub(crate) async fn start(
    shared: &Shared,
    parts: &Parts,
) -> Result<Response<Full<Bytes>>, SsoError> {
    let params = query_params(parts)?;
    let provider_name = param(&params, "provider");
    let provider = shared.provider(provider_name).ok_or_else(|| {
        if shared.providers.is_empty() {
            SsoError::unavailable("no SSO provider is configured")
        } else {
            SsoError::bad_request("unknown SSO provider").with_param("provider")
        }
    })?;
    let cli = match (param(&params, "source"), param(&params, "key")) {
        (Some("litellm-cli"), Some(key)) if valid_cli_handle(key) => Some(key.to_owned()),
        (Some("litellm-cli"), _) => {
            return Err(SsoError::bad_request("invalid CLI login handle").with_param("key"));
        }
        _ => None,
    };
    // An invalid return target is not an error: the user lands on the UI path instead.
    let return_to = param(&params, "return_to")
        .or_else(|| param(&params, "redirect_to"))
        .and_then(|t| shared.redirects.validate(t));

    let resolved = provider.resolve().await?;
    let config = &provider.config;

    let state = config
        .static_state
        .clone()
        .unwrap_or_else(|| CsrfToken::new_random_len(32).secret().clone());
    let nonce = CsrfToken::new_random_len(32).secret().clone();
    let flow_id = CsrfToken::new_random_len(32).secret().clone();
    let (challenge, verifier) = if config.pkce {
        let (c, v) = PkceCodeChallenge::new_random_sha256();
        (Some(c), Some(v.secret().clone()))
    } else {
        (None, None)
    };

    let mut url = url::Url::parse(&resolved.authorization_endpoint).map_err(|_| {
        SsoError::unavailable("identity provider authorization endpoint is invalid")
    })?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", &config.client_id);
        q.append_pair("redirect_uri", &provider.callback_url);
        q.append_pair("scope", &config.scopes.join(" "));
        q.append_pair("state", &state);
        q.append_pair("nonce", &nonce);
        if let Some(c) = &challenge {
            q.append_pair("code_challenge", c.as_str());
            q.append_pair("code_challenge_method", c.method().as_str());
        }
        if let Some(hd) = crate::providers::google::hd_parameter(shared, config) {
            q.append_pair("hd", &hd);
        }
    }

    let record = FlowRecord {
        provider: config.provider_name().to_owned(),
        state: state.clone(),
        nonce,
        verifier,
        return_to,
        cli,
    };
    flow::store(shared, &flow_id, &record).await?;
    let sealed = flow::seal(shared, &flow_id, &record)?;

    let mut res = see_other(url.as_str());
    let secure = shared.cookie.secure;
    let (flow_name, flow_path) = flow::cookie_name_and_path(shared);
    append_cookie(
        &mut res,
        &flow_cookie(
            flow_name,
            &sealed,
            flow_path,
            secure,
            FLOW_TTL.as_secs() as i64,
        ),
    );
    // A new login replaces any old session: the cookie is cleared, and a session the browser
    // still presents is revoked so that a copy of it stops working too. Not when another site
    // sent the browser here (a link or an image on any page would otherwise log users out):
    // the login may still start, and the callback replaces the cookie if it completes.
    if !cross_site(&parts.headers) {
        if let Some(token) = token_from_headers(&parts.headers, &shared.cookie.name)
            && let Ok(old) = shared.sessions.verify(token)
        {
            shared.revoke(&old).await;
        }
        append_cookie(&mut res, &clear_cookie(&shared.cookie.name, "/", secure));
    }
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_handles() {
        assert!(valid_cli_handle("cli-test_1234567890"));
        assert!(!valid_cli_handle("cli-session"));
        assert!(!valid_cli_handle("cli-test\n1234567890"));
        assert!(!valid_cli_handle("cli-test\u{0}1234567890"));
        assert!(!valid_cli_handle("sk-test1234567890"));
    }
}

//! `GET /sso/key/generate` (and `GET /sso/debug/login`): start a login.
//!
//! With `source=litellm-cli&key=sk-…` it starts a CLI login (see [`super::cli`]): the flow cookie
//! carries the keyed hash of the key, and the browser's own session is left alone.

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

/// Starts a login; `debug`: the debug login, which comes back to the debug callback.
pub(crate) async fn start(
    shared: &Shared,
    parts: &Parts,
    debug: bool,
) -> Result<Response<Full<Bytes>>, SsoError> {
    if let Some(signed_in) = super::header_sign_in::try_sign_in(shared, parts).await {
        return signed_in;
    }
    let params = query_params(parts)?;
    let provider_name = param(&params, "provider");
    let provider = shared.provider(provider_name).ok_or_else(|| {
        if shared.providers.is_empty() {
            SsoError::unavailable("no SSO provider is configured")
        } else {
            SsoError::bad_request("unknown SSO provider").with_param("provider")
        }
    })?;
    // Upstream's CLI passes `existing_key` too; it only logs it, and so does nothing here.
    let cli = match (debug, param(&params, "source"), param(&params, "key")) {
        (false, Some(super::cli::CLI_SOURCE), key) => {
            Some(super::cli::key_hash(shared, super::cli::checked_key(key)?))
        }
        _ => None,
    };
    // An invalid return target is not an error: the user lands on the UI path instead. A CLI
    // or debug login never redirects anywhere.
    let return_to = if cli.is_some() || debug {
        None
    } else {
        param(&params, "return_to")
            .or_else(|| param(&params, "redirect_to"))
            .and_then(|t| shared.redirects.validate(t))
    };
    crate::metrics::record_provider(provider.config.provider_name());
    let redirect_uri = if debug {
        &provider.debug_callback_url
    } else {
        &provider.callback_url
    };

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
        q.append_pair("redirect_uri", redirect_uri);
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
        debug,
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
    // A CLI or debug login sets no session in this browser, so it leaves the old one alone.
    if !cross_site(&parts.headers) && record.cli.is_none() && !record.debug {
        if let Some(token) = token_from_headers(&parts.headers, &shared.cookie.name)
            && let Ok(old) = shared.sessions.verify(token)
        {
            shared.revoke(&old).await;
            crate::metrics::session_revoked(crate::metrics::RevocationSource::Login);
        }
        append_cookie(&mut res, &clear_cookie(&shared.cookie.name, "/", secure));
    }
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    crate::metrics::login_started(config.provider_name());
    Ok(res)
}

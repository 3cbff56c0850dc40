//! A provider at run time: its configuration plus what discovery found (resolved once, lazily,
//! retried after a failure) and its JWKS cache.

use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::clock::Clock;
use crate::error::SsoError;
use crate::http::HttpClient;
use crate::oidc::{JwksCache, discover};
use crate::provider::Provider;

/// The endpoints and keys of one provider, after discovery and explicit overrides.
#[derive(Clone)]
pub(crate) struct Resolved {
    pub(crate) issuer: Option<String>,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) userinfo_endpoint: Option<String>,
    pub(crate) end_session_endpoint: Option<String>,
    pub(crate) iss_parameter_supported: bool,
    pub(crate) jwks: Option<JwksCache>,
}

pub(crate) struct ProviderRuntime {
    pub(crate) config: Provider,
    /// The redirect URI registered for this provider.
    pub(crate) callback_url: String,
    /// The redirect URI of the debug login for this provider.
    pub(crate) debug_callback_url: String,
    http: HttpClient,
    clock: Clock,
    resolved: OnceCell<Arc<Resolved>>,
    /// The last failed discovery: for [`RETRY_AFTER_SECS`] every caller fails at once with it instead
    /// of queueing for its own attempt against an IdP that is down.
    failed: Mutex<Option<(u64, SsoError)>>,
}

/// How long a failed discovery is remembered before it is tried again.
const RETRY_AFTER_SECS: u64 = 10;

impl ProviderRuntime {
    pub(crate) fn new(
        config: Provider,
        http: HttpClient,
        clock: Clock,
        callback_url: String,
        debug_callback_url: String,
    ) -> Self {
        Self {
            config,
            callback_url,
            debug_callback_url,
            http,
            clock,
            resolved: OnceCell::new(),
            failed: Mutex::new(None),
        }
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The endpoints, running discovery the first time (a failed discovery is retried next time).
    pub(crate) async fn resolve(&self) -> Result<Arc<Resolved>, SsoError> {
        if let Some(r) = self.resolved.get() {
            return Ok(r.clone());
        }
        if let Some(err) = self.recent_failure() {
            return Err(err);
        }
        let result = self
            .resolved
            .get_or_try_init(|| self.build())
            .await
            .cloned();
        if let Err(e) = &result {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            *failed = Some((self.clock.now(), e.clone()));
        }
        result
    }

    /// The endpoints if discovery already succeeded; never waits for the IdP.
    pub(crate) fn resolved_now(&self) -> Option<Arc<Resolved>> {
        self.resolved.get().cloned()
    }

    fn recent_failure(&self) -> Option<SsoError> {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed
            .as_ref()
            .filter(|(at, _)| self.clock.now().saturating_sub(*at) < RETRY_AFTER_SECS)
            .map(|(_, e)| e.clone())
    }

    async fn build(&self) -> Result<Arc<Resolved>, SsoError> {
        let c = &self.config;
        let meta = match &c.issuer {
            Some(issuer)
                if c.authorization_endpoint.is_none()
                    || c.token_endpoint.is_none()
                    || c.jwks_uri.is_none() =>
            {
                Some(discover(&self.http, issuer).await.inspect_err(|e| {
                    tracing::warn!(provider = %c.name, error = %e, "OpenID discovery failed");
                })?)
            }
            _ => None,
        };
        let pick = |explicit: &Option<String>, found: Option<&String>| {
            explicit.clone().or_else(|| found.cloned())
        };
        let authorization_endpoint = pick(
            &c.authorization_endpoint,
            meta.as_ref().map(|m| &m.authorization_endpoint),
        )
        .ok_or_else(|| SsoError::unavailable("identity provider has no authorization endpoint"))?;
        let token_endpoint = pick(&c.token_endpoint, meta.as_ref().map(|m| &m.token_endpoint))
            .ok_or_else(|| SsoError::unavailable("identity provider has no token endpoint"))?;
        let userinfo_endpoint = pick(
            &c.userinfo_endpoint,
            meta.as_ref().and_then(|m| m.userinfo_endpoint.as_ref()),
        );
        // Logout redirects the browser here: an endpoint that breaks the IdP URL rules is dropped
        // (logout then falls back to the root path) rather than followed.
        let end_session_endpoint = pick(
            &c.end_session_endpoint,
            meta.as_ref().and_then(|m| m.end_session_endpoint.as_ref()),
        )
        .filter(|url| match crate::config::check_idp_url(url) {
            Ok(_) => true,
            Err(problem) => {
                tracing::warn!(provider = %c.name, %problem, "end-session endpoint ignored");
                false
            }
        });
        let jwks_uri = pick(&c.jwks_uri, meta.as_ref().and_then(|m| m.jwks_uri.as_ref()));
        // Endpoints learned by discovery obey the same rule as configured ones.
        for url in [
            Some(&authorization_endpoint),
            Some(&token_endpoint),
            userinfo_endpoint.as_ref(),
            jwks_uri.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            crate::config::check_idp_url(url).map_err(|e| {
                tracing::warn!(provider = %c.name, problem = %e, "identity provider endpoint refused");
                SsoError::unavailable("identity provider metadata names an endpoint that is not allowed")
            })?;
        }
        // Keys without an issuer (explicit endpoints plus GENERIC_JWKS_URI) still verify the
        // signature; `iss` must then merely be present.
        let jwks = jwks_uri.map(|uri| JwksCache::new(self.http.clone(), uri, self.clock.clone()));
        Ok(Arc::new(Resolved {
            issuer: c.issuer.clone(),
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            end_session_endpoint,
            iss_parameter_supported: meta
                .as_ref()
                .is_some_and(|m| m.authorization_response_iss_parameter_supported),
            jwks,
        }))
    }
}

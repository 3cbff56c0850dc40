//! [`SsoService`]: the request path, top to bottom.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::endpoints;
use crate::future::ResponseFuture;
use crate::headers::{
    remove_session_cookie, remove_session_credential, set_identity_headers, strip_identity_headers,
};
use crate::layer::{Shared, SsoLayer};
use crate::session::session_credential;
use std::sync::Arc;

/// The service [`SsoLayer`] wraps around an inner service.
///
/// Works for any `Send` request body type; its error type is the inner service's, and every rejection is
/// an HTTP response (so axum needs no `HandleErrorLayer`).
#[derive(Clone)]
pub struct SsoService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for SsoService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoService").finish_non_exhaustive()
    }
}

impl<S> SsoService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// Wraps `inner` with `layer`'s configuration.
    pub fn with_layer(inner: S, layer: &SsoLayer) -> Self {
        Self::new(inner, layer.shared.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SsoService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    // The back-channel logout endpoint reads its form body.
    ReqBody: http_body::Body + Send + 'static,
    ReqBody::Data: Send,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // The inner service is called here, in `call`, right after the `poll_ready` that prepared
    // it (as tower-http's middleware do): no clone per request, which for a boxed inner service
    // (axum's `Route`) would be an allocation. A request the layer answers itself leaves that
    // readiness for the next call.
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Shared revocations (if configured) are kept in step from here on; one atomic load.
        if let Some(sync) = &self.shared.revocations {
            sync.ensure_started();
        }
        // Identity headers only ever come from us.
        strip_identity_headers(req.headers_mut());
        // So do header sign-in names, unless a trusted proxy sent them.
        if let Some(sign_in) = &self.shared.hooks.header_sign_in {
            let trusted = self
                .shared
                .trusted_proxies
                .peer_is_trusted(req.extensions());
            sign_in.strip(req.headers_mut(), trusted);
        }

        // 1. The layer's own endpoints: answered here, never forwarded.
        if let Some(endpoint) = endpoints::route(&self.shared, req.method(), req.uri().path()) {
            let (parts, body) = req.into_parts();
            return ResponseFuture::endpoint(endpoints::handle_with_body(
                self.shared.clone(),
                endpoint,
                parts,
                body,
            ));
        }

        // 2. Public paths go straight through (without the session cookie, when the credential
        //    is kept from the inner service: the cookie is `Path=/`, so browsers send it here
        //    too). A Bearer header on a public path is left alone: the client sent it to this
        //    route on purpose (an API key, say), it is not ambient like a cookie.
        if self.shared.public.matches(req.uri().path()) {
            if self.shared.strip_session_token {
                remove_session_cookie(req.headers_mut(), &self.shared.cookie.name);
            }
            return ResponseFuture::inner(self.inner.call(req));
        }

        // 3. Everything else needs a valid session.
        let verified = session_credential(req.headers(), &self.shared.cookie.name)
            .and_then(|credential| self.shared.sessions.verify_credential(&credential));
        match verified {
            Ok(identity) => {
                if self.shared.strip_session_token {
                    remove_session_credential(req.headers_mut(), &self.shared.cookie.name);
                }
                if self.shared.identity_headers {
                    set_identity_headers(req.headers_mut(), &identity);
                }
                req.extensions_mut().insert(identity);
                ResponseFuture::inner(self.inner.call(req))
            }
            Err(err) => ResponseFuture::ready(endpoints::unauthenticated(&self.shared, &req, err)),
        }
    }
}

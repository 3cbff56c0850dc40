//! The axum extractor for [`Identity`] (feature `axum`).

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::error::SsoError;
use crate::identity::Identity;

/// Rejection when a handler asks for an [`Identity`] on a request the layer did not authenticate
/// (a public path, or a router without the layer): 401 JSON.
#[derive(Debug, Clone)]
pub struct MissingIdentity;

impl IntoResponse for MissingIdentity {
    fn into_response(self) -> Response {
        let res = SsoError::unauthorized("authentication required").into_response();
        res.map(axum_core::body::Body::new)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = MissingIdentity;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or(MissingIdentity)
    }
}

impl<S: Send + Sync> axum_core::extract::OptionalFromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned())
    }
}

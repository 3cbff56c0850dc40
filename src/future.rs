//! The response future of [`SsoService`](crate::SsoService).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

/// A boxed future answering one of the layer's own endpoints.
pub(crate) type EndpointFuture =
    Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send + 'static>>;

pin_project! {
    /// The response future of [`SsoService`](crate::SsoService): the inner service's future for an
    /// authenticated or public request, an endpoint's answer, or a rejection.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Endpoint { future: EndpointFuture },
        Ready { response: Option<Response<Full<Bytes>>> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn endpoint(future: EndpointFuture) -> Self {
        Self {
            kind: Kind::Endpoint { future },
        }
    }

    pub(crate) fn ready(response: Response<Full<Bytes>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let res = ready!(future.poll(cx))?;
                Poll::Ready(Ok(res.map(ResponseBody::inner)))
            }
            KindProj::Endpoint { future } => {
                let res = ready!(future.as_mut().poll(cx));
                Poll::Ready(Ok(res.map(|b| ResponseBody::from_full(b))))
            }
            KindProj::Ready { response } => {
                let res = response.take().unwrap_or_else(|| {
                    crate::error::SsoError::internal("response already taken").into_response()
                });
                Poll::Ready(Ok(res.map(|b| ResponseBody::from_full(b))))
            }
        }
    }
}

//! Cross-origin access for the configured browser origins, on the requests that ask for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::Response;
use futures_util::future::Either;
use tower::util::Oneshot;
use tower::{Layer, Service, ServiceExt};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use super::REQUEST_ID;

/// The methods and headers an upload needs, and `x-request-id` readable by the page, for
/// `origins`; `None` when no origin is configured.
pub fn layer(origins: &[String]) -> Option<BrowserCors> {
    let origins: Arc<[HeaderValue]> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origins.contains(origin)
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static(REQUEST_ID), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    Some(BrowserCors(Arc::new(cors)))
}

/// Applies the CORS layer only to requests with an `Origin`, which every cross-origin request
/// and preflight carries. Others are passed straight through: the router clones each route's
/// layers for every request, and cloning and running the CORS layer cost a twentieth of
/// serving a cached credential, to add headers no client without an origin reads. Leaving
/// them out of those answers cannot mislead a cache, since every answer is `no-store`.
#[derive(Clone)]
pub struct BrowserCors(Arc<CorsLayer>);

impl<S> Layer<S> for BrowserCors {
    type Service = WithOrigin<S>;

    fn layer(&self, inner: S) -> WithOrigin<S> {
        WithOrigin {
            inner,
            cors: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WithOrigin<S> {
    inner: S,
    cors: Arc<CorsLayer>,
}

impl<S> Service<Request> for WithOrigin<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Oneshot<Cors<S>, Request>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if req.headers().contains_key(header::ORIGIN) {
            Either::Left(self.cors.layer(self.inner.clone()).oneshot(req))
        } else {
            Either::Right(self.inner.call(req))
        }
    }
}

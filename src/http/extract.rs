//! Extractors whose every rejection is an [`ApiError`], so malformed input gets the same JSON
//! error shape as everything else.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

use super::error::ApiError;
use crate::app::App;
use crate::auth::Principal;

/// A JSON body. Syntax errors (including invalid UTF-8) are 400 `bad_request`; well-formed JSON
/// of the wrong shape is 422 `invalid_request`; bodies over the route's limit are 413.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
        de.end()
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
        Ok(Json(value))
    }
}

fn json_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_data() {
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::invalid_request(format!("{at}{inner}"))
    } else {
        ApiError::bad_request(format!("malformed JSON: {inner}"))
    }
}

/// A page of a list: `limit` (default `default`, 1 to `max`) and a cursor, which must be an
/// id this server returned. 400 `bad_request` otherwise.
pub fn page(
    limit: Option<u32>,
    cursor: Option<&str>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}"
        )));
    }
    if cursor.is_some_and(|c| uuid::Uuid::try_parse(c).is_err()) {
        return Err(ApiError::bad_request(
            "cursor is not one this server returned",
        ));
    }
    Ok(limit)
}

/// Query parameters, 400 `bad_request` when they do not parse.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

/// An authenticated app user or API-key caller who is not suspended; 401 `unauthorized` or
/// 403 `user_suspended` otherwise.
pub struct User(pub Principal);

impl FromRequestParts<Arc<App>> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let Member(principal) = Member::from_request_parts(parts, app).await?;
        crate::quotas::standing::admit(&app.store, &principal).await?;
        Ok(User(principal))
    }
}

/// An authenticated app user or API-key caller, suspended or not (`GET /v1/me` tells them).
pub struct Member(pub Principal);

impl FromRequestParts<Arc<App>> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(Member(app.auth.authenticate(header).await?))
    }
}

/// The `Authorization` header, for a handler that answers its absence or refusal in a shape
/// of its own.
pub struct Authorization(pub Option<axum::http::HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for Authorization {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Authorization(parts.headers.get(AUTHORIZATION).cloned()))
    }
}

/// The raw body, for routes that verify a signature over its exact bytes; 413 JSON past the
/// route's limit.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(RawBody(Bytes::from_request(req, state).await?))
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

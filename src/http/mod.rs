//! The HTTP edge: the single route table, middleware, extractors and the error type.

mod admin;
mod cors;
pub mod error;
mod extract;
mod limits;
mod notifications;
mod openapi;
mod ops;
mod uploads;
mod users;

pub use extract::bearer;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use error::ApiError;

/// Request bodies on the app-facing and admin routes are small JSON documents.
const BODY_LIMIT: usize = 64 * 1024;
/// Notifications may batch many events.
const NOTIFICATION_BODY_LIMIT: usize = 1024 * 1024;

/// Every route mediagate serves, with its middleware.
pub fn router(app: Arc<App>) -> Router {
    let timeout = Duration::from_secs(app.config.server.request_timeout_seconds);
    let (routes, _) = routes(
        cors::layer(&app.config.server.cors_origins),
        timeout,
        Some(app.clone()),
    );
    routes
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(track))
        // Responses carry credentials and per-user data: no cache may keep them.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    let request_id = req
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let method = method_label(req.method());
                    tracing::info_span!("request", method, route, request_id)
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(CatchPanicLayer::custom(panicked))
        // Outermost, so the id is in the request's span and on every response.
        .layer(middleware::from_fn(request_id))
        .with_state(app)
}

/// Counts each request and its latency by matched route (never the raw path, whose ids would
/// make one series per upload), method and status.
async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status().as_u16();
    crate::telemetry::record_request(route, method, status, started.elapsed());
    response
}

/// A request's method as a metric label or log field: one of the standard methods, or
/// `other`. Any token is a valid method, so the raw text would let every request mint a new
/// series (and a log field of any size).
pub fn method_label(method: &Method) -> &'static str {
    [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ]
    .into_iter()
    .find(|m| *m == method.as_str())
    .unwrap_or("other")
}

/// The route table: each route is registered with its handler's OpenAPI description, so the
/// document cannot leave one out. `cors` wraps the routes browser apps call, and only those.
fn routes(
    cors: Option<cors::BrowserCors>,
    timeout: Duration,
    app: Option<Arc<App>>,
) -> (Router<Arc<App>>, utoipa::openapi::OpenApi) {
    let guarded = |router: Router<Arc<App>>| {
        let router = router
            .layer(middleware::from_fn(move |req, next| {
                within(timeout, req, next)
            }))
            .layer(CatchPanicLayer::custom(panicked));
        // Every route that checks a credential counts its refusals per address.
        match &app {
            Some(app) => router.layer(middleware::from_fn_with_state(
                app.clone(),
                limits::throttle_auth,
            )),
            None => router,
        }
    };
    let (app_facing, app_facing_api) = OpenApiRouter::new()
        .routes(routes!(uploads::create, uploads::list))
        .routes(routes!(uploads::get))
        .routes(routes!(uploads::events))
        .routes(routes!(uploads::refresh_credentials))
        .routes(routes!(uploads::sign))
        .routes(routes!(uploads::sts_token))
        .routes(routes!(users::me))
        .split_for_parts();
    // Set before the CORS layer so that it wraps preflight requests too, which no handler
    // takes; and this router is merged last so the outer fallback does not replace it.
    // Timeouts and panics are answered inside the CORS layer, so a browser can read them.
    let app_facing = guarded(app_facing.method_not_allowed_fallback(method_not_allowed));
    let app_facing = match cors {
        Some(layer) => app_facing.layer(layer),
        None => app_facing,
    };
    let (notifications, notifications_api) = OpenApiRouter::new()
        .routes(routes!(notifications::oss_callback))
        .routes(routes!(notifications::oss_events))
        .routes(routes!(notifications::mps_events))
        .routes(routes!(notifications::processing_report))
        .routes(routes!(notifications::s3_events))
        .split_for_parts();
    let notifications = guarded(notifications)
        .layer(DefaultBodyLimit::max(NOTIFICATION_BODY_LIMIT))
        .layer(middleware::from_fn(notifications::count_rejections));
    let (admin, admin_api) = OpenApiRouter::new()
        .routes(routes!(admin::list_workflows, admin::create_workflow))
        .routes(routes!(
            admin::get_workflow,
            admin::update_workflow,
            admin::delete_workflow
        ))
        .routes(routes!(admin::explain_match))
        .routes(routes!(admin::list_triggers))
        .routes(routes!(admin::retry_trigger))
        .routes(routes!(admin::get_upload))
        .routes(routes!(admin::reprocess_upload))
        .routes(routes!(admin::list_audit))
        .routes(routes!(users::get_user, users::put_user))
        .split_for_parts();
    let (ops, mut api) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .split_for_parts();
    api.merge(admin_api);
    api.merge(app_facing_api);
    api.merge(notifications_api);
    let ops = ops
        .layer(middleware::from_fn(move |req, next| {
            within(timeout, req, next)
        }))
        .layer(CatchPanicLayer::custom(panicked));
    // Only these routes carry the served document, so other requests do not pay for it.
    let ops = match &app {
        Some(app) => ops.layer(axum::Extension(ServedDocument::for_app(app))),
        None => ops,
    };
    let router = guarded(admin)
        .merge(ops)
        .merge(notifications)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(method_not_allowed)
        .merge(app_facing);
    (router, api)
}

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi_json() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc =
            serde_json::to_value(routes(None, Duration::from_secs(30), None).1).unwrap_or_default();
        openapi::with_file_name_rule(&mut doc);
        openapi::with_workflow_sinks(&mut doc);
        openapi::with_sign_operations(&mut doc);
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
}

/// The document this deployment serves: [`openapi_json`] plus the rules its configuration
/// sets, so a request the document allows is one this server accepts.
#[derive(Clone)]
struct ServedDocument(axum::body::Bytes);

impl ServedDocument {
    fn for_app(app: &App) -> Self {
        let mut doc: serde_json::Value = serde_json::from_str(openapi_json()).unwrap_or_default();
        let storage = &app.config.storage;
        openapi::for_deployment(
            &mut doc,
            &storage.bucket,
            app.prefix.as_str(),
            storage.max_upload_bytes,
        );
        ServedDocument(doc.to_string().into())
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal(anyhow::anyhow!("handler panicked")).into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

const REQUEST_ID: &str = "x-request-id";

/// Keeps a well-formed `x-request-id` from the caller (1-128 of `[A-Za-z0-9._:-]`, so it is
/// safe in logs) or makes one, and returns it on the response.
async fn request_id(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        })
        .map(str::to_owned);
    let id = given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"));
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let mut response = next.run(req).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// Answers 503 `timeout` when the handler takes longer than `limit`, so no request hangs a
/// client (or shutdown) on a stuck upstream.
async fn within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(limit).into_response(),
    }
}

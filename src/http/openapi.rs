//! The OpenAPI 3.1 description of the HTTP API, assembled from the handlers' `#[utoipa::path]`
//! annotations as the route table registers them (so a route cannot be served without being
//! described), and the schemas of the bodies that handlers build as JSON values.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

pub use super::error::ErrorBody;
use super::uploads::{CredentialsView, UploadView};
use crate::store::{AuditRow, TriggerRow};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mediagate",
        description = "Upload credentials scoped per user, upload notifications, durable media-workflow triggers. Errors are always `{\"error\":{\"code\",\"message\"}}`; every response carries `x-request-id`."
    ),
    tags(
        (name = "uploads", description = "App users: `Authorization: Bearer <app JWT or API key>`"),
        (name = "notifications", description = "Object stores: authenticated by signature or token"),
        (name = "admin", description = "Operators: `Authorization: Bearer <auth.admin_token>`"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    ),
    modifiers(&BearerSchemes)
)]
pub struct ApiDoc;

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |format: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format(format)
                    .build(),
            )
        };
        components.add_security_scheme("app", bearer("JWT or mgk_ API key"));
        components.add_security_scheme("admin", bearer("admin token"));
    }
}

// Bodies the handlers write with `json!`; their fields are the contract of design.md.

#[derive(Serialize, ToSchema)]
pub struct UploadList {
    uploads: Vec<UploadView>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RefreshedCredentials {
    upload_id: String,
    object_key: String,
    expires_at: String,
    credentials: CredentialsView<'static>,
}

/// The Alibaba OSS mobile SDKs' `OSSAuthCredentialsProvider` format.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StsToken {
    status_code: u16,
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
    expiration: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StsTokenError {
    status_code: u16,
    error_code: String,
    error_message: String,
}

#[derive(Serialize, ToSchema)]
pub struct CallbackAck {
    /// Always `OK`: what OSS expects of a callback.
    #[serde(rename = "Status")]
    status: String,
    upload_id: Option<String>,
    duplicate: bool,
}

#[derive(Serialize, ToSchema)]
pub struct WorkflowList {
    workflows: Vec<super::admin::WorkflowView>,
}

#[derive(Serialize, ToSchema)]
pub struct MatchReport {
    bucket: String,
    key: String,
    media: bool,
    extension: Option<String>,
    workflows: Vec<MatchDecision>,
}

#[derive(Serialize, ToSchema)]
pub struct MatchDecision {
    name: String,
    matched: bool,
    reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct TriggerList {
    triggers: Vec<TriggerRow>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    entries: Vec<AuditRow>,
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ok` or `unavailable`.
    status: String,
    /// `database` and `worker`, each `{"status": "ok"|"failed", "message"?}`.
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

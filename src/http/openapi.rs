//! The OpenAPI 3.1 description of the HTTP API, assembled from the handlers' `#[utoipa::path]`
//! annotations as the route table registers them (so a route cannot be served without being
//! described), and the response bodies the handlers share with it.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::admin::{AuditView, TriggerAdminView};
pub use super::error::ErrorBody;
use super::uploads::{CredentialsView, UploadView};

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

/// Adds what utoipa's attributes cannot state: the file-name rule of `POST /v1/uploads`, made
/// from the same extension lists the server checks, so a name the document allows is one the
/// server accepts and the other way round.
pub fn with_file_name_rule(doc: &mut serde_json::Value) {
    use crate::workflows::{AUDIO_EXTENSIONS, VIDEO_EXTENSIONS};
    let extensions: Vec<String> = VIDEO_EXTENSIONS
        .iter()
        .chain(AUDIO_EXTENSIONS)
        .map(|ext| {
            ext.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    let name = &mut doc["components"]["schemas"]["CreateUpload"]["properties"]["file_name"];
    name["allOf"] = serde_json::json!([
        // No path, policy or control characters.
        {"pattern": r#"^[^/\\*?"\x00-\x1f\x7f-\x9f]*$"#},
        // No whitespace at either end.
        {"pattern": r"^(?:\S(?:.*\S)?)?$"},
        // No `${` (policy-variable syntax).
        {"pattern": r"^(?:[^$]|\$+[^{$])*\$*$"},
        // No extension at all, or a media one (so never `.` or `..`).
        {"pattern": format!(r"^(?:[^.]*|.*\.(?:{}))$", extensions.join("|"))},
    ]);
}

/// Adds the sink-dependent fields of a workflow: `mps` requires `media_workflow_id`, `webhook`
/// requires `webhook_url` and `webhook_secret`, and neither takes the other's fields.
pub fn with_workflow_sinks(doc: &mut serde_json::Value) {
    use serde_json::json;
    let (text, none) = (json!({"type": "string"}), json!({"type": "null"}));
    doc["components"]["schemas"]["WorkflowConfig"]["oneOf"] = json!([
        {
            "properties": {"sink": {"const": "mps"}, "media_workflow_id": text,
                "webhook_url": none, "webhook_secret": none},
            "required": ["media_workflow_id"]
        },
        {
            "properties": {"sink": {"const": "webhook"}, "media_workflow_id": none,
                "webhook_url": text, "webhook_secret": text},
            "required": ["webhook_url", "webhook_secret"]
        }
    ]);
}

/// Adds which fields each signed operation takes (`credentials::presign::Operation::parse`):
/// PutObject and CreateMultipartUpload no `partNumber` and PutObject no `uploadId`; UploadPart
/// both; ListParts and AbortMultipartUpload an `uploadId` only.
pub fn with_sign_operations(doc: &mut serde_json::Value) {
    use serde_json::json;
    let (none, text, number) = (
        json!({"type": "null"}),
        json!({"type": "string"}),
        json!({"type": "integer"}),
    );
    doc["components"]["schemas"]["SignRequest"]["oneOf"] = json!([
        {"properties": {"method": {"const": "PUT"}, "uploadId": none, "partNumber": none}},
        {"properties": {"method": {"const": "PUT"}, "uploadId": text, "partNumber": number},
            "required": ["uploadId", "partNumber"]},
        {"properties": {"method": {"const": "POST"}, "partNumber": none}},
        {"properties": {"method": {"enum": ["GET", "DELETE"]}, "uploadId": text, "partNumber": none},
            "required": ["uploadId"]}
    ]);
}

/// The rules that depend on this deployment's configuration, for the document it serves: a
/// form's size limit, and output prefixes that would overlap the upload prefix in the input
/// bucket (where app users could write into them).
pub fn for_deployment(
    doc: &mut serde_json::Value,
    input_bucket: &str,
    upload_prefix: &str,
    max_form_bytes: u64,
) {
    use serde_json::json;
    let schemas = &mut doc["components"]["schemas"];
    schemas["CreateUpload"]["anyOf"] = json!([
        {"properties": {"mode": {"const": "post_policy"}, "size": {"maximum": max_form_bytes}},
            "required": ["mode"]},
        {"properties": {"mode": {"not": {"const": "post_policy"}}}}
    ]);
    schemas["WorkflowConfig"]["anyOf"] = json!([
        {"properties": {"bucket": {"not": {"const": input_bucket}}}},
        {"properties": {"output_prefix": {"anyOf": [
            {"type": "null"},
            {"not": {"pattern": overlapping(upload_prefix)}}
        ]}}}
    ]);
}

/// A pattern matching the non-empty prefixes that overlap `upload_prefix`: those under it
/// and those it starts with (`crate::config::overlaps_upload_prefix`).
fn overlapping(upload_prefix: &str) -> String {
    let mut alternatives = vec![format!("{}[\\s\\S]+", regex::escape(upload_prefix))];
    alternatives.extend(
        upload_prefix
            .char_indices()
            .map(|(i, c)| regex::escape(&upload_prefix[..i + c.len_utf8()])),
    );
    format!("^(?:{})$", alternatives.join("|"))
}

// Response bodies the handlers write, so the document cannot drift from them; their fields
// are the API contract the README describes.

#[derive(Serialize, ToSchema)]
pub struct UploadList {
    pub uploads: Vec<UploadView>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RefreshedCredentials<'a> {
    pub upload_id: String,
    pub object_key: String,
    pub expires_at: String,
    pub credentials: CredentialsView<'a>,
}

/// The Alibaba OSS mobile SDKs' `OSSAuthCredentialsProvider` format.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StsToken<'a> {
    pub status_code: u16,
    pub access_key_id: &'a str,
    pub access_key_secret: &'a str,
    pub security_token: &'a str,
    pub expiration: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct StsTokenError {
    pub status_code: u16,
    pub error_code: String,
    pub error_message: String,
}

#[derive(Serialize, ToSchema)]
pub struct CallbackAck {
    /// Always `OK`: what OSS expects of a callback.
    #[serde(rename = "Status")]
    pub status: &'static str,
    pub upload_id: Option<String>,
    pub duplicate: bool,
}

#[derive(Serialize, ToSchema)]
pub struct WorkflowList {
    pub workflows: Vec<super::admin::WorkflowView>,
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
    pub triggers: Vec<TriggerAdminView>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ok` or `unavailable`.
    status: String,
    /// `database` and `worker` (with `readyz_upstreams`, also `sts`, `mps` and `store`), each
    /// `{"status": "ok"|"failed", "message"?}`.
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

impl From<&crate::app::Readiness> for Ready {
    fn from(answer: &crate::app::Readiness) -> Ready {
        let checks = answer
            .checks
            .iter()
            .map(|check| {
                let view = match check.failure {
                    None => serde_json::json!({"status": "ok"}),
                    Some(message) => serde_json::json!({"status": "failed", "message": message}),
                };
                (check.name.to_owned(), view)
            })
            .collect::<serde_json::Map<_, _>>();
        Ready {
            status: if answer.ready { "ok" } else { "unavailable" }.to_owned(),
            checks: checks.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The document's overlap pattern and the server's overlap check agree.
        #[test]
        fn overlap_pattern_is_the_overlap_check(
            upload_prefix in "([a-z.+(]{1,4}/){0,2}",
            output in "[a-z.+(/]{1,10}",
        ) {
            let pattern = regex::Regex::new(&overlapping(&upload_prefix)).unwrap();
            prop_assert_eq!(
                pattern.is_match(&output),
                crate::config::overlaps_upload_prefix(&output, &upload_prefix)
            );
        }
    }
}

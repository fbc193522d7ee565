//! How an upload is announced by OSS: the `callback` and `callback-var` parameters a client
//! attaches to its upload, pointing OSS at mediagate's callback route.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::json;

/// The path OSS calls back, under `server.public_url`.
pub const OSS_CALLBACK_PATH: &str = "/v1/notifications/oss-callback";

/// Base64 values for the OSS SDKs' `callback` and `callback-var` parameters.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct OssCallbackParams {
    pub callback: String,
    pub callback_var: String,
}

/// Makes OSS `POST {public_url}/v1/notifications/oss-callback` with the object's bucket, key,
/// ETag, size and MIME type (form-encoded) plus `upload_id` from the custom variable.
pub fn oss_callback_params(public_url: &str, upload_id: &str) -> OssCallbackParams {
    let callback = json!({
        "callbackUrl": format!("{}{OSS_CALLBACK_PATH}", public_url.trim_end_matches('/')),
        "callbackBody": "bucket=${bucket}&object=${object}&etag=${etag}&size=${size}&mimeType=${mimeType}&upload_id=${x:upload_id}",
        "callbackBodyType": "application/x-www-form-urlencoded",
    });
    let vars = json!({ "x:upload_id": upload_id });
    OssCallbackParams {
        callback: B64.encode(callback.to_string()),
        callback_var: B64.encode(vars.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_points_at_our_endpoint_with_the_upload_id() {
        let p = oss_callback_params("https://up.example.com/", "abc");
        let cb: serde_json::Value =
            serde_json::from_slice(&B64.decode(&p.callback).unwrap()).unwrap();
        assert_eq!(
            cb["callbackUrl"],
            "https://up.example.com/v1/notifications/oss-callback"
        );
        assert!(
            cb["callbackBody"]
                .as_str()
                .unwrap()
                .contains("upload_id=${x:upload_id}")
        );
        let vars: serde_json::Value =
            serde_json::from_slice(&B64.decode(&p.callback_var).unwrap()).unwrap();
        assert_eq!(vars["x:upload_id"], "abc");
    }
}

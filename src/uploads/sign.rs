//! An upload in progress: fresh credentials for it, and its requests to the store signed one
//! at a time for clients that must never hold a secret (Uppy's `signRequest`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::callback::oss_callback_params;
use super::{Caller, Upload, UploadError, UploadRefused, Uploads, form_size_range};
use crate::credentials::ObjectKey;
use crate::credentials::forms::{post_form, service_credentials};
use crate::credentials::presign::{Operation, PresignError, presign};
use crate::kinds::{UploadMode, UploadState};
use crate::sts::Credentials;

/// The longest `expiresIn` a sign request may ask for (SigV4's own limit, a week).
pub const MAX_PRESIGN_SECONDS: u64 = 604_800;

/// One request to the store, as a client describes it.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// `PUT`, `POST`, `GET` or `DELETE`.
    pub method: &'static str,
    pub key: String,
    pub multipart_upload_id: Option<String>,
    pub part_number: Option<u32>,
    pub content_type: Option<String>,
    pub expires_in: Option<u64>,
}

/// A request signed for the store.
pub enum Signed {
    /// Send it to `url` with exactly these headers.
    Request {
        url: String,
        headers: BTreeMap<String, String>,
    },
    /// A form upload's one PUT: POST these fields (the file last) to `url`.
    Form {
        url: String,
        fields: BTreeMap<&'static str, String>,
    },
}

impl Uploads<'_> {
    /// Fresh session credentials for the caller's upload `id` while it is still `issued`
    /// (from the cache while cached ones are fresh), within the vend limits.
    pub async fn refresh(
        &self,
        caller: &Caller<'_>,
        id: &str,
    ) -> Result<(Upload, Arc<Credentials>), UploadError> {
        let owner = &caller.principal.segment;
        self.limits.vend(caller.ip, owner.as_str())?;
        let upload = Upload::find_owned(self.store, owner, id).await?;
        if upload.state != UploadState::Issued {
            return Err(UploadError::InvalidState(format!(
                "upload is {}; credentials are only issued before the upload completes",
                upload.state
            )));
        }
        let scope = self.scope(&upload, owner);
        let credentials = self.vendor.credentials(owner, &scope).await?;
        self.store.touch_vended(&upload.id).await?;
        Ok((upload, credentials))
    }

    /// Signs one request for the caller's upload `id`, for its own key only: any request of
    /// an issued presigned upload, and the one PUT of a form upload (answered with its form).
    pub async fn sign(
        &self,
        caller: &Caller<'_>,
        id: &str,
        request: SignRequest,
    ) -> Result<Signed, UploadError> {
        let owner = &caller.principal.segment;
        let upload = Upload::find_owned(self.store, owner, id).await?;
        if request.key != upload.object_key {
            return Err(UploadError::Forbidden(
                "requests are signed for this upload's own key only".into(),
            ));
        }
        let op = Operation::parse(
            request.method,
            request.multipart_upload_id.as_deref(),
            request.part_number,
        )
        .map_err(UploadRefused::Invalid)?;
        let form = upload.mode == UploadMode::PostPolicy && op == Operation::PutObject;
        if upload.state != UploadState::Issued || !(upload.mode == UploadMode::Presigned || form) {
            return Err(UploadError::InvalidState(format!(
                "upload is a {} upload, {}; requests are signed for issued presigned uploads (and the one PUT of a post_policy upload) only",
                upload.mode, upload.state
            )));
        }
        if form {
            return self.form(caller, &upload).await;
        }
        if let Some(t) = &request.content_type
            && !super::is_content_type(t)
        {
            return Err(UploadRefused::Invalid(
                "contentType must be at most 255 printable ASCII characters".into(),
            )
            .into());
        }
        let expires_in = match request.expires_in {
            Some(s) if !(1..=MAX_PRESIGN_SECONDS).contains(&s) => {
                return Err(UploadRefused::Invalid(format!(
                    "expiresIn must be 1-{MAX_PRESIGN_SECONDS} seconds"
                ))
                .into());
            }
            asked => asked.unwrap_or(u64::MAX),
        };
        // Always the upload's own session credentials, whatever signs forms: their policy
        // grants no reads, so a header the store acts on unsigned (`x-amz-copy-source`) cannot
        // copy another object in. Signing every part must not mean an STS call per part: only
        // what the cache cannot answer counts against the vend limits.
        let scope = self.scope(&upload, owner);
        let creds = self
            .vendor
            .credentials_admitted(owner, &scope, || {
                self.limits.vend(caller.ip, owner.as_str())
            })
            .await?;
        let file_type = request
            .content_type
            .as_deref()
            .or(upload.content_type.as_deref());
        let remaining = (creds.expiration - chrono::Utc::now()).num_seconds().max(1) as u64;
        let expires_in = expires_in
            .min(self.storage.presign_expires_seconds)
            .min(remaining);
        let signed = presign(
            self.storage,
            &creds,
            &upload.object_key,
            &op,
            op.content_type(file_type),
            Duration::from_secs(expires_in),
            SystemTime::now(),
        )
        .map_err(|e| match e {
            PresignError::Unsignable(e) => {
                UploadError::Refused(UploadRefused::Invalid(e.to_string()))
            }
            PresignError::Signer(e) => UploadError::Store(anyhow::anyhow!(e)),
        })?;
        if let Some(multipart) = op.upload_id() {
            self.store
                .note_multipart_upload(&upload.id, multipart)
                .await?;
        }
        Ok(Signed::Request {
            url: signed.url,
            headers: signed.headers,
        })
    }

    /// A form upload's form, signed as when it was issued.
    async fn form(&self, caller: &Caller<'_>, upload: &Upload) -> Result<Signed, UploadError> {
        let owner = &caller.principal.segment;
        let creds = if self.service_forms() {
            Arc::new(service_credentials(self.sts))
        } else {
            self.vendor
                .credentials(owner, &self.scope(upload, owner))
                .await?
        };
        let callback = oss_callback_params(self.public_url, &upload.id);
        let post = post_form(
            self.storage,
            &ObjectKey::issued(upload.object_key.clone()),
            &upload.id,
            &creds,
            form_size_range(upload.size, self.storage.max_upload_bytes),
            &callback.callback,
        );
        Ok(Signed::Form {
            url: post.url,
            fields: post.fields,
        })
    }
}

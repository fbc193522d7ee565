//! Issuing an upload: the key it will have, the credentials (or the signed form) its client
//! delivers it with, and its record as `issued`, written before the client hears of it.

use std::sync::Arc;

use super::forms::{PostForm, post_form, service_credentials};
use super::{KeyPrefix, ObjectKey, Scope, UserSegment, Vendor};
use crate::storage::{PostSigning, Provider, StorageConfig};
use crate::store::{Store, UploadRow, now_millis};
use crate::sts::{Credentials, StsConfig, StsError};
use crate::uploads::callback::{OssCallbackParams, oss_callback_params};
use crate::uploads::{UploadMode, UploadRefused, UploadRequest, UploadState};

/// What issuing needs: where uploads go, who vends for them, where they are recorded.
pub struct Issuer<'a> {
    pub store: &'a Store,
    pub vendor: &'a Vendor,
    pub storage: &'a StorageConfig,
    pub prefix: &'a KeyPrefix,
    /// The keys that sign forms with `storage.post_signing = "service"`.
    pub sts: &'a StsConfig,
    /// Where OSS calls back.
    pub public_url: &'a str,
}

/// An upload just issued.
pub struct Issued {
    pub upload_id: String,
    pub key: ObjectKey,
    /// The credentials it was issued with (for a form, those that signed it).
    pub credentials: Arc<Credentials>,
    pub delivery: Delivery,
}

/// How the client delivers the object.
pub enum Delivery {
    /// With the credentials and an SDK; for OSS, with the callback parameters to attach (S3
    /// stores announce objects by their own event notifications).
    Sdk { callback: Option<OssCallbackParams> },
    /// With requests the server signs one at a time (`POST /v1/uploads/{id}/sign`).
    Presigned,
    /// With a signed browser form; the secret never leaves the server.
    Form(PostForm),
}

/// Why an upload could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Refused(#[from] UploadRefused),
    #[error(transparent)]
    Sts(#[from] StsError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl Issuer<'_> {
    /// Issues `request` for the caller `user` (authenticated as `subject`): builds its key,
    /// vends credentials scoped to the user's prefix or the one object (or, for a form signed
    /// with the service keys, vends nothing), records the upload, and says how to deliver it.
    pub async fn issue(
        &self,
        user: &UserSegment,
        subject: &str,
        request: UploadRequest,
    ) -> Result<Issued, IssueError> {
        let storage = self.storage;
        let upload_id = uuid::Uuid::now_v7().to_string();
        let key = ObjectKey::build(self.prefix, user, &upload_id, &request.file)
            .map_err(UploadRefused::Invalid)?;
        let scope = Scope::for_upload(storage.credential_scope, self.prefix, user, &key);
        // Only a form may be signed with the service keys: its policy pins the key and size.
        // A presigned request is signed with the upload's session credentials, whose policy
        // allows no reads, so headers a store acts on unsigned (a copy source) cannot turn it
        // into a read of someone else's object.
        let service_form =
            request.mode == UploadMode::PostPolicy && storage.post_signing == PostSigning::Service;
        let credentials = if service_form {
            Arc::new(service_credentials(self.sts))
        } else {
            self.vendor.credentials(user, &scope).await?
        };
        let now = now_millis();
        self.store
            .insert_upload(UploadRow {
                id: upload_id.clone(),
                owner: user.as_str().to_owned(),
                subject: subject.to_owned(),
                bucket: storage.bucket.clone(),
                object_key: key.as_str().to_owned(),
                file_name: request.file.as_str().to_owned(),
                size: request.size,
                content_type: request.content_type.clone(),
                mode: request.mode,
                media: serde_json::to_string(&request.media).map_err(anyhow::Error::from)?,
                state: UploadState::Issued,
                state_reason: None,
                created_at: now,
                uploaded_at: None,
                updated_at: now,
            })
            .await?;
        let callback = oss_callback_params(self.public_url, &upload_id);
        let delivery = match request.mode {
            UploadMode::PostPolicy => Delivery::Form(post_form(
                storage,
                &key,
                &upload_id,
                &credentials,
                request.form_size_range(storage.max_upload_bytes),
                &callback.callback,
            )),
            UploadMode::Presigned => Delivery::Presigned,
            UploadMode::Sts | UploadMode::External => Delivery::Sdk {
                callback: (storage.provider == Provider::Aliyun).then_some(callback),
            },
        };
        Ok(Issued {
            upload_id,
            key,
            credentials,
            delivery,
        })
    }
}

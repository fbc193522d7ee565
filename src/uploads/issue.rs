//! Issuing an upload: the key it will have, the credentials (or the signed form) its client
//! delivers it with, and its record as `issued`, written before the client hears of it.

use std::sync::Arc;

use super::callback::{OssCallbackParams, oss_callback_params};
use super::{Caller, NewUpload, Upload, UploadError, UploadRefused, UploadRequest, Uploads};
use crate::credentials::forms::{PostForm, post_form, service_credentials};
use crate::credentials::{ObjectKey, Scope};
use crate::kinds::{UploadMode, UploadState};
use crate::quotas::standing::reserve;
use crate::storage::{Provider, StorageConfig};
use crate::store::now_millis;
use crate::sts::Credentials;

/// An upload just issued.
pub struct Issued<'a> {
    /// The store it goes to: provider, bucket, region, endpoint and addressing.
    pub storage: &'a StorageConfig,
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

impl<'a> Uploads<'a> {
    /// Issues the upload `new` asks for, once the caller is within the vend limits and the
    /// request is checked: builds its key,
    /// vends credentials scoped to the user's prefix or the one object (or, for a form signed
    /// with the service keys, vends nothing), records the upload, and says how to deliver it.
    pub async fn issue(
        &self,
        caller: &Caller<'_>,
        new: NewUpload,
    ) -> Result<Issued<'a>, UploadError> {
        let (user, subject) = (&caller.principal.segment, &caller.principal.subject);
        self.limits.vend(caller.ip, user.as_str())?;
        let request = UploadRequest::parse(new, self.storage.max_upload_bytes)?;
        let storage = self.storage;
        let upload_id = uuid::Uuid::now_v7().to_string();
        let key = ObjectKey::build(self.prefix, user, &upload_id, &request.file)
            .map_err(UploadRefused::Invalid)?;
        let scope = Scope::for_upload(storage.credential_scope, self.prefix, user, &key);
        let now = now_millis();
        let upload = Upload {
            id: upload_id.clone(),
            owner: user.as_str().to_owned(),
            subject: subject.clone(),
            bucket: storage.bucket.clone(),
            object_key: key.as_str().to_owned(),
            file_name: request.file.as_str().to_owned(),
            size: request.size,
            content_type: request.content_type.clone(),
            mode: request.mode,
            media: request.media.clone(),
            state: UploadState::Issued,
            reason: None,
            created_at: now,
            uploaded_at: None,
            updated_at: now,
        };
        // With plans, the upload is recorded (and counted) before anything is vended: a
        // refused request costs no STS call, and instances sharing the database hand out the
        // quota once.
        let reserved = reserve(
            self.store,
            self.quotas,
            caller.principal,
            key.as_str(),
            request.size.and_then(|s| u64::try_from(s).ok()),
            self.clock.now_millis(),
        )
        .await?;
        let row = upload.to_row()?;
        let recorded = reserved.is_some();
        if let Some(r) = reserved {
            r.held.insert_upload(&row, r.bytes).await?;
        }
        // Only a form may be signed with the service keys: its policy pins the key and size.
        // A presigned request is signed with the upload's session credentials, whose policy
        // allows no reads, so headers a store acts on unsigned (a copy source) cannot turn it
        // into a read of someone else's object.
        let service_form = request.mode == UploadMode::PostPolicy && self.service_forms();
        let credentials = if service_form {
            Arc::new(service_credentials(self.sts))
        } else {
            match self.vendor.credentials(user, &scope).await {
                Ok(c) => c,
                Err(e) => {
                    // Nothing was handed out: a reserved upload gives its reservation back.
                    if recorded {
                        self.store.drop_issued_upload(&upload_id).await?;
                    }
                    return Err(e.into());
                }
            }
        };
        if !recorded {
            self.store.insert_upload(row).await?;
        }
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
            storage,
            upload_id,
            key,
            credentials,
            delivery,
        })
    }
}

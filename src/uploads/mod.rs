//! The upload, mediagate's central object: its type, the rules that decide its state (the
//! size rule, the state its triggers give it) and its use cases: issuing it, refreshing its
//! credentials, signing its requests, finding it for its owner. Notification intake,
//! verification and reconciliation (in `processing`) call these rules; the upload never
//! calls them back.

pub mod callback;
pub mod issue;
pub mod sign;
pub mod watch;

use crate::auth::Principal;
use crate::credentials::limits::RateLimited;
use crate::credentials::{KeyPrefix, ObjectKey, Scope, UserSegment, VendError, Vendor};
use std::sync::Arc;

use crate::kinds::{ProcessingState, Reason, TriggerSink, TriggerState, UploadMode, UploadState};
use crate::media::{MediaAttributes, MediaAttributesInput};
use crate::storage::{CredentialScope, FileName, PostSigning, StorageConfig};
use crate::store::{EventRow, OutputRow, ReportRow, RunRow, Store, TriggerRow, UploadRow};
use crate::sts::{Credentials, StsConfig, StsError};
use crate::workflows::{MediaCheck, media_check};

/// An upload as mediagate knows it: read from its row once, typed from then on.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: String,
    /// The user segment of its owner (empty for an object no user's prefix holds).
    pub owner: String,
    /// Who asked for it, as the token named them (empty when the store announced it).
    pub subject: String,
    pub bucket: String,
    pub object_key: String,
    pub file_name: String,
    /// Declared by the client until the object is verified, the store's size after.
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub mode: UploadMode,
    pub media: MediaAttributes,
    pub state: UploadState,
    pub reason: Option<Reason>,
    pub created_at: i64,
    pub uploaded_at: Option<i64>,
    pub updated_at: i64,
}

impl Upload {
    /// The upload a row holds. Media attributes are checked when written, so a row whose
    /// attributes no longer parse (written by hand) shows none rather than failing its reads.
    pub fn from_row(row: UploadRow) -> Upload {
        let media = serde_json::from_str(&row.media).unwrap_or_else(|e| {
            tracing::warn!(upload = %row.id, error = %e, "stored media attributes unreadable");
            MediaAttributes::default()
        });
        Upload {
            id: row.id,
            owner: row.owner,
            subject: row.subject,
            bucket: row.bucket,
            object_key: row.object_key,
            file_name: row.file_name,
            size: row.size,
            content_type: row.content_type,
            mode: row.mode,
            media,
            state: row.state,
            reason: row.state_reason,
            created_at: row.created_at,
            uploaded_at: row.uploaded_at,
            updated_at: row.updated_at,
        }
    }

    /// The row that stores it.
    pub fn to_row(&self) -> anyhow::Result<UploadRow> {
        Ok(UploadRow {
            id: self.id.clone(),
            owner: self.owner.clone(),
            subject: self.subject.clone(),
            bucket: self.bucket.clone(),
            object_key: self.object_key.clone(),
            file_name: self.file_name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            mode: self.mode,
            media: serde_json::to_string(&self.media)?,
            state: self.state,
            state_reason: self.reason,
            created_at: self.created_at,
            uploaded_at: self.uploaded_at,
            updated_at: self.updated_at,
        })
    }

    /// The upload `id`, whoever owns it.
    pub async fn find(store: &Store, id: &str) -> anyhow::Result<Option<Upload>> {
        if uuid::Uuid::try_parse(id).is_err() {
            return Ok(None);
        }
        Ok(store.get_upload(id).await?.map(Upload::from_row))
    }

    /// The upload `id` if it belongs to `owner`; anyone else finds nothing, so upload ids
    /// cannot be probed.
    pub async fn find_owned(
        store: &Store,
        owner: &UserSegment,
        id: &str,
    ) -> Result<Upload, UploadError> {
        match Upload::find(store, id).await? {
            Some(u) if u.owner == owner.as_str() => Ok(u),
            _ => Err(UploadError::NotFound),
        }
    }

    /// The caller's upload `id` and its triggers as its owner sees them: verification is the
    /// upload's own state to app users (operators see its attempts), so its jobs are left out.
    pub async fn with_triggers(
        store: &Store,
        owner: &UserSegment,
        id: &str,
    ) -> Result<(Upload, Vec<TriggerRow>), UploadError> {
        let upload = Upload::find_owned(store, owner, id).await?;
        let mut triggers = store.triggers_for_upload(&upload.id).await?;
        triggers.retain(|t| t.sink != TriggerSink::Verify);
        Ok((upload, triggers))
    }

    /// The upload `id` as operators see it: with its verification jobs, its triggers and
    /// every notification recorded for its object (repeats included).
    pub async fn history(store: &Store, id: &str) -> anyhow::Result<Option<History>> {
        let Some(upload) = Upload::find(store, id).await? else {
            return Ok(None);
        };
        let (verification, triggers) = store
            .triggers_for_upload(&upload.id)
            .await?
            .into_iter()
            .partition(|t| t.sink == TriggerSink::Verify);
        let events = store
            .events_for_object(&upload.bucket, &upload.object_key)
            .await?;
        let runs = store.runs_for_upload(&upload.id).await?;
        let outputs = store.outputs_for_upload(&upload.id).await?;
        let reports = store.reports_for_upload(&upload.id).await?;
        let told = store.events_for_upload(&upload.id).await?;
        Ok(Some(History {
            told,
            upload,
            verification,
            triggers,
            events,
            runs,
            reports,
            outputs,
        }))
    }

    /// The owner's uploads, newest first, after the upload `cursor` when given.
    pub async fn list(
        store: &Store,
        owner: &UserSegment,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Vec<Upload>> {
        let rows = store.list_uploads(owner.as_str(), limit, cursor).await?;
        Ok(rows.into_iter().map(Upload::from_row).collect())
    }
}

/// An upload with everything recorded about it.
pub struct History {
    pub upload: Upload,
    pub verification: Vec<TriggerRow>,
    pub triggers: Vec<TriggerRow>,
    pub events: Vec<EventRow>,
    /// The processor runs its triggers started, with every lookup's last result.
    pub runs: Vec<RunRow>,
    /// What webhook processors reported, in the order received.
    pub reports: Vec<ReportRow>,
    pub outputs: Vec<OutputRow>,
    /// The lifecycle events queued for the app's backend (`[events]`), with their deliveries.
    pub told: Vec<TriggerRow>,
}

/// `[outputs]`: how app users are handed their outputs.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    /// `MEDIAGATE__OUTPUTS__URL_EXPIRES_SECONDS`, default 3600: how long the signed GET URL
    /// of an output in an upload's view is valid, from when the view is read.
    pub url_expires_seconds: u64,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        OutputsConfig {
            url_expires_seconds: 3600,
        }
    }
}

/// An output with a URL that fetches exactly it, signed when the view is read.
#[derive(Debug, Clone)]
pub struct OutputLink {
    pub output: OutputRow,
    pub url: String,
    pub url_expires_at: i64,
}

/// What the upload use cases need, borrowed from the app: where uploads go, who vends for
/// them, where they are recorded, and the limits on vending.
pub struct Uploads<'a> {
    pub store: &'a Store,
    pub vendor: &'a Vendor,
    pub storage: &'a StorageConfig,
    pub prefix: &'a KeyPrefix,
    /// The keys that sign forms with `storage.post_signing = "service"`.
    pub sts: &'a StsConfig,
    /// Where OSS calls back.
    pub public_url: &'a str,
    pub limits: &'a crate::credentials::limits::VendLimits,
    pub outputs: &'a OutputsConfig,
    /// Plans: what a user may upload.
    pub quotas: &'a crate::quotas::QuotasConfig,
    pub clock: &'a dyn crate::clock::Clock,
}

impl Uploads<'_> {
    /// The scope of `upload`'s session credentials: its owner's prefix, or the one object.
    fn scope(&self, upload: &Upload, owner: &UserSegment) -> Scope {
        let key = ObjectKey::issued(upload.object_key.clone());
        Scope::for_upload(self.storage.credential_scope, self.prefix, owner, &key)
    }

    /// Credentials for the caller's whole prefix (the OSS mobile SDKs' token endpoint), unless
    /// this deployment scopes credentials to one upload.
    pub async fn prefix_credentials(
        &self,
        caller: &Caller<'_>,
    ) -> Result<Arc<Credentials>, UploadError> {
        let owner = &caller.principal.segment;
        self.limits.vend(caller.ip, owner.as_str())?;
        if self.storage.credential_scope == CredentialScope::Upload {
            return Err(UploadError::Forbidden(
                "credentials for a whole prefix are disabled (storage.credential_scope = \"upload\"); use POST /v1/uploads".into(),
            ));
        }
        let scope = Scope::user(self.prefix, owner);
        Ok(self.vendor.credentials(owner, &scope).await?)
    }

    /// The caller's upload `id` as its owner sees it: its triggers (verification left out)
    /// and its outputs, each with a GET URL signed now with the service keys.
    pub async fn view(
        &self,
        owner: &UserSegment,
        id: &str,
    ) -> Result<(Upload, Vec<TriggerRow>, Vec<OutputLink>), UploadError> {
        let (upload, triggers) = Upload::with_triggers(self.store, owner, id).await?;
        let outputs = self.store.outputs_for_upload(&upload.id).await?;
        Ok((upload, triggers, self.links(outputs)))
    }

    /// The owner's uploads, newest first, after the upload `cursor` when given, each with its
    /// outputs and their signed URLs.
    pub async fn list(
        &self,
        owner: &UserSegment,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Vec<(Upload, Vec<OutputLink>)>> {
        let uploads = Upload::list(self.store, owner, limit, cursor).await?;
        // Only a ready upload has outputs to show: one query for those of the page.
        let ready: Vec<&str> = uploads
            .iter()
            .filter(|u| u.state == UploadState::Ready)
            .map(|u| u.id.as_str())
            .collect();
        let mut outputs = self.store.outputs_for_uploads(&ready).await?;
        let mut listed = Vec::new();
        for upload in uploads {
            let (mine, rest): (Vec<OutputRow>, Vec<OutputRow>) = outputs
                .into_iter()
                .partition(|o| o.upload_id.as_deref() == Some(upload.id.as_str()));
            outputs = rest;
            listed.push((upload, self.links(mine)));
        }
        Ok(listed)
    }

    /// `outputs` with their signed URLs; one that cannot be signed is left out (and logged).
    pub fn links(&self, outputs: Vec<OutputRow>) -> Vec<OutputLink> {
        let expires_in = std::time::Duration::from_secs(self.outputs.url_expires_seconds);
        let now = self.clock.now();
        let keys = self.service_keys();
        outputs
            .into_iter()
            .filter_map(|output| {
                let url = crate::credentials::presign::get_url(
                    self.storage,
                    &keys,
                    &output.bucket,
                    &output.object_key,
                    expires_in,
                    now.into(),
                );
                match url {
                    Ok(url) => Some(OutputLink {
                        url,
                        url_expires_at: now.timestamp_millis()
                            + i64::try_from(expires_in.as_millis()).unwrap_or(i64::MAX),
                        output,
                    }),
                    Err(e) => {
                        tracing::warn!(key = ?output.object_key, error = %e, "an output's URL could not be signed");
                        None
                    }
                }
            })
            .collect()
    }

    /// The keys that read the store: `storage.access_key_*`, or else the STS keys.
    fn service_keys(&self) -> Credentials {
        let mut keys = crate::credentials::forms::service_credentials(self.sts);
        if let (Some(id), Some(secret)) =
            (&self.storage.access_key_id, &self.storage.access_key_secret)
        {
            keys.access_key_id = id.clone();
            keys.access_key_secret = secret.clone();
        }
        keys
    }

    /// Whether forms are signed with the service keys rather than session credentials.
    fn service_forms(&self) -> bool {
        self.storage.post_signing == PostSigning::Service
    }
}

/// Why an upload use case did not go through.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Refused(#[from] UploadRefused),
    /// No such upload, or another user's.
    #[error("not found")]
    NotFound,
    /// A request this upload may never make.
    #[error("{0}")]
    Forbidden(String),
    /// A request this upload may not make in its state or mode.
    #[error("{0}")]
    InvalidState(String),
    #[error("{}", .0.message)]
    Limited(RateLimited),
    /// Suspended, over a plan's limit, or on a plan that is not configured.
    #[error(transparent)]
    Standing(#[from] crate::quotas::Refusal),
    #[error(transparent)]
    Sts(#[from] StsError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<crate::quotas::standing::StandingError> for UploadError {
    fn from(e: crate::quotas::standing::StandingError) -> Self {
        match e {
            crate::quotas::standing::StandingError::Refused(r) => UploadError::Standing(r),
            crate::quotas::standing::StandingError::Store(e) => UploadError::Store(e),
        }
    }
}

impl From<VendError> for UploadError {
    fn from(e: VendError) -> Self {
        match e {
            VendError::Sts(e) => UploadError::Sts(e),
            VendError::Limited(r) => UploadError::Limited(r),
        }
    }
}

impl From<RateLimited> for UploadError {
    fn from(r: RateLimited) -> Self {
        UploadError::Limited(r)
    }
}

/// The caller of an upload use case: who, and from where (vend limits count both).
pub struct Caller<'a> {
    pub principal: &'a Principal,
    pub ip: std::net::IpAddr,
}

/// Why an upload request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    /// A file name, size or content type that cannot be accepted.
    #[error("{0}")]
    Invalid(String),
    /// An extension no media workflow takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Media attributes outside AddMedia's limits.
    #[error("{0}")]
    InvalidMediaAttributes(String),
}

/// A request for an upload as a caller sent it, unchecked.
#[derive(Debug, Clone, Default)]
pub struct NewUpload {
    pub file_name: String,
    pub size: Option<u64>,
    pub content_type: Option<String>,
    pub mode: UploadMode,
    pub media: Option<MediaAttributesInput>,
}

/// A checked request for an upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub file: FileName,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub mode: UploadMode,
    pub media: MediaAttributes,
}

impl UploadRequest {
    /// Checks what a caller sent: a media file name, media attributes AddMedia accepts, a
    /// sane content type, and for forms a size within `max_form_bytes` (STS uploads may be
    /// multipart and far larger).
    pub fn parse(new: NewUpload, max_form_bytes: u64) -> Result<UploadRequest, UploadRefused> {
        let NewUpload {
            file_name,
            size,
            content_type,
            mode,
            media,
        } = new;
        if mode == UploadMode::External {
            return Err(UploadRefused::Invalid(
                "mode must be sts, post_policy or presigned".into(),
            ));
        }
        let file = FileName::parse(&file_name).map_err(UploadRefused::Invalid)?;
        match media_check(file.as_str()) {
            MediaCheck::NoExtension | MediaCheck::Media(_) => {}
            MediaCheck::NotMedia(ext) => {
                return Err(UploadRefused::UnsupportedMediaType(format!(
                    "extension {ext:?} is not a video or audio extension media workflows accept"
                )));
            }
            MediaCheck::NotAFile => {
                return Err(UploadRefused::Invalid("file_name is not a file".into()));
            }
        }
        let media = MediaAttributes::parse(media.unwrap_or_default())
            .map_err(|problems| UploadRefused::InvalidMediaAttributes(problems.join("; ")))?;
        if let Some(ct) = &content_type
            && !is_content_type(ct)
        {
            return Err(UploadRefused::Invalid(
                "content_type must be at most 255 printable ASCII characters".into(),
            ));
        }
        // No store takes more in one object (S3's limit), and sums of sizes stay far from
        // overflowing.
        const MAX_OBJECT_BYTES: u64 = 5 << 40;
        if size.is_some_and(|s| s > MAX_OBJECT_BYTES) {
            return Err(UploadRefused::Invalid(format!(
                "size is over the largest object a store takes ({MAX_OBJECT_BYTES} bytes, 5 TiB)"
            )));
        }
        let size_i64 = size
            .map(i64::try_from)
            .transpose()
            .map_err(|_| UploadRefused::Invalid("size is too large".into()))?;
        if mode == UploadMode::PostPolicy && size.is_some_and(|s| s > max_form_bytes) {
            return Err(UploadRefused::Invalid(format!(
                "size exceeds the largest upload allowed ({max_form_bytes} bytes)"
            )));
        }
        Ok(UploadRequest {
            file,
            size: size_i64,
            content_type,
            mode,
            media,
        })
    }

    /// The `content-length-range` a form for this upload signs: exactly the declared size,
    /// or 1 up to `max_form_bytes`.
    pub fn form_size_range(&self, max_form_bytes: u64) -> (u64, u64) {
        form_size_range(self.size, max_form_bytes)
    }
}

/// The `content-length-range` of a form for an upload that declared `size` (or none): the
/// range signed into the form, and the one its object is checked against when announced.
pub fn form_size_range(declared: Option<i64>, max_form_bytes: u64) -> (u64, u64) {
    match declared.and_then(|s| u64::try_from(s).ok()) {
        Some(s) => (s, s),
        None => (1, max_form_bytes),
    }
}

/// A Content-Type a client may name: at most 255 printable ASCII characters. MIME types are
/// printable ASCII (RFC 6838), so bytes and characters agree and the API document can state
/// the rule exactly; it also keeps line breaks out of headers and strings to sign.
pub fn is_content_type(value: &str) -> bool {
    value.len() <= 255 && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Where an object's size comes from, which decides how much of the size rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSource {
    /// The store's HEAD: every rule applies.
    Store,
    /// A notification's body, unverified: only a form's signed range is held against it,
    /// since stores should refuse a form outside it but not all do (Ceph RGW 16 does not
    /// check the range of forms signed with session credentials).
    Notification,
}

/// The size rule, the one place it is written: an object is never empty, a form's object is
/// within the range its policy signed, and an upload that declared its size gets exactly
/// that. `mode` and `declared` are the upload's (none for an object nobody issued). Returns
/// the reason users see and the detail operators see.
pub fn size_problem(
    size: i64,
    mode: Option<UploadMode>,
    declared: Option<i64>,
    max_form_bytes: u64,
    source: SizeSource,
) -> Option<(Reason, String)> {
    // A negative size announced by a sender is below any range.
    let size = u64::try_from(size).unwrap_or(0);
    if source == SizeSource::Store && size == 0 {
        return Some((Reason::Empty, "the object is empty".into()));
    }
    if mode == Some(UploadMode::PostPolicy) {
        let (low, high) = form_size_range(declared, max_form_bytes);
        if size > high {
            return Some((
                Reason::TooLarge,
                format!("object size {size} is over the signed form's range {low}..={high}"),
            ));
        }
        if size < low {
            return Some((
                Reason::SizeMismatch,
                format!("object size {size} is under the signed form's range {low}..={high}"),
            ));
        }
    }
    match declared {
        Some(declared) if source == SizeSource::Store && u64::try_from(declared) != Ok(size) => {
            Some((
                Reason::SizeMismatch,
                format!("object size {size} differs from the declared {declared}"),
            ))
        }
        _ => None,
    }
}

/// One trigger of an announced upload as the state rule reads it: its delivery, and its
/// processing once delivered (with the reason when it failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerProgress {
    pub delivery: TriggerState,
    pub processing: ProcessingState,
    pub reason: Option<Reason>,
}

/// The state an announced upload's triggers give it, and the reason when processing failed:
/// `failed` when one is dead; `uploaded` while any is on its way; once all are delivered,
/// `failed` when a followed outcome failed or timed out, `processing` while one is open,
/// `ready` when every followed one succeeded, and `triggered` when none is followed. The
/// store applies this rule in SQL whenever a trigger or an outcome changes; a test holds the
/// two together.
pub fn state_after_triggers(
    triggers: impl IntoIterator<Item = TriggerProgress>,
) -> (UploadState, Option<Reason>) {
    let triggers: Vec<TriggerProgress> = triggers.into_iter().collect();
    if triggers.iter().any(|t| t.delivery == TriggerState::Dead) {
        return (UploadState::Failed, None);
    }
    if triggers
        .iter()
        .any(|t| t.delivery != TriggerState::Delivered)
    {
        return (UploadState::Uploaded, None);
    }
    let processing =
        |states: &[ProcessingState]| triggers.iter().find(|t| states.contains(&t.processing));
    if processing(&[ProcessingState::Failed, ProcessingState::TimedOut]).is_some() {
        // One reason whatever the order: the least, as the stored rule picks it.
        let reason = triggers
            .iter()
            .filter(|t| {
                matches!(
                    t.processing,
                    ProcessingState::Failed | ProcessingState::TimedOut
                )
            })
            .filter_map(|t| t.reason)
            .min_by_key(|r| r.as_str());
        return (UploadState::Failed, reason);
    }
    if processing(&[ProcessingState::Pending, ProcessingState::Running]).is_some() {
        return (UploadState::Processing, None);
    }
    if processing(&[ProcessingState::Succeeded]).is_some() {
        return (UploadState::Ready, None);
    }
    (UploadState::Triggered, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        name: &str,
        size: Option<u64>,
        mode: UploadMode,
    ) -> Result<UploadRequest, UploadRefused> {
        let new = NewUpload {
            file_name: name.into(),
            size,
            mode,
            ..Default::default()
        };
        UploadRequest::parse(new, 100)
    }

    #[test]
    fn requests_are_checked_before_anything_is_vended() {
        assert!(parse("trip.MP4", None, UploadMode::Sts).is_ok());
        assert!(parse("README", Some(5), UploadMode::PostPolicy).is_ok());
        assert!(matches!(
            parse("notes.txt", None, UploadMode::Sts),
            Err(UploadRefused::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse("", None, UploadMode::Sts),
            Err(UploadRefused::Invalid(_))
        ));
        assert!(matches!(
            parse("a.mp4", Some(101), UploadMode::PostPolicy),
            Err(UploadRefused::Invalid(_))
        ));
        // STS uploads may be far larger than a form.
        assert!(parse("a.mp4", Some(1 << 40), UploadMode::Sts).is_ok());
        assert!(matches!(
            parse("a.mp4", Some(u64::MAX), UploadMode::Sts),
            Err(UploadRefused::Invalid(_))
        ));
        assert!(matches!(
            parse("a.mp4", None, UploadMode::External),
            Err(UploadRefused::Invalid(_))
        ));
        let bad_type = UploadRequest::parse(
            NewUpload {
                file_name: "a.mp4".into(),
                content_type: Some("video/mp4\r\nx: y".into()),
                ..Default::default()
            },
            100,
        );
        assert!(matches!(bad_type, Err(UploadRefused::Invalid(_))));
        let long_title = MediaAttributesInput {
            title: Some("t".repeat(200)),
            ..Default::default()
        };
        assert!(matches!(
            UploadRequest::parse(
                NewUpload {
                    file_name: "a.mp4".into(),
                    media: Some(long_title),
                    ..Default::default()
                },
                100
            ),
            Err(UploadRefused::InvalidMediaAttributes(_))
        ));
        let form = parse("a.mp4", Some(7), UploadMode::PostPolicy).unwrap();
        assert_eq!(form.form_size_range(100), (7, 7));
        let open = parse("a.mp4", None, UploadMode::PostPolicy).unwrap();
        assert_eq!(open.form_size_range(100), (1, 100));
    }

    #[test]
    fn the_size_rule_holds_the_store_to_all_of_it_and_a_notification_to_the_form() {
        let (sts, form) = (Some(UploadMode::Sts), Some(UploadMode::PostPolicy));
        let code = |size, mode, declared, source| {
            size_problem(size, mode, declared, 100, source).map(|(code, _)| code)
        };
        let store = SizeSource::Store;
        assert_eq!(code(0, None, None, store), Some(Reason::Empty));
        assert_eq!(code(7, None, None, store), None);
        assert_eq!(code(7, sts, Some(7), store), None);
        assert_eq!(code(8, sts, Some(7), store), Some(Reason::SizeMismatch));
        assert_eq!(code(10_000, sts, None, store), None, "STS uploads: no cap");
        assert_eq!(code(100, form, None, store), None);
        assert_eq!(code(101, form, None, store), Some(Reason::TooLarge));
        assert_eq!(code(49, form, Some(50), store), Some(Reason::SizeMismatch));
        assert_eq!(code(51, form, Some(50), store), Some(Reason::TooLarge));

        // A notification's size is the sender's word: only a form's signed range holds.
        let told = SizeSource::Notification;
        assert_eq!(code(2000, form, Some(2000), told), None);
        let (reason, detail) =
            size_problem(2001, form, Some(2000), 1 << 20, told).expect("over the range");
        assert_eq!(reason, Reason::TooLarge);
        assert!(detail.contains("2000..=2000"), "{detail}");
        assert_eq!(
            code(1999, form, Some(2000), told),
            Some(Reason::SizeMismatch)
        );
        assert_eq!(code(100, form, None, told), None);
        assert_eq!(code(101, form, None, told), Some(Reason::TooLarge));
        assert_eq!(code(0, form, None, told), Some(Reason::SizeMismatch));
        assert_eq!(code(-5, form, None, told), Some(Reason::SizeMismatch));
        // STS uploads may be multipart and of any size; a declared size there is a hint.
        assert_eq!(code(10, sts, Some(5), told), None);
        assert_eq!(code(0, sts, None, told), None);
    }

    /// The store applies [`state_after_triggers`] in SQL whenever a delivery or a processing
    /// outcome is recorded: every mix of up to two triggers, in every delivery and processing
    /// state, ends where the rule says. (`pending` is on its way like `in_flight` and
    /// `failed`, which stand for it: a trigger left unclaimed cannot be told apart here.)
    #[tokio::test]
    async fn the_stored_state_follows_the_state_rule_for_every_mix_of_triggers() {
        use crate::kinds::{EventOutcome, EventSource, TriggerSink};
        use crate::store::{
            DatabaseConfig, EventRow, EventWrite, NewTrigger, Outcome, UploadChange, now_millis,
        };
        use secrecy::SecretString;

        let progress = |delivery, processing, reason| TriggerProgress {
            delivery,
            processing,
            reason,
        };
        let delivered = |processing, reason| progress(TriggerState::Delivered, processing, reason);
        let statuses = [
            progress(TriggerState::InFlight, ProcessingState::Untracked, None),
            progress(TriggerState::Failed, ProcessingState::Untracked, None),
            progress(TriggerState::Dead, ProcessingState::Untracked, None),
            delivered(ProcessingState::Untracked, None),
            delivered(ProcessingState::Pending, None),
            delivered(ProcessingState::Running, None),
            delivered(ProcessingState::Succeeded, None),
            delivered(ProcessingState::Failed, Some(Reason::ProcessingFailed)),
            delivered(ProcessingState::Failed, Some(Reason::OutputMissing)),
            delivered(ProcessingState::TimedOut, Some(Reason::ProcessingTimedOut)),
        ];
        let mut mixes: Vec<Vec<TriggerProgress>> = Vec::new();
        for (i, a) in statuses.iter().enumerate() {
            mixes.push(vec![*a]);
            for b in &statuses[i..] {
                mixes.push(vec![*a, *b]);
            }
        }
        assert_eq!(mixes.len(), 65);
        for mix in mixes {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/t.db", dir.path().display());
            let store = Store::connect(&DatabaseConfig {
                url: SecretString::from(url),
                max_connections: 2,
            })
            .await
            .unwrap();
            let id = uuid::Uuid::now_v7().to_string();
            let key = format!("uploads/alice/{id}/a.mp4");
            let upload = Upload {
                id: id.clone(),
                owner: "alice".into(),
                subject: "alice".into(),
                bucket: "b".into(),
                object_key: key.clone(),
                file_name: "a.mp4".into(),
                size: None,
                content_type: None,
                mode: UploadMode::Sts,
                media: MediaAttributes::default(),
                state: UploadState::Issued,
                reason: None,
                created_at: 1,
                uploaded_at: None,
                updated_at: 1,
            };
            store.insert_upload(upload.to_row().unwrap()).await.unwrap();
            let triggers: Vec<NewTrigger> = mix
                .iter()
                .enumerate()
                .map(|(n, t)| NewTrigger {
                    id: uuid::Uuid::now_v7().to_string(),
                    workflow_id: format!("w{n}"),
                    workflow_name: format!("w{n}"),
                    sink: TriggerSink::Webhook,
                    payload: "{}".into(),
                    tracks_outcome: t.processing != ProcessingState::Untracked,
                })
                .collect();
            let wanted: std::collections::HashMap<String, TriggerProgress> = triggers
                .iter()
                .zip(&mix)
                .map(|(t, p)| (t.id.clone(), *p))
                .collect();
            let write = EventWrite {
                event: EventRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    bucket: "b".into(),
                    object_key: key,
                    etag: "E".into(),
                    size: Some(7),
                    content_type: None,
                    source: EventSource::S3Events,
                    upload_id: Some(id.clone()),
                    outcome: EventOutcome::Queued,
                    reason: None,
                    received_at: 5,
                },
                completes: true,
                upload: UploadChange::Existing { id: id.clone() },
                upload_state: UploadState::Uploaded,
                upload_reason: None,
                upload_size: Some(7),
                triggers,
            };
            store.record_event(write).await.unwrap();
            let later = now_millis() + 3_600_000;
            let claimed = store
                .claim_triggers(now_millis(), mix.len() as u32, 60_000)
                .await
                .unwrap();
            assert_eq!(claimed.len(), mix.len());
            for claim in claimed {
                let want = wanted[&claim.id];
                let trigger = claim.id.clone();
                let outcome = match want.delivery {
                    TriggerState::InFlight => continue,
                    TriggerState::Failed => Outcome::Failed {
                        error: "x".into(),
                        retry_at: Some(later),
                    },
                    TriggerState::Dead => Outcome::Failed {
                        error: "x".into(),
                        retry_at: None,
                    },
                    _ => Outcome::Delivered {
                        media_id: None,
                        run_ids: Vec::new(),
                        first_look_at: 0,
                    },
                };
                assert!(store.record_outcome(claim, outcome).await.unwrap());
                if !matches!(
                    want.processing,
                    ProcessingState::Untracked | ProcessingState::Pending
                ) {
                    let set = store
                        .set_trigger_outcome(&trigger, want.processing, want.reason, now_millis())
                        .await
                        .unwrap();
                    assert!(set, "{want:?}");
                }
            }
            let stored: Vec<TriggerProgress> = store
                .triggers_for_upload(&id)
                .await
                .unwrap()
                .into_iter()
                .map(|t| progress(t.state, t.processing, t.processing_reason))
                .collect();
            let key = |p: &TriggerProgress| format!("{p:?}");
            let (mut have, mut want) = (stored.clone(), mix.clone());
            have.sort_by_key(key);
            want.sort_by_key(key);
            assert_eq!(have, want, "the triggers took the states of the mix");
            let row = store.get_upload(&id).await.unwrap().unwrap();
            assert_eq!(
                (row.state, row.state_reason),
                state_after_triggers(mix.clone()),
                "{mix:?}"
            );
        }
    }
}

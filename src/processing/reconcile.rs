//! Reconciliation: uploads whose notification never came (mediagate was down when OSS called
//! back, which OSS never retries; a dropped RGW or MinIO event) are found in the store and
//! processed like announced ones, with source `reconcile`; uploads that never came expire.
//! Each upload is looked up on its own backoff schedule, not every upload every sweep.
//! Optionally the upload prefix is listed too, a page per sweep, for objects that were never
//! requested nor announced.

use crate::kinds::EventSource;
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use super::{ObjectEvent, StorageScope, accept};
use crate::clock::Clock;
use crate::storage::check_object_key;
use crate::storage::reader::{Lookup, ObjectReader, ReadError};
use crate::store::{Store, Unannounced};

/// `[reconcile]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// `MEDIAGATE__RECONCILE__INTERVAL_SECONDS`, default 60: how often to sweep; 0 disables.
    pub interval_seconds: u64,
    /// `MEDIAGATE__RECONCILE__AFTER_SECONDS`, default 60: the quiet time after an upload was
    /// issued before the store is asked; also the first step of each upload's backoff.
    pub after_seconds: u64,
    /// `MEDIAGATE__RECONCILE__EXPIRE_AFTER_SECONDS`: an upload with no object this long after
    /// its credentials were last vended becomes `expired`; default: the credential lifetime
    /// (`sts.duration_seconds`) plus one hour.
    pub expire_after_seconds: Option<u64>,
    /// `MEDIAGATE__RECONCILE__LIST_UNANNOUNCED`, default false: also list the upload prefix
    /// (a page of [`LIST_PAGE`] keys per sweep, from a cursor kept in the database) for
    /// objects nobody requested or announced. Needs verification: a listing cannot tell a
    /// symbolic link from an object.
    pub list_unannounced: bool,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 60,
            after_seconds: 60,
            expire_after_seconds: None,
            list_unannounced: false,
        }
    }
}

/// Keys listed per sweep.
pub const LIST_PAGE: usize = 500;
const LIST_CURSOR: &str = "upload-prefix";

/// Uploads looked up per sweep at most; the rest wait for the next one.
const BATCH: u32 = 200;
/// The longest wait between two lookups of one upload.
const MAX_BACKOFF_MS: i64 = 3_600_000;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Objects found and handed to intake like a notification.
    pub found: usize,
    /// Not there yet: asked again later.
    pub missing: usize,
    pub expired: usize,
    /// The store did not answer: asked again later.
    pub errors: usize,
    /// Objects the listing found that nothing had announced, handed to intake.
    pub listed: usize,
}

/// One sweep: claims the uploads that are due on `clock`, asks the store for each, and
/// records what it found. `expire_after` is resolved (see
/// [`ReconcileConfig::expire_after_seconds`]).
pub async fn sweep(
    store: &Store,
    objects: &dyn ObjectReader,
    storage: &StorageScope<'_>,
    settings: &ReconcileConfig,
    expire_after: Duration,
    clock: &dyn Clock,
) -> anyhow::Result<Sweep> {
    let quiet_ms = (settings.after_seconds * 1000) as i64;
    // Long enough for a sweep of a full batch to finish before another instance may retake;
    // a sweep that runs past half of it (by the system's clock: this is how long the work
    // takes) leaves the rest of its batch to the next one.
    let lease = Duration::from_secs(300);
    let started = std::time::Instant::now();
    let due = store
        .claim_unannounced(
            clock.now_millis(),
            quiet_ms,
            lease.as_millis() as i64,
            BATCH,
        )
        .await?;
    let mut done = Sweep::default();
    for upload in due {
        if started.elapsed() > lease / 2 {
            break;
        }
        // An upload of another bucket (the configuration changed) cannot be read: it is
        // never found, and expires.
        let lookup = if upload.bucket == storage.bucket {
            objects.head(&upload.object_key).await
        } else {
            Err(ReadError::NotReadable(upload.object_key.clone()))
        };
        let outcome = match lookup {
            Ok(Lookup::Found(head)) => {
                let event = ObjectEvent {
                    source: EventSource::Reconcile,
                    bucket: upload.bucket.clone(),
                    key: upload.object_key.clone(),
                    etag: head.etag,
                    size: i64::try_from(head.size).ok(),
                    content_type: head.content_type,
                    upload_hint: Some(upload.id.clone()),
                    ..ObjectEvent::empty()
                };
                accept(store, storage, event).await?;
                done.found += 1;
                "found"
            }
            // Verification refuses a link with its reason; without verification it is
            // recorded as a link and never processed.
            Ok(Lookup::Symlink) => {
                let event = ObjectEvent {
                    source: EventSource::Reconcile,
                    bucket: upload.bucket.clone(),
                    key: upload.object_key.clone(),
                    etag: "SYMLINK".into(),
                    upload_hint: Some(upload.id.clone()),
                    symlink: !storage.verify,
                    ..ObjectEvent::empty()
                };
                accept(store, storage, event).await?;
                done.found += 1;
                "found"
            }
            Ok(Lookup::Missing) | Err(ReadError::NotReadable(_)) => {
                let now = clock.now_millis();
                if now - upload.vended_at >= expire_after.as_millis() as i64 {
                    if store.expire_upload(&upload.id).await? {
                        done.expired += 1;
                    }
                    "expired"
                } else {
                    store
                        .reschedule_check(&upload.id, now + backoff_ms(quiet_ms, &upload))
                        .await?;
                    done.missing += 1;
                    "missing"
                }
            }
            Err(e) => {
                warn!(upload = %upload.id, error = %e, "reconciliation could not read the store");
                let next = clock.now_millis() + backoff_ms(quiet_ms, &upload);
                store.reschedule_check(&upload.id, next).await?;
                done.errors += 1;
                "error"
            }
        };
        metrics::counter!("mediagate_reconciliations_total", "outcome" => outcome).increment(1);
    }
    if settings.list_unannounced {
        done.listed = list_page(store, objects, storage, quiet_ms, clock).await?;
    }
    if done != Sweep::default() {
        info!(?done, "reconciliation sweep");
    }
    Ok(done)
}

/// Lists the next page of the upload prefix and hands every object nothing announced, and
/// older than the quiet time, to intake. The page is taken by moving the shared cursor first,
/// so two instances never list the same page; the last page starts the listing over.
async fn list_page(
    store: &Store,
    objects: &dyn ObjectReader,
    storage: &StorageScope<'_>,
    quiet_ms: i64,
    clock: &dyn Clock,
) -> anyhow::Result<usize> {
    let (cursor, version) = store.reconcile_cursor(LIST_CURSOR).await?;
    let page = match objects.list(&cursor, LIST_PAGE).await {
        Ok(page) => page,
        Err(e) => {
            warn!(error = %e, "reconciliation could not list the store");
            metrics::counter!("mediagate_reconciliations_total", "outcome" => "error").increment(1);
            return Ok(0);
        }
    };
    let next = match page.last() {
        Some(last) if page.len() == LIST_PAGE => last.key.clone(),
        _ => String::new(),
    };
    if !store.advance_cursor(LIST_CURSOR, version, &next).await? {
        return Ok(0);
    }
    let settled_before = clock.now_millis() - quiet_ms;
    let mut found = 0;
    for object in page {
        let recent = object.modified_at.is_none_or(|t| t > settled_before);
        if recent {
            continue;
        }
        // A key no notification route would take is not taken from a listing either.
        if let Err(why) = check_object_key(&object.key) {
            warn!(key = ?object.key, why, "listed key refused; not reconciled");
            metrics::counter!("mediagate_reconciliations_total", "outcome" => "refused_key")
                .increment(1);
            continue;
        }
        if store.object_announced(storage.bucket, &object.key).await? {
            continue;
        }
        let event = ObjectEvent {
            source: EventSource::Reconcile,
            bucket: storage.bucket.to_owned(),
            key: object.key,
            etag: object.head.etag,
            size: i64::try_from(object.head.size).ok(),
            content_type: object.head.content_type,
            ..ObjectEvent::empty()
        };
        accept(store, storage, event).await?;
        found += 1;
        metrics::counter!("mediagate_reconciliations_total", "outcome" => "listed").increment(1);
    }
    Ok(found)
}

/// The wait before the next lookup of `upload`: the quiet time, doubled with each lookup.
fn backoff_ms(quiet_ms: i64, upload: &Unannounced) -> i64 {
    let doublings = u32::try_from(upload.checks).unwrap_or(u32::MAX).min(20);
    quiet_ms
        .max(1000)
        .saturating_mul(1i64 << doublings)
        .min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_back_off_per_upload() {
        let upload = |checks| Unannounced {
            id: "u".into(),
            bucket: "b".into(),
            object_key: "k".into(),
            vended_at: 0,
            checks,
        };
        assert_eq!(backoff_ms(60_000, &upload(0)), 60_000);
        assert_eq!(backoff_ms(60_000, &upload(3)), 480_000);
        assert_eq!(backoff_ms(60_000, &upload(40)), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(0, &upload(0)), 1000);
    }
}

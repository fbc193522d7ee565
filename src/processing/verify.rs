//! Verification: a notification is a hint, the store is the truth. Before an announced object
//! triggers anything, it is looked up in the store with the service keys: it must exist, its
//! size, ETag and content type are the store's, its size must be what the upload allowed, and
//! its first bytes must be a media container. Runs as a queued job (sink `verify`) with the
//! deliveries' retries, so a store outage delays verification and never loses it.
//!
//! What was verified is what gets processed: the uploader's credentials (and presigned URLs)
//! stay valid after the upload, so the object could be replaced between verification and the
//! processor's read. With `protected_copy` on, the object is first copied in the store to
//! `{protected_prefix}{user}/{copy id}/{file name}` (a fresh id for each look), where no app credential can write (their
//! policies cover `{storage.prefix}{user}/`, presigned requests the upload's own key), and that
//! copy is what is judged and what processors are handed. Nothing writes the copy's key after
//! this job, so no ETag has to stand for the bytes (a store may ignore a copy's condition, and
//! MD5 ETags can be made to collide).

use std::sync::Arc;

use serde::Deserialize;

use super::{Delivery, DeliveryError};
use crate::kinds::{Reason, UploadMode};
use crate::media::content::{
    Content, PLAYLIST, SNIFF_BYTES, foreign_playlist_entry, is_active_type, is_playlist_name, sniff,
};
use crate::storage::reader::{Lookup, ObjectHead, ObjectReader, ReadError};
use crate::uploads::{SizeSource, size_problem};

/// `[verification]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    /// `MEDIAGATE__VERIFICATION__ENABLED`, default true: look every announced object up in
    /// the store before it triggers anything.
    pub enabled: bool,
    /// `MEDIAGATE__VERIFICATION__CONTENT_SNIFF`, default true: its first bytes must be a media
    /// container.
    pub content_sniff: bool,
    /// `MEDIAGATE__VERIFICATION__UNKNOWN_CONTENT`: `accept` (default) or `reject` bytes no
    /// signature identifies (several listed formats have none that is reliable).
    pub unknown_content: UnknownContent,
    /// `MEDIAGATE__VERIFICATION__PLAYLISTS`: `reject` (default) or `local` HLS playlists.
    pub playlists: Playlists,
    /// `MEDIAGATE__VERIFICATION__MISSING_WAIT_MS`, default 3000: how long an announced
    /// object the store does not have is looked for again (after 250 ms, then doubling)
    /// before its event is recorded as `missing`; a store may show a new object after its
    /// own notification. 0 looks once.
    pub missing_wait_ms: u64,
    /// `MEDIAGATE__VERIFICATION__PROTECTED_COPY`, default true: verify a copy of the object
    /// kept under `protected_prefix`, and hand processors that copy, so that what was
    /// verified is what gets processed.
    pub protected_copy: bool,
    /// `MEDIAGATE__VERIFICATION__PROTECTED_PREFIX`, default `verified/`: where the copies are
    /// kept in the input bucket; must not overlap `storage.prefix`.
    pub protected_prefix: String,
    /// `MEDIAGATE__VERIFICATION__COPY_PART_BYTES`, default 1 GiB (OSS's CopyObject limit):
    /// larger objects are copied in parts of this size (5 MiB - 1 GiB).
    pub copy_part_bytes: u64,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            content_sniff: true,
            unknown_content: UnknownContent::Accept,
            playlists: Playlists::Reject,
            missing_wait_ms: 3000,
            protected_copy: true,
            protected_prefix: "verified/".into(),
            copy_part_bytes: crate::storage::copy::MAX_COPY_OBJECT_BYTES,
        }
    }
}

/// What becomes of an HLS playlist (`#EXTM3U`, or a `.m3u8`/`.m3u` name): a processor
/// fetches every URI it lists, with its own network access (the cloud's metadata service,
/// other users' objects).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Playlists {
    /// Never media.
    Reject,
    /// Media when named `.m3u8` or `.m3u`, read whole within the sniffed bytes, and every URI
    /// in it is a plain file name beside it.
    Local,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownContent {
    Accept,
    Reject,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The object as the store has it, and its container when sniffed; with protected copies,
    /// the `copy` that was judged (and `head` is the copy's).
    Verified {
        head: ObjectHead,
        container: Option<&'static str>,
        copy: Option<String>,
    },
    /// Not processed: a reason code users see, and the detail operators see.
    Rejected { code: Reason, detail: String },
    /// The store has no such object: no verdict on the upload, only on the event.
    Missing { detail: String },
}

fn rejected(code: Reason, detail: impl Into<String>) -> Verdict {
    Verdict::Rejected {
        code,
        detail: detail.into(),
    }
}

/// How many times verification looks from the HEAD again when the object changed before its
/// bytes were read: an uploader still PUTting gets no verdict, only a later retry.
const LOOKS: usize = 3;

/// Reads the store for verification.
pub struct Verifier {
    reader: Arc<dyn ObjectReader>,
    content_sniff: bool,
    unknown_content: UnknownContent,
    playlists: Playlists,
    missing_wait: std::time::Duration,
    max_form_bytes: u64,
    /// Where verified copies are kept, and the part size they are copied in; `None` judges
    /// the announced object itself.
    copies: Option<(String, u64)>,
}

impl Verifier {
    pub fn new(
        reader: Arc<dyn ObjectReader>,
        settings: &VerificationConfig,
        max_form_bytes: u64,
    ) -> Verifier {
        Verifier {
            reader,
            content_sniff: settings.content_sniff,
            unknown_content: settings.unknown_content,
            playlists: settings.playlists,
            missing_wait: std::time::Duration::from_millis(settings.missing_wait_ms),
            max_form_bytes,
            copies: settings
                .protected_copy
                .then(|| (settings.protected_prefix.clone(), settings.copy_part_bytes)),
        }
    }

    /// Verifies the object `delivery` announces for an upload issued in `mode` (`None` when
    /// none was). `Err(Retry)` when the store did not answer, or the object changed between
    /// the HEAD and the read (or copy) at every look.
    pub async fn verify(
        &self,
        delivery: &Delivery,
        mode: Option<UploadMode>,
    ) -> Result<Verdict, DeliveryError> {
        let started = tokio::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(250);
        let mut changes = 0;
        loop {
            match self.look(delivery, mode).await? {
                Some(Verdict::Missing { .. }) if started.elapsed() < self.missing_wait => {
                    let left = self.missing_wait.saturating_sub(started.elapsed());
                    tokio::time::sleep(pause.min(left)).await;
                    pause *= 2;
                }
                Some(verdict) => return Ok(verdict),
                None => {
                    changes += 1;
                    if changes == LOOKS {
                        return Err(DeliveryError::Retry(format!(
                            "the object changed between the HEAD and the read, {LOOKS} times"
                        )));
                    }
                }
            }
        }
    }

    /// One look: the HEAD, then (with protected copies) a copy of that version, then the
    /// first bytes of what is judged. `None` when the object changed in between.
    async fn look(
        &self,
        delivery: &Delivery,
        mode: Option<UploadMode>,
    ) -> Result<Option<Verdict>, DeliveryError> {
        let key = delivery.object_key.as_str();
        let head = match self.head(key, delivery, mode).await? {
            Ok(head) => head,
            Err(verdict) => return Ok(Some(verdict)),
        };
        let Some((prefix, part_bytes)) = &self.copies else {
            return self.judge(key, head, key).await;
        };
        // A key of its own for each look: a worker whose lease ran out mid-copy, still
        // writing, can never overwrite (or delete) the copy another worker judged.
        let copy_id = uuid::Uuid::now_v7().to_string();
        let Some(copy) = protected_key(prefix, delivery.user.as_deref(), key, &copy_id) else {
            return Ok(Some(rejected(
                Reason::NotVerifiable,
                "the file name is too long for a protected copy of the object",
            )));
        };
        match self
            .reader
            .copy_version(key, &head, &copy, *part_bytes)
            .await
        {
            Ok(()) => {}
            Err(ReadError::Changed) => return Ok(None),
            Err(e) => return Err(read_failed(e)),
        }
        // From here on the copy is judged: nothing but this look writes its key, so what
        // passes is what processors read.
        let verdict = match self.head(&copy, delivery, mode).await? {
            Ok(head) => self.judge(&copy, head, key).await?,
            Err(Verdict::Missing { .. }) => {
                return Err(DeliveryError::Retry(
                    "the store does not show the copy it just made".into(),
                ));
            }
            Err(verdict) => Some(verdict),
        };
        match verdict {
            Some(Verdict::Verified {
                head, container, ..
            }) => Ok(Some(Verdict::Verified {
                head,
                container,
                copy: Some(copy),
            })),
            other => {
                // A copy nobody will read; a lifecycle rule takes any left behind.
                if let Err(e) = self.reader.delete_copy(&copy).await {
                    tracing::warn!(error = %e, ?copy, "deleting a refused copy failed");
                }
                Ok(other)
            }
        }
    }

    /// The HEAD of `key` and what it alone decides: `Err` with the verdict when the object
    /// is missing, a link, of a size the upload does not allow, or of an active type.
    async fn head(
        &self,
        key: &str,
        delivery: &Delivery,
        mode: Option<UploadMode>,
    ) -> Result<Result<ObjectHead, Verdict>, DeliveryError> {
        let lookup = match self.reader.head(key).await {
            Err(e @ ReadError::NotReadable(_)) => {
                return Ok(Err(rejected(Reason::NotVerifiable, e.to_string())));
            }
            other => other.map_err(read_failed)?,
        };
        let head = match lookup {
            Lookup::Found(head) => head,
            Lookup::Missing => {
                return Ok(Err(Verdict::Missing {
                    detail: "no such object in the store".into(),
                }));
            }
            Lookup::Symlink => {
                return Ok(Err(rejected(
                    Reason::Symlink,
                    "the object is a symbolic link to another object",
                )));
            }
        };
        let size = i64::try_from(head.size).unwrap_or(i64::MAX);
        if let Some((code, detail)) = size_problem(
            size,
            mode,
            delivery.declared_size,
            self.max_form_bytes,
            SizeSource::Store,
        ) {
            return Ok(Err(Verdict::Rejected { code, detail }));
        }
        match type_verdict(&head) {
            Some(verdict) => Ok(Err(verdict)),
            None => Ok(Ok(head)),
        }
    }

    /// The content verdict on `read` (the object or its copy) as `head` describes it, judged
    /// under the announced `key`'s name. `None` when it changed since the HEAD.
    async fn judge(
        &self,
        read: &str,
        head: ObjectHead,
        key: &str,
    ) -> Result<Option<Verdict>, DeliveryError> {
        if !self.content_sniff {
            // What a playlist names can only be checked in its bytes.
            if is_playlist_name(key) {
                return Ok(Some(rejected(
                    Reason::NotMedia,
                    "a playlist cannot be checked without content_sniff",
                )));
            }
            return Ok(Some(Verdict::Verified {
                head,
                container: None,
                copy: None,
            }));
        }
        let len = usize::try_from(head.size).map_or(SNIFF_BYTES, |n| n.min(SNIFF_BYTES));
        let bytes = match self.reader.first_bytes(read, len, &head.raw_etag).await {
            Ok(bytes) => bytes,
            Err(ReadError::Changed) => return Ok(None),
            Err(e) => return Err(read_failed(e)),
        };
        Ok(Some(content_verdict(
            head,
            &bytes,
            key,
            self.unknown_content,
            self.playlists,
        )))
    }
}

/// The key of the protected copy `id` of `key`, uploaded by `user`:
/// `{prefix}{user}/{id}/{file name}`, the upload layout with the copy's id (a UUID, as long
/// as an upload id) in the upload id's place (so every key mediagate issues has room for its copy). `None` when it would be too
/// long for the store (only a file name near the key limit, in a key mediagate did not issue).
pub fn protected_key(prefix: &str, user: Option<&str>, key: &str, job: &str) -> Option<String> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let copy = match user {
        Some(user) => format!("{prefix}{user}/{job}/{name}"),
        None => format!("{prefix}{job}/{name}"),
    };
    (copy.len() <= crate::credentials::MAX_OBJECT_KEY_BYTES).then_some(copy)
}

fn read_failed(e: ReadError) -> DeliveryError {
    match e {
        ReadError::NotReadable(_) => DeliveryError::Fatal(e.to_string()),
        ReadError::Unavailable(_) | ReadError::Changed => DeliveryError::Retry(e.to_string()),
    }
}

/// The store's own type: whatever the bytes, an object the store (or a CDN in front of it)
/// would serve as a page, an image with scripts or a script is not media.
pub fn type_verdict(head: &ObjectHead) -> Option<Verdict> {
    let content_type = head.content_type.as_deref()?;
    is_active_type(content_type).then(|| {
        rejected(
            Reason::NotMedia,
            format!("the store serves the object as {content_type:?}, an active type"),
        )
    })
}

/// The content rule: a media container passes, anything positively identified as something
/// else does not, a playlist (by its bytes or its name) follows `playlists`, and unrecognised
/// bytes follow `unknown`.
pub fn content_verdict(
    head: ObjectHead,
    first_bytes: &[u8],
    key: &str,
    unknown: UnknownContent,
    playlists: Playlists,
) -> Verdict {
    let name = key.rsplit('/').next().unwrap_or(key);
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    let named_playlist = is_playlist_name(name);
    match sniff(first_bytes, extension.as_deref()) {
        Content::Playlist => playlist_verdict(head, first_bytes, named_playlist, playlists),
        Content::Other(kind) => {
            rejected(Reason::NotMedia, format!("the object is {kind}, not media"))
        }
        // A player goes by the name: whatever else the bytes are, they are read as a playlist.
        _ if named_playlist => playlist_verdict(head, first_bytes, true, playlists),
        Content::Media(container) => Verdict::Verified {
            head,
            container: Some(container),
            copy: None,
        },
        Content::Unknown if unknown == UnknownContent::Accept => Verdict::Verified {
            head,
            container: None,
            copy: None,
        },
        Content::Unknown => rejected(
            Reason::NotMedia,
            "no media container recognised in the first bytes",
        ),
    }
}

/// The playlist rule: only under `local`, only named as a playlist (under another name a
/// processor may read it as something else), only read whole (what lies past the sniffed
/// bytes is unchecked), and only when it names nothing but files beside it.
fn playlist_verdict(head: ObjectHead, text: &[u8], named: bool, playlists: Playlists) -> Verdict {
    if playlists == Playlists::Reject {
        return rejected(Reason::NotMedia, "the object is an HLS playlist");
    }
    if !named {
        return rejected(Reason::NotMedia, "an HLS playlist under another name");
    }
    if (text.len() as u64) < head.size {
        return rejected(
            Reason::NotMedia,
            format!("an HLS playlist over {SNIFF_BYTES} bytes cannot be checked whole"),
        );
    }
    match foreign_playlist_entry(text) {
        None => Verdict::Verified {
            head,
            container: Some(PLAYLIST),
            copy: None,
        },
        Some(entry) => {
            let entry: String = entry.chars().take(200).collect();
            rejected(
                Reason::NotMedia,
                format!("the playlist names {entry:?}, not a file beside it"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlists_pass_only_when_allowed_named_whole_and_local() {
        let local = b"#EXTM3U\n#EXTINF:10,\nseg0.ts\n#EXT-X-ENDLIST\n";
        let verdict = |text: &[u8], key: &str, size: usize, playlists| {
            let head = ObjectHead {
                size: size as u64,
                etag: "E".into(),
                raw_etag: "\"e\"".into(),
                content_type: None,
            };
            let verdict = content_verdict(head, text, key, UnknownContent::Accept, playlists);
            match verdict {
                Verdict::Verified { container, .. } => Ok(container),
                Verdict::Rejected { code, detail } => Err((code, detail)),
                Verdict::Missing { detail } => Err((Reason::ObjectMissing, detail)),
            }
        };
        let n = local.len();
        assert_eq!(
            verdict(local, "u/a.m3u8", n, Playlists::Local),
            Ok(Some(PLAYLIST))
        );
        assert_eq!(
            verdict(local, "u/a.M3U", n, Playlists::Local),
            Ok(Some(PLAYLIST))
        );
        let refused = [
            (local.as_slice(), "u/a.m3u8", n, Playlists::Reject),
            (local, "u/a.mp4", n, Playlists::Local),
            (local, "u/a.m3u8", n + 1, Playlists::Local),
            (b"#EXTM3U\n../b/x.ts\n", "u/a.m3u8", 19, Playlists::Local),
            // Named a playlist, whatever the bytes: a plain list of URLs.
            (
                b"http://169.254.169.254/\n",
                "u/a.m3u8",
                24,
                Playlists::Local,
            ),
            (b"seg0.ts\n", "u/a.m3u8", 8, Playlists::Reject),
        ];
        for (text, key, size, playlists) in refused {
            let got = verdict(text, key, size, playlists);
            assert!(
                matches!(got, Err((Reason::NotMedia, _))),
                "{key} {playlists:?}: {got:?}"
            );
        }
    }

    #[test]
    fn copies_follow_the_upload_layout_and_always_fit_for_issued_keys() {
        let job = "01a2537a-13c6-74d7-9565-ba2fbe710320";
        assert_eq!(
            protected_key("verified/", Some("alice"), "uploads/alice/up/a b.mp4", job).as_deref(),
            Some("verified/alice/01a2537a-13c6-74d7-9565-ba2fbe710320/a b.mp4")
        );
        assert_eq!(
            protected_key("v/", None, "uploads/deep/er/x.mp4", job).as_deref(),
            Some("v/01a2537a-13c6-74d7-9565-ba2fbe710320/x.mp4")
        );
        // The longest key mediagate issues: the longest prefix, user segment and file name.
        let prefix = format!("{}/", "p".repeat(crate::credentials::MAX_PREFIX_BYTES - 1));
        let user = "u".repeat(64);
        let name = "視".repeat(crate::storage::MAX_FILE_NAME_CHARS);
        let key = format!("{prefix}{user}/{job}/{name}");
        assert!(key.len() <= crate::credentials::MAX_OBJECT_KEY_BYTES);
        let copy = protected_key(&prefix, Some(&user), &key, job).unwrap();
        assert_eq!(copy.len(), key.len());
        // A name no issued key has, too long beside the job.
        let long = format!("uploads/{}", "n".repeat(1000));
        assert_eq!(protected_key("verified/", None, &long, job), None);
    }

    fn code(v: Option<Verdict>) -> Option<Reason> {
        match v? {
            Verdict::Rejected { code, .. } => Some(code),
            Verdict::Verified { .. } | Verdict::Missing { .. } => None,
        }
    }

    #[test]
    fn an_active_store_type_is_not_media_whatever_the_bytes() {
        let head = |content_type: Option<&str>| ObjectHead {
            size: 3,
            etag: "E".into(),
            raw_etag: "\"e\"".into(),
            content_type: content_type.map(str::to_owned),
        };
        assert_eq!(
            code(type_verdict(&head(Some("image/svg+xml")))),
            Some(Reason::NotMedia)
        );
        assert_eq!(
            code(type_verdict(&head(Some("text/html; charset=utf-8")))),
            Some(Reason::NotMedia)
        );
        assert_eq!(code(type_verdict(&head(Some("video/mp4")))), None);
        assert_eq!(code(type_verdict(&head(None))), None);
    }

    #[test]
    fn content_decides_by_magic_bytes_and_the_unknown_rule() {
        let head = ObjectHead {
            size: 3,
            etag: "E".into(),
            raw_etag: "\"e\"".into(),
            content_type: None,
        };
        let mut mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41".to_vec();
        mp4.resize(512, 0);
        let verdict = content_verdict(
            head.clone(),
            &mp4,
            "u/a.mp4",
            UnknownContent::Reject,
            Playlists::Reject,
        );
        assert!(matches!(
            verdict,
            Verdict::Verified {
                container: Some("video/mp4"),
                ..
            }
        ));
        let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        zip.resize(512, 0);
        let verdict = content_verdict(
            head.clone(),
            &zip,
            "u/a.mp4",
            UnknownContent::Accept,
            Playlists::Reject,
        );
        assert!(matches!(
            verdict,
            Verdict::Rejected {
                code: Reason::NotMedia,
                ..
            }
        ));
        let words = b"plain words";
        assert!(matches!(
            content_verdict(
                head.clone(),
                words,
                "u/a.ts",
                UnknownContent::Accept,
                Playlists::Reject
            ),
            Verdict::Verified {
                container: None,
                ..
            }
        ));
        assert!(matches!(
            content_verdict(
                head.clone(),
                words,
                "u/a.ts",
                UnknownContent::Reject,
                Playlists::Reject
            ),
            Verdict::Rejected {
                code: Reason::NotMedia,
                ..
            }
        ));
        // Markup is never unknown bytes.
        assert!(matches!(
            content_verdict(
                head,
                b"<svg onload=x>",
                "u/a.mp4",
                UnknownContent::Accept,
                Playlists::Reject
            ),
            Verdict::Rejected {
                code: Reason::NotMedia,
                ..
            }
        ));
    }
}

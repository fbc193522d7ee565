//! The upload, mediagate's central object: what a caller may ask to upload, how it is
//! delivered to the store (its mode), and the states it goes through.

pub mod callback;

use crate::media::{MediaAttributes, MediaAttributesInput};
use crate::storage::FileName;
use crate::workflows::{MediaCheck, media_check};

/// Stored and served as fixed lower-case text: `as_str` writes it, `parse` reads it back
/// (`None` for text no version wrote).
macro_rules! text_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        // The texts are the variants' names in snake case, which is how serde and the
        // OpenAPI document spell them too (a test holds the three together).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            pub fn parse(text: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// How the client delivers the object to the store.
    pub enum UploadMode {
        /// Temporary credentials in the answer; the client uploads with an SDK (multipart too).
        Sts = "sts",
        /// A signed form for a browser; the secret never leaves the server.
        PostPolicy = "post_policy",
        /// No credentials at all: each request to the store is signed by the server
        /// (`POST /v1/uploads/{id}/sign`), for browser clients such as Uppy.
        Presigned = "presigned",
        /// Announced by the store without a prior `POST /v1/uploads`.
        External = "external",
    }
}

text_enum! {
    /// Where an upload is: `issued` (credentials handed out) -> `uploaded` (the object was
    /// announced; it is being verified in the store, then its triggers are queued) ->
    /// `triggered` (all delivered) or `failed` (one is dead, or the store could not be read
    /// within the retry budget); `skipped` when no workflow takes it; `rejected` when the
    /// store's object failed verification; `expired` when no object ever came.
    ///
    /// The rule for verdicts: only one that describes the object the store holds ends an
    /// upload (`not_media`, `too_large`, `size_mismatch`, `symlink`, `empty`, and a key that
    /// may not be read). The absence of an object is no verdict: a notification that came
    /// before its object (early, stale or forged, or from a store slow to show it) leaves
    /// the upload where it was (`issued` again, an upload the event created is dropped), its
    /// event is recorded as `missing`, and a later notification or reconciliation that finds
    /// the object processes it once. A store that cannot be read is no verdict either: the
    /// job is retried, and past its retries it is `dead` (the upload `failed`) for an operator
    /// to replay. An operator's reprocessing that finds no object leaves the upload as its
    /// earlier triggers say.
    pub enum UploadState {
        Issued = "issued",
        Uploaded = "uploaded",
        Triggered = "triggered",
        Skipped = "skipped",
        Failed = "failed",
        Rejected = "rejected",
        Expired = "expired",
    }
}

text_enum! {
    /// Where one delivery to one workflow is: `pending` -> `in_flight` (claimed by a worker) ->
    /// `delivered`, or `failed` (waiting for a retry) and in the end `dead`.
    pub enum TriggerState {
        Pending = "pending",
        InFlight = "in_flight",
        Failed = "failed",
        Dead = "dead",
        Delivered = "delivered",
    }
}

text_enum! {
    /// What a recorded notification came to.
    pub enum EventOutcome {
        /// It completed its object and queued triggers.
        Queued = "queued",
        /// It completed its object; nothing matched (or a form was outside its size).
        Skipped = "skipped",
        /// Another version of an object completed before: nothing changed.
        Repeat = "repeat",
        /// A symbolic link: never processed, completes nothing.
        Symlink = "symlink",
        /// A callback for an object mediagate did not issue.
        Ignored = "ignored",
        /// Verification found no such object: it completed nothing, and a later event for
        /// the object (the same version too) is processed as the first.
        Missing = "missing",
    }
}

impl EventOutcome {
    /// Whether the event announced a real version of the object (reprocessing may use it).
    pub fn announced_object(self) -> bool {
        matches!(
            self,
            EventOutcome::Queued | EventOutcome::Skipped | EventOutcome::Repeat
        )
    }
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
    pub fn parse(
        file_name: &str,
        size: Option<u64>,
        content_type: Option<String>,
        mode: UploadMode,
        media: Option<MediaAttributesInput>,
        max_form_bytes: u64,
    ) -> Result<UploadRequest, UploadRefused> {
        if mode == UploadMode::External {
            return Err(UploadRefused::Invalid(
                "mode must be sts, post_policy or presigned".into(),
            ));
        }
        let file = FileName::parse(file_name).map_err(UploadRefused::Invalid)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        name: &str,
        size: Option<u64>,
        mode: UploadMode,
    ) -> Result<UploadRequest, UploadRefused> {
        UploadRequest::parse(name, size, None, mode, None, 100)
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
            "a.mp4",
            None,
            Some("video/mp4\r\nx: y".into()),
            UploadMode::Sts,
            None,
            100,
        );
        assert!(matches!(bad_type, Err(UploadRefused::Invalid(_))));
        let long_title = MediaAttributesInput {
            title: Some("t".repeat(200)),
            ..Default::default()
        };
        assert!(matches!(
            UploadRequest::parse("a.mp4", None, None, UploadMode::Sts, Some(long_title), 100),
            Err(UploadRefused::InvalidMediaAttributes(_))
        ));
        let form = parse("a.mp4", Some(7), UploadMode::PostPolicy).unwrap();
        assert_eq!(form.form_size_range(100), (7, 7));
        let open = parse("a.mp4", None, UploadMode::PostPolicy).unwrap();
        assert_eq!(open.form_size_range(100), (1, 100));
    }

    #[test]
    fn states_round_trip_through_their_stored_and_documented_text() {
        fn round_trip<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
        where
            T: Copy + PartialEq + std::fmt::Debug + serde::Serialize + utoipa::PartialSchema,
        {
            let documented = serde_json::to_value(T::schema()).unwrap()["enum"].clone();
            for v in all {
                assert_eq!(parse(as_str(*v)), Some(*v));
                assert_eq!(serde_json::to_value(v).unwrap(), as_str(*v));
                assert!(
                    documented
                        .as_array()
                        .is_some_and(|values| values.contains(&as_str(*v).into())),
                    "{documented}"
                );
            }
            assert_eq!(parse("other"), None);
        }
        round_trip(UploadMode::ALL, UploadMode::as_str, UploadMode::parse);
        round_trip(UploadState::ALL, UploadState::as_str, UploadState::parse);
        round_trip(TriggerState::ALL, TriggerState::as_str, TriggerState::parse);
        round_trip(EventOutcome::ALL, EventOutcome::as_str, EventOutcome::parse);
    }
}

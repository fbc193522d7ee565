//! The kinds mediagate persists and serves as fixed text: an upload's mode and state, a
//! trigger's state and sink, a notification's source and outcome, and the one vocabulary of
//! reasons. A leaf: the store writes and reads these, every domain names them, and none of
//! them asks anything back.

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

impl UploadState {
    /// Whether nothing more happens to the upload by itself (an operator may still
    /// reprocess it).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            UploadState::Issued | UploadState::Uploaded | UploadState::Processing
        )
    }
}

/// What a client that names no mode gets.
impl Default for UploadMode {
    fn default() -> Self {
        UploadMode::Sts
    }
}

text_enum! {
    /// Where an upload is: `issued` (credentials handed out) -> `uploaded` (the object was
    /// announced; it is being verified in the store, then its triggers are queued) ->
    /// `triggered` (all delivered, none of its workflows follows the outcome) or
    /// `processing` (delivered, a followed outcome still open) -> `ready` (every followed
    /// outcome succeeded, its outputs in the store); `failed` when a trigger is dead, the
    /// store could not be read within the retry budget, or processing failed, timed out or
    /// left an output missing; `skipped` when no workflow takes it; `rejected` when the
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
        Processing = "processing",
        Ready = "ready",
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

text_enum! {
    /// What a trigger is delivered to: the verification of its object in the store, or a
    /// workflow's sink.
    pub enum TriggerSink {
        Verify = "verify",
        Mps = "mps",
        Webhook = "webhook",
        /// A lifecycle event for the app's own backend (`[events]`), queued by the database
        /// with the upload's change of state.
        Events = "events",
    }
}

text_enum! {
    /// Who announced an object.
    pub enum EventSource {
        /// An OSS upload callback (its body is written by the uploading client).
        #[serde(rename = "oss-callback")]
        OssCallback = "oss-callback",
        /// An OSS event notification pushed by MNS.
        #[serde(rename = "oss-events")]
        OssEvents = "oss-events",
        /// An S3-style event record (AWS, Ceph RGW, MinIO).
        #[serde(rename = "s3-events")]
        S3Events = "s3-events",
        /// mediagate's own listing of the store.
        Reconcile = "reconcile",
    }
}

text_enum! {
    /// Why an upload was not processed, or how its delivery went: the codes app users see
    /// (`state_reason`, a trigger's `last_error`). Operators read the detail beside them.
    pub enum Reason {
        /// The object is not a video or audio file.
        NotMedia = "not_media",
        /// No active workflow takes the object.
        NoMatchingWorkflow = "no_matching_workflow",
        /// The object's size is not the size declared or signed.
        SizeMismatch = "size_mismatch",
        /// The object is over the size its form signed.
        TooLarge = "too_large",
        /// Written by versions before a missing object was no verdict; read, never written.
        ObjectMissing = "object_missing",
        /// The object is a symbolic link to another object.
        Symlink = "symlink",
        /// The object is empty.
        Empty = "empty",
        /// mediagate may not read the object (outside the upload prefix of the input bucket).
        NotVerifiable = "not_verifiable",
        /// The processor reported (or its API said) that processing failed.
        ProcessingFailed = "processing_failed",
        /// Processing did not end within `processing.outcome_timeout_seconds`.
        ProcessingTimedOut = "processing_timed_out",
        /// Processing succeeded but an output it names is not in the store.
        OutputMissing = "output_missing",
        /// A delivery failed and waits for its retry.
        DeliveryFailed = "delivery_failed",
        /// A delivery failed for good (dead letter).
        DeliveryAbandoned = "delivery_abandoned",
        /// The object takes its user past their plan (`[quotas]`): the store's size counts.
        QuotaExceeded = "quota_exceeded",
        /// Its user is suspended.
        UserSuspended = "user_suspended",
    }
}

text_enum! {
    /// Where a delivered trigger's processing is: `untracked` when its workflow does not
    /// follow the outcome, else `pending` -> `running` -> `succeeded`, `failed` or
    /// `timed_out`. Stored as NULL for `untracked`.
    pub enum ProcessingState {
        Untracked = "untracked",
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        TimedOut = "timed_out",
    }
}

impl ProcessingState {
    /// Whether processing has ended, one way or the other.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ProcessingState::Succeeded | ProcessingState::Failed | ProcessingState::TimedOut
        )
    }
}

text_enum! {
    /// One MPS workflow execution as mediagate follows it.
    pub enum RunState {
        Open = "open",
        Succeeded = "succeeded",
        Failed = "failed",
        TimedOut = "timed_out",
    }
}

text_enum! {
    /// What an output is.
    pub enum OutputKind {
        Video = "video",
        Audio = "audio",
        Image = "image",
        Other = "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_stored_and_documented_text() {
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
            assert_eq!(parse("no such text"), None);
        }
        round_trip(UploadMode::ALL, UploadMode::as_str, UploadMode::parse);
        round_trip(UploadState::ALL, UploadState::as_str, UploadState::parse);
        round_trip(TriggerState::ALL, TriggerState::as_str, TriggerState::parse);
        round_trip(EventOutcome::ALL, EventOutcome::as_str, EventOutcome::parse);
        round_trip(TriggerSink::ALL, TriggerSink::as_str, TriggerSink::parse);
        round_trip(EventSource::ALL, EventSource::as_str, EventSource::parse);
        round_trip(Reason::ALL, Reason::as_str, Reason::parse);
        round_trip(
            ProcessingState::ALL,
            ProcessingState::as_str,
            ProcessingState::parse,
        );
        round_trip(RunState::ALL, RunState::as_str, RunState::parse);
        round_trip(OutputKind::ALL, OutputKind::as_str, OutputKind::parse);
    }
}

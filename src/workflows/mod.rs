//! Media workflows and the pure rules that decide whether an object triggers one.

use crate::kinds::Reason;
use std::sync::LazyLock;

use regex::Regex;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Video extensions MPS treats as media (docs/protocols.md §7), lower case.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "3gp", "asf", "avi", "dat", "dv", "flv", "f4v", "gif", "m2t", "m3u8", "m4v", "mj2", "mjpeg",
    "mkv", "mov", "mp4", "mpe", "mpg", "mpeg", "mts", "ogg", "qt", "rm", "rmvb", "swf", "ts",
    "vob", "wmv", "webm",
];

/// Audio extensions MPS treats as media, lower case.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "aac", "ac3", "acm", "amr", "ape", "caf", "flac", "m4a", "mp3", "ra", "wav", "wma", "aiff",
];

/// What the media rule decided about a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCheck {
    /// No `.` at all: MPS treats extension-less files as media.
    NoExtension,
    /// A listed extension, lower-cased.
    Media(String),
    /// An extension that is not listed (possibly empty, for a name ending in `.`).
    NotMedia(String),
    /// A folder marker (ends in `/`) or an empty name.
    NotAFile,
}

impl MediaCheck {
    pub fn is_media(&self) -> bool {
        matches!(self, MediaCheck::NoExtension | MediaCheck::Media(_))
    }
}

/// Applies the MPS media rule to the last path segment of `key`: no `.` at all, or an
/// extension from the video/audio lists, compared case-insensitively.
pub fn media_check(key: &str) -> MediaCheck {
    if key.is_empty() || key.ends_with('/') {
        return MediaCheck::NotAFile;
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    match name.rsplit_once('.') {
        None => MediaCheck::NoExtension,
        Some((_, ext)) => {
            let ext = ext.to_ascii_lowercase();
            if VIDEO_EXTENSIONS.contains(&ext.as_str()) || AUDIO_EXTENSIONS.contains(&ext.as_str())
            {
                MediaCheck::Media(ext)
            } else {
                MediaCheck::NotMedia(ext)
            }
        }
    }
}

/// Where a workflow's triggers go.
#[derive(Debug, Clone)]
pub enum Sink {
    Mps { media_workflow_id: String },
    Webhook { url: String, secret: SecretString },
}

impl Sink {
    pub fn kind(&self) -> SinkKind {
        match self {
            Sink::Mps { .. } => SinkKind::Mps,
            Sink::Webhook { .. } => SinkKind::Webhook,
        }
    }
}

/// A checked workflow definition (from the configuration or the admin API).
#[derive(Debug, Clone)]
pub struct WorkflowDef {
    pub name: String,
    pub state: WorkflowState,
    pub bucket: String,
    pub prefix: String,
    pub output_prefix: Option<String>,
    /// Where its outputs may be; `None`: its own bucket.
    pub output_bucket: Option<String>,
    /// Whether processing is followed to its outcome after delivery.
    pub track_outcome: bool,
    pub sink: Sink,
}

impl WorkflowDef {
    /// The bucket its outputs lie in.
    pub fn outputs_bucket(&self) -> &str {
        self.output_bucket.as_deref().unwrap_or(&self.bucket)
    }
}

/// A stored workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub id: String,
    /// `config` when declared in the configuration (re-applied at every start), else `api`.
    pub source: String,
    pub def: WorkflowDef,
}

/// The rules of a definition, stated once for the OpenAPI document and for [`WorkflowDef::parse`].
pub mod rules {
    /// Names and prefixes: no control characters.
    pub const NO_CONTROL: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
    pub const MAX_NAME_CHARS: usize = 64;
    /// 255 characters of any script stay within the 1023 bytes of an object key.
    pub const MAX_PREFIX_CHARS: usize = 255;
    pub const BUCKET: &str = "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$";
    pub const MEDIA_WORKFLOW_ID: &str = "^[A-Za-z0-9_-]{1,64}$";
    pub const WEBHOOK_URL: &str = crate::upstream::HTTP_URL;
    pub const MAX_WEBHOOK_URL_CHARS: usize = 2048;
}

static NO_CONTROL: LazyLock<Regex> = LazyLock::new(|| compile(rules::NO_CONTROL));
static BUCKET: LazyLock<Regex> = LazyLock::new(|| compile(rules::BUCKET));
static MEDIA_WORKFLOW_ID: LazyLock<Regex> = LazyLock::new(|| compile(rules::MEDIA_WORKFLOW_ID));
static WEBHOOK_URL: LazyLock<Regex> = LazyLock::new(|| compile(rules::WEBHOOK_URL));

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the rules are valid patterns")
}

impl WorkflowDef {
    /// Checks a definition, reporting every problem. Each field is checked when present, the
    /// sink's own fields are required, and the other sink's fields must be absent.
    pub fn parse(spec: WorkflowConfig) -> Result<WorkflowDef, Vec<String>> {
        use rules::{MAX_NAME_CHARS, MAX_PREFIX_CHARS, MAX_WEBHOOK_URL_CHARS};
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: &str| {
            if !ok {
                problems.push(problem.to_owned());
            }
        };
        let text = |v: &str, max: usize| v.chars().count() <= max && NO_CONTROL.is_match(v);
        check(
            !spec.name.is_empty() && text(&spec.name, MAX_NAME_CHARS),
            "name must be 1-64 characters without control characters",
        );
        check(
            BUCKET.is_match(&spec.bucket),
            "bucket must be 3-63 characters of a-z, 0-9 and -, not starting or ending with -",
        );
        check(
            text(&spec.prefix, MAX_PREFIX_CHARS),
            "prefix must be at most 255 characters without control characters",
        );
        check(
            spec.output_prefix
                .as_deref()
                .is_none_or(|p| text(p, MAX_PREFIX_CHARS)),
            "output_prefix must be at most 255 characters without control characters",
        );
        check(
            spec.output_bucket
                .as_deref()
                .is_none_or(|b| BUCKET.is_match(b)),
            "output_bucket must be 3-63 characters of a-z, 0-9 and -, not starting or ending with -",
        );
        let (mps, webhook) = (spec.sink == SinkKind::Mps, spec.sink == SinkKind::Webhook);
        let id = spec.media_workflow_id.as_deref();
        check(
            id.is_some() == mps,
            "media_workflow_id: required for sink \"mps\", and only for it",
        );
        check(
            id.is_none_or(|id| MEDIA_WORKFLOW_ID.is_match(id)),
            "media_workflow_id must be 1-64 of A-Z a-z 0-9 - _",
        );
        let url = spec.webhook_url.as_deref();
        check(
            url.is_some() == webhook,
            "webhook_url: required for sink \"webhook\", and only for it",
        );
        check(
            url.is_none_or(|u| {
                u.chars().count() <= MAX_WEBHOOK_URL_CHARS
                    && WEBHOOK_URL.is_match(u)
                    && url::Url::parse(u).is_ok()
            }),
            "webhook_url must be an http:// or https:// URL with a DNS name or IPv4 address",
        );
        let secret = spec.webhook_secret.as_ref().map(|s| {
            use secrecy::ExposeSecret;
            s.expose_secret()
        });
        check(
            secret.is_some() == webhook,
            "webhook_secret: required for sink \"webhook\", and only for it",
        );
        if let Some(Err(e)) = secret.map(crate::signing::validate_webhook_secret) {
            problems.push(format!("webhook_secret: {e}"));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let sink = match (
            spec.sink,
            spec.media_workflow_id,
            spec.webhook_url,
            spec.webhook_secret,
        ) {
            (SinkKind::Mps, Some(media_workflow_id), _, _) => Sink::Mps { media_workflow_id },
            (SinkKind::Webhook, _, Some(url), Some(secret)) => Sink::Webhook { url, secret },
            _ => unreachable!("checked above"),
        };
        Ok(WorkflowDef {
            name: spec.name,
            state: spec.state,
            bucket: spec.bucket,
            prefix: spec.prefix,
            output_prefix: spec.output_prefix.filter(|p| !p.is_empty()),
            output_bucket: spec.output_bucket,
            // MPS is asked for the outcome; a webhook receiver must say it reports back.
            track_outcome: spec.track_outcome.unwrap_or(mps),
            sink,
        })
    }
}

/// Why a workflow does or does not take an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub name: String,
    pub matched: bool,
    pub reason: String,
}

/// The media rule's verdict on an object plus one decision per workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matching {
    pub media: MediaCheck,
    pub decisions: Vec<Decision>,
}

impl Matching {
    pub fn matched<'a>(&'a self, workflows: &'a [Workflow]) -> impl Iterator<Item = &'a Workflow> {
        workflows
            .iter()
            .zip(&self.decisions)
            .filter(|(_, d)| d.matched)
            .map(|(w, _)| w)
    }

    /// Why nothing matched, as the code app users see: `not_media` or
    /// `no_matching_workflow` (the detail, which names workflows, is for operators).
    pub fn skip_code(&self) -> Reason {
        if self.media.is_media() {
            Reason::NoMatchingWorkflow
        } else {
            Reason::NotMedia
        }
    }

    /// Why nothing matched, in detail, for operators.
    pub fn skip_reason(&self) -> String {
        if !self.media.is_media() {
            return match &self.media {
                MediaCheck::NotAFile => "not a file (folder marker)".into(),
                MediaCheck::NotMedia(ext) => format!("not a media file (extension {ext:?})"),
                _ => "not a media file".into(),
            };
        }
        if self.decisions.is_empty() {
            return "no workflows defined".into();
        }
        let mut reasons: Vec<String> = self
            .decisions
            .iter()
            .map(|d| format!("{}: {}", d.name, d.reason))
            .collect();
        reasons.truncate(5);
        format!("no active workflow matched ({})", reasons.join("; "))
    }
}

/// Which workflows an object triggers, and why each does or does not: the workflow is Active,
/// the bucket is its bucket, the key starts with its prefix (plain string prefix), the key is
/// not under its output prefix, and the file name passes the media rule.
pub fn decide(workflows: &[Workflow], bucket: &str, key: &str) -> Matching {
    let media = media_check(key);
    let decisions = workflows
        .iter()
        .map(|w| {
            let d = &w.def;
            let reason = if d.state != WorkflowState::Active {
                Some("workflow is Inactive".to_string())
            } else if d.bucket != bucket {
                Some(format!("bucket is {:?}, not {:?}", bucket, d.bucket))
            } else if !key.starts_with(&d.prefix) {
                Some(format!("key is outside prefix {:?}", d.prefix))
            } else if d
                .output_prefix
                .as_deref()
                .is_some_and(|o| key.starts_with(o))
            {
                Some("key is under the workflow's output prefix".to_string())
            } else {
                match &media {
                    MediaCheck::NotAFile => Some("folder markers never trigger".to_string()),
                    MediaCheck::NotMedia(ext) => {
                        Some(format!("extension {ext:?} is not a media extension"))
                    }
                    MediaCheck::NoExtension | MediaCheck::Media(_) => None,
                }
            };
            Decision {
                name: d.name.clone(),
                matched: reason.is_none(),
                reason: reason.unwrap_or_else(|| "matched".into()),
            }
        })
        .collect();
    Matching { media, decisions }
}

/// Whether a workflow takes new objects.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum WorkflowState {
    Active,
    Inactive,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Mps,
    Webhook,
}

/// A workflow declared in the configuration, or sent to the admin API.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// 1-64 characters without control characters, unique.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    pub state: WorkflowState,
    /// 3-63 of `a-z`, `0-9` and `-`, not starting or ending with `-`.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    pub bucket: String,
    /// Keys starting with this trigger the workflow (plain string prefix).
    #[serde(default)]
    #[schema(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub prefix: String,
    pub sink: SinkKind,
    /// For sink `mps` only, and required by it: 1-64 of `A-Z a-z 0-9 - _`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub media_workflow_id: Option<String>,
    /// For sink `webhook` only, and required by it: an http(s) URL with a DNS name or an
    /// IPv4 address (the pattern says exactly which).
    #[schema(schema_with = webhook_url_schema)]
    pub webhook_url: Option<String>,
    /// For sink `webhook` only, and required by it: `whsec_` + base64 of at least 24 bytes,
    /// or 24-256 printable ASCII characters.
    #[schema(value_type = Option<String>, schema_with = webhook_secret_schema)]
    pub webhook_secret: Option<SecretString>,
    /// Keys under this prefix never trigger (outputs of the workflow itself); it must not
    /// overlap the upload prefix in the input bucket.
    #[schema(max_length = 255, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub output_prefix: Option<String>,
    /// Where its outputs may be (default: `bucket`); with `output_prefix`, under it.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    #[serde(default)]
    pub output_bucket: Option<String>,
    /// Follow processing to its outcome after delivery: MPS runs are looked up, a webhook
    /// receiver reports back. Default: on for `mps`, off for `webhook`.
    #[serde(default)]
    pub track_outcome: Option<bool>,
}

fn nullable_string() -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

fn webhook_url_schema() -> utoipa::openapi::Object {
    nullable_string()
        .max_length(Some(rules::MAX_WEBHOOK_URL_CHARS))
        .pattern(Some(rules::WEBHOOK_URL))
        .build()
}

fn webhook_secret_schema() -> utoipa::openapi::Schema {
    use crate::signing::{
        MAX_WEBHOOK_SECRET_CHARS, MIN_WEBHOOK_KEY_BYTES, WEBHOOK_SECRET_B64_PATTERN,
        WEBHOOK_SECRET_TEXT_PATTERN,
    };
    use utoipa::openapi::schema::{AnyOfBuilder, Type};
    use utoipa::openapi::{ObjectBuilder, Schema};
    let text = |pattern: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_WEBHOOK_SECRET_CHARS))
            .pattern(Some(pattern))
    };
    Schema::AnyOf(
        AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(text(WEBHOOK_SECRET_B64_PATTERN))
            .item(text(WEBHOOK_SECRET_TEXT_PATTERN).min_length(Some(MIN_WEBHOOK_KEY_BYTES)))
            .build(),
    )
}

/// The match explanation shared by the admin API and `mediagate match`.
pub fn match_report(workflows: &[Workflow], bucket: &str, key: &str) -> serde_json::Value {
    let m = decide(workflows, bucket, key);
    let extension = match &m.media {
        MediaCheck::Media(e) | MediaCheck::NotMedia(e) => Some(e.clone()),
        _ => None,
    };
    json!({
        "bucket": bucket,
        "key": key,
        "media": m.media.is_media(),
        "extension": extension,
        "workflows": m.decisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert_eq!(media_check("a/trip.MP4"), MediaCheck::Media("mp4".into()));
        assert_eq!(media_check("song.FlAc"), MediaCheck::Media("flac".into()));
        assert_eq!(media_check("dir/README"), MediaCheck::NoExtension);
        assert_eq!(
            media_check("dir/movie."),
            MediaCheck::NotMedia(String::new())
        );
        assert_eq!(
            media_check("dir/notes.txt"),
            MediaCheck::NotMedia("txt".into())
        );
        assert_eq!(media_check("dir.mp4/notes"), MediaCheck::NoExtension);
        assert_eq!(media_check("dir/"), MediaCheck::NotAFile);
        assert_eq!(media_check(""), MediaCheck::NotAFile);
        assert_eq!(
            media_check("archive.tar.mp4"),
            MediaCheck::Media("mp4".into())
        );
        assert_eq!(media_check(".mp4"), MediaCheck::Media("mp4".into()));
    }

    fn workflow(name: &str, state: WorkflowState, prefix: &str, output: Option<&str>) -> Workflow {
        Workflow {
            id: name.into(),
            source: "api".into(),
            def: WorkflowDef {
                name: name.into(),
                state,
                bucket: "media-input".into(),
                prefix: prefix.into(),
                output_prefix: output.map(Into::into),
                output_bucket: None,
                track_outcome: true,
                sink: Sink::Mps {
                    media_workflow_id: "wf".into(),
                },
            },
        }
    }

    #[test]
    fn decisions_name_their_reason() {
        let wfs = vec![
            workflow(
                "hd",
                WorkflowState::Active,
                "uploads/",
                Some("uploads/out/"),
            ),
            workflow("off", WorkflowState::Inactive, "uploads/", None),
            workflow("test", WorkflowState::Active, "test", None),
        ];
        let m = decide(&wfs, "media-input", "uploads/alice/1/trip.MP4");
        assert_eq!(
            m.decisions.iter().map(|d| d.matched).collect::<Vec<_>>(),
            [true, false, false]
        );
        assert_eq!(m.decisions[1].reason, "workflow is Inactive");
        assert!(m.decisions[2].reason.contains("outside prefix"));
        assert_eq!(
            m.matched(&wfs)
                .map(|w| w.def.name.as_str())
                .collect::<Vec<_>>(),
            ["hd"]
        );

        let m = decide(&wfs, "media-input", "test1/a.mp4");
        assert!(
            m.decisions[2].matched,
            "plain string prefix: test matches test1/"
        );
        let m = decide(&wfs, "media-input", "uploads/out/a.mp4");
        assert!(!m.decisions[0].matched);
        assert!(m.decisions[0].reason.contains("output prefix"));
        let m = decide(&wfs, "other-bucket", "uploads/a.mp4");
        assert!(m.decisions.iter().all(|d| !d.matched));
        let m = decide(&wfs, "media-input", "uploads/a/notes.txt");
        assert!(m.decisions.iter().all(|d| !d.matched));
        assert_eq!(m.skip_reason(), "not a media file (extension \"txt\")");
    }

    proptest! {
        #[test]
        fn a_match_implies_every_rule(
            prefix in "[a-z/]{0,6}",
            key in "[a-zA-Z/.]{0,16}",
            active in any::<bool>(),
            same_bucket in any::<bool>(),
        ) {
            let state = if active { WorkflowState::Active } else { WorkflowState::Inactive };
            let wfs = vec![workflow("w", state, &prefix, Some("out/"))];
            let bucket = if same_bucket { "media-input" } else { "elsewhere" };
            let m = decide(&wfs, bucket, &key);
            let expected = active && same_bucket && key.starts_with(&prefix)
                && !key.starts_with("out/") && media_check(&key).is_media();
            prop_assert_eq!(m.decisions[0].matched, expected);
            prop_assert_eq!(m.matched(&wfs).count(), usize::from(expected));
        }

        #[test]
        fn listed_extensions_match_in_any_case(
            stem in "[a-zA-Z0-9 _-]{0,20}",
            idx in 0usize..(VIDEO_EXTENSIONS.len() + AUDIO_EXTENSIONS.len()),
            upper in proptest::collection::vec(any::<bool>(), 8),
        ) {
            let ext = VIDEO_EXTENSIONS.iter().chain(AUDIO_EXTENSIONS).nth(idx).unwrap();
            let mixed: String = ext.chars().zip(upper.iter().cycle())
                .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c }).collect();
            let key = format!("dir/{stem}.{mixed}");
            prop_assert!(media_check(&key).is_media());
        }

        #[test]
        fn names_without_a_dot_are_media(dir in "[a-z/]{0,10}", name in "[^./]{1,20}") {
            let key = format!("{dir}{name}");
            prop_assert!(media_check(&key).is_media());
        }

        #[test]
        fn folder_markers_and_trailing_dots_never_match(s in "[^/]{0,20}") {
            let folder = format!("{s}/");
            let trailing_dot = format!("{s}.");
            prop_assert!(!media_check(&folder).is_media());
            prop_assert!(!media_check(&trailing_dot).is_media());
        }

        #[test]
        fn unlisted_extensions_do_not_match(stem in "[a-z]{1,8}", ext in "[a-z0-9]{1,6}") {
            let listed = VIDEO_EXTENSIONS.contains(&ext.as_str()) || AUDIO_EXTENSIONS.contains(&ext.as_str());
            let key = format!("{stem}.{ext}");
            prop_assert_eq!(media_check(&key).is_media(), listed);
        }

        /// Every URL the document's pattern allows is one the server and its HTTP client parse
        /// (IDNA labels aside, which a pattern cannot check).
        #[test]
        fn webhook_url_pattern_only_allows_parseable_urls(
            u in crate::signing::tests::generated_from(rules::WEBHOOK_URL)
        ) {
            prop_assume!(!u.to_ascii_lowercase().contains("xn--"));
            prop_assert!(url::Url::parse(&u).is_ok(), "{}", u);
        }
    }

    #[test]
    fn the_document_states_the_rules_the_server_checks() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(WorkflowConfig::schema()).unwrap();
        let field = |name: &str| schema["properties"][name].clone();
        assert_eq!(field("name")["pattern"], rules::NO_CONTROL);
        assert_eq!(field("name")["maxLength"], rules::MAX_NAME_CHARS);
        assert_eq!(field("prefix")["pattern"], rules::NO_CONTROL);
        assert_eq!(field("prefix")["maxLength"], rules::MAX_PREFIX_CHARS);
        assert_eq!(field("output_prefix")["pattern"], rules::NO_CONTROL);
        assert_eq!(field("bucket")["pattern"], rules::BUCKET);
        assert_eq!(
            field("media_workflow_id")["pattern"],
            rules::MEDIA_WORKFLOW_ID
        );
        assert_eq!(field("webhook_url")["pattern"], rules::WEBHOOK_URL);
    }

    fn spec(sink: SinkKind) -> WorkflowConfig {
        WorkflowConfig {
            name: "hd".into(),
            state: WorkflowState::Active,
            bucket: "media-input".into(),
            prefix: "uploads/".into(),
            sink,
            media_workflow_id: None,
            webhook_url: None,
            webhook_secret: None,
            output_prefix: None,
            output_bucket: None,
            track_outcome: None,
        }
    }

    #[test]
    fn each_sink_takes_its_own_fields_and_only_those() {
        let secret = || Some(SecretString::from("s".repeat(24)));
        let mps = WorkflowConfig {
            media_workflow_id: Some("wf-1".into()),
            ..spec(SinkKind::Mps)
        };
        assert!(WorkflowDef::parse(mps.clone()).is_ok());
        let webhook = WorkflowConfig {
            webhook_url: Some("http://127.0.0.1:8080/hook".into()),
            webhook_secret: secret(),
            ..spec(SinkKind::Webhook)
        };
        assert!(WorkflowDef::parse(webhook.clone()).is_ok());
        for wrong in [
            spec(SinkKind::Mps),
            spec(SinkKind::Webhook),
            WorkflowConfig {
                webhook_url: Some("http://a.example/".into()),
                ..mps.clone()
            },
            WorkflowConfig {
                webhook_secret: secret(),
                ..mps
            },
            WorkflowConfig {
                media_workflow_id: Some("wf-1".into()),
                ..webhook.clone()
            },
            WorkflowConfig {
                webhook_url: Some("http://1.2.3.999/".into()),
                ..webhook.clone()
            },
            WorkflowConfig {
                webhook_url: Some("ftp://a.example/".into()),
                ..webhook.clone()
            },
            WorkflowConfig {
                name: "n".repeat(65),
                ..webhook.clone()
            },
            WorkflowConfig {
                prefix: "a\u{85}".into(),
                ..webhook
            },
        ] {
            assert!(WorkflowDef::parse(wrong.clone()).is_err(), "{wrong:?}");
        }
        let wide = WorkflowConfig {
            name: "影".repeat(64),
            prefix: "影".repeat(255),
            media_workflow_id: Some("wf-1".into()),
            ..spec(SinkKind::Mps)
        };
        assert!(WorkflowDef::parse(wide).is_ok());
    }
}

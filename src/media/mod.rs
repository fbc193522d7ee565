//! Media attributes a client attaches to an upload and MPS `AddMedia` receives, checked
//! against AddMedia's limits when the upload is requested, not when processing fails later.

pub mod content;

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Attributes as the client sends them; [`MediaAttributes::parse`] is the only way to a
/// checked value. Lengths count characters, as the OpenAPI document does; MPS's byte limits
/// on display text are met when the request is made (see `processing::mps`), and the fields
/// MPS must receive whole (`cover_url`, `user_data`) are ASCII, where characters are bytes.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaAttributesInput {
    /// At most 128 characters; no control characters but newline and tab.
    #[schema(max_length = 128, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub title: Option<String>,
    /// At most 1024 characters; no control characters but newline and tab.
    #[schema(max_length = 1024, pattern = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    /// At most 16 tags of 1-32 characters, without `,` or control characters.
    #[schema(schema_with = tags_schema)]
    pub tags: Option<Vec<String>>,
    #[schema(minimum = 0)]
    #[serde(default, deserialize_with = "crate::json::integer")]
    pub cate_id: Option<i64>,
    /// An `http://` or `https://` URL of at most 3200 characters, with a DNS name or an IPv4
    /// address and a path of printable ASCII (the pattern says exactly which).
    #[schema(schema_with = cover_url_schema)]
    pub cover_url: Option<String>,
    /// At most 1024 printable ASCII characters (JSON, for example), passed to the workflow.
    #[schema(max_length = 1024, pattern = r"^[\x20-\x7e]*$")]
    pub user_data: Option<String>,
}

const MAX_TAGS: usize = 16;
const MAX_TAG_CHARS: usize = 32;

/// The rules, as the document states them and the server checks them.
const TEXT: &str = r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$";
const TAG: &str = r"^[^,\x00-\x1f\x7f-\x9f]+$";
const COVER_URL: &str = crate::upstream::HTTP_URL;
const MAX_COVER_URL_CHARS: usize = 3200;
const ASCII: &str = r"^[\x20-\x7e]*$";

fn cover_url_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(MAX_COVER_URL_CHARS))
        .pattern(Some(COVER_URL))
        .build()
}

fn tags_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_TAG_CHARS))
                .pattern(Some(TAG)),
        )
        .max_items(Some(MAX_TAGS))
        .build()
}

static TEXT_RULE: LazyLock<Regex> = LazyLock::new(|| compile(TEXT));
static TAG_RULE: LazyLock<Regex> = LazyLock::new(|| compile(TAG));
static COVER_URL_RULE: LazyLock<Regex> = LazyLock::new(|| compile(COVER_URL));
static ASCII_RULE: LazyLock<Regex> = LazyLock::new(|| compile(ASCII));

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the rules are valid patterns")
}

/// Attributes within AddMedia's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MediaAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cate_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cover_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

impl MediaAttributes {
    /// Checks every limit and reports all violations at once, one per field.
    pub fn parse(input: MediaAttributesInput) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut check =
            |field: &str, value: &Option<String>, max: usize, rule: &Regex, what: &str| {
                if let Some(v) = value {
                    if v.chars().count() > max {
                        problems.push(format!("{field} must be at most {max} characters"));
                    }
                    if !rule.is_match(v) {
                        problems.push(format!("{field} must be {what}"));
                    }
                }
            };
        let text = "text without control characters (newline and tab allowed)";
        check("title", &input.title, 128, &TEXT_RULE, text);
        check("description", &input.description, 1024, &TEXT_RULE, text);
        let url = "an http:// or https:// URL with a DNS name or IPv4 address";
        check(
            "cover_url",
            &input.cover_url,
            MAX_COVER_URL_CHARS,
            &COVER_URL_RULE,
            url,
        );
        check(
            "user_data",
            &input.user_data,
            1024,
            &ASCII_RULE,
            "printable ASCII",
        );
        // The pattern admits only URLs that parse (IDNA labels aside, which no pattern checks).
        if let Some(u) = &input.cover_url
            && COVER_URL_RULE.is_match(u)
            && url::Url::parse(u).is_err()
        {
            problems.push("cover_url is not a valid URL".into());
        }
        if input.cate_id.is_some_and(|c| c < 0) {
            problems.push("cate_id must be an integer >= 0".into());
        }
        let tags = input.tags.unwrap_or_default();
        if tags.len() > MAX_TAGS {
            problems.push(format!("tags: at most {MAX_TAGS} tags"));
        }
        for tag in &tags {
            if tag.chars().count() > MAX_TAG_CHARS || !TAG_RULE.is_match(tag) {
                problems.push(format!(
                    "tag {tag:?} must be 1-{MAX_TAG_CHARS} characters without ',' or control characters"
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(MediaAttributes {
            title: input.title,
            description: input.description,
            tags,
            cate_id: input.cate_id,
            cover_url: input.cover_url,
            user_data: input.user_data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_values_at_the_limits() {
        let ok = MediaAttributes::parse(MediaAttributesInput {
            title: Some("t".repeat(128)),
            description: Some("d".repeat(1024)),
            tags: Some((0..16).map(|i| format!("{i:0>32}")).collect()),
            cate_id: Some(0),
            cover_url: Some("https://cdn.example.com/c.jpg".into()),
            user_data: Some("u".repeat(1024)),
        });
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn reports_every_violation() {
        let err = MediaAttributes::parse(MediaAttributesInput {
            title: Some("t".repeat(129)),
            description: Some("d".repeat(1025)),
            tags: Some(vec!["a,b".into(), "x".repeat(33)]),
            cate_id: Some(-1),
            cover_url: Some("javascript:alert(1)".into()),
            user_data: Some("u".repeat(1025)),
        })
        .unwrap_err();
        assert_eq!(err.len(), 7, "{err:?}");
        let too_many = MediaAttributes::parse(MediaAttributesInput {
            tags: Some(vec!["t".into(); 17]),
            ..Default::default()
        });
        assert!(too_many.is_err());
    }

    #[test]
    fn lengths_count_characters_and_whole_fields_are_ascii() {
        let wide = MediaAttributes::parse(MediaAttributesInput {
            title: Some("影".repeat(128)),
            tags: Some(vec!["旅".repeat(32)]),
            ..Default::default()
        });
        assert!(wide.is_ok(), "{wide:?}");
        for input in [
            MediaAttributesInput {
                user_data: Some("é".into()),
                ..Default::default()
            },
            MediaAttributesInput {
                cover_url: Some("https://cdn.example.com/影.jpg".into()),
                ..Default::default()
            },
            MediaAttributesInput {
                tags: Some(vec![String::new()]),
                ..Default::default()
            },
            MediaAttributesInput {
                cover_url: Some("http://cdn.example.com:99999/c.jpg".into()),
                ..Default::default()
            },
            MediaAttributesInput {
                cover_url: Some("http://user@cdn.example.com/c.jpg".into()),
                ..Default::default()
            },
            MediaAttributesInput {
                title: Some("a\u{85}b".into()),
                ..Default::default()
            },
        ] {
            assert!(MediaAttributes::parse(input).is_err());
        }
    }

    #[test]
    fn the_document_states_the_rules_the_server_checks() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(MediaAttributesInput::schema()).unwrap();
        let pattern = |field: &str| {
            schema["properties"][field]["pattern"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(pattern("title"), TEXT);
        assert_eq!(pattern("description"), TEXT);
        assert_eq!(pattern("cover_url"), COVER_URL);
        assert_eq!(pattern("user_data"), ASCII);
        assert_eq!(schema["properties"]["tags"]["items"]["pattern"], TAG);
        assert_eq!(schema["properties"]["tags"]["maxItems"], MAX_TAGS);
    }
}

//! Media attributes a client attaches to an upload and MPS `AddMedia` receives, checked
//! against AddMedia's limits when the upload is requested, not when processing fails later.

use serde::{Deserialize, Serialize};

/// Attributes as the client sends them; [`MediaAttributes::parse`] is the only way to a
/// checked value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaAttributesInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub cate_id: Option<i64>,
    pub cover_url: Option<String>,
    pub user_data: Option<String>,
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
        let mut max_bytes = |field: &str, value: &Option<String>, max: usize| {
            if let Some(v) = value {
                if v.len() > max {
                    problems.push(format!("{field} must be at most {max} bytes"));
                }
                if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    problems.push(format!("{field} must not contain control characters"));
                }
            }
        };
        max_bytes("title", &input.title, 128);
        max_bytes("description", &input.description, 1024);
        max_bytes("cover_url", &input.cover_url, 3200);
        max_bytes("user_data", &input.user_data, 1024);
        if let Some(url) = &input.cover_url
            && !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
        {
            problems.push("cover_url must be an http:// or https:// URL".into());
        }
        if input.cate_id.is_some_and(|c| c < 0) {
            problems.push("cate_id must be an integer >= 0".into());
        }
        let tags = input.tags.unwrap_or_default();
        if tags.len() > 16 {
            problems.push("tags: at most 16 tags".into());
        }
        for tag in &tags {
            if tag.is_empty() || tag.len() > 32 {
                problems.push(format!("tag {tag:?} must be 1-32 bytes"));
            } else if tag.contains(',') || tag.chars().any(char::is_control) {
                problems.push(format!(
                    "tag {tag:?} must not contain ',' or control characters"
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
}

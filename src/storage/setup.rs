//! `mediagate bucket setup`: the input bucket prepared for direct browser uploads with the
//! service keys. CORS lets `server.cors_origins` send the upload requests and read `ETag`
//! (multipart needs it); a lifecycle rule aborts multipart uploads left incomplete under the
//! upload prefix; on S3 stores, a public access block keeps uploaders from publishing their
//! objects with ACLs. Other rules of the bucket are kept: mediagate owns the CORS rules of its
//! origins, its lifecycle rule (by ID) and the block's `IgnorePublicAcls`, nothing else.

use anyhow::{Context, bail};

use super::signed::{BucketClient, Call, elements, values};
use super::{Provider, ReaderSettings};

/// The ID of mediagate's lifecycle rule for the uploads.
pub const LIFECYCLE_RULE_ID: &str = "mediagate-abort-incomplete-multipart";
/// The ID of its rule for the protected copies (a copy in parts a crash left unfinished).
pub const COPIES_RULE_ID: &str = "mediagate-abort-incomplete-copies";
const METHODS: &[&str] = &["PUT", "POST", "GET", "HEAD", "DELETE"];

/// What setting up the bucket changed, or would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `cors`, `lifecycle` or (S3) `publicAccessBlock`.
    pub what: &'static str,
    /// The bucket's configuration after the change (`None`: already as wanted).
    pub set: Option<String>,
}

/// The bucket's CORS document with the rules of `origins` replaced by mediagate's: other
/// origins' rules are kept.
pub fn cors_document(current: Option<&str>, origins: &[String]) -> String {
    let kept = elements(current.unwrap_or_default(), "CORSRule")
        .into_iter()
        .filter(|rule| {
            !values(rule, "AllowedOrigin")
                .iter()
                .any(|o| origins.contains(o))
        });
    let ours = format!(
        "<CORSRule>{}{}<AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule>",
        origins
            .iter()
            .map(|o| format!("<AllowedOrigin>{}</AllowedOrigin>", escape(o)))
            .collect::<String>(),
        METHODS
            .iter()
            .map(|m| format!("<AllowedMethod>{m}</AllowedMethod>"))
            .collect::<String>(),
    );
    let rules: String = kept.map(str::to_owned).chain([ours]).collect();
    format!("<CORSConfiguration>{rules}</CORSConfiguration>")
}

/// The bucket's lifecycle document with mediagate's rules (by ID) set to abort multipart
/// uploads under `prefix`, and copies in parts under `copies` when it keeps copies, after
/// `days`; other rules are kept.
pub fn lifecycle_document(
    current: Option<&str>,
    provider: Provider,
    (prefix, copies): (&str, Option<&str>),
    days: u32,
) -> String {
    let ids = [LIFECYCLE_RULE_ID, COPIES_RULE_ID];
    let kept = elements(current.unwrap_or_default(), "Rule")
        .into_iter()
        .filter(|rule| {
            !values(rule, "ID")
                .first()
                .is_some_and(|id| ids.contains(&id.as_str()))
        });
    let rule = |id: &str, prefix: &str| {
        let prefix = escape(prefix);
        match provider {
            Provider::S3 => format!(
                "<Rule><ID>{id}</ID><Filter><Prefix>{prefix}</Prefix></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>{days}</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>"
            ),
            Provider::Aliyun => format!(
                "<Rule><ID>{id}</ID><Prefix>{prefix}</Prefix><Status>Enabled</Status><AbortMultipartUpload><Days>{days}</Days></AbortMultipartUpload></Rule>"
            ),
        }
    };
    let ours = std::iter::once(rule(LIFECYCLE_RULE_ID, prefix))
        .chain(copies.map(|c| rule(COPIES_RULE_ID, c)));
    let rules: String = kept.map(str::to_owned).chain(ours).collect();
    format!("<LifecycleConfiguration>{rules}</LifecycleConfiguration>")
}

/// The bucket's public access block with public ACLs ignored, its other settings kept;
/// `None` when the current one ignores them already. Uploaders hold credentials that write
/// objects, and a store that acts on an ACL header nobody signed would let them publish their
/// object: with this every public ACL, set before or after, grants nothing. `BlockPublicAcls`
/// is left as it is: Ceph RGW 16 then refuses every upload made with session credentials, not
/// only public ones (measured), and ignoring public ACLs already makes them harmless.
pub fn public_access_block_document(current: Option<&str>) -> Option<String> {
    let current = current.unwrap_or_default();
    let is_true = |name| values(current, name).first().map(String::as_str) == Some("true");
    if is_true("IgnorePublicAcls") {
        return None;
    }
    Some(format!(
        r#"<PublicAccessBlockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><BlockPublicAcls>{}</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls><BlockPublicPolicy>{}</BlockPublicPolicy><RestrictPublicBuckets>{}</RestrictPublicBuckets></PublicAccessBlockConfiguration>"#,
        is_true("BlockPublicAcls"),
        is_true("BlockPublicPolicy"),
        is_true("RestrictPublicBuckets")
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The bucket's configuration API (`?cors`, `?lifecycle`), signed with the service keys.
pub struct BucketApi {
    client: BucketClient,
}

impl BucketApi {
    pub fn new(settings: ReaderSettings, http: reqwest::Client) -> Self {
        BucketApi {
            client: BucketClient::new(settings, http),
        }
    }

    /// The bucket's `sub` configuration; `None` when it has none.
    pub async fn get(&self, sub: &'static str) -> anyhow::Result<Option<String>> {
        let response = self.send("GET", sub, None).await?;
        let status = response.status();
        let body = response
            .text()
            .await
            .context("reading the store's answer")?;
        match status.as_u16() {
            200 => Ok(Some(body)),
            404 => Ok(None),
            _ => bail!(
                "GET ?{sub}: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            ),
        }
    }

    pub async fn put(&self, sub: &'static str, document: &str) -> anyhow::Result<()> {
        let response = self.send("PUT", sub, Some(document)).await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!(
                "PUT ?{sub}: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            );
        }
        Ok(())
    }

    async fn send(
        &self,
        method: &str,
        sub: &'static str,
        body: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        use base64::Engine;
        use md5::Digest;
        let body = body.unwrap_or_default();
        let mut call = Call::new(method, "");
        call.query = vec![(sub, None)];
        if method == "PUT" {
            let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
            call.headers.push(("content-md5".into(), md5));
            call.headers
                .push(("content-type".into(), "application/xml".into()));
        }
        call.body = body.as_bytes().to_vec();
        self.client
            .send(call)
            .await
            .with_context(|| format!("{method} ?{sub}"))
    }
}

/// Brings the bucket's CORS and lifecycle configuration to what browser uploads need; with
/// `dry_run`, only says what it would change.
pub async fn setup(
    api: &BucketApi,
    provider: Provider,
    origins: &[String],
    prefixes: (&str, Option<&str>),
    abort_days: u32,
    dry_run: bool,
) -> anyhow::Result<Vec<Change>> {
    let mut changes = Vec::new();
    // Without origins there is no browser to let in (and a rule without one is malformed).
    if !origins.is_empty() {
        let cors = api.get("cors").await?;
        let wanted = cors_document(cors.as_deref(), origins);
        changes.push(Change {
            what: "cors",
            set: (!same(cors.as_deref(), &wanted, "CORSRule")).then_some(wanted),
        });
    }
    let lifecycle = api.get("lifecycle").await?;
    let wanted = lifecycle_document(lifecycle.as_deref(), provider, prefixes, abort_days);
    changes.push(Change {
        what: "lifecycle",
        set: (!same(lifecycle.as_deref(), &wanted, "Rule")).then_some(wanted),
    });
    // OSS V1 signs every `x-oss-*` header a request carries, so an uploader cannot add an ACL
    // to a signed request there; S3-compatible stores need the block.
    if provider == Provider::S3 {
        let block = api.get("publicAccessBlock").await?;
        changes.push(Change {
            what: "publicAccessBlock",
            set: public_access_block_document(block.as_deref()),
        });
    }
    if !dry_run {
        for change in &changes {
            if let Some(document) = &change.set {
                api.put(change.what, document).await?;
            }
        }
    }
    Ok(changes)
}

/// Whether the bucket's `current` document has the same rules as `wanted` (compared
/// rule by rule, ignoring the order and formatting of elements within each).
fn same(current: Option<&str>, wanted: &str, rule: &str) -> bool {
    let normal = |xml: &str| {
        let mut rules: Vec<String> = elements(xml, rule)
            .into_iter()
            .map(|r| {
                let mut parts: Vec<String> = r
                    .split('<')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect();
                parts.sort();
                parts.join("<")
            })
            .collect();
        rules.sort();
        rules
    };
    current.is_some_and(|c| normal(c) == normal(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_replaces_only_the_rules_of_our_origins() {
        let current = "<CORSConfiguration><CORSRule><AllowedOrigin>https://other.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule><CORSRule><AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>PUT</AllowedMethod></CORSRule></CORSConfiguration>";
        let doc = cors_document(Some(current), &["https://app.example".into()]);
        assert_eq!(elements(&doc, "CORSRule").len(), 2);
        assert!(doc.contains("https://other.example"));
        assert!(doc.contains("<ExposeHeader>ETag</ExposeHeader>"));
        assert!(doc.contains("<AllowedMethod>DELETE</AllowedMethod>"));
        assert!(same(
            Some(&doc),
            &cors_document(Some(&doc), &["https://app.example".into()]),
            "CORSRule"
        ));
    }

    #[test]
    fn public_acls_are_ignored_and_other_settings_kept() {
        let doc = public_access_block_document(None).unwrap();
        assert!(doc.contains("<IgnorePublicAcls>true</IgnorePublicAcls>"));
        assert!(doc.contains("<BlockPublicAcls>false</BlockPublicAcls>"));
        assert!(doc.contains("<BlockPublicPolicy>false</BlockPublicPolicy>"));
        let current = r#"<PublicAccessBlockConfiguration xmlns="x"><BlockPublicAcls>true</BlockPublicAcls><IgnorePublicAcls>false</IgnorePublicAcls><BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>false</RestrictPublicBuckets></PublicAccessBlockConfiguration>"#;
        let doc = public_access_block_document(Some(current)).unwrap();
        assert!(doc.contains("<IgnorePublicAcls>true</IgnorePublicAcls>"));
        assert!(doc.contains("<BlockPublicAcls>true</BlockPublicAcls>"));
        assert!(doc.contains("<BlockPublicPolicy>true</BlockPublicPolicy>"));
        assert_eq!(public_access_block_document(Some(&doc)), None);
    }

    #[test]
    fn lifecycle_keeps_other_rules_and_sets_ours_by_id() {
        let current = "<LifecycleConfiguration><Rule><ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule><Rule><ID>mediagate-abort-incomplete-multipart</ID><Filter><Prefix>old/</Prefix></Filter><Status>Enabled</Status></Rule></LifecycleConfiguration>";
        let doc = lifecycle_document(Some(current), Provider::S3, ("uploads/", None), 2);
        assert_eq!(elements(&doc, "Rule").len(), 2);
        assert!(doc.contains("<ID>logs</ID>") && !doc.contains("old/"));
        assert!(doc.contains("<DaysAfterInitiation>2</DaysAfterInitiation>"));
        let oss = lifecycle_document(None, Provider::Aliyun, ("uploads/", None), 3);
        assert!(oss.contains("<AbortMultipartUpload><Days>3</Days></AbortMultipartUpload>"));
        // With copies kept, a second rule for their prefix; run again, the same two.
        let doc = lifecycle_document(
            Some(current),
            Provider::S3,
            ("uploads/", Some("verified/")),
            2,
        );
        let again =
            lifecycle_document(Some(&doc), Provider::S3, ("uploads/", Some("verified/")), 2);
        assert_eq!(doc, again);
        assert_eq!(elements(&doc, "Rule").len(), 3);
        assert!(doc.contains(
            "<ID>mediagate-abort-incomplete-copies</ID><Filter><Prefix>verified/</Prefix>"
        ));
        // Copies turned off: their rule goes.
        let off = lifecycle_document(Some(&doc), Provider::S3, ("uploads/", None), 2);
        assert_eq!(elements(&off, "Rule").len(), 2);
    }
}

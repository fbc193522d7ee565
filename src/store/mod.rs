//! Database access: one pool per role over SQLite (embedded default) or PostgreSQL, the
//! migrations for each, and the queries mediagate makes. Timestamps are Unix milliseconds so
//! the same SQL reads the same on both databases.

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

use crate::kinds::{Reason, UploadMode, UploadState};
pub use audit::{Actor, AuditRow};
use batch::{BatchRow, Batched, Batcher};
pub use events::{EventRow, EventWrite, Recorded, UploadChange};
pub use outcomes::{Outcome, Reprocess, VerifiedWrite};
pub use reconcile::Unannounced;
pub use reports::{Report, ReportRow, ReportTarget, Reported};
pub use runs::{DueRun, Lookup, OutputRow, RunRow};
use secrecy::SecretString;
use serde::Deserialize;
pub use triggers::{Claimed, NewTrigger, QueueStats, TriggerRow};
pub use users::{Held, Usage, UserChange, UserRow};
pub use workflows::Saved;

mod audit;
mod batch;
mod events;
mod outcomes;
mod reconcile;
mod reports;
mod runs;
mod triggers;
mod users;
mod workflows;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// SQLite allows one writer at a time; with several pooled writers each would spin in its
    /// busy handler, so on SQLite writes go through a pool of one connection that queues them
    /// fairly. On PostgreSQL both are the same pool.
    writer: AnyPool,
    reader: AnyPool,
    /// Group commit for uploads (the write on the vending hot path), notifications, delivery
    /// outcomes and claims: one queue on SQLite, where one transaction carries every kind; on
    /// PostgreSQL one queue per kind, in the order of `Write::kind`, so that the kinds commit
    /// side by side on separate connections and hold their row locks only as long as their
    /// own statements need (one queue for all of them cost a fifth of the callback rate).
    writes: std::sync::Arc<[Batcher<Write>]>,
    workflow_cache: std::sync::Arc<workflows::WorkflowCache>,
    _checkpoints: Option<std::sync::Arc<Checkpoints>>,
}

/// An upload as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRow {
    pub id: String,
    pub owner: String,
    pub subject: String,
    pub bucket: String,
    pub object_key: String,
    pub file_name: String,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub mode: UploadMode,
    /// JSON of [`crate::media::MediaAttributes`].
    pub media: String,
    pub state: UploadState,
    pub state_reason: Option<Reason>,
    pub created_at: i64,
    pub uploaded_at: Option<i64>,
    pub updated_at: i64,
}

macro_rules! upload_columns {
    () => {
        "id, owner, subject, bucket, object_key, file_name, size, content_type, mode, media, state, state_reason, created_at, uploaded_at, updated_at"
    };
}
const UPLOAD_COLUMNS: &str = upload_columns!();

impl BatchRow for UploadRow {
    const INSERT: &'static str = concat!("INSERT INTO uploads (", upload_columns!(), ")");
    const COLUMNS: usize = 15;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        query
            .bind(self.id.clone())
            .bind(self.owner.clone())
            .bind(self.subject.clone())
            .bind(self.bucket.clone())
            .bind(self.object_key.clone())
            .bind(self.file_name.clone())
            .bind(self.size)
            .bind(self.content_type.clone())
            .bind(self.mode.as_str())
            .bind(self.media.clone())
            .bind(self.state.as_str())
            .bind(self.state_reason.map(Reason::as_str))
            .bind(self.created_at)
            .bind(self.uploaded_at)
            .bind(self.updated_at)
    }
}

#[async_trait::async_trait]
impl Batched for UploadRow {
    type Output = ();
    type Started = ();

    async fn start(jobs: &[&Self], statements: &mut batch::Statements<'_>) -> anyhow::Result<()> {
        batch::insert_rows(statements, jobs).await?;
        Ok(())
    }

    async fn finish(
        jobs: &[&Self],
        _: (),
        _: &mut batch::Statements<'_>,
    ) -> anyhow::Result<Vec<()>> {
        Ok(vec![(); jobs.len()])
    }
}

/// A write of any kind. All kinds share one queue, so that one transaction carries every
/// write waiting: on SQLite, with its single writer, batches of separate kinds took turns on
/// the connection, each with its own round trips and commit, and the worker's claims waited
/// for the connection between them.
enum Write {
    Upload(UploadRow),
    Event(EventWrite),
    Outcome(outcomes::OutcomeWrite),
    Claim(triggers::ClaimWrite),
}

enum Written {
    Upload,
    Event(Recorded),
    Outcome(bool),
    Claimed(Vec<triggers::Claimed>),
}

/// The jobs of a batch by kind, in their order.
#[derive(Default)]
struct Kinds<'a> {
    uploads: Vec<&'a UploadRow>,
    events: Vec<&'a EventWrite>,
    outcomes: Vec<&'a outcomes::OutcomeWrite>,
    claims: Vec<&'a triggers::ClaimWrite>,
}

impl<'a> Kinds<'a> {
    fn of(jobs: &[&'a Write]) -> Self {
        let mut kinds = Kinds::default();
        for job in jobs {
            match job {
                Write::Upload(w) => kinds.uploads.push(w),
                Write::Event(w) => kinds.events.push(w),
                Write::Outcome(w) => kinds.outcomes.push(w),
                Write::Claim(w) => kinds.claims.push(w),
            }
        }
        kinds
    }
}

type Started<J> = Option<<J as Batched>::Started>;

#[async_trait::async_trait]
impl Batched for Write {
    type Output = Written;
    type Started = (
        Started<UploadRow>,
        Started<EventWrite>,
        Started<outcomes::OutcomeWrite>,
        Started<triggers::ClaimWrite>,
    );

    // Uploads are at most `MAX_BATCH` rows of 15 values, always one statement; a claim is
    // one statement too.
    fn transaction(jobs: &[&Self]) -> bool {
        let k = Kinds::of(jobs);
        !k.events.is_empty()
            || !k.outcomes.is_empty()
            || match (k.uploads.is_empty(), k.claims.len()) {
                (true, n) => n > 1,
                (false, n) => n > 0,
            }
    }

    async fn start(
        jobs: &[&Self],
        statements: &mut batch::Statements<'_>,
    ) -> anyhow::Result<Self::Started> {
        let k = Kinds::of(jobs);
        Ok((
            start(&k.uploads, statements).await?,
            start(&k.events, statements).await?,
            start(&k.outcomes, statements).await?,
            start(&k.claims, statements).await?,
        ))
    }

    async fn finish(
        jobs: &[&Self],
        (uploads, events, outcomes, claims): Self::Started,
        statements: &mut batch::Statements<'_>,
    ) -> anyhow::Result<Vec<Written>> {
        let k = Kinds::of(jobs);
        let mut uploads = finish(&k.uploads, uploads, statements).await?.into_iter();
        let mut events = finish(&k.events, events, statements).await?.into_iter();
        let mut outcomes = finish(&k.outcomes, outcomes, statements).await?.into_iter();
        let mut claims = finish(&k.claims, claims, statements).await?.into_iter();
        jobs.iter()
            .map(|job| match job {
                Write::Upload(_) => uploads.next().map(|()| Written::Upload),
                Write::Event(_) => events.next().map(Written::Event),
                Write::Outcome(_) => outcomes.next().map(Written::Outcome),
                Write::Claim(_) => claims.next().map(Written::Claimed),
            })
            .collect::<Option<Vec<_>>>()
            .context("a batched write lost outputs")
    }
}

/// Starts the jobs of one kind, if any.
async fn start<J: Batched>(
    jobs: &[&J],
    statements: &mut batch::Statements<'_>,
) -> anyhow::Result<Option<J::Started>> {
    if jobs.is_empty() {
        return Ok(None);
    }
    J::start(jobs, statements).await.map(Some)
}

async fn finish<J: Batched>(
    jobs: &[&J],
    started: Option<J::Started>,
    statements: &mut batch::Statements<'_>,
) -> anyhow::Result<Vec<J::Output>> {
    match started {
        Some(started) => J::finish(jobs, started, statements).await,
        None => Ok(Vec::new()),
    }
}

impl Write {
    fn kind(&self) -> usize {
        match self {
            Write::Upload(_) => 0,
            Write::Event(_) => 1,
            Write::Outcome(_) => 2,
            Write::Claim(_) => 3,
        }
    }
}

impl Store {
    /// Writes `write` with others waiting, and returns its output, which `output` unpacks.
    async fn write<T>(
        &self,
        write: Write,
        output: impl FnOnce(Written) -> Option<T>,
    ) -> anyhow::Result<T> {
        let queue = write.kind() % self.writes.len();
        output(self.writes[queue].submit(write).await?)
            .context("a batched write returned another kind of output")
    }
}

impl Store {
    /// Connects, creating the SQLite file and its directory if needed, and applies migrations.
    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Store> {
        install_default_drivers();
        let url = config.url.expose_secret();
        let backend = match config.scheme() {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            other => anyhow::bail!("unsupported database scheme {other:?}"),
        };
        let store = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url)?;
                let writer = sqlite_pool(1)
                    .connect(&url)
                    .await
                    .context("opening SQLite")?;
                let reader = sqlite_pool(config.max_connections)
                    .connect(&url)
                    .await
                    .context("opening SQLite")?;
                Store {
                    backend,
                    writes: [Batcher::start(writer.clone(), backend, 1)].into(),
                    workflow_cache: Default::default(),
                    _checkpoints: Some(std::sync::Arc::new(Checkpoints::start(reader.clone()))),
                    writer,
                    reader,
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url)
                    .await
                    .context("connecting to PostgreSQL")?;
                // Notifications and outcomes get several lanes, each a connection; uploads are
                // one statement a batch, and a worker claims one batch at a time.
                let lanes = (config.max_connections as usize / 4).max(1);
                let queue = |lanes| Batcher::start(pool.clone(), backend, lanes);
                Store {
                    backend,
                    writes: [queue(1), queue(lanes), queue(lanes), queue(1)].into(),
                    workflow_cache: Default::default(),
                    _checkpoints: None,
                    writer: pool.clone(),
                    reader: pool,
                }
            }
        };
        store
            .migrator()
            .run(&store.writer)
            .await
            .context("applying database migrations")?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Ready when the database answers and every migration this build knows is applied.
    pub async fn check_ready(&self) -> anyhow::Result<()> {
        let applied: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.reader)
            .await
            .context("database unreachable")?
            .try_get(0)?;
        let known = self.migrator().iter().count() as i64;
        anyhow::ensure!(applied >= known, "{applied} of {known} migrations applied");
        Ok(())
    }

    /// Records a new upload; returns once it is committed.
    pub async fn insert_upload(&self, upload: UploadRow) -> anyhow::Result<()> {
        self.write(Write::Upload(upload), |w| {
            matches!(w, Written::Upload).then_some(())
        })
        .await
    }

    pub async fn get_upload(&self, id: &str) -> anyhow::Result<Option<UploadRow>> {
        let row = sqlx::query(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .context("reading upload")?;
        row.map(|r| upload_from_row(&r)).transpose()
    }

    /// The uploads changed at or after `since` (Unix ms), with when, at most 1000: a change
    /// made in the same millisecond as the last one read is read again rather than missed.
    pub async fn uploads_changed_since(&self, since: i64) -> anyhow::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, updated_at FROM uploads WHERE updated_at >= $1 ORDER BY updated_at LIMIT 1000",
        )
        .bind(since)
        .fetch_all(&self.reader)
        .await
        .context("reading changed uploads")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The owner's uploads, newest first, after `cursor` (an upload id) when given.
    pub async fn list_uploads(
        &self,
        owner: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> anyhow::Result<Vec<UploadRow>> {
        // Upload ids are UUIDv7: their text order is their creation order.
        let rows = match cursor {
            Some(cursor) => {
                sqlx::query(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE owner = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(owner)
                .bind(cursor)
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE owner = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(owner)
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
            }
        }
        .context("listing uploads")?;
        rows.iter().map(upload_from_row).collect()
    }

    /// Stores a new API key's hash; `Ok(false)` when the name is taken.
    /// Records the multipart upload a browser's signed requests for `upload_id` belong to
    /// (written only when it changes).
    pub async fn note_multipart_upload(
        &self,
        upload_id: &str,
        multipart: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE uploads SET multipart_upload_id = $1 WHERE id = $2 AND (multipart_upload_id IS NULL OR multipart_upload_id <> $1)",
        )
        .bind(multipart)
        .bind(upload_id)
        .execute(&self.writer)
        .await
        .context("recording a multipart upload")?;
        Ok(())
    }

    /// The multipart upload last seen for `upload_id`.
    pub async fn multipart_upload(&self, upload_id: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT multipart_upload_id FROM uploads WHERE id = $1")
            .bind(upload_id)
            .fetch_optional(&self.reader)
            .await
            .context("reading a multipart upload")?;
        Ok(row.and_then(|r| r.try_get(0).ok()).flatten())
    }

    pub async fn insert_api_key(&self, name: &str, key_hash: &str) -> anyhow::Result<bool> {
        let result = sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(name)
        .bind(key_hash)
        .bind(now_millis())
        .execute(&self.writer)
        .await
        .context("storing API key")?;
        Ok(result.rows_affected() == 1)
    }

    /// The name of the API key with this hash, if any.
    pub async fn api_key_name(&self, key_hash: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT name FROM api_keys WHERE key_hash = $1")
            .bind(key_hash)
            .fetch_optional(&self.reader)
            .await
            .context("looking up API key")?;
        row.map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .transpose()
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

fn upload_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<UploadRow> {
    Ok(UploadRow {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        subject: r.try_get("subject")?,
        bucket: r.try_get("bucket")?,
        object_key: r.try_get("object_key")?,
        file_name: r.try_get("file_name")?,
        size: r.try_get("size")?,
        content_type: r.try_get("content_type")?,
        mode: stored(r, "mode", UploadMode::parse)?,
        media: r.try_get("media")?,
        state: stored(r, "state", UploadState::parse)?,
        state_reason: stored_opt(r, "state_reason", Reason::parse)?,
        created_at: r.try_get("created_at")?,
        uploaded_at: r.try_get("uploaded_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The column `name` of `r` read back into its typed value; text no version wrote is an error.
pub(crate) fn stored<T>(
    r: &sqlx::any::AnyRow,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> anyhow::Result<T> {
    let text: String = r.try_get(name)?;
    parse(&text).ok_or_else(|| anyhow::anyhow!("unknown {name} {text:?} in the database"))
}

/// As [`stored`] for a column that may be NULL.
pub(crate) fn stored_opt<T>(
    r: &sqlx::any::AnyRow,
    name: &str,
    parse: fn(&str) -> Option<T>,
) -> anyhow::Result<Option<T>> {
    let text: Option<String> = r.try_get(name)?;
    text.map(|text| {
        parse(&text).ok_or_else(|| anyhow::anyhow!("unknown {name} {text:?} in the database"))
    })
    .transpose()
}

/// `$first, $first+1, ...`: `count` numbered placeholders, for PostgreSQL and SQLite alike.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Adds `mode=rwc` (create if missing) unless the URL sets a mode, and creates the directory.
fn sqlite_url(url: &str) -> anyhow::Result<String> {
    let path_part = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = path_part.split_once('?').unwrap_or((path_part, ""));
    if !path.is_empty()
        && path != ":memory:"
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating database directory {}", dir.display()))?;
    }
    if query.split('&').any(|p| p.starts_with("mode=")) {
        Ok(url.to_owned())
    } else if query.is_empty() {
        Ok(format!("{url}?mode=rwc"))
    } else {
        Ok(format!("{url}&mode=rwc"))
    }
}

fn sqlite_pool(max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A connection to a local file does not go stale; testing it would cost a round trip
        // to its thread on every acquire.
        .test_before_acquire(false)
        .after_connect(|conn, _| {
            Box::pin(async move {
                // WAL lets readers run beside the writer; synchronous=NORMAL keeps every commit
                // across a process crash (only power loss can lose the last ones). Most of the
                // WAL is copied back by `Checkpoints`, off the write path; the writer's own
                // checkpoint at 10,000 pages is left only what came since, and is what lets
                // the WAL start over (see `Checkpoints`). A batch's multi-row statements each
                // keep a statement journal, to undo just that statement if it fails; past
                // 64 KiB SQLite spills it to a temporary file, and under load those writes took
                // a twentieth of the process's CPU. In memory, its size is bounded by the
                // batch's.
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 10000; PRAGMA temp_store = MEMORY;",
                )
                .await?;
                Ok(())
            })
        })
}

/// Copies SQLite's write-ahead log back into the database file every so often, from a reader
/// connection. Left to the writer's automatic checkpoint, the whole copy and its sync ran
/// inside the commit that crossed the threshold: under load a fifth of the writer's waits were
/// that sync, with every batch queued behind it. A passive checkpoint never waits for the
/// writer, nor the writer for it. It cannot finish the log while the writer appends to it, so
/// the writer's own checkpoint still runs at its threshold, but finds almost everything
/// copied; the log starts over after it, which keeps the file from growing.
struct Checkpoints(tokio::task::AbortHandle);

const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

impl Checkpoints {
    fn start(pool: AnyPool) -> Checkpoints {
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(CHECKPOINT_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let done = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await;
                if pool.is_closed() {
                    break;
                }
                if let Err(e) = done {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; retrying");
                }
            }
        });
        Checkpoints(task.abort_handle())
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `[database]`: where the data lives.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `MEDIAGATE__DATABASE__URL`, default `sqlite://data/mediagate.db`; or `postgres://...`.
    pub url: SecretString,
    /// `MEDIAGATE__DATABASE__MAX_CONNECTIONS`, default 8.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("sqlite://data/mediagate.db"),
            max_connections: 8,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may carry a password; show only its scheme.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &format_args!("{}://[REDACTED]", self.scheme()))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl DatabaseConfig {
    pub fn scheme(&self) -> &str {
        self.url
            .expose_secret()
            .split_once("://")
            .map_or("", |(scheme, _)| scheme)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use secrecy::SecretString;

    pub(super) fn upload(id: &str) -> UploadRow {
        UploadRow {
            id: id.into(),
            owner: "alice".into(),
            subject: "alice".into(),
            bucket: "b".into(),
            object_key: format!("uploads/alice/{id}/a.mp4"),
            file_name: "a.mp4".into(),
            size: None,
            content_type: None,
            mode: UploadMode::Sts,
            media: "{}".into(),
            state: UploadState::Issued,
            state_reason: None,
            created_at: 1,
            uploaded_at: None,
            updated_at: 1,
        }
    }

    pub(super) async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&DatabaseConfig {
            url: SecretString::from(format!("sqlite://{}/t.db", dir.path().display())),
            max_connections: 2,
        })
        .await
        .unwrap();
        (dir, store)
    }

    /// The queue keeps SQLite's single writer connection while writes keep coming; a write
    /// made outside the queues still gets it, without waiting for the stream to stop.
    #[tokio::test]
    async fn writes_outside_the_queue_get_the_connection_while_batches_keep_coming() {
        let (_dir, store) = temp_store().await;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = Vec::new();
        // More writers than a batch takes, so that the queue never empties.
        for w in 0..600 {
            let (store, done) = (store.clone(), done.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0;
                // Bounded, so that a test that fails still ends.
                while !done.load(std::sync::atomic::Ordering::Relaxed) && i < 100 {
                    store
                        .insert_upload(upload(&format!("w{w}-{i}")))
                        .await
                        .unwrap();
                    i += 1;
                }
                i
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let outside = store.insert_api_key("ops", "hash").await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut left = 0;
        for w in writers {
            left += 100 - w.await.unwrap();
        }
        assert!(outside.unwrap());
        assert!(
            left > 0,
            "the write outside the queue waited until every batched write was done"
        );
    }

    #[tokio::test]
    async fn concurrent_writes_commit_together_and_a_bad_one_fails_alone() {
        let (_dir, store) = temp_store().await;
        store.insert_upload(upload("dup")).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..100 {
            let store = store.clone();
            let id = if i == 50 {
                "dup".to_string()
            } else {
                format!("id-{i:03}")
            };
            tasks.push(tokio::spawn(async move {
                store.insert_upload(upload(&id)).await
            }));
        }
        let mut failures = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failures += 1;
            }
        }
        assert_eq!(failures, 1);
        let rows = store.list_uploads("alice", 200, None).await.unwrap();
        assert_eq!(rows.len(), 100);
        assert_eq!(
            store.get_upload("id-042").await.unwrap().unwrap(),
            upload("id-042")
        );
    }

    pub(super) fn event(key: &str, etag: &str, upload: Option<&str>) -> EventWrite {
        EventWrite {
            event: EventRow {
                id: uuid::Uuid::now_v7().to_string(),
                bucket: "b".into(),
                object_key: key.into(),
                etag: etag.into(),
                size: Some(7),
                content_type: None,
                source: crate::kinds::EventSource::S3Events,
                upload_id: upload.map(str::to_owned),
                outcome: crate::kinds::EventOutcome::Queued,
                reason: None,
                received_at: 5,
            },
            completes: true,
            upload: upload.map_or(UploadChange::None, |id| UploadChange::Existing {
                id: id.into(),
            }),
            upload_state: UploadState::Uploaded,
            upload_reason: None,
            upload_size: Some(7),
            triggers: vec![NewTrigger {
                id: uuid::Uuid::now_v7().to_string(),
                workflow_id: "w".into(),
                workflow_name: "w".into(),
                sink: crate::kinds::TriggerSink::Webhook,
                payload: "{}".into(),
                tracks_outcome: false,
            }],
        }
    }
}

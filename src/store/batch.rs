//! Group insert. Concurrent inserts into one table are queued to a task that writes all that
//! are waiting as one multi-row `INSERT` (one statement, so atomic on its own) and answers each
//! caller only after it has committed. A commit and a round trip to the database cost far more
//! than a row, so sharing them is what lets write-heavy endpoints scale with concurrency; a
//! lone insert waits for nothing.

use std::fmt::Write;
use std::sync::Arc;

use anyhow::Context;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::Backend;

/// A row that can be inserted in batches.
pub trait BatchRow: Send + Sync + 'static {
    /// `INSERT INTO table (col, ...)`.
    const INSERT: &'static str;
    const COLUMNS: usize;
    /// Binds this row's values in column order.
    fn bind<'q>(
        &'q self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>>;
}

/// Most rows in one statement (SQLite allows 32766 bound values).
const MAX_BATCH: usize = 256;
/// Rows waiting beyond this make callers wait to enqueue (backpressure).
const QUEUE: usize = 4096;

type Pending<R> = (Arc<R>, oneshot::Sender<anyhow::Result<()>>);

pub struct InsertBatcher<R: BatchRow> {
    queue: mpsc::Sender<Pending<R>>,
}

impl<R: BatchRow> Clone for InsertBatcher<R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<R: BatchRow> InsertBatcher<R> {
    pub fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, backend, rx));
        Self { queue }
    }

    /// Inserts `row`, returning once it is committed. If any row of a batch fails (a
    /// constraint), the batch is retried row by row so only that row fails.
    pub async fn insert(&self, row: R) -> anyhow::Result<()> {
        let (done, result) = oneshot::channel();
        let stopped = || anyhow::anyhow!("database writer has stopped");
        self.queue
            .send((Arc::new(row), done))
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn run<R: BatchRow>(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<Pending<R>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let rows: Vec<&R> = batch.iter().map(|(row, _)| &**row).collect();
        match insert(&pool, backend, &rows).await {
            Ok(()) => batch.drain(..).for_each(|(_, done)| {
                let _ = done.send(Ok(()));
            }),
            // Only a constraint can be one row's fault; an outage would fail row by row too,
            // each after its own timeout.
            Err(e) if batch.len() > 1 && is_row_error(&e) => {
                warn!(
                    error = format!("{e:#}"),
                    rows = batch.len(),
                    "batched insert failed; inserting row by row"
                );
                for (row, done) in batch.drain(..) {
                    let _ = done.send(insert(&pool, backend, &[&*row]).await);
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(anyhow::anyhow!("{message}")));
                }
            }
        }
    }
}

fn is_row_error(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(_))
    )
}

async fn insert<R: BatchRow>(pool: &AnyPool, backend: Backend, rows: &[&R]) -> anyhow::Result<()> {
    let mut sql = String::with_capacity(R::INSERT.len() + rows.len() * R::COLUMNS * 5);
    sql.push_str(R::INSERT);
    sql.push_str(" VALUES ");
    let mut n = 0;
    for i in 0..rows.len() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 0..R::COLUMNS {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            // PostgreSQL wants `$N`. SQLite takes it too, but the driver resolves named
            // parameters one lookup per value, quadratic in a statement with hundreds.
            match backend {
                Backend::Postgres => {
                    let _ = write!(sql, "${n}");
                }
                Backend::Sqlite => sql.push('?'),
            }
        }
        sql.push(')');
    }
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = row.bind(query);
    }
    query
        .execute(pool)
        .await
        .with_context(|| format!("inserting {} row(s)", rows.len()))?;
    Ok(())
}

/// A unit of work that runs inside a transaction shared with other concurrent work.
#[async_trait::async_trait]
pub trait TxJob: Send + Sync + 'static {
    type Output: Send + 'static;
    /// May run more than once: a batch that fails is retried job by job.
    async fn run(&self, conn: &mut AnyConnection) -> anyhow::Result<Self::Output>;
}

#[async_trait::async_trait]
trait Queued: Send {
    async fn run(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()>;
    fn finish(self: Box<Self>, result: anyhow::Result<()>);
}

struct Slot<J: TxJob> {
    job: J,
    output: Option<J::Output>,
    done: oneshot::Sender<anyhow::Result<J::Output>>,
}

#[async_trait::async_trait]
impl<J: TxJob> Queued for Slot<J> {
    async fn run(&mut self, conn: &mut AnyConnection) -> anyhow::Result<()> {
        self.output = Some(self.job.run(conn).await?);
        Ok(())
    }

    fn finish(self: Box<Self>, result: anyhow::Result<()>) {
        let Slot { output, done, .. } = *self;
        let _ = done.send(result.and_then(|()| output.context("job produced no output")));
    }
}

/// Group commit for multi-statement writes (events with their triggers, delivery outcomes):
/// whatever is waiting runs back to back in one transaction, and each caller hears back only
/// after the commit. The statements of one job still run one after another, but the
/// connection never idles between jobs and the commit is shared.
///
/// `lanes` batches run side by side on separate connections: one for SQLite, which has a
/// single writer anyway; several for PostgreSQL, where each statement is a network round trip
/// and concurrent transactions do not block each other.
#[derive(Clone)]
pub struct TxBatcher {
    lanes: Arc<[mpsc::Sender<Box<dyn Queued>>]>,
    next: Arc<std::sync::atomic::AtomicUsize>,
}

impl TxBatcher {
    pub fn start(pool: AnyPool, lanes: usize) -> Self {
        let lanes: Vec<_> = (0..lanes.max(1))
            .map(|_| {
                let (queue, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run_jobs(pool.clone(), rx));
                queue
            })
            .collect();
        Self {
            lanes: lanes.into(),
            next: Default::default(),
        }
    }

    pub async fn submit<J: TxJob>(&self, job: J) -> anyhow::Result<J::Output> {
        let (done, result) = oneshot::channel();
        let stopped = || anyhow::anyhow!("database writer has stopped");
        let lane = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.lanes.len();
        self.lanes[lane]
            .send(Box::new(Slot {
                job,
                output: None,
                done,
            }))
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn run_jobs(pool: AnyPool, mut rx: mpsc::Receiver<Box<dyn Queued>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match commit_jobs(&pool, &mut batch).await {
            Ok(()) => batch.drain(..).for_each(|job| job.finish(Ok(()))),
            Err(e) if batch.len() > 1 && is_row_error(&e) => {
                warn!(
                    error = format!("{e:#}"),
                    jobs = batch.len(),
                    "batched transaction failed; running each job alone"
                );
                for mut job in batch.drain(..) {
                    let result = commit_jobs(&pool, std::slice::from_mut(&mut job)).await;
                    job.finish(result);
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for job in batch.drain(..) {
                    job.finish(Err(anyhow::anyhow!("{message}")));
                }
            }
        }
    }
}

/// Commits the jobs together, trying again when the database only asked us to (a deadlock or
/// serialization failure on PostgreSQL, a busy SQLite): an OSS callback is never resent, so
/// giving up on a transient conflict would lose its event.
async fn commit_jobs(pool: &AnyPool, jobs: &mut [Box<dyn Queued>]) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        match commit_once(pool, jobs).await {
            Err(e) if attempt < 3 && is_transient(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
            result => return result,
        }
    }
}

fn is_transient(e: &anyhow::Error) -> bool {
    let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() else {
        return false;
    };
    // 40001 serialization_failure, 40P01 deadlock_detected; SQLite 5 BUSY, 6 LOCKED.
    matches!(db.code().as_deref(), Some("40001" | "40P01" | "5" | "6"))
}

async fn commit_once(pool: &AnyPool, jobs: &mut [Box<dyn Queued>]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("starting transaction")?;
    for job in jobs.iter_mut() {
        job.run(&mut tx).await?;
    }
    tx.commit().await.context("committing")?;
    Ok(())
}

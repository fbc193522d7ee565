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
use sqlx::{Any, AnyPool};
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

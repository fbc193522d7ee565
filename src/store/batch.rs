//! Group commit. Concurrent writes (new uploads, notifications, delivery outcomes, claims) are
//! queued to a task that writes all that are waiting in one transaction, with a handful of
//! multi-row statements for the whole batch rather than a few statements per write, and
//! answers each caller only after the commit. A commit and a statement's round trip to the
//! database cost far more than a row, so sharing them is what lets write-heavy endpoints scale
//! with concurrency; a lone write waits for nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use sqlx::Execute;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Either, Executor};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::Backend;

/// A statement with some of its values bound. The values are owned, so that a statement can
/// be held back and sent later with others (see [`Statements`]).
pub type Bound = Query<'static, Any, AnyArguments<'static>>;

/// A row that can be written in multi-row statements.
pub trait BatchRow: Send + Sync {
    /// `INSERT INTO table (col, ...)`, or the column list of a `VALUES` table.
    const INSERT: &'static str;
    const COLUMNS: usize;
    /// Binds this row's values in column order.
    fn bind(&self, query: Bound) -> Bound;
}

/// Writes that commit together. A batch is written in two phases, so that on SQLite the
/// statements whose results decide the rest go to the database in one call: `start` pushes
/// them, and `finish`, once they are sent, reads their results and writes the rest.
#[async_trait::async_trait]
pub trait Batched: Send + Sync + Sized + 'static {
    type Output: Send + 'static;
    /// What `finish` needs from `start`: the tickets of its statements.
    type Started: Send;
    /// Whether `jobs` need a transaction: not when they make a single statement, atomic on
    /// its own, which saves the round trips of `BEGIN` and `COMMIT`.
    fn transaction(_jobs: &[&Self]) -> bool {
        true
    }
    async fn start(
        jobs: &[&Self],
        statements: &mut Statements<'_>,
    ) -> anyhow::Result<Self::Started>;
    /// One output per job, in order. A batch may be written more than once: one that fails
    /// for one job's sake is written again job by job.
    async fn finish(
        jobs: &[&Self],
        started: Self::Started,
        statements: &mut Statements<'_>,
    ) -> anyhow::Result<Vec<Self::Output>>;
}

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;
/// Writes waiting beyond this make callers wait to enqueue (backpressure).
const QUEUE: usize = 4096;
/// Most bound values in one statement (SQLite allows 32766, PostgreSQL 65535).
const MAX_VALUES: usize = 30_000;

type Pending<J> = (J, oneshot::Sender<anyhow::Result<<J as Batched>::Output>>);

/// The queue of batched writes. `lanes` batches run side by side on separate connections:
/// one for SQLite, which has a single writer anyway; several for PostgreSQL, where each
/// statement is a network round trip and concurrent transactions do not block each other.
pub struct Batcher<J: Batched> {
    lanes: Arc<[mpsc::Sender<Pending<J>>]>,
    next: Arc<AtomicUsize>,
}

impl<J: Batched> Clone for Batcher<J> {
    fn clone(&self) -> Self {
        Self {
            lanes: self.lanes.clone(),
            next: self.next.clone(),
        }
    }
}

impl<J: Batched> Batcher<J> {
    /// Starts `lanes` batch writers on the caller's runtime.
    pub fn start(pool: AnyPool, backend: Backend, lanes: usize) -> Self {
        let lanes: Vec<_> = (0..lanes.max(1))
            .map(|_| {
                let (queue, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(pool.clone(), backend, rx));
                queue
            })
            .collect();
        Self {
            lanes: lanes.into(),
            next: Default::default(),
        }
    }

    /// Writes `job`, returning its output once it is committed.
    pub async fn submit(&self, job: J) -> anyhow::Result<J::Output> {
        let (done, result) = oneshot::channel();
        let stopped = || anyhow::anyhow!("database writer has stopped");
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        self.lanes[lane]
            .send((job, done))
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn run<J: Batched>(pool: AnyPool, backend: Backend, mut rx: mpsc::Receiver<Pending<J>>) {
    let mut batch: Vec<Pending<J>> = Vec::with_capacity(MAX_BATCH);
    let mut lane = Lane {
        pool,
        backend,
        held: None,
    };
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs: Vec<&J> = batch.iter().map(|(job, _)| job).collect();
        let result = commit(&mut lane, &jobs).await;
        drop(jobs);
        match result {
            Ok(outputs) => {
                for ((_, done), output) in batch.drain(..).zip(outputs) {
                    let _ = done.send(Ok(output));
                }
            }
            // Only a constraint can be one job's fault; an outage would fail job by job too,
            // each after its own timeout.
            Err(e) if batch.len() > 1 && (is_row_error(&e) || e.is::<SplitBatch>()) => {
                warn!(
                    error = format!("{e:#}"),
                    jobs = batch.len(),
                    "batched write failed; writing each alone"
                );
                for (job, done) in batch.drain(..) {
                    let result = commit(&mut lane, &[&job]).await;
                    let _ = done.send(result.and_then(|mut o| o.pop().context("no output")));
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(anyhow::anyhow!("{message}")));
                }
            }
        }
        lane.done(rx.is_empty());
    }
}

/// The connection a queue writes on. On SQLite it is kept from one batch to the next while
/// writes keep coming: sqlx checks a connection with a round trip to its thread before taking
/// it back, and each batch waited for that check of the one before. It goes back when the
/// queue is empty, and at least every `HOLD_AT_MOST`, so that the writes made outside the
/// queues (administration, reconciliation) on SQLite's single writer connection wait no
/// longer than that. On PostgreSQL, where the pool also serves every read, it goes back after
/// each batch.
struct Lane {
    pool: AnyPool,
    backend: Backend,
    held: Option<(PoolConnection<Any>, Instant)>,
}

const HOLD_AT_MOST: Duration = Duration::from_millis(20);

impl Lane {
    async fn connection(&mut self) -> anyhow::Result<&mut PoolConnection<Any>> {
        let kept = self
            .held
            .take()
            .filter(|(_, since)| since.elapsed() <= HOLD_AT_MOST);
        let held = match kept {
            Some(held) => held,
            None => {
                let conn = self
                    .pool
                    .acquire()
                    .await
                    .context("acquiring a connection")?;
                (conn, Instant::now())
            }
        };
        Ok(&mut self.held.insert(held).0)
    }

    /// After a batch: keeps the connection for the next one when more writes are waiting.
    fn done(&mut self, idle: bool) {
        if idle || self.backend == Backend::Postgres {
            self.release();
        }
    }

    fn release(&mut self) {
        self.held = None;
    }

    /// Closes the connection: it may still have a transaction open.
    async fn discard(&mut self) {
        if let Some((conn, _)) = self.held.take() {
            let _ = conn.detach().close().await;
        }
    }
}

fn is_row_error(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Database(_))
    )
}

/// Commits the jobs together, trying again when the database only asked us to (a deadlock or
/// serialization failure on PostgreSQL, a busy SQLite): an OSS callback is never resent, so
/// giving up on a transient conflict would lose its event.
async fn commit<J: Batched>(lane: &mut Lane, jobs: &[&J]) -> anyhow::Result<Vec<J::Output>> {
    let mut attempt = 0;
    loop {
        match commit_once(lane, jobs).await {
            Err(e) if attempt < 3 && is_transient(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
            result => {
                if result.is_err() {
                    // Checked by the pool before it is used again.
                    lane.release();
                }
                return result;
            }
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

async fn commit_once<J: Batched>(lane: &mut Lane, jobs: &[&J]) -> anyhow::Result<Vec<J::Output>> {
    let backend = lane.backend;
    let conn = lane.connection().await?;
    let transaction = J::transaction(jobs);
    let result = write_all(conn, backend, jobs, transaction).await;
    if result.is_err() && transaction && sqlx::query("ROLLBACK").execute(&mut **conn).await.is_err()
    {
        // BEGIN itself failed, or the connection is broken: either way it must not go back to
        // the pool with a transaction that may still be open.
        lane.discard().await;
    }
    result
}

async fn write_all<J: Batched>(
    conn: &mut AnyConnection,
    backend: Backend,
    jobs: &[&J],
    transaction: bool,
) -> anyhow::Result<Vec<J::Output>> {
    let mut statements = Statements::new(conn, backend);
    if transaction {
        let begin = match backend {
            // The batch writes anyway: take the write lock at once rather than on the first
            // write, when a reader's snapshot could make it fail.
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        statements.push(begin, |q| q).await?;
    }
    let started = J::start(jobs, &mut statements).await?;
    statements.send().await?;
    let outputs = J::finish(jobs, started, &mut statements).await?;
    anyhow::ensure!(outputs.len() == jobs.len(), "a batched write lost outputs");
    if transaction {
        statements.push("COMMIT", |q| q).await?;
    }
    statements.send().await.context("committing")?;
    Ok(outputs)
}

/// The statements of a write, sent on one connection. Every call to SQLite is a round trip to
/// the connection's own thread, and under load the round trips, not the statements, took
/// most of a batch's time; so on SQLite statements are held back and sent together when a
/// result is needed (or with the `COMMIT`), and their results kept until asked for.
/// PostgreSQL takes one statement with bound values per call: there each is sent at once.
///
/// Several statements in one query with bound values is something only sqlx 0.8's SQLite
/// driver does, and sqlx calls it deprecated. Should a later sqlx drop it, sending each
/// statement at once on SQLite too (as on PostgreSQL) keeps everything correct, only slower.
pub struct Statements<'c> {
    conn: &'c mut AnyConnection,
    backend: Backend,
    /// Held statements, separated by `;`, and their values in order. SQLite binds `?` in
    /// text order across the statements of one call, so held statements must use `?`.
    sql: String,
    args: Bound,
    held: usize,
    /// The results of the statements sent, by ticket.
    results: Vec<Option<Sent>>,
}

/// A statement pushed, to read its result once sent.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(usize);

/// What a statement returned: its rows, and how many rows it changed.
#[derive(Default)]
pub struct Sent {
    pub rows: Vec<AnyRow>,
    pub changed: u64,
}

impl<'c> Statements<'c> {
    pub fn new(conn: &'c mut AnyConnection, backend: Backend) -> Self {
        Statements {
            conn,
            backend,
            sql: String::new(),
            args: sqlx::query(""),
            held: 0,
            results: Vec::new(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `sql` with the values `bind` adds: at once on PostgreSQL, with the next call on
    /// SQLite.
    pub async fn push(
        &mut self,
        sql: &str,
        bind: impl FnOnce(Bound) -> Bound,
    ) -> anyhow::Result<Ticket> {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(sql);
        self.args = bind(std::mem::replace(&mut self.args, sqlx::query("")));
        self.held += 1;
        let ticket = Ticket(self.results.len() + self.held - 1);
        if self.backend == Backend::Postgres {
            self.send().await?;
        }
        Ok(ticket)
    }

    /// Runs what is held, then `sql`, and returns the rows `sql` returns.
    pub async fn fetch(
        &mut self,
        sql: &str,
        bind: impl FnOnce(Bound) -> Bound,
    ) -> anyhow::Result<Vec<AnyRow>> {
        let ticket = self.push(sql, bind).await?;
        self.send().await?;
        Ok(self.take(ticket)?.rows)
    }

    /// What the statement of `ticket` returned, once sent.
    pub fn take(&mut self, ticket: Ticket) -> anyhow::Result<Sent> {
        self.results
            .get_mut(ticket.0)
            .and_then(Option::take)
            .context("a statement's result was read before it was sent, or twice")
    }

    /// How many rows the statements of `tickets` changed, once sent. Counting beats
    /// `RETURNING` on SQLite: each returned row is handed from the connection's thread on its
    /// own, and each hand-off woke the batch's thread for one row.
    pub fn changed(&mut self, tickets: &[Ticket]) -> anyhow::Result<usize> {
        let mut changed = 0;
        for ticket in tickets {
            changed += self.take(*ticket)?.changed as usize;
        }
        Ok(changed)
    }

    /// Sends what is held, in one call.
    pub async fn send(&mut self) -> anyhow::Result<()> {
        if self.held == 0 {
            return Ok(());
        }
        let sql = std::mem::take(&mut self.sql);
        let held = std::mem::take(&mut self.held);
        let args = std::mem::replace(&mut self.args, sqlx::query(""))
            .take_arguments()
            .map_err(|e| anyhow::anyhow!("binding values: {e}"))?
            .unwrap_or_default();
        // On SQLite not kept in the connection's statement cache: a call's text differs with
        // every batch and would only push out the statements that repeat. PostgreSQL plans
        // a statement once per prepared text, and a batch's statements repeat by size.
        let query = sqlx::query_with(&sql, args).persistent(self.backend == Backend::Postgres);
        let mut results = Vec::with_capacity(held);
        let mut current = Sent::default();
        let mut steps = self.conn.fetch_many(query);
        while let Some(step) = steps
            .try_next()
            .await
            .with_context(|| format!("running {}", summary(&sql)))?
        {
            match step {
                Either::Right(row) => current.rows.push(row),
                // Each statement ends with its count, rows or not.
                Either::Left(done) => {
                    current.changed = done.rows_affected();
                    results.push(Some(std::mem::take(&mut current)));
                }
            }
        }
        anyhow::ensure!(
            results.len() == held,
            "{} results for {held} statements: {}",
            results.len(),
            summary(&sql)
        );
        self.results.extend(results);
        Ok(())
    }
}

/// A batch whose statements cannot tell which of its jobs they applied to: written again job
/// by job, where they can.
#[derive(Debug)]
pub struct SplitBatch;

impl std::fmt::Display for SplitBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the batch applied to only some of its jobs; writing each alone")
    }
}

impl std::error::Error for SplitBatch {}

/// The first words of each statement in `sql`, to say which failed without the whole text.
fn summary(sql: &str) -> String {
    sql.split(";\n")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `(?, ?), (?, ?)` for `rows` rows of `columns` values, numbered from `$first` on
/// PostgreSQL. SQLite takes `$N` too, but its driver resolves numbered parameters one lookup
/// per value, quadratic in a statement with thousands, and counts them from the first value
/// of the call, not of the statement, which breaks held statements.
pub fn values(backend: Backend, first: usize, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    let mut n = first;
    for i in 0..rows {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&param(backend, n));
            n += 1;
        }
        sql.push(')');
    }
    sql
}

/// Placeholder number `n`: `$n` on PostgreSQL, `?` on SQLite (see [`values`]), so statements
/// that use it must bind their values in text order.
pub fn param(backend: Backend, n: usize) -> std::borrow::Cow<'static, str> {
    match backend {
        Backend::Postgres => format!("${n}").into(),
        Backend::Sqlite => "?".into(),
    }
}

/// Pushes `head VALUES (...), (...) tail` for `rows`, in as many statements as the
/// database's limit on bound values needs. `head` is `R::INSERT` for an insert, or an
/// `UPDATE ... FROM (` or `SELECT ... JOIN (` whose `tail` closes it.
pub async fn push_rows<R: BatchRow>(
    statements: &mut Statements<'_>,
    head: &str,
    rows: &[R],
    tail: &str,
) -> anyhow::Result<Vec<Ticket>> {
    let mut tickets = Vec::new();
    for chunk in rows.chunks((MAX_VALUES / R::COLUMNS).max(1)) {
        let sql = format!(
            "{head} VALUES {}{tail}",
            values(statements.backend, 1, chunk.len(), R::COLUMNS)
        );
        let bind = |query| chunk.iter().fold(query, |query, row| row.bind(query));
        tickets.push(statements.push(&sql, bind).await?);
    }
    Ok(tickets)
}

/// Runs what is held and the statements of [`push_rows`], and returns the rows they return.
pub async fn with_rows<R: BatchRow>(
    statements: &mut Statements<'_>,
    head: &str,
    rows: &[R],
    tail: &str,
) -> anyhow::Result<Vec<AnyRow>> {
    let tickets = push_rows(statements, head, rows, tail).await?;
    statements.send().await?;
    let mut returned = Vec::new();
    for ticket in tickets {
        returned.extend(statements.take(ticket)?.rows);
    }
    Ok(returned)
}

/// Inserts `rows` with multi-row statements.
pub async fn insert_rows<R: BatchRow>(
    statements: &mut Statements<'_>,
    rows: &[R],
) -> anyhow::Result<Vec<Ticket>> {
    push_rows(statements, R::INSERT, rows, "").await
}

impl<T: BatchRow> BatchRow for &T {
    const INSERT: &'static str = T::INSERT;
    const COLUMNS: usize = T::COLUMNS;

    fn bind(&self, query: Bound) -> Bound {
        T::bind(self, query)
    }
}

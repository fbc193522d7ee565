//! Object events: each notification recorded once per object version, with what it does to
//! the upload it completes and the triggers it queues, in one transaction before the
//! notification is answered.

use anyhow::Context;
use sqlx::Row;

use std::collections::{HashMap, HashSet};

use super::batch::{
    self, BatchRow, Batched, Statements, Ticket, insert_rows, push_rows, with_rows,
};
use super::triggers::{NewTrigger, TriggerInsert, insert_triggers};
use super::{Store, UploadRow};
use crate::kinds::{EventOutcome, EventSource, Reason, UploadState};
/// An accepted object-created notification, as stored.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub bucket: String,
    pub object_key: String,
    pub etag: String,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub source: EventSource,
    pub upload_id: Option<String>,
    pub outcome: EventOutcome,
    pub reason: Option<String>,
    pub received_at: i64,
}

/// What the event does to the upload it completes.
#[derive(Debug, Clone)]
pub enum UploadChange {
    /// An upload requested through `POST /v1/uploads`.
    Existing { id: String },
    /// An object under a user's prefix nobody announced: recorded in their history.
    New(Box<UploadRow>),
    /// Not under any user's prefix.
    None,
}

/// The result of recording an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Accepted {
        upload_id: Option<String>,
        triggers: usize,
    },
    /// The same (bucket, key, ETag) was recorded before: nothing new happens.
    Duplicate { upload_id: Option<String> },
    /// Another version of an object that was completed before: recorded for operators,
    /// nothing else changes.
    Repeat { upload_id: Option<String> },
}

impl Store {
    /// Records the event with its upload change and triggers, unless the same object version
    /// was recorded before. Commits together with other concurrent writes.
    pub async fn record_event(&self, write: EventWrite) -> anyhow::Result<Recorded> {
        self.write(super::Write::Event(write), |w| match w {
            super::Written::Event(recorded) => Some(recorded),
            _ => None,
        })
        .await
    }

    /// The notifications recorded for an object (an upload's key is its own), oldest first.
    /// Read through the (bucket, key, ETag) index, so recording events needs no other.
    pub async fn events_for_object(
        &self,
        bucket: &str,
        object_key: &str,
    ) -> anyhow::Result<Vec<EventRow>> {
        let rows = sqlx::query(
            "SELECT id, bucket, object_key, etag, size, content_type, source, upload_id, outcome, reason, received_at
             FROM events WHERE bucket = $1 AND object_key = $2 ORDER BY id",
        )
        .bind(bucket)
        .bind(object_key)
        .fetch_all(&self.reader)
        .await
        .context("reading upload events")?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    id: r.try_get("id")?,
                    bucket: r.try_get("bucket")?,
                    object_key: r.try_get("object_key")?,
                    etag: r.try_get("etag")?,
                    size: r.try_get("size")?,
                    content_type: r.try_get("content_type")?,
                    source: super::stored(r, "source", EventSource::parse)?,
                    upload_id: r.try_get("upload_id")?,
                    outcome: super::stored(r, "outcome", EventOutcome::parse)?,
                    reason: r.try_get("reason")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }
}

/// An event with what it does to its upload and the triggers it queues, written together.
#[derive(Debug, Clone)]
pub struct EventWrite {
    pub event: EventRow,
    /// Whether the event completes its object. The first such event for a (bucket, key)
    /// claims it; a later one is recorded as a `repeat` and its upload change and triggers
    /// are dropped.
    pub completes: bool,
    pub upload: UploadChange,
    pub upload_state: UploadState,
    pub upload_reason: Option<Reason>,
    /// The size the upload takes from the event; `None` keeps the declared one (while the
    /// store has not been read, the event's size is only a claim).
    pub upload_size: Option<i64>,
    pub triggers: Vec<NewTrigger>,
}

impl EventWrite {
    /// The event alone: it completes nothing and changes nothing.
    pub fn only(event: EventRow) -> EventWrite {
        EventWrite {
            event,
            completes: false,
            upload: UploadChange::None,
            upload_state: UploadState::Skipped,
            upload_reason: None,
            upload_size: None,
            triggers: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Batched for EventWrite {
    type Output = Recorded;
    type Started = Vec<Ticket>;

    async fn start(jobs: &[&Self], statements: &mut Statements<'_>) -> anyhow::Result<Vec<Ticket>> {
        // One statement for all events on the happy path: the unique index on (bucket, key,
        // ETag) drops a repeat of the same version, and the partial one on (bucket, key) of
        // completing events lets only the first version of an object complete it (also
        // within the batch: rows are inserted in order). On PostgreSQL a concurrent claim
        // waits for the first transaction and then does nothing.
        let rows: Vec<EventInsert> = jobs.iter().map(|j| EventInsert::as_sent(j)).collect();
        push_rows(
            statements,
            EventInsert::INSERT,
            &rows,
            " ON CONFLICT DO NOTHING",
        )
        .await
    }

    async fn finish(
        jobs: &[&Self],
        started: Vec<Ticket>,
        statements: &mut Statements<'_>,
    ) -> anyhow::Result<Vec<Recorded>> {
        let (first, later): (Vec<&EventWrite>, Vec<&EventWrite>) =
            if statements.changed(&started)? == jobs.len() {
                (jobs.to_vec(), Vec::new())
            } else {
                let inserted = inserted_events(statements, jobs).await?;
                jobs.iter().partition(|j| inserted.contains(&j.event.id))
            };
        apply_events(&first, statements).await?;
        let mut outcomes = HashMap::with_capacity(later.len());
        for job in later {
            outcomes.insert(job.event.id.as_str(), job.after_conflict(statements).await?);
        }
        Ok(jobs
            .iter()
            .map(|j| {
                outcomes
                    .remove(j.event.id.as_str())
                    .unwrap_or_else(|| Recorded::Accepted {
                        upload_id: j.event.upload_id.clone(),
                        triggers: j.triggers.len(),
                    })
            })
            .collect())
    }
}

/// An event row as inserted: whether it completes its object, with its outcome, reason and
/// upload.
struct EventInsert<'a> {
    event: &'a EventRow,
    completes: bool,
    outcome: EventOutcome,
    reason: &'a Option<String>,
    upload_id: &'a Option<String>,
}

impl<'a> EventInsert<'a> {
    fn as_sent(write: &'a EventWrite) -> Self {
        EventInsert {
            event: &write.event,
            completes: write.completes,
            outcome: write.event.outcome,
            reason: &write.event.reason,
            upload_id: &write.event.upload_id,
        }
    }
}

impl BatchRow for EventInsert<'_> {
    const INSERT: &'static str = "INSERT INTO events (id, bucket, object_key, etag, size, content_type, source, upload_id, outcome, reason, received_at, completes)";
    const COLUMNS: usize = 12;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        let e = self.event;
        query
            .bind(e.id.clone())
            .bind(e.bucket.clone())
            .bind(e.object_key.clone())
            .bind(e.etag.clone())
            .bind(e.size)
            .bind(e.content_type.clone())
            .bind(e.source.as_str())
            .bind(self.upload_id.clone())
            .bind(self.outcome.as_str())
            .bind(self.reason.clone())
            .bind(e.received_at)
            .bind(i64::from(self.completes))
    }
}

impl EventWrite {
    /// The event was not inserted as sent: the same version was recorded before, or another
    /// version completed the object first.
    async fn after_conflict(&self, statements: &mut Statements<'_>) -> anyhow::Result<Recorded> {
        let event = &self.event;
        if self.completes && self.takes_over_missing(statements).await? {
            apply_events(&[self], statements).await?;
            return Ok(Recorded::Accepted {
                upload_id: event.upload_id.clone(),
                triggers: self.triggers.len(),
            });
        }
        if let Some(upload_id) = recorded_upload(statements, event, true).await? {
            return Ok(Recorded::Duplicate { upload_id });
        }
        // Another version completed the object first: this one is recorded, nothing else.
        let upload_id = recorded_upload(statements, event, false).await?.flatten();
        let reason = Some(
            "the object was completed by an earlier notification; nothing triggered".to_owned(),
        );
        let repeat = EventInsert {
            event,
            completes: false,
            outcome: EventOutcome::Repeat,
            reason: &reason,
            upload_id: &upload_id,
        };
        let tickets = push_rows(
            statements,
            EventInsert::INSERT,
            &[repeat],
            " ON CONFLICT DO NOTHING",
        )
        .await?;
        statements.send().await?;
        if statements.changed(&tickets)? == 0 {
            Ok(Recorded::Duplicate { upload_id })
        } else {
            Ok(Recorded::Repeat { upload_id })
        }
    }
}

impl EventWrite {
    /// Whether this event takes the place of its version's `missing` record (announced before
    /// the store had the object) and completes the object as a first event would, unless
    /// another version completed it meanwhile.
    async fn takes_over_missing(&self, statements: &mut Statements<'_>) -> anyhow::Result<bool> {
        let backend = statements.backend();
        let p = |n| batch::param(backend, n);
        let sql = format!(
            "UPDATE events SET id = {}, size = {}, content_type = {}, source = {}, upload_id = {},
               outcome = {}, reason = {}, received_at = {}, completes = 1
             WHERE bucket = {} AND object_key = {} AND etag = {} AND outcome = '{}'
               AND NOT EXISTS (SELECT 1 FROM events AS done WHERE done.bucket = {} AND done.object_key = {} AND done.completes = 1)",
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
            p(10),
            p(11),
            EventOutcome::Missing.as_str(),
            p(12),
            p(13)
        );
        let e = self.event.clone();
        let ticket = statements
            .push(&sql, |q| {
                q.bind(e.id)
                    .bind(e.size)
                    .bind(e.content_type)
                    .bind(e.source.as_str())
                    .bind(e.upload_id)
                    .bind(e.outcome.as_str())
                    .bind(e.reason)
                    .bind(e.received_at)
                    .bind(e.bucket.clone())
                    .bind(e.object_key.clone())
                    .bind(e.etag)
                    .bind(e.bucket)
                    .bind(e.object_key)
            })
            .await
            .context("recording an object announced again")?;
        statements.send().await?;
        Ok(statements.changed(&[ticket])? == 1)
    }
}

/// Which of `jobs`' events were inserted: those whose id is the one recorded for their
/// version.
async fn inserted_events(
    statements: &mut Statements<'_>,
    jobs: &[&EventWrite],
) -> anyhow::Result<HashSet<String>> {
    let keys: Vec<EventKey> = jobs.iter().map(|j| EventKey(&j.event)).collect();
    with_rows(
        statements,
        "SELECT events.id FROM events JOIN (",
        &keys,
        ") AS v ON events.bucket = v.column1 AND events.object_key = v.column2 AND events.etag = v.column3",
    )
    .await
    .context("reading which events were recorded")?
    .iter()
    .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
    .collect()
}

/// An event's object version (the `VALUES` table of a lookup).
struct EventKey<'a>(&'a EventRow);

impl BatchRow for EventKey<'_> {
    const INSERT: &'static str = "";
    const COLUMNS: usize = 3;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        query
            .bind(self.0.bucket.clone())
            .bind(self.0.object_key.clone())
            .bind(self.0.etag.clone())
    }
}

/// The upload of the event recorded for `event`'s version (`same_version`), or else of the
/// event that completed its object: `None` when there is no such event.
async fn recorded_upload(
    statements: &mut Statements<'_>,
    event: &EventRow,
    same_version: bool,
) -> anyhow::Result<Option<Option<String>>> {
    let backend = statements.backend();
    let p = |n| batch::param(backend, n);
    let version = if same_version {
        "etag ="
    } else {
        "completes = 1 AND etag <>"
    };
    let sql = format!(
        "SELECT upload_id FROM events WHERE bucket = {} AND object_key = {} AND {version} {}",
        p(1),
        p(2),
        p(3)
    );
    let (bucket, key, etag) = (
        event.bucket.clone(),
        event.object_key.clone(),
        event.etag.clone(),
    );
    statements
        .fetch(&sql, |q| q.bind(bucket).bind(key).bind(etag))
        .await
        .context("reading a recorded event")?
        .first()
        .map(|r| r.try_get::<Option<String>, _>(0).map_err(Into::into))
        .transpose()
}

/// What recorded events do beyond their own rows: the upload changes and the triggers, a
/// statement for each kind of row whatever the number of events.
async fn apply_events(
    writes: &[&EventWrite],
    statements: &mut Statements<'_>,
) -> anyhow::Result<()> {
    let updates: Vec<UploadUpdate> = writes
        .iter()
        .filter_map(|w| match &w.upload {
            UploadChange::Existing { id } => Some(UploadUpdate {
                id,
                state: w.upload_state.as_str(),
                reason: w.upload_reason.map(Reason::as_str),
                uploaded_at: w.event.received_at,
                size: w.upload_size,
            }),
            _ => None,
        })
        .collect();
    if !updates.is_empty() {
        push_rows(
            statements,
            "UPDATE uploads SET state = v.column2, state_reason = v.column3, uploaded_at = v.column4,
               size = COALESCE(v.column5, uploads.size), updated_at = v.column4 FROM (",
            &updates,
            ") AS v WHERE uploads.id = v.column1",
        )
        .await
        .context("updating uploads")?;
    }
    let new: Vec<UploadRow> = writes
        .iter()
        .filter_map(|w| match &w.upload {
            UploadChange::New(row) => Some(UploadRow {
                state: w.upload_state,
                state_reason: w.upload_reason,
                ..(**row).clone()
            }),
            _ => None,
        })
        .collect();
    if !new.is_empty() {
        insert_rows(statements, &new)
            .await
            .context("recording unannounced uploads")?;
    }
    let triggers: Vec<TriggerInsert> = writes
        .iter()
        .flat_map(|w| {
            w.triggers.iter().map(|t| TriggerInsert {
                trigger: t,
                event_id: &w.event.id,
                upload_id: w.event.upload_id.as_deref(),
                now: w.event.received_at,
                held: None,
            })
        })
        .collect();
    insert_triggers(statements, &triggers).await
}

/// An upload completed by an event (the `VALUES` table of a multi-row update).
struct UploadUpdate<'a> {
    id: &'a str,
    state: &'static str,
    reason: Option<&'static str>,
    uploaded_at: i64,
    size: Option<i64>,
}

impl BatchRow for UploadUpdate<'_> {
    const INSERT: &'static str = "";
    const COLUMNS: usize = 5;

    fn bind(&self, query: batch::Bound) -> batch::Bound {
        query
            .bind(self.id.to_owned())
            .bind(self.state)
            .bind(self.reason)
            .bind(self.uploaded_at)
            .bind(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{event, temp_store, upload};
    use super::*;
    use crate::store::DatabaseConfig;
    use secrecy::SecretString;

    #[tokio::test]
    async fn events_written_together_complete_each_object_once() {
        let (_dir, store) = temp_store().await;
        store.insert_upload(upload("up-1")).await.unwrap();
        let key = "uploads/alice/up-1/a.mp4";
        // Sent together, so they share batches: the same version twice, another version of
        // the same object, and other objects.
        let writes = vec![
            event(key, "A", Some("up-1")),
            event(key, "A", Some("up-1")),
            event(key, "B", Some("up-1")),
            event("uploads/alice/x/1.mp4", "C", None),
            event("uploads/alice/x/2.mp4", "D", None),
        ];
        let results = futures::future::join_all(
            writes
                .into_iter()
                .map(|w| store.record_event(w))
                .collect::<Vec<_>>(),
        )
        .await;
        let results: Vec<Recorded> = results.into_iter().map(Result::unwrap).collect();
        let accepted = |r: &&Recorded| matches!(r, Recorded::Accepted { triggers: 1, .. });
        assert_eq!(
            results[..3].iter().filter(accepted).count(),
            1,
            "{results:?}"
        );
        assert_eq!(
            results[..3]
                .iter()
                .filter(|r| matches!(r, Recorded::Duplicate { .. }))
                .count(),
            1,
            "{results:?}"
        );
        assert!(
            results[..3].iter().any(|r| *r
                == Recorded::Repeat {
                    upload_id: Some("up-1".into())
                }),
            "{results:?}"
        );
        assert!(results[3..].iter().all(|r| accepted(&r)), "{results:?}");
        // Only the accepted events changed the upload and queued triggers.
        let up = store.get_upload("up-1").await.unwrap().unwrap();
        assert_eq!((up.state, up.size), (UploadState::Uploaded, Some(7)));
        assert_eq!(store.triggers_for_upload("up-1").await.unwrap().len(), 1);
        let counts = store.trigger_counts().await.unwrap();
        assert_eq!(counts, vec![("pending".to_owned(), 3)]);
        let events = store.events_for_object("b", key).await.unwrap();
        assert_eq!(events.len(), 2, "the duplicate is not recorded twice");
    }

    #[tokio::test]
    async fn a_failed_batch_leaves_nothing_of_the_bad_write_and_the_others_go_through() {
        let (_dir, store) = temp_store().await;
        let first = event("uploads/alice/x/0.mp4", "A", None);
        let taken = first.triggers[0].id.clone();
        store.record_event(first).await.unwrap();
        // Sent together: one of them queues a trigger whose id is taken, which fails the
        // batch's trigger insert after its events were inserted.
        let writes: Vec<EventWrite> = (1..=6)
            .map(|i| {
                let mut w = event(&format!("uploads/alice/x/{i}.mp4"), "A", None);
                if i == 3 {
                    w.triggers[0].id = taken.clone();
                }
                w
            })
            .collect();
        let results =
            futures::future::join_all(writes.into_iter().map(|w| store.record_event(w))).await;
        let failed: Vec<usize> = (0..results.len())
            .filter(|i| results[*i].is_err())
            .collect();
        assert_eq!(failed, vec![2], "{results:?}");
        // Its event was rolled back with its trigger; the others were written.
        assert!(
            store
                .events_for_object("b", "uploads/alice/x/3.mp4")
                .await
                .unwrap()
                .is_empty()
        );
        let counts = store.trigger_counts().await.unwrap();
        assert_eq!(counts, vec![("pending".to_owned(), 6)]);
        // The connection came back without a transaction left open: later writes commit.
        store
            .record_event(event("uploads/alice/x/7.mp4", "A", None))
            .await
            .unwrap();
        let store2 = Store::connect(&DatabaseConfig {
            url: SecretString::from(format!("sqlite://{}/t.db", _dir.path().display())),
            max_connections: 2,
        })
        .await
        .unwrap();
        assert_eq!(
            store2.trigger_counts().await.unwrap(),
            vec![("pending".to_owned(), 7)]
        );
    }
}

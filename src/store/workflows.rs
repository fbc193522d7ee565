//! Workflow rows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

use super::audit::{Actor, record};
use super::{Store, now_millis};
use crate::workflows::WorkflowState;
use crate::workflows::{Sink, Workflow, WorkflowDef};

const COLUMNS: &str = "id, name, state, bucket, prefix, output_prefix, sink, media_workflow_id, webhook_url, webhook_secret, source, output_bucket, track_outcome";

/// Outcome of a write that must keep names unique.
#[derive(Debug)]
pub enum Saved {
    Saved(Box<Workflow>),
    NameTaken,
    NotFound,
}

/// How long a read of the workflows serves notifications and deliveries. A change made
/// through this instance applies at once; one made through another instance sharing the
/// database, within this long.
const CACHED_FOR: Duration = Duration::from_secs(1);

/// The workflows as last read. Every notification is matched against them and every delivery
/// batch looks its workflow up, so reading the table each time would cost a query per event.
#[derive(Default)]
pub(super) struct WorkflowCache {
    state: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    read: Option<(Instant, Arc<[Workflow]>)>,
    /// Bumped by every change: a read that started before one is not kept.
    generation: u64,
}

impl WorkflowCache {
    fn fresh(&self) -> Result<Arc<[Workflow]>, u64> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &state.read {
            Some((at, workflows)) if at.elapsed() < CACHED_FOR => Ok(workflows.clone()),
            _ => Err(state.generation),
        }
    }

    fn keep(&self, generation: u64, workflows: Arc<[Workflow]>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.generation == generation {
            state.read = Some((Instant::now(), workflows));
        }
    }

    fn changed(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.generation += 1;
        state.read = None;
    }
}

impl Store {
    /// The workflows to match and deliver by, read at most [`CACHED_FOR`] ago.
    pub async fn workflows(&self) -> anyhow::Result<Arc<[Workflow]>> {
        match self.workflow_cache.fresh() {
            Ok(workflows) => Ok(workflows),
            Err(generation) => {
                let workflows: Arc<[Workflow]> = self.list_workflows().await?.into();
                self.workflow_cache.keep(generation, workflows.clone());
                Ok(workflows)
            }
        }
    }

    /// The workflows as stored now.
    pub async fn list_workflows(&self) -> anyhow::Result<Vec<Workflow>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM workflows ORDER BY name"))
            .fetch_all(&self.reader)
            .await
            .context("listing workflows")?;
        rows.iter().map(workflow_from_row).collect()
    }

    pub async fn get_workflow(&self, id: &str) -> anyhow::Result<Option<Workflow>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM workflows WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .context("reading workflow")?;
        row.as_ref().map(workflow_from_row).transpose()
    }

    /// Creates a workflow from the admin API and records `detail` in the audit trail with it.
    pub async fn create_workflow(
        &self,
        def: WorkflowDef,
        who: &Actor,
        detail: &serde_json::Value,
    ) -> anyhow::Result<Saved> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.writer.begin().await.context("creating workflow")?;
        let inserted = insert_workflow(&mut tx, &id, &def, "api", "DO NOTHING")
            .await
            .context("creating workflow")?;
        if !inserted {
            return Ok(Saved::NameTaken);
        }
        record(&mut tx, who, "workflow.create", &id, detail)
            .await
            .context("recording the change")?;
        tx.commit().await.context("creating workflow")?;
        self.workflow_cache.changed();
        Ok(Saved::Saved(Box::new(Workflow {
            id,
            source: "api".into(),
            def,
        })))
    }

    /// Replaces a workflow and records the change in the audit trail, `detail` made from the
    /// workflow as it was, read in the same transaction.
    pub async fn update_workflow(
        &self,
        id: &str,
        def: WorkflowDef,
        who: &Actor,
        detail: impl FnOnce(&Workflow) -> serde_json::Value,
    ) -> anyhow::Result<Saved> {
        let (sink, mwf, url, secret) = sink_columns(&def.sink);
        let taken = sqlx::query("SELECT id FROM workflows WHERE name = $1 AND id <> $2")
            .bind(&def.name)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .context("checking workflow name")?;
        if taken.is_some() {
            return Ok(Saved::NameTaken);
        }
        let mut tx = self.writer.begin().await.context("updating workflow")?;
        let Some(before) = self.locked_workflow(&mut tx, id).await? else {
            return Ok(Saved::NotFound);
        };
        let detail = detail(&before);
        let result = sqlx::query(
            "UPDATE workflows SET name = $1, state = $2, bucket = $3, prefix = $4, output_prefix = $5, sink = $6,
             media_workflow_id = $7, webhook_url = $8, webhook_secret = $9, updated_at = $10,
             output_bucket = $12, track_outcome = $13 WHERE id = $11",
        )
        .bind(&def.name)
        .bind(state_str(def.state))
        .bind(&def.bucket)
        .bind(&def.prefix)
        .bind(&def.output_prefix)
        .bind(sink)
        .bind(mwf)
        .bind(url)
        .bind(secret)
        .bind(now_millis())
        .bind(id)
        .bind(&def.output_bucket)
        .bind(i64::from(def.track_outcome))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 0 => Ok(Saved::NotFound),
            Ok(_) => {
                record(&mut tx, who, "workflow.update", id, &detail)
                    .await
                    .context("recording the change")?;
                tx.commit().await.context("updating workflow")?;
                self.workflow_cache.changed();
                Ok(match self.get_workflow(id).await? {
                    Some(w) => Saved::Saved(Box::new(w)),
                    None => Saved::NotFound,
                })
            }
            // A concurrent rename to the same name lost the race on the unique index.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(Saved::NameTaken),
            Err(e) => Err(e).context("updating workflow"),
        }
    }

    /// Deletes a workflow and records the change in the audit trail, `detail` made from the
    /// workflow as it was, read in the same transaction; `false` when there was none.
    pub async fn delete_workflow(
        &self,
        id: &str,
        who: &Actor,
        detail: impl FnOnce(&Workflow) -> serde_json::Value,
    ) -> anyhow::Result<bool> {
        let mut tx = self.writer.begin().await.context("deleting workflow")?;
        let Some(before) = self.locked_workflow(&mut tx, id).await? else {
            return Ok(false);
        };
        let detail = detail(&before);
        let result = sqlx::query("DELETE FROM workflows WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("deleting workflow")?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        record(&mut tx, who, "workflow.delete", id, &detail)
            .await
            .context("recording the change")?;
        tx.commit().await.context("deleting workflow")?;
        self.workflow_cache.changed();
        Ok(true)
    }

    /// The workflow `id` inside `tx`, locked on PostgreSQL until the transaction ends (SQLite
    /// has one writer, so its transaction already excludes others).
    async fn locked_workflow(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
    ) -> anyhow::Result<Option<Workflow>> {
        let lock = match self.backend {
            super::Backend::Postgres => " FOR UPDATE",
            super::Backend::Sqlite => "",
        };
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM workflows WHERE id = $1{lock}"
        ))
        .bind(id)
        .fetch_optional(tx)
        .await
        .context("reading workflow")?;
        row.as_ref().map(workflow_from_row).transpose()
    }

    /// Creates or replaces each configured workflow by name, marking it as from the config.
    pub async fn apply_config_workflows(&self, defs: Vec<WorkflowDef>) -> anyhow::Result<()> {
        const REPLACE: &str = "DO UPDATE SET state = excluded.state, bucket = excluded.bucket, prefix = excluded.prefix,
            output_prefix = excluded.output_prefix, sink = excluded.sink, media_workflow_id = excluded.media_workflow_id,
            webhook_url = excluded.webhook_url, webhook_secret = excluded.webhook_secret, source = excluded.source,
            updated_at = excluded.updated_at, output_bucket = excluded.output_bucket,
            track_outcome = excluded.track_outcome";
        let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
        {
            // Released before the update below: SQLite has a single writer connection.
            let mut conn = self.writer.acquire().await?;
            for def in defs {
                insert_workflow(
                    &mut conn,
                    &uuid::Uuid::now_v7().to_string(),
                    &def,
                    "config",
                    REPLACE,
                )
                .await
                .with_context(|| format!("applying configured workflow {:?}", def.name))?;
            }
        }
        // A workflow taken out of the configuration stops triggering; its row stays for the
        // triggers that name it, and an operator can delete it.
        let sql = format!(
            "UPDATE workflows SET state = 'Inactive', updated_at = $1 WHERE source = 'config' AND state = 'Active'{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" AND name NOT IN ({})", super::placeholders(2, names.len()))
            }
        );
        let mut retired = sqlx::query(&sql).bind(now_millis());
        for name in &names {
            retired = retired.bind(name);
        }
        retired
            .execute(&self.writer)
            .await
            .context("retiring workflows removed from the configuration")?;
        self.workflow_cache.changed();
        Ok(())
    }
}

fn state_str(state: WorkflowState) -> &'static str {
    match state {
        WorkflowState::Active => "Active",
        WorkflowState::Inactive => "Inactive",
    }
}

type SinkColumns = (&'static str, Option<String>, Option<String>, Option<String>);

fn sink_columns(sink: &Sink) -> SinkColumns {
    match sink {
        Sink::Mps { media_workflow_id } => ("mps", Some(media_workflow_id.clone()), None, None),
        // The webhook secret is stored as is: signing needs it, a hash would not do.
        Sink::Webhook { url, secret } => (
            "webhook",
            None,
            Some(url.clone()),
            Some(secret.expose_secret().to_owned()),
        ),
    }
}

fn workflow_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<Workflow> {
    let state: String = r.try_get("state")?;
    let sink: String = r.try_get("sink")?;
    let sink = match sink.as_str() {
        "mps" => Sink::Mps {
            media_workflow_id: r
                .try_get::<Option<String>, _>("media_workflow_id")?
                .unwrap_or_default(),
        },
        _ => Sink::Webhook {
            url: r
                .try_get::<Option<String>, _>("webhook_url")?
                .unwrap_or_default(),
            secret: SecretString::from(
                r.try_get::<Option<String>, _>("webhook_secret")?
                    .unwrap_or_default(),
            ),
        },
    };
    Ok(Workflow {
        id: r.try_get("id")?,
        source: r.try_get("source")?,
        def: WorkflowDef {
            name: r.try_get("name")?,
            state: if state == "Active" {
                WorkflowState::Active
            } else {
                WorkflowState::Inactive
            },
            bucket: r.try_get("bucket")?,
            prefix: r.try_get("prefix")?,
            output_prefix: r.try_get("output_prefix")?,
            output_bucket: r.try_get("output_bucket")?,
            // NULL (rows written before the setting existed): the sink's default.
            track_outcome: r
                .try_get::<Option<i64>, _>("track_outcome")?
                .map_or(matches!(sink, Sink::Mps { .. }), |t| t != 0),
            sink,
        },
    })
}

/// Inserts a workflow; `on_conflict` says what happens when the name exists. `true` when a row
/// was written.
async fn insert_workflow(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    def: &WorkflowDef,
    source: &str,
    on_conflict: &str,
) -> sqlx::Result<bool> {
    let (sink, mwf, url, secret) = sink_columns(&def.sink);
    let now = now_millis();
    let result = sqlx::query(&format!(
            "INSERT INTO workflows (id, name, state, bucket, prefix, output_prefix, sink, media_workflow_id, webhook_url, webhook_secret, source, created_at, updated_at, output_bucket, track_outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (name) {on_conflict}"
        ))
        .bind(id)
        .bind(&def.name)
        .bind(state_str(def.state))
        .bind(&def.bucket)
        .bind(&def.prefix)
        .bind(&def.output_prefix)
        .bind(sink)
        .bind(mwf)
        .bind(url)
        .bind(secret)
        .bind(source)
        .bind(now)
        .bind(now)
        .bind(&def.output_bucket)
        .bind(i64::from(def.track_outcome))
        .execute(conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

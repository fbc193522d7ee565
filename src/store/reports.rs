//! Webhook processors' reports on their outcome: recorded once per `webhook-id`, applied to
//! the trigger's outcome with the outputs of a success and the upload state that follows, in
//! one transaction.

use anyhow::Context;
use sqlx::Row;

use super::Store;
use super::batch::{BatchRow, Statements, push_rows};
use super::outcomes::refresh_upload_states;
use super::runs::{OutputInsert, OutputRow};
use crate::kinds::{ProcessingState, Reason, TriggerState};

/// The trigger a report names, as far as checking the report needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTarget {
    pub workflow_id: String,
    pub upload_id: Option<String>,
    pub processing: ProcessingState,
    /// Whether its delivery is recorded. A receiver may report before the answer to the
    /// delivery is written: then the trigger is still in flight.
    pub delivered: bool,
}

/// A checked report.
#[derive(Debug, Clone)]
pub struct Report {
    pub webhook_id: String,
    pub trigger_id: String,
    /// `running`, `succeeded` or `failed`.
    pub processing: ProcessingState,
    pub reason: Option<Reason>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub outputs: Vec<OutputRow>,
}

/// What recording a report came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Applied,
    /// The same `webhook-id` was recorded before: nothing changed.
    Repeat,
    /// The outcome had ended (or is not followed): nothing changed.
    Finished,
}

/// A report as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub webhook_id: String,
    pub trigger_id: String,
    pub state: String,
    pub code: Option<String>,
    pub message: Option<String>,
    pub received_at: i64,
}

impl Store {
    /// The delivered (or in flight) workflow trigger `trigger_id`, if there is one.
    pub async fn report_target(&self, trigger_id: &str) -> anyhow::Result<Option<ReportTarget>> {
        let row = sqlx::query(
            "SELECT workflow_id, upload_id, outcome, state FROM triggers
             WHERE id = $1 AND state IN ('delivered', 'in_flight') AND sink IN ('mps', 'webhook')",
        )
        .bind(trigger_id)
        .fetch_optional(&self.reader)
        .await
        .context("reading a reported trigger")?;
        row.map(|r| {
            Ok(ReportTarget {
                workflow_id: r.try_get("workflow_id")?,
                upload_id: r.try_get("upload_id")?,
                processing: super::stored_opt(&r, "outcome", ProcessingState::parse)?
                    .unwrap_or(ProcessingState::Untracked),
                delivered: r.try_get::<String, _>("state")? == TriggerState::Delivered.as_str(),
            })
        })
        .transpose()
    }

    /// Records `report` once and applies it while its trigger's outcome is open.
    pub async fn record_report(&self, report: &Report, now: i64) -> anyhow::Result<Reported> {
        let mut tx = self.writer.begin().await.context("recording a report")?;
        let fresh = sqlx::query(
            "INSERT INTO reports (webhook_id, trigger_id, state, code, message, received_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (webhook_id) DO NOTHING",
        )
        .bind(&report.webhook_id)
        .bind(&report.trigger_id)
        .bind(report.processing.as_str())
        .bind(&report.code)
        .bind(&report.message)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("recording a report")?
        .rows_affected()
            > 0;
        if !fresh {
            return Ok(Reported::Repeat);
        }
        // `running` moves a pending outcome on; a final report ends a pending or running one.
        let from = match report.processing {
            ProcessingState::Running => "('pending')",
            _ => "('pending', 'running')",
        };
        let applied = sqlx::query(&format!(
            "UPDATE triggers SET outcome = $1, outcome_reason = $2, updated_at = $3
             WHERE id = $4 AND state = 'delivered' AND superseded = 0 AND outcome IN {from}"
        ))
        .bind(report.processing.as_str())
        .bind(report.reason.map(Reason::as_str))
        .bind(now)
        .bind(&report.trigger_id)
        .execute(&mut *tx)
        .await
        .context("applying a report")?
        .rows_affected()
            > 0;
        if !applied {
            tx.commit().await.context("recording a report")?;
            return Ok(if report.processing == ProcessingState::Running {
                Reported::Applied
            } else {
                Reported::Finished
            });
        }
        let mut statements = Statements::new(&mut tx, self.backend);
        if !report.outputs.is_empty() {
            let rows: Vec<OutputInsert> = report
                .outputs
                .iter()
                .map(|o| OutputInsert(o, now))
                .collect();
            push_rows(
                &mut statements,
                OutputInsert::INSERT,
                &rows,
                " ON CONFLICT (trigger_id, name) DO NOTHING",
            )
            .await
            .context("keeping outputs")?;
        }
        statements.send().await?;
        let upload: Option<String> = sqlx::query("SELECT upload_id FROM triggers WHERE id = $1")
            .bind(&report.trigger_id)
            .fetch_optional(&mut *tx)
            .await?
            .and_then(|r| r.try_get(0).ok())
            .flatten();
        if let Some(upload) = upload {
            let mut statements = Statements::new(&mut tx, self.backend);
            refresh_upload_states(&mut statements, &[upload.as_str()]).await?;
            statements.send().await?;
        }
        tx.commit().await.context("recording a report")?;
        Ok(Reported::Applied)
    }

    /// The reports on an upload's triggers, oldest first.
    pub async fn reports_for_upload(&self, upload_id: &str) -> anyhow::Result<Vec<ReportRow>> {
        let rows = sqlx::query(
            "SELECT webhook_id, trigger_id, state, code, message, received_at FROM reports
             WHERE trigger_id IN (SELECT id FROM triggers WHERE upload_id = $1)
             ORDER BY received_at, webhook_id",
        )
        .bind(upload_id)
        .fetch_all(&self.reader)
        .await
        .context("reading reports")?;
        rows.iter()
            .map(|r| {
                Ok(ReportRow {
                    webhook_id: r.try_get("webhook_id")?,
                    trigger_id: r.try_get("trigger_id")?,
                    state: r.try_get("state")?,
                    code: r.try_get("code")?,
                    message: r.try_get("message")?,
                    received_at: r.try_get("received_at")?,
                })
            })
            .collect()
    }
}

//! Users' standing (plan, override, suspension) and their usage, counted from their uploads.
//! A reservation holds the user's row for its transaction, so that uploads of one user are
//! counted one at a time by every instance on the database.

use anyhow::Context;
use sqlx::Row;

use super::{Backend, Store, UploadRow, now_millis};

/// A user's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The user segment their uploads live under.
    pub owner: String,
    /// The subject of their most recent token (none for a user only the store announced).
    pub subject: Option<String>,
    /// The plan their most recent token named.
    pub plan: Option<String>,
    /// An operator's choice of plan, over any token's.
    pub plan_override: Option<String>,
    pub suspended: bool,
}

/// What a user has used, from their uploads that are not rejected or expired: verified ones
/// by the store's size, others by their declared size or reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Started since the UTC day began.
    pub uploads_today: i64,
    pub bytes_today: i64,
    pub bytes_total: i64,
}

/// An operator's change to a user.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// `Some(None)` takes the override away.
    pub plan_override: Option<Option<String>>,
    pub suspended: Option<bool>,
}

const USER_COLUMNS: &str = "owner, subject, plan, plan_override, suspended";

fn user_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<UserRow> {
    Ok(UserRow {
        owner: r.try_get("owner")?,
        subject: r.try_get("subject")?,
        plan: r.try_get("plan")?,
        plan_override: r.try_get("plan_override")?,
        suspended: r.try_get::<i64, _>("suspended")? != 0,
    })
}

/// Usage of `owner` since `day_start`, leaving out upload `except`.
const USAGE: &str = "SELECT COUNT(CASE WHEN created_at >= $2 THEN 1 END),
       CAST(COALESCE(SUM(CASE WHEN created_at >= $2 THEN COALESCE(size, reserved_bytes, 0) END), 0) AS BIGINT),
       CAST(COALESCE(SUM(COALESCE(size, reserved_bytes, 0)), 0) AS BIGINT)
     FROM uploads WHERE owner = $1 AND id <> $3 AND state NOT IN ('rejected', 'expired')";

fn usage_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<Usage> {
    Ok(Usage {
        uploads_today: r.try_get(0)?,
        bytes_today: r.try_get(1)?,
        bytes_total: r.try_get(2)?,
    })
}

/// A user's row held for a reservation: their standing and usage as of the lock. Dropped
/// without [`Held::commit`], nothing is written.
pub struct Held {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    pub user: UserRow,
    pub usage: Usage,
}

impl Held {
    /// Records the upload `row`, holding `reserved` bytes until its size is known.
    pub async fn insert_upload(mut self, row: &UploadRow, reserved: u64) -> anyhow::Result<()> {
        let mut statements = super::batch::Statements::new(&mut self.tx, self.backend);
        super::batch::insert_rows(&mut statements, std::slice::from_ref(row)).await?;
        statements.send().await?;
        sqlx::query("UPDATE uploads SET reserved_bytes = $1 WHERE id = $2")
            .bind(i64::try_from(reserved).unwrap_or(i64::MAX))
            .bind(&row.id)
            .execute(&mut *self.tx)
            .await
            .context("reserving for the upload")?;
        self.tx.commit().await.context("reserving for the upload")
    }

    /// Counts upload `upload_id` with the store's `size` from now on.
    pub async fn settle(mut self, upload_id: &str, size: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE uploads SET size = $1 WHERE id = $2")
            .bind(size)
            .bind(upload_id)
            .execute(&mut *self.tx)
            .await
            .context("settling the upload's size")?;
        self.tx.commit().await.context("settling the upload's size")
    }
}

impl Store {
    /// The user whose uploads live under `owner`.
    pub async fn user(&self, owner: &str) -> anyhow::Result<Option<UserRow>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE owner = $1"
        ))
        .bind(owner)
        .fetch_optional(&self.reader)
        .await
        .context("reading a user")?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Remembers that `owner` came with a token of `subject` naming `plan`.
    pub async fn remember_user(
        &self,
        owner: &str,
        subject: &str,
        plan: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO users (owner, subject, plan, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (owner) DO UPDATE SET subject = excluded.subject, plan = excluded.plan,
               updated_at = excluded.updated_at",
        )
        .bind(owner)
        .bind(subject)
        .bind(plan)
        .bind(now_millis())
        .execute(&self.writer)
        .await
        .context("remembering a user")?;
        Ok(())
    }

    /// The usage of `owner` since `day_start` (Unix ms).
    pub async fn usage(&self, owner: &str, day_start: i64) -> anyhow::Result<Usage> {
        let row = sqlx::query(USAGE)
            .bind(owner)
            .bind(day_start)
            .bind("")
            .fetch_one(&self.reader)
            .await
            .context("counting usage")?;
        usage_from_row(&row)
    }

    /// Holds the row of `owner` (made when missing; with `subject` and the plan its token
    /// names, when a request comes with one) and reads their usage since `day_start`, leaving
    /// out upload `except`.
    pub async fn hold_user(
        &self,
        owner: &str,
        token: Option<(&str, Option<&str>)>,
        day_start: i64,
        except: &str,
    ) -> anyhow::Result<Held> {
        let mut tx = self.writer.begin().await.context("holding a user")?;
        // The write takes the row's lock on PostgreSQL until the transaction ends: a second
        // reservation for the user waits here, then counts what the first one wrote.
        let upsert = match token {
            Some(_) => {
                "INSERT INTO users (owner, subject, plan, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner) DO UPDATE SET subject = excluded.subject,
                   plan = excluded.plan, updated_at = excluded.updated_at"
            }
            None => {
                "INSERT INTO users (owner, subject, plan, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (owner) DO UPDATE SET updated_at = excluded.updated_at"
            }
        };
        let (subject, plan) = token.unwrap_or_default();
        sqlx::query(upsert)
            .bind(owner)
            .bind(token.map(|_| subject))
            .bind(plan)
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .context("holding a user")?;
        let user = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE owner = $1"
        ))
        .bind(owner)
        .fetch_one(&mut *tx)
        .await
        .context("holding a user")?;
        let user = user_from_row(&user)?;
        let usage = sqlx::query(USAGE)
            .bind(owner)
            .bind(day_start)
            .bind(except)
            .fetch_one(&mut *tx)
            .await
            .context("counting usage")?;
        let usage = usage_from_row(&usage)?;
        Ok(Held {
            tx,
            backend: self.backend,
            user,
            usage,
        })
    }

    /// Applies an operator's `change` to the user `owner` (with `subject`, made when missing),
    /// with the audit row.
    pub async fn change_user(
        &self,
        owner: &str,
        subject: &str,
        change: &UserChange,
        who: &super::Actor,
        detail: &serde_json::Value,
    ) -> anyhow::Result<UserRow> {
        let mut tx = self.writer.begin().await.context("changing a user")?;
        sqlx::query(
            "INSERT INTO users (owner, subject, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (owner) DO NOTHING",
        )
        .bind(owner)
        .bind(subject)
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .context("changing a user")?;
        if let Some(plan) = &change.plan_override {
            sqlx::query("UPDATE users SET plan_override = $1, updated_at = $2 WHERE owner = $3")
                .bind(plan.clone())
                .bind(now_millis())
                .bind(owner)
                .execute(&mut *tx)
                .await
                .context("changing a user")?;
        }
        if let Some(suspended) = change.suspended {
            sqlx::query("UPDATE users SET suspended = $1, updated_at = $2 WHERE owner = $3")
                .bind(i64::from(suspended))
                .bind(now_millis())
                .bind(owner)
                .execute(&mut *tx)
                .await
                .context("changing a user")?;
        }
        super::audit::record(&mut tx, who, "user.change", owner, detail)
            .await
            .context("recording the change")?;
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE owner = $1"
        ))
        .bind(owner)
        .fetch_one(&mut *tx)
        .await
        .context("changing a user")?;
        tx.commit().await.context("changing a user")?;
        user_from_row(&row)
    }

    /// Drops upload `upload_id` while it is still `issued`: it was recorded (and counted)
    /// before its credentials, and they could not be vended.
    pub async fn drop_issued_upload(&self, upload_id: &str) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1 AND state = 'issued'")
            .bind(upload_id)
            .execute(&self.writer)
            .await
            .context("dropping an upload")?;
        Ok(())
    }
}

//! Issued uploads that were never announced: claimed for a store lookup on a per-upload
//! backoff schedule, one instance at a time, and expired when no object ever came.

use anyhow::Context;
use sqlx::Row;

use super::{Backend, Store, now_millis};

/// An issued upload due for a lookup.
#[derive(Debug, Clone)]
pub struct Unannounced {
    pub id: String,
    pub bucket: String,
    pub object_key: String,
    /// When credentials were last handed out for it.
    pub vended_at: i64,
    /// How often the store was asked before.
    pub checks: i64,
}

impl Store {
    /// Records that credentials for `upload_id` were handed out again now.
    pub async fn touch_vended(&self, upload_id: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE uploads SET vended_at = $1 WHERE id = $2 AND state = 'issued'")
            .bind(now_millis())
            .bind(upload_id)
            .execute(&self.writer)
            .await
            .context("recording a credential refresh")?;
        Ok(())
    }

    /// Claims up to `limit` issued uploads quiet for `quiet_ms` at `now` (Unix ms), or due
    /// again by then, for `lease_ms`: their next check moves past the lease, so no other
    /// instance takes them.
    pub async fn claim_unannounced(
        &self,
        now: i64,
        quiet_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<Unannounced>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE uploads SET next_check_at = $1
             WHERE id IN (SELECT id FROM uploads
                          WHERE state = 'issued'
                            AND ((next_check_at IS NULL AND created_at <= $2) OR next_check_at <= $3)
                          ORDER BY created_at LIMIT $4{lock})
               AND state = 'issued'
             RETURNING id, bucket, object_key, COALESCE(vended_at, created_at) AS vended_at, checks"
        ))
        .bind(now + lease_ms)
        .bind(now - quiet_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await
        .context("claiming unannounced uploads")?;
        rows.iter()
            .map(|r| {
                Ok(Unannounced {
                    id: r.try_get("id")?,
                    bucket: r.try_get("bucket")?,
                    object_key: r.try_get("object_key")?,
                    vended_at: r.try_get("vended_at")?,
                    checks: r.try_get("checks")?,
                })
            })
            .collect()
    }

    /// The store had nothing for `upload_id` (yet): ask again at `next_check_at`.
    pub async fn reschedule_check(
        &self,
        upload_id: &str,
        next_check_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE uploads SET next_check_at = $1, checks = checks + 1 WHERE id = $2 AND state = 'issued'",
        )
        .bind(next_check_at)
        .bind(upload_id)
        .execute(&self.writer)
        .await
        .context("rescheduling a lookup")?;
        Ok(())
    }

    /// Where the listing called `name` goes on ('' at the start), and the cursor's version.
    pub async fn reconcile_cursor(&self, name: &str) -> anyhow::Result<(String, i64)> {
        sqlx::query(
            "INSERT INTO reconcile_cursors (name, cursor, version, updated_at) VALUES ($1, '', 0, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_millis())
        .execute(&self.writer)
        .await
        .context("creating a listing cursor")?;
        let row = sqlx::query("SELECT cursor, version FROM reconcile_cursors WHERE name = $1")
            .bind(name)
            .fetch_one(&self.writer)
            .await
            .context("reading a listing cursor")?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Moves the listing called `name` to `to` if it is still at `version`; `false` when
    /// another instance moved it first (and so listed this page itself).
    pub async fn advance_cursor(&self, name: &str, version: i64, to: &str) -> anyhow::Result<bool> {
        let r = sqlx::query(
            "UPDATE reconcile_cursors SET cursor = $1, version = version + 1, updated_at = $2 WHERE name = $3 AND version = $4",
        )
        .bind(to)
        .bind(now_millis())
        .bind(name)
        .bind(version)
        .execute(&self.writer)
        .await
        .context("advancing a listing cursor")?;
        Ok(r.rows_affected() == 1)
    }

    /// Whether any notification for the object was recorded.
    pub async fn object_announced(&self, bucket: &str, key: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM events WHERE bucket = $1 AND object_key = $2 LIMIT 1")
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .context("looking for a notification")?;
        Ok(row.is_some())
    }

    /// No object came for `upload_id` while its credentials could have been used.
    pub async fn expire_upload(&self, upload_id: &str) -> anyhow::Result<bool> {
        let r = sqlx::query(
            "UPDATE uploads SET state = 'expired', updated_at = $1 WHERE id = $2 AND state = 'issued'",
        )
        .bind(now_millis())
        .bind(upload_id)
        .execute(&self.writer)
        .await
        .context("expiring an upload")?;
        Ok(r.rows_affected() == 1)
    }
}

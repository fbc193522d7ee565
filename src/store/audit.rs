//! The admin audit trail, written in the same transaction as the change it records.

use anyhow::Context;
use sqlx::Row;

use super::{Store, now_millis};

/// Who made an admin change and through which request.
#[derive(Debug, Clone)]
pub struct Actor {
    pub actor: String,
    pub client_ip: String,
    pub request_id: String,
}

/// One recorded change.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub client_ip: String,
    pub request_id: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// Inserts the audit row for `action` on `target` inside the caller's transaction.
pub(super) async fn record(
    conn: &mut sqlx::AnyConnection,
    who: &Actor,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit (id, at, actor, client_ip, request_id, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_millis())
    .bind(&who.actor)
    .bind(&who.client_ip)
    .bind(&who.request_id)
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Changes newest first, `limit` of them, older than the `before` id when given.
    pub async fn list_audit(
        &self,
        limit: u32,
        before: Option<&str>,
    ) -> anyhow::Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, client_ip, request_id, action, target, detail FROM audit
             WHERE ($1 = '' OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .context("reading the audit trail")?;
        rows.iter()
            .map(|r| {
                let at_ms: i64 = r.try_get("at")?;
                let detail: String = r.try_get("detail")?;
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    at: at_ms,
                    actor: r.try_get("actor")?,
                    client_ip: r.try_get("client_ip")?,
                    request_id: r.try_get("request_id")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}

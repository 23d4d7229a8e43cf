//! SQLite: webhook endpoints and deliveries (`store::webhooks`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use uuid::Uuid;

use super::SqliteStore;
use super::codec::{err, parse_ts, ts};
use crate::ids::TenantId;
use crate::secret::Secret;
use crate::store::StoreError;
use crate::store::webhooks::{
    AttemptOutcome, ClaimRequest, Claimed, DeliveryRecord, DeliveryStatus, DisabledEndpoint,
    REPLAY_MAX, ReplayFrom, WebhookEventRow, WebhookPatch, WebhookRecord, WebhookStore,
    disabled_reason, fold_endpoints,
};

const WEBHOOK_COLUMNS: &str = "id, user_id, url, events, description, secret, secret_hash, \
     is_active, retry_count, timeout_seconds, last_triggered, failure_count, disabled_reason, \
     created_at";

const DELIVERY_COLUMNS: &str = "id, webhook_id, msg_id, replay, event_type, body, status, \
     attempts, next_attempt_at, created_at, last_attempt_at, delivered_at, response_status, \
     last_error";

fn uuid(r: &SqliteRow, column: &str) -> Result<Uuid, StoreError> {
    let s: String = r.try_get(column).map_err(err)?;
    s.parse()
        .map_err(|_| StoreError::Rejected(format!("bad uuid {s:?} in column {column}")))
}

fn opt_ts(r: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let s: Option<String> = r.try_get(column).map_err(err)?;
    s.map(|s| parse_ts(column, &s)).transpose()
}

fn req_ts(r: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    Ok(opt_ts(r, column)?.unwrap_or_default())
}

fn webhook(r: &SqliteRow) -> Result<WebhookRecord, StoreError> {
    let events: String = r.try_get("events").map_err(err)?;
    Ok(WebhookRecord {
        id: uuid(r, "id")?,
        tenant: TenantId(uuid(r, "user_id")?),
        url: r.try_get("url").map_err(err)?,
        events: serde_json::from_str(&events)
            .map_err(|e| StoreError::Rejected(format!("bad events list: {e}")))?,
        description: r.try_get("description").map_err(err)?,
        secret: Secret::new(r.try_get::<String, _>("secret").map_err(err)?),
        secret_hash: r
            .try_get::<Option<String>, _>("secret_hash")
            .map_err(err)?
            .unwrap_or_default(),
        is_active: r
            .try_get::<Option<bool>, _>("is_active")
            .map_err(err)?
            .unwrap_or(true),
        retry_count: r
            .try_get::<Option<i32>, _>("retry_count")
            .map_err(err)?
            .unwrap_or(3),
        timeout_seconds: r
            .try_get::<Option<i32>, _>("timeout_seconds")
            .map_err(err)?
            .unwrap_or(30),
        last_triggered: opt_ts(r, "last_triggered")?,
        failure_count: r
            .try_get::<Option<i32>, _>("failure_count")
            .map_err(err)?
            .unwrap_or(0),
        disabled_reason: r.try_get("disabled_reason").map_err(err)?,
        created_at: req_ts(r, "created_at")?,
    })
}

fn delivery(r: &SqliteRow) -> Result<DeliveryRecord, StoreError> {
    let status: String = r.try_get("status").map_err(err)?;
    Ok(DeliveryRecord {
        id: r.try_get("id").map_err(err)?,
        webhook_id: uuid(r, "webhook_id")?,
        msg_id: r.try_get("msg_id").map_err(err)?,
        replay: r.try_get("replay").map_err(err)?,
        event_type: r.try_get("event_type").map_err(err)?,
        body: r.try_get("body").map_err(err)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Rejected(format!("bad delivery status {status:?}")))?,
        attempts: r.try_get("attempts").map_err(err)?,
        next_attempt_at: req_ts(r, "next_attempt_at")?,
        created_at: req_ts(r, "created_at")?,
        last_attempt_at: opt_ts(r, "last_attempt_at")?,
        delivered_at: opt_ts(r, "delivered_at")?,
        response_status: r.try_get("response_status").map_err(err)?,
        last_error: r.try_get("last_error").map_err(err)?,
    })
}

/// A batch's webhook events: one pending delivery per active endpoint of
/// the tenant that subscribes to the type (one prepared statement per
/// event; SQLite runs in-process).
pub(super) async fn write_events(
    conn: &mut SqliteConnection,
    events: &[&WebhookEventRow],
) -> Result<(), StoreError> {
    for e in events {
        let at = ts(e.created_at);
        sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook_id, msg_id, event_type, body, next_attempt_at, created_at) \
             SELECT w.id, ?2, ?3, ?4, ?5, ?5 FROM webhooks w \
             WHERE w.user_id = ?1 AND COALESCE(w.is_active, 1) = 1 \
               AND EXISTS (SELECT 1 FROM json_each(w.events) j WHERE j.value IN (?3, '*')) \
             ON CONFLICT DO NOTHING",
        )
        .bind(e.tenant.to_string())
        .bind(&e.msg_id)
        .bind(&e.event_type)
        .bind(&e.body)
        .bind(&at)
        .execute(&mut *conn)
        .await
        .map_err(err)?;
    }
    Ok(())
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError> {
        let _turn = self.writing().await;
        sqlx::query(
            "INSERT INTO webhooks (id, user_id, url, events, description, secret, secret_hash, \
             is_active, retry_count, timeout_seconds, last_triggered, failure_count, \
             disabled_reason, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .bind(w.id.to_string())
        .bind(w.tenant.to_string())
        .bind(&w.url)
        .bind(serde_json::Value::from(w.events.clone()).to_string())
        .bind(&w.description)
        .bind(w.secret.expose())
        .bind(&w.secret_hash)
        .bind(w.is_active)
        .bind(w.retry_count)
        .bind(w.timeout_seconds)
        .bind(w.last_triggered.map(ts))
        .bind(w.failure_count)
        .bind(&w.disabled_reason)
        .bind(ts(w.created_at))
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn list_webhooks(&self, tenant: TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        let q = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = ?1 ORDER BY created_at, id"
        );
        sqlx::query(&q)
            .bind(tenant.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(err)?
            .iter()
            .map(webhook)
            .collect()
    }

    async fn get_webhook(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let q = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND user_id = ?2");
        sqlx::query(&q)
            .bind(id.to_string())
            .bind(tenant.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(err)?
            .as_ref()
            .map(webhook)
            .transpose()
    }

    async fn update_webhook(
        &self,
        tenant: TenantId,
        id: Uuid,
        patch: &WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let _turn = self.writing().await;
        let q = format!(
            "UPDATE webhooks SET url = COALESCE(?3, url), events = COALESCE(?4, events), \
             description = CASE WHEN ?5 THEN ?6 ELSE description END, \
             retry_count = COALESCE(?7, retry_count), \
             timeout_seconds = COALESCE(?8, timeout_seconds), \
             failure_count = CASE WHEN ?9 = 1 AND COALESCE(is_active, 1) = 0 THEN 0 \
                 ELSE failure_count END, \
             disabled_reason = CASE WHEN ?9 = 1 THEN NULL ELSE disabled_reason END, \
             is_active = COALESCE(?9, is_active), \
             updated_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now') \
             WHERE id = ?1 AND user_id = ?2 RETURNING {WEBHOOK_COLUMNS}"
        );
        sqlx::query(&q)
            .bind(id.to_string())
            .bind(tenant.to_string())
            .bind(&patch.url)
            .bind(
                patch
                    .events
                    .as_ref()
                    .map(|e| serde_json::Value::from(e.clone()).to_string()),
            )
            .bind(patch.description.is_some())
            .bind(patch.description.clone().flatten())
            .bind(patch.retry_count)
            .bind(patch.timeout_seconds)
            .bind(patch.is_active)
            .fetch_optional(self.pool())
            .await
            .map_err(err)?
            .as_ref()
            .map(webhook)
            .transpose()
    }

    async fn delete_webhook(&self, tenant: TenantId, id: Uuid) -> Result<bool, StoreError> {
        let _turn = self.writing().await;
        let n = sqlx::query("DELETE FROM webhooks WHERE id = ?1 AND user_id = ?2")
            .bind(id.to_string())
            .bind(tenant.to_string())
            .execute(self.pool())
            .await
            .map_err(err)?
            .rows_affected();
        Ok(n > 0)
    }

    async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let q = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?1 \
             AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        );
        sqlx::query(&q)
            .bind(webhook.to_string())
            .bind(before)
            .bind(limit.min(10_000) as i64)
            .fetch_all(self.pool())
            .await
            .map_err(err)?
            .iter()
            .map(delivery)
            .collect()
    }

    async fn claim_webhook_deliveries(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        // Endpoint by endpoint, each through the (webhook_id,
        // next_attempt_at) index and at most `per_endpoint` rows: the
        // backlog of an endpoint being skipped is never read.
        let skip = serde_json::Value::from(
            req.skip
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<String>>(),
        )
        .to_string();
        let only = serde_json::Value::from(
            req.only
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<String>>(),
        )
        .to_string();
        let q = format!(
            "UPDATE webhook_deliveries SET next_attempt_at = ?2 \
             WHERE id IN (SELECT d.id FROM webhooks w JOIN webhook_deliveries d \
                   ON d.id IN (SELECT id FROM webhook_deliveries \
                       WHERE webhook_id = w.id AND status = 'pending' AND next_attempt_at <= ?1 \
                       ORDER BY next_attempt_at, id LIMIT ?4) \
                   WHERE w.id NOT IN (SELECT value FROM json_each(?5)) \
                     AND (?6 = '[]' OR w.id IN (SELECT value FROM json_each(?6))) \
                   ORDER BY d.next_attempt_at, d.id LIMIT ?3) \
             AND status = 'pending' AND next_attempt_at <= ?1 \
             RETURNING {DELIVERY_COLUMNS}"
        );
        let turn = self.writing().await;
        let mut deliveries: Vec<DeliveryRecord> = sqlx::query(&q)
            .bind(ts(req.now))
            .bind(ts(req.lease_until))
            .bind(req.limit as i64)
            .bind(req.per_endpoint as i64)
            .bind(skip)
            .bind(only)
            .fetch_all(self.pool())
            .await
            .map_err(err)?
            .iter()
            .map(delivery)
            .collect::<Result<_, _>>()?;
        drop(turn);
        deliveries.sort_by_key(|d| d.id);
        let mut ids: Vec<String> = deliveries
            .iter()
            .map(|d| d.webhook_id.to_string())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let endpoints = if ids.is_empty() {
            Vec::new()
        } else {
            let q = format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks \
                 WHERE id IN (SELECT value FROM json_each(?1))"
            );
            sqlx::query(&q)
                .bind(serde_json::Value::from(ids).to_string())
                .fetch_all(self.pool())
                .await
                .map_err(err)?
                .iter()
                .map(webhook)
                .collect::<Result<_, _>>()?
        };
        Ok(Claimed {
            deliveries,
            endpoints,
        })
    }

    async fn record_webhook_attempts(
        &self,
        outcomes: &[AttemptOutcome],
        disable_after: i32,
    ) -> Result<Vec<DisabledEndpoint>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let _turn = self.writing().await;
        let mut tx = self
            .pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err)?;
        for o in outcomes {
            let at = ts(o.at);
            sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts + ?7, status = ?2, \
                 next_attempt_at = ?3, \
                 last_attempt_at = CASE WHEN ?7 = 1 THEN ?4 ELSE last_attempt_at END, \
                 response_status = CASE WHEN ?7 = 1 THEN ?5 ELSE response_status END, \
                 last_error = ?6, \
                 delivered_at = CASE WHEN ?2 = 'delivered' THEN ?4 ELSE delivered_at END \
                 WHERE id = ?1",
            )
            .bind(o.delivery_id)
            .bind(o.status.as_str())
            .bind(ts(o.next_attempt_at))
            .bind(&at)
            .bind(o.response_status)
            .bind(&o.error)
            .bind(i32::from(o.attempted))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        let mut disabled = Vec::new();
        for e in fold_endpoints(outcomes) {
            let row = sqlx::query(
                "UPDATE webhooks SET last_triggered = MAX(COALESCE(last_triggered, ''), ?2), \
                 failure_count = CASE WHEN ?3 THEN ?4 ELSE COALESCE(failure_count, 0) + ?4 END \
                 WHERE id = ?1 RETURNING user_id, url, failure_count, is_active",
            )
            .bind(e.webhook_id.to_string())
            .bind(ts(e.last_at))
            .bind(e.reset)
            .bind(e.failures)
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            let Some(row) = row else { continue };
            let count: i32 = row.try_get("failure_count").map_err(err)?;
            let active: Option<bool> = row.try_get("is_active").map_err(err)?;
            if active != Some(false) && disable_after > 0 && count >= disable_after {
                sqlx::query(
                    "UPDATE webhooks SET is_active = 0, disabled_reason = ?2, \
                     updated_at = strftime('%Y-%m-%dT%H:%M:%f000Z', 'now') WHERE id = ?1",
                )
                .bind(e.webhook_id.to_string())
                .bind(disabled_reason(count))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                disabled.push(DisabledEndpoint {
                    id: e.webhook_id,
                    tenant: TenantId(uuid(&row, "user_id")?),
                    url: row.try_get("url").map_err(err)?,
                    failure_count: count,
                });
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(disabled)
    }

    async fn replay_webhook_deliveries(
        &self,
        webhook: Uuid,
        from: ReplayFrom,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let _turn = self.writing().await;
        let (since, start) = match from {
            ReplayFrom::Since(t) => (Some(ts(t)), None),
            ReplayFrom::Delivery(id) => (None, Some(id)),
        };
        let n = sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook_id, msg_id, replay, event_type, body, next_attempt_at, created_at) \
             SELECT d.webhook_id, d.msg_id, \
                    (SELECT max(r.replay) FROM webhook_deliveries r \
                     WHERE r.webhook_id = d.webhook_id AND r.msg_id = d.msg_id) + 1, \
                    d.event_type, d.body, ?4, ?4 \
             FROM webhook_deliveries d \
             WHERE d.webhook_id = ?1 AND d.replay = 0 \
               AND (?2 IS NULL OR d.created_at >= ?2) \
               AND (?3 IS NULL OR d.id >= (SELECT min(o.id) FROM webhook_deliveries o \
                    WHERE o.webhook_id = ?1 AND o.msg_id = (SELECT x.msg_id \
                    FROM webhook_deliveries x WHERE x.id = ?3 AND x.webhook_id = ?1))) \
             ORDER BY d.id LIMIT ?5",
        )
        .bind(webhook.to_string())
        .bind(since)
        .bind(start)
        .bind(ts(now))
        .bind(REPLAY_MAX)
        .execute(self.pool())
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n)
    }
}

//! PostgreSQL: webhook endpoints and deliveries (`store::webhooks`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};
use uuid::Uuid;

use super::PostgresStore;
use super::codec::err;
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

fn webhook(r: &PgRow) -> Result<WebhookRecord, StoreError> {
    Ok(WebhookRecord {
        id: r.try_get("id").map_err(err)?,
        tenant: TenantId(r.try_get("user_id").map_err(err)?),
        url: r.try_get("url").map_err(err)?,
        events: r.try_get("events").map_err(err)?,
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
        last_triggered: r.try_get("last_triggered").map_err(err)?,
        failure_count: r
            .try_get::<Option<i32>, _>("failure_count")
            .map_err(err)?
            .unwrap_or(0),
        disabled_reason: r.try_get("disabled_reason").map_err(err)?,
        created_at: r
            .try_get::<Option<DateTime<Utc>>, _>("created_at")
            .map_err(err)?
            .unwrap_or_default(),
    })
}

fn delivery(r: &PgRow) -> Result<DeliveryRecord, StoreError> {
    let status: String = r.try_get("status").map_err(err)?;
    Ok(DeliveryRecord {
        id: r.try_get("id").map_err(err)?,
        webhook_id: r.try_get("webhook_id").map_err(err)?,
        msg_id: r.try_get("msg_id").map_err(err)?,
        replay: r.try_get("replay").map_err(err)?,
        event_type: r.try_get("event_type").map_err(err)?,
        body: r.try_get("body").map_err(err)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Rejected(format!("bad delivery status {status:?}")))?,
        attempts: r.try_get("attempts").map_err(err)?,
        next_attempt_at: r.try_get("next_attempt_at").map_err(err)?,
        created_at: r.try_get("created_at").map_err(err)?,
        last_attempt_at: r.try_get("last_attempt_at").map_err(err)?,
        delivered_at: r.try_get("delivered_at").map_err(err)?,
        response_status: r.try_get("response_status").map_err(err)?,
        last_error: r.try_get("last_error").map_err(err)?,
    })
}

/// A batch's webhook events: one pending delivery per active endpoint of
/// the tenant that subscribes to the type, in one statement.
pub(super) async fn write_events(
    conn: &mut PgConnection,
    events: &[&WebhookEventRow],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = events.iter().map(|e| e.tenant.0).collect();
    let msg_ids: Vec<&str> = events.iter().map(|e| e.msg_id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
    let at: Vec<DateTime<Utc>> = events.iter().map(|e| e.created_at).collect();
    sqlx::query(
        "INSERT INTO webhook_deliveries \
         (webhook_id, msg_id, event_type, body, next_attempt_at, created_at) \
         SELECT w.id, e.msg_id, e.event_type, e.body, e.created_at, e.created_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
              AS e(tenant, msg_id, event_type, body, created_at) \
         JOIN webhooks w ON w.user_id = e.tenant AND w.is_active IS TRUE \
              AND (e.event_type = ANY(w.events) OR '*' = ANY(w.events)) \
         ON CONFLICT (webhook_id, msg_id, replay) DO NOTHING",
    )
    .bind(&tenants)
    .bind(&msg_ids)
    .bind(&types)
    .bind(&bodies)
    .bind(&at)
    .execute(conn)
    .await
    .map_err(err)?;
    Ok(())
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, user_id, url, events, description, secret, secret_hash, \
             is_active, retry_count, timeout_seconds, last_triggered, failure_count, \
             disabled_reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(w.id)
        .bind(w.tenant.0)
        .bind(&w.url)
        .bind(&w.events)
        .bind(&w.description)
        .bind(w.secret.expose())
        .bind(&w.secret_hash)
        .bind(w.is_active)
        .bind(w.retry_count)
        .bind(w.timeout_seconds)
        .bind(w.last_triggered)
        .bind(w.failure_count)
        .bind(&w.disabled_reason)
        .bind(w.created_at)
        .execute(self.pool())
        .await
        .map_err(err)?;
        Ok(())
    }

    async fn list_webhooks(&self, tenant: TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        let q = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE user_id = $1 ORDER BY created_at, id"
        );
        sqlx::query(&q)
            .bind(tenant.0)
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
        let q = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND user_id = $2");
        sqlx::query(&q)
            .bind(id)
            .bind(tenant.0)
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
        let q = format!(
            "UPDATE webhooks SET url = COALESCE($3, url), events = COALESCE($4, events), \
             description = CASE WHEN $5 THEN $6 ELSE description END, \
             retry_count = COALESCE($7, retry_count), \
             timeout_seconds = COALESCE($8, timeout_seconds), \
             failure_count = CASE WHEN $9 IS TRUE AND is_active IS NOT TRUE THEN 0 \
                 ELSE failure_count END, \
             disabled_reason = CASE WHEN $9 IS TRUE THEN NULL ELSE disabled_reason END, \
             is_active = COALESCE($9, is_active), updated_at = now() \
             WHERE id = $1 AND user_id = $2 RETURNING {WEBHOOK_COLUMNS}"
        );
        sqlx::query(&q)
            .bind(id)
            .bind(tenant.0)
            .bind(&patch.url)
            .bind(&patch.events)
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
        let n = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(tenant.0)
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
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             AND ($2::int8 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        sqlx::query(&q)
            .bind(webhook)
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
        // backlog of an endpoint being skipped is never read. The UPDATE
        // checks `next_attempt_at` again under the row lock: of two nodes
        // claiming the same row, the second finds it leased and skips it.
        let q = format!(
            "UPDATE webhook_deliveries AS d SET next_attempt_at = $2 \
             FROM (SELECT c.id FROM webhooks w CROSS JOIN LATERAL \
                       (SELECT id, next_attempt_at FROM webhook_deliveries \
                        WHERE webhook_id = w.id AND status = 'pending' AND next_attempt_at <= $1 \
                        ORDER BY next_attempt_at, id LIMIT $4) c \
                   WHERE NOT (w.id = ANY($5)) \
                     AND (cardinality($6::uuid[]) = 0 OR w.id = ANY($6)) \
                   ORDER BY c.next_attempt_at, c.id LIMIT $3) AS due \
             WHERE d.id = due.id AND d.status = 'pending' AND d.next_attempt_at <= $1 \
             RETURNING {}",
            DELIVERY_COLUMNS
                .split(", ")
                .map(|c| format!("d.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut deliveries: Vec<DeliveryRecord> = sqlx::query(&q)
            .bind(req.now)
            .bind(req.lease_until)
            .bind(req.limit as i64)
            .bind(req.per_endpoint as i64)
            .bind(&req.skip)
            .bind(&req.only)
            .fetch_all(self.pool())
            .await
            .map_err(err)?
            .iter()
            .map(delivery)
            .collect::<Result<_, _>>()?;
        deliveries.sort_by_key(|d| d.id);
        let mut ids: Vec<Uuid> = deliveries.iter().map(|d| d.webhook_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let endpoints = if ids.is_empty() {
            Vec::new()
        } else {
            let q = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ANY($1)");
            sqlx::query(&q)
                .bind(&ids)
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
        let mut tx = self.pool().begin().await.map_err(err)?;
        let ids: Vec<i64> = outcomes.iter().map(|o| o.delivery_id).collect();
        let status: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
        let at: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.at).collect();
        let next: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.next_attempt_at).collect();
        let code: Vec<Option<i32>> = outcomes.iter().map(|o| o.response_status).collect();
        let error: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
        let attempted: Vec<bool> = outcomes.iter().map(|o| o.attempted).collect();
        sqlx::query(
            "UPDATE webhook_deliveries AS d \
             SET attempts = d.attempts + CASE WHEN u.attempted THEN 1 ELSE 0 END, \
             status = u.status, next_attempt_at = u.next_at, \
             last_attempt_at = CASE WHEN u.attempted THEN u.at ELSE d.last_attempt_at END, \
             response_status = CASE WHEN u.attempted THEN u.code ELSE d.response_status END, \
             last_error = u.error, \
             delivered_at = CASE WHEN u.status = 'delivered' THEN u.at ELSE d.delivered_at END \
             FROM UNNEST($1::int8[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
                         $5::int4[], $6::text[], $7::bool[]) \
                  AS u(id, status, at, next_at, code, error, attempted) \
             WHERE d.id = u.id",
        )
        .bind(&ids)
        .bind(&status)
        .bind(&at)
        .bind(&next)
        .bind(&code)
        .bind(&error)
        .bind(&attempted)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
        let mut disabled = Vec::new();
        for e in fold_endpoints(outcomes) {
            let row = sqlx::query(
                "UPDATE webhooks SET last_triggered = GREATEST(last_triggered, $2), \
                 failure_count = CASE WHEN $3 THEN $4 ELSE COALESCE(failure_count, 0) + $4 END \
                 WHERE id = $1 RETURNING user_id, url, failure_count, is_active",
            )
            .bind(e.webhook_id)
            .bind(e.last_at)
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
                    "UPDATE webhooks SET is_active = false, disabled_reason = $2, \
                     updated_at = now() WHERE id = $1",
                )
                .bind(e.webhook_id)
                .bind(disabled_reason(count))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
                disabled.push(DisabledEndpoint {
                    id: e.webhook_id,
                    tenant: TenantId(row.try_get("user_id").map_err(err)?),
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
        let (since, start) = match from {
            ReplayFrom::Since(t) => (Some(t), None),
            ReplayFrom::Delivery(id) => (None, Some(id)),
        };
        let n = sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook_id, msg_id, replay, event_type, body, next_attempt_at, created_at) \
             SELECT d.webhook_id, d.msg_id, \
                    (SELECT max(r.replay) FROM webhook_deliveries r \
                     WHERE r.webhook_id = d.webhook_id AND r.msg_id = d.msg_id) + 1, \
                    d.event_type, d.body, $4, $4 \
             FROM webhook_deliveries d \
             WHERE d.webhook_id = $1 AND d.replay = 0 \
               AND ($2::timestamptz IS NULL OR d.created_at >= $2) \
               AND ($3::int8 IS NULL OR d.id >= (SELECT min(o.id) FROM webhook_deliveries o \
                    WHERE o.webhook_id = $1 AND o.msg_id = (SELECT x.msg_id \
                    FROM webhook_deliveries x WHERE x.id = $3 AND x.webhook_id = $1))) \
             ORDER BY d.id LIMIT $5",
        )
        .bind(webhook)
        .bind(since)
        .bind(start)
        .bind(now)
        .bind(REPLAY_MAX)
        .execute(self.pool())
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n)
    }
}

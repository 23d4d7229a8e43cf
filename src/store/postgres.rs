//! The PostgreSQL store, for production.
//!
//! A batch is one transaction with one statement per row kind: inserts
//! are `INSERT … SELECT … FROM UNNEST($1::uuid[], …) ON CONFLICT DO
//! NOTHING`, keyed updates are `UPDATE … FROM UNNEST(…)`, so a batch of
//! thousands of rows costs a handful of round trips and one commit
//! (`synchronous_commit` as the server has it: acknowledged rows are on
//! disk).

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::sql::{self, Dialect, Plan};
use super::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, Page, ParticipantRow, PoolConfig,
    Row, SessionQuery, SessionRecord, Store, StoreError, TenantRecord,
};
use crate::ids::{EventId, SessionId, TenantId};
use crate::protocol::model::{Counters, SessionState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Rows deleted per statement by retention, so no single transaction
/// grows without bound.
const DELETE_CHUNK: i64 = 10_000;

fn err(e: sqlx::Error) -> StoreError {
    sql::classify(Dialect::Postgres, e)
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// A store on `url` (`postgres://user:pass@host:port/db`). Connections
    /// are opened on first use, so a database that is down at start-up is
    /// reported by the first query (and retried by the writer), not here.
    ///
    /// # Errors
    /// `Rejected` if the URL cannot be parsed.
    pub fn connect_lazy(url: &str, pool: PoolConfig) -> Result<PostgresStore, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Rejected(format!("bad PostgreSQL URL: {e}")))?;
        if options.get_application_name().is_none() {
            options = options.application_name("eva-hub");
        }
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .acquire_timeout(pool.acquire_timeout)
            .connect_lazy_with(options);
        Ok(PostgresStore { pool })
    }

    /// The connection pool (for tools and tests that inspect the tables).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

const SESSION_SELECT: &str = "SELECT s.id, s.user_id, s.avatar_id, s.name, s.description, s.status, \
     s.config, s.created_at, s.started_at, s.ended_at, s.participant_count, s.questions_received, \
     s.operator_interventions, s.error_count, s.last_error, st.current_slide, \
     st.presentation_mode, st.is_speaking, st.awaiting_questions, st.operator_connected, \
     st.current_topic, st.last_interaction, st.conversation_context \
     FROM sessions s LEFT JOIN session_state st ON st.session_id = s.id";

fn session_from(row: &PgRow) -> Result<SessionRecord, StoreError> {
    let defaults = SessionState::default();
    let status: String = row.try_get("status").map_err(err)?;
    Ok(SessionRecord {
        id: SessionId(row.try_get("id").map_err(err)?),
        tenant: TenantId(row.try_get("user_id").map_err(err)?),
        avatar_id: row.try_get("avatar_id").map_err(err)?,
        name: row.try_get("name").map_err(err)?,
        description: row.try_get("description").map_err(err)?,
        status: sql::parse_enum("sessions.status", &status)?,
        config: row.try_get("config").map_err(err)?,
        created_at: row
            .try_get::<Option<DateTime<Utc>>, _>("created_at")
            .map_err(err)?
            .unwrap_or_default(),
        started_at: row.try_get("started_at").map_err(err)?,
        ended_at: row.try_get("ended_at").map_err(err)?,
        counters: Counters {
            participant_count: sql::count(row.try_get("participant_count").map_err(err)?),
            questions_received: sql::count(row.try_get("questions_received").map_err(err)?),
            operator_interventions: sql::count(row.try_get("operator_interventions").map_err(err)?),
            error_count: sql::count(row.try_get("error_count").map_err(err)?),
        },
        last_error: row.try_get("last_error").map_err(err)?,
        state: SessionState {
            current_slide: row
                .try_get::<Option<i32>, _>("current_slide")
                .map_err(err)?
                .unwrap_or(defaults.current_slide),
            presentation_mode: row
                .try_get::<Option<String>, _>("presentation_mode")
                .map_err(err)?
                .unwrap_or(defaults.presentation_mode),
            is_speaking: row
                .try_get::<Option<bool>, _>("is_speaking")
                .map_err(err)?
                .unwrap_or(false),
            awaiting_questions: row
                .try_get::<Option<bool>, _>("awaiting_questions")
                .map_err(err)?
                .unwrap_or(false),
            operator_connected: row
                .try_get::<Option<bool>, _>("operator_connected")
                .map_err(err)?
                .unwrap_or(false),
            current_topic: row.try_get("current_topic").map_err(err)?,
            last_interaction: sql::ts_to_ms(row.try_get("last_interaction").map_err(err)?),
        },
        context: row
            .try_get::<Option<Value>, _>("conversation_context")
            .map_err(err)?
            .unwrap_or_else(|| Value::Object(Default::default())),
    })
}

const CONVERSATION_COLUMNS: &str = "id, session_id, seq, participant_id, message_type, content, \
     speaker, timestamp, confidence_score::float8 AS confidence_score, response_time_ms, context, \
     metadata, client_msg_id";

fn conversation_from(row: &PgRow) -> Result<ConversationRow, StoreError> {
    let message_type: String = row.try_get("message_type").map_err(err)?;
    Ok(ConversationRow {
        id: EventId(row.try_get("id").map_err(err)?),
        session_id: SessionId(row.try_get("session_id").map_err(err)?),
        seq: row.try_get::<i64, _>("seq").map_err(err)?.max(0) as u64,
        participant_id: row.try_get("participant_id").map_err(err)?,
        message_type: sql::parse_enum("conversations.message_type", &message_type)?,
        content: row.try_get("content").map_err(err)?,
        speaker: row.try_get("speaker").map_err(err)?,
        timestamp: row
            .try_get::<Option<DateTime<Utc>>, _>("timestamp")
            .map_err(err)?
            .unwrap_or_default(),
        confidence_score: row.try_get("confidence_score").map_err(err)?,
        response_time_ms: row.try_get("response_time_ms").map_err(err)?,
        context: json_or_empty(row.try_get("context").map_err(err)?),
        metadata: json_or_empty(row.try_get("metadata").map_err(err)?),
        client_msg_id: row.try_get("client_msg_id").map_err(err)?,
    })
}

const INTERVENTION_COLUMNS: &str = "id, session_id, seq, operator_id, intervention_type, \
     trigger_reason, action_taken, created_at, ended_at, duration_seconds, client_msg_id";

fn intervention_from(row: &PgRow) -> Result<InterventionRow, StoreError> {
    let kind: String = row.try_get("intervention_type").map_err(err)?;
    Ok(InterventionRow {
        id: EventId(row.try_get("id").map_err(err)?),
        session_id: SessionId(row.try_get("session_id").map_err(err)?),
        seq: row.try_get::<i64, _>("seq").map_err(err)?.max(0) as u64,
        operator_id: row.try_get("operator_id").map_err(err)?,
        intervention_type: sql::parse_enum("operator_interventions.intervention_type", &kind)?,
        trigger_reason: row.try_get("trigger_reason").map_err(err)?,
        action_taken: row.try_get("action_taken").map_err(err)?,
        created_at: row
            .try_get::<Option<DateTime<Utc>>, _>("created_at")
            .map_err(err)?
            .unwrap_or_default(),
        ended_at: row.try_get("ended_at").map_err(err)?,
        duration_seconds: row.try_get("duration_seconds").map_err(err)?,
        client_msg_id: row.try_get("client_msg_id").map_err(err)?,
    })
}

const ALERT_COLUMNS: &str = "id, session_id, alert_type, severity, title, message, component, \
     metadata, created_at, acknowledged, acknowledged_by, acknowledged_at";

fn alert_from(row: &PgRow) -> Result<AlertRow, StoreError> {
    let alert_type: String = row.try_get("alert_type").map_err(err)?;
    let severity: Option<String> = row.try_get("severity").map_err(err)?;
    let session: Option<Uuid> = row.try_get("session_id").map_err(err)?;
    Ok(AlertRow {
        id: EventId(row.try_get("id").map_err(err)?),
        session_id: SessionId(session.unwrap_or_default()),
        alert_type: sql::parse_enum("system_alerts.alert_type", &alert_type)?,
        severity: sql::parse_enum(
            "system_alerts.severity",
            severity.as_deref().unwrap_or("info"),
        )?,
        title: row.try_get("title").map_err(err)?,
        message: row.try_get("message").map_err(err)?,
        component: row.try_get("component").map_err(err)?,
        metadata: json_or_empty(row.try_get("metadata").map_err(err)?),
        created_at: row
            .try_get::<Option<DateTime<Utc>>, _>("created_at")
            .map_err(err)?
            .unwrap_or_default(),
        acknowledged: row
            .try_get::<Option<bool>, _>("acknowledged")
            .map_err(err)?
            .unwrap_or(false),
        acknowledged_by: row.try_get("acknowledged_by").map_err(err)?,
        acknowledged_at: row.try_get("acknowledged_at").map_err(err)?,
    })
}

const TENANT_COLUMNS: &str = "id, email, company, COALESCE(subscription_tier, 'basic') AS tier, \
     COALESCE(api_quota_monthly, 10000) AS quota, COALESCE(api_calls_used, 0) AS used, \
     COALESCE(concurrent_sessions_limit, 5) AS concurrent, COALESCE(is_active, true) AS active, \
     COALESCE(created_at, now()) AS created_at";

fn tenant_from(row: &PgRow) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        id: TenantId(row.try_get("id").map_err(err)?),
        email: row.try_get("email").map_err(err)?,
        company: row.try_get("company").map_err(err)?,
        subscription_tier: row.try_get("tier").map_err(err)?,
        api_quota_monthly: row.try_get("quota").map_err(err)?,
        api_calls_used: row.try_get("used").map_err(err)?,
        concurrent_sessions_limit: row.try_get("concurrent").map_err(err)?,
        is_active: row.try_get("active").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
    })
}

const KEY_COLUMNS: &str = "id, user_id, name, key_hash, COALESCE(scopes, ARRAY[]::text[]) AS \
     scopes, COALESCE(created_at, now()) AS created_at, expires_at, last_used, \
     COALESCE(is_active, true) AS is_active";

fn key_from(row: &PgRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.try_get("id").map_err(err)?,
        tenant: TenantId(row.try_get("user_id").map_err(err)?),
        name: row.try_get("name").map_err(err)?,
        key_hash: row.try_get("key_hash").map_err(err)?,
        scopes: row.try_get("scopes").map_err(err)?,
        created_at: row.try_get("created_at").map_err(err)?,
        expires_at: row.try_get("expires_at").map_err(err)?,
        last_used: row.try_get("last_used").map_err(err)?,
        is_active: row.try_get("is_active").map_err(err)?,
    })
}

fn json_or_empty(v: Option<Value>) -> Value {
    v.unwrap_or_else(|| Value::Object(Default::default()))
}

/// `LIMIT` for a page: at most `i64::MAX`.
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A history query, newest first, with or without a keyset bound (two
/// statements, so each gets a plan that walks the `(session_id, id)`
/// index backwards).
async fn page<T>(
    pool: &PgPool,
    table: &str,
    columns: &str,
    session: SessionId,
    page: Page,
    decode: fn(&PgRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let rows = match page.before {
        Some(before) => {
            let q = format!(
                "SELECT {columns} FROM {table} WHERE session_id = $1 AND id < $2 \
                 ORDER BY id DESC LIMIT $3"
            );
            sqlx::query(&q)
                .bind(session.0)
                .bind(before)
                .bind(limit(page.limit))
                .fetch_all(pool)
                .await
        }
        None => {
            let q = format!(
                "SELECT {columns} FROM {table} WHERE session_id = $1 ORDER BY id DESC LIMIT $2"
            );
            sqlx::query(&q)
                .bind(session.0)
                .bind(limit(page.limit))
                .fetch_all(pool)
                .await
        }
    }
    .map_err(err)?;
    rows.iter().map(decode).collect()
}

/// The foreign-key check of `conversations.session_id` and
/// `performance_metrics.session_id`, once per batch instead of once per
/// row: every session the batch writes for must exist, and is locked `FOR
/// KEY SHARE` (as a foreign key would) so it cannot be deleted before the
/// batch commits.
async fn check_sessions(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
) -> Result<(), StoreError> {
    let mut ids: Vec<Uuid> = plan
        .conversations
        .iter()
        .map(|c| c.session_id.0)
        .chain(plan.metrics.iter().map(|m| m.session_id.0))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    let found: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM sessions WHERE id = ANY($1) FOR KEY SHARE) s",
    )
    .bind(&ids)
    .fetch_one(&mut **tx)
    .await
    .map_err(err)?;
    if found == ids.len() as i64 {
        Ok(())
    } else {
        Err(StoreError::Rejected(format!(
            "{} of the batch's {} sessions do not exist",
            ids.len() as i64 - found,
            ids.len()
        )))
    }
}

/// Runs the plan's statements in `tx`, in dependency order.
async fn write_plan(
    tx: &mut Transaction<'_, Postgres>,
    plan: &Plan<'_>,
) -> Result<(), sqlx::Error> {
    if !plan.conversations.is_empty() {
        let c = &plan.conversations;
        sqlx::query(
            "INSERT INTO conversations (id, session_id, seq, participant_id, message_type, \
             content, speaker, timestamp, confidence_score, response_time_ms, context, metadata, \
             client_msg_id) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::timestamptz[], $9::float8[], $10::int4[], $11::jsonb[], \
             $12::jsonb[], $13::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(c.iter().map(|r| r.id.0).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.session_id.0).collect::<Vec<_>>())
        .bind(c.iter().map(|r| seq(r.seq)).collect::<Vec<_>>())
        .bind(
            c.iter()
                .map(|r| r.participant_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            c.iter()
                .map(|r| r.message_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(c.iter().map(|r| r.content.as_str()).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.speaker.as_deref()).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.timestamp).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.confidence_score).collect::<Vec<_>>())
        .bind(c.iter().map(|r| r.response_time_ms).collect::<Vec<_>>())
        .bind(c.iter().map(|r| &r.context).collect::<Vec<_>>())
        .bind(c.iter().map(|r| &r.metadata).collect::<Vec<_>>())
        .bind(
            c.iter()
                .map(|r| r.client_msg_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    if !plan.question_responses.is_empty() {
        let q = &plan.question_responses;
        // A response that was a resend of a stored one was not inserted
        // above; its analysis row is a resend too and is skipped.
        sqlx::query(
            "INSERT INTO question_responses (id, conversation_id, question_text, response_text, \
             intent_classification, knowledge_sources, confidence_score, response_time_ms, \
             created_at) \
             SELECT u.id, u.conversation_id, u.question_text, u.response_text, u.intent, \
             ARRAY(SELECT jsonb_array_elements_text(u.sources)), u.confidence, u.took, \
             u.created_at \
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
             $6::jsonb[], $7::float8[], $8::int4[], $9::timestamptz[]) \
             AS u(id, conversation_id, question_text, response_text, intent, sources, \
             confidence, took, created_at) \
             WHERE EXISTS (SELECT 1 FROM conversations c WHERE c.id = u.conversation_id) \
             ON CONFLICT DO NOTHING",
        )
        .bind(q.iter().map(|r| r.id.0).collect::<Vec<_>>())
        .bind(q.iter().map(|r| r.conversation_id.0).collect::<Vec<_>>())
        .bind(
            q.iter()
                .map(|r| r.question_text.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            q.iter()
                .map(|r| r.response_text.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            q.iter()
                .map(|r| r.intent_classification.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            q.iter()
                .map(|r| Value::from(r.knowledge_sources.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(q.iter().map(|r| r.confidence_score).collect::<Vec<_>>())
        .bind(q.iter().map(|r| r.response_time_ms).collect::<Vec<_>>())
        .bind(q.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.interventions.is_empty() {
        let i = &plan.interventions;
        sqlx::query(
            "INSERT INTO operator_interventions (id, session_id, seq, operator_id, \
             intervention_type, trigger_reason, action_taken, created_at, ended_at, \
             duration_seconds, client_msg_id) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int4[], \
             $11::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(i.iter().map(|r| r.id.0).collect::<Vec<_>>())
        .bind(i.iter().map(|r| r.session_id.0).collect::<Vec<_>>())
        .bind(i.iter().map(|r| seq(r.seq)).collect::<Vec<_>>())
        .bind(i.iter().map(|r| r.operator_id.as_str()).collect::<Vec<_>>())
        .bind(
            i.iter()
                .map(|r| r.intervention_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            i.iter()
                .map(|r| r.trigger_reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            i.iter()
                .map(|r| r.action_taken.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(i.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(i.iter().map(|r| r.ended_at).collect::<Vec<_>>())
        .bind(i.iter().map(|r| r.duration_seconds).collect::<Vec<_>>())
        .bind(
            i.iter()
                .map(|r| r.client_msg_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    if !plan.interventions_ended.is_empty() {
        let e = &plan.interventions_ended;
        sqlx::query(
            "UPDATE operator_interventions AS i \
             SET ended_at = u.ended_at, duration_seconds = u.duration \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::int4[]) AS u(id, ended_at, duration) \
             WHERE i.id = u.id",
        )
        .bind(e.iter().map(|r| r.id.0).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.ended_at).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.duration_seconds).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.alerts.is_empty() {
        let a = &plan.alerts;
        sqlx::query(
            "INSERT INTO system_alerts (id, session_id, alert_type, severity, title, message, \
             component, metadata, created_at, acknowledged, acknowledged_by, acknowledged_at) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::jsonb[], $9::timestamptz[], $10::bool[], $11::text[], \
             $12::timestamptz[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(a.iter().map(|r| r.id.0).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.session_id.0).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.alert_type.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.severity.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.title.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.message.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.component.as_deref()).collect::<Vec<_>>())
        .bind(a.iter().map(|r| &r.metadata).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(a.iter().map(|r| r.acknowledged).collect::<Vec<_>>())
        .bind(
            a.iter()
                .map(|r| r.acknowledged_by.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(a.iter().map(|r| r.acknowledged_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.alerts_acknowledged.is_empty() {
        let k = &plan.alerts_acknowledged;
        // The first acknowledgement stands.
        sqlx::query(
            "UPDATE system_alerts AS a \
             SET acknowledged = true, acknowledged_by = u.by, acknowledged_at = u.at \
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS u(id, by, at) \
             WHERE a.id = u.id AND a.acknowledged IS NOT TRUE",
        )
        .bind(k.iter().map(|r| r.id.0).collect::<Vec<_>>())
        .bind(k.iter().map(|r| r.by).collect::<Vec<_>>())
        .bind(k.iter().map(|r| r.at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.metrics.is_empty() {
        let m = &plan.metrics;
        sqlx::query(
            "INSERT INTO performance_metrics (id, session_id, metric_type, metric_value, unit, \
             timestamp, component) \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::float8[], $5::text[], \
             $6::timestamptz[], $7::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(m.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.session_id.0).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.metric_type.as_str()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.metric_value).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.unit.as_deref()).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.timestamp).collect::<Vec<_>>())
        .bind(m.iter().map(|r| r.component.as_deref()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.progress.is_empty() {
        let p = &plan.progress;
        sqlx::query(
            "UPDATE sessions AS s SET status = u.status, \
             started_at = COALESCE(u.started_at, s.started_at), \
             ended_at = COALESCE(u.ended_at, s.ended_at), \
             participant_count = u.participants, questions_received = u.questions, \
             operator_interventions = u.interventions, error_count = u.errors, \
             last_error = COALESCE(u.last_error, s.last_error), \
             total_duration_seconds = GREATEST(0, COALESCE(EXTRACT(EPOCH FROM \
                 COALESCE(u.ended_at, s.ended_at) - COALESCE(u.started_at, s.started_at))::int4, \
                 s.total_duration_seconds)) \
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
             $5::int4[], $6::int4[], $7::int4[], $8::int4[], $9::text[]) \
             AS u(id, status, started_at, ended_at, participants, questions, interventions, \
             errors, last_error) \
             WHERE s.id = u.id",
        )
        .bind(p.iter().map(|r| r.id.0).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.started_at).collect::<Vec<_>>())
        .bind(p.iter().map(|r| r.ended_at).collect::<Vec<_>>())
        .bind(
            p.iter()
                .map(|r| sql::int4(r.counters.participant_count.into()))
                .collect::<Vec<_>>(),
        )
        .bind(
            p.iter()
                .map(|r| sql::int4(r.counters.questions_received))
                .collect::<Vec<_>>(),
        )
        .bind(
            p.iter()
                .map(|r| sql::int4(r.counters.operator_interventions))
                .collect::<Vec<_>>(),
        )
        .bind(
            p.iter()
                .map(|r| sql::int4(r.counters.error_count))
                .collect::<Vec<_>>(),
        )
        .bind(p.iter().map(|r| r.last_error).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !plan.states.is_empty() {
        let s = &plan.states;
        sqlx::query(
            "INSERT INTO session_state (session_id, current_slide, presentation_mode, \
             is_speaking, awaiting_questions, operator_connected, last_interaction, \
             current_topic, conversation_context, system_metrics) \
             SELECT u.* FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::bool[], $5::bool[], \
             $6::bool[], $7::timestamptz[], $8::text[], $9::jsonb[], $10::jsonb[]) \
             AS u(session_id, current_slide, presentation_mode, is_speaking, awaiting_questions, \
             operator_connected, last_interaction, current_topic, conversation_context, \
             system_metrics) \
             WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.id = u.session_id) \
             ON CONFLICT (session_id) DO UPDATE SET \
             current_slide = EXCLUDED.current_slide, \
             presentation_mode = EXCLUDED.presentation_mode, \
             is_speaking = EXCLUDED.is_speaking, \
             awaiting_questions = EXCLUDED.awaiting_questions, \
             operator_connected = EXCLUDED.operator_connected, \
             last_interaction = EXCLUDED.last_interaction, \
             current_topic = EXCLUDED.current_topic, \
             conversation_context = EXCLUDED.conversation_context, \
             system_metrics = EXCLUDED.system_metrics",
        )
        .bind(s.iter().map(|r| r.session_id.0).collect::<Vec<_>>())
        .bind(s.iter().map(|r| r.state.current_slide).collect::<Vec<_>>())
        .bind(
            s.iter()
                .map(|r| r.state.presentation_mode.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(s.iter().map(|r| r.state.is_speaking).collect::<Vec<_>>())
        .bind(
            s.iter()
                .map(|r| r.state.awaiting_questions)
                .collect::<Vec<_>>(),
        )
        .bind(
            s.iter()
                .map(|r| r.state.operator_connected)
                .collect::<Vec<_>>(),
        )
        .bind(
            s.iter()
                .map(|r| sql::ms_to_ts(r.state.last_interaction))
                .collect::<Vec<_>>(),
        )
        .bind(
            s.iter()
                .map(|r| r.state.current_topic.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(s.iter().map(|r| r.context).collect::<Vec<_>>())
        .bind(
            s.iter()
                .map(|r| Some(r.metrics).filter(|m| !m.is_null()))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    for round in &plan.participant_rounds {
        write_participants(tx, round).await?;
    }
    Ok(())
}

/// One round of participant changes: at most one per participant, so
/// joins and leaves touch different rows and their order does not matter.
async fn write_participants(
    tx: &mut Transaction<'_, Postgres>,
    round: &[sql::ParticipantChange<'_>],
) -> Result<(), sqlx::Error> {
    use sql::ParticipantChange as C;
    let joined: Vec<&ParticipantRow> = round
        .iter()
        .filter_map(|c| match c {
            C::Joined(p) => Some(*p),
            C::Left { .. } => None,
        })
        .collect();
    if !joined.is_empty() {
        sqlx::query(
            "INSERT INTO session_participants (id, session_id, participant_id, \
             participant_name, joined_at, left_at, questions_asked) \
             SELECT u.* FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], \
             $5::timestamptz[], $6::timestamptz[], $7::int4[]) \
             AS u(id, session_id, participant_id, participant_name, joined_at, left_at, \
             questions_asked) \
             WHERE EXISTS (SELECT 1 FROM sessions s WHERE s.id = u.session_id) \
             ON CONFLICT (session_id, participant_id) DO UPDATE SET left_at = NULL",
        )
        .bind(
            joined
                .iter()
                .map(|p| sql::participant_row_id(p.session_id, &p.participant_id))
                .collect::<Vec<_>>(),
        )
        .bind(joined.iter().map(|p| p.session_id.0).collect::<Vec<_>>())
        .bind(
            joined
                .iter()
                .map(|p| p.participant_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            joined
                .iter()
                .map(|p| p.participant_name.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(joined.iter().map(|p| p.joined_at).collect::<Vec<_>>())
        .bind(joined.iter().map(|p| p.left_at).collect::<Vec<_>>())
        .bind(joined.iter().map(|p| p.questions_asked).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    let left: Vec<_> = round
        .iter()
        .filter_map(|c| match c {
            C::Left {
                session_id,
                participant_id,
                left_at,
                questions_asked,
            } => Some((session_id.0, *participant_id, *left_at, *questions_asked)),
            C::Joined(_) => None,
        })
        .collect();
    if !left.is_empty() {
        sqlx::query(
            "UPDATE session_participants AS p \
             SET left_at = u.left_at, questions_asked = u.questions \
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::int4[]) \
             AS u(session_id, participant_id, left_at, questions) \
             WHERE p.session_id = u.session_id AND p.participant_id = u.participant_id",
        )
        .bind(left.iter().map(|l| l.0).collect::<Vec<_>>())
        .bind(left.iter().map(|l| l.1).collect::<Vec<_>>())
        .bind(left.iter().map(|l| l.2).collect::<Vec<_>>())
        .bind(left.iter().map(|l| l.3).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn seq(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PostgresStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => err(e),
            other => StoreError::Rejected(other.to_string()),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(err)
    }

    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let inserted = sqlx::query(
            "INSERT INTO sessions (id, user_id, avatar_id, name, description, status, config, \
             created_at, started_at, ended_at, participant_count, questions_received, \
             operator_interventions, error_count, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(s.id.0)
        .bind(s.tenant.0)
        .bind(s.avatar_id)
        .bind(&s.name)
        .bind(&s.description)
        .bind(s.status.as_str())
        .bind(&s.config)
        .bind(s.created_at)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(sql::int4(s.counters.participant_count.into()))
        .bind(sql::int4(s.counters.questions_received))
        .bind(sql::int4(s.counters.operator_interventions))
        .bind(sql::int4(s.counters.error_count))
        .bind(&s.last_error)
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if inserted > 0 {
            sqlx::query(
                "INSERT INTO session_state (session_id, current_slide, presentation_mode, \
                 is_speaking, awaiting_questions, operator_connected, last_interaction, \
                 current_topic, conversation_context) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(s.id.0)
            .bind(s.state.current_slide)
            .bind(&s.state.presentation_mode)
            .bind(s.state.is_speaking)
            .bind(s.state.awaiting_questions)
            .bind(s.state.operator_connected)
            .bind(sql::ms_to_ts(s.state.last_interaction))
            .bind(&s.state.current_topic)
            .bind(&s.context)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn get_session(
        &self,
        tenant: Option<TenantId>,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let q =
            format!("{SESSION_SELECT} WHERE s.id = $1 AND ($2::uuid IS NULL OR s.user_id = $2)");
        sqlx::query(&q)
            .bind(id.0)
            .bind(tenant.map(|t| t.0))
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(session_from)
            .transpose()
    }

    async fn list_sessions(
        &self,
        tenant: TenantId,
        query: &SessionQuery,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let q = format!(
            "{SESSION_SELECT} WHERE s.user_id = $1 AND ($2::text IS NULL OR s.status = $2) \
             AND ($3::uuid IS NULL OR s.id < $3) ORDER BY s.id DESC LIMIT $4"
        );
        sqlx::query(&q)
            .bind(tenant.0)
            .bind(query.status.map(|s| s.as_str()))
            .bind(query.before.map(|b| b.0))
            .bind(limit(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(session_from)
            .collect()
    }

    async fn live_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let q =
            format!("{SESSION_SELECT} WHERE s.status NOT IN ('stopped', 'failed') ORDER BY s.id");
        sqlx::query(&q)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(session_from)
            .collect()
    }

    async fn write_batch(&self, rows: &[Row]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let plan = Plan::new(rows);
        let mut tx = self.pool.begin().await.map_err(err)?;
        check_sessions(&mut tx, &plan).await?;
        write_plan(&mut tx, &plan).await.map_err(err)?;
        tx.commit().await.map_err(err)
    }

    async fn conversation(
        &self,
        session: SessionId,
        p: Page,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        page(
            &self.pool,
            "conversations",
            CONVERSATION_COLUMNS,
            session,
            p,
            conversation_from,
        )
        .await
    }

    async fn interventions(
        &self,
        session: SessionId,
        p: Page,
    ) -> Result<Vec<InterventionRow>, StoreError> {
        page(
            &self.pool,
            "operator_interventions",
            INTERVENTION_COLUMNS,
            session,
            p,
            intervention_from,
        )
        .await
    }

    async fn alerts(&self, session: SessionId, p: Page) -> Result<Vec<AlertRow>, StoreError> {
        page(
            &self.pool,
            "system_alerts",
            ALERT_COLUMNS,
            session,
            p,
            alert_from,
        )
        .await
    }

    async fn participants(&self, session: SessionId) -> Result<Vec<ParticipantRow>, StoreError> {
        sqlx::query(
            "SELECT session_id, participant_id, participant_name, \
             COALESCE(joined_at, now()) AS joined_at, left_at, \
             COALESCE(questions_asked, 0) AS questions_asked \
             FROM session_participants WHERE session_id = $1 ORDER BY joined_at, participant_id",
        )
        .bind(session.0)
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .iter()
        .map(|r| {
            Ok(ParticipantRow {
                session_id: SessionId(r.try_get("session_id").map_err(err)?),
                participant_id: r.try_get("participant_id").map_err(err)?,
                participant_name: r.try_get("participant_name").map_err(err)?,
                joined_at: r.try_get("joined_at").map_err(err)?,
                left_at: r.try_get("left_at").map_err(err)?,
                questions_asked: r.try_get("questions_asked").map_err(err)?,
            })
        })
        .collect()
    }

    async fn delete_metrics_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM performance_metrics WHERE id IN \
                 (SELECT id FROM performance_metrics WHERE timestamp < $1 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(DELETE_CHUNK)
            .execute(&self.pool)
            .await
            .map_err(err)?
            .rows_affected();
            total += n;
            if n < DELETE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn ensure_tenant(&self, t: &TenantRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (id, email, company, subscription_tier, api_quota_monthly, \
             api_calls_used, concurrent_sessions_limit, is_active, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(t.id.0)
        .bind(&t.email)
        .bind(&t.company)
        .bind(&t.subscription_tier)
        .bind(t.api_quota_monthly)
        .bind(t.api_calls_used)
        .bind(t.concurrent_sessions_limit)
        .bind(t.is_active)
        .bind(t.created_at)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(err)
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let q = format!("SELECT {TENANT_COLUMNS} FROM users WHERE id = $1");
        sqlx::query(&q)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(tenant_from)
            .transpose()
    }

    async fn count_api_calls(&self, tenant: TenantId, n: i32) -> Result<i64, StoreError> {
        let used: Option<i32> = sqlx::query_scalar(
            "UPDATE users SET api_calls_used = \
             GREATEST(-2147483648, LEAST(2147483647, COALESCE(api_calls_used, 0)::int8 + $2))::int4 \
             WHERE id = $1 RETURNING api_calls_used",
        )
        .bind(tenant.0)
        .bind(i64::from(n))
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        used.map(i64::from)
            .ok_or_else(|| StoreError::Rejected(format!("no tenant {tenant}")))
    }

    async fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, key_hash, name, scopes, last_used, expires_at, \
             created_at, is_active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(k.id)
        .bind(k.tenant.0)
        .bind(&k.key_hash)
        .bind(&k.name)
        .bind(&k.scopes)
        .bind(k.last_used)
        .bind(k.expires_at)
        .bind(k.created_at)
        .bind(k.is_active)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(err)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let q = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
        sqlx::query(&q)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(key_from)
            .transpose()
    }

    async fn list_api_keys(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let q = format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1::uuid IS NULL OR user_id = $1) \
             ORDER BY created_at DESC, id DESC"
        );
        sqlx::query(&q)
            .bind(tenant.map(|t| t.0))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(key_from)
            .collect()
    }

    async fn revoke_api_key(&self, id: Uuid, tenant: Option<TenantId>) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE api_keys SET is_active = false \
             WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
        )
        .bind(id)
        .bind(tenant.map(|t| t.0))
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

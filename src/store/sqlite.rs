//! The SQLite store: an embedded file, the default, so a hub runs with
//! nothing else installed.
//!
//! The file runs in WAL mode (readers never block the writer) with
//! `synchronous = FULL`, so a committed batch survives a power cut, not
//! just a crash of the process: acknowledged means on disk. Each
//! connection has a 32 MiB page cache. A batch is one
//! `BEGIN IMMEDIATE` transaction; inserts are multi-row statements, keyed
//! updates one prepared statement each (SQLite runs in-process, so a
//! statement costs no round trip).
//!
//! SQLite has no UUID, timestamp or JSON types: UUIDs are stored as
//! lowercase hyphenated text, timestamps as RFC 3339 UTC text with six
//! fractional digits (fixed width, so text order is time order), JSON as
//! text.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::query_builder::QueryBuilder;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::sql::{self, Dialect, Plan};
use super::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, Page, ParticipantRow, PoolConfig,
    Row, SessionQuery, SessionRecord, Store, StoreError, TenantRecord,
};
use crate::ids::{EventId, SessionId, TenantId};
use crate::protocol::model::{Counters, SessionState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Where the embedded database lives when no URL is configured.
pub const DEFAULT_PATH: &str = "./data/eva-hub.db";

/// Rows per multi-row insert: far below SQLite's limit of 32766 bound
/// parameters for the widest row (13 columns).
const INSERT_CHUNK: usize = 500;

/// Rows deleted per statement by retention.
const DELETE_CHUNK: i64 = 10_000;

fn err(e: sqlx::Error) -> StoreError {
    sql::classify(Dialect::Sqlite, e)
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// A store on `url` (`sqlite://path/to/file.db`, `sqlite:///abs.db`
    /// or `sqlite::memory:`). The file and its directory are created if
    /// missing.
    ///
    /// # Errors
    /// `Rejected` if the URL cannot be parsed, `Unavailable` if the
    /// directory cannot be created.
    pub fn open(url: &str, pool: PoolConfig) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Rejected(format!("bad SQLite URL: {e}")))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        SqliteStore::with_options(options, in_memory, pool)
    }

    /// A store on the file at `path`, created (with its directory) if
    /// missing.
    ///
    /// # Errors
    /// `Unavailable` if the directory cannot be created.
    pub fn at_path(path: impl AsRef<Path>, pool: PoolConfig) -> Result<SqliteStore, StoreError> {
        SqliteStore::with_options(SqliteConnectOptions::new().filename(path), false, pool)
    }

    fn with_options(
        mut options: SqliteConnectOptions,
        in_memory: bool,
        pool: PoolConfig,
    ) -> Result<SqliteStore, StoreError> {
        if !in_memory {
            // Resolved once: connections opened later use the same file
            // whatever the working directory is then.
            let absolute = std::path::absolute(options.get_filename()).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot resolve {}: {e}",
                    options.get_filename().display()
                ))
            })?;
            options = options.filename(absolute);
        }
        if !in_memory
            && let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // A batch touches many pages: with SQLite's 2 MiB default the
            // cache spills to the WAL mid-transaction.
            .pragma("cache_size", "-32768")
            // Statement journals (for a multi-row statement that may fail
            // halfway) in memory, not in temporary files.
            .pragma("temp_store", "MEMORY");
        let mut pool_options = SqlitePoolOptions::new()
            .max_connections(pool.max_connections.max(1))
            .acquire_timeout(pool.acquire_timeout);
        if in_memory {
            // An in-memory database lives while a connection to it is
            // open: keep exactly one, forever.
            pool_options = pool_options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        Ok(SqliteStore {
            pool: pool_options.connect_lazy_with(options),
        })
    }

    /// The connection pool (for tools and tests that inspect the tables).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// A timestamp as stored: RFC 3339, UTC, microseconds, fixed width.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

fn parse_ts(column: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc()))
        .map_err(|_| StoreError::Rejected(format!("bad timestamp {s:?} in column {column}")))
}

fn uuid(column: &str, s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|_| StoreError::Rejected(format!("bad UUID {s:?} in {column}")))
}

fn json(v: &Value) -> String {
    v.to_string()
}

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(err)
}

fn get_uuid(row: &SqliteRow, column: &str) -> Result<Uuid, StoreError> {
    uuid(column, &get::<String>(row, column)?)
}

fn get_opt_uuid(row: &SqliteRow, column: &str) -> Result<Option<Uuid>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|s| uuid(column, &s))
        .transpose()
}

fn get_ts(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    Ok(get_opt_ts(row, column)?.unwrap_or_default())
}

fn get_opt_ts(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|s| parse_ts(column, &s))
        .transpose()
}

fn get_json(row: &SqliteRow, column: &str) -> Result<Option<Value>, StoreError> {
    get::<Option<String>>(row, column)?
        .map(|s| {
            serde_json::from_str(&s)
                .map_err(|_| StoreError::Rejected(format!("bad JSON in column {column}")))
        })
        .transpose()
}

fn get_json_or_empty(row: &SqliteRow, column: &str) -> Result<Value, StoreError> {
    Ok(get_json(row, column)?.unwrap_or_else(|| Value::Object(Default::default())))
}

fn seq(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const SESSION_SELECT: &str = "SELECT s.id, s.user_id, s.avatar_id, s.name, s.description, s.status, \
     s.config, s.created_at, s.started_at, s.ended_at, s.participant_count, s.questions_received, \
     s.operator_interventions, s.error_count, s.last_error, st.current_slide, \
     st.presentation_mode, st.is_speaking, st.awaiting_questions, st.operator_connected, \
     st.current_topic, st.last_interaction, st.conversation_context \
     FROM sessions s LEFT JOIN session_state st ON st.session_id = s.id";

fn session_from(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    let defaults = SessionState::default();
    let status: String = get(row, "status")?;
    Ok(SessionRecord {
        id: SessionId(get_uuid(row, "id")?),
        tenant: TenantId(get_uuid(row, "user_id")?),
        avatar_id: get_opt_uuid(row, "avatar_id")?,
        name: get(row, "name")?,
        description: get(row, "description")?,
        status: sql::parse_enum("sessions.status", &status)?,
        config: get_json_or_empty(row, "config")?,
        created_at: get_ts(row, "created_at")?,
        started_at: get_opt_ts(row, "started_at")?,
        ended_at: get_opt_ts(row, "ended_at")?,
        counters: Counters {
            participant_count: sql::count(get(row, "participant_count")?),
            questions_received: sql::count(get(row, "questions_received")?),
            operator_interventions: sql::count(get(row, "operator_interventions")?),
            error_count: sql::count(get(row, "error_count")?),
        },
        last_error: get(row, "last_error")?,
        state: SessionState {
            current_slide: get::<Option<i32>>(row, "current_slide")?
                .unwrap_or(defaults.current_slide),
            presentation_mode: get::<Option<String>>(row, "presentation_mode")?
                .unwrap_or(defaults.presentation_mode),
            is_speaking: get::<Option<bool>>(row, "is_speaking")?.unwrap_or(false),
            awaiting_questions: get::<Option<bool>>(row, "awaiting_questions")?.unwrap_or(false),
            operator_connected: get::<Option<bool>>(row, "operator_connected")?.unwrap_or(false),
            current_topic: get(row, "current_topic")?,
            last_interaction: sql::ts_to_ms(get_opt_ts(row, "last_interaction")?),
        },
        context: get_json_or_empty(row, "conversation_context")?,
    })
}

const CONVERSATION_COLUMNS: &str = "id, session_id, seq, participant_id, message_type, content, \
     speaker, timestamp, confidence_score, response_time_ms, context, metadata, client_msg_id";

fn conversation_from(row: &SqliteRow) -> Result<ConversationRow, StoreError> {
    let message_type: String = get(row, "message_type")?;
    Ok(ConversationRow {
        id: EventId(get_uuid(row, "id")?),
        session_id: SessionId(get_uuid(row, "session_id")?),
        seq: get::<i64>(row, "seq")?.max(0) as u64,
        participant_id: get(row, "participant_id")?,
        message_type: sql::parse_enum("conversations.message_type", &message_type)?,
        content: get(row, "content")?,
        speaker: get(row, "speaker")?,
        timestamp: get_ts(row, "timestamp")?,
        confidence_score: get(row, "confidence_score")?,
        response_time_ms: get(row, "response_time_ms")?,
        context: get_json_or_empty(row, "context")?,
        metadata: get_json_or_empty(row, "metadata")?,
        client_msg_id: get(row, "client_msg_id")?,
    })
}

const INTERVENTION_COLUMNS: &str = "id, session_id, seq, operator_id, intervention_type, \
     trigger_reason, action_taken, created_at, ended_at, duration_seconds, client_msg_id";

fn intervention_from(row: &SqliteRow) -> Result<InterventionRow, StoreError> {
    let kind: String = get(row, "intervention_type")?;
    Ok(InterventionRow {
        id: EventId(get_uuid(row, "id")?),
        session_id: SessionId(get_uuid(row, "session_id")?),
        seq: get::<i64>(row, "seq")?.max(0) as u64,
        operator_id: get(row, "operator_id")?,
        intervention_type: sql::parse_enum("operator_interventions.intervention_type", &kind)?,
        trigger_reason: get(row, "trigger_reason")?,
        action_taken: get(row, "action_taken")?,
        created_at: get_ts(row, "created_at")?,
        ended_at: get_opt_ts(row, "ended_at")?,
        duration_seconds: get(row, "duration_seconds")?,
        client_msg_id: get(row, "client_msg_id")?,
    })
}

const ALERT_COLUMNS: &str = "id, session_id, alert_type, severity, title, message, component, \
     metadata, created_at, acknowledged, acknowledged_by, acknowledged_at";

fn alert_from(row: &SqliteRow) -> Result<AlertRow, StoreError> {
    let alert_type: String = get(row, "alert_type")?;
    let severity: Option<String> = get(row, "severity")?;
    Ok(AlertRow {
        id: EventId(get_uuid(row, "id")?),
        session_id: SessionId(get_opt_uuid(row, "session_id")?.unwrap_or_default()),
        alert_type: sql::parse_enum("system_alerts.alert_type", &alert_type)?,
        severity: sql::parse_enum(
            "system_alerts.severity",
            severity.as_deref().unwrap_or("info"),
        )?,
        title: get(row, "title")?,
        message: get(row, "message")?,
        component: get(row, "component")?,
        metadata: get_json_or_empty(row, "metadata")?,
        created_at: get_ts(row, "created_at")?,
        acknowledged: get::<Option<bool>>(row, "acknowledged")?.unwrap_or(false),
        acknowledged_by: get(row, "acknowledged_by")?,
        acknowledged_at: get_opt_ts(row, "acknowledged_at")?,
    })
}

const TENANT_COLUMNS: &str = "id, email, company, COALESCE(subscription_tier, 'basic') AS tier, \
     COALESCE(api_quota_monthly, 10000) AS quota, COALESCE(api_calls_used, 0) AS used, \
     COALESCE(concurrent_sessions_limit, 5) AS concurrent, \
     COALESCE(is_active, 1) AS active, created_at";

fn tenant_from(row: &SqliteRow) -> Result<TenantRecord, StoreError> {
    Ok(TenantRecord {
        id: TenantId(get_uuid(row, "id")?),
        email: get(row, "email")?,
        company: get(row, "company")?,
        subscription_tier: get(row, "tier")?,
        api_quota_monthly: get(row, "quota")?,
        api_calls_used: get(row, "used")?,
        concurrent_sessions_limit: get(row, "concurrent")?,
        is_active: get::<i64>(row, "active")? != 0,
        created_at: get_ts(row, "created_at")?,
    })
}

const KEY_COLUMNS: &str = "id, user_id, name, key_hash, scopes, created_at, expires_at, \
     last_used, COALESCE(is_active, 1) AS active";

fn key_from(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    let scopes = match get_json(row, "scopes")? {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v)
            .map_err(|_| StoreError::Rejected("api_keys.scopes is not a list of strings".into()))?,
    };
    Ok(ApiKeyRecord {
        id: get_uuid(row, "id")?,
        tenant: TenantId(get_uuid(row, "user_id")?),
        name: get(row, "name")?,
        key_hash: get(row, "key_hash")?,
        scopes,
        created_at: get_ts(row, "created_at")?,
        expires_at: get_opt_ts(row, "expires_at")?,
        last_used: get_opt_ts(row, "last_used")?,
        is_active: get::<i64>(row, "active")? != 0,
    })
}

async fn page<T>(
    pool: &SqlitePool,
    table: &str,
    columns: &str,
    session: SessionId,
    page: Page,
    decode: fn(&SqliteRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let rows = match page.before {
        Some(before) => {
            let q = format!(
                "SELECT {columns} FROM {table} WHERE session_id = ?1 AND id < ?2 \
                 ORDER BY id DESC LIMIT ?3"
            );
            sqlx::query(&q)
                .bind(session.to_string())
                .bind(before.to_string())
                .bind(limit(page.limit))
                .fetch_all(pool)
                .await
        }
        None => {
            let q = format!(
                "SELECT {columns} FROM {table} WHERE session_id = ?1 ORDER BY id DESC LIMIT ?2"
            );
            sqlx::query(&q)
                .bind(session.to_string())
                .bind(limit(page.limit))
                .fetch_all(pool)
                .await
        }
    }
    .map_err(err)?;
    rows.iter().map(decode).collect()
}

/// Runs `INSERT INTO {head} VALUES (…), (…) {tail}` over `rows` in chunks
/// of [`INSERT_CHUNK`]. `head` may end in `SELECT * FROM (` when `tail`
/// closes it, to filter the values.
async fn insert_rows<T>(
    tx: &mut Transaction<'_, Sqlite>,
    head: &str,
    tail: &str,
    rows: &[T],
    mut bind: impl FnMut(sqlx::query_builder::Separated<'_, '_, Sqlite, &'static str>, &T),
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<Sqlite>::new(head);
        qb.push_values(chunk, &mut bind);
        qb.push(tail);
        // Full chunks share one cached statement; the last, odd-sized one
        // is prepared once and not cached.
        qb.build()
            .persistent(chunk.len() == INSERT_CHUNK)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn write_plan(tx: &mut Transaction<'_, Sqlite>, plan: &Plan<'_>) -> Result<(), sqlx::Error> {
    insert_rows(
        tx,
        "INSERT INTO conversations (id, session_id, seq, participant_id, message_type, content, \
         speaker, timestamp, confidence_score, response_time_ms, context, metadata, \
         client_msg_id) ",
        " ON CONFLICT DO NOTHING",
        &plan.conversations,
        |mut b, r| {
            b.push_bind(r.id.to_string())
                .push_bind(r.session_id.to_string())
                .push_bind(seq(r.seq))
                .push_bind(r.participant_id.clone())
                .push_bind(r.message_type.as_str())
                .push_bind(r.content.clone())
                .push_bind(r.speaker.clone())
                .push_bind(ts(r.timestamp))
                .push_bind(r.confidence_score)
                .push_bind(r.response_time_ms)
                .push_bind(json(&r.context))
                .push_bind(json(&r.metadata))
                .push_bind(r.client_msg_id.clone());
        },
    )
    .await?;
    // A response that was a resend of a stored one was not inserted above;
    // its analysis row is a resend too and is skipped.
    insert_rows(
        tx,
        "INSERT INTO question_responses (id, conversation_id, question_text, response_text, \
         intent_classification, knowledge_sources, confidence_score, response_time_ms, \
         created_at) SELECT * FROM (",
        ") AS v WHERE EXISTS (SELECT 1 FROM conversations c WHERE c.id = v.column2) \
         ON CONFLICT DO NOTHING",
        &plan.question_responses,
        |mut b, r| {
            b.push_bind(r.id.to_string())
                .push_bind(r.conversation_id.to_string())
                .push_bind(r.question_text.clone())
                .push_bind(r.response_text.clone())
                .push_bind(r.intent_classification.clone())
                .push_bind(Value::from(r.knowledge_sources.clone()).to_string())
                .push_bind(r.confidence_score)
                .push_bind(r.response_time_ms)
                .push_bind(ts(r.created_at));
        },
    )
    .await?;
    insert_rows(
        tx,
        "INSERT INTO operator_interventions (id, session_id, seq, operator_id, \
         intervention_type, trigger_reason, action_taken, created_at, ended_at, \
         duration_seconds, client_msg_id) ",
        " ON CONFLICT DO NOTHING",
        &plan.interventions,
        |mut b, r| {
            b.push_bind(r.id.to_string())
                .push_bind(r.session_id.to_string())
                .push_bind(seq(r.seq))
                .push_bind(r.operator_id.clone())
                .push_bind(r.intervention_type.as_str())
                .push_bind(r.trigger_reason.clone())
                .push_bind(r.action_taken.clone())
                .push_bind(ts(r.created_at))
                .push_bind(opt_ts(r.ended_at))
                .push_bind(r.duration_seconds)
                .push_bind(r.client_msg_id.clone());
        },
    )
    .await?;
    for e in &plan.interventions_ended {
        sqlx::query(
            "UPDATE operator_interventions SET ended_at = ?2, duration_seconds = ?3 WHERE id = ?1",
        )
        .bind(e.id.to_string())
        .bind(ts(e.ended_at))
        .bind(e.duration_seconds)
        .execute(&mut **tx)
        .await?;
    }
    insert_rows(
        tx,
        "INSERT INTO system_alerts (id, session_id, alert_type, severity, title, message, \
         component, metadata, created_at, acknowledged, acknowledged_by, acknowledged_at) ",
        " ON CONFLICT DO NOTHING",
        &plan.alerts,
        |mut b, r| {
            b.push_bind(r.id.to_string())
                .push_bind(r.session_id.to_string())
                .push_bind(r.alert_type.as_str())
                .push_bind(r.severity.as_str())
                .push_bind(r.title.clone())
                .push_bind(r.message.clone())
                .push_bind(r.component.clone())
                .push_bind(json(&r.metadata))
                .push_bind(ts(r.created_at))
                .push_bind(r.acknowledged)
                .push_bind(r.acknowledged_by.clone())
                .push_bind(opt_ts(r.acknowledged_at));
        },
    )
    .await?;
    for a in &plan.alerts_acknowledged {
        // The first acknowledgement stands.
        sqlx::query(
            "UPDATE system_alerts SET acknowledged = 1, acknowledged_by = ?2, \
             acknowledged_at = ?3 WHERE id = ?1 AND COALESCE(acknowledged, 0) = 0",
        )
        .bind(a.id.to_string())
        .bind(a.by)
        .bind(ts(a.at))
        .execute(&mut **tx)
        .await?;
    }
    insert_rows(
        tx,
        "INSERT INTO performance_metrics (id, session_id, metric_type, metric_value, unit, \
         timestamp, component) ",
        " ON CONFLICT DO NOTHING",
        &plan.metrics,
        |mut b, r| {
            b.push_bind(r.id.to_string())
                .push_bind(r.session_id.to_string())
                .push_bind(r.metric_type.clone())
                .push_bind(r.metric_value)
                .push_bind(r.unit.clone())
                .push_bind(ts(r.timestamp))
                .push_bind(r.component.clone());
        },
    )
    .await?;
    for p in &plan.progress {
        sqlx::query(
            "UPDATE sessions SET status = ?2, started_at = COALESCE(?3, started_at), \
             ended_at = COALESCE(?4, ended_at), participant_count = ?5, \
             questions_received = ?6, operator_interventions = ?7, error_count = ?8, \
             last_error = COALESCE(?9, last_error), \
             total_duration_seconds = MAX(0, COALESCE(CAST(ROUND((julianday(COALESCE(?4, \
                 ended_at)) - julianday(COALESCE(?3, started_at))) * 86400) AS INTEGER), \
                 total_duration_seconds, 0)) \
             WHERE id = ?1",
        )
        .bind(p.id.to_string())
        .bind(p.status.as_str())
        .bind(opt_ts(p.started_at))
        .bind(opt_ts(p.ended_at))
        .bind(sql::int4(p.counters.participant_count.into()))
        .bind(sql::int4(p.counters.questions_received))
        .bind(sql::int4(p.counters.operator_interventions))
        .bind(sql::int4(p.counters.error_count))
        .bind(p.last_error)
        .execute(&mut **tx)
        .await?;
    }
    for s in &plan.states {
        sqlx::query(
            "INSERT INTO session_state (session_id, current_slide, presentation_mode, \
             is_speaking, awaiting_questions, operator_connected, last_interaction, \
             current_topic, conversation_context, system_metrics) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
             WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?1) \
             ON CONFLICT (session_id) DO UPDATE SET \
             current_slide = excluded.current_slide, \
             presentation_mode = excluded.presentation_mode, \
             is_speaking = excluded.is_speaking, \
             awaiting_questions = excluded.awaiting_questions, \
             operator_connected = excluded.operator_connected, \
             last_interaction = excluded.last_interaction, \
             current_topic = excluded.current_topic, \
             conversation_context = excluded.conversation_context, \
             system_metrics = excluded.system_metrics",
        )
        .bind(s.session_id.to_string())
        .bind(s.state.current_slide)
        .bind(s.state.presentation_mode.as_str())
        .bind(s.state.is_speaking)
        .bind(s.state.awaiting_questions)
        .bind(s.state.operator_connected)
        .bind(opt_ts(sql::ms_to_ts(s.state.last_interaction)))
        .bind(s.state.current_topic.as_deref())
        .bind(json(s.context))
        .bind(Some(s.metrics).filter(|m| !m.is_null()).map(json))
        .execute(&mut **tx)
        .await?;
    }
    for round in &plan.participant_rounds {
        for change in round {
            match change {
                sql::ParticipantChange::Joined(p) => {
                    sqlx::query(
                        "INSERT INTO session_participants (id, session_id, participant_id, \
                         participant_name, joined_at, left_at, questions_asked) \
                         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
                         WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?2) \
                         ON CONFLICT (session_id, participant_id) DO UPDATE SET left_at = NULL",
                    )
                    .bind(sql::participant_row_id(p.session_id, &p.participant_id).to_string())
                    .bind(p.session_id.to_string())
                    .bind(p.participant_id.as_str())
                    .bind(p.participant_name.as_deref())
                    .bind(ts(p.joined_at))
                    .bind(opt_ts(p.left_at))
                    .bind(p.questions_asked)
                    .execute(&mut **tx)
                    .await?;
                }
                sql::ParticipantChange::Left {
                    session_id,
                    participant_id,
                    left_at,
                    questions_asked,
                } => {
                    sqlx::query(
                        "UPDATE session_participants SET left_at = ?3, questions_asked = ?4 \
                         WHERE session_id = ?1 AND participant_id = ?2",
                    )
                    .bind(session_id.to_string())
                    .bind(*participant_id)
                    .bind(ts(*left_at))
                    .bind(*questions_asked)
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
        let inserted = sqlx::query(
            "INSERT INTO sessions (id, user_id, avatar_id, name, description, status, config, \
             created_at, started_at, ended_at, participant_count, questions_received, \
             operator_interventions, error_count, last_error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(s.id.to_string())
        .bind(s.tenant.to_string())
        .bind(s.avatar_id.map(|a| a.to_string()))
        .bind(s.name.as_deref())
        .bind(s.description.as_deref())
        .bind(s.status.as_str())
        .bind(json(&s.config))
        .bind(ts(s.created_at))
        .bind(opt_ts(s.started_at))
        .bind(opt_ts(s.ended_at))
        .bind(sql::int4(s.counters.participant_count.into()))
        .bind(sql::int4(s.counters.questions_received))
        .bind(sql::int4(s.counters.operator_interventions))
        .bind(sql::int4(s.counters.error_count))
        .bind(s.last_error.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
        if inserted > 0 {
            sqlx::query(
                "INSERT INTO session_state (session_id, current_slide, presentation_mode, \
                 is_speaking, awaiting_questions, operator_connected, last_interaction, \
                 current_topic, conversation_context) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING",
            )
            .bind(s.id.to_string())
            .bind(s.state.current_slide)
            .bind(s.state.presentation_mode.as_str())
            .bind(s.state.is_speaking)
            .bind(s.state.awaiting_questions)
            .bind(s.state.operator_connected)
            .bind(opt_ts(sql::ms_to_ts(s.state.last_interaction)))
            .bind(s.state.current_topic.as_deref())
            .bind(json(&s.context))
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
        let q = format!("{SESSION_SELECT} WHERE s.id = ?1 AND (?2 IS NULL OR s.user_id = ?2)");
        sqlx::query(&q)
            .bind(id.to_string())
            .bind(tenant.map(|t| t.to_string()))
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
            "{SESSION_SELECT} WHERE s.user_id = ?1 AND (?2 IS NULL OR s.status = ?2) \
             AND (?3 IS NULL OR s.id < ?3) ORDER BY s.id DESC LIMIT ?4"
        );
        sqlx::query(&q)
            .bind(tenant.to_string())
            .bind(query.status.map(|s| s.as_str()))
            .bind(query.before.map(|b| b.to_string()))
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
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
            "SELECT session_id, participant_id, participant_name, joined_at, left_at, \
             COALESCE(questions_asked, 0) AS questions_asked \
             FROM session_participants WHERE session_id = ?1 ORDER BY joined_at, participant_id",
        )
        .bind(session.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(err)?
        .iter()
        .map(|r| {
            Ok(ParticipantRow {
                session_id: SessionId(get_uuid(r, "session_id")?),
                participant_id: get(r, "participant_id")?,
                participant_name: get(r, "participant_name")?,
                joined_at: get_ts(r, "joined_at")?,
                left_at: get_opt_ts(r, "left_at")?,
                questions_asked: get(r, "questions_asked")?,
            })
        })
        .collect()
    }

    async fn delete_metrics_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = ts(cutoff);
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM performance_metrics WHERE rowid IN \
                 (SELECT rowid FROM performance_metrics WHERE timestamp < ?1 LIMIT ?2)",
            )
            .bind(&cutoff)
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(t.id.to_string())
        .bind(t.email.as_str())
        .bind(t.company.as_deref())
        .bind(t.subscription_tier.as_str())
        .bind(t.api_quota_monthly)
        .bind(t.api_calls_used)
        .bind(t.concurrent_sessions_limit)
        .bind(t.is_active)
        .bind(ts(t.created_at))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(err)
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let q = format!("SELECT {TENANT_COLUMNS} FROM users WHERE id = ?1");
        sqlx::query(&q)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(tenant_from)
            .transpose()
    }

    async fn count_api_calls(&self, tenant: TenantId, n: i32) -> Result<i64, StoreError> {
        let used: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET api_calls_used = \
             MAX(-2147483648, MIN(2147483647, COALESCE(api_calls_used, 0) + ?2)) \
             WHERE id = ?1 RETURNING api_calls_used",
        )
        .bind(tenant.to_string())
        .bind(n)
        .fetch_optional(&self.pool)
        .await
        .map_err(err)?;
        used.ok_or_else(|| StoreError::Rejected(format!("no tenant {tenant}")))
    }

    async fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, key_hash, name, scopes, last_used, expires_at, \
             created_at, is_active) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(k.id.to_string())
        .bind(k.tenant.to_string())
        .bind(k.key_hash.as_str())
        .bind(k.name.as_str())
        .bind(Value::from(k.scopes.clone()).to_string())
        .bind(opt_ts(k.last_used))
        .bind(opt_ts(k.expires_at))
        .bind(ts(k.created_at))
        .bind(k.is_active)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(err)
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let q = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1");
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
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE (?1 IS NULL OR user_id = ?1) \
             ORDER BY created_at DESC, id DESC"
        );
        sqlx::query(&q)
            .bind(tenant.map(|t| t.to_string()))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?
            .iter()
            .map(key_from)
            .collect()
    }

    async fn revoke_api_key(&self, id: Uuid, tenant: Option<TenantId>) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE api_keys SET is_active = 0 WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
        )
        .bind(id.to_string())
        .bind(tenant.map(|t| t.to_string()))
        .execute(&self.pool)
        .await
        .map_err(err)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(ts(at))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text() {
        let a = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        let b = DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap();
        let c = DateTime::from_timestamp_micros(1_700_000_001_000_000).unwrap();
        assert!(ts(a) < ts(b) && ts(b) < ts(c));
        assert_eq!(parse_ts("t", &ts(b)).unwrap(), b);
    }
}

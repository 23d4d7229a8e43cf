//! PostgreSQL writes: a batch's [`Plan`] as one statement per row kind
//! (inserts `… SELECT FROM UNNEST(…)`, metrics by COPY, keyed updates
//! `UPDATE … FROM UNNEST(…)`), and the single-row creates (sessions,
//! tenants, API keys).

use std::sync::LazyLock;

use serde_json::Value;
use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

use super::codec::{err, execute_unnest, insert, unnest};
use super::copy::{CopyError, copy_in};
use crate::store::sql::columns::Shape;
use crate::store::sql::plan::{
    AlertAck, InterventionEnd, ParticipantLeft, ParticipantRound, Plan, Progress, StateRow,
};
use crate::store::{ApiKeyRecord, Row, SessionRecord, StoreError, TenantRecord};

/// How a batch writes its metric rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metrics {
    /// COPY: the fast way, refused if a row repeats a stored id.
    Copy,
    /// `INSERT … ON CONFLICT DO NOTHING`, which skips repeats.
    Insert,
}

/// Writes the rows in one transaction: all or nothing. Writing the same
/// rows again stores nothing twice (a retry after an ambiguous failure):
/// a batch whose metrics COPY meets a stored id is written again with
/// metrics inserted, skipping the repeats.
pub(super) async fn write_batch(pool: &PgPool, rows: &[Row]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let plan = Plan::new(rows);
    if write_once(pool, &plan, Metrics::Copy).await? {
        return Ok(());
    }
    let written = write_once(pool, &plan, Metrics::Insert).await?;
    debug_assert!(written, "inserting skips repeated metrics");
    Ok(())
}

/// One transaction; false (rolled back) when COPY met a repeated metric.
async fn write_once(pool: &PgPool, plan: &Plan<'_>, metrics: Metrics) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await.map_err(err)?;
    check_sessions(&mut tx, plan).await?;
    if !write_plan(&mut tx, plan, metrics).await? {
        tx.rollback().await.map_err(err)?;
        return Ok(false);
    }
    tx.commit().await.map_err(err)?;
    Ok(true)
}

/// The foreign-key check of `conversations.session_id` and
/// `performance_metrics.session_id`, once per batch instead of once per
/// row: every session the batch writes for must exist, and is locked `FOR
/// KEY SHARE` (as a foreign key would) so it cannot be deleted before the
/// batch commits.
async fn check_sessions(conn: &mut PgConnection, plan: &Plan<'_>) -> Result<(), StoreError> {
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
    .fetch_one(&mut *conn)
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

/// Runs the plan's statements in dependency order (see [`Plan`]). False
/// when COPY met a repeated metric (the transaction is then aborted).
async fn write_plan(
    conn: &mut PgConnection,
    plan: &Plan<'_>,
    metrics: Metrics,
) -> Result<bool, StoreError> {
    insert(conn, &plan.conversations).await?;
    insert(conn, &plan.question_responses).await?;
    insert(conn, &plan.interventions).await?;
    let ended: Vec<&InterventionEnd> = plan.interventions_ended.iter().collect();
    execute_unnest(conn, &INTERVENTIONS_ENDED, &ended).await?;
    insert(conn, &plan.alerts).await?;
    let acked: Vec<&AlertAck> = plan.alerts_acknowledged.iter().collect();
    execute_unnest(conn, &ALERTS_ACKNOWLEDGED, &acked).await?;
    // Metrics are the bulk of what is written and only ever appended:
    // COPY. Their ids are fresh v7 UUIDs, so a repeat means the batch is
    // a retry after its commit's answer was lost (or repeats a row).
    match metrics {
        Metrics::Copy => match copy_in(conn, &plan.metrics).await {
            Ok(_) => {}
            Err(CopyError::Db(e)) if repeats_a_metric(&e) => return Ok(false),
            Err(CopyError::Db(e)) => return Err(err(e)),
            Err(CopyError::Rows(e)) => return Err(e),
        },
        Metrics::Insert => {
            insert(conn, &plan.metrics).await?;
        }
    }
    let progress: Vec<&Progress> = plan.progress.iter().collect();
    execute_unnest(conn, &PROGRESS, &progress).await?;
    let states: Vec<&StateRow> = plan.states.iter().collect();
    insert(conn, &states).await?;
    for round in &plan.participant_rounds {
        write_participants(conn, round).await?;
    }
    insert(conn, &plan.jobs).await?;
    super::webhooks::write_events(conn, &plan.webhooks).await?;
    Ok(true)
}

fn repeats_a_metric(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| {
        d.is_unique_violation() && d.constraint() == Some("performance_metrics_pkey")
    })
}

/// One round of participant changes: at most one per participant, so
/// joins and leaves touch different rows and their order does not matter.
async fn write_participants(
    conn: &mut PgConnection,
    round: &ParticipantRound<'_>,
) -> Result<(), StoreError> {
    insert(conn, &round.joined).await?;
    let left: Vec<&ParticipantLeft> = round.left.iter().collect();
    execute_unnest(conn, &PARTICIPANTS_LEFT, &left).await?;
    Ok(())
}

static INTERVENTIONS_ENDED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE operator_interventions AS t \
         SET ended_at = u.ended_at, duration_seconds = u.duration_seconds \
         FROM {} WHERE t.id = u.id",
        unnest(&InterventionEnd::COLUMNS)
    )
});

/// The first acknowledgement stands.
static ALERTS_ACKNOWLEDGED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE system_alerts AS t SET acknowledged = true, \
         acknowledged_by = u.acknowledged_by, acknowledged_at = u.acknowledged_at \
         FROM {} WHERE t.id = u.id AND t.acknowledged IS NOT TRUE",
        unnest(&AlertAck::COLUMNS)
    )
});

/// An absent time or error keeps the stored one; the duration follows the
/// resulting start and end.
static PROGRESS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE sessions AS s SET status = u.status, \
         started_at = COALESCE(u.started_at, s.started_at), \
         ended_at = COALESCE(u.ended_at, s.ended_at), \
         participant_count = u.participant_count, \
         questions_received = u.questions_received, \
         operator_interventions = u.operator_interventions, error_count = u.error_count, \
         last_error = COALESCE(u.last_error, s.last_error), \
         total_duration_seconds = GREATEST(0, COALESCE(EXTRACT(EPOCH FROM \
             COALESCE(u.ended_at, s.ended_at) - COALESCE(u.started_at, s.started_at))::int4, \
             s.total_duration_seconds)) \
         FROM {} WHERE s.id = u.id",
        unnest(&Progress::COLUMNS)
    )
});

static PARTICIPANTS_LEFT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE session_participants AS p \
         SET left_at = u.left_at, questions_asked = u.questions_asked \
         FROM {} \
         WHERE p.session_id = u.session_id AND p.participant_id = u.participant_id",
        unnest(&ParticipantLeft::COLUMNS)
    )
});

/// Creates the session and, if it was new, its state row, in one
/// transaction.
pub(super) async fn create_session(pool: &PgPool, s: &SessionRecord) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(err)?;
    if insert(&mut tx, &[s]).await? > 0 {
        let no_metrics = Value::Object(Default::default());
        insert(&mut tx, &[&StateRow::initial(s, &no_metrics)]).await?;
    }
    tx.commit().await.map_err(err)
}

pub(super) async fn ensure_tenant(pool: &PgPool, t: &TenantRecord) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(err)?;
    insert(&mut conn, &[t]).await.map(|_| ())
}

pub(super) async fn create_api_key(pool: &PgPool, k: &ApiKeyRecord) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(err)?;
    insert(&mut conn, &[k]).await.map(|_| ())
}

//! SQLite writes: a batch's [`Plan`] in one `BEGIN IMMEDIATE`
//! transaction (inserts as multi-row statements, keyed updates one
//! prepared statement per row), and the single-row creates (sessions,
//! tenants, API keys).

use serde_json::Value;
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use super::codec::{err, execute_each, insert};
use crate::store::sql::plan::{Plan, StateRow};
use crate::store::{ApiKeyRecord, Row, SessionRecord, StoreError, TenantRecord};

/// Writes the rows in one transaction: all or nothing.
pub(super) async fn write_batch(pool: &SqlitePool, rows: &[Row]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let plan = Plan::new(rows);
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
    write_plan(&mut tx, &plan).await?;
    tx.commit().await.map_err(err)
}

/// Runs the plan's statements in dependency order (see [`Plan`]). The
/// foreign keys check every row's session.
async fn write_plan(conn: &mut SqliteConnection, plan: &Plan<'_>) -> Result<(), StoreError> {
    insert(conn, &plan.conversations).await?;
    insert(conn, &plan.question_responses).await?;
    insert(conn, &plan.interventions).await?;
    execute_each(
        conn,
        "UPDATE operator_interventions SET ended_at = ?2, duration_seconds = ?3 WHERE id = ?1",
        &plan.interventions_ended,
    )
    .await?;
    insert(conn, &plan.alerts).await?;
    // The first acknowledgement stands.
    execute_each(
        conn,
        "UPDATE system_alerts SET acknowledged = 1, acknowledged_by = ?2, \
         acknowledged_at = ?3 WHERE id = ?1 AND COALESCE(acknowledged, 0) = 0",
        &plan.alerts_acknowledged,
    )
    .await?;
    insert(conn, &plan.metrics).await?;
    // An absent time or error keeps the stored one; the duration follows
    // the resulting start and end.
    execute_each(
        conn,
        "UPDATE sessions SET status = ?2, started_at = COALESCE(?3, started_at), \
         ended_at = COALESCE(?4, ended_at), participant_count = ?5, \
         questions_received = ?6, operator_interventions = ?7, error_count = ?8, \
         last_error = COALESCE(?9, last_error), \
         total_duration_seconds = MAX(0, COALESCE(CAST(ROUND((julianday(COALESCE(?4, \
             ended_at)) - julianday(COALESCE(?3, started_at))) * 86400) AS INTEGER), \
             total_duration_seconds, 0)) \
         WHERE id = ?1",
        &plan.progress,
    )
    .await?;
    let states: Vec<&StateRow> = plan.states.iter().collect();
    insert(conn, &states).await?;
    // Within a round, joins and leaves touch different participants.
    for round in &plan.participant_rounds {
        insert(conn, &round.joined).await?;
        execute_each(
            conn,
            "UPDATE session_participants SET left_at = ?3, questions_asked = ?4 \
             WHERE session_id = ?1 AND participant_id = ?2",
            &round.left,
        )
        .await?;
    }
    insert(conn, &plan.jobs).await?;
    super::webhooks::write_events(conn, &plan.webhooks).await?;
    Ok(())
}

/// Creates the session and, if it was new, its state row, in one
/// transaction.
pub(super) async fn create_session(pool: &SqlitePool, s: &SessionRecord) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(err)?;
    if insert(&mut tx, &[s]).await? > 0 {
        let no_metrics = Value::Object(Default::default());
        insert(&mut tx, &[&StateRow::initial(s, &no_metrics)]).await?;
    }
    tx.commit().await.map_err(err)
}

pub(super) async fn ensure_tenant(pool: &SqlitePool, t: &TenantRecord) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(err)?;
    insert(&mut conn, &[t]).await.map(|_| ())
}

pub(super) async fn create_api_key(pool: &SqlitePool, k: &ApiKeyRecord) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(err)?;
    insert(&mut conn, &[k]).await.map(|_| ())
}

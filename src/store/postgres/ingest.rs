//! PostgreSQL: inbound vendor events and sessions by external id
//! (`store::ingest`).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use uuid::Uuid;

use super::PostgresStore;
use super::codec::{err, select};
use crate::ids::SessionId;
use crate::store::ingest::{IngestStore, ProcessedEvent, Recorded, answers, first_of_each_hash};
use crate::store::sql::columns::Decode;
use crate::store::{SessionRecord, StoreError};

const COLUMNS: &str = "id, source, conversation_id, event_type, event_data, event_hash, \
     session_id, processed_at, processing_duration_ms";

fn event(r: &PgRow) -> Result<ProcessedEvent, StoreError> {
    let Json(event_data) = r
        .try_get::<Json<serde_json::Value>, _>("event_data")
        .map_err(err)?;
    Ok(ProcessedEvent {
        id: r.try_get("id").map_err(err)?,
        source: r.try_get("source").map_err(err)?,
        conversation_id: r.try_get("conversation_id").map_err(err)?,
        event_type: r.try_get("event_type").map_err(err)?,
        event_data,
        event_hash: r.try_get("event_hash").map_err(err)?,
        session: r
            .try_get::<Option<Uuid>, _>("session_id")
            .map_err(err)?
            .map(SessionId),
        processed_at: r.try_get("processed_at").map_err(err)?,
        processing_duration_ms: r
            .try_get::<Option<i32>, _>("processing_duration_ms")
            .map_err(err)?
            .unwrap_or(0),
    })
}

#[async_trait]
impl IngestStore for PostgresStore {
    async fn record_processed_events(
        &self,
        events: &[ProcessedEvent],
    ) -> Result<Vec<Recorded>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let firsts = first_of_each_hash(events);
        // In hash order: concurrent batches take the unique index's locks
        // in one order, so two of them sharing hashes wait for each other
        // instead of deadlocking.
        let mut rows: Vec<&ProcessedEvent> = firsts.iter().map(|&i| &events[i]).collect();
        rows.sort_unstable_by(|a, b| a.event_hash.cmp(&b.event_hash));
        // One statement: the rows are inserted, and a hash already stored
        // (or being stored by a concurrent batch, which it waits for) is
        // skipped; RETURNING names the rows this batch inserted.
        let q = format!(
            "INSERT INTO processed_webhook_events ({COLUMNS}) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], \
                 $5::jsonb[], $6::text[], $7::uuid[], $8::timestamptz[], $9::int4[]) \
             ON CONFLICT (event_hash) DO NOTHING RETURNING event_hash"
        );
        let inserted: Vec<String> = sqlx::query_scalar(&q)
            .bind(rows.iter().map(|e| e.id).collect::<Vec<Uuid>>())
            .bind(
                rows.iter()
                    .map(|e| e.source.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.conversation_id.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.event_type.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(rows.iter().map(|e| Json(&e.event_data)).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|e| e.event_hash.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.session.map(|s| s.0))
                    .collect::<Vec<Option<Uuid>>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.processed_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .bind(
                rows.iter()
                    .map(|e| e.processing_duration_ms)
                    .collect::<Vec<i32>>(),
            )
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        let inserted: HashSet<&str> = inserted.iter().map(String::as_str).collect();
        let new: HashSet<usize> = firsts
            .iter()
            .copied()
            .filter(|&i| inserted.contains(events[i].event_hash.as_str()))
            .collect();
        // The stored rows of the hashes that were taken before.
        let taken: Vec<&str> = firsts
            .iter()
            .filter(|i| !new.contains(i))
            .map(|&i| events[i].event_hash.as_str())
            .collect();
        let mut stored = HashMap::new();
        if !taken.is_empty() {
            let q = format!(
                "SELECT {COLUMNS} FROM processed_webhook_events WHERE event_hash = ANY($1)"
            );
            for r in sqlx::query(&q)
                .bind(&taken)
                .fetch_all(&self.pool)
                .await
                .map_err(err)?
            {
                let e = event(&r)?;
                stored.insert(e.event_hash.clone(), e);
            }
        }
        answers(events, &new, &stored)
    }

    async fn processed_event(
        &self,
        event_hash: &str,
    ) -> Result<Option<ProcessedEvent>, StoreError> {
        let q = format!("SELECT {COLUMNS} FROM processed_webhook_events WHERE event_hash = $1");
        sqlx::query(&q)
            .bind(event_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(event)
            .transpose()
    }

    async fn count_processed_events(&self, conversation_id: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM processed_webhook_events WHERE conversation_id = $1",
        )
        .bind(conversation_id)
        .fetch_one(&self.pool)
        .await
        .map_err(err)?;
        Ok(n.max(0) as u64)
    }

    async fn session_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let q = format!("{} WHERE s.external_id = $1", select::<SessionRecord>());
        sqlx::query(&q)
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(err)?
            .as_ref()
            .map(SessionRecord::decode)
            .transpose()
    }
}

//! SQLite: inbound vendor events and sessions by external id
//! (`store::ingest`).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use super::codec::{err, parse_ts, select, ts};
use crate::ids::SessionId;
use crate::store::ingest::{IngestStore, ProcessedEvent, Recorded, answers, first_of_each_hash};
use crate::store::sql::columns::Decode;
use crate::store::{SessionRecord, StoreError};

const COLUMNS: &str = "id, source, conversation_id, event_type, event_data, event_hash, \
     session_id, processed_at, processing_duration_ms";

fn event(r: &SqliteRow) -> Result<ProcessedEvent, StoreError> {
    let id: String = r.try_get("id").map_err(err)?;
    let data: String = r.try_get("event_data").map_err(err)?;
    let session: Option<String> = r.try_get("session_id").map_err(err)?;
    let at: String = r.try_get("processed_at").map_err(err)?;
    let bad = |what: &str| StoreError::Rejected(format!("bad {what} in processed_webhook_events"));
    Ok(ProcessedEvent {
        id: id.parse().map_err(|_| bad("id"))?,
        source: r.try_get("source").map_err(err)?,
        conversation_id: r.try_get("conversation_id").map_err(err)?,
        event_type: r.try_get("event_type").map_err(err)?,
        event_data: serde_json::from_str(&data).map_err(|_| bad("event_data"))?,
        event_hash: r.try_get("event_hash").map_err(err)?,
        session: session
            .map(|s| s.parse().map(SessionId).map_err(|_| bad("session_id")))
            .transpose()?,
        processed_at: parse_ts("processed_at", &at)?,
        processing_duration_ms: r
            .try_get::<Option<i32>, _>("processing_duration_ms")
            .map_err(err)?
            .unwrap_or(0),
    })
}

#[async_trait]
impl IngestStore for SqliteStore {
    async fn record_processed_events(
        &self,
        events: &[ProcessedEvent],
    ) -> Result<Vec<Recorded>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let insert = format!(
            "INSERT INTO processed_webhook_events ({COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (event_hash) DO NOTHING"
        );
        let select =
            format!("SELECT {COLUMNS} FROM processed_webhook_events WHERE event_hash = ?1");
        // One transaction, one commit for the batch; SQLite has one
        // writer, so nothing interleaves between an insert that conflicts
        // and the read of the row it conflicted with.
        let _turn = self.writing().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        let mut new = HashSet::new();
        let mut stored = HashMap::new();
        for i in first_of_each_hash(events) {
            let e = &events[i];
            let done = sqlx::query(&insert)
                .bind(e.id.to_string())
                .bind(&e.source)
                .bind(&e.conversation_id)
                .bind(&e.event_type)
                .bind(e.event_data.to_string())
                .bind(&e.event_hash)
                .bind(e.session.map(|s| s.to_string()))
                .bind(ts(e.processed_at))
                .bind(e.processing_duration_ms)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            if done.rows_affected() == 1 {
                new.insert(i);
            } else if let Some(r) = sqlx::query(&select)
                .bind(&e.event_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err)?
            {
                stored.insert(e.event_hash.clone(), event(&r)?);
            }
        }
        tx.commit().await.map_err(err)?;
        answers(events, &new, &stored)
    }

    async fn processed_event(
        &self,
        event_hash: &str,
    ) -> Result<Option<ProcessedEvent>, StoreError> {
        let q = format!("SELECT {COLUMNS} FROM processed_webhook_events WHERE event_hash = ?1");
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
            "SELECT COUNT(*) FROM processed_webhook_events WHERE conversation_id = ?1",
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
        let q = format!("{} WHERE s.external_id = ?1", select::<SessionRecord>());
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

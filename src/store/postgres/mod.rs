//! The PostgreSQL store, for production.
//!
//! A batch is one transaction with one statement per row kind: inserts
//! are `INSERT … SELECT … FROM UNNEST($1::uuid[], …) ON CONFLICT DO
//! NOTHING`, keyed updates are `UPDATE … FROM UNNEST(…)`, and performance
//! metrics (append-only, the bulk of the rows) one `COPY … FROM STDIN`, so
//! a batch of thousands of rows costs a handful of round trips and one
//! commit (`synchronous_commit` as the server has it: acknowledged rows
//! are on disk).
//!
//! The row shapes come from the shared table descriptions
//! (`store::sql::tables`); this folder holds what is PostgreSQL's own:
//! binding them as arrays and rendering its SQL (`codec`), rendering them
//! for COPY (`copy`), the batch and create statements (`write`) and the
//! queries (`read`).

mod codec;
mod copy;
mod ingest;
mod jobs;
mod read;
mod webhooks;
mod write;

use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;

use self::codec::err;
use crate::ids::{SessionId, TenantId};
use crate::store::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, MessageType, Page, ParticipantRow,
    PoolConfig, Row, SessionQuery, SessionRecord, Store, StoreError, TenantRecord,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Rows deleted per statement by retention, so no single transaction
/// grows without bound.
const DELETE_CHUNK: i64 = 10_000;

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

#[async_trait]
impl Store for PostgresStore {
    fn parallel_writes(&self) -> bool {
        true
    }

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
        write::create_session(&self.pool, s).await
    }

    async fn get_session(
        &self,
        tenant: Option<TenantId>,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        read::get_session(&self.pool, tenant, id).await
    }

    async fn list_sessions(
        &self,
        tenant: TenantId,
        query: &SessionQuery,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        read::list_sessions(&self.pool, tenant, query).await
    }

    async fn live_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        read::live_sessions(&self.pool).await
    }

    async fn write_batch(&self, rows: &[Row]) -> Result<(), StoreError> {
        write::write_batch(&self.pool, rows).await
    }

    async fn conversation(
        &self,
        session: SessionId,
        p: Page,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        read::page(&self.pool, session, p).await
    }

    async fn has_conversation_row(
        &self,
        session: SessionId,
        message_type: MessageType,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<bool, StoreError> {
        // The unique index's own expression, so the lookup is one probe.
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM conversations WHERE session_id = $1 \
             AND message_type = $2 AND COALESCE(participant_id, speaker) = $3 \
             AND client_msg_id = $4)",
        )
        .bind(session.0)
        .bind(message_type.as_str())
        .bind(sender)
        .bind(client_msg_id)
        .fetch_one(&self.pool)
        .await
        .map_err(err)
    }

    async fn interventions(
        &self,
        session: SessionId,
        p: Page,
    ) -> Result<Vec<InterventionRow>, StoreError> {
        read::page(&self.pool, session, p).await
    }

    async fn alerts(&self, session: SessionId, p: Page) -> Result<Vec<AlertRow>, StoreError> {
        read::page(&self.pool, session, p).await
    }

    async fn participants(&self, session: SessionId) -> Result<Vec<ParticipantRow>, StoreError> {
        read::participants(&self.pool, session).await
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
        write::ensure_tenant(&self.pool, t).await
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        read::get_tenant(&self.pool, id).await
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
        write::create_api_key(&self.pool, k).await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        read::api_key_by_hash(&self.pool, key_hash).await
    }

    async fn list_api_keys(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        read::list_api_keys(&self.pool, tenant).await
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

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
//! SQLite has no UUID, timestamp or JSON types; `codec` says how they
//! are stored. The row shapes come from the shared table descriptions
//! (`store::sql::tables`); this folder holds what is SQLite's own: the
//! file's settings (here), binding and rendering (`codec`), the batch and
//! create statements (`write`) and the queries (`read`).
//!
//! SQLite has one writer at a time. Two connections of the pool that both
//! want to write do not queue: the loser sleeps in SQLite's busy handler,
//! in steps of up to 100 ms, and tries again. With the batch writer, the
//! webhook dispatcher and the ingest recorder all writing, those sleeps
//! were most of a webhook delivery's latency. So every write of this
//! process first takes the store's write gate, an async mutex that queues
//! writers in order; the busy handler is left for other processes on the
//! same file.

mod codec;
mod ingest;
mod jobs;
mod read;
mod webhooks;
mod write;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

use self::codec::{err, ts};
use crate::ids::{SessionId, TenantId};
use crate::store::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, MessageType, Page, ParticipantRow,
    PoolConfig, Row, SessionQuery, SessionRecord, Store, StoreError, TenantRecord,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// Where the embedded database lives when no URL is configured.
pub const DEFAULT_PATH: &str = "./data/eva-hub.db";

/// Rows deleted per statement by retention.
const DELETE_CHUNK: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Held by every write of this process (see the module comment).
    gate: Arc<tokio::sync::Mutex<()>>,
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
            gate: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Waits for this process's turn to write; the turn lasts while the
    /// guard lives.
    async fn writing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// The connection pool (for tools and tests that inspect the tables).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
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
        let _turn = self.writing().await;
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
        let _turn = self.writing().await;
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
            "SELECT EXISTS (SELECT 1 FROM conversations WHERE session_id = ?1 \
             AND message_type = ?2 AND COALESCE(participant_id, speaker) = ?3 \
             AND client_msg_id = ?4)",
        )
        .bind(session.to_string())
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
        let cutoff = ts(cutoff);
        let mut total = 0;
        loop {
            // A turn per chunk, so retention never holds up a batch long.
            let _turn = self.writing().await;
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
        let _turn = self.writing().await;
        write::ensure_tenant(&self.pool, t).await
    }

    async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        read::get_tenant(&self.pool, id).await
    }

    async fn count_api_calls(&self, tenant: TenantId, n: i32) -> Result<i64, StoreError> {
        let _turn = self.writing().await;
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
        let _turn = self.writing().await;
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
        let _turn = self.writing().await;
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
        let _turn = self.writing().await;
        sqlx::query("UPDATE api_keys SET last_used = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(ts(at))
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(err)
    }
}

//! Support shared by the test binaries that run against real databases.
#![allow(dead_code, unreachable_pub)]

pub mod harness;
pub mod pg;
pub mod services;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eva_hub::store::PoolConfig;
use eva_hub::store::sqlite::SqliteStore;

/// Pool settings for tests: small pools, quick failure while a database
/// is down (the writer retries).
pub fn pool() -> PoolConfig {
    PoolConfig {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(2),
    }
}

/// Now, at millisecond precision: what every store keeps exactly.
pub fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("valid time")
}

/// A SQLite file in the temp directory, removed (with its WAL files) on
/// drop.
#[derive(Debug)]
pub struct TempDb {
    pub path: PathBuf,
}

impl TempDb {
    pub fn new(tag: &str) -> TempDb {
        let path = std::env::temp_dir().join(format!(
            "eva-hub-test-{tag}-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        TempDb { path }
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// A migrated store on this file.
    pub async fn store(&self) -> SqliteStore {
        use eva_hub::store::Store;
        let store = SqliteStore::at_path(&self.path, pool()).expect("open sqlite");
        store.migrate().await.expect("migrate sqlite");
        store
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A SQL database a hub test runs on: a temporary SQLite file or the run's
/// PostgreSQL database.
#[derive(Debug)]
pub enum Db {
    Sqlite(TempDb),
    Postgres(pg::PgFixture),
}

impl Db {
    pub fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// A new, migrated store on this database (a second one after a
    /// "restart" sees what the first wrote).
    pub async fn store(&self) -> std::sync::Arc<dyn eva_hub::store::Store> {
        match self {
            Db::Sqlite(f) => std::sync::Arc::new(f.store().await),
            Db::Postgres(p) => {
                use eva_hub::store::Store;
                let s = p.store();
                s.migrate().await.expect("migrate");
                std::sync::Arc::new(s)
            }
        }
    }

    /// Runs a statement; `$1` is bound to `session`.
    pub async fn execute(&self, sql: &str, session: eva_hub::ids::SessionId) {
        match self {
            Db::Sqlite(f) => {
                let s = SqliteStore::at_path(&f.path, pool()).expect("open");
                sqlx::query(&sql.replace("$1", "?1"))
                    .bind(session.to_string())
                    .execute(s.pool())
                    .await
                    .expect("execute");
            }
            Db::Postgres(p) => {
                sqlx::query(sql)
                    .bind(session.0)
                    .execute(p.store().pool())
                    .await
                    .expect("execute");
            }
        }
    }

    /// Runs a query returning one integer (`SELECT count(*) ...`); `$1` is
    /// bound to `session`.
    pub async fn count(&self, sql: &str, session: eva_hub::ids::SessionId) -> i64 {
        match self {
            Db::Sqlite(f) => {
                let s = SqliteStore::at_path(&f.path, pool()).expect("open");
                let sql = sql.replace("$1", "?1");
                sqlx::query_scalar::<_, i64>(&sql)
                    .bind(session.to_string())
                    .fetch_one(s.pool())
                    .await
                    .expect("count")
            }
            Db::Postgres(p) => {
                let s = p.store();
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(session.0)
                    .fetch_one(s.pool())
                    .await
                    .expect("count")
            }
        }
    }
}

//! A fresh PostgreSQL database per test run: created at the start on the
//! server at `EVA_TEST_POSTGRES`, or on the test binary's private server
//! (see `services.rs`), migrated once, dropped at the end.

use std::process::Command;
use std::time::{Duration, Instant};

use eva_hub::store::Store;
use eva_hub::store::postgres::PostgresStore;
use sqlx::{Connection, Executor, PgConnection};

#[derive(Debug, Clone)]
pub struct PgFixture {
    /// Server URL without a database.
    pub server: String,
    pub db: String,
    pub url: String,
}

fn server() -> String {
    super::services::postgres_url()
}

impl PgFixture {
    /// Creates and migrates `eva_test_<tag>_<random>`.
    ///
    /// # Panics
    /// With instructions, if PostgreSQL cannot be reached: these tests
    /// never skip.
    pub async fn create(tag: &str) -> PgFixture {
        let server = server();
        let mut admin = admin(&server).await;
        let db = format!(
            "eva_test_{tag}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        admin
            .execute(format!("CREATE DATABASE {db}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create the test database {db}: {e}"));
        let _ = admin.close().await;
        let fixture = PgFixture {
            url: format!("{server}/{db}"),
            server,
            db,
        };
        fixture
            .store()
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrating {} failed: {e}", fixture.db));
        fixture
    }

    /// The test database's name.
    pub fn db(&self) -> &str {
        &self.db
    }

    /// A store on the test database (its own pool).
    pub fn store(&self) -> PostgresStore {
        PostgresStore::connect_lazy(&self.url, super::pool()).expect("valid URL")
    }

    /// A connection to the `postgres` database, for administration.
    pub async fn admin(&self) -> PgConnection {
        admin(&self.server).await
    }

    /// Drops the database, whoever is still connected (best effort).
    pub async fn drop_database(&self) {
        ensure_running().await;
        let mut admin = admin(&self.server).await;
        if let Err(e) = admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db).as_str())
            .await
        {
            eprintln!("could not drop the test database {}: {e}", self.db);
        }
        let _ = admin.close().await;
    }

    /// Terminates every connection to the test database but this one's.
    /// Returns how many were terminated.
    pub async fn terminate_backends(&self) -> i64 {
        let mut admin = self.admin().await;
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.db)
        .fetch_one(&mut admin)
        .await
        .expect("pg_terminate_backend");
        let _ = admin.close().await;
        n
    }

    /// Refuses (or allows again) new connections to the test database: a
    /// database that is "down" for the hub without touching the cluster.
    pub async fn allow_connections(&self, allow: bool) {
        let mut admin = self.admin().await;
        admin
            .execute(format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow}", self.db).as_str())
            .await
            .expect("ALTER DATABASE");
        let _ = admin.close().await;
    }
}

async fn admin(server: &str) -> PgConnection {
    let url = format!("{server}/postgres");
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "\n\nPostgreSQL is required by these tests and is not reachable at {url}: {e}\n\
             Start the server EVA_TEST_POSTGRES names, or unset it to let the tests start \
             their own.\n"
        )
    })
}

/// The local cluster's version directory under /etc/postgresql.
fn cluster_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("a PostgreSQL cluster under /etc/postgresql")
}

/// Restarts the server the tests run on: the private one with `pg_ctl
/// restart`; with `EVA_TEST_POSTGRES`, the machine's cluster with
/// `pg_ctlcluster <version> main restart`.
pub async fn restart_server() {
    if super::services::postgres_is_private() {
        tokio::task::spawn_blocking(|| super::services::private_postgres().restart())
            .await
            .expect("join");
        return;
    }
    let version = cluster_version();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .output()
    })
    .await
    .expect("join")
    .expect("run pg_ctlcluster");
    assert!(
        out.status.success(),
        "pg_ctlcluster restart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the server accepts connections.
pub async fn is_up() -> bool {
    let url = format!("{}/postgres", server());
    match tokio::time::timeout(Duration::from_secs(2), PgConnection::connect(&url)).await {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            true
        }
        _ => false,
    }
}

/// Waits up to `within` for the server to accept connections.
pub async fn wait_up(within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if is_up().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Makes sure the server is up when a test ends: waits for it, and starts
/// it (the private server, or the machine's cluster) if it stays down.
pub async fn ensure_running() {
    if wait_up(Duration::from_secs(5)).await {
        return;
    }
    eprintln!("PostgreSQL is down; starting it");
    if super::services::postgres_is_private() {
        tokio::task::spawn_blocking(|| super::services::private_postgres().ensure_running())
            .await
            .expect("join");
    } else {
        let version = cluster_version();
        // It may be starting already; whether this succeeds is checked below.
        let _ = tokio::task::spawn_blocking(move || {
            Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, "main", "start"])
                .output()
        })
        .await;
    }
    assert!(
        wait_up(Duration::from_secs(30)).await,
        "PostgreSQL did not come back up"
    );
}

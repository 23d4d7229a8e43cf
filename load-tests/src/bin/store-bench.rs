//! store-bench: how many rows per second the batch writer flushes into
//! PostgreSQL and SQLite, and how long each flush (one transaction) takes.
//!
//! Rows go through the real `BatchWriter` (group commit, backlog bounds,
//! acks after commit) into the real stores, on a fresh database per run.
//! Producers submit as fast as the backlog admits; a refused submission
//! waits its retry-after and is resubmitted, so nothing is dropped and the
//! figure is what the writer sustains.
//!
//! With `--floor`, every run is followed by one of the floor: the same rows
//! written by the store's own transactions back to back, in full batches,
//! as many side by side as the writer runs for that kind, with no writer
//! around them (no backlog, lanes, timers or acks). The writer is then read
//! as a ratio to it, which cancels most of the machine's drift: what the
//! writer reaches below the floor is its own cost, and what the floor
//! reaches is the database's on this machine at that moment.
//!
//! ```sh
//! cargo run --release -p eva-load --bin store-bench -- --runs 3
//! cargo run --release -p eva-load --bin store-bench -- --backend postgres --floor
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::{Parser, ValueEnum};
use eva_hub::ids::{EventId, JobId, SessionId, TenantId};
use eva_hub::protocol::job::Job;
use eva_hub::store::ingest::{IngestStore, ProcessedEvent, Recorded};
use eva_hub::store::jobs::{JobQuery, JobStore};
use eva_hub::store::postgres::PostgresStore;
use eva_hub::store::sqlite::SqliteStore;
use eva_hub::store::webhooks::{
    AttemptOutcome, ClaimRequest, Claimed, DeliveryRecord, DisabledEndpoint, ReplayFrom,
    WebhookPatch, WebhookRecord, WebhookStore,
};
use eva_hub::store::writer::{Ack, BatchWriter, Order, WriterConfig};
use eva_hub::store::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, MessageType, MetricRow, Page,
    ParticipantRow, PoolConfig, Row, SessionQuery, SessionRecord, Store, StoreError, TenantRecord,
};
use eva_load::report;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Flush throughput and latency of the batch writer on PostgreSQL and SQLite")]
struct Args {
    /// Backends to measure.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Backend::Postgres, Backend::Sqlite])]
    backend: Vec<Backend>,
    /// Row kinds to measure.
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Kind::Metrics, Kind::Conversations])]
    kind: Vec<Kind>,
    /// PostgreSQL server (a fresh database is created on it per run and
    /// dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// Rows per measurement.
    #[arg(long, default_value_t = 400_000)]
    rows: usize,
    /// Rows per submission: a renderer report is up to 9 metric rows, a
    /// question one conversation row.
    #[arg(long)]
    submission_rows: Option<usize>,
    /// Concurrent producers.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Sessions the rows are spread over.
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Writer settings (as `[store]` in config/default.toml): rows per
    /// batch in the sessions' lanes (0: chosen by the database)...
    #[arg(long, default_value_t = 0)]
    batch_max_rows: usize,
    /// ...and in the metric lane.
    #[arg(long, default_value_t = 5000)]
    metric_batch_max_rows: usize,
    /// Lanes that sessions' rows are spread over (`store.ordered_writers`).
    #[arg(long, default_value_t = 4)]
    ordered_writers: usize,
    /// Flushers writing metric rows side by side (`store.metric_writers`).
    #[arg(long, default_value_t = 2)]
    metric_writers: usize,
    #[arg(long, default_value_t = 5)]
    flush_interval_ms: u64,
    /// Producers outrun the database, so the backlog stays full and a
    /// sender's wait for its ack is about backlog / throughput. The
    /// default keeps four batches waiting (the hub's default is 200000).
    #[arg(long, default_value_t = 20_000)]
    backlog_max_rows: usize,
    /// Repetitions of every measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Follow each run with the floor's (see the module's comment) and
    /// report the writer against it.
    #[arg(long)]
    floor: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    Metrics,
    Conversations,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Metrics => "metrics",
            Kind::Conversations => "conversations",
        }
    }
}

/// Times every `write_batch` of the store it wraps.
#[derive(Debug)]
struct TimedStore {
    inner: Arc<dyn Store>,
    flushes: Mutex<Histogram<u64>>,
    rows: AtomicU64,
}

/// Webhook calls pass through untimed.
#[async_trait]
impl WebhookStore for TimedStore {
    async fn create_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError> {
        self.inner.create_webhook(w).await
    }
    async fn list_webhooks(&self, t: TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        self.inner.list_webhooks(t).await
    }
    async fn get_webhook(
        &self,
        t: TenantId,
        id: Uuid,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        self.inner.get_webhook(t, id).await
    }
    async fn update_webhook(
        &self,
        t: TenantId,
        id: Uuid,
        patch: &WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError> {
        self.inner.update_webhook(t, id, patch).await
    }
    async fn delete_webhook(&self, t: TenantId, id: Uuid) -> Result<bool, StoreError> {
        self.inner.delete_webhook(t, id).await
    }
    async fn webhook_deliveries(
        &self,
        w: Uuid,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.webhook_deliveries(w, before, limit).await
    }
    async fn claim_webhook_deliveries(&self, req: &ClaimRequest) -> Result<Claimed, StoreError> {
        self.inner.claim_webhook_deliveries(req).await
    }
    async fn record_webhook_attempts(
        &self,
        outcomes: &[AttemptOutcome],
        disable_after: i32,
    ) -> Result<Vec<DisabledEndpoint>, StoreError> {
        self.inner
            .record_webhook_attempts(outcomes, disable_after)
            .await
    }
    async fn replay_webhook_deliveries(
        &self,
        w: Uuid,
        from: ReplayFrom,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.replay_webhook_deliveries(w, from, now).await
    }
}

/// Inbound-event calls pass through untimed.
#[async_trait]
impl IngestStore for TimedStore {
    async fn record_processed_events(
        &self,
        events: &[ProcessedEvent],
    ) -> Result<Vec<Recorded>, StoreError> {
        self.inner.record_processed_events(events).await
    }
    async fn processed_event(&self, hash: &str) -> Result<Option<ProcessedEvent>, StoreError> {
        self.inner.processed_event(hash).await
    }
    async fn count_processed_events(&self, conversation: &str) -> Result<u64, StoreError> {
        self.inner.count_processed_events(conversation).await
    }
    async fn session_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.session_by_external_id(external_id).await
    }
}

/// Job reads pass through untimed.
#[async_trait]
impl JobStore for TimedStore {
    async fn job(&self, tenant: Option<TenantId>, id: JobId) -> Result<Option<Job>, StoreError> {
        self.inner.job(tenant, id).await
    }
    async fn list_jobs(&self, tenant: TenantId, q: &JobQuery) -> Result<Vec<Job>, StoreError> {
        self.inner.list_jobs(tenant, q).await
    }
}

#[async_trait]
impl Store for TimedStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn create_session(&self, s: &SessionRecord) -> Result<(), StoreError> {
        self.inner.create_session(s).await
    }
    async fn get_session(
        &self,
        t: Option<TenantId>,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.get_session(t, id).await
    }
    async fn list_sessions(
        &self,
        t: TenantId,
        q: &SessionQuery,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.list_sessions(t, q).await
    }
    async fn live_sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.live_sessions().await
    }
    fn parallel_writes(&self) -> bool {
        self.inner.parallel_writes()
    }

    async fn write_batch(&self, rows: &[Row]) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.write_batch(rows).await;
        if result.is_ok() {
            let us = started.elapsed().as_micros().max(1) as u64;
            let _ = self.flushes.lock().record(us);
            self.rows.fetch_add(rows.len() as u64, Ordering::Relaxed);
        }
        result
    }
    async fn conversation(
        &self,
        s: SessionId,
        p: Page,
    ) -> Result<Vec<ConversationRow>, StoreError> {
        self.inner.conversation(s, p).await
    }
    async fn has_conversation_row(
        &self,
        s: SessionId,
        kind: MessageType,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .has_conversation_row(s, kind, sender, client_msg_id)
            .await
    }
    async fn interventions(
        &self,
        s: SessionId,
        p: Page,
    ) -> Result<Vec<InterventionRow>, StoreError> {
        self.inner.interventions(s, p).await
    }
    async fn alerts(&self, s: SessionId, p: Page) -> Result<Vec<AlertRow>, StoreError> {
        self.inner.alerts(s, p).await
    }
    async fn participants(&self, s: SessionId) -> Result<Vec<ParticipantRow>, StoreError> {
        self.inner.participants(s).await
    }
    async fn delete_metrics_before(&self, c: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.delete_metrics_before(c).await
    }
    async fn ensure_tenant(&self, t: &TenantRecord) -> Result<(), StoreError> {
        self.inner.ensure_tenant(t).await
    }
    async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.inner.get_tenant(id).await
    }
    async fn count_api_calls(&self, t: TenantId, n: i32) -> Result<i64, StoreError> {
        self.inner.count_api_calls(t, n).await
    }
    async fn create_api_key(&self, k: &ApiKeyRecord) -> Result<(), StoreError> {
        self.inner.create_api_key(k).await
    }
    async fn api_key_by_hash(&self, h: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.inner.api_key_by_hash(h).await
    }
    async fn list_api_keys(&self, t: Option<TenantId>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.inner.list_api_keys(t).await
    }
    async fn revoke_api_key(&self, id: Uuid, t: Option<TenantId>) -> Result<bool, StoreError> {
        self.inner.revoke_api_key(id, t).await
    }
    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.touch_api_key(id, at).await
    }
}

/// One measurement's figures.
#[derive(Debug, Clone)]
struct Measurement {
    rows_per_s: f64,
    flush: Value,
    flush_p50_ms: f64,
    flush_p99_ms: f64,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    batches: u64,
    mean_batch_rows: f64,
}

/// A fresh database (PostgreSQL) or file (SQLite) and a store on it.
struct Target {
    store: Arc<dyn Store>,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { server: String, db: String },
    Sqlite(PathBuf),
}

fn pool() -> PoolConfig {
    PoolConfig {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(5),
    }
}

async fn open(backend: Backend, args: &Args) -> anyhow::Result<Target> {
    let target = match backend {
        Backend::Postgres => {
            let server = args.postgres.trim_end_matches('/').to_owned();
            let mut admin = PgConnection::connect(&format!("{server}/postgres"))
                .await
                .with_context(|| format!("PostgreSQL is not reachable at {server}"))?;
            let db = format!("eva_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
            admin
                .execute(format!("CREATE DATABASE {db}").as_str())
                .await?;
            let _ = admin.close().await;
            let store = PostgresStore::connect_lazy(&format!("{server}/{db}"), pool())?;
            Target {
                store: Arc::new(store),
                cleanup: Cleanup::Postgres { server, db },
            }
        }
        Backend::Sqlite => {
            let path =
                std::env::temp_dir().join(format!("eva-bench-{}.db", Uuid::new_v4().simple()));
            Target {
                store: Arc::new(SqliteStore::at_path(&path, pool())?),
                cleanup: Cleanup::Sqlite(path),
            }
        }
    };
    target.store.migrate().await?;
    Ok(target)
}

impl Target {
    async fn close(self) {
        drop(self.store);
        match self.cleanup {
            Cleanup::Postgres { server, db } => {
                if let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await {
                    let _ = admin
                        .execute(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)").as_str())
                        .await;
                }
            }
            Cleanup::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

fn metric_rows(session: SessionId, n: usize) -> Vec<Row> {
    const TYPES: [(&str, &str); 9] = [
        ("latency_ms", "ms"),
        ("cpu_usage", "ratio"),
        ("gpu_usage", "ratio"),
        ("memory_usage", "ratio"),
        ("fps", "fps"),
        ("stt_latency_ms", "ms"),
        ("llm_latency_ms", "ms"),
        ("tts_latency_ms", "ms"),
        ("total_latency_ms", "ms"),
    ];
    let at = Utc::now();
    (0..n)
        .map(|i| {
            let (name, unit) = TYPES[i % TYPES.len()];
            Row::Metric(MetricRow {
                id: Uuid::now_v7(),
                session_id: session,
                metric_type: name.to_owned(),
                metric_value: 0.5 + (i % 1000) as f64,
                unit: Some(unit.to_owned()),
                timestamp: at,
                component: Some("pipeline".to_owned()),
            })
        })
        .collect()
}

fn conversation_rows(session: SessionId, n: usize, seq: &AtomicU64) -> Vec<Row> {
    let at = Utc::now();
    (0..n)
        .map(|_| {
            let s = seq.fetch_add(1, Ordering::Relaxed);
            Row::Conversation(ConversationRow {
                id: EventId::new(),
                session_id: session,
                seq: s,
                participant_id: Some(format!("participant-{}", s % 500)),
                message_type: MessageType::Question,
                content: "What does the enterprise tier cost, and is there a trial?".to_owned(),
                speaker: Some("Ada".to_owned()),
                timestamp: at,
                confidence_score: None,
                response_time_ms: None,
                context: json!({}),
                metadata: json!({}),
                client_msg_id: Some(format!("q-{s}")),
            })
        })
        .collect()
}

/// A fresh target with the sessions the rows belong to, and each
/// producer's submissions, made before any clock starts: the figures are
/// the writer's and the database's, not the cost of inventing rows.
struct Prepared {
    target: Target,
    work: Vec<Vec<(SessionId, Vec<Row>)>>,
    rows: u64,
}

async fn prepare(backend: Backend, kind: Kind, args: &Args) -> anyhow::Result<Prepared> {
    let target = open(backend, args).await?;
    let tenant = TenantId::new();
    target
        .store
        .ensure_tenant(&TenantRecord::new(
            tenant,
            format!("{tenant}@bench.invalid"),
        ))
        .await?;
    let mut sessions = Vec::new();
    for _ in 0..args.sessions.max(1) {
        let id = SessionId::new();
        target
            .store
            .create_session(&SessionRecord {
                id,
                tenant,
                avatar_id: None,
                name: Some("bench".into()),
                description: None,
                external_id: None,
                status: eva_hub::protocol::SessionStatus::Active,
                config: json!({}),
                created_at: Utc::now(),
                started_at: None,
                ended_at: None,
                counters: Default::default(),
                last_error: None,
                state: Default::default(),
                context: json!({}),
            })
            .await?;
        sessions.push(id);
    }
    let per_submission = args.submission_rows.unwrap_or(match kind {
        Kind::Metrics => 9,
        Kind::Conversations => 1,
    });
    let seq = AtomicU64::new(1);
    let share = args.rows / args.producers.max(1);
    let work: Vec<Vec<(SessionId, Vec<Row>)>> = (0..args.producers.max(1))
        .map(|p| {
            let mut subs = Vec::new();
            let mut made = 0;
            let mut i = p;
            while made < share {
                let n = per_submission.min(share - made);
                let session = sessions[i % sessions.len()];
                i += 1;
                subs.push((
                    session,
                    match kind {
                        Kind::Metrics => metric_rows(session, n),
                        Kind::Conversations => conversation_rows(session, n, &seq),
                    },
                ));
                made += n;
            }
            subs
        })
        .collect();
    Ok(Prepared {
        target,
        work,
        rows: (share * args.producers.max(1)) as u64,
    })
}

/// The writer's settings from the command line.
fn writer_config(args: &Args) -> WriterConfig {
    WriterConfig {
        batch_max_rows: args.batch_max_rows,
        metric_batch_max_rows: args.metric_batch_max_rows,
        ordered_writers: args.ordered_writers,
        metric_writers: args.metric_writers,
        flush_interval: Duration::from_millis(args.flush_interval_ms),
        backlog_max_rows: args.backlog_max_rows,
        backlog_max_bytes: 1 << 30,
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_secs(2),
    }
}

async fn measure(backend: Backend, kind: Kind, args: &Args) -> anyhow::Result<Measurement> {
    let Prepared {
        target,
        work,
        rows: expected,
    } = prepare(backend, kind, args).await?;
    let timed = Arc::new(TimedStore {
        inner: target.store.clone(),
        flushes: Mutex::new(report::latency_histogram()),
        rows: AtomicU64::new(0),
    });
    let writer = BatchWriter::start(timed.clone(), writer_config(args));
    let commits = Arc::new(Mutex::new(report::latency_histogram()));
    let started = Instant::now();
    let mut producers = Vec::new();
    for subs in work {
        let writer = writer.clone();
        let commits = commits.clone();
        producers.push(tokio::spawn(async move {
            let mut waiting = Vec::new();
            for (i, (session, rows)) in subs.into_iter().enumerate() {
                // Every 50th submission carries an ack, timed from submit
                // to commit: what a sender waits for its `ack`.
                let timed_ack = i % 50 == 0;
                let weight: usize = rows.iter().map(Row::weight).sum();
                let reservation = loop {
                    match writer.reserve(rows.len(), weight) {
                        Ok(r) => break r,
                        Err(full) => {
                            tokio::time::sleep(full.retry_after.min(Duration::from_millis(5))).await
                        }
                    }
                };
                let ack = if timed_ack {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    waiting.push((Instant::now(), rx));
                    Some(Ack::Notify(tx))
                } else {
                    None
                };
                reservation.submit(Order::Session(session), rows, ack);
                if i % 64 == 63 {
                    tokio::task::yield_now().await;
                }
                waiting.retain_mut(|(at, rx)| match rx.try_recv() {
                    Ok(_) => {
                        let _ = commits
                            .lock()
                            .record(at.elapsed().as_micros().max(1) as u64);
                        false
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => true,
                    Err(_) => false,
                });
            }
            for (at, rx) in waiting {
                if rx.await.is_ok() {
                    let _ = commits
                        .lock()
                        .record(at.elapsed().as_micros().max(1) as u64);
                }
            }
        }));
    }
    for p in producers {
        p.await?;
    }
    while writer.backlog_rows() > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    writer
        .shutdown(Instant::now() + Duration::from_secs(30))
        .await;
    let written = timed.rows.load(Ordering::Relaxed);
    if written != expected {
        bail!("{written} rows flushed, {expected} submitted");
    }
    let flushes = timed.flushes.lock().clone();
    let commits = commits.lock().clone();
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let m = Measurement {
        rows_per_s: written as f64 / elapsed.as_secs_f64(),
        flush: report::percentiles_ms(&flushes),
        flush_p50_ms: ms(&flushes, 0.5),
        flush_p99_ms: ms(&flushes, 0.99),
        commit_p50_ms: ms(&commits, 0.5),
        commit_p99_ms: ms(&commits, 0.99),
        batches: flushes.len(),
        mean_batch_rows: written as f64 / flushes.len().max(1) as f64,
    };
    drop(timed);
    drop(writer);
    target.close().await;
    Ok(m)
}

/// The floor's run (see the module's comment): the same rows, in batches
/// of the size the writer makes for this kind and store, written by as
/// many tasks as the writer has flushers for it, each calling the store's
/// `write_batch` again as soon as the last one committed. Rows per second.
async fn floor(backend: Backend, kind: Kind, args: &Args) -> anyhow::Result<f64> {
    let Prepared { target, work, rows } = prepare(backend, kind, args).await?;
    // As the writer settles them for this store.
    let config = writer_config(args).for_store(target.store.parallel_writes());
    let (flushers, batch_rows) = match kind {
        Kind::Metrics => (config.metric_writers, config.metric_batch_max_rows),
        Kind::Conversations => (config.ordered_writers, config.batch_max_rows),
    };
    let all: Vec<Row> = work
        .into_iter()
        .flatten()
        .flat_map(|(_, rows)| rows)
        .collect();
    let mut lanes: Vec<Vec<Vec<Row>>> = (0..flushers).map(|_| Vec::new()).collect();
    let mut rest = all.into_iter().peekable();
    let mut lane = 0;
    while rest.peek().is_some() {
        lanes[lane % flushers].push(rest.by_ref().take(batch_rows).collect());
        lane += 1;
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for batches in lanes {
        let store = target.store.clone();
        tasks.push(tokio::spawn(async move {
            for batch in batches {
                store.write_batch(&batch).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    target.close().await;
    Ok(rows as f64 / elapsed.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = report::results_dir("store-bench");
    let mut summary = Vec::new();
    let mut out = Vec::new();
    for &backend in &args.backend {
        for &kind in &args.kind {
            let mut runs = Vec::new();
            let mut floors = Vec::new();
            for run in 0..args.runs.max(1) {
                let m = measure(backend, kind, &args).await?;
                eprintln!(
                    "{backend:?} {}: run {}: {:.0} rows/s, flush p50 {:.1} ms p99 {:.1} ms, \
                     {} batches of {:.0} rows",
                    kind.name(),
                    run + 1,
                    m.rows_per_s,
                    m.flush_p50_ms,
                    m.flush_p99_ms,
                    m.batches,
                    m.mean_batch_rows
                );
                runs.push(m);
                if args.floor {
                    let f = floor(backend, kind, &args).await?;
                    eprintln!(
                        "{backend:?} {}: run {} of the floor: {f:.0} rows/s",
                        kind.name(),
                        run + 1
                    );
                    floors.push(f);
                }
            }
            let med = |f: fn(&Measurement) -> f64| median(runs.iter().map(f).collect());
            // Each run against the floor's run right after it, then the
            // median of those ratios: the pairs share the machine's spell.
            let ratio = (!floors.is_empty()).then(|| {
                median(
                    runs.iter()
                        .zip(&floors)
                        .map(|(m, f)| m.rows_per_s / f)
                        .collect(),
                )
            });
            let row = json!({
                "backend": format!("{backend:?}").to_lowercase(),
                "kind": kind.name(),
                "median_rows_per_s": med(|m| m.rows_per_s).round(),
                "median_flush_p50_ms": med(|m| m.flush_p50_ms),
                "median_flush_p99_ms": med(|m| m.flush_p99_ms),
                "median_commit_p50_ms": med(|m| m.commit_p50_ms),
                "median_commit_p99_ms": med(|m| m.commit_p99_ms),
                "median_batch_rows": med(|m| m.mean_batch_rows).round(),
                "floor_rows_per_s": floors.iter().map(|f| f.round()).collect::<Vec<_>>(),
                "ratio_to_floor": ratio,
                "runs": runs.iter().map(|m| json!({
                    "rows_per_s": m.rows_per_s.round(),
                    "flush": m.flush,
                    "commit_p50_ms": m.commit_p50_ms,
                    "commit_p99_ms": m.commit_p99_ms,
                    "batches": m.batches,
                    "mean_batch_rows": m.mean_batch_rows.round(),
                })).collect::<Vec<_>>(),
            });
            summary.push(format!(
                "{:<9} {:<14} {:>10.0} rows/s   flush p50 {:>6.1} ms  p99 {:>6.1} ms   \
                 ack p50 {:>6.1} ms  p99 {:>6.1} ms",
                format!("{backend:?}").to_lowercase(),
                kind.name(),
                med(|m| m.rows_per_s),
                med(|m| m.flush_p50_ms),
                med(|m| m.flush_p99_ms),
                med(|m| m.commit_p50_ms),
                med(|m| m.commit_p99_ms),
            ));
            if let Some(ratio) = ratio {
                summary.push(format!(
                    "{:<9} {:<14} {:>10.0} rows/s   the floor; the writer reaches {ratio:.2} of it",
                    "",
                    "",
                    median(floors.clone()),
                ));
            }
            out.push(row);
        }
    }
    let result = json!({
        "scenario": "store-bench",
        "at": Utc::now().to_rfc3339(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "settings": {
            "rows": args.rows,
            "producers": args.producers,
            "sessions": args.sessions,
            "submission_rows": args.submission_rows,
            "batch_max_rows": args.batch_max_rows,
            "metric_batch_max_rows": args.metric_batch_max_rows,
            "ordered_writers": args.ordered_writers,
            "metric_writers": args.metric_writers,
            "flush_interval_ms": args.flush_interval_ms,
            "backlog_max_rows": args.backlog_max_rows,
            "runs": args.runs,
            "floor": args.floor,
        },
        "results": out,
    });
    let name = format!("store-bench-{}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    let path = report::write_json(&dir, &name, &result)?;
    println!(
        "\nstore-bench: median of {} runs, through the BatchWriter",
        args.runs.max(1)
    );
    for line in summary {
        println!("  {line}");
    }
    println!("  (flush = one write_batch transaction; ack = submit to commit)");
    println!("results: {}", path.display());
    Ok(())
}

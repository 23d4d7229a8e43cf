//! PostgreSQL failing under a running hub: backends terminated mid-flush,
//! the whole cluster restarted, and connections refused until the backlog
//! is full; and the Redis Cluster master of a session killed under a hub
//! that sequences through the cluster. Real participants ask questions over
//! WebSocket, resending on `backlog_full` or a missing ack, exactly as the
//! protocol tells them; afterwards the stored rows are counted against the
//! acks the clients received: nothing acknowledged is lost, nothing is
//! stored twice.
//!
//! These tests disturb the shared PostgreSQL cluster, so they live in
//! their own binary and run one at a time; PostgreSQL is back up when the
//! run ends, whatever happened.

#[path = "../common/mod.rs"]
mod common;
#[path = "../hub/support.rs"]
#[allow(dead_code, unreachable_pub)]
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eva_hub::broker::redis::RedisBroker;
use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::config::Settings;
use eva_hub::ids::{EventId, SessionId};
use eva_hub::protocol::model::{RendererMetrics, Role};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};
use eva_hub::store::Store;

use common::harness::{self, Test};
use common::pg::{self, PgFixture};
use support::{TestApp, spawn_on, spawn_with, test_settings};

fn main() -> ExitCode {
    harness::main_on_postgres("faults", "", 1, Duration::from_secs(120), tests)
}

fn tests(pg: Option<PgFixture>) -> Vec<Test> {
    let f = move || pg.clone().expect("the PostgreSQL fixture");
    let (f1, f2, f3, f4, f5) = (f.clone(), f.clone(), f.clone(), f.clone(), f);
    vec![
        harness::test(
            "postgres::terminated_backends_lose_nothing_and_duplicate_nothing",
            move || terminated_backends(f1()),
        ),
        harness::test(
            "postgres::cluster_restart_loses_nothing_and_duplicates_nothing",
            move || cluster_restart(f2()),
        ),
        harness::test(
            "postgres::full_backlog_refuses_with_retry_after_then_drains",
            move || full_backlog(f3()),
        ),
        harness::test(
            "postgres::shutdown_with_the_database_down_ends_at_its_deadline",
            move || shutdown_while_down(f4()),
        ),
        harness::test(
            "redis_cluster::a_killed_master_loses_no_acknowledged_question",
            move || master_killed(f5()),
        ),
    ]
}

// -------------------------------------------------------------------
// Clients that keep their messages
// -------------------------------------------------------------------

/// What one participant saw.
#[derive(Debug, Default)]
struct Outcome {
    subject: String,
    /// Client id → the question id its ack named.
    acked: HashMap<String, EventId>,
    resends: usize,
    refusals: usize,
    reconnects: usize,
}

async fn join(addr: SocketAddr, session: SessionId, subject: &str) -> Client {
    let token = eva_hub::auth::dev::dev_token(Role::Participant, subject, None);
    let mut c = Client::connect(addr, ConnectOptions::new(Codec::Json, token))
        .await
        .expect("connect");
    c.send(&ClientFrame::Join {
        session,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: Some("j".into()),
    })
    .await
    .expect("join");
    loop {
        match c.recv_timeout(Duration::from_secs(10)).await {
            Ok(Incoming::Frame(ServerFrame::Snapshot(_))) => return c,
            Ok(Incoming::Frame(ServerFrame::Error { code, message, .. })) => {
                panic!("join refused: {code:?} {message}")
            }
            Ok(Incoming::Frame(_)) => {}
            other => panic!("join failed: {other:?}"),
        }
    }
}

enum Answer {
    Acked(EventId),
    Retry(Duration),
    Resend,
    Reconnect,
}

/// Asks questions `q-0`, `q-1`, ... one at a time until `stop` is set,
/// and every question until it is acknowledged: on `backlog_full` or
/// `unavailable` after the retry-after, on silence after `patience`, on a
/// closed connection after reconnecting. Always with the same id.
async fn participant(
    addr: SocketAddr,
    session: SessionId,
    subject: String,
    stop: Arc<AtomicBool>,
    patience: Duration,
) -> Outcome {
    let mut out = Outcome {
        subject: subject.clone(),
        ..Default::default()
    };
    let mut c = join(addr, session, &subject).await;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("q-{i}");
        i += 1;
        loop {
            let sent = c
                .send(&ClientFrame::Question {
                    session,
                    id: id.clone(),
                    text: format!("{subject} asks {id}"),
                })
                .await;
            let answer = if sent.is_err() {
                Answer::Reconnect
            } else {
                await_answer(&mut c, &id, patience, &mut out).await
            };
            match answer {
                Answer::Acked(ref_id) => {
                    out.acked.insert(id.clone(), ref_id);
                    break;
                }
                Answer::Retry(after) => {
                    out.refusals += 1;
                    tokio::time::sleep(after).await;
                }
                Answer::Resend => out.resends += 1,
                Answer::Reconnect => {
                    out.reconnects += 1;
                    c = join(addr, session, &subject).await;
                }
            }
        }
    }
    // Late acks of resends may still be on the way; they must agree.
    while let Ok(Incoming::Frame(f)) = c.recv_timeout(Duration::from_millis(200)).await {
        if let ServerFrame::Ack {
            id,
            ref_id: Some(r),
            ..
        } = f
            && let Some(first) = out.acked.get(&id)
        {
            assert_eq!(*first, r, "two acks of {id} name different questions");
        }
    }
    out
}

async fn await_answer(c: &mut Client, id: &str, patience: Duration, out: &mut Outcome) -> Answer {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_timeout(left).await {
            Ok(Incoming::Frame(ServerFrame::Ack {
                id: got, ref_id, ..
            })) => {
                let ref_id = ref_id.expect("a question's ack names the question");
                if got == id {
                    return Answer::Acked(ref_id);
                }
                // A late ack of an earlier resend.
                if let Some(first) = out.acked.get(&got) {
                    assert_eq!(*first, ref_id, "two acks of {got} name different questions");
                }
            }
            Ok(Incoming::Frame(ServerFrame::Error {
                id: Some(got),
                code,
                retry_after_ms,
                message,
                ..
            })) if got == id => {
                assert!(
                    matches!(code, ErrorCode::BacklogFull | ErrorCode::Unavailable),
                    "only retryable refusals while the database fails, got {code:?}: {message}"
                );
                let after = retry_after_ms.expect("a retryable error carries retry_after_ms");
                return Answer::Retry(Duration::from_millis(after));
            }
            Ok(Incoming::Frame(_)) => {}
            Ok(Incoming::Closed(_)) => return Answer::Reconnect,
            Err(_) => return Answer::Resend,
        }
    }
}

/// Runs `participants` askers on `app`'s session while `fault` runs, then
/// stops them and checks the stored questions against their acks.
async fn load_through<F, Fut>(
    fixture: &PgFixture,
    app: &TestApp,
    participants: usize,
    fault: F,
) -> Vec<Outcome>
where
    F: FnOnce(SessionId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let session = app.create_session().await;
    let stop = Arc::new(AtomicBool::new(false));
    let askers: Vec<_> = (0..participants)
        .map(|n| {
            tokio::spawn(participant(
                app.addr,
                session,
                format!("participant-{n}"),
                stop.clone(),
                // Short: questions caught in the outage are resent while
                // their first copy still waits for its commit.
                Duration::from_secs(1),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    fault(session).await;
    // Keep asking for a while after the database is back.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for a in askers {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(60), a)
                .await
                .expect("participants finish once the database is back")
                .expect("participant task"),
        );
    }
    verify(fixture, session, &outcomes).await;
    outcomes
}

/// Every acknowledged question is stored, under the id its ack named, and
/// nothing is stored twice or without an ack.
async fn verify(fixture: &PgFixture, session: SessionId, outcomes: &[Outcome]) {
    let store = fixture.store();
    let rows: Vec<(String, String, uuid::Uuid)> = sqlx::query_as(
        "SELECT participant_id, client_msg_id, id FROM conversations \
         WHERE session_id = $1 AND message_type = 'question'",
    )
    .bind(session.0)
    .fetch_all(store.pool())
    .await
    .expect("read questions");
    let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    let mut stored: HashMap<(String, String), Vec<uuid::Uuid>> = HashMap::new();
    for (p, c, id) in rows.iter().cloned() {
        stored.entry((p, c)).or_default().push(id);
    }
    let duplicates: Vec<_> = stored.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(duplicates.is_empty(), "stored twice: {duplicates:?}");
    let mut lost = Vec::new();
    for o in outcomes {
        for (client_id, ref_id) in &o.acked {
            match stored.get(&(o.subject.clone(), client_id.clone())) {
                Some(ids) => assert_eq!(
                    ids[0], ref_id.0,
                    "{}/{client_id} is stored under another id than its ack named",
                    o.subject
                ),
                None => lost.push(format!("{}/{client_id}", o.subject)),
            }
        }
    }
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert_eq!(rows.len(), acked, "every stored question was acknowledged");
    assert!(acked > 0, "the participants got through");
}

fn report(name: &str, outcomes: &[Outcome], failures: f64) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    println!(
        "  {name}: {} questions acknowledged and stored once; {} resends, {} refusals, \
         {} reconnects; {failures} failed flushes retried",
        sum(|o| o.acked.len()),
        sum(|o| o.resends),
        sum(|o| o.refusals),
        sum(|o| o.reconnects),
    );
}

/// A counter from the hub's Prometheus registry (0 if absent).
fn counter(series: &str) -> f64 {
    let text = eva_hub::metrics::install_exporter().render();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn settings() -> Settings {
    let mut s = test_settings();
    s.store.retry_initial_ms = 20;
    s.store.retry_max_ms = 500;
    s
}

async fn app(fixture: &PgFixture, settings: Settings) -> TestApp {
    let store = fixture.store();
    store.migrate().await.expect("migrate");
    spawn_with(settings, Arc::new(store)).await
}

// -------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------

/// `pg_terminate_backend` on every connection of the hub, again and again
/// while it flushes.
async fn terminated_backends(fixture: PgFixture) {
    let mut app = app(&fixture, settings()).await;
    let failures = counter("eva_store_flush_failures_total");
    let f = fixture.clone();
    let outcomes = load_through(&fixture, &app, 12, |_| async move {
        let mut terminated = 0;
        for _ in 0..30 {
            terminated += f.terminate_backends().await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert!(terminated > 0, "backends were terminated");
    })
    .await;
    let failed = counter("eva_store_flush_failures_total") - failures;
    report("terminated backends", &outcomes, failed);
    assert!(failed > 0.0, "a flush was interrupted and retried");
    app.shutdown().await;
}

/// The PostgreSQL server restarted while the hub flushes.
async fn cluster_restart(fixture: PgFixture) {
    let mut app = app(&fixture, settings()).await;
    let failures = counter("eva_store_flush_failures_total");
    let began = std::sync::Mutex::new(None);
    let outcomes = load_through(&fixture, &app, 12, |_| async {
        let started = Instant::now();
        *began.lock().unwrap() = Some(chrono::Utc::now());
        pg::restart_server().await;
        pg::ensure_running().await;
        println!(
            "  cluster restarted in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    })
    .await;
    let failed = counter("eva_store_flush_failures_total") - failures;
    report("cluster restart", &outcomes, failed);
    // The restart ended every connection the hub had, while questions
    // flowed; the questions acknowledged after it prove the hub connected
    // again. Whether a flush was caught mid-way (failed and retried, or
    // held long enough for clients to resend) depends on timing, so it is
    // reported above rather than required.
    let began = began.lock().unwrap().expect("the restart ran");
    let mut admin = fixture.admin().await;
    let reconnected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_start > $2",
    )
    .bind(fixture.db())
    .bind(began)
    .fetch_one(&mut admin)
    .await
    .expect("pg_stat_activity");
    assert!(
        reconnected > 0,
        "the hub holds connections opened after the restart began"
    );
    app.shutdown().await;
}

/// With the database refusing connections, the backlog fills: questions
/// are refused with `backlog_full` and a retry-after (the client keeps
/// them), metrics are dropped and counted. When the database is back the
/// backlog drains, the queued questions are acknowledged, and the refused
/// ones go through on their retry.
async fn full_backlog(fixture: PgFixture) {
    let mut s = settings();
    s.store.backlog_max_rows = 40;
    s.store.retry_max_ms = 200;
    let mut app = app(&fixture, s).await;
    let (session, mut r) = app.active_session(Codec::Json).await;
    let mut p = join(app.addr, session, "patient").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.hub.writer.backlog_rows() > 0 {
        assert!(Instant::now() < deadline, "the backlog did not settle");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    fixture.allow_connections(false).await;
    fixture.terminate_backends().await;

    // Ask until refused. Admitted questions reach the renderer but get no
    // ack (nothing commits); a refusal is immediate.
    let mut queued = Vec::new();
    let refused = loop {
        let id = format!("q-{}", queued.len());
        assert!(queued.len() < 100, "the backlog never filled");
        p.send(&ClientFrame::Question {
            session,
            id: id.clone(),
            text: format!("question {id}"),
        })
        .await
        .unwrap();
        let text = format!("question {id}");
        let admitted = tokio::select! {
            refusal = async {
                loop {
                    match p.recv().await {
                        Ok(Incoming::Frame(ServerFrame::Error { id: Some(got), code, retry_after_ms, .. }))
                            if got == id => break (code, retry_after_ms),
                        Ok(Incoming::Frame(ServerFrame::Ack { id: got, .. })) => {
                            panic!("{got} acknowledged while the database refuses connections")
                        }
                        Ok(Incoming::Frame(_)) => {}
                        other => panic!("participant connection: {other:?}"),
                    }
                }
            } => Err(refusal),
            _ = async {
                loop {
                    if let Ok(Incoming::Frame(ServerFrame::Event { event: eva_hub::protocol::model::Event::Question { text: t, .. }, .. })) = r.client.recv().await
                        && t == text
                    {
                        break;
                    }
                }
            } => Ok(()),
        };
        match admitted {
            Ok(()) => queued.push(id),
            Err((code, retry_after)) => {
                assert_eq!(code, ErrorCode::BacklogFull);
                let after = retry_after.expect("backlog_full carries retry_after_ms");
                assert!(after > 0);
                break (id, Duration::from_millis(after));
            }
        }
    };
    assert!(!queued.is_empty(), "some questions were queued first");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.hub.writer.is_failing() {
        assert!(
            Instant::now() < deadline,
            "the writer never saw the failure"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Metrics are dropped, and counted, while the backlog is full.
    let dropped = counter("eva_store_rows_dropped_total{kind=\"metric\"}");
    for _ in 0..5 {
        r.send(&ClientFrame::Metrics {
            session,
            metrics: RendererMetrics {
                fps: Some(30.0),
                cpu_usage: Some(0.5),
                ..Default::default()
            },
        })
        .await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter("eva_store_rows_dropped_total{kind=\"metric\"}") < dropped + 10.0 {
        assert!(Instant::now() < deadline, "metric drops were not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The database returns: the queued questions commit and are acked.
    fixture.allow_connections(true).await;
    let mut acked: HashMap<String, EventId> = HashMap::new();
    while acked.len() < queued.len() {
        match p.recv_timeout(Duration::from_secs(15)).await {
            Ok(Incoming::Frame(ServerFrame::Ack {
                id,
                ref_id: Some(r),
                ..
            })) => {
                acked.insert(id, r);
            }
            Ok(Incoming::Frame(_)) => {}
            other => panic!("queued questions were not acknowledged: {other:?}"),
        }
    }
    // The refused question, kept by the client, goes through on its retry.
    let (id, after) = refused;
    tokio::time::sleep(after).await;
    let mut out = Outcome {
        subject: "patient".into(),
        acked,
        ..Default::default()
    };
    loop {
        p.send(&ClientFrame::Question {
            session,
            id: id.clone(),
            text: format!("question {id}"),
        })
        .await
        .unwrap();
        match await_answer(&mut p, &id, Duration::from_secs(5), &mut out).await {
            Answer::Acked(r) => {
                out.acked.insert(id.clone(), r);
                break;
            }
            Answer::Retry(d) => tokio::time::sleep(d).await,
            Answer::Resend => {}
            Answer::Reconnect => panic!("the connection closed"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.hub.writer.backlog_rows() > 0 {
        assert!(Instant::now() < deadline, "the backlog did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!app.hub.writer.is_failing());
    println!(
        "  full backlog: {} questions queued, 1 refused with retry-after {} ms, all stored once",
        queued.len(),
        after.as_millis()
    );
    verify(&fixture, session, std::slice::from_ref(&out)).await;
    app.shutdown().await;
}

/// Shutdown with the database down still ends at its deadline; what could
/// not be written was never acknowledged.
async fn shutdown_while_down(fixture: PgFixture) {
    let mut s = settings();
    s.server.shutdown_grace_ms = 1500;
    let mut app = app(&fixture, s).await;
    let (session, _r) = app.active_session(Codec::Json).await;
    let mut p = join(app.addr, session, "late").await;
    fixture.allow_connections(false).await;
    fixture.terminate_backends().await;
    for i in 0..5 {
        p.send(&ClientFrame::Question {
            session,
            id: format!("q-{i}"),
            text: "anyone?".into(),
        })
        .await
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.hub.writer.backlog_rows() < 5 {
        assert!(Instant::now() < deadline, "questions were not queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    app.shutdown().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500 + 1500),
        "shutdown took {took:?} with a 1.5 s grace"
    );
    assert!(
        app.hub.writer.backlog_rows() > 0,
        "the rows could not be written"
    );
    loop {
        match p.recv_timeout(Duration::from_secs(5)).await {
            Ok(Incoming::Frame(ServerFrame::Ack { id, .. })) => {
                panic!("{id} was acknowledged but never stored")
            }
            Ok(Incoming::Frame(_)) => {}
            Ok(Incoming::Closed(_)) | Err(_) => break,
        }
    }
    fixture.allow_connections(true).await;
    println!("  shutdown with the database down: ended in {took:?}");
}

/// The Redis Cluster master holding a session's keys is killed (SIGKILL)
/// while participants ask questions through a hub that sequences on the
/// cluster. The session runs on the hub alone until the replica is
/// promoted, then hands its run over; every acknowledged question is
/// stored once, as with the database faults above.
async fn master_killed(fixture: PgFixture) {
    let cluster = Arc::new(common::services::PrivateCluster::start(3));
    let mut s = settings();
    s.redis.url = cluster.url().into();
    s.redis.prefix = format!("evafault-{}", uuid::Uuid::new_v4().simple());
    let broker = RedisBroker::connect(&s.redis, s.session.history_size)
        .await
        .expect("the private Redis Cluster");
    let store = fixture.store();
    store.migrate().await.expect("migrate");
    let mut app = spawn_on(s.clone(), Arc::new(store), Arc::new(broker)).await;
    let prefix = s.redis.prefix.clone();
    let outcomes = load_through(&fixture, &app, 12, |session| {
        let cluster = cluster.clone();
        async move {
            let position = format!("{prefix}:session:{{{session}}}:position");
            let started = Instant::now();
            tokio::task::spawn_blocking(move || {
                let victim = cluster
                    .masters()
                    .into_iter()
                    .find(|m| cluster.cli(*m, &["exists", &position]).trim() == "1")
                    .expect("a master holds the session's position");
                cluster.kill(victim);
                cluster.wait_failover(victim, Duration::from_secs(30));
            })
            .await
            .expect("a replica takes the killed master's place");
            println!(
                "  the session's master killed; its replica serves after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    })
    .await;
    report("Redis Cluster master killed", &outcomes, 0.0);
    app.shutdown().await;
}

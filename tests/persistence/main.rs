//! The hub on real databases (a SQLite file and PostgreSQL): reload after
//! a restart, shutdown drain, the history endpoints, metric retention.
//! Real hubs on random ports, real WebSocket clients over TCP.
//!
//! A hub reloads every live session of its database and writes their state
//! back when it stops, so two hubs on one database would overwrite each
//! other's sessions: the tests run one at a time.

#[path = "../common/mod.rs"]
mod common;
#[path = "../hub/support.rs"]
#[allow(dead_code, unreachable_pub)]
mod support;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use eva_hub::ids::SessionId;
use eva_hub::protocol::frames::DiscontinuityReason;
use eva_hub::protocol::model::{Event, RendererMetrics, Role, StatePatch, StreamPosition};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame, SessionStatus};
use eva_hub::store::writer::Order;
use eva_hub::store::{Page, Row};
use serde_json::{Value, json};

use common::harness::{self, Test};
use common::pg::PgFixture;
use common::{Db, TempDb};
use support::*;

fn main() -> ExitCode {
    harness::main_on_postgres(
        "persistence",
        "postgres::",
        1,
        Duration::from_secs(90),
        tests,
    )
}

fn tests(pg: Option<PgFixture>) -> Vec<Test> {
    macro_rules! on_both {
        ($($name:ident),* $(,)?) => {{
            let mut v = Vec::new();
            $(
                v.push(harness::test(concat!("sqlite::", stringify!($name)), || async {
                    $name(Db::Sqlite(TempDb::new(stringify!($name)))).await
                }));
                let fixture = pg.clone();
                v.push(harness::test(concat!("postgres::", stringify!($name)), || async move {
                    $name(Db::Postgres(fixture.expect("the PostgreSQL fixture"))).await
                }));
            )*
            v
        }};
    }
    let mut v = on_both![
        restart_reloads_sessions_and_their_state,
        shutdown_drains_the_backlog,
        history_endpoints_page_newest_first,
        retention_task_deletes_old_metrics,
        deleting_a_session_deletes_its_rows,
    ];
    v.push(harness::test("config::embedded_default_and_urls", || {
        embedded_default_and_urls()
    }));
    v
}

async fn app_on(db: &Db, settings: eva_hub::config::Settings) -> TestApp {
    spawn_with(settings, db.store().await).await
}

async fn ack(c: &mut TestClient, id: &str) -> ServerFrame {
    let id = id.to_owned();
    c.until(move |f| match f {
        ServerFrame::Ack { id: i, .. } => *i == id,
        ServerFrame::Error { id: Some(i), .. } => {
            assert_ne!(*i, id, "refused: {f:?}");
            false
        }
        _ => false,
    })
    .await
}

async fn ask(p: &mut TestClient, session: SessionId, id: &str, text: &str) -> ServerFrame {
    p.send(&ClientFrame::Question {
        session,
        id: id.into(),
        text: text.into(),
    })
    .await;
    ack(p, id).await
}

/// Sessions survive a restart with their last state; a client resuming
/// from before it gets a discontinuity and a fresh snapshot.
async fn restart_reloads_sessions_and_their_state(db: Db) {
    let mut app = app_on(&db, test_settings()).await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    r.send(&ClientFrame::State {
        session: id,
        state: StatePatch {
            current_slide: Some(7),
            current_topic: Some(Some("pricing".into())),
            ..Default::default()
        },
        id: Some("s".into()),
    })
    .await;
    ack(&mut r, "s").await;
    r.send(&ClientFrame::Context {
        session: id,
        context: json!({"conversation_flow": "qa"}),
        id: Some("c".into()),
    })
    .await;
    ack(&mut r, "c").await;
    let mut p = app
        .connect(Role::Participant, "alice", Codec::MsgPack)
        .await;
    let snap = p.join(id).await;
    let first = match ask(&mut p, id, "q-1", "Is there a trial?").await {
        ServerFrame::Ack { ref_id, .. } => ref_id.expect("a question's ack names it"),
        other => panic!("expected an ack, got {other:?}"),
    };
    let mut last = snap.seq;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(300), p.client.recv())
        .await
        .map(|r| r.ok().and_then(|i| i.frame()))
    {
        if let ServerFrame::Event { seq, .. } = f {
            last = seq;
        }
    }
    let before = StreamPosition {
        epoch: snap.epoch,
        seq: last,
    };
    app.shutdown().await;
    drop((r, p));

    let stored = db
        .store()
        .await
        .get_session(None, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, SessionStatus::Active, "{}", db.name());
    assert_eq!(stored.state.current_slide, 7);

    let app = app_on(&db, test_settings()).await;
    assert!(
        app.hub.sessions.loaded().iter().any(|s| s.id == id),
        "the live session is loaded at start-up"
    );
    let mut p = app.connect(Role::Participant, "alice", Codec::Json).await;
    p.send(&ClientFrame::Join {
        session: id,
        resume: Some(before),
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await;
    match p
        .until(|f| {
            matches!(
                f,
                ServerFrame::Resumed { .. } | ServerFrame::Discontinuity { .. }
            )
        })
        .await
    {
        ServerFrame::Discontinuity { reason, epoch, .. } => {
            assert_eq!(reason, DiscontinuityReason::EpochChanged);
            assert_ne!(epoch, before.epoch, "a new epoch");
        }
        other => panic!("expected a discontinuity, got {other:?}"),
    }
    let fresh = match p.until(|f| matches!(f, ServerFrame::Snapshot(_))).await {
        ServerFrame::Snapshot(s) => *s,
        _ => unreachable!(),
    };
    assert_ne!(fresh.epoch, before.epoch);
    assert_eq!(fresh.status, SessionStatus::Active);
    assert_eq!(fresh.state.current_slide, 7, "the reloaded state");
    assert_eq!(fresh.state.current_topic.as_deref(), Some("pricing"));
    assert_eq!(fresh.counters.questions_received, 1);
    let mut o = app.connect(Role::Operator, "ops-1", Codec::Json).await;
    let staff = o.join(id).await;
    assert_eq!(staff.context, Some(json!({"conversation_flow": "qa"})));

    // The stored conversation is there, and resending the question after
    // the restart (its ack lost with the connection, say) is answered as
    // before it: the original question, nothing new stored or published.
    match ask(&mut p, id, "q-1", "Is there a trial?").await {
        ServerFrame::Ack {
            ref_id, duplicate, ..
        } => {
            assert_eq!(ref_id, Some(first), "the original question's id");
            assert!(duplicate, "a resend creates nothing");
        }
        other => panic!("expected an ack, got {other:?}"),
    }
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(200), o.client.recv())
        .await
        .map(|r| r.ok().and_then(|i| i.frame()))
    {
        assert!(
            !matches!(
                f,
                ServerFrame::Event {
                    event: Event::Question { .. },
                    ..
                }
            ),
            "the resend published a second question: {f:?}"
        );
    }
    let (status, body) = app.get(&format!("/v1/sessions/{id}/conversation")).await;
    assert_eq!(status, 200, "{body}");
    let questions: Vec<&Value> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["message_type"] == "question")
        .collect();
    assert_eq!(questions.len(), 1, "{body}");
}

/// Rows still queued at shutdown are written before the hub exits, within
/// the grace period.
async fn shutdown_drains_the_backlog(db: Db) {
    let mut settings = test_settings();
    // Nothing flushes on its own: only the shutdown drain writes.
    settings.store.flush_interval_ms = 60_000;
    settings.store.batch_max_rows = 100_000;
    settings.store.metric_batch_max_rows = 100_000;
    let mut app = app_on(&db, settings).await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "bob", Codec::Json).await;
    p.join(id).await;
    let base = app.hub.writer.backlog_rows();
    const N: usize = 200;
    for i in 0..N {
        p.send(&ClientFrame::Question {
            session: id,
            id: format!("q-{i}"),
            text: format!("question {i}"),
        })
        .await;
    }
    // Every question reached the renderer, so every one was published and
    // its row queued.
    for _ in 0..N {
        r.event("question").await;
    }
    // Metrics have flushers of their own: the drain must wait for them too.
    const METRICS: usize = 90;
    app.hub.persist_droppable(
        Order::Session(id),
        (0..METRICS)
            .map(|i| {
                Row::Metric(eva_hub::store::MetricRow {
                    id: uuid::Uuid::now_v7(),
                    session_id: id,
                    metric_type: "fps".into(),
                    metric_value: i as f64,
                    unit: Some("fps".into()),
                    timestamp: chrono::Utc::now(),
                    component: None,
                })
            })
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.hub.writer.backlog_rows() < base + N + METRICS {
        assert!(Instant::now() < deadline, "questions never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let count_sql =
        "SELECT count(*) FROM conversations WHERE session_id = $1 AND message_type = 'question'";
    let metrics_sql = "SELECT count(*) FROM performance_metrics WHERE session_id = $1";
    assert_eq!(db.count(count_sql, id).await, 0, "nothing written yet");
    assert_eq!(db.count(metrics_sql, id).await, 0, "no metric written yet");

    let started = Instant::now();
    app.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_millis(app.hub.settings.server.shutdown_grace_ms),
        "within the grace"
    );
    assert_eq!(app.hub.writer.backlog_rows(), 0);
    assert_eq!(
        db.count(count_sql, id).await,
        N as i64,
        "every queued question was written"
    );
    assert_eq!(
        db.count(metrics_sql, id).await,
        METRICS as i64,
        "every queued metric was written"
    );
}

/// `/v1/sessions/{id}/conversation|interventions|alerts`: newest first,
/// keyset paging with `before`.
async fn history_endpoints_page_newest_first(db: Db) {
    let app = app_on(&db, test_settings()).await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "carol", Codec::Json).await;
    p.join(id).await;
    for i in 0..5 {
        ask(&mut p, id, &format!("q-{i}"), &format!("question {i}")).await;
    }
    let mut o = app.connect(Role::Operator, "ops-1", Codec::Json).await;
    o.join(id).await;
    for i in 0..3 {
        o.send(&ClientFrame::Suggestion {
            session: id,
            id: format!("s-{i}"),
            text: format!("suggestion {i}"),
        })
        .await;
        ack(&mut o, &format!("s-{i}")).await;
    }
    // Two threshold crossings raise two alerts.
    for latency in [5000.0, 10.0, 6000.0] {
        r.send(&ClientFrame::Metrics {
            session: id,
            metrics: RendererMetrics {
                latency_ms: Some(latency),
                ..Default::default()
            },
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while app
        .store
        .alerts(
            id,
            Page {
                before: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "alerts were not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut texts = Vec::new();
    let mut path = format!("/v1/sessions/{id}/conversation?limit=2");
    loop {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            texts.push(item["content"].as_str().unwrap().to_owned());
        }
        match body["next_before"].as_str() {
            Some(before) => {
                path = format!("/v1/sessions/{id}/conversation?limit=2&before={before}")
            }
            None => break,
        }
    }
    let want: Vec<String> = (0..5).rev().map(|i| format!("question {i}")).collect();
    assert_eq!(texts, want, "newest first, every page");

    let (_, body) = app
        .get(&format!("/v1/sessions/{id}/interventions?limit=2"))
        .await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action_taken"], "suggestion 2");
    let before = body["next_before"].as_str().unwrap();
    let (_, body) = app
        .get(&format!(
            "/v1/sessions/{id}/interventions?limit=2&before={before}"
        ))
        .await;
    assert_eq!(body["items"][0]["action_taken"], "suggestion 0");
    assert!(body["next_before"].is_null());

    let (_, body) = app.get(&format!("/v1/sessions/{id}/alerts")).await;
    let alerts = body["items"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{body}");
    assert_eq!(alerts[0]["alert_type"], "metric_threshold");

    let (status, _) = app
        .get(&format!("/v1/sessions/{}/alerts", SessionId::new()))
        .await;
    assert_eq!(status, 404);
}

/// The retention task deletes metrics past their age and keeps the rest.
async fn retention_task_deletes_old_metrics(db: Db) {
    let store = db.store().await;
    let tenant = eva_hub::ids::TenantId::new();
    store
        .ensure_tenant(&eva_hub::store::TenantRecord::new(
            tenant,
            format!("{tenant}@example.test"),
        ))
        .await
        .unwrap();
    let session = eva_hub::store::SessionRecord {
        id: SessionId::new(),
        tenant,
        avatar_id: None,
        name: None,
        description: None,
        external_id: None,
        status: SessionStatus::Stopped,
        config: json!({}),
        created_at: chrono::Utc::now(),
        started_at: None,
        ended_at: None,
        counters: Default::default(),
        last_error: None,
        state: Default::default(),
        context: json!({}),
    };
    store.create_session(&session).await.unwrap();
    let metric = |age_days: i64| {
        Row::Metric(eva_hub::store::MetricRow {
            id: uuid::Uuid::now_v7(),
            session_id: session.id,
            metric_type: "fps".into(),
            metric_value: 30.0,
            unit: Some("fps".into()),
            timestamp: chrono::Utc::now() - chrono::Duration::days(age_days),
            component: None,
        })
    };
    store
        .write_batch(&[metric(120), metric(91), metric(89), metric(0)])
        .await
        .unwrap();
    let count = "SELECT count(*) FROM performance_metrics WHERE session_id = $1";
    assert_eq!(db.count(count, session.id).await, 4);

    let mut settings = test_settings();
    settings.store.metrics_retention_days = 90;
    settings.store.retention_interval_s = 1;
    let mut app = app_on(&db, settings).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while db.count(count, session.id).await != 2 {
        assert!(Instant::now() < deadline, "old metrics were not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.shutdown().await;
}

/// The seed's `ON DELETE CASCADE`: a foreign key on SQLite, a trigger on
/// PostgreSQL (where the hub checks the reference per batch).
async fn deleting_a_session_deletes_its_rows(db: Db) {
    let mut app = app_on(&db, test_settings()).await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "dora", Codec::Json).await;
    p.join(id).await;
    ask(&mut p, id, "q-1", "Will this be deleted?").await;
    r.send(&ClientFrame::Response {
        session: id,
        id: "r-1".into(),
        question_id: None,
        text: "Yes.".into(),
        confidence: 0.5,
        response_time_ms: 10,
        intent: None,
        knowledge_sources: vec![],
        command_id: None,
    })
    .await;
    ack(&mut r, "r-1").await;
    r.send(&ClientFrame::Metrics {
        session: id,
        metrics: RendererMetrics {
            fps: Some(30.0),
            ..Default::default()
        },
    })
    .await;
    let metrics = "SELECT count(*) FROM performance_metrics WHERE session_id = $1";
    let deadline = Instant::now() + Duration::from_secs(5);
    while db.count(metrics, id).await == 0 {
        assert!(Instant::now() < deadline, "the metric was not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let conversations = "SELECT count(*) FROM conversations WHERE session_id = $1";
    assert_eq!(db.count(conversations, id).await, 2);
    app.shutdown().await;
    db.execute("DELETE FROM sessions WHERE id = $1", id).await;
    assert_eq!(db.count(conversations, id).await, 0);
    assert_eq!(db.count(metrics, id).await, 0);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM session_state WHERE session_id = $1",
            id
        )
        .await,
        0
    );
}

/// `store.database_url`: empty is the embedded SQLite file, and each
/// scheme opens its store.
async fn embedded_default_and_urls() {
    use eva_hub::app::open_store;
    let mut s = test_settings();
    s.store.database_url = String::new().into();
    // The default path is relative to the working directory: open it from
    // a scratch directory (this test runs alone, so changing the
    // process's directory for a moment is safe).
    let dir = std::env::temp_dir().join(format!("eva-hub-default-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let here = std::env::current_dir().unwrap();
    std::env::set_current_dir(&dir).unwrap();
    let opened = open_store(&s).await;
    std::env::set_current_dir(here).unwrap();
    let store = opened.unwrap();
    assert_eq!(store.name(), "sqlite");
    store.migrate().await.unwrap();
    assert!(
        dir.join("data/eva-hub.db").exists(),
        "created with its directory"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);

    let file = TempDb::new("url");
    s.store.database_url = file.url().into();
    let store = open_store(&s).await.unwrap();
    assert_eq!(store.name(), "sqlite");
    store.migrate().await.unwrap();
    assert!(file.path.exists());
    s.store.database_url = "sqlite::memory:".into();
    let store = open_store(&s).await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    s.store.database_url = "postgres://nobody@127.0.0.1:1/none".into();
    s.store.acquire_timeout_ms = 300;
    let store = open_store(&s).await.unwrap();
    assert_eq!(store.name(), "postgres");
    match store.ping().await {
        Err(eva_hub::store::StoreError::Unavailable(_)) => {}
        other => panic!("a database that is down is unavailable, got {other:?}"),
    }
    s.store.database_url = "memory".into();
    assert_eq!(open_store(&s).await.unwrap().name(), "memory");
    s.store.database_url = "mysql://localhost/x".into();
    let e = open_store(&s).await.unwrap_err().to_string();
    assert!(e.contains("unsupported"), "{e}");
}

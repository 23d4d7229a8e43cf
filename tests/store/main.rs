//! The `Store` conformance suite: the same tests against every
//! implementation, `MemoryStore`, `SqliteStore` (a temporary file) and
//! `PostgresStore` (a fresh database for the run, dropped at the end).
//!
//! Every test works on its own tenants and sessions, so the tests of one
//! backend share its database and run concurrently.

#[path = "../common/mod.rs"]
mod common;
mod ingest;
mod jobs;
mod webhooks;
mod writer;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eva_hub::ids::{EventId, SessionId, TenantId};
use eva_hub::protocol::SessionStatus;
use eva_hub::protocol::model::{AlertType, Counters, SessionState, Severity};
use eva_hub::store::memory::MemoryStore;
use eva_hub::store::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, InterventionType, MessageType,
    MetricRow, Page, ParticipantRow, QuestionResponseRow, Row, SessionQuery, SessionRecord, Store,
    StoreError, TenantRecord,
};
use serde_json::json;
use uuid::Uuid;

use common::harness::{self, Test};
use common::pg::PgFixture;
use common::{TempDb, now_ms};
use ingest::{
    batches_answer_each_event_in_order, concurrent_duplicates_store_one_row,
    processed_events_are_recorded_once, sessions_are_found_by_external_id,
};
use jobs::{jobs_list_newest_first_with_filters, jobs_round_trip_and_keep_the_newest};
use webhooks::{
    webhook_claims_lease_and_record_outcomes, webhook_endpoints_round_trip,
    webhook_events_become_deliveries_in_their_batch, webhook_replays_keep_the_webhook_id,
};
use writer::{an_order_all_submission_is_a_fence, the_writer_keeps_each_sessions_order};

fn main() -> ExitCode {
    harness::main_on_postgres("store", "postgres::", 6, Duration::from_secs(60), tests)
}

/// Every conformance test, once per backend.
fn tests(pg: Option<PgFixture>) -> Vec<Test> {
    macro_rules! suite {
        ($($name:ident),* $(,)?) => {{
            let mut v = Vec::new();
            $(
                v.push(harness::test(concat!("memory::", stringify!($name)), || async {
                    $name(Arc::new(MemoryStore::new())).await
                }));
                v.push(harness::test(concat!("sqlite::", stringify!($name)), || async {
                    let file = TempDb::new(stringify!($name));
                    $name(Arc::new(file.store().await)).await;
                }));
                let fixture = pg.clone();
                v.push(harness::test(concat!("postgres::", stringify!($name)), || async move {
                    let fixture = fixture.expect("the PostgreSQL fixture");
                    $name(Arc::new(fixture.store())).await
                }));
            )*
            v
        }};
    }
    let v = suite![
        migrate_twice_and_ping,
        sessions_round_trip_and_page,
        create_session_needs_its_tenant,
        rows_round_trip_exactly,
        same_rows_twice_are_stored_once,
        resend_with_same_client_id_is_stored_once,
        a_conversation_row_is_found_by_its_unique_key,
        batch_is_all_or_nothing,
        history_pages_newest_first,
        updates_apply_after_their_rows,
        session_progress_and_state,
        participants_join_leave_and_rejoin,
        live_sessions_are_the_unended_ones,
        tenants,
        api_keys,
        retention_deletes_only_old_metrics,
        webhook_endpoints_round_trip,
        processed_events_are_recorded_once,
        concurrent_duplicates_store_one_row,
        batches_answer_each_event_in_order,
        sessions_are_found_by_external_id,
        webhook_events_become_deliveries_in_their_batch,
        webhook_claims_lease_and_record_outcomes,
        webhook_replays_keep_the_webhook_id,
        jobs_round_trip_and_keep_the_newest,
        jobs_list_newest_first_with_filters,
        the_writer_keeps_each_sessions_order,
        an_order_all_submission_is_a_fence,
    ];
    let mut v = v;
    v.push(harness::test(
        "sqlite::raw_scan_finds_no_plaintext_keys",
        || async {
            let file = TempDb::new("rawscan");
            let store = Arc::new(file.store().await);
            let keys = make_keys(store.clone()).await;
            // Every row of every table as text, and the file's bytes
            // themselves (WAL included): a key must be nowhere.
            let pool = sqlx::SqlitePool::connect(&file.url()).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            let mut dump = String::new();
            for t in tables {
                let cols: Vec<String> =
                    sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                let expr = cols
                    .iter()
                    .map(|c| format!("quote(\"{c}\")"))
                    .collect::<Vec<_>>()
                    .join(" || '|' || ");
                let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {expr} FROM \"{t}\""))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                dump += &rows.join("\n");
            }
            pool.close().await;
            let mut bytes = std::fs::read(&file.path).unwrap();
            let mut wal = file.path.clone().into_os_string();
            wal.push("-wal");
            bytes.extend(std::fs::read(&wal).unwrap_or_default());
            assert_absent(&keys, &dump, &bytes);
        },
    ));
    let fixture = pg;
    v.push(harness::test("postgres::raw_scan_finds_no_plaintext_keys", || async move {
        let fixture = fixture.expect("the PostgreSQL fixture");
        let store = Arc::new(fixture.store());
        let keys = make_keys(store.clone()).await;
        let pool = sqlx::PgPool::connect(&fixture.url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut dump = String::new();
        for t in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::text FROM \"{t}\" t"))
                .fetch_all(&pool)
                .await
                .unwrap();
            dump += &rows.join("\n");
        }
        pool.close().await;
        assert_absent(&keys, &dump, &[]);
    }));
    v
}

/// Creates a tenant and three API keys through the key functions the hub
/// uses; returns the plaintext keys.
async fn make_keys(store: Arc<dyn Store>) -> Vec<String> {
    use eva_hub::auth::api_key::{NewKey, create};
    let tenant = tenant(&store).await;
    let mut keys = Vec::new();
    for name in ["admin", "booking", "renderer"] {
        let (_, plain) = create(
            store.as_ref(),
            NewKey {
                tenant,
                name: name.into(),
                scopes: vec![eva_hub::identity::Scope::Read],
                expires_at: None,
            },
        )
        .await
        .unwrap();
        keys.push(plain.expose().to_owned());
    }
    keys
}

/// Neither a key nor its random part appears in `dump` or `bytes`; each
/// key's SHA-256 does appear in `dump`.
fn assert_absent(keys: &[String], dump: &str, bytes: &[u8]) {
    for key in keys {
        let secret = &key[eva_hub::auth::api_key::PREFIX.len()..];
        assert!(!dump.contains(secret), "a plaintext key is stored");
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a plaintext key is in the database file"
        );
        assert!(
            dump.contains(&eva_hub::auth::api_key::hash(key)),
            "the hash is stored"
        );
    }
}

// -------------------------------------------------------------------
// Fixtures
// -------------------------------------------------------------------

async fn tenant(store: &Arc<dyn Store>) -> TenantId {
    let id = TenantId::new();
    store
        .ensure_tenant(&TenantRecord::new(id, format!("{id}@example.test")))
        .await
        .unwrap();
    id
}

fn session_record(tenant: TenantId) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(),
        tenant,
        avatar_id: Some(Uuid::now_v7()),
        name: Some("Q3 review".into()),
        description: Some("quarterly numbers".into()),
        external_id: None,
        status: SessionStatus::Created,
        config: json!({"language": "en", "voice": {"pitch": 2}}),
        created_at: now_ms(),
        started_at: None,
        ended_at: None,
        counters: Counters::default(),
        last_error: None,
        state: SessionState::default(),
        context: json!({}),
    }
}

async fn session(store: &Arc<dyn Store>) -> SessionId {
    let t = tenant(store).await;
    let s = session_record(t);
    store.create_session(&s).await.unwrap();
    s.id
}

fn question(session: SessionId, seq: u64, sender: &str, client_id: &str) -> ConversationRow {
    ConversationRow {
        id: EventId::new(),
        session_id: session,
        seq,
        participant_id: Some(sender.into()),
        message_type: MessageType::Question,
        content: format!("question {client_id} from {sender}"),
        speaker: Some(format!("{sender} (display name)")),
        timestamp: now_ms(),
        confidence_score: None,
        response_time_ms: None,
        context: json!({}),
        metadata: json!({}),
        client_msg_id: Some(client_id.into()),
    }
}

fn response(session: SessionId, seq: u64, client_id: &str) -> ConversationRow {
    ConversationRow {
        id: EventId::new(),
        session_id: session,
        seq,
        participant_id: None,
        message_type: MessageType::Response,
        content: "It is free for a month.".into(),
        speaker: Some("renderer-1".into()),
        timestamp: now_ms(),
        confidence_score: Some(0.92),
        response_time_ms: Some(840),
        context: json!({}),
        metadata: json!({"held": false, "intent": "pricing", "question_id": null}),
        client_msg_id: Some(client_id.into()),
    }
}

fn intervention(session: SessionId, seq: u64, kind: InterventionType) -> InterventionRow {
    InterventionRow {
        id: EventId::new(),
        session_id: session,
        seq,
        operator_id: "ops-1".into(),
        intervention_type: kind,
        trigger_reason: Some("off topic".into()),
        action_taken: "takeover".into(),
        created_at: now_ms(),
        ended_at: None,
        duration_seconds: None,
        client_msg_id: Some(format!("t{seq}")),
    }
}

fn alert(session: SessionId) -> AlertRow {
    AlertRow {
        id: EventId::new(),
        session_id: session,
        alert_type: AlertType::RendererHeartbeatLost,
        severity: Severity::Critical,
        title: "renderer heartbeat lost".into(),
        message: "no renderer for 5000 ms".into(),
        component: Some("renderer".into()),
        metadata: json!({"grace_ms": 5000}),
        created_at: now_ms(),
        acknowledged: false,
        acknowledged_by: None,
        acknowledged_at: None,
    }
}

fn metric(session: SessionId, at: DateTime<Utc>, value: f64) -> MetricRow {
    MetricRow {
        id: Uuid::now_v7(),
        session_id: session,
        metric_type: "latency_ms".into(),
        metric_value: value,
        unit: Some("ms".into()),
        timestamp: at,
        component: Some("pipeline".into()),
    }
}

fn all(limit: usize) -> Page {
    Page {
        before: None,
        limit,
    }
}

async fn conversation(store: &Arc<dyn Store>, s: SessionId) -> Vec<ConversationRow> {
    store.conversation(s, all(1000)).await.unwrap()
}

fn rejected<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Rejected(_)) => {}
        other => panic!("{what}: expected Rejected, got {other:?}"),
    }
}

/// Runs `f` and fails if it takes longer than `d` (a store must not hang).
async fn within<T>(d: Duration, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(d, f).await.expect("within the time")
}

// -------------------------------------------------------------------
// Tests
// -------------------------------------------------------------------

async fn migrate_twice_and_ping(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    within(Duration::from_secs(5), store.ping()).await.unwrap();
}

async fn sessions_round_trip_and_page(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let other = tenant(&store).await;
    let mut created = Vec::new();
    for i in 0..5 {
        let mut s = session_record(t);
        s.name = Some(format!("session {i}"));
        if i == 4 {
            s.avatar_id = None;
            s.description = None;
        }
        store.create_session(&s).await.unwrap();
        created.push(s);
    }
    // Creating again changes nothing.
    store.create_session(&created[0]).await.unwrap();

    let got = store.get_session(Some(t), created[0].id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&created[0]), "round trip");
    assert_eq!(
        store
            .get_session(None, created[4].id)
            .await
            .unwrap()
            .as_ref(),
        Some(&created[4])
    );
    assert_eq!(
        store.get_session(Some(other), created[0].id).await.unwrap(),
        None,
        "another tenant's session is not found"
    );
    assert_eq!(
        store.get_session(None, SessionId::new()).await.unwrap(),
        None
    );

    let page1 = store
        .list_sessions(
            t,
            &SessionQuery {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids = |v: &[SessionRecord]| v.iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(&page1),
        vec![created[4].id, created[3].id],
        "newest first"
    );
    let page2 = store
        .list_sessions(
            t,
            &SessionQuery {
                limit: 10,
                before: Some(created[3].id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&page2),
        vec![created[2].id, created[1].id, created[0].id]
    );
    assert!(
        store
            .list_sessions(
                other,
                &SessionQuery {
                    limit: 10,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .is_empty()
    );

    store
        .write_batch(&[Row::SessionProgress {
            id: created[1].id,
            status: SessionStatus::Starting,
            started_at: None,
            ended_at: None,
            counters: Counters::default(),
            last_error: None,
        }])
        .await
        .unwrap();
    let starting = store
        .list_sessions(
            t,
            &SessionQuery {
                status: Some(SessionStatus::Starting),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ids(&starting), vec![created[1].id], "status filter");
}

async fn create_session_needs_its_tenant(store: Arc<dyn Store>) {
    rejected(
        store.create_session(&session_record(TenantId::new())).await,
        "a session of an unknown tenant",
    );
}

async fn rows_round_trip_exactly(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let q = question(s, 2, "alice", "q-1");
    let r = response(s, 3, "r-1");
    let mut i = intervention(s, 4, InterventionType::Correction);
    i.ended_at = Some(now_ms());
    i.duration_seconds = Some(12);
    let a = alert(s);
    store
        .write_batch(&[
            Row::Conversation(q.clone()),
            Row::Conversation(r.clone()),
            Row::Intervention(i.clone()),
            Row::Alert(a.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(conversation(&store, s).await, vec![r, q]);
    assert_eq!(store.interventions(s, all(10)).await.unwrap(), vec![i]);
    assert_eq!(store.alerts(s, all(10)).await.unwrap(), vec![a]);
}

async fn same_rows_twice_are_stored_once(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let q = question(s, 2, "alice", "q-1");
    let r = response(s, 3, "r-1");
    let batch = vec![
        Row::Conversation(q.clone()),
        Row::Conversation(r.clone()),
        Row::QuestionResponse(QuestionResponseRow {
            id: EventId(Uuid::new_v5(&r.id.0, b"question_response")),
            conversation_id: r.id,
            question_text: q.content.clone(),
            response_text: r.content.clone(),
            intent_classification: Some("pricing".into()),
            knowledge_sources: vec!["faq/pricing".into()],
            confidence_score: 0.92,
            response_time_ms: 840,
            created_at: now_ms(),
        }),
        Row::Intervention(intervention(s, 4, InterventionType::Takeover)),
        Row::Alert(alert(s)),
        // Older than any other test's metrics, so it can be counted.
        Row::Metric(metric(s, long_ago(), 234.5)),
    ];
    store.write_batch(&batch).await.unwrap();
    // A retry after an ambiguous failure writes the very same batch again;
    // the same row may also repeat inside one batch.
    store.write_batch(&batch).await.unwrap();
    let twice: Vec<Row> = batch.iter().chain(batch.iter()).cloned().collect();
    store.write_batch(&twice).await.unwrap();
    assert_eq!(conversation(&store, s).await.len(), 2);
    assert_eq!(store.interventions(s, all(10)).await.unwrap().len(), 1);
    assert_eq!(store.alerts(s, all(10)).await.unwrap().len(), 1);
    let cutoff = long_ago() + chrono::Duration::days(1);
    assert_eq!(
        store.delete_metrics_before(cutoff).await.unwrap(),
        1,
        "the metric was stored once"
    );
}

fn long_ago() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("1990-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn resend_with_same_client_id_is_stored_once(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let first = question(s, 2, "alice", "q-1");
    store
        .write_batch(&[Row::Conversation(first.clone())])
        .await
        .unwrap();
    // A resend after a hub restart: new event id and seq, same sender and
    // client id.
    let resend = question(s, 1, "alice", "q-1");
    // Another sender may use the same client id.
    let bob = question(s, 3, "bob", "q-1");
    let mut i1 = intervention(s, 4, InterventionType::Suggestion);
    i1.client_msg_id = Some("s1".into());
    let mut i2 = intervention(s, 1, InterventionType::Suggestion);
    i2.client_msg_id = Some("s1".into());
    let mut i3 = intervention(s, 5, InterventionType::Suggestion);
    i3.client_msg_id = Some("s1".into());
    i3.operator_id = "ops-2".into();
    store
        .write_batch(&[
            Row::Conversation(resend),
            Row::Conversation(bob.clone()),
            Row::Intervention(i1.clone()),
            Row::Intervention(i2),
            Row::Intervention(i3.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(conversation(&store, s).await, vec![bob, first]);
    assert_eq!(store.interventions(s, all(10)).await.unwrap(), vec![i3, i1]);
}

/// How a redelivered inbound event learns whether its row committed.
async fn a_conversation_row_is_found_by_its_unique_key(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let other = session(&store).await;
    let has = |session, kind, sender: &'static str, client_id: &'static str| {
        let store = store.clone();
        async move {
            store
                .has_conversation_row(session, kind, sender, client_id)
                .await
                .unwrap()
        }
    };
    assert!(!has(s, MessageType::Question, "alice", "q-1").await);
    store
        .write_batch(&[
            Row::Conversation(question(s, 1, "alice", "q-1")),
            Row::Conversation(response(s, 2, "r-1")),
        ])
        .await
        .unwrap();
    assert!(has(s, MessageType::Question, "alice", "q-1").await);
    // A response's sender is its speaker.
    assert!(has(s, MessageType::Response, "renderer-1", "r-1").await);
    // Every part of the key counts.
    assert!(!has(s, MessageType::Question, "alice", "q-2").await);
    assert!(!has(s, MessageType::Question, "bob", "q-1").await);
    assert!(!has(s, MessageType::Response, "alice", "q-1").await);
    assert!(!has(other, MessageType::Question, "alice", "q-1").await);
}

async fn batch_is_all_or_nothing(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let good = question(s, 2, "alice", "q-1");
    let orphan = question(SessionId::new(), 1, "bob", "q-1");
    rejected(
        store
            .write_batch(&[
                Row::Conversation(good.clone()),
                Row::Metric(metric(s, now_ms(), 1.0)),
                Row::Conversation(orphan),
            ])
            .await,
        "a row of an unknown session",
    );
    assert!(conversation(&store, s).await.is_empty(), "nothing written");
    store
        .write_batch(&[Row::Conversation(good.clone())])
        .await
        .unwrap();
    assert_eq!(conversation(&store, s).await, vec![good]);
}

async fn history_pages_newest_first(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let other = session(&store).await;
    let mut rows = Vec::new();
    let mut convs = Vec::new();
    let mut ints = Vec::new();
    let mut alerts = Vec::new();
    for i in 0..25u64 {
        let c = question(s, i + 1, "alice", &format!("q-{i}"));
        convs.push(c.id);
        rows.push(Row::Conversation(c));
        let mut iv = intervention(s, i + 1, InterventionType::Suggestion);
        iv.client_msg_id = Some(format!("s-{i}"));
        ints.push(iv.id);
        rows.push(Row::Intervention(iv));
        let a = alert(s);
        alerts.push(a.id);
        rows.push(Row::Alert(a));
    }
    rows.push(Row::Conversation(question(other, 1, "zed", "q-0")));
    store.write_batch(&rows).await.unwrap();
    convs.reverse();
    ints.reverse();
    alerts.reverse();

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .conversation(s, Page { before, limit: 10 })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        before = page.last().map(|r| r.id.0);
        seen.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, convs, "conversation pages");

    let p1 = store.interventions(s, all(7)).await.unwrap();
    let p2 = store
        .interventions(
            s,
            Page {
                before: Some(p1[6].id.0),
                limit: 100,
            },
        )
        .await
        .unwrap();
    let got: Vec<_> = p1.iter().chain(p2.iter()).map(|r| r.id).collect();
    assert_eq!(got, ints, "intervention pages");

    let p1 = store.alerts(s, all(20)).await.unwrap();
    let p2 = store
        .alerts(
            s,
            Page {
                before: Some(p1[19].id.0),
                limit: 20,
            },
        )
        .await
        .unwrap();
    let got: Vec<_> = p1.iter().chain(p2.iter()).map(|r| r.id).collect();
    assert_eq!(got, alerts, "alert pages");
    assert!(store.alerts(s, all(0)).await.unwrap().is_empty(), "limit 0");
}

async fn updates_apply_after_their_rows(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let end = now_ms();
    // The row and its update in one batch...
    let takeover = intervention(s, 2, InterventionType::Takeover);
    let a = alert(s);
    store
        .write_batch(&[
            Row::InterventionEnded {
                id: takeover.id,
                ended_at: end,
                duration_seconds: 99,
            },
            Row::Intervention(takeover.clone()),
            Row::InterventionEnded {
                id: takeover.id,
                ended_at: end,
                duration_seconds: 7,
            },
            Row::Alert(a.clone()),
            Row::AlertAcknowledged {
                id: a.id,
                by: "ops-1".into(),
                at: end,
            },
            Row::AlertAcknowledged {
                id: a.id,
                by: "ops-2".into(),
                at: end,
            },
        ])
        .await
        .unwrap();
    let i = &store.interventions(s, all(10)).await.unwrap()[0];
    assert_eq!((i.ended_at, i.duration_seconds), (Some(end), Some(7)));
    let got = &store.alerts(s, all(10)).await.unwrap()[0];
    assert!(got.acknowledged);
    assert_eq!(
        got.acknowledged_by.as_deref(),
        Some("ops-1"),
        "first ack wins"
    );
    assert_eq!(got.acknowledged_at, Some(end));

    // ...and in a later batch.
    store
        .write_batch(&[Row::AlertAcknowledged {
            id: a.id,
            by: "ops-3".into(),
            at: now_ms(),
        }])
        .await
        .unwrap();
    let got = &store.alerts(s, all(10)).await.unwrap()[0];
    assert_eq!(got.acknowledged_by.as_deref(), Some("ops-1"));
    // Updates of unknown rows change nothing and fail nothing.
    store
        .write_batch(&[
            Row::InterventionEnded {
                id: EventId::new(),
                ended_at: end,
                duration_seconds: 1,
            },
            Row::AlertAcknowledged {
                id: EventId::new(),
                by: "ops-1".into(),
                at: end,
            },
        ])
        .await
        .unwrap();
}

async fn session_progress_and_state(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let started = now_ms();
    let counters = Counters {
        participant_count: 3,
        questions_received: 7,
        operator_interventions: 1,
        error_count: 2,
    };
    let state = SessionState {
        current_slide: 5,
        presentation_mode: "manual".into(),
        is_speaking: true,
        awaiting_questions: true,
        operator_connected: true,
        current_topic: Some("pricing".into()),
        last_interaction: started.timestamp_millis() as u64,
    };
    store
        .write_batch(&[
            Row::SessionProgress {
                id: s,
                status: SessionStatus::Starting,
                started_at: Some(started),
                ended_at: None,
                counters: Counters::default(),
                last_error: Some("first".into()),
            },
            Row::State {
                session_id: s,
                state: SessionState::default(),
                context: json!({}),
                metrics: json!(null),
            },
            Row::SessionProgress {
                id: s,
                status: SessionStatus::Active,
                started_at: None,
                ended_at: None,
                counters,
                last_error: None,
            },
            Row::State {
                session_id: s,
                state: state.clone(),
                context: json!({"recent_questions": ["What's the timeline?"]}),
                metrics: json!({"latency_ms": 234.0}),
            },
            // State of a session the store does not know: ignored.
            Row::State {
                session_id: SessionId::new(),
                state: state.clone(),
                context: json!({}),
                metrics: json!(null),
            },
        ])
        .await
        .unwrap();
    let got = store.get_session(None, s).await.unwrap().unwrap();
    assert_eq!(got.status, SessionStatus::Active);
    assert_eq!(got.started_at, Some(started), "kept when absent later");
    assert_eq!(got.counters, counters);
    assert_eq!(got.last_error.as_deref(), Some("first"));
    assert_eq!(got.state, state);
    assert_eq!(
        got.context,
        json!({"recent_questions": ["What's the timeline?"]})
    );

    let ended = now_ms();
    store
        .write_batch(&[Row::SessionProgress {
            id: s,
            status: SessionStatus::Failed,
            started_at: None,
            ended_at: Some(ended),
            counters,
            last_error: Some("renderer crashed".into()),
        }])
        .await
        .unwrap();
    let got = store.get_session(None, s).await.unwrap().unwrap();
    assert_eq!(
        (got.status, got.started_at, got.ended_at),
        (SessionStatus::Failed, Some(started), Some(ended))
    );
    assert_eq!(got.last_error.as_deref(), Some("renderer crashed"));
}

/// A participant of `session` joining at `at`, without a name.
fn anonymous_join(session: SessionId, id: &str, at: DateTime<Utc>) -> Row {
    Row::ParticipantJoined(ParticipantRow {
        session_id: session,
        participant_id: id.into(),
        participant_name: None,
        joined_at: at,
        left_at: None,
        questions_asked: 0,
    })
}

async fn participants_join_leave_and_rejoin(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let t0 = now_ms();
    let joined = |id: &str, at: DateTime<Utc>| {
        Row::ParticipantJoined(ParticipantRow {
            session_id: s,
            participant_id: id.into(),
            participant_name: Some(format!("{id}'s name")),
            joined_at: at,
            left_at: None,
            questions_asked: 0,
        })
    };
    let left = |id: &str, at: DateTime<Utc>, asked: i32| Row::ParticipantLeft {
        session_id: s,
        participant_id: id.into(),
        left_at: at,
        questions_asked: asked,
    };
    let t1 = t0 + chrono::Duration::seconds(1);
    let t2 = t0 + chrono::Duration::seconds(2);
    store
        .write_batch(&[
            // Leaving before ever joining changes nothing.
            left("carol", t0, 9),
            joined("alice", t0),
            joined("bob", t1),
            left("alice", t1, 2),
            joined("alice", t2),
            left("bob", t2, 1),
            // A participant of an unknown session is ignored.
            anonymous_join(SessionId::new(), "zed", t0),
        ])
        .await
        .unwrap();
    let got = store.participants(s).await.unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].participant_id, "alice");
    assert_eq!(got[0].joined_at, t0, "the first join is kept");
    assert_eq!(got[0].left_at, None, "back after leaving");
    assert_eq!(got[0].questions_asked, 2);
    assert_eq!(got[1].participant_id, "bob");
    assert_eq!((got[1].left_at, got[1].questions_asked), (Some(t2), 1));
    assert_eq!(got[1].participant_name.as_deref(), Some("bob's name"));

    // Across batches, and again (idempotent).
    for _ in 0..2 {
        store.write_batch(&[left("alice", t2, 3)]).await.unwrap();
    }
    let got = store.participants(s).await.unwrap();
    assert_eq!((got[0].left_at, got[0].questions_asked), (Some(t2), 3));

    // Another session's participants, the same ids among them, stay its own.
    let other = session(&store).await;
    store
        .write_batch(&[
            anonymous_join(other, "alice", t2),
            anonymous_join(other, "dave", t0),
        ])
        .await
        .unwrap();
    let mine = store.participants(s).await.unwrap();
    assert_eq!((mine.len(), mine[0].joined_at), (2, t0), "{mine:?}");
    let theirs = store.participants(other).await.unwrap();
    let ids: Vec<_> = theirs.iter().map(|p| p.participant_id.as_str()).collect();
    assert_eq!(ids, ["dave", "alice"], "ordered by join time");
    assert_eq!(theirs[1].participant_name, None);
}

async fn live_sessions_are_the_unended_ones(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let mut mine = Vec::new();
    for status in [
        SessionStatus::Created,
        SessionStatus::Active,
        SessionStatus::Paused,
        SessionStatus::Stopped,
        SessionStatus::Failed,
    ] {
        let rec = session_record(t);
        store.create_session(&rec).await.unwrap();
        store
            .write_batch(&[
                Row::SessionProgress {
                    id: rec.id,
                    status,
                    started_at: None,
                    ended_at: None,
                    counters: Counters::default(),
                    last_error: None,
                },
                Row::State {
                    session_id: rec.id,
                    state: SessionState {
                        current_slide: 11,
                        ..SessionState::default()
                    },
                    context: json!({"topic": "reload"}),
                    metrics: json!(null),
                },
            ])
            .await
            .unwrap();
        mine.push((rec.id, status));
    }
    let live = store.live_sessions().await.unwrap();
    let mut got: Vec<_> = live
        .iter()
        .filter(|r| r.tenant == t)
        .map(|r| (r.id, r.status))
        .collect();
    got.sort_by_key(|(id, _)| *id);
    let want: Vec<_> = mine
        .iter()
        .copied()
        .filter(|(_, st)| !st.is_terminal())
        .collect();
    assert_eq!(got, want);
    for r in live.iter().filter(|r| r.tenant == t) {
        assert_eq!(r.state.current_slide, 11, "with its last state");
        assert_eq!(r.context, json!({"topic": "reload"}));
    }
}

async fn tenants(store: Arc<dyn Store>) {
    let id = TenantId::new();
    let mut rec = TenantRecord::new(id, format!("{id}@example.test"));
    rec.company = Some("Acme".into());
    rec.subscription_tier = "enterprise".into();
    rec.created_at = now_ms();
    store.ensure_tenant(&rec).await.unwrap();
    // Existing tenants are left as they are.
    let mut changed = rec.clone();
    changed.company = Some("Other".into());
    store.ensure_tenant(&changed).await.unwrap();
    assert_eq!(store.get_tenant(id).await.unwrap(), Some(rec.clone()));
    assert_eq!(store.get_tenant(TenantId::new()).await.unwrap(), None);

    rejected(
        store
            .ensure_tenant(&TenantRecord::new(TenantId::new(), rec.email.clone()))
            .await,
        "an email another tenant has",
    );
    let mut bad = TenantRecord::new(TenantId::new(), format!("{}@x.test", Uuid::new_v4()));
    bad.subscription_tier = "gold".into();
    rejected(store.ensure_tenant(&bad).await, "an unknown tier");

    assert_eq!(store.count_api_calls(id, 3).await.unwrap(), 3);
    assert_eq!(store.count_api_calls(id, 4).await.unwrap(), 7);
    assert_eq!(
        store.get_tenant(id).await.unwrap().unwrap().api_calls_used,
        7
    );
    assert_eq!(
        store.count_api_calls(id, i32::MAX).await.unwrap(),
        i64::from(i32::MAX),
        "saturates"
    );
    rejected(
        store.count_api_calls(TenantId::new(), 1).await,
        "an unknown tenant",
    );
}

async fn api_keys(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let other = tenant(&store).await;
    let key = |tenant: TenantId, name: &str, at: DateTime<Utc>| ApiKeyRecord {
        id: Uuid::now_v7(),
        tenant,
        name: name.into(),
        key_hash: format!("{:x}", Uuid::new_v4().as_u128()),
        scopes: vec!["eva:read".into(), "eva:write".into()],
        created_at: at,
        expires_at: Some(at + chrono::Duration::days(30)),
        last_used: None,
        is_active: true,
    };
    let t0 = now_ms();
    let k1 = key(t, "ci", t0);
    let k2 = key(t, "backend", t0 + chrono::Duration::seconds(1));
    let k3 = key(other, "theirs", t0);
    for k in [&k1, &k2, &k3] {
        store.create_api_key(k).await.unwrap();
    }
    rejected(store.create_api_key(&k1).await, "the same key again");
    let mut same_hash = key(t, "copy", t0);
    same_hash.key_hash = k1.key_hash.clone();
    rejected(store.create_api_key(&same_hash).await, "a duplicate hash");
    rejected(
        store.create_api_key(&key(TenantId::new(), "x", t0)).await,
        "a key of an unknown tenant",
    );

    assert_eq!(
        store.api_key_by_hash(&k1.key_hash).await.unwrap(),
        Some(k1.clone())
    );
    assert_eq!(store.api_key_by_hash("nope").await.unwrap(), None);
    assert_eq!(
        store.list_api_keys(Some(t)).await.unwrap(),
        vec![k2.clone(), k1.clone()],
        "newest first"
    );
    let everyone = store.list_api_keys(None).await.unwrap();
    for k in [&k1, &k2, &k3] {
        assert!(everyone.contains(k));
    }

    assert!(!store.revoke_api_key(k1.id, Some(other)).await.unwrap());
    assert!(store.revoke_api_key(k1.id, Some(t)).await.unwrap());
    assert!(store.revoke_api_key(k3.id, None).await.unwrap());
    assert!(!store.revoke_api_key(Uuid::now_v7(), None).await.unwrap());
    let revoked = store.api_key_by_hash(&k1.key_hash).await.unwrap().unwrap();
    assert!(!revoked.is_active, "revoked keys are still found");

    let used = now_ms();
    store.touch_api_key(k2.id, used).await.unwrap();
    assert_eq!(
        store
            .api_key_by_hash(&k2.key_hash)
            .await
            .unwrap()
            .unwrap()
            .last_used,
        Some(used)
    );
}

async fn retention_deletes_only_old_metrics(store: Arc<dyn Store>) {
    let s = session(&store).await;
    // Far in the past, so no other test's metrics are that old.
    let old = DateTime::parse_from_rfc3339("2001-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let cutoff = DateTime::parse_from_rfc3339("2001-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut rows: Vec<Row> = (0..3)
        .map(|i| Row::Metric(metric(s, old + chrono::Duration::days(i), 1.5)))
        .collect();
    rows.push(Row::Metric(metric(s, cutoff, 2.0)));
    rows.push(Row::Metric(metric(s, now_ms(), 3.25)));
    store.write_batch(&rows).await.unwrap();
    assert_eq!(store.delete_metrics_before(cutoff).await.unwrap(), 3);
    assert_eq!(store.delete_metrics_before(cutoff).await.unwrap(), 0);
    assert_eq!(
        store
            .delete_metrics_before(cutoff + chrono::Duration::seconds(1))
            .await
            .unwrap(),
        1,
        "the metric at the cutoff is kept until then"
    );
}

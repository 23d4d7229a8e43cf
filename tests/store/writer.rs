//! The batch writer's order over every store: one session's submissions
//! commit in the order submitted, whichever lane writes them, and an
//! `Order::All` submission commits after everything submitted before it
//! and before everything submitted after it.
//!
//! Order shows in the rows themselves: an update written before the row
//! it updates changes nothing, so a row left unended or unacknowledged is
//! a submission that overtook another.

use std::sync::Arc;
use std::time::Duration;

use eva_hub::ids::SessionId;
use eva_hub::store::writer::{Ack, BatchWriter, Committed, Order, WriterConfig};
use eva_hub::store::{InterventionType, Row, Store};

use super::common::now_ms;
use super::{alert, all, intervention, session, within};

const SESSIONS: usize = 12;
const ROUNDS: u64 = 6;

/// Small batches and four lanes, so that sessions share lanes and
/// batches, and lanes commit side by side (on stores that write in
/// parallel).
fn writer(store: &Arc<dyn Store>) -> BatchWriter {
    BatchWriter::start(
        store.clone(),
        WriterConfig {
            batch_max_rows: 5,
            ordered_writers: 4,
            flush_interval: Duration::from_millis(1),
            ..WriterConfig::default()
        },
    )
}

async fn sessions(store: &Arc<dyn Store>) -> Vec<SessionId> {
    let mut sessions = Vec::with_capacity(SESSIONS);
    for _ in 0..SESSIONS {
        sessions.push(session(store).await);
    }
    sessions
}

fn submit(w: &BatchWriter, order: Order, rows: Vec<Row>) -> Committed {
    let (ack, committed) = Ack::notify();
    w.submit(order, rows, Some(ack)).expect("backlog room");
    committed
}

fn ended(id: eva_hub::ids::EventId, duration_seconds: i32) -> Row {
    Row::InterventionEnded {
        id,
        ended_at: now_ms(),
        duration_seconds,
    }
}

pub(super) async fn the_writer_keeps_each_sessions_order(store: Arc<dyn Store>) {
    let w = writer(&store);
    let sessions = sessions(&store).await;
    let mut waits = Vec::new();
    let mut expected = Vec::new();
    // Each round: every session starts a takeover, then ends it in a
    // submission of its own, interleaved with the other sessions'.
    for round in 0..ROUNDS {
        let started: Vec<_> = sessions
            .iter()
            .map(|&s| intervention(s, round * 2 + 1, InterventionType::Takeover))
            .collect();
        for i in &started {
            waits.push(submit(
                &w,
                Order::Session(i.session_id),
                vec![Row::Intervention(i.clone())],
            ));
        }
        for i in &started {
            let d = round as i32 + 1;
            waits.push(submit(
                &w,
                Order::Session(i.session_id),
                vec![ended(i.id, d)],
            ));
            expected.push((i.session_id, i.id, d));
        }
    }
    // A barrier completes only after what its session submitted before.
    let last = sessions[SESSIONS - 1];
    within(
        Duration::from_secs(30),
        submit(&w, Order::Session(last), Vec::new()).wait(),
    )
    .await
    .unwrap();
    let rows = store.interventions(last, all(100)).await.unwrap();
    assert_eq!(
        rows.len(),
        ROUNDS as usize,
        "the barrier waited for its session"
    );
    for wait in waits {
        within(Duration::from_secs(30), wait.wait()).await.unwrap();
    }
    for (s, id, d) in expected {
        let rows = store.interventions(s, all(100)).await.unwrap();
        let row = rows.iter().find(|r| r.id == id).expect("stored");
        assert_eq!(row.duration_seconds, Some(d), "ended after it started");
    }
    w.shutdown(std::time::Instant::now() + Duration::from_secs(5))
        .await;
}

pub(super) async fn an_order_all_submission_is_a_fence(store: Arc<dyn Store>) {
    let w = writer(&store);
    let sessions = sessions(&store).await;
    let mut waits = Vec::new();
    for round in 0..ROUNDS {
        // Before the fence, every session raises an alert...
        let alerts: Vec<_> = sessions.iter().map(|&s| alert(s)).collect();
        for a in &alerts {
            waits.push(submit(
                &w,
                Order::Session(a.session_id),
                vec![Row::Alert(a.clone())],
            ));
        }
        // ...the fence acknowledges every one and starts a takeover in
        // every session...
        let takeovers: Vec<_> = sessions
            .iter()
            .map(|&s| intervention(s, round + 1, InterventionType::Takeover))
            .collect();
        let fenced = alerts
            .iter()
            .map(|a| Row::AlertAcknowledged {
                id: a.id,
                by: "ops-fence".into(),
                at: now_ms(),
            })
            .chain(takeovers.iter().cloned().map(Row::Intervention))
            .collect();
        waits.push(submit(&w, Order::All, fenced));
        // ...and after it, each session ends its takeover.
        for t in &takeovers {
            waits.push(submit(
                &w,
                Order::Session(t.session_id),
                vec![ended(t.id, 5)],
            ));
        }
    }
    for wait in waits {
        within(Duration::from_secs(30), wait.wait()).await.unwrap();
    }
    for &s in &sessions {
        let alerts = store.alerts(s, all(100)).await.unwrap();
        assert_eq!(alerts.len(), ROUNDS as usize);
        for a in alerts {
            assert_eq!(
                a.acknowledged_by.as_deref(),
                Some("ops-fence"),
                "the fence committed after the alerts submitted before it"
            );
        }
        let takeovers = store.interventions(s, all(100)).await.unwrap();
        assert_eq!(takeovers.len(), ROUNDS as usize);
        for t in takeovers {
            assert_eq!(
                t.duration_seconds,
                Some(5),
                "what was submitted after the fence committed after it"
            );
        }
    }
    w.shutdown(std::time::Instant::now() + Duration::from_secs(5))
        .await;
}

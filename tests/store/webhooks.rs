//! The webhook part of the conformance suite: endpoints, deliveries
//! written with their batch, claims with a lease, outcomes, disabling and
//! replays, the same on every store.

use std::sync::Arc;

use chrono::{DateTime, Duration as Span, Utc};
use eva_hub::ids::{SessionId, TenantId};
use eva_hub::secret::Secret;
use eva_hub::store::webhooks::{
    AttemptOutcome, ClaimRequest, DeliveryRecord, DeliveryStatus, ReplayFrom, WebhookEventRow,
    WebhookPatch, WebhookRecord, secret_hash,
};
use eva_hub::store::{Row, Store};
use serde_json::json;
use uuid::Uuid;

use super::{question, rejected, session, tenant};

fn endpoint(tenant: TenantId, events: &[&str]) -> WebhookRecord {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    WebhookRecord {
        id: Uuid::now_v7(),
        tenant,
        url: "https://hooks.example.test/eva".into(),
        events: events.iter().map(|e| e.to_string()).collect(),
        description: Some("crm sync".into()),
        secret: Secret::new(secret),
        secret_hash: secret_hash(secret),
        is_active: true,
        retry_count: 3,
        timeout_seconds: 30,
        last_triggered: None,
        failure_count: 0,
        disabled_reason: None,
        // Whole microseconds: what every store keeps.
        created_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
    }
}

fn event(tenant: TenantId, event_type: &str, n: u32) -> WebhookEventRow {
    WebhookEventRow {
        msg_id: format!("msg_{}", Uuid::now_v7().simple()),
        tenant,
        event_type: event_type.into(),
        body:
            json!({"type": event_type, "timestamp": "2026-12-04T10:00:00.000Z", "data": {"n": n}})
                .to_string(),
        created_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
    }
}

async fn deliveries(store: &Arc<dyn Store>, w: Uuid) -> Vec<DeliveryRecord> {
    store.webhook_deliveries(w, None, 1000).await.unwrap()
}

/// Whole microseconds: what every store keeps.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

/// A claim for the test's own endpoints (tests share the database).
fn claim(
    now: DateTime<Utc>,
    limit: usize,
    per_endpoint: usize,
    skip: Vec<Uuid>,
    only: &[Uuid],
) -> ClaimRequest {
    ClaimRequest {
        now,
        lease_until: now + Span::seconds(300),
        limit,
        per_endpoint,
        skip,
        only: only.to_vec(),
    }
}

fn outcome(d: &DeliveryRecord, status: DeliveryStatus, at: DateTime<Utc>) -> AttemptOutcome {
    AttemptOutcome {
        delivery_id: d.id,
        webhook_id: d.webhook_id,
        at,
        status,
        next_attempt_at: at + Span::seconds(5),
        response_status: Some(if status == DeliveryStatus::Delivered {
            200
        } else {
            503
        }),
        error: (status != DeliveryStatus::Delivered).then(|| "the endpoint answered 503".into()),
        attempted: true,
    }
}

pub(super) async fn webhook_endpoints_round_trip(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let other = tenant(&store).await;
    let a = endpoint(t, &["*"]);
    let b = endpoint(t, &["question.created", "session.active"]);
    store.create_webhook(&a).await.unwrap();
    store.create_webhook(&b).await.unwrap();
    rejected(store.create_webhook(&a).await, "the same id twice");
    rejected(
        store
            .create_webhook(&endpoint(TenantId::new(), &["*"]))
            .await,
        "an endpoint of an unknown tenant",
    );
    assert_eq!(
        store.list_webhooks(t).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(store.get_webhook(t, a.id).await.unwrap(), Some(a.clone()));
    assert!(store.list_webhooks(other).await.unwrap().is_empty());
    assert_eq!(
        store.get_webhook(other, a.id).await.unwrap(),
        None,
        "tenants are apart"
    );

    let patch = WebhookPatch {
        url: Some("https://hooks.example.test/v2".into()),
        events: Some(vec!["alert.raised".into()]),
        description: Some(None),
        is_active: Some(false),
        retry_count: Some(5),
        timeout_seconds: Some(10),
    };
    assert_eq!(
        store.update_webhook(other, a.id, &patch).await.unwrap(),
        None
    );
    let changed = store
        .update_webhook(t, a.id, &patch)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changed.url, "https://hooks.example.test/v2");
    assert_eq!(changed.events, vec!["alert.raised".to_string()]);
    assert_eq!(changed.description, None);
    assert!(!changed.is_active);
    assert_eq!((changed.retry_count, changed.timeout_seconds), (5, 10));
    assert_eq!(changed.secret, a.secret, "the secret stays");
    let same = store
        .update_webhook(t, a.id, &WebhookPatch::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(same, changed, "an empty patch changes nothing");

    assert!(!store.delete_webhook(other, a.id).await.unwrap());
    assert!(store.delete_webhook(t, a.id).await.unwrap());
    assert!(!store.delete_webhook(t, a.id).await.unwrap());
    assert_eq!(store.list_webhooks(t).await.unwrap(), vec![b]);
}

pub(super) async fn webhook_events_become_deliveries_in_their_batch(store: Arc<dyn Store>) {
    let s = session(&store).await;
    let t = store.get_session(None, s).await.unwrap().unwrap().tenant;
    let all = endpoint(t, &["*"]);
    let questions = endpoint(t, &["question.created"]);
    let alerts = endpoint(t, &["alert.raised"]);
    let mut paused = endpoint(t, &["*"]);
    paused.is_active = false;
    let other_tenant = endpoint(tenant(&store).await, &["*"]);
    for w in [&all, &questions, &alerts, &paused, &other_tenant] {
        store.create_webhook(w).await.unwrap();
    }
    let e = event(t, "question.created", 1);
    let batch = vec![
        Row::Conversation(question(s, 2, "alice", "q-1")),
        Row::Webhook(e.clone()),
    ];
    store.write_batch(&batch).await.unwrap();
    // A batch retried after an ambiguous commit stores each delivery once.
    store.write_batch(&batch).await.unwrap();
    for w in [&all, &questions] {
        let d = deliveries(&store, w.id).await;
        assert_eq!(d.len(), 1, "one delivery per subscribed endpoint");
        let d = &d[0];
        assert_eq!(
            (d.msg_id.as_str(), d.event_type.as_str(), d.body.as_str()),
            (e.msg_id.as_str(), "question.created", e.body.as_str())
        );
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!((d.attempts, d.replay), (0, 0));
        assert_eq!(d.created_at, e.created_at);
        assert_eq!(d.next_attempt_at, e.created_at, "due at once");
    }
    for w in [&alerts, &paused, &other_tenant] {
        assert!(deliveries(&store, w.id).await.is_empty(), "not subscribed");
    }

    // All or nothing: a batch that fails leaves no delivery behind.
    let orphan = question(SessionId::new(), 1, "bob", "q-9");
    rejected(
        store
            .write_batch(&[
                Row::Webhook(event(t, "question.created", 2)),
                Row::Conversation(orphan),
            ])
            .await,
        "a row of an unknown session",
    );
    assert_eq!(deliveries(&store, all.id).await.len(), 1);
}

pub(super) async fn webhook_claims_lease_and_record_outcomes(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let a = endpoint(t, &["*"]);
    let b = endpoint(t, &["*"]);
    store.create_webhook(&a).await.unwrap();
    store.create_webhook(&b).await.unwrap();
    let rows: Vec<Row> = (0..4)
        .map(|n| Row::Webhook(event(t, "session.active", n)))
        .collect();
    store.write_batch(&rows).await.unwrap();
    let now = micros(Utc::now() + Span::seconds(1));
    let mine = [a.id, b.id];

    // At most `per_endpoint` each; skipped endpoints get none.
    let c = store
        .claim_webhook_deliveries(&claim(now, 100, 3, vec![b.id], &mine))
        .await
        .unwrap();
    assert_eq!(c.deliveries.len(), 3);
    assert!(c.deliveries.iter().all(|d| d.webhook_id == a.id));
    assert_eq!(c.endpoints.len(), 1);
    assert_eq!(c.endpoints[0].id, a.id);
    assert_eq!(
        c.endpoints[0].secret, a.secret,
        "the endpoint comes with its secret"
    );
    assert!(c.deliveries.windows(2).all(|w| w[0].id < w[1].id));
    // Leased: not claimed again before the lease ends.
    let again = store
        .claim_webhook_deliveries(&claim(now, 100, 100, vec![b.id], &mine))
        .await
        .unwrap();
    assert_eq!(again.deliveries.len(), 1, "only the fourth of a");
    let rest = store
        .claim_webhook_deliveries(&claim(now, 2, 100, vec![], &mine))
        .await
        .unwrap();
    assert_eq!(rest.deliveries.len(), 2, "the limit holds");
    assert!(rest.deliveries.iter().all(|d| d.webhook_id == b.id));
    // After the lease, an unrecorded delivery is due again.
    let later = now + Span::seconds(301);
    let expired = store
        .claim_webhook_deliveries(&claim(later, 100, 100, vec![], &mine))
        .await
        .unwrap();
    assert_eq!(expired.deliveries.len(), 8);

    let first = &c.deliveries[0];
    let second = &c.deliveries[1];
    let disabled = store
        .record_webhook_attempts(
            &[
                outcome(first, DeliveryStatus::Pending, later),
                outcome(second, DeliveryStatus::Delivered, later),
            ],
            10,
        )
        .await
        .unwrap();
    assert!(disabled.is_empty());
    let by_id = |all: &[DeliveryRecord], id: i64| all.iter().find(|d| d.id == id).cloned().unwrap();
    let now_a = deliveries(&store, a.id).await;
    let f = by_id(&now_a, first.id);
    assert_eq!(f.status, DeliveryStatus::Pending);
    assert_eq!(f.attempts, 1);
    assert_eq!(f.response_status, Some(503));
    assert_eq!(f.next_attempt_at, later + Span::seconds(5));
    assert_eq!(f.last_error.as_deref(), Some("the endpoint answered 503"));
    let s2 = by_id(&now_a, second.id);
    assert_eq!(s2.status, DeliveryStatus::Delivered);
    assert_eq!(s2.delivered_at, Some(later));
    let w = store.get_webhook(t, a.id).await.unwrap().unwrap();
    assert_eq!(w.failure_count, 0, "the success came last");
    assert_eq!(w.last_triggered, Some(later));
    // Delivered rows are never claimed again.
    let after = store
        .claim_webhook_deliveries(&claim(later + Span::seconds(600), 100, 100, vec![], &mine))
        .await
        .unwrap();
    assert!(after.deliveries.iter().all(|d| d.id != second.id));

    // A hand-back (no request made) changes neither attempts nor counts.
    let mut back = outcome(first, DeliveryStatus::Pending, later);
    back.attempted = false;
    back.next_attempt_at = later;
    store.record_webhook_attempts(&[back], 10).await.unwrap();
    let f = by_id(&deliveries(&store, a.id).await, first.id);
    assert_eq!((f.attempts, f.next_attempt_at), (1, later));

    // Failures in a row disable the endpoint once, at the threshold.
    let failures: Vec<AttemptOutcome> = c
        .deliveries
        .iter()
        .map(|d| outcome(d, DeliveryStatus::Failed, later))
        .collect();
    assert!(
        store
            .record_webhook_attempts(&failures[..2], 3)
            .await
            .unwrap()
            .is_empty()
    );
    let disabled = store
        .record_webhook_attempts(&failures[2..], 3)
        .await
        .unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0].id, a.id);
    assert_eq!(disabled[0].tenant, t);
    assert_eq!(disabled[0].failure_count, 3);
    let w = store.get_webhook(t, a.id).await.unwrap().unwrap();
    assert!(!w.is_active);
    assert!(w.disabled_reason.is_some());
    assert!(
        store
            .record_webhook_attempts(&failures[..1], 3)
            .await
            .unwrap()
            .is_empty(),
        "disabled once"
    );
    // Re-enabling clears the count and the reason.
    let on = WebhookPatch {
        is_active: Some(true),
        ..WebhookPatch::default()
    };
    let w = store.update_webhook(t, a.id, &on).await.unwrap().unwrap();
    assert!(w.is_active);
    assert_eq!((w.failure_count, w.disabled_reason), (0, None));
}

pub(super) async fn webhook_replays_keep_the_webhook_id(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let a = endpoint(t, &["*"]);
    store.create_webhook(&a).await.unwrap();
    let first = event(t, "alert.raised", 1);
    store
        .write_batch(&[Row::Webhook(first.clone())])
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let cut = micros(Utc::now());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let rows: Vec<Row> = (2..4)
        .map(|n| Row::Webhook(event(t, "alert.raised", n)))
        .collect();
    store.write_batch(&rows).await.unwrap();
    let originals = deliveries(&store, a.id).await;
    assert_eq!(originals.len(), 3);
    let now = micros(Utc::now());

    let n = store
        .replay_webhook_deliveries(a.id, ReplayFrom::Since(cut), now)
        .await
        .unwrap();
    assert_eq!(n, 2, "the two after the cut");
    let oldest = originals.iter().map(|d| d.id).min().unwrap();
    let n = store
        .replay_webhook_deliveries(a.id, ReplayFrom::Delivery(oldest), now)
        .await
        .unwrap();
    assert_eq!(n, 3, "that delivery's event and every later one");
    let all = deliveries(&store, a.id).await;
    assert_eq!(all.len(), 8);
    let first_msg: Vec<&DeliveryRecord> = all.iter().filter(|d| d.msg_id == first.msg_id).collect();
    let mut replays: Vec<i32> = first_msg.iter().map(|d| d.replay).collect();
    replays.sort_unstable();
    assert_eq!(replays, vec![0, 1]);
    let last_msg = &originals[0].msg_id;
    let mut replays: Vec<i32> = all
        .iter()
        .filter(|d| &d.msg_id == last_msg)
        .map(|d| d.replay)
        .collect();
    replays.sort_unstable();
    assert_eq!(
        replays,
        vec![0, 1, 2],
        "replays of a replayed event count on"
    );
    for d in all.iter().filter(|d| d.replay > 0) {
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempts, 0);
        let original = all
            .iter()
            .find(|o| o.msg_id == d.msg_id && o.replay == 0)
            .unwrap();
        assert_eq!(d.body, original.body, "the same bytes are sent");
    }
    // Replays never replay replays.
    let n = store
        .replay_webhook_deliveries(a.id, ReplayFrom::Since(cut - Span::days(1)), now)
        .await
        .unwrap();
    assert_eq!(n, 3);
    // Deleting the endpoint deletes its deliveries.
    assert!(store.delete_webhook(t, a.id).await.unwrap());
    assert!(deliveries(&store, a.id).await.is_empty());
}

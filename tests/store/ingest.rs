//! The inbound-events part of the conformance suite: events recorded
//! once by hash (`processed_webhook_events`) and sessions found by their
//! `external_id`, the same on every store.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use eva_hub::ingest::{Source, event_hash};
use eva_hub::store::Store;
use eva_hub::store::ingest::{ProcessedEvent, Recorded};
use serde_json::json;
use uuid::Uuid;

use super::{rejected, session_record, tenant};

fn processed(
    conversation: &str,
    n: u32,
    session: Option<eva_hub::ids::SessionId>,
) -> ProcessedEvent {
    let body = json!({
        "event_type": "utterance",
        "conversation_id": conversation,
        "properties": {"role": "user", "text": format!("hello {n}"), "nested": {"b": 1, "a": [1, 2.5]}},
    });
    ProcessedEvent {
        id: Uuid::now_v7(),
        source: "generic".into(),
        conversation_id: conversation.into(),
        event_type: "utterance".into(),
        event_hash: event_hash(Source::Generic, &body),
        event_data: body,
        session,
        // Whole microseconds: what every store keeps.
        processed_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
        processing_duration_ms: 3,
    }
}

pub(super) async fn processed_events_are_recorded_once(store: Arc<dyn Store>) {
    // Tests share the database: a conversation of this test's own.
    let conversation = format!("conv-{}", Uuid::now_v7());
    let s = session_record(tenant(&store).await);
    store.create_session(&s).await.unwrap();
    let first = processed(&conversation, 1, Some(s.id));
    assert_eq!(
        store.record_processed_event(&first).await.unwrap(),
        Recorded::New(first.clone())
    );
    // A redelivery: a new row id and time, the same hash.
    let again = ProcessedEvent {
        id: Uuid::now_v7(),
        processing_duration_ms: 9,
        ..first.clone()
    };
    assert_eq!(
        store.record_processed_event(&again).await.unwrap(),
        Recorded::Duplicate(first.clone()),
        "the stored row answers a duplicate"
    );
    assert_eq!(
        store.processed_event(&first.event_hash).await.unwrap(),
        Some(first.clone())
    );
    let unmapped = processed(&conversation, 2, None);
    assert_eq!(
        store.record_processed_event(&unmapped).await.unwrap(),
        Recorded::New(unmapped.clone()),
        "an event for no session is kept, with session null"
    );
    assert_eq!(
        store.count_processed_events(&conversation).await.unwrap(),
        2
    );
    assert_eq!(
        store
            .processed_event("0".repeat(64).as_str())
            .await
            .unwrap(),
        None
    );
}

pub(super) async fn concurrent_duplicates_store_one_row(store: Arc<dyn Store>) {
    let conversation = format!("conv-{}", Uuid::now_v7());
    let event = processed(&conversation, 1, None);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let e = ProcessedEvent {
                id: Uuid::now_v7(),
                ..event.clone()
            };
            tokio::spawn(async move { store.record_processed_event(&e).await.unwrap() })
        })
        .collect();
    let mut new = 0;
    for t in tasks {
        if let Recorded::New(_) = t.await.unwrap() {
            new += 1;
        }
    }
    assert_eq!(new, 1, "exactly one delivery records the event");
    assert_eq!(
        store.count_processed_events(&conversation).await.unwrap(),
        1
    );
}

pub(super) async fn batches_answer_each_event_in_order(store: Arc<dyn Store>) {
    let conversation = format!("conv-{}", Uuid::now_v7());
    let stored = processed(&conversation, 1, None);
    store.record_processed_event(&stored).await.unwrap();
    let fresh = processed(&conversation, 2, None);
    let redelivered = |e: &ProcessedEvent| ProcessedEvent {
        id: Uuid::now_v7(),
        processing_duration_ms: 7,
        ..e.clone()
    };
    // Stored before, new, the new one again in the same batch, another new.
    let other = processed(&conversation, 3, None);
    let batch = vec![
        redelivered(&stored),
        fresh.clone(),
        redelivered(&fresh),
        other.clone(),
    ];
    assert_eq!(
        store.record_processed_events(&batch).await.unwrap(),
        vec![
            Recorded::Duplicate(stored.clone()),
            Recorded::New(fresh.clone()),
            Recorded::Duplicate(fresh.clone()),
            Recorded::New(other.clone()),
        ]
    );
    assert_eq!(store.record_processed_events(&[]).await.unwrap(), vec![]);
    assert_eq!(
        store.count_processed_events(&conversation).await.unwrap(),
        3
    );
}

pub(super) async fn sessions_are_found_by_external_id(store: Arc<dyn Store>) {
    let t = tenant(&store).await;
    let external = format!("tavus-{}", Uuid::now_v7());
    let mut s = session_record(t);
    s.external_id = Some(external.clone());
    store.create_session(&s).await.unwrap();
    assert_eq!(
        store.session_by_external_id(&external).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store.get_session(Some(t), s.id).await.unwrap(),
        Some(s.clone()),
        "external_id round-trips"
    );
    let mut other = session_record(tenant(&store).await);
    other.external_id = Some(external.clone());
    rejected(
        store.create_session(&other).await,
        "a second session with the same external_id",
    );
    assert_eq!(
        store
            .session_by_external_id("no-such-conversation")
            .await
            .unwrap(),
        None
    );
}

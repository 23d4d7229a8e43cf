//! A consumer that reads too slowly is conflated, and one that still can't
//! keep up is disconnected with the "slow consumer" code.

use std::sync::Arc;

use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::protocol::model::{Event, Role, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_hub::store::memory::MemoryStore;
use serde_json::json;

use crate::support::*;

fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_slow_consumer_is_conflated_then_disconnected() {
    let mut settings = test_settings();
    settings.websocket.outbound_max_bytes = 64 * 1024;
    settings.websocket.conflate_after_bytes = 8 * 1024;
    settings.websocket.send_buffer_bytes = 4096;
    let app = spawn_with(settings, Arc::new(MemoryStore::new())).await;
    let (id, mut r) = app.active_session(Codec::Json).await;

    let mut opts = ConnectOptions::new(Codec::Json, "dev:participant:slow");
    opts.recv_buffer = Some(4096);
    let mut slow = TestClient {
        client: Client::connect(app.addr, opts).await.unwrap(),
    };
    slow.next().await; // welcome
    slow.join(id).await;

    // Phase 1: far more state updates than the slow reader takes in. They
    // conflate, so its queue stays bounded and it is not disconnected.
    const UPDATES: i32 = 3000;
    let topic = "t".repeat(120);
    for i in 0..UPDATES {
        r.send(&ClientFrame::State {
            session: id,
            state: StatePatch {
                current_slide: Some(i),
                current_topic: Some(Some(topic.clone())),
                ..Default::default()
            },
            id: (i == UPDATES - 1).then(|| "last".into()),
        })
        .await;
    }
    r.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "last"))
        .await;
    let mut states = 0;
    let mut last_seq = 0;
    loop {
        if let ServerFrame::Event {
            seq,
            event: Event::State { state },
            ..
        } = slow.next().await
        {
            assert!(seq > last_seq, "conflation keeps seq order");
            last_seq = seq;
            states += 1;
            if state.current_slide == UPDATES - 1 {
                break;
            }
        }
    }
    assert!(
        states < UPDATES as usize,
        "conflated: {states} of {UPDATES} state frames delivered"
    );

    // Phase 2: events that cannot be conflated pile up past the limit. A
    // backend publishes them (the renderer, which does not read in this
    // test, would be a slow consumer of its own).
    drop(r);
    let blob = "x".repeat(2048);
    for i in 0..400 {
        let (status, _) = app
            .post(
                &format!("/v1/sessions/{id}/events"),
                json!({"name": "blob", "audience": "all", "data": {"i": i, "blob": blob}}),
            )
            .await;
        assert_eq!(status, 202);
    }
    let code = loop {
        match slow.client.recv_timeout(WAIT).await.unwrap() {
            Incoming::Frame(_) => continue,
            Incoming::Closed(c) => break c.map(|c| c.0),
        }
    };
    assert_eq!(code, Some(4000));

    // Everyone else carries on.
    let mut p = app.connect(Role::Participant, "fast", Codec::Json).await;
    p.join(id).await;
    let text = eva_hub::metrics::install_exporter().render();
    assert!(
        counter(&text, "eva_conflated_total") > 0.0,
        "conflations are counted"
    );
    assert!(counter(&text, "eva_slow_consumer_disconnects_total") > 0.0);
}

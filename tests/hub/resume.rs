//! Resume inside history (exactly the missed events) and outside it
//! (an explicit discontinuity and a fresh snapshot).

use std::sync::Arc;

use eva_hub::ids::Epoch;
use eva_hub::protocol::frames::DiscontinuityReason;
use eva_hub::protocol::model::{CustomAudience, Event, Role, StreamPosition};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_hub::store::memory::MemoryStore;
use serde_json::json;

use crate::support::*;

async fn publish(
    r: &mut TestClient,
    id: eva_hub::ids::SessionId,
    i: usize,
    audience: CustomAudience,
) {
    r.send(&ClientFrame::Publish {
        session: id,
        name: "n".into(),
        audience,
        data: json!({"i": i}),
        id: Some(format!("e{i}")),
    })
    .await;
    r.until(|f| matches!(f, ServerFrame::Ack { id, .. } if *id == format!("e{i}")))
        .await;
}

#[tokio::test]
async fn resume_inside_history_gets_exactly_the_missed_events() {
    let app = spawn_app().await;
    for codec in Codec::ALL {
        let (id, mut r) = app.active_session(codec).await;
        let mut p = app.connect(Role::Participant, "p", codec).await;
        let snap = p.join(id).await;
        publish(&mut r, id, 0, CustomAudience::All).await;
        let (seq0, _) = p.event("custom").await;
        assert!(seq0 > snap.seq);
        drop(p);

        // Missed while away: some for everyone, some staff-only.
        for i in 1..=6 {
            let audience = if i % 2 == 0 {
                CustomAudience::Staff
            } else {
                CustomAudience::All
            };
            publish(&mut r, id, i, audience).await;
        }
        let mut p = app.connect(Role::Participant, "p", codec).await;
        p.send(&ClientFrame::Join {
            session: id,
            resume: Some(StreamPosition {
                epoch: snap.epoch,
                seq: seq0,
            }),
            takeover: false,
            name: None,
            compact: false,
            echo: true,
            id: None,
        })
        .await;
        let resumed = p
            .until(|f| {
                matches!(
                    f,
                    ServerFrame::Resumed { .. } | ServerFrame::Discontinuity { .. }
                )
            })
            .await;
        assert!(
            matches!(resumed, ServerFrame::Resumed { from, .. } if from == seq0 + 1),
            "{resumed:?}"
        );
        let mut got = Vec::new();
        let mut last = seq0;
        while got.len() < 3 {
            if let ServerFrame::Event {
                seq,
                event: Event::Custom { data, .. },
                ..
            } = p.next().await
            {
                assert!(seq > last, "in order, no duplicates");
                last = seq;
                got.push(data["i"].as_u64().unwrap());
            }
        }
        assert_eq!(
            got,
            vec![1, 3, 5],
            "exactly the missed events of the participant's view"
        );
        // Live events follow without a gap.
        publish(&mut r, id, 7, CustomAudience::All).await;
        let (_, e) = p.event("custom").await;
        assert!(matches!(e, Event::Custom { data, .. } if data["i"] == 7));
    }
}

#[tokio::test]
async fn resume_outside_history_gets_a_discontinuity_and_a_snapshot() {
    let mut settings = test_settings();
    settings.session.history_size = 8;
    let app = spawn_with(settings, Arc::new(MemoryStore::new())).await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "p", Codec::Json).await;
    let snap = p.join(id).await;
    drop(p);
    for i in 0..20 {
        publish(&mut r, id, i, CustomAudience::All).await;
    }
    let mut p = app.connect(Role::Participant, "p", Codec::Json).await;
    p.send(&ClientFrame::Join {
        session: id,
        resume: Some(StreamPosition {
            epoch: snap.epoch,
            seq: snap.seq,
        }),
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await;
    let d = p
        .until(|f| {
            matches!(
                f,
                ServerFrame::Discontinuity { .. } | ServerFrame::Resumed { .. }
            )
        })
        .await;
    let ServerFrame::Discontinuity { reason, seq, .. } = d else {
        panic!("{d:?}")
    };
    assert_eq!(reason, DiscontinuityReason::HistoryTrimmed);
    let ServerFrame::Snapshot(s) = p.next().await else {
        panic!("snapshot must follow")
    };
    assert_eq!(s.seq, seq);

    // A position in another epoch (for example from before a restart).
    let mut p2 = app.connect(Role::Participant, "p2", Codec::MsgPack).await;
    p2.send(&ClientFrame::Join {
        session: id,
        resume: Some(StreamPosition {
            epoch: Epoch(42),
            seq: 3,
        }),
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await;
    let d = p2
        .until(|f| matches!(f, ServerFrame::Discontinuity { .. }))
        .await;
    assert!(matches!(
        d,
        ServerFrame::Discontinuity {
            reason: DiscontinuityReason::EpochChanged,
            ..
        }
    ));
    assert!(matches!(p2.next().await, ServerFrame::Snapshot(_)));

    // A position ahead of the stream.
    let mut p3 = app.connect(Role::Participant, "p3", Codec::Json).await;
    p3.send(&ClientFrame::Join {
        session: id,
        resume: Some(StreamPosition {
            epoch: snap.epoch,
            seq: 10_000,
        }),
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await;
    let d = p3
        .until(|f| matches!(f, ServerFrame::Discontinuity { .. }))
        .await;
    assert!(matches!(
        d,
        ServerFrame::Discontinuity {
            reason: DiscontinuityReason::PositionAhead,
            ..
        }
    ));
}

//! Presence: join, leave after a grace period, and the participant count.

use std::time::Duration;

use eva_hub::protocol::model::{Event, PresenceChange, Role};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};

use crate::support::*;

#[tokio::test]
async fn a_quick_reconnect_is_not_a_leave_but_a_real_departure_is() {
    let app = spawn_app().await;
    let (id, _r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;

    let mut p = app.connect(Role::Participant, "alice", Codec::Json).await;
    p.send(&ClientFrame::Join {
        session: id,
        resume: None,
        takeover: false,
        name: Some("Alice".into()),
        compact: false,
        echo: true,
        id: None,
    })
    .await;
    let (_, e) = op.event("presence").await;
    let Event::Presence {
        change,
        member,
        participant_count,
    } = e
    else {
        unreachable!()
    };
    assert_eq!(
        (
            change,
            member.id.as_str(),
            member.name.as_deref(),
            participant_count
        ),
        (PresenceChange::Join, "alice", Some("Alice"), 1)
    );

    // Drop and come back well within the grace: nothing happens.
    drop(p);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut p = app.connect(Role::Participant, "alice", Codec::Json).await;
    let snap = p.join(id).await;
    assert_eq!(snap.presence.participant_count, 1);
    op.none_within(Duration::from_millis(600), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Presence { .. },
                ..
            }
        )
    })
    .await;

    // Gone for longer than the grace: one leave.
    drop(p);
    let (_, e) = op.event("presence").await;
    assert!(matches!(
        e,
        Event::Presence {
            change: PresenceChange::Leave,
            participant_count: 0,
            ..
        }
    ));
    // Participants learn the count through counters.
    let mut q = app.connect(Role::Participant, "bob", Codec::MsgPack).await;
    q.join(id).await;
    let (_, c) = q.event("counters").await;
    assert!(matches!(c, Event::Counters { counters } if counters.participant_count == 1));
}

#[tokio::test]
async fn two_tabs_of_one_participant_count_once_and_an_explicit_leave_is_immediate() {
    let app = spawn_app().await;
    let (id, _r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    let mut tab1 = app.connect(Role::Participant, "carol", Codec::Json).await;
    tab1.join(id).await;
    op.event("presence").await;
    let mut tab2 = app.connect(Role::Participant, "carol", Codec::Json).await;
    let snap = tab2.join(id).await;
    assert_eq!(snap.presence.participant_count, 1);
    tab1.send(&ClientFrame::Leave {
        session: id,
        id: Some("bye".into()),
    })
    .await;
    tab1.until(|f| matches!(f, ServerFrame::Left { .. })).await;
    // Still one tab: no leave.
    op.none_within(Duration::from_millis(200), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Presence { .. },
                ..
            }
        )
    })
    .await;
    tab2.send(&ClientFrame::Leave {
        session: id,
        id: None,
    })
    .await;
    let (_, e) = op.event("presence").await;
    assert!(matches!(
        e,
        Event::Presence {
            change: PresenceChange::Leave,
            ..
        }
    ));
}

#[tokio::test]
async fn operator_connected_follows_operator_presence() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    let (_, e) = r.event("state").await;
    assert!(matches!(e, Event::State { state } if state.operator_connected));
    drop(op);
    let (_, e) = r.event("state").await;
    assert!(matches!(e, Event::State { state } if !state.operator_connected));
}

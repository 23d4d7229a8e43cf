//! A frame resent with an `id` the hub already accepted is answered with
//! its original outcome, whatever the frame: the case a client is in when
//! its connection dropped before the `ack` arrived.

use eva_hub::protocol::model::{Role, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame, SessionStatus};

use crate::support::*;

/// The `ack` of `id`, with its seq and whether it says `duplicate`.
async fn ack_of(c: &mut TestClient, want: &str) -> (Option<u64>, bool) {
    match c
        .until(|f| {
            matches!(f, ServerFrame::Ack { id, .. } if id == want)
                || matches!(f, ServerFrame::Error { id: Some(id), .. } if id == want)
        })
        .await
    {
        ServerFrame::Ack { seq, duplicate, .. } => (seq, duplicate),
        other => panic!("{want}: expected an ack, got {other:?}"),
    }
}

#[tokio::test]
async fn every_frame_with_an_id_is_answered_once_and_then_as_a_duplicate() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;

    let state = ClientFrame::State {
        session: id,
        state: StatePatch {
            current_slide: Some(3),
            ..StatePatch::default()
        },
        id: Some("st-1".into()),
    };
    let context = ClientFrame::Context {
        session: id,
        context: serde_json::json!({"topic": "pricing"}),
        id: Some("ctx-1".into()),
    };
    let pause = ClientFrame::Status {
        session: id,
        status: SessionStatus::Paused,
        reason: None,
        id: Some("su-1".into()),
    };
    for (frame, key) in [(&state, "st-1"), (&context, "ctx-1"), (&pause, "su-1")] {
        r.send(frame).await;
        let (seq, dup) = ack_of(&mut r, key).await;
        assert!(!dup, "{key}");
        r.send(frame).await;
        let again = ack_of(&mut r, key).await;
        assert_eq!(
            again,
            (seq, true),
            "{key}: the resend gets the original ack"
        );
    }

    let takeover = ClientFrame::Takeover {
        session: id,
        reason: None,
        id: Some("t-1".into()),
    };
    op.send(&takeover).await;
    let (taken, _) = ack_of(&mut op, "t-1").await;
    // Other events move the stream on before the resend.
    r.send(&ClientFrame::State {
        session: id,
        state: StatePatch {
            current_slide: Some(4),
            ..StatePatch::default()
        },
        id: Some("st-2".into()),
    })
    .await;
    ack_of(&mut r, "st-2").await;
    op.send(&takeover).await;
    assert_eq!(ack_of(&mut op, "t-1").await, (taken, true));

    let release = ClientFrame::Release {
        session: id,
        id: Some("rl-1".into()),
    };
    op.send(&release).await;
    let (released, dup) = ack_of(&mut op, "rl-1").await;
    assert!(!dup);
    op.send(&release).await;
    assert_eq!(
        ack_of(&mut op, "rl-1").await,
        (released, true),
        "a released takeover's resend is not `not_controller`"
    );
}

#[tokio::test]
async fn a_renderer_coming_back_replaces_its_own_stale_connection() {
    let app = spawn_app().await;
    let (id, mut old) = app.active_session(Codec::Json).await;
    // The same renderer, from a new connection, while the hub still holds
    // the old one (a half-open socket after a network failure).
    let mut back = app.connect(Role::Renderer, "renderer-1", Codec::Json).await;
    back.send(&ClientFrame::Join {
        session: id,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: Some("j".into()),
    })
    .await;
    let joined = back
        .until(|f| matches!(f, ServerFrame::Joined { .. } | ServerFrame::Error { .. }))
        .await;
    assert!(
        matches!(joined, ServerFrame::Joined { fence: Some(2), .. }),
        "{joined:?}"
    );
    assert_eq!(old.closed().await, Some(4504));
    // Another renderer still needs `takeover`.
    let mut other = app.connect(Role::Renderer, "renderer-2", Codec::Json).await;
    other
        .send(&ClientFrame::Join {
            session: id,
            resume: None,
            takeover: false,
            name: None,
            compact: false,
            echo: true,
            id: None,
        })
        .await;
    assert!(matches!(
        other
            .until(|f| matches!(f, ServerFrame::Error { .. }))
            .await,
        ServerFrame::Error {
            code: eva_hub::protocol::ErrorCode::RendererActive,
            ..
        }
    ));
}

#[tokio::test]
async fn snapshots_list_open_questions_and_unacknowledged_commands() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::MsgPack).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    let mut p = app.connect(Role::Participant, "ann", Codec::Json).await;
    p.join(id).await;
    for (key, text) in [("q-1", "first?"), ("q-2", "second?")] {
        p.send(&ClientFrame::Question {
            session: id,
            id: key.into(),
            text: text.into(),
        })
        .await;
        ack_of(&mut p, key).await;
    }
    let (_, first) = r.event("question").await;
    let eva_hub::protocol::model::Event::Question { question_id, .. } = first else {
        unreachable!("asked for a question")
    };
    r.send(&ClientFrame::Response {
        session: id,
        id: "r-1".into(),
        question_id: Some(question_id),
        text: "yes".into(),
        confidence: 0.9,
        response_time_ms: 10,
        intent: None,
        knowledge_sources: Vec::new(),
        command_id: None,
    })
    .await;
    ack_of(&mut r, "r-1").await;
    op.send(&ClientFrame::EmergencyStop {
        session: id,
        id: "e-1".into(),
        reason: Some("test".into()),
    })
    .await;
    ack_of(&mut op, "e-1").await;

    let mut late = app.connect(Role::Operator, "op-2", Codec::Json).await;
    let snap = late.join(id).await;
    let questions = snap.questions.expect("staff see open questions");
    assert_eq!(questions.len(), 1, "{questions:?}");
    assert_eq!(questions[0].text, "second?");
    let pending = snap.pending_commands.expect("staff see pending commands");
    assert!(pending.len() == 1 && pending[0].emergency, "{pending:?}");

    let mut audience = app.connect(Role::Participant, "bob", Codec::Json).await;
    let snap = audience.join(id).await;
    assert!(snap.questions.is_none() && snap.pending_commands.is_none());
}

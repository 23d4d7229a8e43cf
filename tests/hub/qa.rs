//! Questions (deduplicated by client id) and responses.

use std::time::Duration;

use eva_hub::protocol::model::{Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};

use crate::support::*;

#[tokio::test]
async fn a_resent_question_is_not_a_second_question() {
    let app = spawn_app().await;
    for codec in Codec::ALL {
        let (id, mut r) = app.active_session(codec).await;
        let mut op = app.connect(Role::Operator, "op", codec).await;
        op.join(id).await;
        let mut p = app.connect(Role::Participant, "dave", codec).await;
        p.join(id).await;
        let ask = ClientFrame::Question {
            session: id,
            id: "q-1".into(),
            text: "What does it cost?".into(),
        };
        p.send(&ask).await;
        let ack = p.until(|f| matches!(f, ServerFrame::Ack { .. })).await;
        let ServerFrame::Ack {
            ref_id: Some(qid),
            seq: Some(seq),
            duplicate: false,
            ..
        } = ack
        else {
            panic!("{ack:?}")
        };
        let (_, e) = r.event("question").await;
        assert!(
            matches!(e, Event::Question { question_id, ref participant_id, .. } if question_id == qid && participant_id == "dave")
        );
        op.event("question").await;

        // The same id again (a retry after a lost ack): same answer, no new event.
        p.send(&ask).await;
        let ack = p.until(|f| matches!(f, ServerFrame::Ack { .. })).await;
        assert!(
            matches!(ack, ServerFrame::Ack { ref_id: Some(q), seq: Some(s), duplicate: true, .. } if q == qid && s == seq)
        );
        r.none_within(Duration::from_millis(300), |f| {
            matches!(
                f,
                ServerFrame::Event {
                    event: Event::Question { .. },
                    ..
                }
            )
        })
        .await;
        // Participants never see questions.
        p.none_within(Duration::from_millis(100), |f| {
            matches!(
                f,
                ServerFrame::Event {
                    event: Event::Question { .. },
                    ..
                }
            )
        })
        .await;

        // The answer reaches everyone, with every field.
        r.send(&ClientFrame::Response {
            session: id,
            id: "r-1".into(),
            question_id: Some(qid),
            text: "It is free for a month.".into(),
            confidence: 0.92,
            response_time_ms: 840,
            intent: Some("pricing".into()),
            knowledge_sources: vec!["faq/pricing".into()],
            command_id: None,
        })
        .await;
        let ack = r.until(|f| matches!(f, ServerFrame::Ack { .. })).await;
        assert!(matches!(ack, ServerFrame::Ack { ref id, .. } if id == "r-1"));
        let (_, e) = p.event("response").await;
        let Event::Response(body) = e else {
            unreachable!()
        };
        assert_eq!(body.question_id, Some(qid));
        assert_eq!(body.confidence, 0.92);
        assert_eq!(body.response_time_ms, 840);
        assert_eq!(body.intent.as_deref(), Some("pricing"));
        assert_eq!(body.knowledge_sources, vec!["faq/pricing".to_owned()]);
        op.event("response").await;

        // Both are in the conversation history, question first.
        let (status, history) = app.get(&format!("/v1/sessions/{id}/conversation")).await;
        assert_eq!(status, 200);
        let items = history["items"].as_array().unwrap();
        let types: Vec<_> = items
            .iter()
            .map(|i| i["message_type"].as_str().unwrap())
            .collect();
        assert_eq!(types, vec!["response", "question"], "newest first");
    }
}

#[tokio::test]
async fn bad_questions_and_responses_get_clear_errors() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "p", Codec::Json).await;
    p.join(id).await;
    p.send(&ClientFrame::Question {
        session: id,
        id: "x".into(),
        text: "   ".into(),
    })
    .await;
    let e = p.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(
        matches!(e, ServerFrame::Error { code: ErrorCode::Invalid, id: Some(ref i), session: Some(s), .. } if i == "x" && s == id)
    );
    r.send(&ClientFrame::Response {
        session: id,
        id: "bad".into(),
        question_id: None,
        text: "hi".into(),
        confidence: 1.5,
        response_time_ms: 1,
        intent: None,
        knowledge_sources: vec![],
        command_id: None,
    })
    .await;
    let e = r.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(
        e,
        ServerFrame::Error {
            code: ErrorCode::Invalid,
            ..
        }
    ));
}

//! Bad input gets the documented error frame or close code, never a panic,
//! and other clients carry on.

use std::sync::Arc;
use std::time::Duration;

use eva_hub::client::{Client, ClientError, ConnectOptions};
use eva_hub::protocol::model::{Event, Role, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};
use eva_hub::store::memory::MemoryStore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::support::*;

async fn error_code(c: &mut TestClient) -> ErrorCode {
    match c.until(|f| matches!(f, ServerFrame::Error { .. })).await {
        ServerFrame::Error { code, .. } => code,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn garbage_unknown_types_and_early_frames_get_error_frames() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut bystander = app
        .connect(Role::Participant, "bystander", Codec::MsgPack)
        .await;
    bystander.join(id).await;

    let mut c = app.connect(Role::Participant, "mallory", Codec::Json).await;
    c.client
        .send_raw(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(error_code(&mut c).await, ErrorCode::BadFrame);
    c.client
        .send_raw(Message::Text(r#"{"type":"dance"}"#.into()))
        .await
        .unwrap();
    assert_eq!(error_code(&mut c).await, ErrorCode::UnknownType);
    c.client
        .send_raw(Message::Text(
            r#"{"type":"question","session":"nope"}"#.into(),
        ))
        .await
        .unwrap();
    assert_eq!(error_code(&mut c).await, ErrorCode::BadFrame);
    // A frame before join.
    c.send(&ClientFrame::Question {
        session: id,
        id: "q".into(),
        text: "hello?".into(),
    })
    .await;
    assert_eq!(error_code(&mut c).await, ErrorCode::NotJoined);
    // Still usable.
    c.join(id).await;

    let mut m = app
        .connect(Role::Participant, "mallory-2", Codec::MsgPack)
        .await;
    m.client
        .send_raw(Message::Binary(vec![0xc1, 0xff, 0x00].into()))
        .await
        .unwrap();
    assert_eq!(error_code(&mut m).await, ErrorCode::BadFrame);

    // Everyone else is unaffected.
    r.send(&ClientFrame::State {
        session: id,
        state: StatePatch {
            current_slide: Some(3),
            ..Default::default()
        },
        id: None,
    })
    .await;
    let (_, e) = bystander.event("state").await;
    assert!(matches!(e, Event::State { state } if state.current_slide == 3));
}

#[tokio::test]
async fn an_empty_or_overlong_optional_id_is_refused_every_time() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let slide = |n: i32, msg_id: &str| ClientFrame::State {
        session: id,
        state: StatePatch {
            current_slide: Some(n),
            ..Default::default()
        },
        id: Some(msg_id.into()),
    };
    // Refused, not remembered: the second `""` is refused again rather
    // than acknowledged as a duplicate of the first.
    for bad in ["", "", &"x".repeat(65)] {
        r.send(&slide(2, bad)).await;
        match r
            .until(|f| matches!(f, ServerFrame::Error { .. } | ServerFrame::Ack { .. }))
            .await
        {
            ServerFrame::Error {
                code, id: echoed, ..
            } => {
                assert_eq!(code, ErrorCode::Invalid);
                assert_eq!(echoed.as_deref(), Some(bad));
            }
            other => panic!("id {bad:?} was accepted: {other:?}"),
        }
    }
    // A good id still works.
    r.send(&slide(4, "s-4")).await;
    assert!(matches!(
        r.until(|f| matches!(f, ServerFrame::Error { .. } | ServerFrame::Ack { .. }))
            .await,
        ServerFrame::Ack { .. }
    ));
}

#[tokio::test]
async fn transport_violations_close_with_their_codes() {
    let app = spawn_app().await;
    // Binary on the JSON subprotocol.
    let mut c = app.connect(Role::Participant, "a", Codec::Json).await;
    c.client
        .send_raw(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(c.closed().await, Some(1003));
    // Text on the MessagePack subprotocol.
    let mut c = app.connect(Role::Participant, "b", Codec::MsgPack).await;
    c.client.send_raw(Message::Text("{}".into())).await.unwrap();
    assert_eq!(c.closed().await, Some(1003));
    // A text frame that is not UTF-8.
    let mut c = app.connect(Role::Participant, "c", Codec::Json).await;
    let frame = Frame::message(vec![0x7b, 0xff, 0xfe, 0x7d], OpCode::Data(Data::Text), true);
    c.client.send_raw(Message::Frame(frame)).await.unwrap();
    assert_eq!(c.closed().await, Some(1007));
    // A message over the limit (64 KiB by default).
    let mut c = app.connect(Role::Participant, "d", Codec::Json).await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(100_000));
    c.client.send_raw(Message::Text(big.into())).await.unwrap();
    assert_eq!(c.closed().await, Some(1009));
    // Too many undecodable frames.
    let mut c = app.connect(Role::Participant, "e", Codec::Json).await;
    for _ in 0..20 {
        if c.client
            .send_raw(Message::Text("garbage".into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(c.closed().await, Some(4500));
    // The hub is fine.
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn handshakes_without_a_supported_subprotocol_get_400_with_a_reason() {
    let app = spawn_app().await;
    for offered in [vec![], vec!["chat".to_owned()]] {
        let mut opts = ConnectOptions::new(Codec::Json, "dev:participant:x");
        opts.subprotocols = Some(offered);
        match Client::connect(app.addr, opts).await {
            Err(ClientError::Refused { status, body }) => {
                assert_eq!(status, 400);
                assert!(
                    body.contains("eva.v1.json") && body.contains("eva.v1.msgpack"),
                    "{body}"
                );
            }
            other => panic!("expected 400, got {other:?}"),
        }
    }
    // Bad credentials in the header: refused before the upgrade.
    match Client::connect(app.addr, ConnectOptions::new(Codec::Json, "dev:wizard:x")).await {
        Err(ClientError::Refused { status, .. }) => assert_eq!(status, 401),
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn unauthenticated_connections_must_authenticate_first_and_fast() {
    let mut settings = test_settings();
    settings.websocket.auth_timeout_ms = 1000;
    let app = spawn_with(settings, Arc::new(MemoryStore::new())).await;
    let mut opts = ConnectOptions::new(Codec::Json, "dev:participant:x");
    opts.token = None;
    // A frame other than auth first.
    let mut c = TestClient {
        client: Client::connect(app.addr, opts.clone()).await.unwrap(),
    };
    c.send(&ClientFrame::Ping { nonce: None }).await;
    assert_eq!(c.closed().await, Some(4501));
    // Nothing at all.
    let mut c = TestClient {
        client: Client::connect(app.addr, opts.clone()).await.unwrap(),
    };
    assert_eq!(c.closed().await, Some(4503));
    // The token in the first frame, as browsers do.
    let mut opts = ConnectOptions::new(Codec::MsgPack, "dev:participant:browser");
    opts.token_in_frame = true;
    let mut c = TestClient {
        client: Client::connect(app.addr, opts).await.unwrap(),
    };
    assert!(matches!(c.next().await, ServerFrame::Welcome { .. }));
    c.send(&ClientFrame::Ping { nonce: Some(9) }).await;
    assert!(matches!(
        c.next().await,
        ServerFrame::Pong { nonce: Some(9), .. }
    ));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.send(&ClientFrame::Ping { nonce: Some(10) }).await;
    assert!(
        matches!(
            c.next().await,
            ServerFrame::Pong {
                nonce: Some(10),
                ..
            }
        ),
        "authenticated connections stay"
    );
}

//! Operator interventions, alerts and renderer metrics.

use std::time::Duration;

use eva_hub::protocol::model::{AlertType, Command, Event, RendererMetrics, Role, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame, SessionStatus};

use crate::support::*;

fn response(
    session: eva_hub::ids::SessionId,
    id: &str,
    command_id: Option<eva_hub::ids::EventId>,
) -> ClientFrame {
    ClientFrame::Response {
        session,
        id: id.into(),
        question_id: None,
        text: format!("answer {id}"),
        confidence: 0.8,
        response_time_ms: 100,
        intent: None,
        knowledge_sources: vec![],
        command_id,
    }
}

#[tokio::test]
async fn takeover_holds_autonomous_answers_and_passes_commanded_ones() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op-a", Codec::Json).await;
    op.join(id).await;
    let mut op_b = app.connect(Role::Operator, "op-b", Codec::MsgPack).await;
    op_b.join(id).await;
    let mut p = app.connect(Role::Participant, "p", Codec::Json).await;
    p.join(id).await;

    op.send(&ClientFrame::Takeover {
        session: id,
        reason: Some("off topic".into()),
        id: Some("t".into()),
    })
    .await;
    op.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "t"))
        .await;
    let (_, e) = r.event("takeover").await;
    assert!(matches!(e, Event::Takeover { ref operator_id, .. } if operator_id == "op-a"));
    // One controller at a time.
    op_b.send(&ClientFrame::Takeover {
        session: id,
        reason: None,
        id: Some("t2".into()),
    })
    .await;
    let e = op_b.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(
        e,
        ServerFrame::Error {
            code: ErrorCode::Conflict,
            ..
        }
    ));
    // Only the controller commands.
    op_b.send(&ClientFrame::Command {
        session: id,
        id: "c".into(),
        command: Command::GotoSlide { slide: 2 },
    })
    .await;
    let e = op_b.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(
        e,
        ServerFrame::Error {
            code: ErrorCode::NotController,
            ..
        }
    ));

    // The renderer's own answer is held: operators see it, participants don't.
    r.send(&response(id, "auto-1", None)).await;
    let (_, held) = op.event("response_held").await;
    let Event::ResponseHeld(held) = held else {
        unreachable!()
    };
    p.none_within(Duration::from_millis(200), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Response(_),
                ..
            }
        )
    })
    .await;

    // "Say this": the renderer gets the command and answers with its id;
    // that answer passes.
    op.send(&ClientFrame::Command {
        session: id,
        id: "say".into(),
        command: Command::Say {
            text: "Let's move on.".into(),
        },
    })
    .await;
    let (_, cmd) = r.event("command").await;
    let Event::Command {
        command_id,
        command: Command::Say { text },
        ..
    } = cmd
    else {
        panic!("{cmd:?}")
    };
    assert_eq!(text, "Let's move on.");
    r.send(&ClientFrame::CommandAck {
        session: id,
        command_id,
    })
    .await;
    r.send(&response(id, "said", Some(command_id))).await;
    let (_, e) = p.event("response").await;
    assert!(matches!(e, Event::Response(b) if b.command_id == Some(command_id)));

    // The controller approves the held answer: now participants get it.
    op.send(&ClientFrame::Approve {
        session: id,
        response_id: held.response_id,
        id: Some("ok".into()),
    })
    .await;
    let (_, e) = p.event("response").await;
    assert!(matches!(e, Event::Response(b) if b.response_id == held.response_id));

    // Pause by command moves the lifecycle.
    op.send(&ClientFrame::Command {
        session: id,
        id: "pause".into(),
        command: Command::Pause,
    })
    .await;
    let (_, e) = p.event("lifecycle").await;
    assert!(matches!(
        e,
        Event::Lifecycle {
            status: SessionStatus::Paused,
            ..
        }
    ));

    op.send(&ClientFrame::Release {
        session: id,
        id: Some("rel".into()),
    })
    .await;
    op.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "rel"))
        .await;
    r.event("release").await;
    // After release, answers flow again.
    r.send(&response(id, "auto-2", None)).await;
    p.event("response").await;

    let (_, list) = app.get(&format!("/v1/sessions/{id}/interventions")).await;
    let t = &list["items"].as_array().unwrap()[0];
    assert_eq!(t["intervention_type"], "takeover");
    assert_eq!(t["operator_id"], "op-a");
    assert!(t["ended_at"].is_string(), "release records the end: {t}");
}

#[tokio::test]
async fn suggestions_stay_with_staff_and_corrections_reach_everyone() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::MsgPack).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    let mut p = app.connect(Role::Participant, "p", Codec::MsgPack).await;
    p.join(id).await;
    op.send(&ClientFrame::Suggestion {
        session: id,
        id: "s".into(),
        text: "slow down".into(),
    })
    .await;
    r.event("suggestion").await;
    r.send(&response(id, "r1", None)).await;
    let (_, e) = p.event("response").await;
    let Event::Response(body) = e else {
        unreachable!()
    };
    op.send(&ClientFrame::Correction {
        session: id,
        id: "c".into(),
        response_id: body.response_id,
        text: "Actually, 30 days.".into(),
    })
    .await;
    let (_, e) = p.event("correction").await;
    assert!(matches!(e, Event::Correction { response_id, .. } if response_id == body.response_id));
    // A correction must reference a response of this session.
    op.send(&ClientFrame::Correction {
        session: id,
        id: "c2".into(),
        response_id: eva_hub::ids::EventId::new(),
        text: "?".into(),
    })
    .await;
    let e = op.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(
        e,
        ServerFrame::Error {
            code: ErrorCode::UnknownReference,
            ..
        }
    ));
    p.none_within(Duration::from_millis(200), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Suggestion { .. },
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn emergency_stop_skips_the_queue_and_pauses_the_session() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    op.send(&ClientFrame::EmergencyStop {
        session: id,
        id: "stop".into(),
        reason: Some("inappropriate".into()),
    })
    .await;
    let urgent = r
        .until(|f| {
            matches!(
                f,
                ServerFrame::Urgent { .. }
                    | ServerFrame::Event {
                        event: Event::EmergencyStop { .. },
                        ..
                    }
            )
        })
        .await;
    let ServerFrame::Urgent {
        intervention_id,
        seq,
        ..
    } = urgent
    else {
        panic!("the urgent notice comes first: {urgent:?}")
    };
    // The same stop follows in order.
    let (s, _) = r.event("emergency_stop").await;
    assert_eq!(s, seq);
    r.send(&ClientFrame::CommandAck {
        session: id,
        command_id: intervention_id,
    })
    .await;
    // The operator sees the stop acknowledged, the session paused and its
    // own frame acknowledged, in whatever order they interleave.
    let (mut acked, mut paused, mut ack) = (false, false, false);
    while !(acked && paused && ack) {
        match op.next().await {
            ServerFrame::Event {
                event: Event::CommandAck { command_id, .. },
                ..
            } => acked = command_id == intervention_id,
            ServerFrame::Event {
                event:
                    Event::Lifecycle {
                        status: SessionStatus::Paused,
                        ..
                    },
                ..
            } => paused = true,
            ServerFrame::Ack { id, .. } if id == "stop" => ack = true,
            _ => {}
        }
    }
    // Acknowledged in time: no alert.
    op.none_within(Duration::from_millis(600), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Alert { .. },
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn an_unacknowledged_emergency_stop_raises_an_alert_that_operators_acknowledge() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::MsgPack).await;
    let mut op = app.connect(Role::Operator, "op", Codec::MsgPack).await;
    op.join(id).await;
    op.send(&ClientFrame::EmergencyStop {
        session: id,
        id: "stop".into(),
        reason: None,
    })
    .await;
    r.until(|f| matches!(f, ServerFrame::Urgent { .. })).await; // and never acknowledges
    let (_, e) = op.event("alert").await;
    let Event::Alert { alert } = e else {
        unreachable!()
    };
    assert_eq!(alert.alert_type, AlertType::EmergencyStopUnacknowledged);
    let snap = app
        .connect(Role::Operator, "op2", Codec::Json)
        .await
        .join(id)
        .await;
    assert_eq!(snap.alerts.unwrap().len(), 1);
    op.send(&ClientFrame::AckAlert {
        session: id,
        alert_id: alert.alert_id,
        id: Some("ack".into()),
    })
    .await;
    let (_, e) = op.event("alert_ack").await;
    assert!(matches!(e, Event::AlertAck { ref by, .. } if by == "op"));
    op.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "ack"))
        .await;
    let (_, alerts) = app.get(&format!("/v1/sessions/{id}/alerts")).await;
    let a = &alerts["items"].as_array().unwrap()[0];
    assert_eq!(a["alert_type"], "emergency_stop_unacknowledged");
    assert_eq!(a["acknowledged"], true);
    assert_eq!(a["acknowledged_by"], "op");
}

#[tokio::test]
async fn losing_the_renderer_of_a_live_session_raises_an_alert() {
    let app = spawn_app().await;
    let (id, r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    drop(r);
    let (_, e) = op.event("renderer").await;
    assert!(matches!(
        e,
        Event::Renderer {
            connected: false,
            ..
        }
    ));
    let (_, e) = op.event("alert").await;
    assert!(
        matches!(e, Event::Alert { alert } if alert.alert_type == AlertType::RendererHeartbeatLost)
    );
}

#[tokio::test]
async fn metrics_are_conflated_for_operators_and_thresholds_alert() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    for i in 0..100 {
        r.send(&ClientFrame::Metrics {
            session: id,
            metrics: RendererMetrics {
                latency_ms: Some(i as f64),
                fps: Some(30.0),
                ..Default::default()
            },
        })
        .await;
    }
    r.send(&ClientFrame::State {
        session: id,
        state: StatePatch::default(),
        id: Some("sync".into()),
    })
    .await;
    r.until(|f| matches!(f, ServerFrame::Ack { .. })).await;
    // At a 100 ms interval, 100 quick reports become a few events, the
    // last carrying the latest value.
    let mut events = 0;
    let mut last = None;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    let give_up = tokio::time::Instant::now() + WAIT;
    while (tokio::time::Instant::now() < deadline || last != Some(99.0))
        && tokio::time::Instant::now() < give_up
    {
        if let Ok(eva_hub::client::Incoming::Frame(ServerFrame::Event {
            event: Event::Metrics { metrics },
            ..
        })) = op.client.recv_timeout(Duration::from_millis(100)).await
        {
            events += 1;
            last = metrics.latency_ms;
        }
    }
    // However slow the machine, far fewer events than reports.
    assert!(
        (1..=8).contains(&events),
        "{events} metrics events for 100 reports"
    );
    assert_eq!(last, Some(99.0));
    // GPU past its threshold raises one alert, not one per report.
    for _ in 0..3 {
        r.send(&ClientFrame::Metrics {
            session: id,
            metrics: RendererMetrics {
                gpu_usage: Some(0.99),
                ..Default::default()
            },
        })
        .await;
    }
    let (_, e) = op.event("alert").await;
    assert!(
        matches!(e, Event::Alert { alert } if alert.alert_type == AlertType::MetricThreshold && alert.metadata["metric"] == "gpu_usage")
    );
    op.none_within(Duration::from_millis(300), |f| {
        matches!(
            f,
            ServerFrame::Event {
                event: Event::Alert { .. },
                ..
            }
        )
    })
    .await;
}

#[tokio::test]
async fn ending_a_taken_over_session_releases_it() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    op.send(&ClientFrame::Takeover {
        session: id,
        reason: None,
        id: Some("t".into()),
    })
    .await;
    op.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "t"))
        .await;
    r.send(&ClientFrame::Status {
        session: id,
        status: SessionStatus::Failed,
        reason: Some("crash".into()),
        id: None,
    })
    .await;
    let (_, e) = op.event("release").await;
    assert!(matches!(
        e,
        Event::Release {
            reason: eva_hub::protocol::model::ReleaseReason::SessionEnded,
            ..
        }
    ));
    // The end row has no sender waiting for it; it lands with the next flush.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, list) = app.get(&format!("/v1/sessions/{id}/interventions")).await;
        if list["items"][0]["ended_at"].is_string() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_takeover_whose_operator_is_gone_expires() {
    let app = spawn_app().await;
    let (id, mut r) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;
    op.send(&ClientFrame::Takeover {
        session: id,
        reason: None,
        id: Some("t".into()),
    })
    .await;
    op.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "t"))
        .await;
    r.event("takeover").await;
    drop(op);
    // Presence grace, then takeover grace: the hub releases it.
    let (_, e) = r.event("release").await;
    assert!(matches!(
        e,
        Event::Release {
            reason: eva_hub::protocol::model::ReleaseReason::Expired,
            ..
        }
    ));
}

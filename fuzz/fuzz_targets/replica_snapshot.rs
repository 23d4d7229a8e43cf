//! Replica checkpoints (`session::snapshot`): a node that starts watching a
//! live session restores another node's snapshot and folds the stream
//! after it. Valid snapshots are made the way the hub makes them: a
//! sequence of events built from the fuzz input is folded into a live
//! replica, and at a resume point chosen by the input its snapshot is
//! taken. Then:
//!
//! - `restore(decode(encode(x)))` snapshots to exactly the bytes of `x`
//!   (floats bit for bit, bounded maps in eviction order);
//! - the restored replica, fed the rest of the events, ends where the live
//!   one does;
//! - `decode` of arbitrary bytes is an error or a snapshot, never a panic.

#![no_main]

use std::sync::Arc;

use arbitrary::{Result, Unstructured};
use eva_hub::ids::{Epoch, EventId, SessionId, TenantId};
use eva_hub::protocol::model::{
    Alert, AlertType, Command, Counters, CustomAudience, Event, Member, PresenceChange,
    ReleaseReason, RendererMetrics, ResponseBody, Role, SessionState, SessionStatus, Severity,
    StageLatencies, StreamPosition,
};
use eva_hub::session::{ReplicaLimits, ReplicaSnapshot, Session};
use eva_hub::store::SessionRecord;
use eva_hub::stream::{Origin, Published};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use uuid::Uuid;

const MAX_EVENTS: usize = 64;
const T0: u64 = 1_700_000_000_000;

/// Small caps, so short sequences already overflow and evict.
fn limits() -> ReplicaLimits {
    ReplicaLimits {
        history_size: 16,
        dedupe_window: 3,
        recent_refs_max: 4,
        held_responses_max: 3,
        snapshot_members_max: 100,
        replay_max_bytes: 1 << 20,
    }
}

fn record(id: SessionId, tenant: TenantId) -> SessionRecord {
    SessionRecord {
        id,
        tenant,
        avatar_id: None,
        name: Some("fuzz".into()),
        description: None,
        status: SessionStatus::Created,
        config: json!({}),
        created_at: chrono::DateTime::from_timestamp_millis(T0 as i64).expect("in range"),
        started_at: None,
        ended_at: None,
        counters: Counters::default(),
        last_error: None,
        state: SessionState::default(),
        context: json!({}),
        external_id: None,
    }
}

/// Ids from a small pool per kind, so later events find earlier ones.
fn id(u: &mut Unstructured, kind: u128) -> Result<EventId> {
    Ok(EventId::from(Uuid::from_u128(
        (kind << 8) | u.int_in_range(0..=5)? as u128,
    )))
}

fn pick<'a>(u: &mut Unstructured, pool: &[&'a str]) -> Result<&'a str> {
    Ok(pool[u.choose_index(pool.len())?])
}

fn text(u: &mut Unstructured) -> Result<String> {
    if u.arbitrary()? {
        Ok(pick(
            u,
            &["", "hello", "How did Q3 go?", "é ✓ \u{1F600}", "\"\\\n"],
        )?
        .to_owned())
    } else {
        let s: &str = u.arbitrary()?;
        Ok(s.chars().take(24).collect())
    }
}

fn opt_text(u: &mut Unstructured) -> Result<Option<String>> {
    if u.arbitrary()? {
        Ok(Some(text(u)?))
    } else {
        Ok(None)
    }
}

/// Any finite float: JSON has no NaN or infinity, and the hub refuses them
/// at the edge.
fn float(u: &mut Unstructured) -> Result<f64> {
    let f = f64::from_bits(u.arbitrary()?);
    Ok(if f.is_finite() { f } else { 0.5 })
}

fn opt_float(u: &mut Unstructured) -> Result<Option<f64>> {
    if u.arbitrary()? {
        Ok(Some(float(u)?))
    } else {
        Ok(None)
    }
}

fn value(u: &mut Unstructured, depth: u8) -> Result<Value> {
    Ok(match u.int_in_range(0..=6)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u.arbitrary::<i64>()?),
        3 => json!(float(u)?),
        4 => Value::String(text(u)?),
        5 if depth < 3 => {
            let n = u.int_in_range(0..=3)?;
            Value::Array((0..n).map(|_| value(u, depth + 1)).collect::<Result<_>>()?)
        }
        _ if depth < 3 => object(u, depth + 1)?,
        _ => Value::Null,
    })
}

fn object(u: &mut Unstructured, depth: u8) -> Result<Value> {
    let mut map = serde_json::Map::new();
    for _ in 0..u.int_in_range(0..=3)? {
        map.insert(text(u)?, value(u, depth)?);
    }
    Ok(Value::Object(map))
}

fn status(u: &mut Unstructured) -> Result<SessionStatus> {
    Ok(SessionStatus::ALL[u.choose_index(SessionStatus::ALL.len())?])
}

fn role(u: &mut Unstructured) -> Result<Role> {
    Ok([Role::Renderer, Role::Operator, Role::Participant][u.choose_index(3)?])
}

fn response(u: &mut Unstructured) -> Result<ResponseBody> {
    Ok(ResponseBody {
        response_id: id(u, 2)?,
        question_id: if u.arbitrary()? {
            Some(id(u, 1)?)
        } else {
            None
        },
        text: text(u)?,
        confidence: float(u)?,
        response_time_ms: u.arbitrary()?,
        intent: opt_text(u)?,
        knowledge_sources: vec![text(u)?; u.int_in_range(0..=2)?],
        command_id: if u.arbitrary()? {
            Some(id(u, 3)?)
        } else {
            None
        },
    })
}

fn command(u: &mut Unstructured) -> Result<Command> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Command::Say { text: text(u)? },
        1 => Command::GotoSlide {
            slide: u.arbitrary()?,
        },
        2 => Command::Pause,
        _ => Command::Resume,
    })
}

/// One event as some publisher of the hub could send it, and its origin.
fn event(u: &mut Unstructured, fence: &mut u64) -> Result<(Event, Origin)> {
    let operator = || -> &'static str { "op-1" };
    let event = match u.int_in_range(0..=21)? {
        0 => Event::Created { name: opt_text(u)? },
        1 => Event::Lifecycle {
            status: status(u)?,
            previous: status(u)?,
            reason: opt_text(u)?,
            by: opt_text(u)?,
        },
        2 => Event::State {
            state: SessionState {
                current_slide: u.arbitrary()?,
                presentation_mode: text(u)?,
                is_speaking: u.arbitrary()?,
                awaiting_questions: u.arbitrary()?,
                operator_connected: u.arbitrary()?,
                current_topic: opt_text(u)?,
                last_interaction: u.arbitrary()?,
            },
        },
        3 => Event::Context {
            context: object(u, 0)?,
        },
        4 => Event::Presence {
            change: if u.arbitrary()? {
                PresenceChange::Join
            } else {
                PresenceChange::Leave
            },
            member: Member {
                id: pick(u, &["p-0", "p-1", "p-2", "op-1", "r-0"])?.to_owned(),
                role: role(u)?,
                name: opt_text(u)?,
            },
            participant_count: u.arbitrary()?,
        },
        5 => Event::Counters {
            counters: Counters {
                participant_count: u.arbitrary()?,
                questions_received: u.arbitrary()?,
                operator_interventions: u.arbitrary()?,
                error_count: u.arbitrary()?,
            },
        },
        6 => {
            // A new renderer takes a higher fence; a disconnect keeps it.
            if u.arbitrary()? {
                *fence += 1;
            }
            Event::Renderer {
                connected: u.arbitrary()?,
                fence: *fence,
                renderer_id: opt_text(u)?,
            }
        }
        7 => Event::Question {
            question_id: id(u, 1)?,
            participant_id: pick(u, &["p-0", "p-1", "p-2"])?.to_owned(),
            participant_name: opt_text(u)?,
            text: text(u)?,
        },
        8 => Event::Response(Box::new(response(u)?)),
        9 => Event::ResponseHeld(Box::new(response(u)?)),
        10 => Event::Takeover {
            intervention_id: id(u, 4)?,
            operator_id: operator().into(),
            reason: opt_text(u)?,
        },
        11 => Event::Release {
            intervention_id: id(u, 4)?,
            operator_id: operator().into(),
            reason: [
                ReleaseReason::Released,
                ReleaseReason::Expired,
                ReleaseReason::SessionEnded,
            ][u.choose_index(3)?],
        },
        12 => Event::Command {
            command_id: id(u, 3)?,
            operator_id: operator().into(),
            command: command(u)?,
        },
        13 => Event::CommandAck {
            command_id: id(u, 3)?,
            latency_ms: u.arbitrary()?,
        },
        14 => Event::Suggestion {
            intervention_id: id(u, 4)?,
            operator_id: operator().into(),
            text: text(u)?,
        },
        15 => Event::Correction {
            intervention_id: id(u, 4)?,
            operator_id: operator().into(),
            response_id: id(u, 2)?,
            text: text(u)?,
        },
        16 => Event::EmergencyStop {
            intervention_id: id(u, 3)?,
            operator_id: operator().into(),
            reason: opt_text(u)?,
        },
        17 => Event::Metrics {
            metrics: Box::new(RendererMetrics {
                latency_ms: opt_float(u)?,
                cpu_usage: opt_float(u)?,
                gpu_usage: opt_float(u)?,
                memory_usage: opt_float(u)?,
                fps: opt_float(u)?,
                stages: StageLatencies {
                    stt_ms: opt_float(u)?,
                    llm_ms: opt_float(u)?,
                    tts_ms: opt_float(u)?,
                    total_ms: opt_float(u)?,
                },
                component: opt_text(u)?,
            }),
        },
        18 => Event::Alert {
            alert: Box::new(Alert {
                alert_id: id(u, 5)?,
                alert_type: [
                    AlertType::RendererHeartbeatLost,
                    AlertType::EmergencyStopUnacknowledged,
                    AlertType::MetricThreshold,
                    AlertType::WebhookDisabled,
                ][u.choose_index(4)?],
                severity: [
                    Severity::Info,
                    Severity::Warning,
                    Severity::Error,
                    Severity::Critical,
                ][u.choose_index(4)?],
                title: text(u)?,
                message: text(u)?,
                component: opt_text(u)?,
                metadata: value(u, 0)?,
                created_at: T0,
            }),
        },
        19 => Event::AlertAck {
            alert_id: id(u, 5)?,
            by: operator().into(),
        },
        _ => Event::Custom {
            name: "job.progress".into(),
            audience: [
                CustomAudience::All,
                CustomAudience::Staff,
                CustomAudience::Operators,
                CustomAudience::Renderer,
            ][u.choose_index(4)?],
            data: Box::new(value(u, 0)?),
            from: operator().into(),
        },
    };
    let origin = match u.int_in_range(0..=3)? {
        0 => Origin::hub(),
        sender => {
            let role = [Role::Renderer, Role::Operator, Role::Participant][sender as usize - 1];
            Origin {
                sender: format!("{}-0", role.as_str()),
                role: Some(role),
                client_id: if u.arbitrary()? {
                    Some(pick(u, &["c-0", "c-1", "c-2", "c-3", "c-4"])?.to_owned())
                } else {
                    None
                },
                // Sometimes a replaced renderer's late frame.
                fence: (role == Role::Renderer)
                    .then(|| fence.saturating_sub(u.int_in_range(0..=1).unwrap_or(0))),
            }
        }
    };
    Ok((event, origin))
}

fn apply(session: &Session, seq: u64, event: &Event, origin: &Origin) {
    let p = Arc::new(Published::new(
        session.id,
        seq,
        T0 + seq * 1000,
        event.clone(),
        origin.clone(),
    ));
    session.lock().apply(&p);
}

fn encoded(session: &Session) -> Vec<u8> {
    session.lock().replica_snapshot().encode()
}

fuzz_target!(|data: &[u8]| {
    // Whatever the bytes are, decoding them is an answer, not a panic.
    let _ = ReplicaSnapshot::decode(data);

    let mut u = Unstructured::new(data);
    let Ok(resume) = u.int_in_range(0..=MAX_EVENTS) else {
        return;
    };
    let mut fence = 1;
    let mut events = Vec::new();
    while events.len() < MAX_EVENTS {
        match event(&mut u, &mut fence) {
            Ok(e) => events.push(e),
            Err(_) => break,
        }
    }
    let resume = resume.min(events.len());

    let (id, tenant) = (
        SessionId::from(Uuid::from_u128(1)),
        TenantId::from(Uuid::from_u128(2)),
    );
    let start = StreamPosition {
        epoch: Epoch(3),
        seq: 0,
    };
    let live = Session::new(&record(id, tenant), start, limits());
    for (seq, (event, origin)) in (1..).zip(&events[..resume]) {
        apply(&live, seq, event, origin);
    }

    let bytes = encoded(&live);
    let snapshot = ReplicaSnapshot::decode(&bytes).expect("a snapshot decodes");
    assert_eq!(snapshot.position(), live.lock().position());
    let restored = Session::restore(id, tenant, snapshot, limits());
    assert_eq!(
        encoded(&restored),
        bytes,
        "restore(encode(x)) differs from x after {resume} events"
    );

    for (seq, (event, origin)) in (1..).zip(&events).skip(resume) {
        apply(&live, seq, event, origin);
        apply(&restored, seq, event, origin);
    }
    assert_eq!(
        encoded(&restored),
        encoded(&live),
        "resumed from {resume} of {} events, the replicas differ",
        events.len()
    );
});

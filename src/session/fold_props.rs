//! The fold is a pure function of the log: any sequence of events, folded
//! live, ends exactly where a replica restored from the snapshot at any
//! resume point `k` ends after folding events `k+1..n`. The fuzz target
//! `replica_snapshot` (`fuzz/`) checks the same property on longer runs.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use uuid::Uuid;

use super::replica::{ReplicaLimits, Session};
use super::snapshot::ReplicaSnapshot;
use crate::ids::{Epoch, EventId, SessionId, TenantId};
use crate::protocol::model::{
    Alert, AlertType, Command, Counters, CustomAudience, Event, Member, PresenceChange,
    ReleaseReason, RendererMetrics, ResponseBody, Role, SessionState, SessionStatus, Severity,
    StageLatencies, StreamPosition,
};
use crate::store::SessionRecord;
use crate::stream::{Origin, Published};

/// Small caps, so short logs already overflow them and eviction order
/// matters.
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

/// Ids from a pool of six per kind, so later events find earlier
/// ones (answers, acks, alert acks).
fn id(kind: u128) -> impl Strategy<Value = EventId> {
    (0u128..6).prop_map(move |i| EventId::from(Uuid::from_u128((kind << 8) | i)))
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("How did Q3 go?".to_owned()),
        "\\PC{0,12}",
    ]
}

/// Any finite float: JSON has neither NaN nor infinity.
fn float() -> impl Strategy<Value = f64> {
    any::<f64>().prop_map(|f| if f.is_finite() { f } else { 0.5 })
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        float().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(Value::from),
            proptest::collection::btree_map(text(), inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn status() -> impl Strategy<Value = SessionStatus> {
    proptest::sample::select(SessionStatus::ALL.to_vec())
}

fn role() -> impl Strategy<Value = Role> {
    proptest::sample::select(vec![Role::Renderer, Role::Operator, Role::Participant])
}

fn participant() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["p-0", "p-1", "p-2"]).prop_map(str::to_owned)
}

fn response() -> impl Strategy<Value = ResponseBody> {
    (
        id(2),
        proptest::option::of(id(1)),
        text(),
        float(),
        any::<u32>(),
        proptest::option::of(text()),
        vec(text(), 0..2),
        proptest::option::of(id(3)),
    )
        .prop_map(
            |(response_id, question_id, text, confidence, ms, intent, ks, cmd)| ResponseBody {
                response_id,
                question_id,
                text,
                confidence,
                response_time_ms: ms,
                intent,
                knowledge_sources: ks,
                command_id: cmd,
            },
        )
}

fn metrics() -> impl Strategy<Value = RendererMetrics> {
    let f = || proptest::option::of(float());
    (
        (f(), f(), f(), f(), f()),
        (f(), f(), f(), f()),
        proptest::option::of(text()),
    )
        .prop_map(
            |((latency, cpu, gpu, memory, fps), (stt, llm, tts, total), c)| RendererMetrics {
                latency_ms: latency,
                cpu_usage: cpu,
                gpu_usage: gpu,
                memory_usage: memory,
                fps,
                stages: StageLatencies {
                    stt_ms: stt,
                    llm_ms: llm,
                    tts_ms: tts,
                    total_ms: total,
                },
                component: c,
            },
        )
}

/// Events as the hub's publishers send them. A `Renderer` event's
/// fence is a placeholder, numbered in order by [`sequence`].
fn event() -> impl Strategy<Value = Event> {
    let op = || Just("op-1".to_owned());
    prop_oneof![
        proptest::option::of(text()).prop_map(|name| Event::Created { name }),
        (status(), status(), proptest::option::of(text())).prop_map(
            |(status, previous, reason)| Event::Lifecycle {
                status,
                previous,
                reason,
                by: None,
            }
        ),
        (
            any::<i32>(),
            text(),
            any::<[bool; 3]>(),
            proptest::option::of(text())
        )
            .prop_map(|(slide, mode, b, topic)| Event::State {
                state: SessionState {
                    current_slide: slide,
                    presentation_mode: mode,
                    is_speaking: b[0],
                    awaiting_questions: b[1],
                    operator_connected: b[2],
                    current_topic: topic,
                    last_interaction: 0,
                },
            }),
        json().prop_map(|context| Event::Context { context }),
        (any::<bool>(), participant(), role(), any::<u32>()).prop_map(|(join, id, role, count)| {
            Event::Presence {
                change: if join {
                    PresenceChange::Join
                } else {
                    PresenceChange::Leave
                },
                member: Member {
                    id,
                    role,
                    name: None,
                },
                participant_count: count,
            }
        }),
        (any::<bool>(), any::<bool>()).prop_map(|(connected, new)| Event::Renderer {
            connected,
            fence: u64::from(new),
            renderer_id: Some("gpu-7".into()),
        }),
        (id(1), participant(), text()).prop_map(|(question_id, p, text)| {
            Event::Question {
                question_id,
                participant_id: p,
                participant_name: None,
                text,
            }
        }),
        response().prop_map(|r| Event::Response(Box::new(r))),
        response().prop_map(|r| Event::ResponseHeld(Box::new(r))),
        (id(4), op()).prop_map(|(intervention_id, operator_id)| Event::Takeover {
            intervention_id,
            operator_id,
            reason: None,
        }),
        (id(4), op()).prop_map(|(intervention_id, operator_id)| Event::Release {
            intervention_id,
            operator_id,
            reason: ReleaseReason::Released,
        }),
        (id(3), op(), any::<i32>()).prop_map(|(command_id, operator_id, slide)| {
            Event::Command {
                command_id,
                operator_id,
                command: Command::GotoSlide { slide },
            }
        }),
        (id(3), any::<u64>()).prop_map(|(command_id, latency_ms)| Event::CommandAck {
            command_id,
            latency_ms,
        }),
        (id(4), op(), text()).prop_map(|(intervention_id, operator_id, text)| {
            Event::Suggestion {
                intervention_id,
                operator_id,
                text,
            }
        }),
        (id(4), id(2), op(), text()).prop_map(
            |(intervention_id, response_id, operator_id, text)| Event::Correction {
                intervention_id,
                operator_id,
                response_id,
                text,
            }
        ),
        (id(3), op(), proptest::option::of(text())).prop_map(
            |(intervention_id, operator_id, reason)| Event::EmergencyStop {
                intervention_id,
                operator_id,
                reason,
            }
        ),
        metrics().prop_map(|metrics| Event::Metrics {
            metrics: Box::new(metrics),
        }),
        (id(5), any::<bool>(), text(), json()).prop_map(|(alert_id, severe, title, metadata)| {
            Event::Alert {
                alert: Box::new(Alert {
                    alert_id,
                    alert_type: AlertType::MetricThreshold,
                    severity: if severe {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    title,
                    message: "latency_ms above 150".into(),
                    component: None,
                    metadata,
                    created_at: 1_700_000_000_000,
                }),
            }
        }),
        (id(5), op()).prop_map(|(alert_id, by)| Event::AlertAck { alert_id, by }),
        json().prop_map(|data| Event::Custom {
            name: "job.progress".into(),
            audience: CustomAudience::Staff,
            data: Box::new(data),
            from: "op-1".into(),
        }),
    ]
}

/// Who sent it: the hub, or a client (renderers with their fence,
/// sometimes a replaced one's), with or without a frame id.
fn origin() -> impl Strategy<Value = (Option<Role>, Option<String>, bool)> {
    (
        proptest::option::of(role()),
        proptest::option::of(
            proptest::sample::select(vec!["c-0", "c-1", "c-2", "c-3"]).prop_map(str::to_owned),
        ),
        any::<bool>(),
    )
}

/// A log: renderer fences numbered as the hub numbers them.
fn sequence() -> impl Strategy<Value = Vec<(Event, Origin)>> {
    vec((event(), origin()), 0..40).prop_map(|raw| {
        let mut fence = 1;
        raw.into_iter()
            .map(|(mut event, (role, client_id, stale))| {
                if let Event::Renderer { fence: f, .. } = &mut event {
                    fence += *f;
                    *f = fence;
                }
                let origin = match role {
                    None => Origin::hub(),
                    Some(role) => Origin {
                        sender: format!("{}-0", role.as_str()),
                        role: Some(role),
                        client_id,
                        fence: (role == Role::Renderer)
                            .then(|| fence - u64::from(stale && fence > 1)),
                    },
                };
                (event, origin)
            })
            .collect()
    })
}

fn fresh() -> Session {
    let record = SessionRecord {
        id: SessionId::new(),
        tenant: TenantId::new(),
        avatar_id: None,
        name: Some("Quarterly review".into()),
        description: None,
        status: SessionStatus::Created,
        config: json!({"voice": "en-GB"}),
        created_at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).expect("in range"),
        started_at: None,
        ended_at: None,
        counters: Counters::default(),
        last_error: None,
        state: SessionState::default(),
        context: json!({}),
        external_id: None,
    };
    Session::new(
        &record,
        StreamPosition {
            epoch: Epoch(7),
            seq: 0,
        },
        limits(),
    )
}

fn fold_into(session: &Session, from: usize, log: &[(Event, Origin)]) {
    let mut g = session.lock();
    for (seq, (event, origin)) in (1..).zip(log).skip(from) {
        let ts = 1_700_000_000_000 + seq * 1000;
        let p = Published::new(session.id, seq, ts, event.clone(), origin.clone());
        g.apply(&Arc::new(p));
    }
}

#[test]
fn resuming_from_any_snapshot_gives_the_live_state() {
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&sequence(), |log| {
            // Snapshots are JSON: compared as text, a failure reads.
            let text = |s: &Session| {
                String::from_utf8(s.lock().replica_snapshot().encode()).expect("JSON is UTF-8")
            };
            let live = fresh();
            let mut snapshots = vec![text(&live)];
            for k in 0..log.len() {
                fold_into(&live, k, &log[..=k]);
                snapshots.push(text(&live));
            }
            let end = snapshots.last().cloned().unwrap_or_default();
            for (k, snapshot) in snapshots.iter().enumerate() {
                let snap = ReplicaSnapshot::decode(snapshot.as_bytes()).expect("decodes");
                let resumed = Session::restore(live.id, live.tenant, snap, limits());
                prop_assert_eq!(
                    &text(&resumed),
                    snapshot,
                    "restore(encode(x)) != x at {}",
                    k
                );
                fold_into(&resumed, k, &log);
                prop_assert_eq!(&text(&resumed), &end, "resumed at {} of {}", k, log.len());
            }
            Ok(())
        })
        .unwrap();
}

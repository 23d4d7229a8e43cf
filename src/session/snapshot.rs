//! A session replica's replicated state at one stream position, so a node
//! can start replicating a live session from a snapshot plus the events
//! after it instead of the whole log.
//!
//! Only what every node folds identically from the same events is shipped;
//! history, subscribers, local presence and pending work stay local.

use std::collections::{HashMap, VecDeque};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::replica::{
    Controller, Info, Pending, PendingCommand, QuestionRef, RendererSlot, Replica, ReplicaLimits,
    ReportedJob, Seen, Session, Subscribers,
};
use crate::ids::{Epoch, EventId, Seq, SessionId, TenantId};
use crate::protocol::model::{
    Alert, Counters, Member, RendererMetrics, ResponseBody, SessionState, StreamPosition,
};
use crate::recent::RecentMap;

/// Version of the encoded layout; bump it on any change to the fields.
pub const FORMAT_VERSION: u32 = 1;

/// The replicated fields of [`Replica`] at `(epoch, seq)`.
///
/// Maps are lists of pairs: JSON objects cannot have tuple keys, and the
/// bounded maps must keep their insertion order so a restored replica
/// evicts the same entries next.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaSnapshot {
    version: u32,
    pub epoch: Epoch,
    pub seq: Seq,
    pub info: Info,
    pub state: SessionState,
    pub context: Value,
    pub counters: Counters,
    /// In presence order.
    pub members: Vec<(String, Member)>,
    pub controller: Option<Controller>,
    pub renderer: RendererSlot,
    pub metrics: Option<RendererMetrics>,
    pub open_alerts: VecDeque<Alert>,
    pub held: VecDeque<ResponseBody>,
    /// Oldest first.
    pub questions: Vec<(EventId, QuestionRef)>,
    /// Oldest first.
    pub responses: Vec<EventId>,
    /// Sorted by id, so equal replicas encode to equal bytes.
    pub commands: Vec<(EventId, PendingCommand)>,
    /// Oldest first.
    pub dedupe: Vec<((String, String), Seen)>,
    /// Sorted by participant, so equal replicas encode to equal bytes.
    pub questions_asked: Vec<(String, i32)>,
    /// Oldest change first. Checkpoints from before jobs read as none.
    #[serde(default)]
    pub jobs: Vec<ReportedJob>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Written by a node with a different snapshot layout.
    #[error("replica snapshot format version {found} is not supported (expected {expected})")]
    UnsupportedVersion { found: u32, expected: u32 },
    #[error("malformed replica snapshot: {0}")]
    Malformed(#[from] serde_json::Error),
}

impl ReplicaSnapshot {
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    // JSON, not MessagePack: rmp-serde mishandles the model's internally tagged enums.
    pub fn encode(&self) -> Vec<u8> {
        // Cannot fail: every map key is a string and no type refuses.
        serde_json::to_vec(self).expect("a replica snapshot serializes to JSON")
    }

    /// # Errors
    /// [`SnapshotError::UnsupportedVersion`] for another layout version,
    /// [`SnapshotError::Malformed`] for anything that is not a snapshot.
    pub fn decode(bytes: &[u8]) -> Result<ReplicaSnapshot, SnapshotError> {
        // The version first, so a layout change reads as such rather than
        // as whatever field happens to fail.
        #[derive(Deserialize)]
        struct Header {
            version: u32,
        }
        let Header { version } = serde_json::from_slice(bytes)?;
        if version != FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl Replica {
    /// The replicated state at the current position.
    pub fn replica_snapshot(&self) -> ReplicaSnapshot {
        let mut commands: Vec<_> = self.commands.iter().map(|(k, v)| (*k, v.clone())).collect();
        commands.sort_unstable_by_key(|(k, _)| *k);
        let mut questions_asked: Vec<_> = self
            .questions_asked
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        questions_asked.sort_unstable();
        ReplicaSnapshot {
            version: FORMAT_VERSION,
            epoch: self.epoch,
            seq: self.seq,
            info: self.info.clone(),
            state: self.state.clone(),
            context: self.context.clone(),
            counters: self.counters,
            members: self
                .members
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            controller: self.controller.clone(),
            renderer: self.renderer.clone(),
            metrics: self.metrics.clone(),
            open_alerts: self.open_alerts.clone(),
            held: self.held.clone(),
            questions: self
                .questions
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            responses: self.responses.iter().map(|(k, ())| *k).collect(),
            commands,
            dedupe: self.dedupe.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            questions_asked,
            jobs: self.reported_jobs.values().cloned().collect(),
        }
    }
}

impl Session {
    /// A replica of a live session from a snapshot of another replica;
    /// applying the stream's events after `snapshot.seq` keeps it exact.
    ///
    /// Unlike [`Session::new`], presence-derived state (operator_connected,
    /// participant_count) is kept: the snapshot describes a live session.
    /// Local state starts empty, and bounded collections take their caps
    /// from `limits`.
    pub fn restore(
        id: SessionId,
        tenant: TenantId,
        snapshot: ReplicaSnapshot,
        limits: ReplicaLimits,
    ) -> Session {
        let s = snapshot;
        // Replaying insertions oldest first rebuilds the eviction order.
        let mut questions = RecentMap::new(limits.recent_refs_max);
        for (k, v) in s.questions {
            questions.insert(k, v);
        }
        let mut responses = RecentMap::new(limits.recent_refs_max);
        for k in s.responses {
            responses.insert(k, ());
        }
        let mut dedupe = RecentMap::new(limits.dedupe_window);
        for (k, v) in s.dedupe {
            dedupe.insert(k, v);
        }
        // Latencies of commands issued before the restore are measured from
        // it: the issuing node's clock means nothing here.
        let issued_us = crate::clock::mono_us();
        let commands: HashMap<_, _> = s
            .commands
            .into_iter()
            .map(|(k, c)| (k, PendingCommand { issued_us, ..c }))
            .collect();
        let mut open_alerts = s.open_alerts;
        open_alerts.drain(..open_alerts.len().saturating_sub(limits.recent_refs_max));
        let jobs_over = s.jobs.len().saturating_sub(limits.recent_refs_max);
        let mut held = s.held;
        held.drain(..held.len().saturating_sub(limits.held_responses_max));
        let replica = Replica {
            epoch: s.epoch,
            seq: s.seq,
            info: s.info,
            state: s.state,
            context: s.context,
            counters: s.counters,
            members: s.members.into_iter().collect::<IndexMap<_, _>>(),
            controller: s.controller,
            renderer: s.renderer,
            metrics: s.metrics,
            open_alerts,
            held,
            questions,
            responses,
            commands,
            dedupe,
            questions_asked: s.questions_asked.into_iter().collect(),
            reported_jobs: s
                .jobs
                .into_iter()
                .skip(jobs_over)
                .map(|j| (j.job.id, j))
                .collect(),
            history: VecDeque::new(),
            subs: Subscribers::default(),
            local_renderer: None,
            local_members: HashMap::new(),
            pending: Pending::default(),
            limits,
            deliveries: Vec::new(),
            last_delivery: 0,
            delivering: false,
        };
        Session::from_replica(id, tenant, replica)
    }
}

impl Replica {
    /// Replaces the replicated state with `snap`; what is local to this
    /// node (connections, presence here, pending work) stays.
    pub(super) fn install(&mut self, id: SessionId, snap: ReplicaSnapshot) {
        let mut fresh = Session::restore(id, TenantId::default(), snap, self.limits)
            .inner
            .into_inner();
        fresh.subs = std::mem::take(&mut self.subs);
        fresh.local_renderer = self.local_renderer;
        fresh.local_members = std::mem::take(&mut self.local_members);
        fresh.pending = std::mem::take(&mut self.pending);
        // Deliveries already queued still go out, in order, after which
        // this replica's own continue the numbering.
        fresh.deliveries = std::mem::take(&mut self.deliveries);
        fresh.last_delivery = self.last_delivery;
        fresh.delivering = self.delivering;
        *self = fresh;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::protocol::model::{
        AlertType, Command, Event, PresenceChange, Role, SessionStatus, Severity,
    };
    use crate::store::SessionRecord;
    use crate::stream::{Origin, Published};

    fn limits() -> ReplicaLimits {
        ReplicaLimits {
            history_size: 64,
            // Small, so the test overflows it and eviction order matters.
            dedupe_window: 3,
            recent_refs_max: 4,
            held_responses_max: 4,
            snapshot_members_max: 100,
            replay_max_bytes: 1 << 20,
        }
    }

    fn record() -> SessionRecord {
        SessionRecord {
            id: SessionId::new(),
            tenant: TenantId::new(),
            avatar_id: Some(Uuid::new_v4()),
            name: Some("Quarterly review".into()),
            description: None,
            external_id: None,
            status: SessionStatus::Created,
            config: serde_json::json!({"voice": "en-GB", "speed": 1.25}),
            created_at: Utc::now(),
            started_at: None,
            ended_at: None,
            counters: Counters::default(),
            last_error: None,
            state: SessionState::default(),
            context: serde_json::json!({}),
        }
    }

    fn origin(sender: &str, role: Option<Role>, client_id: Option<&str>) -> Origin {
        Origin {
            sender: sender.into(),
            role,
            client_id: client_id.map(Into::into),
            fence: (role == Some(Role::Renderer)).then_some(1),
        }
    }

    fn member(id: &str, role: Role) -> Member {
        Member {
            id: id.into(),
            role,
            name: Some(format!("{id} name")),
        }
    }

    fn response(id: EventId, question: Option<EventId>) -> ResponseBody {
        ResponseBody {
            response_id: id,
            question_id: question,
            text: "Revenue grew 12%.".into(),
            confidence: 0.875,
            response_time_ms: 420,
            intent: Some("answer".into()),
            knowledge_sources: vec!["q3.pdf".into()],
            command_id: None,
        }
    }

    /// A live session: active, rendered, watched, questioned, taken over.
    fn events() -> Vec<(Event, Origin)> {
        let hub = Origin::hub;
        let question_id = EventId::new();
        vec![
            (
                Event::Created {
                    name: Some("Quarterly review".into()),
                },
                hub(),
            ),
            (
                Event::Lifecycle {
                    status: SessionStatus::Starting,
                    previous: SessionStatus::Created,
                    reason: None,
                    by: Some("op-1".into()),
                },
                hub(),
            ),
            (
                Event::Renderer {
                    connected: true,
                    fence: 1,
                    renderer_id: Some("gpu-7".into()),
                },
                hub(),
            ),
            (
                Event::Lifecycle {
                    status: SessionStatus::Active,
                    previous: SessionStatus::Starting,
                    reason: None,
                    by: None,
                },
                origin("gpu-7", Some(Role::Renderer), None),
            ),
            (
                Event::Presence {
                    change: PresenceChange::Join,
                    member: member("p-1", Role::Participant),
                    participant_count: 1,
                },
                hub(),
            ),
            (
                Event::Presence {
                    change: PresenceChange::Join,
                    member: member("op-1", Role::Operator),
                    participant_count: 1,
                },
                hub(),
            ),
            (
                Event::State {
                    state: SessionState {
                        current_slide: 3,
                        operator_connected: true,
                        current_topic: Some("revenue".into()),
                        ..SessionState::default()
                    },
                },
                origin("gpu-7", Some(Role::Renderer), Some("r-1")),
            ),
            (
                Event::Context {
                    context: serde_json::json!({"turns": [{"q": "hi"}], "score": 0.945_270_695_553_922_3}),
                },
                origin("gpu-7", Some(Role::Renderer), Some("r-2")),
            ),
            (
                Event::Question {
                    question_id,
                    participant_id: "p-1".into(),
                    participant_name: None,
                    text: "How did Q3 go?".into(),
                },
                origin("p-1", Some(Role::Participant), Some("q-1")),
            ),
            (
                Event::Response(Box::new(response(EventId::new(), Some(question_id)))),
                origin("gpu-7", Some(Role::Renderer), Some("r-3")),
            ),
            (
                Event::Takeover {
                    intervention_id: EventId::new(),
                    operator_id: "op-1".into(),
                    reason: None,
                },
                origin("op-1", Some(Role::Operator), Some("o-1")),
            ),
            (
                Event::ResponseHeld(Box::new(response(EventId::new(), None))),
                origin("gpu-7", Some(Role::Renderer), Some("r-4")),
            ),
            (
                Event::Command {
                    command_id: EventId::new(),
                    operator_id: "op-1".into(),
                    command: Command::GotoSlide { slide: 4 },
                },
                origin("op-1", Some(Role::Operator), Some("o-2")),
            ),
            (
                Event::Metrics {
                    metrics: Box::new(RendererMetrics {
                        latency_ms: Some(180.5),
                        cpu_usage: Some(0.42),
                        // Misparsed by an ulp without serde_json's
                        // float_roundtrip, as are about one float in ten.
                        gpu_usage: Some(0.945_270_695_553_922_3),
                        fps: Some(30.0),
                        component: Some("speech_recognition".into()),
                        ..RendererMetrics::default()
                    }),
                },
                origin("gpu-7", Some(Role::Renderer), None),
            ),
            (
                Event::Alert {
                    alert: Box::new(Alert {
                        alert_id: EventId::new(),
                        alert_type: AlertType::MetricThreshold,
                        severity: Severity::Warning,
                        title: "High latency".into(),
                        message: "latency_ms above 150".into(),
                        component: Some("renderer".into()),
                        metadata: serde_json::json!({"value": 180.5}),
                        created_at: 1_700_000_000_000,
                    }),
                },
                hub(),
            ),
            (
                Event::Question {
                    question_id: EventId::new(),
                    participant_id: "p-1".into(),
                    participant_name: None,
                    text: "And Q4?".into(),
                },
                origin("p-1", Some(Role::Participant), Some("q-2")),
            ),
        ]
    }

    fn apply(inner: &mut Replica, id: SessionId, seq: Seq, event: Event, origin: Origin) {
        let ts = 1_700_000_000_000 + seq * 1000;
        let p = Arc::new(Published::new(id, seq, ts, event, origin));
        assert!(inner.apply(&p).delivered, "seq {seq} not delivered");
    }

    /// A replica after [`events`].
    fn live() -> Session {
        let record = record();
        let session = Session::new(
            &record,
            StreamPosition {
                epoch: Epoch::random(),
                seq: 0,
            },
            limits(),
        );
        {
            let mut g = session.lock();
            for (seq, (event, origin)) in (1..).zip(events()) {
                apply(&mut g, session.id, seq, event, origin);
            }
        }
        session
    }

    #[test]
    fn restore_rebuilds_the_replica_exactly() {
        let original = live();
        let encoded = original.lock().replica_snapshot().encode();
        let decoded = ReplicaSnapshot::decode(&encoded).unwrap();
        assert_eq!(decoded.position(), original.lock().position());
        let restored = Session::restore(original.id, original.tenant, decoded, limits());
        assert_eq!(restored.lock().replica_snapshot().encode(), encoded);
        let gpu = |s: &Session| s.lock().metrics.as_ref().and_then(|m| m.gpu_usage);
        assert_eq!(
            gpu(&restored).map(f64::to_bits),
            gpu(&original).map(f64::to_bits)
        );

        {
            let g = restored.lock();
            // Live presence is kept, unlike a reload from the store.
            assert!(g.state.operator_connected);
            assert_eq!(g.participant_count(), 1);
            assert_eq!(g.members.len(), 2);
            assert!(g.controller.is_some());
            assert_eq!(g.renderer.fence, 1);
            assert_eq!(g.commands.len(), 1);
            assert!(g.commands.values().all(|c| c.issued_us > 0));
            // Three dedupe slots, eight client ids: the last three remain.
            assert_eq!(g.dedupe.len(), 3);
            assert!(
                g.dedupe
                    .get(&("p-1".to_string(), "q-2".to_string()))
                    .is_some()
            );
            assert_eq!(g.open_alerts.len(), 1);
            assert_eq!(g.held.len(), 1);
            assert!(g.history.is_empty() && g.subs.is_empty());
        }

        // Both replicas fold the next events identically, including which
        // dedupe entry the next client id evicts.
        let command_id = *original.lock().commands.keys().next().unwrap();
        let next = [
            (
                Event::CommandAck {
                    command_id,
                    latency_ms: 12,
                },
                origin("gpu-7", Some(Role::Renderer), Some("r-5")),
            ),
            (
                Event::Presence {
                    change: PresenceChange::Leave,
                    member: member("p-1", Role::Participant),
                    participant_count: 0,
                },
                Origin::hub(),
            ),
        ];
        let seq = original.lock().seq;
        for (seq, (event, origin)) in (seq + 1..).zip(next) {
            apply(
                &mut original.lock(),
                original.id,
                seq,
                event.clone(),
                origin.clone(),
            );
            apply(&mut restored.lock(), restored.id, seq, event, origin);
        }
        let a = original.lock().replica_snapshot().encode();
        let b = restored.lock().replica_snapshot().encode();
        assert_eq!(a, b);
        assert!(restored.lock().commands.is_empty());
        assert!(
            restored
                .lock()
                .dedupe
                .get(&("gpu-7".to_string(), "r-4".to_string()))
                .is_none()
        );
    }

    #[test]
    fn node_local_clock_is_not_shipped() {
        let encoded = live().lock().replica_snapshot().encode();
        let text = String::from_utf8(encoded).unwrap();
        assert!(!text.contains("issued_us"));
    }

    #[test]
    fn restore_applies_the_local_caps() {
        let original = live();
        let snapshot = original.lock().replica_snapshot();
        let small = ReplicaLimits {
            dedupe_window: 1,
            ..limits()
        };
        let restored = Session::restore(original.id, original.tenant, snapshot, small);
        let g = restored.lock();
        assert_eq!(g.dedupe.len(), 1);
        assert!(
            g.dedupe
                .get(&("p-1".to_string(), "q-2".to_string()))
                .is_some()
        );
    }

    #[test]
    fn decode_refuses_garbage() {
        for bytes in [
            &b""[..],
            b"not json",
            b"\xff\x00\x13\x37",
            b"{}",
            b"[1,2,3]",
            b"{\"version\":\"1\"}",
            b"{\"version\":1}",
        ] {
            assert!(
                matches!(
                    ReplicaSnapshot::decode(bytes),
                    Err(SnapshotError::Malformed(_))
                ),
                "{bytes:?}"
            );
        }
        let encoded = live().lock().replica_snapshot().encode();
        for cut in [1, encoded.len() / 2, encoded.len() - 1] {
            assert!(ReplicaSnapshot::decode(&encoded[..cut]).is_err());
        }
    }

    #[test]
    fn decode_refuses_an_unknown_version() {
        let encoded = live().lock().replica_snapshot().encode();
        let mut v: Value = serde_json::from_slice(&encoded).unwrap();
        v["version"] = (FORMAT_VERSION + 1).into();
        let err = ReplicaSnapshot::decode(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(
            err,
            SnapshotError::UnsupportedVersion { found, expected }
                if found == FORMAT_VERSION + 1 && expected == FORMAT_VERSION
        ));
        assert!(err.to_string().contains("version"));
        // A future layout need not parse as this one to be recognised.
        let err = ReplicaSnapshot::decode(b"{\"version\":9,\"shape\":\"new\"}").unwrap_err();
        assert!(matches!(
            err,
            SnapshotError::UnsupportedVersion { found: 9, .. }
        ));
    }
}

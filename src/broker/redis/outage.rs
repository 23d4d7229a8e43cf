//! The outage run: while Redis does not answer, each session this node
//! publishes to continues on this node alone under a fresh epoch, as with
//! the in-process broker; when Redis answers again the run is handed over
//! (one ADOPT script). If nobody else moved the session's stream meanwhile
//! (or Redis lost it), this node's checkpoint and events become the shared
//! stream and the other nodes reload; otherwise Redis wins and this node
//! reloads from it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use fred::types::Value;

use super::node::Shared;
use super::reply::{array, int};
use super::scripts::SCRIPTS;
use super::track::{LocalRun, Track, TrackState};
use super::wire::{encode, print};
use crate::broker::{BrokerError, Condition};
use crate::ids::Epoch;
use crate::metrics as m;
use crate::protocol::model::{Event, StreamPosition};
use crate::stream::{Origin, Published};

impl Shared {
    /// Starts (or continues) a run sequenced on this node alone. Its
    /// clients move to a fresh epoch: positions in it can never be
    /// confused with the shared stream's, whatever happens there.
    pub(super) fn go_alone<'a>(&self, track: &Track, st: &'a mut TrackState) -> &'a mut LocalRun {
        if st.local.is_none() {
            let since = StreamPosition {
                epoch: st.epoch,
                seq: st.delivered,
            };
            tracing::warn!(session = %track.session, "sequencing on this node alone until Redis answers");
            self.start_run(track, st, since, "outage");
        }
        st.local.as_mut().expect("set above")
    }

    /// Moves the track to a fresh epoch for a run of its own, to be
    /// offered to Redis in place of the shared stream as it stood at
    /// `since`. Its clients get a discontinuity.
    pub(super) fn start_run(
        &self,
        track: &Track,
        st: &mut TrackState,
        since: StreamPosition,
        reason: &'static str,
    ) {
        {
            let epoch = Epoch::random();
            st.epoch = epoch;
            st.pending.clear();
            st.forget_prints();
            m::redis_stream_reset(reason);
            if let Some(h) = self.handler() {
                h.on_stream_reset(
                    track.session,
                    StreamPosition {
                        epoch,
                        seq: st.delivered,
                    },
                    None,
                );
            }
            st.local = Some(LocalRun {
                since,
                events: VecDeque::new(),
                presence: HashMap::new(),
            });
        }
    }

    /// Sequences on this node alone (Redis unreachable), as the memory
    /// broker does.
    pub(super) fn publish_alone(
        &self,
        track: &Track,
        events: Vec<(Event, Origin)>,
        ts: u64,
        condition: Condition,
    ) -> Result<Vec<Arc<Published>>, BrokerError> {
        let payloads = events
            .iter()
            .map(|(event, origin)| encode(ts, event, origin))
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = track.state.lock();
        self.go_alone(track, &mut st);
        if let Condition::SeqIs(expected) = condition
            && st.delivered != expected
        {
            return Err(BrokerError::Conflict {
                current: st.delivered,
            });
        }
        let keep = self.history_size;
        let mut published = Vec::with_capacity(events.len());
        for ((event, origin), payload) in events.into_iter().zip(payloads) {
            let seq = st.delivered + 1;
            let p = Arc::new(Published::new(track.session, seq, ts, event, origin));
            let mine = print(&payload);
            if let Some(run) = st.local.as_mut() {
                if run.events.len() >= keep {
                    run.events.pop_front();
                }
                run.events.push_back((seq, payload));
            }
            self.deliver(&mut st, (p.clone(), mine));
            published.push(p);
        }
        Ok(published)
    }

    /// Offers the run this node sequenced alone to Redis as the session's
    /// stream; if the shared stream moved on meanwhile, takes that instead.
    pub(super) async fn hand_over(&self, track: &Arc<Track>) -> Result<(), BrokerError> {
        let Some(handler) = self.handler() else {
            return Ok(());
        };
        loop {
            // Read the replica and the run under the track lock, so the
            // checkpoint's position and the events agree.
            let (since, at, cp, events, presence) = {
                let mut st = track.state.lock();
                let at = StreamPosition {
                    epoch: st.epoch,
                    seq: st.delivered,
                };
                let Some(run) = st.local.as_mut() else {
                    return Ok(());
                };
                let Some(cp) = handler.checkpoint(track.session) else {
                    return Ok(());
                };
                (
                    run.since,
                    at,
                    cp,
                    run.events.iter().cloned().collect::<Vec<_>>(),
                    std::mem::take(&mut run.presence),
                )
            };
            for (member, delta) in presence {
                if delta != 0 {
                    self.presence(track.session, &member, delta).await?;
                }
            }
            let mut args: Vec<Value> = vec![
                since.epoch.to_string().into(),
                (since.seq as i64).into(),
                at.epoch.to_string().into(),
                (at.seq as i64).into(),
                Value::Bytes(cp.replica.into()),
                (self.cfg.stream_ttl_s as i64).into(),
                (self.cfg.stream_maxlen as i64).into(),
            ];
            for (seq, payload) in events.into_iter().filter(|(s, _)| *s <= at.seq) {
                args.push((seq as i64).into());
                args.push(payload.into());
            }
            let v = self
                .run(
                    &SCRIPTS.adopt,
                    vec![
                        self.keys.position(track.session),
                        self.keys.stream(track.session),
                        self.keys.checkpoint(track.session),
                        self.keys.channel(track.session),
                    ],
                    args,
                )
                .await?;
            let adopted = array(v).first().and_then(int) == Some(1);
            if !adopted {
                tracing::warn!(session = %track.session, "the session moved on elsewhere while this node ran it alone; taking the shared stream");
                track.state.lock().local = None;
                return self.reload(track, "outage").await;
            }
            let mut st = track.state.lock();
            if st.delivered == at.seq && st.epoch == at.epoch {
                st.local = None;
                tracing::info!(session = %track.session, seq = at.seq, "run sequenced during the outage handed over to Redis");
                return Ok(());
            }
            // More events were sequenced meanwhile: hand those over too.
            if let Some(run) = st.local.as_mut() {
                run.since = at;
            }
        }
    }
}

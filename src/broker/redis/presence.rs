//! Presence and checkpoints. Connections are counted per member and per
//! node (one PRESENCE script in the session's slot, after the session is
//! recorded in this node's session set); while a session runs on this
//! node alone its changes are counted in the outage run and into Redis at
//! the hand-over. Reaping counts out the members of nodes whose heartbeat
//! is older than `redis.presence_ttl_s`, and at start those of this node's
//! previous life: per session one REAP script, which takes the dead
//! node's count away in the same step, so several nodes reaping at once
//! count each member out once, and a reaper that dies half-way leaves the
//! rest for the next. Checkpoints of replicas, with the session's
//! JSON views, let a node that starts watching a live session restore the
//! latest one and apply the stream after it.

use fred::prelude::{HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface};
use fred::types::Value;

use super::node::Shared;
use super::reply::{array, int, text, unavailable};
use super::scripts::SCRIPTS;
use crate::broker::{BrokerError, Checkpoint};
use crate::ids::{Seq, SessionId, now_ms};
use crate::protocol::model::StreamPosition;

impl Shared {
    /// Adds `delta` to `member`'s connections on this node and in total
    /// (one PRESENCE script); returns the total, or -1 when this node held
    /// none to take away.
    pub(super) async fn presence(
        &self,
        session: SessionId,
        member: &str,
        delta: i64,
    ) -> Result<i64, BrokerError> {
        // Recorded first: a reaper finds every count this node holds.
        let set = &self.keys.node_sessions(&self.node);
        let id = &session.to_string();
        let _: i64 = self
            .send(set, |c| async move { c.sadd(set, id).await })
            .await?;
        let v = self
            .run(
                &SCRIPTS.presence,
                vec![
                    self.keys.presence(session),
                    self.keys.presence_on(session, &self.node),
                ],
                vec![member.into(), delta.into()],
            )
            .await?;
        int(&v).ok_or_else(|| unavailable("malformed presence reply"))
    }

    /// Counts one connection of `member` more (`delta` 1) or fewer (-1);
    /// returns whether it was the member's first or last.
    pub(super) async fn presence_change(
        &self,
        session: SessionId,
        member: &str,
        delta: i64,
    ) -> Result<bool, BrokerError> {
        if let Some(t) = self.track(session) {
            let mut st = t.state.lock();
            if !self.is_up(session) || st.local.is_some() {
                // Counted into Redis at the hand-over; until then this
                // node's own count decides (the hub only asks on a local
                // first join or last leave).
                let run = self.go_alone(&t, &mut st);
                *run.presence.entry(member.to_owned()).or_default() += delta;
                return Ok(true);
            }
        }
        let total = self.presence(session, member, delta).await?;
        Ok(if delta > 0 { total == 1 } else { total == 0 })
    }

    /// Counts out the members and connection slots this node held in its
    /// previous life (restarted under its old name); their `leave` events
    /// go out with the first [`Shared::reaped`].
    pub(super) async fn forget_previous_life(&self) -> Result<(), BrokerError> {
        let forgotten = self.reap(Some(&self.node)).await?;
        *self.forgotten.lock() = forgotten;
        Ok(())
    }

    /// Members whose presence is gone and who need a `leave`: those of
    /// this node's previous life, then those of nodes that died.
    pub(super) async fn reaped(&self) -> Result<Vec<(SessionId, String)>, BrokerError> {
        let mut gone = std::mem::take(&mut *self.forgotten.lock());
        if self.redis.is_up(&self.keys.heartbeats()) {
            gone.extend(self.reap(None).await?);
        }
        Ok(gone)
    }

    /// Counts out the members of dead nodes (and of `forget`): per dead
    /// node, frees its connection slots, counts its members out of each of
    /// its sessions, then forgets the node. Every step can run again, so
    /// nodes that reap at once, or one that stops half-way, leave no count
    /// wrong.
    async fn reap(&self, forget: Option<&str>) -> Result<Vec<(SessionId, String)>, BrokerError> {
        let deadline = now_ms().saturating_sub(self.cfg.presence_ttl_s * 1000);
        let beats = &self.keys.heartbeats();
        let mut dead: Vec<String> = self
            .send(beats, |c| async move {
                c.zrangebyscore(beats, "-inf", deadline as f64, false, None)
                    .await
            })
            .await?;
        if let Some(node) = forget {
            dead.push(node.to_owned());
        }
        let mut out = Vec::new();
        for node in dead {
            let node = &node;
            let slots = &self.keys.node_slots(node);
            let held: Vec<String> = self
                .send(slots, |c| async move { c.smembers(slots).await })
                .await?;
            for hash in &held {
                let _: i64 = self
                    .send(hash, |c| async move { c.hdel(hash, node).await })
                    .await?;
            }
            let _: i64 = self
                .send(slots, |c| async move { c.del(slots).await })
                .await?;
            let set = &self.keys.node_sessions(node);
            let sessions: Vec<String> = self
                .send(set, |c| async move { c.smembers(set).await })
                .await?;
            for sid in sessions {
                let Ok(session) = sid.parse::<SessionId>() else {
                    continue;
                };
                let v = self
                    .run(
                        &SCRIPTS.reap,
                        vec![
                            self.keys.presence(session),
                            self.keys.presence_on(session, node),
                        ],
                        vec![],
                    )
                    .await?;
                out.extend(
                    array(v)
                        .iter()
                        .filter_map(text)
                        .map(|member| (session, member)),
                );
            }
            let _: i64 = self.send(set, |c| async move { c.del(set).await }).await?;
            let _: i64 = self
                .send(beats, |c| async move { c.zrem(beats, node.as_str()).await })
                .await?;
        }
        Ok(out)
    }

    /// A checkpoint's JSON views with their TTLs, as the CHECKPOINT and
    /// BEGIN scripts take them: state, metrics ('' for none), context.
    pub(super) fn view_args(&self, cp: &Checkpoint) -> [Value; 6] {
        [
            cp.state.as_str().into(),
            (self.cfg.state_ttl_s as i64).into(),
            cp.metrics.as_deref().unwrap_or_default().into(),
            (self.cfg.metrics_ttl_s as i64).into(),
            cp.context.as_str().into(),
            (self.cfg.context_ttl_s as i64).into(),
        ]
    }

    /// Stores `cp` and the session's JSON views if `cp` is newer than the
    /// stored checkpoint of the current stream.
    pub(super) async fn save_checkpoint(
        &self,
        session: SessionId,
        cp: Checkpoint,
    ) -> Result<(), BrokerError> {
        if !self.is_up(session) {
            return Ok(());
        }
        let k = &self.keys;
        let views = self.view_args(&cp);
        let mut args: Vec<Value> = vec![
            cp.position.epoch.to_string().into(),
            (cp.position.seq as i64).into(),
            Value::Bytes(cp.replica.into()),
            (self.cfg.stream_ttl_s as i64).into(),
        ];
        args.extend(views);
        self.run(
            &SCRIPTS.checkpoint,
            vec![
                k.position(session),
                k.checkpoint(session),
                k.state(session),
                k.metrics(session),
                k.context(session),
            ],
            args,
        )
        .await?;
        Ok(())
    }

    pub(super) async fn load_checkpoint(
        &self,
        session: SessionId,
    ) -> Result<Option<(StreamPosition, Vec<u8>)>, BrokerError> {
        let key = &self.keys.checkpoint(session);
        let v: Vec<Value> = self
            .send(key, |c| async move {
                c.hmget(key, vec!["epoch", "seq", "data"]).await
            })
            .await?;
        let (Some(epoch), Some(seq), Some(data)) = (
            v.first().and_then(text).and_then(|s| s.parse().ok()),
            v.get(1).and_then(int),
            v.get(2).and_then(|d| d.as_bytes().map(<[u8]>::to_vec)),
        ) else {
            return Ok(None);
        };
        Ok(Some((
            StreamPosition {
                epoch,
                seq: seq as Seq,
            },
            data,
        )))
    }
}

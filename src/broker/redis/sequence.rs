//! A session's shared stream: sequencing a publish (one PUBLISH script
//! checks the condition, numbers the event, appends it to the stream and
//! publishes it on the session's channel, atomically; see the module docs
//! in `mod.rs` for why), reading the stream's position and history, and
//! dropping a session's keys when it is gone for good.

use std::sync::Arc;
use std::time::Instant;

use fred::error::Error as RedisError;
use fred::interfaces::ServerInterface;
use fred::prelude::{ClientLike, Options};
use fred::prelude::{KeysInterface, SetsInterface};
use fred::types::{ClusterHash, Value};
use fred::util::redis_keyslot;

use super::conn::is_connection_error;
use super::node::Shared;
use super::reply::{array, entries, epoch_of, int, unavailable};
use super::scripts::SCRIPTS;
use super::wire::{decode, encode, print};
use crate::broker::{BrokerError, Condition, HistoryPage};
use crate::ids::{Epoch, Seq, SessionId};
use crate::metrics as m;
use crate::protocol::model::{Event, StreamPosition};
use crate::stream::{Origin, Published};

/// A read of a session's stream.
pub(super) struct Page {
    /// The stream's epoch and last number.
    pub(super) position: StreamPosition,
    /// The payload numbered `after`, while the stream holds it.
    pub(super) at: Option<String>,
    /// (seq, payload) after `after`, in order.
    pub(super) events: Vec<(Seq, String)>,
}

impl Shared {
    /// Appends `event` to the session's stream if `condition` holds: one
    /// PUBLISH script, or on this node alone while Redis is away. Returns
    /// once this node's track has delivered it (if it watches the session).
    pub(super) async fn publish(
        &self,
        session: SessionId,
        event: Event,
        origin: Origin,
        ts: u64,
        condition: Condition,
    ) -> Result<Arc<Published>, BrokerError> {
        let track = self.track(session);
        if let Some(t) = &track
            && (!self.is_up() || t.state.lock().local.is_some())
        {
            return self.publish_alone(t, event, origin, ts, condition);
        }
        let payload = encode(ts, &event, &origin)?;
        let mine = print(&payload);
        let expected = match condition {
            Condition::Always => -1,
            Condition::SeqIs(seq) => seq as i64,
        };
        let started = Instant::now();
        let result = SCRIPTS
            .publish
            .run(
                &self.client,
                vec![
                    self.keys.position(session),
                    self.keys.stream(session),
                    self.keys.channel(session),
                ],
                vec![
                    expected.into(),
                    payload.into(),
                    (self.cfg.stream_maxlen as i64).into(),
                    (self.cfg.stream_ttl_s as i64).into(),
                    Epoch::random().to_string().into(),
                ],
            )
            .await;
        let result = match result {
            Ok(v) if self.cfg.wait_replicas > 0 => self.wait_replicas(session, v).await,
            other => other,
        };
        m::redis_publish(started.elapsed());
        let v = match result {
            Ok(v) => array(v),
            Err(e) if is_connection_error(&e) => {
                self.set_up(false);
                // The script may or may not have run; the hand-over after
                // the outage settles it (see the module docs).
                return match &track {
                    Some(t) => self.publish_alone(t, event, origin, ts, condition),
                    None => Err(unavailable(e)),
                };
            }
            Err(e) => return Err(unavailable(e)),
        };
        let (Some(status), Some(seq), Some(epoch)) =
            (v.first().and_then(int), v.get(1).and_then(int), v.get(2))
        else {
            return Err(unavailable("malformed publish reply"));
        };
        let seq = seq as Seq;
        let epoch = epoch_of(epoch)?;
        if status == 0 {
            if let Some(t) = &track
                && t.state.lock().epoch != epoch
            {
                // The condition named a stream Redis no longer has (it
                // restarted empty, or another node began the stream
                // again). No publication will tell the track while every
                // publish is conditional, so follow the stream Redis has
                // now: the replica is reset to its position and the
                // caller's retry can meet its condition.
                self.follow_restart(t).await?;
            }
            return Err(BrokerError::Conflict { current: seq });
        }
        let p = Arc::new(Published::new(session, seq, ts, event, origin));
        if let Some(t) = &track {
            {
                let mut st = t.state.lock();
                if st.epoch == epoch && st.local.is_none() && st.conflicts(seq, mine) {
                    // Redis gave out a number this node delivered for another
                    // event: it lost writes in a failover. This event may not
                    // survive the new epoch the resync starts, so it is not
                    // reported as published; the caller's retry lands there.
                    self.queue_resync(t, &mut st);
                    return Err(unavailable(
                        "the session's stream lost events in a Redis failover; retry",
                    ));
                }
            }
            self.offer(t, epoch, p.clone(), mine);
            self.wait_delivered(t, epoch, seq).await;
        }
        Ok(p)
    }

    /// `WAIT`s until `redis.wait_replicas` replicas of the session's master
    /// hold what this node wrote there (the publish script's reply `v`),
    /// or `redis.wait_timeout_ms` passed. A short count is counted, not an
    /// error: the event is sequenced and other nodes may have delivered it.
    async fn wait_replicas(&self, session: SessionId, v: Value) -> Result<Value, RedisError> {
        let sequenced = matches!(&v, Value::Array(a) if a.first().and_then(int) == Some(1));
        if !sequenced {
            return Ok(v);
        }
        // WAIT counts this connection's writes on one server: the master
        // of the session's slot, where the script ran.
        let slot = redis_keyslot(self.keys.position(session).as_bytes());
        let options = Options {
            cluster_hash: Some(ClusterHash::Custom(slot)),
            ..Options::default()
        };
        let want = i64::from(self.cfg.wait_replicas);
        let acked: i64 = self
            .client
            .with_options(&options)
            .wait(want, self.cfg.wait_timeout_ms as i64)
            .await?;
        if acked < want {
            m::redis_wait_short();
        }
        Ok(v)
    }

    /// The stream's position as the hub sees it: this node's own while it
    /// runs the session alone, else the shared stream's.
    pub(super) async fn current_position(
        &self,
        session: SessionId,
    ) -> Result<StreamPosition, BrokerError> {
        if let Some(t) = self.track(session)
            && (!self.is_up() || t.state.lock().local.is_some())
        {
            return Ok(t.position());
        }
        self.position(session).await
    }

    pub(super) async fn position(&self, session: SessionId) -> Result<StreamPosition, BrokerError> {
        let v = self
            .run(
                &SCRIPTS.position,
                vec![self.keys.position(session), self.keys.stream(session)],
                vec![
                    Epoch::random().to_string().into(),
                    (self.cfg.stream_ttl_s as i64).into(),
                ],
            )
            .await?;
        let a = array(v);
        if a.len() != 2 {
            return Err(unavailable("malformed position reply"));
        }
        Ok(StreamPosition {
            epoch: epoch_of(&a[0])?,
            seq: int(&a[1]).unwrap_or(0) as Seq,
        })
    }

    /// Events after `after` as (seq, payload); `Ok(None)` when the stream
    /// does not exist.
    pub(super) async fn read(
        &self,
        session: SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Option<Page>, BrokerError> {
        let v = self
            .run(
                &SCRIPTS.history,
                vec![self.keys.position(session), self.keys.stream(session)],
                vec![(after as i64).into(), (limit as i64).into()],
            )
            .await?;
        let mut a = array(v).into_iter();
        let (Some(epoch), Some(top), Some(rest)) = (a.next(), a.next(), a.next()) else {
            return Ok(None);
        };
        let position = StreamPosition {
            epoch: epoch_of(&epoch)?,
            seq: int(&top).unwrap_or(0) as Seq,
        };
        if int(&rest) == Some(-1) {
            return Err(BrokerError::Trimmed { after });
        }
        let mut events = entries(rest);
        let at = match events.first() {
            Some((seq, _)) if *seq == after => Some(events.remove(0).1),
            _ => None,
        };
        Ok(Some(Page {
            position,
            at,
            events,
        }))
    }

    /// A page of decoded events after `after`.
    pub(super) async fn history(
        &self,
        session: SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<HistoryPage, BrokerError> {
        let Some(Page {
            position, events, ..
        }) = self.read(session, after, limit).await?
        else {
            return Err(BrokerError::Trimmed { after });
        };
        let events = events
            .into_iter()
            .filter_map(|(seq, payload)| decode(session, seq, &payload))
            .collect();
        Ok(HistoryPage {
            epoch: position.epoch,
            top: position.seq,
            events,
        })
    }

    /// Stops watching the session and drops its keys and presence.
    pub(super) async fn remove(&self, session: SessionId) -> Result<(), BrokerError> {
        self.unwatch(session).await?;
        let k = &self.keys;
        let keys = k.session_keys(session, &self.node);
        let _: i64 = self.client.del(keys).await.map_err(unavailable)?;
        let _: i64 = self
            .client
            .srem(k.live_sessions(), session.to_string())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

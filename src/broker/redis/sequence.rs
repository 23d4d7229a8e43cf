//! A session's shared stream: sequencing a publish (one PUBLISH script
//! checks the condition, numbers the event, appends it to the stream and
//! publishes it on the session's channel, atomically; see the module docs
//! in `mod.rs` for why), reading the stream's position and history, and
//! dropping a session's keys when it is gone for good.

use std::sync::Arc;
use std::time::Instant;

use fred::error::Error as RedisError;
use fred::interfaces::ServerInterface;
use fred::prelude::{HashesInterface, KeysInterface, SetsInterface};
use fred::types::Value;

use super::conn::is_connection_error;
use super::node::Shared;
use super::reply::{array, entries, epoch_of, int, unavailable};
use super::scripts::SCRIPTS;
use super::track::Track;
use super::wire::{decode, encode, print};
use crate::broker::{BrokerError, Checkpoint, Condition, HistoryPage};
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
    /// Appends `events` to the session's stream, back to back, if
    /// `condition` holds before the first: one PUBLISH script for all of
    /// them, or on this node alone while Redis is away. Returns once this
    /// node's track has delivered them (if it watches the session).
    pub(super) async fn publish(
        &self,
        session: SessionId,
        events: Vec<(Event, Origin)>,
        ts: u64,
        condition: Condition,
    ) -> Result<Vec<Arc<Published>>, BrokerError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let track = self.track(session);
        if let Some(t) = &track
            && (!self.is_up(session) || t.state.lock().local.is_some())
        {
            return self.publish_alone(t, events, ts, condition);
        }
        let payloads = events
            .iter()
            .map(|(event, origin)| encode(ts, event, origin))
            .collect::<Result<Vec<_>, _>>()?;
        let expected = match condition {
            Condition::Always => -1,
            Condition::SeqIs(seq) => seq as i64,
        };
        let mut began = false;
        let (last, epoch) = loop {
            let v = match self.sequence(session, &payloads, expected).await {
                Ok(v) => array(v),
                Err(e) if is_connection_error(&e) => {
                    self.redis.lost(&self.keys.position(session), &e);
                    // The script may or may not have run; the hand-over
                    // after the outage settles it (see the module docs).
                    return match &track {
                        Some(t) => self.publish_alone(t, events, ts, condition),
                        None => Err(unavailable(e)),
                    };
                }
                Err(e) => return Err(unavailable(e)),
            };
            let status = v.first().and_then(int);
            if status == Some(2) {
                // No stream: nobody published yet, or Redis lost it. Begin
                // it from this node's replica (once), then publish there.
                if began {
                    return Err(unavailable("the session's stream vanished again; retry"));
                }
                began = true;
                let at = self.begin_here(session, track.as_ref()).await?;
                if let Condition::SeqIs(_) = condition {
                    // The condition was checked against the stream before;
                    // the caller re-validates against the one begun now.
                    return Err(BrokerError::Conflict { current: at.seq });
                }
                continue;
            }
            let (Some(status), Some(seq), Some(epoch)) = (status, v.get(1).and_then(int), v.get(2))
            else {
                return Err(unavailable("malformed publish reply"));
            };
            let seq = seq as Seq;
            let epoch = epoch_of(epoch)?;
            if status == 0 {
                if let Some(t) = &track
                    && t.state.lock().epoch != epoch
                {
                    // The condition named a stream Redis no longer has
                    // (another node began it again). No publication will
                    // tell the track while every publish is conditional,
                    // so follow the stream Redis has now: the replica is
                    // reset to it and the caller's retry can meet its
                    // condition.
                    self.follow_restart(t).await?;
                }
                return Err(BrokerError::Conflict { current: seq });
            }
            break (seq, epoch);
        };
        // The script numbered the events last - n + 1 ..= last.
        let first = last + 1 - events.len() as Seq;
        let published: Vec<(Arc<Published>, u64)> = events
            .into_iter()
            .zip(&payloads)
            .zip(first..)
            .map(|(((event, origin), payload), seq)| {
                let p = Published::new(session, seq, ts, event, origin);
                (Arc::new(p), print(payload))
            })
            .collect();
        if let Some(t) = &track {
            {
                let mut st = t.state.lock();
                if st.epoch == epoch
                    && st.local.is_none()
                    && published.iter().any(|(p, mine)| st.conflicts(p.seq, *mine))
                {
                    // Redis gave out a number this node delivered for another
                    // event: it lost writes in a failover. These events may
                    // not survive the new epoch the resync starts, so they
                    // are not reported as published; the caller's retry
                    // lands there.
                    self.queue_resync(t, &mut st);
                    return Err(unavailable(
                        "the session's stream lost events in a Redis failover; retry",
                    ));
                }
            }
            for (p, mine) in &published {
                self.offer(t, epoch, p.clone(), *mine);
            }
            self.wait_delivered(t, epoch, last).await;
        }
        Ok(published.into_iter().map(|(p, _)| p).collect())
    }

    /// One PUBLISH script for `payloads` (and the `WAIT` after it, when
    /// configured).
    async fn sequence(
        &self,
        session: SessionId,
        payloads: &[String],
        expected: i64,
    ) -> Result<Value, RedisError> {
        let started = Instant::now();
        let mut args: Vec<Value> = Vec::with_capacity(3 + payloads.len());
        args.extend([
            expected.into(),
            (self.cfg.stream_maxlen as i64).into(),
            (self.cfg.stream_ttl_s as i64).into(),
        ]);
        args.extend(payloads.iter().map(|p| Value::from(p.as_str())));
        let result = SCRIPTS
            .publish
            .run(
                &self.redis,
                &[
                    self.keys.position(session),
                    self.keys.stream(session),
                    self.keys.channel(session),
                ],
                args,
            )
            .await;
        let result = match result {
            Ok(v) if self.cfg.wait_replicas > 0 => self.wait_replicas(session, v).await,
            other => other,
        };
        m::redis_publish(started.elapsed());
        result
    }

    /// Begins the session's stream under a fresh epoch with this node's
    /// replica as its base checkpoint, unless another node began it first;
    /// the track (if this node watches the session) then follows whichever
    /// stream Redis holds. Returns that stream's position.
    pub(super) async fn begin_here(
        &self,
        session: SessionId,
        track: Option<&Arc<Track>>,
    ) -> Result<StreamPosition, BrokerError> {
        let at = StreamPosition {
            epoch: Epoch::random(),
            seq: 0,
        };
        let base = self
            .handler()
            .and_then(|h| h.checkpoint(session))
            .map(|cp| Checkpoint { position: at, ..cp });
        let (began, now) = self.begin(session, at, base.as_ref()).await?;
        if let Some(t) = track {
            if began {
                tracing::warn!(%session, epoch = %at.epoch, "the session's stream was gone; began it again from this node's replica");
                // Exactly the base the other nodes will load.
                self.reset(t, at, base.map(|b| b.replica), "restart");
            } else {
                self.follow_restart(t).await?;
            }
        }
        Ok(now)
    }

    /// The BEGIN script: starts the stream at `at` with `base` (if any) as
    /// its first checkpoint unless it exists. Returns whether it began it,
    /// and the stream's position.
    pub(super) async fn begin(
        &self,
        session: SessionId,
        at: StreamPosition,
        base: Option<&Checkpoint>,
    ) -> Result<(bool, StreamPosition), BrokerError> {
        let k = &self.keys;
        let mut args: Vec<Value> = vec![
            at.epoch.to_string().into(),
            (at.seq as i64).into(),
            (self.cfg.stream_ttl_s as i64).into(),
            i64::from(base.is_some()).into(),
        ];
        if let Some(b) = base {
            args.push(Value::Bytes(b.replica.clone().into()));
            args.extend(self.view_args(b));
        }
        let v = self
            .run(
                &SCRIPTS.begin,
                vec![
                    k.position(session),
                    k.stream(session),
                    k.checkpoint(session),
                    k.state(session),
                    k.metrics(session),
                    k.context(session),
                ],
                args,
            )
            .await?;
        let v = array(v);
        let (Some(status), Some(epoch), Some(seq)) =
            (v.first().and_then(int), v.get(1), v.get(2).and_then(int))
        else {
            return Err(unavailable("malformed begin reply"));
        };
        let now = StreamPosition {
            epoch: epoch_of(epoch)?,
            seq: seq as Seq,
        };
        Ok((status == 1, now))
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
        let want = i64::from(self.cfg.wait_replicas);
        let acked: i64 = self
            .redis
            .client(&self.keys.position(session))
            .wait(want, self.cfg.wait_timeout_ms as i64)
            .await?;
        if acked < want {
            m::redis_wait_short();
        }
        Ok(v)
    }

    /// The stream's position as the hub sees it: this node's own while it
    /// runs the session alone, else the shared stream's (`None`: there is
    /// none).
    pub(super) async fn current_position(
        &self,
        session: SessionId,
    ) -> Result<Option<StreamPosition>, BrokerError> {
        if let Some(t) = self.track(session)
            && (!self.is_up(session) || t.state.lock().local.is_some())
        {
            return Ok(Some(t.position()));
        }
        self.position(session).await
    }

    /// The shared stream's position, or `None` when the session has none.
    pub(super) async fn position(
        &self,
        session: SessionId,
    ) -> Result<Option<StreamPosition>, BrokerError> {
        let key = &self.keys.position(session);
        let v: Vec<Value> = self
            .send(
                key,
                |c| async move { c.hmget(key, vec!["epoch", "seq"]).await },
            )
            .await?;
        let Some(epoch) = v.first().filter(|e| !e.is_null()) else {
            return Ok(None);
        };
        Ok(Some(StreamPosition {
            epoch: epoch_of(epoch)?,
            seq: v.get(1).and_then(int).unwrap_or(0) as Seq,
        }))
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
        // All in the session's slot.
        let keys = &k.session_keys(session, &self.node);
        let _: i64 = self
            .send(&k.position(session), |c| async move {
                c.del(keys.clone()).await
            })
            .await?;
        let (live, id) = (&k.live_sessions(), &session.to_string());
        let _: i64 = self
            .send(live, |c| async move { c.srem(live, id).await })
            .await?;
        Ok(())
    }
}

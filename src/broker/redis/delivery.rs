//! In-order delivery of the sessions this node watches: subscribing to
//! their channels, offering each publication to its session's track, which
//! hands it to the hub when it is next, holds it when early and drops it
//! when old; refilling gaps from the stream after `redis.gap_wait_ms`
//! (queued resyncs, run by one worker); following a stream that restarted
//! under a new epoch and reloading from a checkpoint when too far behind.
//! A node's own publish waits here until its track delivered it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::prelude::{EventInterface, PubsubInterface, SetsInterface};
use parking_lot::MutexGuard;
use tokio::sync::mpsc;

use super::node::Shared;
use super::reply::{text, unavailable};
use super::sequence::Page;
use super::track::{Entry, Track, TrackState};
use super::wire::{decode, print};
use crate::broker::BrokerError;
use crate::ids::{Epoch, Seq, SessionId};
use crate::metrics as m;
use crate::protocol::model::StreamPosition;
use crate::stream::Published;

/// Publications held while waiting for a gap to fill; past this the
/// track drops them and reads everything from the stream.
const MAX_PENDING: usize = 4096;
/// Events read from a stream per round trip.
const PAGE: usize = 1000;
/// How long a node's own publish waits for its track to deliver it.
const DELIVERY_WAIT: Duration = Duration::from_secs(2);

impl Shared {
    /// Starts delivering `session` after `from`: subscribes, then refills
    /// from the stream.
    pub(super) async fn watch(
        &self,
        session: SessionId,
        from: StreamPosition,
    ) -> Result<(), BrokerError> {
        let track = match self.tracks.entry(session) {
            dashmap::Entry::Occupied(_) => return Ok(()),
            dashmap::Entry::Vacant(v) => v.insert(Arc::new(Track::new(session, from))).clone(),
        };
        // Subscribe before reading the stream, so nothing published in
        // between is missed.
        let subscribed = self.subscriber.ssubscribe(self.keys.channel(session)).await;
        let (live, id) = (&self.keys.live_sessions(), &session.to_string());
        let added: Result<i64, _> = self
            .send(live, |c| async move { c.sadd(live, id).await })
            .await;
        if let Err(e) = subscribed.map_err(unavailable).and(added.map(|_| ())) {
            self.tracks.remove(&session);
            return Err(e);
        }
        self.sync(&track).await
    }

    pub(super) async fn unwatch(&self, session: SessionId) -> Result<(), BrokerError> {
        if self.tracks.remove(&session).is_some() {
            self.subscriber
                .sunsubscribe(self.keys.channel(session))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    pub(super) fn queue_resync(&self, track: &Track, st: &mut TrackState) {
        if !st.resync_queued {
            st.resync_queued = true;
            let _ = self.resync.send(track.session);
        }
    }

    /// Delivers `p` if it is next, holds it if early, drops it if old.
    /// An old one that differs from what was delivered under its number
    /// means Redis lost writes (a failover): the resync settles it.
    pub(super) fn offer(&self, track: &Track, epoch: Epoch, p: Arc<Published>, print: u64) {
        let mut st = track.state.lock();
        if st.local.is_some() {
            // Runs alone until the hand-over settles which stream wins.
            return;
        }
        if epoch != st.epoch {
            self.queue_resync(track, &mut st);
            return;
        }
        if p.seq <= st.delivered {
            if st.conflicts(p.seq, print) {
                self.queue_resync(track, &mut st);
            }
            return;
        }
        if p.seq > st.delivered + 1 {
            if st.pending.len() < MAX_PENDING {
                st.pending.insert(p.seq, (p, print));
            }
            self.queue_resync(track, &mut st);
            return;
        }
        self.deliver(&mut st, (p, print));
        drop(st);
        track.delivered.notify_waiters();
    }

    /// Hands `next` (the next publication) and any held successors to the
    /// hub.
    pub(super) fn deliver(&self, st: &mut TrackState, next: Entry) {
        let handler = self.handler();
        let mut next = Some(next);
        while let Some((p, print)) = next {
            st.delivered = p.seq;
            st.record(p.seq, print);
            if let Some(h) = handler {
                h.on_publication(p);
            }
            next = st.pending.remove(&(st.delivered + 1));
        }
        let delivered = st.delivered;
        st.pending.retain(|seq, _| *seq > delivered);
    }

    /// Waits until the track has delivered `seq` of `epoch`.
    pub(super) async fn wait_delivered(&self, track: &Track, epoch: Epoch, seq: Seq) {
        let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
        loop {
            let notified = track.delivered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = track.state.lock();
                if st.epoch != epoch || st.delivered >= seq || st.local.is_some() {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(session = %track.session, seq, "own publication not delivered in time; the track will refill it");
                return;
            }
        }
    }

    /// Brings a track up to date with the shared stream: refills a gap,
    /// follows a stream that restarted, or hands over a run sequenced
    /// alone.
    pub(super) async fn sync(&self, track: &Arc<Track>) -> Result<(), BrokerError> {
        let (local, from) = {
            let mut st = track.state.lock();
            st.resync_queued = false;
            (
                st.local.is_some(),
                StreamPosition {
                    epoch: st.epoch,
                    seq: st.delivered,
                },
            )
        };
        if local {
            return self.hand_over(track).await;
        }
        let mut from = from;
        loop {
            match self.read(track.session, from.seq, PAGE).await {
                Ok(Some(page)) if page.position.epoch == from.epoch => {
                    if self.lost_writes(track, from, &page) {
                        return self.diverged(track, page.position).await;
                    }
                    let n = page.events.len();
                    let mut last = from.seq;
                    for (seq, payload) in page.events {
                        match decode(track.session, seq, &payload) {
                            Some(p) => self.offer(track, from.epoch, p, print(&payload)),
                            // Waiting for it would stall the session here
                            // for good; the replica notes the hole.
                            None => self.skip(track, from.epoch, seq),
                        }
                        last = seq;
                    }
                    m::redis_refilled(n as u64);
                    if n < PAGE || last >= page.position.seq {
                        return Ok(());
                    }
                    from.seq = last;
                }
                Ok(Some(_)) => return self.follow_restart(track).await,
                // Redis lost the stream and nobody published since. Do not
                // start one: a node that ran the session alone meanwhile
                // must be able to hand its run over. The next publication
                // (or hand-over) arrives under a new epoch and is followed.
                Ok(None) => return Ok(()),
                Err(BrokerError::Trimmed { .. }) => return self.reload(track, "behind").await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether Redis lacks what this track delivered from the stream it
    /// read (`from`): the stream ends before it, or holds another event
    /// under its last number. Redis replicates asynchronously, so a
    /// promoted replica can miss a master's last writes.
    fn lost_writes(&self, track: &Track, from: StreamPosition, page: &Page) -> bool {
        if page.position.seq < from.seq {
            return true;
        }
        let st = track.state.lock();
        match &page.at {
            Some(payload) => st.epoch == from.epoch && st.conflicts(from.seq, print(payload)),
            None => false,
        }
    }

    /// Redis no longer holds what this node delivered. The session must
    /// not carry on with two histories: this node starts a new epoch from
    /// its replica, as after an outage (its clients get a discontinuity),
    /// and offers it to Redis in place of the stream as it stands now. If
    /// that stream moves first, this node reloads from it instead. Either
    /// way every node then follows one stream under a new epoch, and every
    /// client gets a discontinuity and a snapshot.
    pub(super) async fn diverged(
        &self,
        track: &Arc<Track>,
        now: StreamPosition,
    ) -> Result<(), BrokerError> {
        {
            let mut st = track.state.lock();
            if st.local.is_none() {
                tracing::warn!(session = %track.session, delivered = st.delivered, redis = now.seq, "Redis lost events this node delivered (a failover); starting a new epoch");
                self.start_run(track, &mut st, now, "diverged");
            }
        }
        self.hand_over(track).await
    }

    /// The shared stream is under another epoch than the track: a node
    /// began it again after Redis lost it, or a node handed over a run.
    /// Every stream begins with its base checkpoint, so the track reloads
    /// from the stream's checkpoint, as every other node does. A stream
    /// Redis lost and nobody began again is left for the next publish.
    pub(super) async fn follow_restart(&self, track: &Arc<Track>) -> Result<(), BrokerError> {
        let Some(position) = self.position(track.session).await? else {
            return Ok(());
        };
        if track.position().epoch == position.epoch {
            // Followed already (another publish got here first).
            return Box::pin(self.sync(track)).await;
        }
        match self.load_checkpoint(track.session).await? {
            Some((cp, _)) if cp.epoch == position.epoch => self.reload(track, "adopted").await,
            _ => {
                // A stream with no checkpoint (begun by a node with no
                // replica to give, or its checkpoint expired): this
                // replica's state carries on and the new stream's events
                // apply on top of it. Publishes that found the stream
                // gone at the same moment all get here: the first resets
                // the track, the others find it following the new stream
                // already (a second reset would deliver that stream's
                // first events twice).
                {
                    let st = track.state.lock();
                    if st.epoch != position.epoch {
                        let at = StreamPosition {
                            epoch: position.epoch,
                            seq: 0,
                        };
                        self.reset_locked(track, st, at, None, "restart");
                    }
                }
                Box::pin(self.sync(track)).await
            }
        }
    }

    /// Rebuilds the replica from the latest checkpoint and the events
    /// after it.
    pub(super) async fn reload(
        &self,
        track: &Arc<Track>,
        reason: &'static str,
    ) -> Result<(), BrokerError> {
        let Some(position) = self.position(track.session).await? else {
            // Gone again: the next publish begins it from this replica.
            return Ok(());
        };
        match self.load_checkpoint(track.session).await? {
            Some((cp, data)) if cp.epoch == position.epoch => {
                self.reset(track, cp, Some(data), reason);
            }
            _ => {
                tracing::error!(session = %track.session, "fell behind the stream and no checkpoint covers the gap; continuing from the stream's head");
                self.reset(track, position, None, reason);
            }
        }
        Box::pin(self.sync(track)).await
    }

    /// Moves past an event no node can read.
    fn skip(&self, track: &Track, epoch: Epoch, seq: Seq) {
        let mut guard = track.state.lock();
        let st = &mut *guard;
        if st.epoch == epoch && st.delivered + 1 == seq && st.local.is_none() {
            st.delivered = seq;
            let next = seq + 1;
            if let Some(entry) = st.pending.remove(&next) {
                self.deliver(st, entry);
            }
        }
    }

    pub(super) fn reset(
        &self,
        track: &Track,
        at: StreamPosition,
        replica: Option<Vec<u8>>,
        reason: &'static str,
    ) {
        self.reset_locked(track, track.state.lock(), at, replica, reason);
    }

    /// [`Shared::reset`] under a lock the caller took to decide on it.
    fn reset_locked(
        &self,
        track: &Track,
        mut st: MutexGuard<'_, TrackState>,
        at: StreamPosition,
        replica: Option<Vec<u8>>,
        reason: &'static str,
    ) {
        st.epoch = at.epoch;
        st.delivered = at.seq;
        st.pending.clear();
        st.forget_prints();
        st.local = None;
        m::redis_stream_reset(reason);
        if let Some(h) = self.handler() {
            h.on_stream_reset(track.session, at, replica);
        }
        drop(st);
        track.delivered.notify_waiters();
    }
}

/// Reads pub/sub messages and offers them to their tracks.
pub(super) async fn receive(weak: Weak<Shared>) {
    let Some(mut rx) = weak.upgrade().map(|s| s.subscriber.message_rx()) else {
        return;
    };
    loop {
        let msg = rx.recv().await;
        let Some(shared) = weak.upgrade() else { return };
        match msg {
            Ok(msg) => {
                let Some(session) = shared.keys.session_of(&msg.channel) else {
                    continue;
                };
                let Some(track) = shared.track(session) else {
                    continue;
                };
                let Some(body) = text(&msg.value) else {
                    continue;
                };
                on_message(&shared, &track, &body);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                m::redis_pubsub_dropped(n);
                tracing::warn!(
                    dropped = n,
                    "pub/sub buffer overflowed; refilling from streams"
                );
                resync_all(&shared);
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn on_message(shared: &Shared, track: &Arc<Track>, body: &str) {
    let mut parts = body.splitn(4, ' ');
    let kind = parts.next();
    let (Some(epoch), Some(seq)) = (
        parts.next().and_then(|e| e.parse::<Epoch>().ok()),
        parts.next().and_then(|s| s.parse::<Seq>().ok()),
    ) else {
        return;
    };
    match kind {
        Some("E") => {
            // One line per event, numbered from `seq` on.
            for (payload, seq) in parts.next().unwrap_or("").split('\n').zip(seq..) {
                on_event(shared, track, epoch, seq, payload);
            }
        }
        Some("R") => {
            // A node handed over a run: follow it unless it was ours.
            let mut st = track.state.lock();
            if st.epoch != epoch || st.delivered < seq {
                shared.queue_resync(track, &mut st);
            }
        }
        _ => {}
    }
}

/// One event of a publication message.
fn on_event(shared: &Shared, track: &Arc<Track>, epoch: Epoch, seq: Seq, payload: &str) {
    let mine = print(payload);
    {
        let mut st = track.state.lock();
        if st.epoch == epoch && st.local.is_none() && seq <= st.delivered {
            // Delivered already (most often the node's own publication):
            // only a different event under its number needs attention, so
            // the payload is not decoded.
            if st.conflicts(seq, mine) {
                shared.queue_resync(track, &mut st);
            }
            return;
        }
    }
    match decode(track.session, seq, payload) {
        Some(p) => shared.offer(track, epoch, p, mine),
        None => {
            let mut st = track.state.lock();
            shared.queue_resync(track, &mut st);
        }
    }
}

pub(super) fn resync_all(shared: &Shared) {
    for t in shared.tracks.iter() {
        let mut st = t.state.lock();
        shared.queue_resync(&t, &mut st);
    }
}

/// Runs queued resyncs, after a short wait so a gap can close by itself.
pub(super) async fn resync_worker(weak: Weak<Shared>, mut rx: mpsc::UnboundedReceiver<SessionId>) {
    while let Some(first) = rx.recv().await {
        let Some(wait) = weak
            .upgrade()
            .map(|s| Duration::from_millis(s.cfg.gap_wait_ms))
        else {
            return;
        };
        tokio::time::sleep(wait).await;
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let Some(shared) = weak.upgrade() else { return };
        for session in batch {
            let Some(track) = shared.track(session) else {
                continue;
            };
            {
                let st = track.state.lock();
                if !st.resync_queued {
                    continue;
                }
            }
            if !shared.is_up(session) {
                // Retried when the monitor sees Redis again.
                track.state.lock().resync_queued = false;
                continue;
            }
            if let Err(e) = shared.sync(&track).await {
                tracing::warn!(%session, error = %e, "resync failed; will retry");
                let mut st = track.state.lock();
                st.resync_queued = false;
                if shared.is_up(session) {
                    shared.queue_resync(&track, &mut st);
                }
            }
        }
    }
}

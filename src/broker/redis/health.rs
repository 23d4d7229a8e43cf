//! The health monitor task: pings Redis every 500 ms (and at once after a
//! reconnect or a cluster topology change) to keep this node's
//! reachability flag, starts a Redis client again whose connection task
//! ended, refreshes the node's presence heartbeat and its list
//! of nodes whose heartbeat is out of date, and after an outage, a
//! reconnect, a failover or a resharding resubscribes the watched
//! sessions' channels and resyncs every track.

use std::sync::Weak;
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, EventInterface, PubsubInterface, SortedSetsInterface};
use fred::util::group_by_hash_slot;

use super::conn::{is_connection_error, restart};
use super::delivery::resync_all;
use super::node::Shared;
use crate::ids::now_ms;

/// Watches Redis' health, refreshes this node's heartbeat, and resyncs
/// every session after an outage or a reconnect.
pub(super) async fn monitor(weak: Weak<Shared>) {
    let Some((mut reconnects, mut moved)) = weak.upgrade().map(|s| {
        (
            s.subscriber.reconnect_rx(),
            s.subscriber.cluster_change_rx(),
        )
    }) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat = Instant::now() - Duration::from_secs(3600);
    // Ticks left at which to subscribe again the channels a slot still
    // being moved refused.
    let mut retries = 0;
    loop {
        // A failover or resharding moves slots: the shard channels of
        // those slots were dropped by their old owner and must be
        // subscribed again where they live now.
        let reconnected = tokio::select! {
            _ = tick.tick() => false,
            r = reconnects.recv() => r.is_ok(),
            r = moved.recv() => r.is_ok(),
        };
        let Some(shared) = weak.upgrade() else { return };
        // A client whose connection task ended fails every command until
        // it is started again; what it missed meanwhile is resynced.
        let revived = revive_subscriber(&shared).await | shared.redis.revive().await;
        // On a cluster, the slot map is read at every tick: a failover
        // shows there first, and the failed master's sessions follow its
        // slots to the new one.
        if let Err(e) = shared.redis.refresh().await {
            tracing::warn!(error = %e, "reading the Redis Cluster slot map failed");
        }
        let moved = shared.redis.take_moved();
        let reconnected = reconnected || revived || moved;
        let (answer, back) = ping_every_shard(&shared).await;
        if !answer {
            continue;
        }
        if back || reconnected || retries > 0 {
            // Pub/sub may have missed messages, and subscriptions made
            // while Redis was away never happened.
            // Resync first: a subscription to a shard that is still
            // failing over can take a command timeout per slot, and the
            // sessions' hand-overs must not wait for it. The resync after
            // the subscriptions catches what was published in between.
            resync_all(&shared);
            retries = match resubscribe(&shared).await {
                Resubscribed::All => 0,
                Resubscribed::Refused if back || reconnected => RESUBSCRIBE_RETRIES,
                Resubscribed::Refused => retries - 1,
            };
            resync_all(&shared);
        }
        let every = Duration::from_secs(shared.cfg.presence_ttl_s / 3);
        let beats = shared.keys.heartbeats();
        if last_heartbeat.elapsed() >= every && shared.redis.is_up(&beats) {
            // One try per tick: the next tick tries again.
            let beat: Result<i64, _> = shared
                .redis
                .client(&beats)
                .zadd(
                    &beats,
                    None,
                    None,
                    false,
                    false,
                    (now_ms() as f64, shared.node.clone()),
                )
                .await;
            if beat.is_ok() {
                last_heartbeat = Instant::now();
            }
        }
        refresh_dead_nodes(&shared).await;
    }
}

/// Pings every server at once and records which answer. Returns whether
/// any answers, and whether one came back (its sessions hand over the
/// runs they made alone).
async fn ping_every_shard(shared: &Shared) -> (bool, bool) {
    let shards = shared.redis.shards();
    let pings = shards.iter().map(|shard| shard.client.ping::<String>(None));
    let answers = futures_util::future::join_all(pings).await;
    let (mut any, mut back) = (false, false);
    for (shard, answer) in shards.iter().zip(answers) {
        // Any reply means the server is there: a cluster electing a new
        // master answers `CLUSTERDOWN` even to a PING.
        let answer = match &answer {
            Err(e) if is_connection_error(e) => Err(e),
            _ => Ok(()),
        };
        let ok = answer.is_ok();
        let was = shared.redis.set_up(shard, answer);
        any |= ok;
        back |= ok && !was;
    }
    (any, back)
}

/// Starts the pub/sub client again if its connection task ended.
async fn revive_subscriber(shared: &Shared) -> bool {
    if !shared.subscriber_task.lock().is_finished() {
        return false;
    }
    let timeout = shared.cfg.command_timeout() * 2;
    match restart(&shared.subscriber, "pub/sub", timeout).await {
        Some(task) => {
            *shared.subscriber_task.lock() = task;
            true
        }
        None => false,
    }
}

/// How many ticks in a row the monitor subscribes again channels that were
/// refused. Each try resyncs every session, so it is bounded.
const RESUBSCRIBE_RETRIES: u32 = 20;

/// What a resubscription achieved.
enum Resubscribed {
    /// Every channel, or every one but those that timed out: a shard that
    /// does not answer is left to the next reconnect, so that the monitor
    /// does not wait a command timeout per slot at every tick.
    All,
    /// A shard refused some (their slot is being moved): worth trying again
    /// soon.
    Refused,
}

/// Subscribes again to every watched session's channel, one SSUBSCRIBE
/// per hash slot (a cluster refuses channels of several slots in one).
async fn resubscribe(shared: &Shared) -> Resubscribed {
    let channels: Vec<String> = shared
        .tracks
        .iter()
        .map(|t| shared.keys.channel(t.session))
        .collect();
    let groups = match group_by_hash_slot(channels) {
        Ok(groups) => groups,
        Err(e) => {
            tracing::warn!(error = %e, "resubscribe failed");
            return Resubscribed::All;
        }
    };
    let timeout = shared.cfg.command_timeout();
    let mut result = Resubscribed::All;
    for (_, channels) in groups {
        let subscribed =
            tokio::time::timeout(timeout, shared.subscriber.ssubscribe(Vec::from(channels))).await;
        match subscribed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Resubscribed::Refused;
                tracing::warn!(error = %e, "resubscribe failed; trying again at the next tick");
            }
            Err(_) => tracing::warn!("resubscribe timed out; retried after the next reconnect"),
        }
    }
    result
}

/// Reads which nodes' heartbeats are out of date. The shared counters
/// drop those nodes' connection slots as they meet them (a slot hash and
/// the heartbeats live in different cluster slots, so no script can read
/// both).
async fn refresh_dead_nodes(shared: &Shared) {
    let deadline = now_ms().saturating_sub(shared.cfg.presence_ttl_s * 1000);
    let beats = shared.keys.heartbeats();
    if !shared.redis.is_up(&beats) {
        return;
    }
    let dead: Result<Vec<String>, _> = shared
        .redis
        .client(&beats)
        .zrangebyscore(&beats, "-inf", deadline as f64, false, None)
        .await;
    if let Ok(dead) = dead {
        *shared.dead_nodes.write() = dead;
    }
}

//! The health monitor task: pings Redis every 500 ms (and at once after a
//! reconnect) to keep this node's reachability flag, refreshes the node's
//! presence heartbeat, and after an outage or a reconnect resubscribes
//! the watched sessions' channels and resyncs every track.

use std::sync::Weak;
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, EventInterface, PubsubInterface, SortedSetsInterface};

use super::delivery::resync_all;
use super::node::Shared;
use crate::ids::now_ms;

/// Watches Redis' health, refreshes this node's heartbeat, and resyncs
/// every session after an outage or a reconnect.
pub(super) async fn monitor(weak: Weak<Shared>) {
    let Some(mut reconnects) = weak.upgrade().map(|s| s.subscriber.reconnect_rx()) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat = Instant::now() - Duration::from_secs(3600);
    loop {
        let reconnected = tokio::select! {
            _ = tick.tick() => false,
            r = reconnects.recv() => r.is_ok(),
        };
        let Some(shared) = weak.upgrade() else { return };
        let ok = shared.client.ping::<String>(None).await.is_ok();
        let was = shared.set_up(ok);
        if !ok {
            continue;
        }
        if !was || reconnected {
            // Pub/sub may have missed messages, and subscriptions made
            // while Redis was away never happened.
            let channels: Vec<String> = shared
                .tracks
                .iter()
                .map(|t| shared.keys.channel(t.session))
                .collect();
            if !channels.is_empty()
                && let Err(e) = shared.subscriber.subscribe(channels).await
            {
                tracing::warn!(error = %e, "resubscribe failed");
            }
            resync_all(&shared);
        }
        let every = Duration::from_secs(shared.cfg.presence_ttl_s / 3);
        if last_heartbeat.elapsed() >= every {
            let beat: Result<i64, _> = shared
                .client
                .zadd(
                    shared.keys.heartbeats(),
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
    }
}

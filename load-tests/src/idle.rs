//! Idle connections: how much hub memory one authenticated, joined, silent
//! participant costs.

use std::time::Duration;

use eva_hub::client::{Client, ClientReceiver, ConnectOptions};
use eva_hub::protocol::Codec;

use crate::engine::{connect_and_join, source};
use crate::hubproc::Hub;

#[derive(Debug, serde::Serialize)]
pub struct IdleOutcome {
    pub connections: usize,
    pub sessions: usize,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub bytes_per_connection: f64,
    pub connect_seconds: f64,
}

/// Opens `connections` participants over `sessions` sessions, waits for
/// the hub to settle, and reads its resident memory before and after.
/// With `join = false` they only authenticate, which separates the cost of
/// a connection from the cost of session membership.
pub async fn run(
    hub: &Hub,
    connections: usize,
    per_session: usize,
    sources: usize,
    join: bool,
    settle: Duration,
) -> anyhow::Result<IdleOutcome> {
    let sessions = if join {
        connections.div_ceil(per_session)
    } else {
        0
    };
    let mut ids = Vec::new();
    for s in 0..sessions {
        ids.push(hub.create_session(&format!("idle-{s}")).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = hub.rss_bytes().unwrap_or(0);
    let started = std::time::Instant::now();
    let mut held: Vec<ClientReceiver> = Vec::with_capacity(connections);
    let mut k = 0;
    while k < connections {
        let batch: Vec<_> = (k..(k + 200).min(connections))
            .map(|n| {
                let id = ids.get(n / per_session).cloned();
                let token = format!("dev:participant:idle{n}");
                async move {
                    match id {
                        Some(id) => {
                            connect_and_join(hub.addr, &token, &id, source(n, sources), None)
                                .await
                                .map(|j| j.rx)
                        }
                        None => {
                            let mut opts = ConnectOptions::new(Codec::Json, token);
                            opts.source = source(n, sources);
                            opts.read_buffer = 16 * 1024;
                            let (_tx, mut rx) = Client::connect(hub.addr, opts).await?.split();
                            rx.recv_message().await; // welcome
                            Ok(rx)
                        }
                    }
                }
            })
            .collect();
        for r in futures_util::future::join_all(batch).await {
            held.push(r?);
        }
        k += 200;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // Presence and counters settle, and at least one heartbeat (ping and
    // pong on every connection) happens: the steady state of an idle hub.
    tokio::time::sleep(settle).await;
    let after = hub.rss_bytes().unwrap_or(0);
    let per = after.saturating_sub(before) as f64 / connections as f64;
    drop(held);
    Ok(IdleOutcome {
        connections,
        sessions,
        rss_before_bytes: before,
        rss_after_bytes: after,
        bytes_per_connection: per,
        connect_seconds,
    })
}

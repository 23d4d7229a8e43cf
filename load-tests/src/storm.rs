//! A reconnect storm: every participant of a busy session drops and comes
//! back within a short window, resuming from its last `(epoch, seq)`.
//! Counts what resumed exactly, what got a discontinuity, and whether any
//! event was lost or duplicated across the reconnect.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eva_hub::client::ClientReceiver;
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::{Tally, Totals};
use crate::engine::{Answer, Clock, connect_and_join, source};
use crate::hubproc::Hub;
use crate::report::latency_histogram;
use crate::scan::probe;

#[derive(Debug)]
pub struct StormOutcome {
    pub clients: usize,
    pub resumed: usize,
    pub discontinuities: usize,
    pub failed: usize,
    /// Reconnect start to `resumed`, µs.
    pub reconnect: Histogram<u64>,
    pub storm_seconds: f64,
    pub totals: Totals,
    pub sent: u64,
    pub hub_cpu_seconds: Option<f64>,
}

struct Logical {
    tally: Tally,
    epoch: String,
    seq: u64,
}

/// Reads probes until the receiver ends, remembering the last seq.
async fn read(mut rx: ClientReceiver, me: Rc<RefCell<Logical>>) {
    while let Some(Ok(Message::Text(t))) = rx.recv_message().await {
        if let Some(p) = probe(t.as_bytes()) {
            let mut l = me.borrow_mut();
            l.tally.record(p.i);
            l.seq = p.seq;
        }
    }
}

pub async fn run(
    hub: &Hub,
    clients: usize,
    rate: f64,
    window: Duration,
    sources: usize,
) -> anyhow::Result<StormOutcome> {
    let clock = Clock::new();
    let id = hub.create_session("storm").await?;
    let r = connect_and_join(hub.addr, "dev:renderer:storm", &id, None, None).await?;
    let (mut rtx, mut rrx) = (r.tx, r.rx);
    rtx.send_message(Message::Text(
        format!(r#"{{"type":"status","session":"{id}","status":"active"}}"#).into(),
    ))
    .await?;
    tokio::task::spawn_local(async move { while let Some(Ok(_)) = rrx.recv_message().await {} });

    // Everyone joins before the first event, so each expects event 0 on.
    let mut logical = Vec::new();
    let mut readers = Vec::new();
    let mut k = 0;
    while k < clients {
        let batch: Vec<_> = (k..(k + 200).min(clients))
            .map(|n| {
                let id = id.clone();
                async move {
                    connect_and_join(
                        hub.addr,
                        &format!("dev:participant:s{n}"),
                        &id,
                        source(n, sources),
                        None,
                    )
                    .await
                }
            })
            .collect();
        for r in futures_util::future::join_all(batch).await {
            let j = r?;
            let l = Rc::new(RefCell::new(Logical {
                tally: Tally::new(),
                epoch: j.epoch,
                seq: j.seq,
            }));
            readers.push(tokio::task::spawn_local(read(j.rx, l.clone())));
            logical.push(l);
        }
        k += 200;
    }

    // The renderer publishes throughout.
    let period = Duration::from_secs_f64(1.0 / rate);
    let stop = Rc::new(std::cell::Cell::new(false));
    let stop2 = stop.clone();
    let sid = id.clone();
    let publisher = tokio::task::spawn_local(async move {
        let mut i = 0u64;
        let mut next = Instant::now();
        while !stop2.get() {
            let msg = format!(
                r#"{{"type":"publish","session":"{sid}","name":"b","data":{{"i":{i},"t":{},"p":""}}}}"#,
                clock.ns()
            );
            if rtx.send_message(Message::Text(msg.into())).await.is_err() {
                break;
            }
            i += 1;
            next += period;
            tokio::time::sleep_until(next.into()).await;
        }
        i
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The storm: drop everyone, then reconnect spread over the window.
    let cpu0 = hub.cpu_seconds();
    for r in &readers {
        r.abort();
    }
    let storm_start = Instant::now();
    let reconnect = Rc::new(RefCell::new(latency_histogram()));
    let outcome = Rc::new(RefCell::new((0usize, 0usize, 0usize)));
    let mut tasks = Vec::new();
    for (n, l) in logical.iter().enumerate() {
        let l = l.clone();
        let id = id.clone();
        let addr = hub.addr;
        let reconnect = reconnect.clone();
        let outcome = outcome.clone();
        let offset = window.mul_f64(n as f64 / clients as f64);
        tasks.push(tokio::task::spawn_local(async move {
            tokio::time::sleep_until((storm_start + offset).into()).await;
            let t0 = Instant::now();
            let (epoch, seq) = {
                let b = l.borrow();
                (b.epoch.clone(), b.seq)
            };
            match connect_and_join(
                addr,
                &format!("dev:participant:s{n}"),
                &id,
                source(n, sources),
                Some((&epoch, seq)),
            )
            .await
            {
                Ok(j) => {
                    let _ = reconnect
                        .borrow_mut()
                        .record((t0.elapsed().as_micros() as u64).max(1));
                    match j.answer {
                        Answer::Resumed => outcome.borrow_mut().0 += 1,
                        _ => outcome.borrow_mut().1 += 1,
                    }
                    read(j.rx, l).await;
                }
                Err(e) => {
                    eprintln!("reconnect failed: {e}");
                    outcome.borrow_mut().2 += 1;
                }
            }
        }));
    }
    tokio::time::sleep(window + Duration::from_secs(3)).await;
    let storm_seconds = storm_start.elapsed().as_secs_f64();
    stop.set(true);
    let sent = publisher.await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu1 = hub.cpu_seconds();
    for t in &tasks {
        t.abort();
    }
    let mut totals = Totals::default();
    for l in &logical {
        l.borrow().tally.merge_into(&mut totals, sent);
    }
    let (resumed, discontinuities, failed) = *outcome.borrow();
    let reconnect = reconnect.borrow().clone();
    Ok(StormOutcome {
        clients,
        resumed,
        discontinuities,
        failed,
        reconnect,
        storm_seconds,
        totals,
        sent,
        hub_cpu_seconds: cpu0.zip(cpu1).map(|(a, b)| b - a),
    })
}

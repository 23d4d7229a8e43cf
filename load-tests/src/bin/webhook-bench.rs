//! Outbound webhook dispatch under load, against a release hub pinned to
//! its own core: participants ask questions over the WebSocket (open loop,
//! at a fixed rate), every question is a `question.created` event for
//! each of `--endpoints` subscribed endpoints on a local receiver, and the
//! renderer of each session receives every question live.
//!
//! Two phases of the same load:
//! * **healthy**: every endpoint answers 204 at once;
//! * **hanging**: the same, plus `--hang` endpoints that accept the
//!   request and never answer.
//!
//! Per phase it reports deliveries per second to the healthy endpoints,
//! enqueue-to-delivery latency (the event's acceptance time in the hub,
//! `data.ts`, to the receiver reading the request; same machine, same
//! clock), lost and duplicated deliveries, and the fan-out latency of the
//! same questions to the renderers (send to receipt, in this process).
//!
//! ```sh
//! cargo build --release -p eva-load -p eva-hub
//! taskset -c 1 target/release/webhook-bench --rate 500 --endpoints 10
//! ```

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::ids::SessionId;
use eva_hub::protocol::model::{Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame, SessionStatus};
use eva_load::hubproc::{self, Hub, Spawn};
use eva_load::report;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    about = "Outbound webhook dispatch: throughput, enqueue-to-delivery latency, a hanging endpoint"
)]
struct Cli {
    /// Questions per second, over all participants.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Healthy endpoints, each subscribed to `question.created`.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Endpoints that never answer, added in the second phase.
    #[arg(long, default_value_t = 1)]
    hang: usize,
    #[arg(long, default_value_t = 5)]
    sessions: usize,
    /// Participants per session.
    #[arg(long, default_value_t = 4)]
    participants: usize,
    /// Measured seconds per phase (after the warm-up).
    #[arg(long, default_value_t = 20)]
    duration_s: u64,
    #[arg(long, default_value_t = 3)]
    warmup_s: u64,
    /// `memory`, or `sqlite` (a fresh file, synchronous = FULL).
    #[arg(long, default_value = "memory")]
    store: String,
    /// CPUs for the hub (`taskset -c`); empty: unpinned.
    #[arg(long, default_value = "0")]
    hub_cpus: String,
    #[arg(long, default_value = "run")]
    label: String,
    /// Where the hub's log goes (default: discarded).
    #[arg(long)]
    hub_log: Option<std::path::PathBuf>,
}

/// What the receiver saw.
struct Seen {
    /// Measurement window on the hub's clock (Unix ms): deliveries of
    /// events accepted in it are counted.
    window: (u64, u64),
    /// The phase whose questions are being counted (text prefix).
    phase: String,
    latency_us: Histogram<u64>,
    in_window: u64,
    unique: HashSet<(u32, String)>,
    duplicates: u64,
}

struct Receiver {
    seen: Mutex<Seen>,
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn ok(
    State(r): State<Arc<Receiver>>,
    Path(n): Path<u32>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now_us = unix_us();
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = headers
        .get("webhook-id")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let ts_ms = v["data"]["ts"].as_u64().unwrap_or(0);
    let text = v["data"]["text"].as_str().unwrap_or("");
    let mut s = r.seen.lock();
    if !text.starts_with(&s.phase) {
        return StatusCode::NO_CONTENT;
    }
    if !s.unique.insert((n, id)) {
        s.duplicates += 1;
    }
    if ts_ms >= s.window.0 && ts_ms < s.window.1 {
        s.in_window += 1;
        let lat = now_us.saturating_sub(ts_ms * 1000).max(1);
        let _ = s.latency_us.record(lat);
    }
    StatusCode::NO_CONTENT
}

async fn hang() -> StatusCode {
    std::future::pending::<()>().await;
    StatusCode::NO_CONTENT
}

async fn start_receiver(r: Arc<Receiver>) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/ok/{n}", post(ok))
        .route("/hang/{n}", post(hang))
        .with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn subscribe(hub: &Hub, url: String, timeout_s: u32) -> anyhow::Result<()> {
    let body = json!({"url": url, "events": ["question.created"], "timeout_seconds": timeout_s, "retry_count": 3});
    hubproc::http(hub.addr, "POST", "/v1/webhooks", Some(&body.to_string())).await?;
    Ok(())
}

/// Counters of the load side.
#[derive(Default)]
struct Load {
    sent: AtomicU64,
    acked: AtomicU64,
    fanout_us: Mutex<Option<Histogram<u64>>>,
    /// Record fan-out latency now (the measurement window).
    measuring: AtomicBool,
}

/// A session with an active renderer that records when each question
/// arrives.
async fn session(hub: &Hub, load: Arc<Load>, t0: Instant) -> anyhow::Result<SessionId> {
    let created = hubproc::http(
        hub.addr,
        "POST",
        "/v1/sessions",
        Some(r#"{"name":"bench"}"#),
    )
    .await?;
    let id: SessionId = serde_json::from_str::<Value>(&created)?["id"]
        .as_str()
        .context("session id")?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad session id"))?;
    let token = eva_hub::auth::dev::dev_token(Role::Renderer, &format!("r-{id}"), None);
    let mut r = Client::connect(hub.addr, ConnectOptions::new(Codec::Json, token)).await?;
    r.send(&ClientFrame::Join {
        session: id,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await?;
    r.send(&ClientFrame::Status {
        session: id,
        status: SessionStatus::Active,
        reason: None,
        id: None,
    })
    .await?;
    tokio::spawn(async move {
        while let Ok(incoming) = r.recv().await {
            let Incoming::Frame(ServerFrame::Event {
                event: Event::Question { text, .. },
                ..
            }) = incoming
            else {
                if matches!(incoming, Incoming::Closed(_)) {
                    return;
                }
                continue;
            };
            if !load.measuring.load(Ordering::Relaxed) {
                continue;
            }
            // `<phase>:<sent µs since start>:<n>`
            if let Some(sent) = text.split(':').nth(1).and_then(|s| s.parse::<u64>().ok()) {
                let now = t0.elapsed().as_micros() as u64;
                if let Some(h) = load.fanout_us.lock().as_mut() {
                    let _ = h.record(now.saturating_sub(sent).max(1));
                }
            }
        }
    });
    Ok(id)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(65_536);
    let mut env = vec![("EVA_HUB__LOG__LEVEL".to_owned(), "error".to_owned())];
    let tmp = std::env::temp_dir().join(format!("webhook-bench-{}", std::process::id()));
    match cli.store.as_str() {
        "memory" => {}
        "sqlite" => {
            std::fs::create_dir_all(&tmp)?;
            env.push((
                "EVA_HUB__STORE__DATABASE_URL".into(),
                format!("sqlite://{}/bench.db", tmp.display()),
            ));
        }
        other => anyhow::bail!("--store is memory or sqlite, not {other}"),
    }
    let hub = Hub::spawn(&Spawn {
        binary: Spawn::release_binary(),
        cpus: (!cli.hub_cpus.is_empty()).then(|| cli.hub_cpus.clone()),
        env,
        log: cli.hub_log.clone(),
    })
    .await?;
    let receiver = Arc::new(Receiver {
        seen: Mutex::new(Seen {
            window: (0, 0),
            phase: String::new(),
            latency_us: report::latency_histogram(),
            in_window: 0,
            unique: HashSet::new(),
            duplicates: 0,
        }),
    });
    let raddr = start_receiver(receiver.clone()).await?;
    for n in 0..cli.endpoints {
        subscribe(&hub, format!("http://{raddr}/ok/{n}"), 30).await?;
    }
    let load = Arc::new(Load::default());
    let t0 = Instant::now();
    let mut sessions = Vec::new();
    for _ in 0..cli.sessions {
        sessions.push(session(&hub, load.clone(), t0).await?);
    }
    // Participants: each sends its share of the rate, open loop.
    let per = (cli.sessions * cli.participants).max(1) as u64;
    let interval = Duration::from_secs_f64(per as f64 / cli.rate.max(1) as f64);
    let phase_tag: Arc<Mutex<String>> = Arc::new(Mutex::new("warm".into()));
    let running = Arc::new(AtomicBool::new(true));
    for (si, s) in sessions.iter().enumerate() {
        for pi in 0..cli.participants {
            let token =
                eva_hub::auth::dev::dev_token(Role::Participant, &format!("p-{si}-{pi}"), None);
            let c = Client::connect(hub.addr, ConnectOptions::new(Codec::Json, token)).await?;
            let (mut tx, mut rx) = c.split();
            tx.send(&ClientFrame::Join {
                session: *s,
                resume: None,
                takeover: false,
                name: None,
                compact: false,
                echo: true,
                id: None,
            })
            .await?;
            let acked = load.clone();
            tokio::spawn(async move {
                while let Ok(i) = rx.recv().await {
                    match i {
                        Incoming::Frame(ServerFrame::Ack { .. }) => {
                            acked.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Incoming::Closed(_) => return,
                        _ => {}
                    }
                }
            });
            let (load, tag, running, session) =
                (load.clone(), phase_tag.clone(), running.clone(), *s);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    tick.tick().await;
                    n += 1;
                    let phase = tag.lock().clone();
                    let text = format!("{phase}:{}:{si}-{pi}-{n}", t0.elapsed().as_micros());
                    if tx
                        .send(&ClientFrame::Question {
                            session,
                            id: format!("{phase}-{n}"),
                            text,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    load.sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    }

    let mut results = Vec::new();
    for phase in ["healthy", "hanging"] {
        if phase == "hanging" {
            for n in 0..cli.hang {
                subscribe(&hub, format!("http://{raddr}/hang/{n}"), 300).await?;
            }
        }
        *phase_tag.lock() = phase.to_owned();
        {
            let mut s = receiver.seen.lock();
            s.phase = phase.to_owned();
            s.latency_us = report::latency_histogram();
            s.in_window = 0;
            s.unique.clear();
            s.duplicates = 0;
            s.window = (u64::MAX, u64::MAX);
        }
        tokio::time::sleep(Duration::from_secs(cli.warmup_s)).await;
        let start_ms = unix_us() / 1000;
        let sent0 = load.sent.load(Ordering::Relaxed);
        let cpu0 = hub.cpu_seconds();
        *load.fanout_us.lock() = Some(report::latency_histogram());
        load.measuring.store(true, Ordering::Relaxed);
        receiver.seen.lock().window = (start_ms, u64::MAX);
        tokio::time::sleep(Duration::from_secs(cli.duration_s)).await;
        let end_ms = unix_us() / 1000;
        receiver.seen.lock().window.1 = end_ms;
        load.measuring.store(false, Ordering::Relaxed);
        let sent = load.sent.load(Ordering::Relaxed) - sent0;
        let cpu = match (cpu0, hub.cpu_seconds()) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let fanout = load
            .fanout_us
            .lock()
            .take()
            .unwrap_or_else(report::latency_histogram);
        // Let the last deliveries of the window arrive.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let s = receiver.seen.lock();
        let secs = (end_ms - start_ms) as f64 / 1000.0;
        let r = json!({
            "phase": phase,
            "questions_per_s": sent as f64 / secs,
            "healthy_endpoints": cli.endpoints,
            "hanging_endpoints": if phase == "hanging" { cli.hang } else { 0 },
            "deliveries_per_s": s.in_window as f64 / secs,
            "expected_deliveries_per_s": (sent * cli.endpoints as u64) as f64 / secs,
            "enqueue_to_delivery": report::percentiles_ms(&s.latency_us),
            "fanout_to_renderer": report::percentiles_ms(&fanout),
            "duplicates": s.duplicates,
            "hub_cpu_s_per_s": cpu.map(|c| c / secs),
        });
        println!("{}", serde_json::to_string_pretty(&r)?);
        results.push(r);
    }
    running.store(false, Ordering::Relaxed);
    let acked = load.acked.load(Ordering::Relaxed);
    let sent = load.sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = json!({
        "label": cli.label,
        "store": cli.store,
        "rate": cli.rate,
        "sessions": cli.sessions,
        "participants_per_session": cli.participants,
        "questions_sent": sent,
        "questions_acked": acked,
        "phases": results,
    });
    let dir = report::results_dir("webhooks");
    let path = report::write_json(&dir, &cli.label, &out)?;
    println!("written to {}", path.display());
    println!(
        "\n| phase | deliveries/s | enqueue→delivery p50 / p99 / max | fan-out p50 / p99 | duplicates |"
    );
    println!("|---|---|---|---|---|");
    for r in &out["phases"].as_array().cloned().unwrap_or_default() {
        let e = &r["enqueue_to_delivery"];
        let f = &r["fanout_to_renderer"];
        println!(
            "| {} | {:.0} (of {:.0}) | {} / {} / {} ms | {} / {} ms | {} |",
            r["phase"].as_str().unwrap_or(""),
            r["deliveries_per_s"].as_f64().unwrap_or(0.0),
            r["expected_deliveries_per_s"].as_f64().unwrap_or(0.0),
            e["p50_ms"],
            e["p99_ms"],
            e["max_ms"],
            f["p50_ms"],
            f["p99_ms"],
            r["duplicates"]
        );
    }
    drop(hub);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

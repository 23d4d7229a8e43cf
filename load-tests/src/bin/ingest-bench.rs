//! Inbound vendor events under load, against a release hub pinned to its
//! own core: `--connections` keep-alive HTTP connections post signed
//! generic events (closed loop) to `/v1/ingest/generic`, each event
//! `--repeat` times in a row, so all but the first delivery of each must
//! be answered as duplicates. Participants watch every session and count
//! the hub events the utterances became.
//!
//! It reports requests per second, the latency of each request, and
//! checks the contract: one `202` and `repeat - 1` `200 duplicate` answers
//! per event, and exactly one hub event per event at the participants.
//!
//! ```sh
//! cargo build --release -p eva-load -p eva-hub
//! target/release/ingest-bench --connections 128 --events 60000 --repeat 2
//! target/release/ingest-bench --connections 128 --events 20000 --store sqlite
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::ids::SessionId;
use eva_hub::ingest::signature::hmac_hex;
use eva_hub::protocol::model::{Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_load::hubproc::{self, Hub, Spawn};
use eva_load::report;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const SECRET: &str = "ingest-bench-secret";

#[derive(Debug, Parser)]
#[command(about = "Inbound vendor events: throughput with duplicates rejected")]
struct Cli {
    /// Distinct events to send.
    #[arg(long, default_value_t = 50_000)]
    events: u64,
    /// Deliveries of each event (the first records it, the rest are
    /// duplicates).
    #[arg(long, default_value_t = 2)]
    repeat: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: u64,
    /// Sessions the events map to (round robin).
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// `memory`, `sqlite` (a fresh file, synchronous = FULL), or a
    /// `postgres://` URL (the hub migrates it on start).
    #[arg(long, default_value = "memory")]
    store: String,
    /// CPUs for the hub (`taskset -c`); empty: unpinned.
    #[arg(long, default_value = "0")]
    hub_cpus: String,
    #[arg(long, default_value = "run")]
    label: String,
}

/// One keep-alive HTTP/1.1 connection: a request, then its answer.
struct Conn {
    addr: SocketAddr,
    stream: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Conn {
            addr,
            stream: BufReader::new(s),
        })
    }

    /// Posts `body` and returns the status.
    async fn post(&mut self, path: &str, body: &str, signature: &str) -> anyhow::Result<u16> {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             X-Eva-Signature: sha256={signature}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed mid-answer");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    duplicate: AtomicU64,
    other: AtomicU64,
    seen: AtomicU64,
}

async fn watch(hub: SocketAddr, id: SessionId, counts: Arc<Counts>) -> anyhow::Result<()> {
    let token = eva_hub::auth::dev::dev_token(Role::Participant, &format!("p-{id}"), None);
    let mut c = Client::connect(hub, ConnectOptions::new(Codec::Json, token)).await?;
    c.send(&ClientFrame::Join {
        session: id,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await?;
    tokio::spawn(async move {
        while let Ok(Incoming::Frame(f)) = c.recv_timeout(Duration::from_secs(3600)).await {
            if let ServerFrame::Event {
                event: Event::Custom { name, .. },
                ..
            } = f
                && name == "utterance"
            {
                counts.seen.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(65_536);
    let mut env = vec![
        ("EVA_HUB__LOG__LEVEL".to_owned(), "error".to_owned()),
        ("EVA_HUB__INGEST__GENERIC_SECRET".into(), SECRET.into()),
        ("EVA_HUB__LIMITS__ENABLED".into(), "false".into()),
    ];
    let tmp = std::env::temp_dir().join(format!("ingest-bench-{}", std::process::id()));
    match cli.store.as_str() {
        "memory" => {}
        "sqlite" => {
            std::fs::create_dir_all(&tmp)?;
            env.push((
                "EVA_HUB__STORE__DATABASE_URL".into(),
                format!("sqlite://{}/bench.db", tmp.display()),
            ));
        }
        url if url.starts_with("postgres://") => {
            env.push(("EVA_HUB__STORE__DATABASE_URL".into(), url.to_owned()));
        }
        other => bail!("--store is memory, sqlite or a postgres:// URL, not {other}"),
    }
    let hub = Hub::spawn(&Spawn {
        binary: Spawn::release_binary(),
        cpus: (!cli.hub_cpus.is_empty()).then(|| cli.hub_cpus.clone()),
        env,
        log: None,
    })
    .await?;
    let counts = Arc::new(Counts::default());
    let mut conversations = Vec::new();
    for i in 0..cli.sessions {
        let conv = format!("bench-{}-{i}", std::process::id());
        let created = hubproc::http(
            hub.addr,
            "POST",
            "/v1/sessions",
            Some(&json!({"name": "ingest bench", "external_id": conv}).to_string()),
        )
        .await?;
        let id: SessionId = serde_json::from_str::<Value>(&created)?["id"]
            .as_str()
            .context("session id")?
            .parse()
            .map_err(|_| anyhow::anyhow!("bad session id"))?;
        watch(hub.addr, id, counts.clone()).await?;
        conversations.push(conv);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let next = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(report::latency_histogram()));
    let conversations = Arc::new(conversations);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..cli.connections {
        let (next, latency, counts, conversations) = (
            next.clone(),
            latency.clone(),
            counts.clone(),
            conversations.clone(),
        );
        let (addr, events, repeat) = (hub.addr, cli.events, cli.repeat);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut local: Histogram<u64> = report::latency_histogram();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= events {
                    break;
                }
                let conv = &conversations[n as usize % conversations.len()];
                let body = json!({
                    "event_type": "utterance",
                    "conversation_id": conv,
                    "properties": {"role": "user", "text": format!("utterance {n}")},
                })
                .to_string();
                let sig = hmac_hex(SECRET, body.as_bytes());
                for _ in 0..repeat {
                    let t = Instant::now();
                    let status = conn.post("/v1/ingest/generic", &body, &sig).await?;
                    let _ = local.record(t.elapsed().as_micros() as u64);
                    let c = match status {
                        202 => &counts.accepted,
                        200 => &counts.duplicate,
                        _ => &counts.other,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            latency.lock().add(&local)?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let took = started.elapsed().as_secs_f64();
    // Let the last hub events reach the participants.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts.seen.load(Ordering::Relaxed) < cli.events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = cli.events * cli.repeat;
    let result = json!({
        "label": cli.label,
        "store": if cli.store.starts_with("postgres://") { "postgres" } else { cli.store.as_str() },
        "events": cli.events,
        "repeat": cli.repeat,
        "connections": cli.connections,
        "requests": requests,
        "seconds": took,
        "requests_per_s": requests as f64 / took,
        "accepted": counts.accepted.load(Ordering::Relaxed),
        "duplicates": counts.duplicate.load(Ordering::Relaxed),
        "other_answers": counts.other.load(Ordering::Relaxed),
        "hub_events_seen": counts.seen.load(Ordering::Relaxed),
        "latency_ms": report::percentiles_ms(&latency.lock()),
        "hub_cpu_s": hub.cpu_seconds(),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    let ok = counts.accepted.load(Ordering::Relaxed) == cli.events
        && counts.duplicate.load(Ordering::Relaxed) == cli.events * (cli.repeat - 1)
        && counts.other.load(Ordering::Relaxed) == 0
        && counts.seen.load(Ordering::Relaxed) == cli.events;
    let dir = report::results_dir("ingest");
    report::write_json(&dir, &cli.label, &result)?;
    drop(hub);
    let _ = std::fs::remove_dir_all(&tmp);
    if !ok {
        bail!("the idempotency contract did not hold (see accepted, duplicates, hub_events_seen)");
    }
    Ok(())
}

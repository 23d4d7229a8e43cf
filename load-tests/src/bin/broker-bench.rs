//! broker-bench: how many events per second the Redis broker sequences
//! across several hub nodes, on one Redis or on a Redis Cluster, and the
//! cross-node hop: from a publish on one node to its delivery on another.
//!
//! Three broker nodes (in this process, each with its own connections, as
//! three hub processes would have) watch every session; publishers on each
//! node publish to the sessions as fast as the broker returns, `--inflight`
//! at a time per node. The bench starts its own servers: one
//! `redis-server` (`--masters 1`) or a cluster of `--masters` masters with
//! one replica each (`redis-server --cluster-enabled yes`, `redis-cli
//! --cluster create`), so nothing else shares them. Redis' own CPU is read
//! from `/proc` for every server.
//!
//! ```sh
//! cargo run --release -p eva-load --bin broker-bench -- --masters 1
//! cargo run --release -p eva-load --bin broker-bench -- --masters 3
//! cargo run --release -p eva-load --bin broker-bench -- --masters 3 --wait-replicas 1
//! cargo run --release -p eva-load --bin broker-bench -- --masters 3 --rate 500 --inflight 4
//! cargo run --release -p eva-load --bin broker-bench -- --masters 1 --redis-cores 0.1
//! cargo run --release -p eva-load --bin broker-bench -- --masters 3 --redis-cores 0.1
//! ```
//!
//! On a machine with fewer cores than servers, the servers and the nodes
//! share the cores, and 3 masters cannot show what they would do each on
//! a core of their own. `--redis-cores` holds every redis-server to that
//! much CPU (a cgroup CPU quota; root only), so that Redis is the bound, as
//! a busy deployment's Redis is, and 1 and 3 masters compare with the same
//! budget per server.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use eva_hub::broker::redis::RedisBroker;
use eva_hub::broker::{Broker, BrokerHandler, Checkpoint, Condition};
use eva_hub::config::Settings;
use eva_hub::ids::SessionId;
use eva_hub::protocol::model::{CustomAudience, Event, StreamPosition};
use eva_hub::stream::{Origin, Published};
use eva_load::cpucap::CpuCap;
use eva_load::report;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::json;

#[path = "../../../tests/common/services.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
mod services;

#[derive(Parser, Debug)]
#[command(about = "Events per second the Redis broker sequences, one Redis or a cluster")]
struct Args {
    /// 1: one redis-server; 3 or more: a Redis Cluster of that many
    /// masters, each with a replica.
    #[arg(long, default_value_t = 1)]
    masters: usize,
    /// A Redis Cluster even for `--masters 1`: one master holding every
    /// slot, with its replica, so that 1 and 3 masters compare in the same
    /// server mode (cluster bookkeeping and replication included).
    #[arg(long)]
    cluster: bool,
    /// Broker nodes, each publishing and watching every session.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Sessions (spread over the cluster's slots by their ids).
    #[arg(long, default_value_t = 300)]
    sessions: usize,
    /// Publishes in flight per node.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
    /// Seconds measured (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Publishes per second per node (0: as fast as the broker returns).
    /// A paced run measures the hop without queueing behind saturation.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// `redis.wait_replicas`: WAIT for this many replicas per publish.
    #[arg(long, default_value_t = 0)]
    wait_replicas: u32,
    /// CPU each redis-server may use, in cores (0: no cap). Needs root.
    #[arg(long, default_value_t = 0.0)]
    redis_cores: f64,
}

/// Counts deliveries and records the hop of events published on another
/// node (the event's `data.t` is the publish start, microseconds since
/// the bench began), and when it delivered each event (`data.id`).
struct Node {
    index: usize,
    delivered: AtomicU64,
    hops: Mutex<Histogram<u64>>,
    /// Event id → delivery time (µs since the bench began), while measuring.
    times: Mutex<std::collections::HashMap<u64, u64>>,
    epoch: Instant,
    measuring: Arc<AtomicBool>,
}

impl BrokerHandler for Node {
    fn on_publication(&self, p: Arc<Published>) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if !self.measuring.load(Ordering::Relaxed) {
            return;
        }
        let now = self.epoch.elapsed().as_micros() as u64;
        if let Event::Custom { data, from, .. } = &p.event {
            if let Some(id) = data.get("id").and_then(|t| t.as_u64()) {
                self.times.lock().insert(id, now);
            }
            if from != &format!("n{}", self.index)
                && let Some(t) = data.get("t").and_then(|t| t.as_u64())
            {
                let _ = self.hops.lock().record(now.saturating_sub(t).max(1));
            }
        }
    }

    fn on_stream_reset(&self, _: SessionId, _: StreamPosition, _: Option<Vec<u8>>) {}

    fn checkpoint(&self, _: SessionId) -> Option<Checkpoint> {
        None
    }
}

/// The base a node begins a session's stream with (the bench's nodes keep
/// no replica).
fn base() -> Checkpoint {
    Checkpoint {
        position: StreamPosition {
            epoch: eva_hub::ids::Epoch::random(),
            seq: 0,
        },
        replica: Vec::new(),
        state: "{}".into(),
        metrics: None,
        context: "{}".into(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.masters == 1 || args.masters >= 3,
        "--masters is 1 (one Redis, or with --cluster a cluster of one master) or at least 3"
    );
    // The servers live as long as these guards.
    let (url, _single, cluster) = if args.masters == 1 && !args.cluster {
        let redis = services::private_redis();
        (redis.url(), Some(redis), None)
    } else {
        let cluster = services::PrivateCluster::start(args.masters);
        (cluster.url(), None, Some(cluster))
    };
    let (masters, replicas): (Vec<u16>, Vec<u16>) = match (&cluster, &_single) {
        (Some(c), _) => {
            let masters = c.masters();
            let replicas = c.ports.iter().filter(|p| !masters.contains(p)).copied();
            (masters.clone(), replicas.collect())
        }
        (None, Some(r)) => (vec![r.port], vec![]),
        _ => (vec![], vec![]),
    };
    // Every server, masters and replicas, gets the same budget: a replica
    // applies its master's writes, as it would on a core of its own.
    let masters = Servers::new(masters, args.redis_cores)?;
    let replicas = Servers::new(replicas, args.redis_cores)?;

    let mut cfg = Settings::defaults().redis;
    cfg.url = url.clone().into();
    cfg.prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    cfg.wait_replicas = args.wait_replicas;
    let measuring = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let mut c = cfg.clone();
        c.node_id = format!("bench-node-{i}");
        let broker = Arc::new(RedisBroker::connect(&c, 1000).await?);
        let node = Arc::new(Node {
            index: i,
            delivered: AtomicU64::new(0),
            hops: Mutex::new(report::latency_histogram()),
            times: Mutex::new(std::collections::HashMap::new()),
            epoch,
            measuring: measuring.clone(),
        });
        broker.attach(node.clone());
        nodes.push((broker, node));
    }
    let sessions: Vec<SessionId> = (0..args.sessions).map(|_| SessionId::new()).collect();
    for s in &sessions {
        for (b, _) in &nodes {
            let pos = match b.position(*s).await? {
                Some(pos) => pos,
                None => b.begin(*s, base()).await?,
            };
            b.watch(*s, pos).await?;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Mutex::new(report::latency_histogram()));
    let mut tasks = Vec::new();
    for (i, (b, _)) in nodes.iter().enumerate() {
        for k in 0..args.inflight {
            let (b, sessions) = (b.clone(), sessions.clone());
            let (stop, published, failed) = (stop.clone(), published.clone(), failed.clone());
            let (latency, measuring) = (latency.clone(), measuring.clone());
            let mut pace = (args.rate > 0).then(|| {
                let period = Duration::from_secs_f64(args.inflight as f64 / args.rate as f64);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick
            });
            tasks.push(tokio::spawn(async move {
                let mut n = k;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(tick) = pace.as_mut() {
                        tick.tick().await;
                    }
                    let s = sessions[n % sessions.len()];
                    n += args.inflight;
                    let t = epoch.elapsed().as_micros() as u64;
                    // Ids name the publishing node in their low bits.
                    let id = ((n as u64) << 8) | i as u64;
                    let event = Event::Custom {
                        name: "bench".into(),
                        audience: CustomAudience::All,
                        data: Box::new(json!({ "t": t, "id": id })),
                        from: format!("n{i}"),
                    };
                    let started = Instant::now();
                    match b
                        .publish(s, event, Origin::hub(), 1, Condition::Always)
                        .await
                    {
                        Ok(_) if measuring.load(Ordering::Relaxed) => {
                            published.fetch_add(1, Ordering::Relaxed);
                            let us = started.elapsed().as_micros() as u64;
                            let _ = latency.lock().record(us.max(1));
                        }
                        Ok(_) => {}
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (masters_before, replicas_before) = (masters.usage(), replicas.usage());
    let bench_cpu_before = own_cpu();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let masters_used = masters.usage().since(&masters_before);
    let replicas_used = replicas.usage().since(&replicas_before);
    let redis_cpu_s = masters_used.cpu_s + replicas_used.cpu_s;
    let bench_cpu_s = own_cpu() - bench_cpu_before;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }

    let sequenced = published.load(Ordering::Relaxed);
    let per_s = sequenced as f64 / elapsed;
    let latency = latency.lock().clone();
    let mut hops = report::latency_histogram();
    for (_, node) in &nodes {
        hops.add(&*node.hops.lock())?;
    }
    // What delivery on another node adds to the publishing node's own
    // delivery (its publish returned once it delivered the event).
    let mut added = report::latency_histogram();
    let times: Vec<_> = nodes.iter().map(|(_, n)| n.times.lock().clone()).collect();
    for (i, own) in times.iter().enumerate() {
        for (id, at) in own {
            if (id & 0xff) as usize != i {
                continue;
            }
            for (j, other) in times.iter().enumerate() {
                if let (true, Some(there)) = (j != i, other.get(id)) {
                    let _ = added.record(there.saturating_sub(*at).max(1));
                }
            }
        }
    }
    let result = json!({
        "scenario": "broker",
        "masters": args.masters,
        "nodes": args.nodes,
        "sessions": args.sessions,
        "inflight_per_node": args.inflight,
        "wait_replicas": args.wait_replicas,
        "rate_per_node": args.rate,
        "seconds": elapsed,
        "sequenced": sequenced,
        "sequenced_per_s": per_s,
        "failed": failed.load(Ordering::Relaxed),
        "publish_ms": report::percentiles_ms(&latency),
        "publish_to_other_node_ms": report::percentiles_ms(&hops),
        "cross_node_hop_ms": report::percentiles_ms(&added),
        "cpu_s": {
            "redis": redis_cpu_s,
            "masters": masters_used.cpu_s,
            "replicas": replicas_used.cpu_s,
            "bench": bench_cpu_s,
        },
        "master_cpu_us_per_event": masters_used.cpu_s * 1e6 / sequenced.max(1) as f64,
        "redis_cores_each": args.redis_cores,
        "throttled_share": {
            "masters": masters_used.throttled_share(),
            "replicas": replicas_used.throttled_share(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    let dir = report::results_dir("broker");
    let path = report::write_json(
        &dir,
        &format!(
            "broker-{}m{}-w{}-r{}-c{}",
            args.masters,
            if args.cluster { "-cluster" } else { "" },
            args.wait_replicas,
            args.rate,
            args.redis_cores
        ),
        &result,
    )?;
    if args.redis_cores > 0.0 {
        eprintln!(
            "each redis-server held to {} core; throttled in {:.0}% of the masters' periods and {:.0}% of the replicas'",
            args.redis_cores,
            100.0 * masters_used.throttled_share(),
            100.0 * replicas_used.throttled_share()
        );
    }
    eprintln!(
        "masters' CPU {:.1} µs per sequenced event",
        masters_used.cpu_s * 1e6 / sequenced.max(1) as f64
    );
    eprintln!(
        "{} masters, {} nodes: {per_s:.0} events/s sequenced; publish p99 {:.2} ms; publish to delivery on another node p99 {:.3} ms; hop added p50 {:.3} / p99 {:.3} ms; Redis CPU {:.1} s, bench CPU {:.1} s over {elapsed:.1} s ({})",
        args.masters,
        args.nodes,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        hops.value_at_quantile(0.99) as f64 / 1000.0,
        added.value_at_quantile(0.5) as f64 / 1000.0,
        added.value_at_quantile(0.99) as f64 / 1000.0,
        redis_cpu_s,
        bench_cpu_s,
        path.display()
    );
    Ok(())
}

/// Some of the bench's redis-servers (its masters, or its replicas), with
/// their CPU caps when `--redis-cores` asks for them.
struct Servers {
    pids: Vec<u32>,
    caps: Vec<CpuCap>,
}

/// What a group of servers used so far.
#[derive(Default)]
struct Usage {
    cpu_s: f64,
    throttled: u64,
    periods: u64,
}

impl Usage {
    fn since(&self, before: &Usage) -> Usage {
        Usage {
            cpu_s: self.cpu_s - before.cpu_s,
            throttled: self.throttled - before.throttled,
            periods: self.periods - before.periods,
        }
    }

    /// The share of CFS periods in which a capped server used its whole
    /// budget: near 1 when Redis is the bound.
    fn throttled_share(&self) -> f64 {
        self.throttled as f64 / self.periods.max(1) as f64
    }
}

impl Servers {
    fn new(ports: Vec<u16>, cores: f64) -> anyhow::Result<Servers> {
        let pids = redis_pids(&ports);
        anyhow::ensure!(
            pids.len() == ports.len(),
            "found {} redis-server processes for the servers on {ports:?}",
            pids.len()
        );
        let caps = if cores > 0.0 {
            pids.iter()
                .map(|pid| CpuCap::apply(*pid, cores))
                .collect::<anyhow::Result<_>>()?
        } else {
            Vec::new()
        };
        Ok(Servers { pids, caps })
    }

    fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for pid in &self.pids {
            usage.cpu_s += cpu_of(Path::new(&format!("/proc/{pid}/stat")));
        }
        for cap in &self.caps {
            let (throttled, periods) = cap.throttled();
            usage.throttled += throttled;
            usage.periods += periods;
        }
        usage
    }
}

/// The processes of the redis-servers listening on `ports` (their
/// command line names the port).
fn redis_pids(ports: &[u16]) -> Vec<u32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let serves = cmdline.starts_with("redis-server")
                && ports.iter().any(|p| cmdline.contains(&format!(":{p}")));
            serves.then_some(pid)
        })
        .collect()
}

fn own_cpu() -> f64 {
    cpu_of(Path::new("/proc/self/stat"))
}

/// utime + stime of a `/proc/<pid>/stat` file, in seconds.
fn cpu_of(stat: &Path) -> f64 {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return 0.0;
    };
    let Some(after) = text.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

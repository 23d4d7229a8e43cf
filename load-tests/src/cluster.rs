//! Two or three hub nodes sharing one session through the Redis broker: a
//! renderer publishes on node A, participants listen on A (same node) and
//! on B (and C) (cross node). The cross-node hop is B's latency minus A's
//! at each percentile: what the Redis round trip and B's track add.
//!
//! The fan-out itself is [`engine::run_across`]; this module starts the
//! nodes, reads the counters of the processes around the measured window
//! (Redis publishes of each node from its `/metrics`, Redis's own CPU
//! from `INFO cpu`, the generator's from `/proc/self`) and reports.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::engine::{self, Outcome, Plan};
use crate::hubproc::{Hub, Spawn, cpu_seconds_of, info_field, redis_command};
use crate::report::percentiles_ms;

/// The counter a node increments once per publish script it runs.
pub const PUBLISH_COUNT: &str = "eva_redis_publish_seconds_count";
/// Seconds those scripts took, round trip included.
pub const PUBLISH_SUM: &str = "eva_redis_publish_seconds_sum";

/// How to start the nodes.
#[derive(Clone, Debug)]
pub struct NodesSpec {
    pub binary: PathBuf,
    /// `taskset -c` lists of node A and node B; `None` runs unpinned.
    pub a_cpus: Option<String>,
    pub b_cpus: Option<String>,
    /// Starts a third node, C, on node B's CPUs.
    pub three: bool,
    /// `redis://host:port`.
    pub redis_url: String,
    /// Extra environment for both nodes.
    pub env: Vec<(String, String)>,
}

/// The running nodes, their shared SQLite store and their logs.
#[derive(Debug)]
pub struct Nodes {
    pub a: Hub,
    pub b: Hub,
    pub c: Option<Hub>,
    /// The Redis key prefix only these nodes use.
    pub prefix: String,
    /// Holds the store (`hub.db`) and the logs (`node-a.log`, `node-b.log`).
    pub dir: PathBuf,
}

/// `host:port` of a `redis://host:port[/db]` URL.
pub fn redis_addr(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("redis://")
        .with_context(|| format!("expected a redis:// URL, got {url}"))?;
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    Ok(hostport.split('/').next().unwrap_or(hostport).to_owned())
}

/// Fails, saying how to fix it, unless Redis answers PING.
pub async fn require_redis(url: &str) -> anyhow::Result<()> {
    let addr = redis_addr(url)?;
    let pong = redis_command(&addr, &["PING"]).await.with_context(|| {
        format!("the cluster scenario needs Redis at {url} (start redis-server)")
    })?;
    if pong != "PONG" {
        bail!("Redis at {url} answered PING with {pong}");
    }
    Ok(())
}

impl Nodes {
    /// Starts node A, then node B (so only A runs the store migration), on
    /// the given Redis with a fresh prefix and a fresh SQLite store in a
    /// new temporary directory that both open (WAL mode).
    pub async fn start(spec: &NodesSpec) -> anyhow::Result<Nodes> {
        require_redis(&spec.redis_url).await?;
        let prefix = format!("evaload-{}", uuid::Uuid::new_v4().simple());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let db = format!("sqlite://{}", dir.join("hub.db").display());
        let node = |name: &str, cpus: &Option<String>| {
            let mut env = vec![
                ("REDIS_URL".to_owned(), spec.redis_url.clone()),
                ("DATABASE_URL".to_owned(), db.clone()),
                ("EVA_HUB__REDIS__PREFIX".to_owned(), prefix.clone()),
                ("EVA_HUB__REDIS__NODE_ID".to_owned(), name.to_owned()),
                ("NO_COLOR".to_owned(), "1".to_owned()),
            ];
            env.extend(spec.env.iter().cloned());
            Spawn {
                binary: spec.binary.clone(),
                cpus: cpus.clone(),
                env,
                log: Some(dir.join(format!("node-{name}.log"))),
            }
        };
        let a = Hub::spawn(&node("a", &spec.a_cpus)).await?;
        let b = Hub::spawn(&node("b", &spec.b_cpus)).await?;
        let c = match spec.three {
            true => Some(Hub::spawn(&node("c", &spec.b_cpus)).await?),
            false => None,
        };
        Ok(Nodes {
            a,
            b,
            c,
            prefix,
            dir,
        })
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("node-{name}.log"))
    }
}

/// What one cluster run measured.
#[derive(Debug)]
pub struct ClusterOutcome {
    /// Subscribers on node A (the renderer's node).
    pub same: Outcome,
    /// Subscribers on node B.
    pub cross: Outcome,
    /// Subscribers on node C, when it runs.
    pub third: Option<Outcome>,
    /// Publish scripts each node ran over the measured window.
    pub publishes_a: Option<f64>,
    pub publishes_b: Option<f64>,
    /// Node A's mean publish round trip over the window, µs.
    pub publish_rtt_a_us: Option<f64>,
    /// Redis's CPU seconds over the window (`INFO cpu`).
    pub redis_cpu_s: Option<f64>,
    /// The generator's own CPU seconds over the window.
    pub generator_cpu_s: Option<f64>,
}

/// Percentiles of the hop table and the JSON.
const POINTS: [(&str, f64); 4] = [("p50", 0.5), ("p99", 0.99), ("p999", 0.999), ("max", 1.0)];

fn at(h: &Histogram<u64>, q: f64) -> i64 {
    if q >= 1.0 {
        h.max() as i64
    } else {
        h.value_at_quantile(q) as i64
    }
}

impl ClusterOutcome {
    /// B's latency minus A's at p50, p99, p99.9 and max, µs.
    pub fn hop_us(&self) -> [i64; 4] {
        self.hop_to(&self.cross)
    }

    /// The same for node C, when it runs.
    pub fn hop_c_us(&self) -> Option<[i64; 4]> {
        self.third.as_ref().map(|c| self.hop_to(c))
    }

    fn hop_to(&self, other: &Outcome) -> [i64; 4] {
        POINTS.map(|(_, q)| at(&other.latency, q) - at(&self.same.latency, q))
    }

    fn per_s(&self, n: Option<f64>) -> Option<f64> {
        n.map(|n| n / self.same.window.as_secs_f64().max(1e-9))
    }

    pub fn json(&self, plan: &Plan) -> Value {
        let group = |o: &Outcome| {
            json!({
                "sent": o.sent,
                "totals": o.totals,
                "deliveries": o.deliveries,
                "deliveries_per_s": o.deliveries_per_second(),
                "latency": percentiles_ms(&o.latency),
                "last_delivery": percentiles_ms(&o.last_delivery),
                "hub_cpu_s": o.hub_cpu_seconds,
                "hub_rss_bytes": o.hub_rss_bytes,
            })
        };
        let hops = |hop: [i64; 4]| {
            POINTS
                .iter()
                .zip(hop)
                .map(|((n, _), v)| (n.to_string(), json!(v)))
                .collect::<serde_json::Map<_, _>>()
        };
        json!({
            "plan": plan,
            "window_s": self.same.window.as_secs_f64(),
            "same_node": group(&self.same),
            "cross_node": group(&self.cross),
            "cross_node_hop_us": hops(self.hop_us()),
            "third_node": self.third.as_ref().map(group),
            "third_node_hop_us": self.hop_c_us().map(hops),
            "redis_publishes": { "a": self.publishes_a, "b": self.publishes_b },
            "redis_publishes_per_s": { "a": self.per_s(self.publishes_a), "b": self.per_s(self.publishes_b) },
            "node_a_mean_publish_round_trip_us": self.publish_rtt_a_us,
            "cpu_s": {
                "node_a": self.same.hub_cpu_seconds,
                "node_b": self.cross.hub_cpu_seconds,
                "redis": self.redis_cpu_s,
                "generator": self.generator_cpu_s,
            },
        })
    }

    /// One row under [`TABLE_HEAD`].
    pub fn markdown_row(&self, plan: &Plan) -> String {
        let faults = |o: &Outcome| {
            format!(
                "{} / {} / {}",
                o.totals.lost, o.totals.duplicated, o.totals.reordered
            )
        };
        let lat = |o: &Outcome| {
            POINTS
                .iter()
                .map(|(_, q)| at(&o.latency, *q).to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let opt = |v: Option<f64>, digits: usize| {
            v.map(|v| format!("{v:.digits$}"))
                .unwrap_or_else(|| "n/a".into())
        };
        let w = self.same.window.as_secs_f64().max(1e-9);
        let pct = |v: Option<f64>| opt(v.map(|v| 100.0 * v / w), 0);
        format!(
            "| {:.0} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} / {} / {} |",
            plan.rate,
            self.same.sent,
            faults(&self.same),
            faults(&self.cross),
            lat(&self.same),
            lat(&self.cross),
            self.hop_us().map(|v| v.to_string()).join(" / "),
            opt(self.per_s(self.publishes_a), 0),
            opt(self.per_s(self.publishes_b), 0),
            opt(self.publish_rtt_a_us, 0),
            pct(self.same.hub_cpu_seconds),
            pct(self.cross.hub_cpu_seconds),
            pct(self.redis_cpu_s),
            pct(self.generator_cpu_s),
        )
    }
}

pub const TABLE_HEAD: &str = "| events/s | sent | A lost / dup / reord | B lost / dup / reord | A e2e p50 / p99 / p999 / max µs | B e2e p50 / p99 / p999 / max µs | hop (B − A) p50 / p99 / p999 / max µs | Redis publishes/s A / B | A publish round trip µs (mean) | CPU % of window: A / B / Redis / generator |\n|---|---|---|---|---|---|---|---|---|---|";

/// Redis's user + system CPU seconds so far.
async fn redis_cpu(addr: &str) -> Option<f64> {
    let info = redis_command(addr, &["INFO", "cpu"]).await.ok()?;
    let f = |k| info_field(&info, k)?.parse::<f64>().ok();
    Some(f("used_cpu_user")? + f("used_cpu_sys")?)
}

/// Runs `plan` (one session is the intended use) with the renderer on
/// `a` and `plan.participants` participants on each of `a` and `b`.
/// `redis_url` is read for Redis's CPU.
pub async fn run(
    a: &Hub,
    b: &Hub,
    c: Option<&Hub>,
    redis_url: &str,
    plan: &Plan,
) -> anyhow::Result<ClusterOutcome> {
    let addr = redis_addr(redis_url)?;
    let me = std::process::id();
    let gauges = || -> futures_util::future::LocalBoxFuture<'static, Vec<f64>> {
        let (ma, mb, addr) = (a.metrics_addr, b.metrics_addr, addr.clone());
        Box::pin(async move {
            let metric = |m: Option<std::net::SocketAddr>| async move {
                let m = m?;
                let text = crate::hubproc::http(m, "GET", "/metrics", None)
                    .await
                    .ok()?;
                Some((
                    crate::hubproc::metric_sum(&text, PUBLISH_COUNT),
                    crate::hubproc::metric_sum(&text, PUBLISH_SUM),
                ))
            };
            let a = metric(ma).await;
            vec![
                a.map_or(f64::NAN, |a| a.0),
                metric(mb).await.map_or(f64::NAN, |b| b.0),
                redis_cpu(&addr).await.unwrap_or(f64::NAN),
                cpu_seconds_of(me).unwrap_or(f64::NAN),
                a.map_or(f64::NAN, |a| a.1),
            ]
        })
    };
    let mut join_on = vec![a, b];
    join_on.extend(c);
    let mut across = engine::run_across(a, &join_on, plan, Some(&gauges)).await?;
    let g = |k: usize| across.gauges.get(k).copied().filter(|v| v.is_finite());
    let (publishes_a, publishes_b, redis_cpu_s, generator_cpu_s) = (g(0), g(1), g(2), g(3));
    let publish_rtt_a_us = g(4)
        .zip(publishes_a)
        .and_then(|(secs, n)| (n > 0.0).then(|| secs / n * 1e6));
    let third = (across.groups.len() > 2).then(|| across.groups.remove(2));
    let cross = across.groups.remove(1);
    let same = across.groups.remove(0);
    Ok(ClusterOutcome {
        same,
        cross,
        third,
        publishes_a,
        publishes_b,
        publish_rtt_a_us,
        redis_cpu_s,
        generator_cpu_s,
    })
}

/// Log lines at WARN or ERROR in a node's log (but the `--dev` notice),
/// and the last few of them.
pub fn log_warnings(path: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        // Every `--dev` hub says so at start.
        .filter(|l| !l.contains("DEVELOPMENT MODE"))
        .collect();
    let from = hits.len().saturating_sub(5);
    (
        hits.len(),
        hits[from..].iter().map(|s| s.to_string()).collect(),
    )
}

//! `eva-load`: runs one load scenario against a hub and writes its results
//! (JSON, a Markdown summary, an SVG latency plot) to
//! `load-tests/results/<scenario>/`.
//!
//! By default it starts the release hub pinned to CPU 0 (`taskset -c 0`);
//! run the generator itself on the other core:
//!
//! ```sh
//! cargo build --release --workspace
//! taskset -c 1 target/release/eva-load fanout --participants 1000 --rate 100
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use eva_load::engine::{EventKind, Outcome, Plan};
use eva_load::hubproc::{Hub, Spawn};
use eva_load::report::{latency_svg, percentiles_ms, results_dir, write_json, write_text};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "eva-load", about = "Load scenarios for eva-hub")]
struct Cli {
    #[command(flatten)]
    hub: HubArgs,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Args)]
struct HubArgs {
    /// Use a running hub at this address instead of starting one.
    #[arg(long, global = true)]
    hub: Option<SocketAddr>,
    /// Pid of that hub, for CPU and memory readings.
    #[arg(long, global = true)]
    hub_pid: Option<u32>,
    /// The hub binary to start.
    #[arg(long, global = true)]
    hub_bin: Option<PathBuf>,
    /// CPUs to pin the started hub to (`taskset -c`); `none` to not pin.
    #[arg(long, global = true, default_value = "0")]
    hub_cpus: String,
    /// Extra hub settings, `KEY=VALUE` as EVA_HUB__ variables
    /// (e.g. `SERVER__WORKER_THREADS=1`).
    #[arg(long = "hub-env", global = true)]
    hub_env: Vec<String>,
    /// Name of this run's result files.
    #[arg(long, global = true)]
    label: Option<String>,
    /// Also run the scenario against the floor (`eva-floor`, the least a
    /// server must do to deliver the same frames, pinned like the hub)
    /// right after the hub, and report the hub as a ratio to it.
    #[arg(long, global = true)]
    floor: bool,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// a. One renderer, N participants of one session; optionally sweep the
    /// rate to find the highest with p99 ≤ 50 ms and no loss.
    Fanout {
        #[command(flatten)]
        load: Load,
        /// Double the rate from --rate until p99 > --p99-limit-ms or loss.
        #[arg(long)]
        sweep: bool,
        #[arg(long, default_value_t = 50.0)]
        p99_limit_ms: f64,
    },
    /// b. S sessions × M participants, each with an operator watching.
    Sessions {
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        #[command(flatten)]
        load: Load,
    },
    /// c. Idle connections: hub memory per connection.
    Idle {
        #[arg(long, default_value_t = 19_000)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        per_session: usize,
        #[arg(long, default_value_t = 16)]
        sources: usize,
        /// Only authenticate, join nothing (the cost of a bare connection).
        #[arg(long)]
        no_join: bool,
        /// Seconds to wait before reading memory; past the hub's 15 s
        /// heartbeat by default, so pings and pongs are included.
        #[arg(long, default_value_t = 20.0)]
        settle_s: f64,
    },
    /// d. Emergency stops while the session runs at a given rate.
    Estop {
        #[command(flatten)]
        load: Load,
        /// Send a stop this often.
        #[arg(long, default_value_t = 100)]
        every_ms: u64,
    },
    /// g. Two (or three) hub nodes on one Redis: a renderer on node A, N
    /// participants on each node; same-node vs cross-node latency and the
    /// hop. Node A runs on --hub-cpus; nodes B and C on --node-b-cpus.
    Cluster {
        /// Events per second (the first rate of a sweep is --rates).
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Participants on each node.
        #[arg(long, default_value_t = 10)]
        participants: usize,
        /// Measured seconds (after warm-up).
        #[arg(long = "duration-s", default_value_t = 10.0)]
        duration_s: f64,
        #[arg(long = "warmup-s", default_value_t = 2.0)]
        warmup_s: f64,
        /// Application payload bytes per event.
        #[arg(long, default_value_t = 128)]
        payload: usize,
        /// Run every rate of --rates (fresh nodes each) and tabulate.
        #[arg(long)]
        sweep: bool,
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "1000,5000,10000,20000,50000"
        )]
        rates: Vec<f64>,
        /// CPUs of node B (`taskset -c`); `none` to not pin.
        #[arg(long, default_value = "0")]
        node_b_cpus: String,
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
        /// Hub nodes: 2 (A and B) or 3 (C beside B, with its own
        /// participants).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
        nodes: u8,
    },
    /// f. A reconnect storm: every client drops and resumes within a window.
    Storm {
        #[arg(long, default_value_t = 5000)]
        clients: usize,
        #[arg(long, default_value_t = 2.0)]
        window_s: f64,
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 16)]
        sources: usize,
    },
}

#[derive(Debug, Args, Clone)]
struct Load {
    /// Participants per session.
    #[arg(long, default_value_t = 1000)]
    participants: usize,
    /// Events per second per session.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Application payload bytes per event.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// `custom` (never conflated) or `state` (conflatable).
    #[arg(long, default_value = "custom")]
    kind: String,
    /// Loopback source addresses to spread connections over.
    #[arg(long, default_value_t = 8)]
    sources: usize,
    /// Subscribers join with `compact: true`, the renderer with
    /// `echo: false`.
    #[arg(long)]
    compact: bool,
    /// Stamp events when written rather than when due (see `Plan`).
    #[arg(long)]
    stamp_sent: bool,
    /// Subscribers speak `eva.v1.msgpack` (the renderer stays on JSON).
    /// Not with `--floor`: the floor writes JSON frames only.
    #[arg(long)]
    msgpack: bool,
}

impl Load {
    fn plan(
        &self,
        sessions: usize,
        operators: bool,
        estop: Option<Duration>,
    ) -> anyhow::Result<Plan> {
        Ok(Plan {
            sessions,
            participants: self.participants,
            operators,
            rate: self.rate,
            duration: Duration::from_secs_f64(self.duration),
            warmup: Duration::from_secs_f64(self.warmup),
            payload: self.payload,
            kind: match self.kind.as_str() {
                "custom" => EventKind::Custom,
                "state" => EventKind::State,
                k => anyhow::bail!("--kind is custom or state, not {k}"),
            },
            sources: self.sources,
            estop_every: estop,
            compact: self.compact,
            stamp_sent: self.stamp_sent,
            msgpack: self.msgpack,
        })
    }
}

fn hub_env(args: &HubArgs) -> anyhow::Result<Vec<(String, String)>> {
    args.hub_env
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').context("--hub-env takes KEY=VALUE")?;
            Ok((format!("EVA_HUB__{k}"), v.to_owned()))
        })
        .collect()
}

async fn hub(args: &HubArgs) -> anyhow::Result<Hub> {
    if let Some(addr) = args.hub {
        return Ok(Hub::external(addr, args.hub_pid));
    }
    let env = hub_env(args)?;
    Hub::spawn(&Spawn {
        binary: args.hub_bin.clone().unwrap_or_else(Spawn::release_binary),
        cpus: (args.hub_cpus != "none").then(|| args.hub_cpus.clone()),
        env,
        log: None,
    })
    .await
}

/// What one scenario measured on the hub and, with `--floor`, on the
/// floor right after it under the same plan and pinning.
struct Measured {
    hub: Outcome,
    floor: Option<Outcome>,
}

async fn measure(args: &HubArgs, plan: &Plan) -> anyhow::Result<Measured> {
    if args.floor && plan.msgpack {
        anyhow::bail!("--msgpack cannot run with --floor: the floor writes JSON frames only");
    }
    let hub_outcome = {
        let hub = hub(args).await?;
        eva_load::engine::run(&hub, plan).await?
        // The hub stops here, before the floor starts on its core.
    };
    let floor = if args.floor {
        let cpus = (args.hub_cpus != "none").then_some(args.hub_cpus.as_str());
        let floor = Hub::spawn_floor(cpus).await?;
        Some(eva_load::engine::run(&floor, plan).await?)
    } else {
        None
    };
    Ok(Measured {
        hub: hub_outcome,
        floor,
    })
}

impl Measured {
    fn json(&self, plan: &Plan) -> Value {
        let mut j = summary(plan, &self.hub);
        if let Some(f) = &self.floor {
            j["floor"] = summary(plan, f);
            j["ratio_to_floor"] = self.ratios().unwrap_or(Value::Null);
        }
        j
    }

    /// Hub ÷ floor for CPU per 1M deliveries and the latency percentiles.
    fn ratios(&self) -> Option<Value> {
        let f = self.floor.as_ref()?;
        let h = &self.hub;
        let q = |a: &hdrhistogram::Histogram<u64>, b: &hdrhistogram::Histogram<u64>, p: f64| {
            a.value_at_quantile(p) as f64 / b.value_at_quantile(p).max(1) as f64
        };
        Some(json!({
            "cpu_per_million": h.cpu_seconds_per_million().zip(f.cpu_seconds_per_million()).map(|(a, b)| a / b),
            "p50": q(&h.latency, &f.latency, 0.5),
            "p99": q(&h.latency, &f.latency, 0.99),
            "last_delivery_p99": q(&h.last_delivery, &f.last_delivery, 0.99),
            "estop_p99": (!h.estop.is_empty() && !f.estop.is_empty()).then(|| q(&h.estop, &f.estop, 0.99)),
        }))
    }

    fn markdown(&self, label: &str, plan: &Plan) -> String {
        let mut md = format!("{TABLE_HEAD}\n{}\n", markdown_row(label, plan, &self.hub));
        if let Some(f) = &self.floor {
            md.push_str(&markdown_row(&format!("{label} (floor)"), plan, f));
            md.push('\n');
        }
        if let Some(r) = self.ratios() {
            let x = |v: &Value| {
                v.as_f64()
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "n/a".into())
            };
            md.push_str(&format!(
                "\nHub ÷ floor: CPU per 1M deliveries {}, p50 {}, p99 {}, last-delivery p99 {}, emergency stop p99 {}\n",
                x(&r["cpu_per_million"]),
                x(&r["p50"]),
                x(&r["p99"]),
                x(&r["last_delivery_p99"]),
                x(&r["estop_p99"]),
            ));
        }
        md
    }
}

fn summary(plan: &Plan, o: &Outcome) -> Value {
    json!({
        "plan": plan,
        "sent_per_session": o.sent,
        "totals": o.totals,
        "deliveries": o.deliveries,
        "window_s": o.window.as_secs_f64(),
        "deliveries_per_s": o.deliveries_per_second(),
        "hub_cpu_s": o.hub_cpu_seconds,
        "hub_cpu_s_per_million_deliveries": o.cpu_seconds_per_million(),
        "hub_rss_bytes": o.hub_rss_bytes,
        "latency": percentiles_ms(&o.latency),
        "last_delivery": percentiles_ms(&o.last_delivery),
        "emergency_stop": (!o.estop.is_empty()).then(|| percentiles_ms(&o.estop)),
        "send_lag": percentiles_ms(&o.send_lag),
        "bytes_per_delivery": o.bytes_per_delivery(),
    })
}

fn markdown_row(label: &str, plan: &Plan, o: &Outcome) -> String {
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "| {label} | {}×{} | {:.0}/s | {:.0} | {} / {} / {} | {:.2} | {:.2} | {:.2} | {} | {:.0} |",
        plan.sessions,
        plan.participants + usize::from(plan.operators),
        plan.rate,
        o.deliveries_per_second(),
        o.totals.lost,
        o.totals.duplicated,
        o.totals.reordered,
        p(&o.latency, 0.5),
        p(&o.latency, 0.99),
        p(&o.last_delivery, 0.99),
        o.cpu_seconds_per_million()
            .map(|c| format!("{c:.2}"))
            .unwrap_or_else(|| "n/a".into()),
        o.bytes_per_delivery(),
    )
}

const TABLE_HEAD: &str = "| run | sessions×receivers | rate/session | deliveries/s | lost / dup / reordered | p50 ms | p99 ms | last-delivery p99 ms | hub CPU-s per 1M | bytes per delivery |\n|---|---|---|---|---|---|---|---|---|---|";

fn save(
    scenario: &str,
    label: &str,
    json: &Value,
    md: &str,
    plots: &[(String, &hdrhistogram::Histogram<u64>)],
) -> anyhow::Result<()> {
    let dir = results_dir(scenario);
    let j = write_json(&dir, label, json)?;
    let m = write_text(&dir, label, "md", md)?;
    if !plots.is_empty() {
        let svg = latency_svg(
            &format!("{scenario}: latency by percentile ({label})"),
            plots,
        );
        write_text(&dir, label, "svg", &svg)?;
    }
    println!("{md}");
    eprintln!("results: {} and {}", j.display(), m.display());
    Ok(())
}

async fn fanout(cli: &Cli, load: &Load, sweep: bool, limit_ms: f64) -> anyhow::Result<()> {
    let label = cli
        .hub
        .label
        .clone()
        .unwrap_or_else(|| format!("n{}-r{}", load.participants, load.rate));
    if !sweep {
        let plan = load.plan(1, false, None)?;
        let m = measure(&cli.hub, &plan).await?;
        let mut plots = vec![
            ("all deliveries".into(), &m.hub.latency),
            ("last delivery".into(), &m.hub.last_delivery),
        ];
        if let Some(f) = &m.floor {
            plots.push(("floor: all deliveries".into(), &f.latency));
            plots.push(("floor: last delivery".into(), &f.last_delivery));
        }
        return save(
            "fanout",
            &label,
            &m.json(&plan),
            &m.markdown(&label, &plan),
            &plots,
        );
    }
    let mut rate = load.rate;
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let mut best = None;
    loop {
        let hub = hub(&cli.hub).await?;
        let plan = Load {
            rate,
            ..load.clone()
        }
        .plan(1, false, None)?;
        let o = eva_load::engine::run(&hub, &plan).await?;
        drop(hub);
        let p99 = o.latency.value_at_quantile(0.99) as f64 / 1000.0;
        let ok = p99 <= limit_ms
            && o.totals.lost == 0
            && o.totals.duplicated == 0
            && o.totals.reordered == 0;
        eprintln!(
            "rate {rate}/s: p99 {p99:.2} ms, lost {}, {}",
            o.totals.lost,
            if ok { "ok" } else { "over" }
        );
        rows.push(markdown_row(&format!("{rate}/s"), &plan, &o));
        runs.push(summary(&plan, &o));
        if !ok {
            break;
        }
        best = Some(rate);
        rate *= 2.0;
        if rate > 1_000_000.0 {
            break;
        }
    }
    let md = format!(
        "{TABLE_HEAD}\n{}\n\nHighest rate with p99 ≤ {limit_ms} ms and no loss: {}\n",
        rows.join("\n"),
        best.map(|r| format!(
            "{r} events/s ({} deliveries/s)",
            r * load.participants as f64
        ))
        .unwrap_or_else(|| "none of the rates tried".into())
    );
    save(
        "fanout",
        &format!("{label}-sweep"),
        &json!({ "runs": runs, "best_rate": best }),
        &md,
        &[],
    )
}

#[allow(clippy::too_many_arguments)]
async fn cluster(
    cli: &Cli,
    rates: &[f64],
    participants: usize,
    duration_s: f64,
    warmup_s: f64,
    payload: usize,
    node_b_cpus: &str,
    redis_url: &str,
    nodes: u8,
) -> anyhow::Result<()> {
    use eva_load::cluster::{self, Nodes, NodesSpec, TABLE_HEAD};
    if cli.hub.hub.is_some() {
        anyhow::bail!("the cluster scenario starts its own two nodes; drop --hub");
    }
    let pin = |c: &str| (c != "none").then(|| c.to_owned());
    let spec = NodesSpec {
        binary: cli
            .hub
            .hub_bin
            .clone()
            .unwrap_or_else(Spawn::release_binary),
        a_cpus: pin(&cli.hub.hub_cpus),
        b_cpus: pin(node_b_cpus),
        three: nodes == 3,
        redis_url: redis_url.to_owned(),
        env: hub_env(&cli.hub)?,
    };
    let label = cli.hub.label.clone().unwrap_or_else(|| {
        let r: Vec<String> = rates.iter().map(|r| r.to_string()).collect();
        format!("n{participants}-r{}", r.join("_"))
    });
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let mut last = None;
    for &rate in rates {
        let plan = Plan {
            sessions: 1,
            participants,
            operators: false,
            rate,
            duration: Duration::from_secs_f64(duration_s),
            warmup: Duration::from_secs_f64(warmup_s),
            payload,
            kind: EventKind::Custom,
            sources: 8,
            estop_every: None,
            compact: false,
            stamp_sent: false,
            msgpack: false,
        };
        let nodes = Nodes::start(&spec).await?;
        eprintln!(
            "rate {rate}/s: nodes A {} and B {} on prefix {} (logs and store in {})",
            nodes.a.addr,
            nodes.b.addr,
            nodes.prefix,
            nodes.dir.display()
        );
        let o = cluster::run(&nodes.a, &nodes.b, nodes.c.as_ref(), redis_url, &plan).await?;
        let hop = o.hop_us();
        eprintln!(
            "rate {rate}/s: A lost {} B lost {}, hop p99 {} µs",
            o.same.totals.lost, o.cross.totals.lost, hop[1]
        );
        let mut j = o.json(&plan);
        if let (Some(c), Some(hop)) = (&o.third, o.hop_c_us()) {
            let t = &c.totals;
            notes.push(format!(
                "- {rate}/s: node C lost / dup / reord {} / {} / {}, e2e p99 {} µs, hop (C − A) p99 {} µs",
                t.lost,
                t.duplicated,
                t.reordered,
                c.latency.value_at_quantile(0.99),
                hop[1]
            ));
        }
        let names: &[&str] = if nodes.c.is_some() {
            &["a", "b", "c"]
        } else {
            &["a", "b"]
        };
        for &name in names {
            let (n, tail) = cluster::log_warnings(&nodes.log(name));
            if n > 0 {
                notes.push(format!(
                    "- {rate}/s: node {name} logged {n} warnings/errors, last: `{}`",
                    tail.last().map(String::as_str).unwrap_or("")
                ));
            }
            j[format!("node_{name}_log_warnings")] = json!({ "count": n, "last": tail });
        }
        rows.push(o.markdown_row(&plan));
        runs.push(j);
        drop(nodes);
        last = Some(o);
    }
    let md = format!(
        "{TABLE_HEAD}\n{}\n{}",
        rows.join("\n"),
        if notes.is_empty() {
            String::new()
        } else {
            format!("\n{}\n", notes.join("\n"))
        }
    );
    // The plot shows the last (in a sweep, the highest) rate.
    let top = rates.last().copied().unwrap_or_default();
    let plots: Vec<(String, &hdrhistogram::Histogram<u64>)> = match &last {
        Some(o) => vec![
            (format!("same node (A), {top}/s"), &o.same.latency),
            (format!("cross node (B), {top}/s"), &o.cross.latency),
        ],
        None => Vec::new(),
    };
    let json = if runs.len() == 1 {
        runs.remove(0)
    } else {
        json!({ "runs": runs })
    };
    save("cluster", &label, &json, &md, &plots)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Thousands of connections: lift the soft file limit to the hard one.
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        match &cli.scenario {
            Scenario::Fanout { load, sweep, p99_limit_ms } => fanout(&cli, load, *sweep, *p99_limit_ms).await,
            Scenario::Sessions { sessions, load } => {
                let label = cli.hub.label.clone().unwrap_or_else(|| format!("s{sessions}-n{}-r{}", load.participants, load.rate));
                let plan = load.plan(*sessions, true, None)?;
                let m = measure(&cli.hub, &plan).await?;
                let mut plots = vec![("all deliveries".into(), &m.hub.latency)];
                if let Some(f) = &m.floor {
                    plots.push(("floor: all deliveries".into(), &f.latency));
                }
                save("sessions", &label, &m.json(&plan), &m.markdown(&label, &plan), &plots)
            }
            Scenario::Estop { load, every_ms } => {
                let label = cli.hub.label.clone().unwrap_or_else(|| format!("n{}-r{}", load.participants, load.rate));
                let plan = load.plan(1, false, Some(Duration::from_millis(*every_ms)))?;
                let m = measure(&cli.hub, &plan).await?;
                let stops = |name: &str, o: &Outcome| {
                    let e = |q: f64| o.estop.value_at_quantile(q) as f64 / 1000.0;
                    format!(
                        "Emergency stop to renderer, {name} ({} stops): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
                        o.estop.len(),
                        e(0.5),
                        e(0.99),
                        o.estop.max() as f64 / 1000.0
                    )
                };
                let mut md = format!("{}\n{}", m.markdown(&label, &plan), stops("hub", &m.hub));
                let mut plots = vec![("emergency stop".into(), &m.hub.estop), ("fan-out".into(), &m.hub.latency)];
                if let Some(f) = &m.floor {
                    md.push_str(&stops("floor", f));
                    plots.push(("floor: emergency stop".into(), &f.estop));
                }
                save("estop", &label, &m.json(&plan), &md, &plots)
            }
            Scenario::Idle { connections, per_session, sources, no_join, settle_s } => {
                let hub = hub(&cli.hub).await?;
                let o = eva_load::idle::run(
                    &hub,
                    *connections,
                    *per_session,
                    *sources,
                    !no_join,
                    Duration::from_secs_f64(*settle_s),
                )
                .await?;
                let label = cli.hub.label.clone().unwrap_or_else(|| format!("c{connections}"));
                let md = format!(
                    "| connections | sessions | hub RSS before | hub RSS after | per connection | connect time |\n|---|---|---|---|---|---|\n| {} | {} | {:.1} MiB | {:.1} MiB | {:.2} KiB | {:.1} s |\n",
                    o.connections,
                    o.sessions,
                    o.rss_before_bytes as f64 / 1048576.0,
                    o.rss_after_bytes as f64 / 1048576.0,
                    o.bytes_per_connection / 1024.0,
                    o.connect_seconds
                );
                save("idle", &label, &serde_json::to_value(&o)?, &md, &[])
            }
            Scenario::Cluster { rate, participants, duration_s, warmup_s, payload, sweep, rates, node_b_cpus, redis_url, nodes } => {
                let rates = if *sweep { rates.clone() } else { vec![*rate] };
                cluster(&cli, &rates, *participants, *duration_s, *warmup_s, *payload, node_b_cpus, redis_url, *nodes).await
            }
            Scenario::Storm { clients, window_s, rate, sources } => {
                let hub = hub(&cli.hub).await?;
                let o = eva_load::storm::run(&hub, *clients, *rate, Duration::from_secs_f64(*window_s), *sources).await?;
                let label = cli.hub.label.clone().unwrap_or_else(|| format!("c{clients}"));
                let r = |q: f64| o.reconnect.value_at_quantile(q) as f64 / 1000.0;
                let md = format!(
                    "| clients | window | resumed | discontinuity | failed | lost / dup / reordered | reconnect p50 | p99 | max | hub CPU-s |\n|---|---|---|---|---|---|---|---|---|---|\n| {} | {window_s} s | {} | {} | {} | {} / {} / {} | {:.1} ms | {:.1} ms | {:.1} ms | {} |\n",
                    o.clients,
                    o.resumed,
                    o.discontinuities,
                    o.failed,
                    o.totals.lost,
                    o.totals.duplicated,
                    o.totals.reordered,
                    r(0.5),
                    r(0.99),
                    o.reconnect.max() as f64 / 1000.0,
                    o.hub_cpu_seconds.map(|c| format!("{c:.2}")).unwrap_or_else(|| "n/a".into()),
                );
                let json = json!({
                    "clients": o.clients, "window_s": window_s, "rate": rate,
                    "resumed": o.resumed, "discontinuities": o.discontinuities, "failed": o.failed,
                    "totals": o.totals, "sent": o.sent, "storm_s": o.storm_seconds,
                    "reconnect": percentiles_ms(&o.reconnect), "hub_cpu_s": o.hub_cpu_seconds,
                });
                save("storm", &label, &json, &md, &[("reconnect to resumed".into(), &o.reconnect)])
            }
        }
    })
}

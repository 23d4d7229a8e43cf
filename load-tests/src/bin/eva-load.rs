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
        })
    }
}

async fn hub(args: &HubArgs) -> anyhow::Result<Hub> {
    if let Some(addr) = args.hub {
        return Ok(Hub::external(addr, args.hub_pid));
    }
    let env = args
        .hub_env
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').context("--hub-env takes KEY=VALUE")?;
            Ok((format!("EVA_HUB__{k}"), v.to_owned()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Hub::spawn(&Spawn {
        binary: args.hub_bin.clone().unwrap_or_else(Spawn::release_binary),
        cpus: (args.hub_cpus != "none").then(|| args.hub_cpus.clone()),
        env,
    })
    .await
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
    })
}

fn markdown_row(label: &str, plan: &Plan, o: &Outcome) -> String {
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "| {label} | {}×{} | {:.0}/s | {:.0} | {} / {} / {} | {:.2} | {:.2} | {:.2} | {} |",
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
    )
}

const TABLE_HEAD: &str = "| run | sessions×receivers | rate/session | deliveries/s | lost / dup / reordered | p50 ms | p99 ms | last-delivery p99 ms | hub CPU-s per 1M |\n|---|---|---|---|---|---|---|---|---|";

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
        let hub = hub(&cli.hub).await?;
        let plan = load.plan(1, false, None)?;
        let o = eva_load::engine::run(&hub, &plan).await?;
        let md = format!("{TABLE_HEAD}\n{}\n", markdown_row(&label, &plan, &o));
        return save(
            "fanout",
            &label,
            &summary(&plan, &o),
            &md,
            &[
                ("all deliveries".into(), &o.latency),
                ("last delivery".into(), &o.last_delivery),
            ],
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
                let hub = hub(&cli.hub).await?;
                let plan = load.plan(*sessions, true, None)?;
                let o = eva_load::engine::run(&hub, &plan).await?;
                let md = format!("{TABLE_HEAD}\n{}\n", markdown_row(&label, &plan, &o));
                save("sessions", &label, &summary(&plan, &o), &md, &[("all deliveries".into(), &o.latency)])
            }
            Scenario::Estop { load, every_ms } => {
                let label = cli.hub.label.clone().unwrap_or_else(|| format!("n{}-r{}", load.participants, load.rate));
                let hub = hub(&cli.hub).await?;
                let plan = load.plan(1, false, Some(Duration::from_millis(*every_ms)))?;
                let o = eva_load::engine::run(&hub, &plan).await?;
                let e = |q: f64| o.estop.value_at_quantile(q) as f64 / 1000.0;
                let md = format!(
                    "{TABLE_HEAD}\n{}\n\nEmergency stop to renderer ({} stops): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n",
                    markdown_row(&label, &plan, &o),
                    o.estop.len(),
                    e(0.5),
                    e(0.99),
                    o.estop.max() as f64 / 1000.0
                );
                save("estop", &label, &summary(&plan, &o), &md, &[("emergency stop".into(), &o.estop), ("fan-out".into(), &o.latency)])
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

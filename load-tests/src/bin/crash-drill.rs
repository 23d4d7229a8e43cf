//! The kill -9 drill: a release hub on PostgreSQL is killed with SIGKILL
//! at `--kills` random moments while participants ask questions, each
//! until it is acknowledged (the same client id every time, through
//! reconnects). After each kill the hub is started again on the same
//! port; the participants reconnect and join with the position they had,
//! so each either resumes or is told of a discontinuity and gets a
//! snapshot.
//!
//! With `--kill postgres` or `--kill redis` the hub stays up and a
//! private PostgreSQL (initdb in a temporary directory) or redis-server
//! that the drill started is killed with SIGKILL and started again
//! instead: PostgreSQL recovers from its WAL, Redis comes back empty.
//!
//! At the end the questions stored in PostgreSQL are checked against the
//! acknowledgements: every acknowledged question stored, exactly once,
//! under the id its ack named, and nothing stored that was never
//! acknowledged. The run fails if any of that does not hold.
//!
//! ```sh
//! cargo build --release -p eva-load -p eva-hub
//! taskset -c 1 target/release/crash-drill --kills 20
//! taskset -c 1 target/release/crash-drill --kills 20 --redis redis://127.0.0.1:6379
//! taskset -c 1 target/release/crash-drill --kills 20 --kill postgres
//! taskset -c 1 target/release/crash-drill --kills 20 --kill redis
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use eva_hub::ids::SessionId;
use eva_load::drill::{Asker, Outcome, Rng, audit, fresh_database};
use eva_load::hubproc::{self, Hub, Spawn};
use eva_load::report;
use eva_load::servers::{PrivatePostgres, PrivateRedis};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "kill -9 the hub under load; count acknowledged rows in PostgreSQL")]
struct Cli {
    /// How many times the target is killed.
    #[arg(long, default_value_t = 20)]
    kills: u32,
    /// What is killed: `hub`, or a private `postgres` or `redis` server
    /// the drill starts for itself (the machine's own are left alone).
    #[arg(long, default_value = "hub")]
    kill: String,
    /// Participants asking questions, one at a time each.
    #[arg(long, default_value_t = 20)]
    participants: usize,
    /// The hub runs between `--min-ms` and `--max-ms` before each kill.
    #[arg(long, default_value_t = 300)]
    min_ms: u64,
    #[arg(long, default_value_t = 2500)]
    max_ms: u64,
    /// The server; the drill makes a fresh database `--database` on it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1")]
    postgres: String,
    #[arg(long, default_value = "eva_crash_drill")]
    database: String,
    /// Sequence through this Redis (`redis://127.0.0.1:6379`) instead of
    /// the in-process broker: the session's stream outlives the hub, so
    /// clients can resume across a kill.
    #[arg(long)]
    redis: Option<String>,
    /// Seed of the kill moments (default: the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// CPUs for the hub (`taskset -c`); empty: unpinned.
    #[arg(long, default_value = "0")]
    hub_cpus: String,
    #[arg(long, default_value = "run")]
    label: String,
    /// Write the hub's output (at `info`) here; each start of the hub
    /// truncates it.
    #[arg(long)]
    hub_log: Option<std::path::PathBuf>,
}

/// Asks `q-0`, `q-1`, ... each until acknowledged, through kills.
async fn participant(
    addr: SocketAddr,
    session: SessionId,
    subject: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Outcome> {
    let mut asker = Asker::join(addr, session, subject).await?;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        asker.ask(&format!("q-{i}")).await?;
        i += 1;
    }
    Ok(asker.out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(65_536);
    let mut target = match cli.kill.as_str() {
        "hub" => Target::Hub,
        "postgres" => Target::Postgres(PrivatePostgres::start()?),
        "redis" => Target::Redis(PrivateRedis::start()?),
        other => bail!("--kill is hub, postgres or redis, not {other}"),
    };
    let server = match &target {
        Target::Postgres(pg) => pg.url(),
        _ => cli.postgres.clone(),
    };
    let url = fresh_database(&server, &cli.database).await?;
    let redis = match &target {
        Target::Redis(r) => Some(r.url()),
        _ => cli.redis.clone(),
    };
    let mut env = vec![
        (
            "EVA_HUB__LOG__LEVEL".to_owned(),
            if cli.hub_log.is_some() {
                "info"
            } else {
                "error"
            }
            .to_owned(),
        ),
        ("EVA_HUB__STORE__DATABASE_URL".into(), url.clone()),
    ];
    if let Some(redis) = &redis {
        env.push(("REDIS_URL".into(), redis.clone()));
        // A prefix of this run's own: nothing left by another run.
        env.push((
            "EVA_HUB__REDIS__PREFIX".into(),
            format!("drill{}", std::process::id()),
        ));
    }
    let spawn = Spawn {
        binary: Spawn::release_binary(),
        cpus: (!cli.hub_cpus.is_empty()).then(|| cli.hub_cpus.clone()),
        env,
        log: cli.hub_log.clone(),
    };
    let port = hubproc::free_port()?;
    let mut hub = Hub::spawn_on(&spawn, port).await?;
    let session: SessionId = hub
        .create_session("crash drill")
        .await?
        .parse()
        .map_err(|_| anyhow::anyhow!("bad session id"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let askers: Vec<_> = (0..cli.participants)
        .map(|n| {
            tokio::spawn(participant(
                hub.addr,
                session,
                format!("drill-{n}"),
                stop.clone(),
            ))
        })
        .collect();

    let seed = cli.seed.unwrap_or_else(|| Rng::from_clock().0);
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut restarts_ms = Vec::new();
    for _ in 0..cli.kills {
        tokio::time::sleep(Duration::from_millis(rng.between(cli.min_ms, cli.max_ms))).await;
        let t = Instant::now();
        match &mut target {
            Target::Hub => {
                // Drop sends SIGKILL and reaps the process.
                drop(hub);
                hub = Hub::spawn_on(&spawn, port).await?;
            }
            Target::Postgres(pg) => pg.kill_and_restart().await?,
            Target::Redis(r) => r.kill_and_restart().await?,
        }
        restarts_ms.push(t.elapsed().as_millis() as u64);
    }
    // Let everyone get through once more on the last hub.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for a in askers {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(120), a)
                .await
                .context("a participant did not finish")???,
        );
    }
    let took = started.elapsed().as_secs_f64();
    let audit = audit(&url, session, &outcomes).await?;
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let result = json!({
        "label": cli.label,
        "seed": seed,
        "kills": cli.kills,
        "killed": cli.kill,
        "broker": if redis.is_some() { "redis" } else { "memory" },
        "participants": cli.participants,
        "seconds": took,
        "restart_ms": restarts_ms,
        "audit": audit,
        "ack_mismatches": sum(|o| o.ack_mismatches),
        "reconnects": sum(|o| o.reconnects),
        "resumed": sum(|o| o.resumed),
        "discontinuities": sum(|o| o.discontinuities),
        "resends": sum(|o| o.resends),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    report::write_json(&report::results_dir("crash-drill"), &cli.label, &result)?;
    drop(hub);
    drop(target);
    if !audit.holds() || sum(|o| o.ack_mismatches) > 0 {
        bail!("acknowledged rows and stored rows disagree (see audit and ack_mismatches)");
    }
    Ok(())
}

/// What the drill kills.
enum Target {
    Hub,
    Postgres(PrivatePostgres),
    Redis(PrivateRedis),
}

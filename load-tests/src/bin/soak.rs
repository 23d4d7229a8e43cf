//! The soak: a release hub on PostgreSQL carries a steady mixed load for
//! `--minutes` (30 by default) and is watched for leaks.
//!
//! Each of `--sessions` sessions has a renderer that publishes events at
//! `--rate` a second and answers every question, an operator that sends a
//! suggestion every `--suggestion-every-s` and takes over (then releases
//! five seconds later) every `--takeover-every-s`, and `--participants`
//! participants that ask a question every `--question-every-s` on
//! average, each until acknowledged, while `--churn-percent` of them a
//! minute drop their connection and resume where they were.
//!
//! The hub's resident memory, open file descriptors, threads and live
//! runtime tasks are sampled every `--sample-s`. After the warm-up the
//! first sample is the baseline; the run fails if the last sample's
//! memory is 5% or more above it, if descriptors or tasks grew beyond the
//! clients reconnecting at that moment, or if the questions stored in
//! PostgreSQL are not exactly the acknowledged ones.
//!
//! ```sh
//! cargo build --release -p eva-load -p eva-hub
//! taskset -c 1 target/release/soak --minutes 30
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::ids::SessionId;
use eva_hub::protocol::model::{CustomAudience, Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_load::drill::{Asker, Audit, Outcome, Rng, audit, fresh_database};
use eva_load::hubproc::{Hub, Spawn};
use eva_load::report;
use serde_json::json;
use tokio::time::Instant as Tick;

#[derive(Debug, Parser)]
#[command(about = "a long mixed load on one hub: memory, descriptors and tasks must not grow")]
struct Cli {
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Samples before this are not compared.
    #[arg(long, default_value_t = 3.0)]
    warmup_minutes: f64,
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    /// Participants per session.
    #[arg(long, default_value_t = 100)]
    participants: usize,
    /// Events a second each renderer publishes (50 puts the hub at about
    /// half of its core on the 2-core reference machine).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Mean seconds between one participant's questions.
    #[arg(long, default_value_t = 30.0)]
    question_every_s: f64,
    /// Participants a minute (percent) that drop their connection and
    /// resume.
    #[arg(long, default_value_t = 5.0)]
    churn_percent: f64,
    #[arg(long, default_value_t = 10.0)]
    suggestion_every_s: f64,
    #[arg(long, default_value_t = 60.0)]
    takeover_every_s: f64,
    #[arg(long, default_value_t = 10.0)]
    sample_s: f64,
    /// Per-session windows (`session.history_size`, `dedupe_window`,
    /// `recent_refs_max`). The hub's defaults (4096, 8192, 4096) take
    /// about 20 minutes to fill at this load, and memory grows until they
    /// are full; these sizes are full within the first minute, so that
    /// after the warm-up every bounded structure only turns over and any
    /// growth is a leak. `--hub-windows` keeps the hub's own sizes.
    #[arg(long, default_value_t = 1024)]
    history_size: usize,
    #[arg(long, default_value_t = 256)]
    dedupe_window: usize,
    #[arg(long, default_value_t = 128)]
    recent_refs: usize,
    #[arg(long)]
    hub_windows: bool,
    /// The server; the soak makes a fresh database `--database` on it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1")]
    postgres: String,
    #[arg(long, default_value = "eva_soak")]
    database: String,
    /// CPUs for the hub (`taskset -c`); empty: unpinned.
    #[arg(long, default_value = "0")]
    hub_cpus: String,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value = "run")]
    label: String,
}

/// Counts every role's tasks add to.
#[derive(Default)]
struct Tally {
    published: AtomicU64,
    responses: AtomicU64,
    acks: AtomicU64,
    errors: AtomicU64,
    staff_reconnects: AtomicU64,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}

/// Opens a staff connection and joins; a renderer takes the session over
/// from any earlier connection of its own.
async fn staff(
    addr: SocketAddr,
    session: SessionId,
    role: Role,
    subject: &str,
) -> anyhow::Result<Client> {
    let token = eva_hub::auth::dev::dev_token(role, subject, None);
    let mut c = Client::connect(addr, ConnectOptions::new(Codec::Json, token)).await?;
    c.send(&ClientFrame::Join {
        session,
        resume: None,
        takeover: role == Role::Renderer,
        name: None,
        compact: false,
        echo: false,
        id: None,
    })
    .await?;
    loop {
        match c.recv_timeout(Duration::from_secs(10)).await? {
            Incoming::Frame(ServerFrame::Snapshot(_)) => return Ok(c),
            Incoming::Frame(ServerFrame::Error { code, message, .. }) => {
                bail!("{role:?} join refused: {code:?} {message}")
            }
            Incoming::Frame(_) => {}
            Incoming::Closed(c) => bail!("{role:?} closed while joining: {c:?}"),
        }
    }
}

/// Publishes at `rate` and answers each question it sees.
async fn renderer(
    addr: SocketAddr,
    session: SessionId,
    n: usize,
    rate: f64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let subject = format!("renderer-{n}");
    let mut c = staff(addr, session, Role::Renderer, &subject).await?;
    let period = secs(1.0 / rate);
    let mut next = Tick::now() + period;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if Tick::now() >= next {
            next += period;
            i += 1;
            let sent = c
                .send(&ClientFrame::Publish {
                    session,
                    name: "tick".into(),
                    audience: CustomAudience::All,
                    data: json!({ "n": i }),
                    id: None,
                })
                .await;
            if sent.is_ok() {
                tally.published.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        match c
            .recv_timeout(next.saturating_duration_since(Tick::now()))
            .await
        {
            Ok(Incoming::Frame(ServerFrame::Event {
                event: Event::Question {
                    question_id, text, ..
                },
                ..
            })) => {
                let _ = c
                    .send(&ClientFrame::Response {
                        session,
                        id: format!("r-{question_id}"),
                        question_id: Some(question_id),
                        text: format!("an answer to {text}"),
                        confidence: 0.9,
                        response_time_ms: 800,
                        intent: None,
                        knowledge_sources: Vec::new(),
                        command_id: None,
                    })
                    .await;
                tally.responses.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Incoming::Frame(f)) => count_answer(&f, &tally),
            Ok(Incoming::Closed(_)) => {
                tally.staff_reconnects.fetch_add(1, Ordering::Relaxed);
                c = staff(addr, session, Role::Renderer, &subject).await?;
            }
            Err(_) => {}
        }
    }
    Ok(())
}

fn count_answer(f: &ServerFrame, tally: &Tally) {
    match f {
        ServerFrame::Ack { .. } => tally.acks.fetch_add(1, Ordering::Relaxed),
        ServerFrame::Error { .. } => tally.errors.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
}

/// Suggests, takes over and releases on a schedule.
async fn operator(
    addr: SocketAddr,
    session: SessionId,
    n: usize,
    cli: Arc<Cli>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> anyhow::Result<()> {
    let subject = format!("operator-{n}");
    let mut c = staff(addr, session, Role::Operator, &subject).await?;
    let start = Tick::now();
    // Spread the sessions' schedules over one period.
    let phase = |every: f64| start + secs(every * (n as f64 + 1.0) / (cli.sessions as f64 + 1.0));
    let mut next_suggestion = phase(cli.suggestion_every_s);
    let mut next_takeover = phase(cli.takeover_every_s);
    let mut release_at: Option<Tick> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Tick::now();
        i += 1;
        let frame = if now >= next_suggestion {
            next_suggestion += secs(cli.suggestion_every_s);
            Some(ClientFrame::Suggestion {
                session,
                id: format!("s-{i}"),
                text: "slow down a little".into(),
            })
        } else if release_at.is_some_and(|t| now >= t) {
            release_at = None;
            Some(ClientFrame::Release {
                session,
                id: Some(format!("rel-{i}")),
            })
        } else if now >= next_takeover {
            next_takeover += secs(cli.takeover_every_s);
            release_at = Some(now + Duration::from_secs(5));
            Some(ClientFrame::Takeover {
                session,
                reason: Some("soak".into()),
                id: Some(format!("t-{i}")),
            })
        } else {
            None
        };
        if let Some(frame) = frame {
            let _ = c.send(&frame).await;
            continue;
        }
        let until = [Some(next_suggestion), Some(next_takeover), release_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now);
        match c.recv_timeout(until.saturating_duration_since(now)).await {
            Ok(Incoming::Frame(f)) => count_answer(&f, &tally),
            Ok(Incoming::Closed(_)) => {
                tally.staff_reconnects.fetch_add(1, Ordering::Relaxed);
                c = staff(addr, session, Role::Operator, &subject).await?;
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Listens, asks now and then, and sometimes drops its connection.
async fn participant(
    addr: SocketAddr,
    session: SessionId,
    subject: String,
    cli: Arc<Cli>,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Outcome> {
    let mut asker = Asker::join(addr, session, subject).await?;
    let mean_ms = (cli.question_every_s * 1000.0) as u64;
    let mut next_question = Tick::now() + Duration::from_millis(rng.between(0, mean_ms * 2));
    // Churn is drawn once a minute, from a phase of its own.
    let mut next_churn = Tick::now() + Duration::from_millis(rng.between(0, 60_000));
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = Tick::now();
        if now >= next_question {
            asker.ask(&format!("q-{i}")).await?;
            i += 1;
            next_question =
                Tick::now() + Duration::from_millis(rng.between(mean_ms / 2, mean_ms * 3 / 2));
        } else if now >= next_churn {
            next_churn += Duration::from_secs(60);
            if rng.chance(cli.churn_percent / 100.0) {
                asker.reconnect().await?;
            }
        } else {
            // Wake at least once a second to notice the end of the run.
            let until = next_question
                .min(next_churn)
                .min(now + Duration::from_secs(1));
            asker.listen_until(until).await?;
        }
    }
    Ok(asker.out)
}

/// Conversation rows (questions, responses, interventions) stored more
/// than once under one client id.
async fn duplicate_rows(url: &str) -> anyhow::Result<i64> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(url).await?;
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT 1 FROM conversations WHERE client_msg_id IS NOT NULL \
         GROUP BY session_id, participant_id, message_type, client_msg_id HAVING count(*) > 1) d",
    )
    .fetch_one(&mut db)
    .await?;
    Ok(n)
}

/// One look at the hub process.
#[derive(Clone, Debug, serde::Serialize)]
struct Sample {
    t_s: f64,
    rss_bytes: u64,
    fds: u64,
    threads: u64,
    tasks: u64,
    connections: u64,
    cpu_s: f64,
}

async fn sample(hub: &Hub, started: Instant) -> anyhow::Result<Sample> {
    let pid = hub.pid.context("no hub pid")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Sample {
        t_s: started.elapsed().as_secs_f64(),
        rss_bytes: hub.rss_bytes().unwrap_or(0),
        fds,
        threads,
        tasks: hub.metric("eva_runtime_alive_tasks").await? as u64,
        connections: hub.metric("eva_connections").await? as u64,
        cpu_s: hub.cpu_seconds().unwrap_or(0.0),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Arc::new(Cli::parse());
    let _ = rlimit::increase_nofile_limit(65_536);
    if cli.warmup_minutes >= cli.minutes {
        bail!("--warmup-minutes must be shorter than --minutes");
    }
    let url = fresh_database(&cli.postgres, &cli.database).await?;
    let mut env = vec![
        ("EVA_HUB__LOG__LEVEL".to_owned(), "error".to_owned()),
        ("EVA_HUB__STORE__DATABASE_URL".into(), url.clone()),
    ];
    if !cli.hub_windows {
        for (key, value) in [
            ("HISTORY_SIZE", cli.history_size),
            ("DEDUPE_WINDOW", cli.dedupe_window),
            ("RECENT_REFS_MAX", cli.recent_refs),
        ] {
            env.push((format!("EVA_HUB__SESSION__{key}"), value.to_string()));
        }
    }
    let spawn = Spawn {
        binary: Spawn::release_binary(),
        cpus: (!cli.hub_cpus.is_empty()).then(|| cli.hub_cpus.clone()),
        env,
        log: None,
    };
    let hub = Hub::spawn(&spawn).await?;
    let seed = cli.seed.unwrap_or_else(|| Rng::from_clock().0);
    let mut rng = Rng(seed);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut sessions = Vec::new();
    let mut staff_tasks = Vec::new();
    let mut askers = Vec::new();
    for s in 0..cli.sessions {
        let session: SessionId = hub
            .create_session(&format!("soak {s}"))
            .await?
            .parse()
            .map_err(|_| anyhow::anyhow!("bad session id"))?;
        sessions.push(session);
        staff_tasks.push(tokio::spawn(renderer(
            hub.addr,
            session,
            s,
            cli.rate,
            stop.clone(),
            tally.clone(),
        )));
        staff_tasks.push(tokio::spawn(operator(
            hub.addr,
            session,
            s,
            cli.clone(),
            stop.clone(),
            tally.clone(),
        )));
        for p in 0..cli.participants {
            askers.push((
                s,
                tokio::spawn(participant(
                    hub.addr,
                    session,
                    format!("p-{s}-{p}"),
                    cli.clone(),
                    Rng(rng.next_u64() | 1),
                    stop.clone(),
                )),
            ));
        }
    }

    let started = Instant::now();
    let end = started + secs(cli.minutes * 60.0);
    let warm = started + secs(cli.warmup_minutes * 60.0);
    let mut samples = Vec::new();
    let mut baseline: Option<usize> = None;
    while Instant::now() < end {
        tokio::time::sleep(secs(cli.sample_s).min(end.saturating_duration_since(Instant::now())))
            .await;
        let s = sample(&hub, started).await?;
        eprintln!(
            "{:>6.0} s  rss {:>6.1} MiB  fds {:>5}  tasks {:>5}  threads {:>3}  connections {:>5}  cpu {:.0} s",
            s.t_s,
            s.rss_bytes as f64 / 1048576.0,
            s.fds,
            s.tasks,
            s.threads,
            s.connections,
            s.cpu_s
        );
        samples.push(s);
        if baseline.is_none() && Instant::now() >= warm {
            baseline = Some(samples.len() - 1);
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Each participant's outcome is audited with its own session's rows.
    let mut per_session: Vec<Vec<Outcome>> = sessions.iter().map(|_| Vec::new()).collect();
    for (s, a) in askers {
        per_session[s].push(
            tokio::time::timeout(Duration::from_secs(120), a)
                .await
                .context("a participant did not finish")???,
        );
    }
    for t in staff_tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .context("a renderer or operator did not finish")???;
    }
    let mut audits = Vec::new();
    for (session, outcomes) in sessions.iter().zip(&per_session) {
        audits.push(audit(&url, *session, outcomes).await?);
    }
    let outcomes: Vec<Outcome> = per_session.into_iter().flatten().collect();
    let duplicate_rows = duplicate_rows(&url).await?;

    let base = &samples[baseline.context("no sample after the warm-up")?];
    let last = samples.last().context("no samples")?;
    let rss_growth = last.rss_bytes as f64 / base.rss_bytes as f64 - 1.0;
    // Clients reconnecting at the moment of a sample hold a descriptor
    // and a task or two more or less: a handful, whatever the length.
    let slack = 1 + (cli.sessions * cli.participants) as u64 / 100;
    let fd_growth = last.fds as i64 - base.fds as i64;
    let task_growth = last.tasks as i64 - base.tasks as i64;
    let window = last.t_s - base.t_s;
    let hub_core = (last.cpu_s - base.cpu_s) / window.max(1.0);
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let events: u64 = outcomes.iter().map(|o| o.events).sum();
    let total = |f: fn(&Audit) -> usize| audits.iter().map(f).sum::<usize>();
    let result = json!({
        "label": cli.label,
        "seed": seed,
        "minutes": cli.minutes,
        "sessions": cli.sessions,
        "participants": cli.sessions * cli.participants,
        "rate_per_session": cli.rate,
        "windows": if cli.hub_windows { json!("hub defaults") } else {
            json!({ "history_size": cli.history_size, "dedupe_window": cli.dedupe_window, "recent_refs_max": cli.recent_refs })
        },
        "hub_core_share": hub_core,
        "participant_events": events,
        "participant_events_per_s": events as f64 / (started.elapsed().as_secs_f64()),
        "published": tally.published.load(Ordering::Relaxed),
        "responses": tally.responses.load(Ordering::Relaxed),
        "staff_acks": tally.acks.load(Ordering::Relaxed),
        "staff_errors": tally.errors.load(Ordering::Relaxed),
        "staff_reconnects": tally.staff_reconnects.load(Ordering::Relaxed),
        "reconnects": sum(|o| o.reconnects),
        "resumed": sum(|o| o.resumed),
        "discontinuities": sum(|o| o.discontinuities),
        "resends": sum(|o| o.resends),
        "ack_mismatches": sum(|o| o.ack_mismatches),
        "acknowledged": total(|a| a.acknowledged),
        "stored": total(|a| a.stored),
        "lost": total(|a| a.lost),
        "duplicated": total(|a| a.duplicated),
        "stored_without_ack": total(|a| a.stored_without_ack),
        "stored_under_another_id": total(|a| a.stored_under_another_id),
        "duplicate_rows_of_any_kind": duplicate_rows,
        "baseline": base,
        "last": last,
        "rss_growth": rss_growth,
        "fd_growth": fd_growth,
        "task_growth": task_growth,
        "samples": samples,
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    report::write_json(&report::results_dir("soak"), &cli.label, &result)?;
    drop(hub);
    let mut failed = Vec::new();
    if !audits.iter().all(|a| a.holds()) || sum(|o| o.ack_mismatches) > 0 || duplicate_rows > 0 {
        failed.push("stored questions and acks disagree");
    }
    if rss_growth >= 0.05 {
        failed.push("resident memory grew 5% or more after the warm-up");
    }
    if fd_growth > slack as i64 {
        failed.push("open descriptors grew");
    }
    if task_growth > 2 * slack as i64 {
        failed.push("runtime tasks grew");
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

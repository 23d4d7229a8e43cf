//! The kill -9 drill: a release hub on PostgreSQL is killed with SIGKILL
//! at `--kills` random moments while participants ask questions, each
//! until it is acknowledged (the same client id every time, through
//! reconnects). After each kill the hub is started again on the same
//! port; the participants reconnect and join with the position they had,
//! so each either resumes or is told of a discontinuity and gets a
//! snapshot.
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
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::ids::{EventId, SessionId};
use eva_hub::protocol::model::{Role, StreamPosition};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_load::hubproc::{self, Hub, Spawn};
use eva_load::report;
use serde_json::json;
use sqlx::Connection;

#[derive(Debug, Parser)]
#[command(about = "kill -9 the hub under load; count acknowledged rows in PostgreSQL")]
struct Cli {
    /// How many times the hub is killed.
    #[arg(long, default_value_t = 20)]
    kills: u32,
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
}

/// What one participant saw.
#[derive(Debug, Default)]
struct Outcome {
    subject: String,
    /// Client id → the question id its ack named.
    acked: HashMap<String, EventId>,
    /// Acks of one client id that named different questions.
    ack_mismatches: usize,
    reconnects: usize,
    resumed: usize,
    discontinuities: usize,
    resends: usize,
}

/// A small xorshift: kill moments need spread, not quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi.saturating_sub(lo).max(1))
    }
}

/// Connects (retrying while the hub is down) and joins, resuming from
/// `at` when given. Returns the client and the position it now has.
async fn join(
    addr: SocketAddr,
    session: SessionId,
    subject: &str,
    at: Option<StreamPosition>,
    out: &mut Outcome,
) -> anyhow::Result<(Client, Option<StreamPosition>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let token = eva_hub::auth::dev::dev_token(Role::Participant, subject, None);
        let attempt = async {
            let mut c = Client::connect(addr, ConnectOptions::new(Codec::Json, token)).await?;
            c.send(&ClientFrame::Join {
                session,
                resume: at,
                takeover: false,
                name: None,
                compact: false,
                echo: true,
                id: None,
            })
            .await?;
            let mut pos = at;
            loop {
                match c.recv_timeout(Duration::from_secs(10)).await? {
                    Incoming::Frame(ServerFrame::Snapshot(s)) => {
                        pos = Some(StreamPosition {
                            epoch: s.epoch,
                            seq: s.seq,
                        });
                        return anyhow::Ok((c, pos, false));
                    }
                    Incoming::Frame(ServerFrame::Resumed { epoch, to, .. }) => {
                        pos = Some(StreamPosition { epoch, seq: to });
                        return anyhow::Ok((c, pos, true));
                    }
                    Incoming::Frame(ServerFrame::Discontinuity { .. }) => {
                        out.discontinuities += 1;
                    }
                    Incoming::Frame(ServerFrame::Error { code, message, .. }) => {
                        bail!("join refused: {code:?} {message}")
                    }
                    Incoming::Frame(_) => {}
                    Incoming::Closed(c) => bail!("closed while joining: {c:?}"),
                }
                let _ = pos;
            }
        };
        match attempt.await {
            Ok((c, pos, resumed)) => {
                if resumed {
                    out.resumed += 1;
                }
                return Ok((c, pos));
            }
            Err(e) if Instant::now() > deadline => return Err(e.context("no hub to join")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

enum Answer {
    Acked(EventId),
    Retry(Duration),
    Resend,
    Reconnect,
}

async fn await_answer(
    c: &mut Client,
    id: &str,
    pos: &mut Option<StreamPosition>,
    out: &mut Outcome,
) -> Answer {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.recv_timeout(left).await {
            Ok(Incoming::Frame(ServerFrame::Ack {
                id: got,
                ref_id: Some(r),
                ..
            })) => {
                if got == id {
                    return Answer::Acked(r);
                }
                if out.acked.get(&got).is_some_and(|first| *first != r) {
                    out.ack_mismatches += 1;
                }
            }
            Ok(Incoming::Frame(ServerFrame::Event { seq, .. })) => {
                if let Some(p) = pos.as_mut() {
                    p.seq = seq;
                }
            }
            Ok(Incoming::Frame(ServerFrame::Error {
                id: Some(got),
                retry_after_ms,
                ..
            })) if got == id => {
                return Answer::Retry(Duration::from_millis(retry_after_ms.unwrap_or(200)));
            }
            Ok(Incoming::Frame(_)) => {}
            Ok(Incoming::Closed(_)) => return Answer::Reconnect,
            Err(_) => return Answer::Resend,
        }
    }
}

/// Asks `q-0`, `q-1`, ... each until acknowledged, through kills.
async fn participant(
    addr: SocketAddr,
    session: SessionId,
    subject: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome {
        subject: subject.clone(),
        ..Outcome::default()
    };
    let (mut c, mut pos) = join(addr, session, &subject, None, &mut out).await?;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("q-{i}");
        i += 1;
        loop {
            let sent = c
                .send(&ClientFrame::Question {
                    session,
                    id: id.clone(),
                    text: format!("{subject} asks {id}"),
                })
                .await;
            let answer = match sent {
                Err(_) => Answer::Reconnect,
                Ok(()) => await_answer(&mut c, &id, &mut pos, &mut out).await,
            };
            match answer {
                Answer::Acked(r) => {
                    out.acked.insert(id.clone(), r);
                    break;
                }
                Answer::Retry(after) => tokio::time::sleep(after).await,
                Answer::Resend => out.resends += 1,
                Answer::Reconnect => {
                    out.reconnects += 1;
                    (c, pos) = join(addr, session, &subject, pos, &mut out).await?;
                }
            }
        }
    }
    Ok(out)
}

/// Accounting of the stored questions against the acks.
#[derive(Debug, Default)]
struct Audit {
    stored: usize,
    acked: usize,
    lost: usize,
    duplicated: usize,
    unacknowledged: usize,
    wrong_id: usize,
}

async fn audit(url: &str, session: SessionId, outcomes: &[Outcome]) -> anyhow::Result<Audit> {
    let mut db = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(String, String, uuid::Uuid)> = sqlx::query_as(
        "SELECT participant_id, client_msg_id, id FROM conversations \
         WHERE session_id = $1 AND message_type = 'question'",
    )
    .bind(session.0)
    .fetch_all(&mut db)
    .await?;
    let mut stored: HashMap<(String, String), Vec<uuid::Uuid>> = HashMap::new();
    for (p, c, id) in &rows {
        stored.entry((p.clone(), c.clone())).or_default().push(*id);
    }
    let mut a = Audit {
        stored: rows.len(),
        duplicated: stored.values().map(|ids| ids.len() - 1).sum(),
        ..Audit::default()
    };
    for o in outcomes {
        a.acked += o.acked.len();
        for (client_id, ref_id) in &o.acked {
            match stored.get(&(o.subject.clone(), client_id.clone())) {
                Some(ids) if !ids.contains(&ref_id.0) => a.wrong_id += 1,
                Some(_) => {}
                None => a.lost += 1,
            }
        }
    }
    a.unacknowledged = stored
        .keys()
        .filter(|(p, c)| {
            !outcomes
                .iter()
                .any(|o| &o.subject == p && o.acked.contains_key(c))
        })
        .count();
    Ok(a)
}

async fn fresh_database(server: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {server}"))?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    Ok(format!("{server}/{name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(65_536);
    let url = fresh_database(&cli.postgres, &cli.database).await?;
    let mut env = vec![
        ("EVA_HUB__LOG__LEVEL".to_owned(), "error".to_owned()),
        ("EVA_HUB__STORE__DATABASE_URL".into(), url.clone()),
    ];
    if let Some(redis) = &cli.redis {
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
        log: None,
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

    let seed = cli.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1
    });
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut restarts_ms = Vec::new();
    for _ in 0..cli.kills {
        tokio::time::sleep(Duration::from_millis(rng.between(cli.min_ms, cli.max_ms))).await;
        // Drop sends SIGKILL and reaps the process.
        drop(hub);
        let t = Instant::now();
        hub = Hub::spawn_on(&spawn, port).await?;
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
        "broker": if cli.redis.is_some() { "redis" } else { "memory" },
        "participants": cli.participants,
        "seconds": took,
        "restart_ms": restarts_ms,
        "acknowledged": audit.acked,
        "stored": audit.stored,
        "lost": audit.lost,
        "duplicated": audit.duplicated,
        "stored_without_ack": audit.unacknowledged,
        "stored_under_another_id": audit.wrong_id,
        "ack_mismatches": sum(|o| o.ack_mismatches),
        "reconnects": sum(|o| o.reconnects),
        "resumed": sum(|o| o.resumed),
        "discontinuities": sum(|o| o.discontinuities),
        "resends": sum(|o| o.resends),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    report::write_json(&report::results_dir("crash-drill"), &cli.label, &result)?;
    drop(hub);
    if audit.lost > 0 || audit.duplicated > 0 || audit.unacknowledged > 0 || audit.acked == 0 {
        bail!(
            "acknowledged rows and stored rows disagree (see lost, duplicated, stored_without_ack)"
        );
    }
    Ok(())
}

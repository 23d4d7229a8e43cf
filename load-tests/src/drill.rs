//! Participants that ask questions, each until it is acknowledged, through
//! reconnects and hub restarts, and the audit of the questions PostgreSQL
//! stored against the acks they got. The crash drill and the soak share
//! this accounting: only what was acknowledged must survive, exactly once,
//! under the id its ack named.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::ids::{EventId, SessionId};
use eva_hub::protocol::model::{Role, StreamPosition};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use sqlx::Connection;

/// What one participant saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub subject: String,
    /// Client id → the question id its ack named.
    pub acked: HashMap<String, EventId>,
    /// Acks of one client id that named different questions.
    pub ack_mismatches: usize,
    /// Connections lost (or dropped on purpose) and opened again.
    pub reconnects: usize,
    pub resumed: usize,
    pub discontinuities: usize,
    /// Questions sent again because no answer came in time.
    pub resends: usize,
    /// Event frames received.
    pub events: u64,
}

/// A participant of one session that keeps its stream position across
/// connections, so every reconnect resumes (or is told it cannot).
pub struct Asker {
    addr: SocketAddr,
    session: SessionId,
    client: Client,
    pos: Option<StreamPosition>,
    pub out: Outcome,
}

enum Answer {
    Acked(EventId),
    Retry(Duration),
    Resend,
    Reconnect,
}

impl Asker {
    /// Connects (retrying for up to a minute while the hub is down) and
    /// joins `session` as participant `subject`.
    pub async fn join(
        addr: SocketAddr,
        session: SessionId,
        subject: String,
    ) -> anyhow::Result<Asker> {
        let mut out = Outcome {
            subject,
            ..Outcome::default()
        };
        let (client, pos) = connect(addr, session, None, &mut out).await?;
        Ok(Asker {
            addr,
            session,
            client,
            pos,
            out,
        })
    }

    /// Drops the connection and joins again from the position it had.
    pub async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.out.reconnects += 1;
        let (client, pos) = connect(self.addr, self.session, self.pos, &mut self.out).await?;
        self.client = client;
        self.pos = pos;
        Ok(())
    }

    /// Asks `id` until the hub acknowledges it: resent after 2 s without
    /// an answer, after `retry_after_ms` when refused for now, and after a
    /// reconnect when the connection is lost.
    pub async fn ask(&mut self, id: &str) -> anyhow::Result<()> {
        let text = format!("{} asks {id}", self.out.subject);
        let mut tries = 0;
        loop {
            tries += 1;
            if tries % 10 == 0 {
                // Twenty seconds without an ack is worth a line while
                // the run goes on.
                eprintln!(
                    "{} has sent {id} {tries} times without an ack",
                    self.out.subject
                );
            }
            let sent = self
                .client
                .send(&ClientFrame::Question {
                    session: self.session,
                    id: id.to_owned(),
                    text: text.clone(),
                })
                .await;
            let answer = match sent {
                Err(_) => Answer::Reconnect,
                Ok(()) => self.await_answer(id).await,
            };
            match answer {
                Answer::Acked(r) => {
                    self.out.acked.insert(id.to_owned(), r);
                    return Ok(());
                }
                Answer::Retry(after) => tokio::time::sleep(after).await,
                Answer::Resend => self.out.resends += 1,
                Answer::Reconnect => self.reconnect().await?,
            }
        }
    }

    /// Reads the stream until `until`, reconnecting if the connection is
    /// lost.
    pub async fn listen_until(&mut self, until: tokio::time::Instant) -> anyhow::Result<()> {
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.client.recv_timeout(left).await {
                Ok(Incoming::Frame(f)) => self.note(f),
                Ok(Incoming::Closed(_)) => self.reconnect().await?,
                Err(_) => {}
            }
        }
    }

    /// Keeps the stream position and counts events; checks late acks.
    fn note(&mut self, frame: ServerFrame) {
        match frame {
            // The hub can start a new epoch mid-stream (its broker lost
            // the session's stream): a snapshot follows.
            ServerFrame::Discontinuity { .. } => self.out.discontinuities += 1,
            ServerFrame::Snapshot(s) => {
                self.pos = Some(StreamPosition {
                    epoch: s.epoch,
                    seq: s.seq,
                });
            }
            ServerFrame::Event { seq, .. } => {
                self.out.events += 1;
                if let Some(p) = self.pos.as_mut() {
                    p.seq = seq;
                }
            }
            // A late ack of a question already acknowledged must name
            // the same question.
            ServerFrame::Ack {
                id,
                ref_id: Some(r),
                ..
            } if self.out.acked.get(&id).is_some_and(|first| *first != r) => {
                self.out.ack_mismatches += 1;
            }
            _ => {}
        }
    }

    async fn await_answer(&mut self, id: &str) -> Answer {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.client.recv_timeout(left).await {
                Ok(Incoming::Frame(ServerFrame::Ack {
                    id: got,
                    ref_id: Some(r),
                    ..
                })) if got == id => return Answer::Acked(r),
                Ok(Incoming::Frame(ServerFrame::Error {
                    id: Some(got),
                    retry_after_ms,
                    ..
                })) if got == id => {
                    return Answer::Retry(Duration::from_millis(retry_after_ms.unwrap_or(200)));
                }
                Ok(Incoming::Frame(f)) => self.note(f),
                Ok(Incoming::Closed(_)) => return Answer::Reconnect,
                Err(_) => return Answer::Resend,
            }
        }
    }
}

/// Connects (retrying while the hub is down) and joins, resuming from
/// `at` when given. Returns the client and the position it now has.
async fn connect(
    addr: SocketAddr,
    session: SessionId,
    at: Option<StreamPosition>,
    out: &mut Outcome,
) -> anyhow::Result<(Client, Option<StreamPosition>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let token = eva_hub::auth::dev::dev_token(Role::Participant, &out.subject, None);
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
            let mut discontinuities = 0;
            loop {
                match c.recv_timeout(Duration::from_secs(10)).await? {
                    Incoming::Frame(ServerFrame::Snapshot(s)) => {
                        let pos = StreamPosition {
                            epoch: s.epoch,
                            seq: s.seq,
                        };
                        return anyhow::Ok((c, pos, false, discontinuities));
                    }
                    Incoming::Frame(ServerFrame::Resumed { epoch, to, .. }) => {
                        let pos = StreamPosition { epoch, seq: to };
                        return anyhow::Ok((c, pos, true, discontinuities));
                    }
                    Incoming::Frame(ServerFrame::Discontinuity { .. }) => discontinuities += 1,
                    Incoming::Frame(ServerFrame::Error { code, message, .. }) => {
                        bail!("join refused: {code:?} {message}")
                    }
                    Incoming::Frame(_) => {}
                    Incoming::Closed(c) => bail!("closed while joining: {c:?}"),
                }
            }
        };
        match attempt.await {
            Ok((c, pos, resumed, discontinuities)) => {
                out.resumed += usize::from(resumed);
                out.discontinuities += discontinuities;
                return Ok((c, Some(pos)));
            }
            Err(e) if Instant::now() > deadline => return Err(e.context("no hub to join")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The stored questions counted against the acks.
#[derive(Debug, Default, serde::Serialize)]
pub struct Audit {
    pub stored: usize,
    pub acknowledged: usize,
    /// Acknowledged, not stored.
    pub lost: usize,
    /// Stored more than once (one client id, several rows).
    pub duplicated: usize,
    /// Stored, never acknowledged.
    pub stored_without_ack: usize,
    /// Stored, but not under the id the ack named.
    pub stored_under_another_id: usize,
}

impl Audit {
    /// Only what was acknowledged survives, exactly once, under its id.
    pub fn holds(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.stored_without_ack == 0
            && self.stored_under_another_id == 0
            && self.acknowledged > 0
    }
}

/// Reads `session`'s questions from the database at `url` and counts them
/// against what the participants were told.
pub async fn audit(url: &str, session: SessionId, outcomes: &[Outcome]) -> anyhow::Result<Audit> {
    let mut db = sqlx::PgConnection::connect(url).await?;
    let rows: Vec<(String, String, uuid::Uuid)> = sqlx::query_as(
        "SELECT participant_id, client_msg_id, id FROM conversations \
         WHERE session_id = $1 AND message_type = 'question'",
    )
    .bind(session.0)
    .fetch_all(&mut db)
    .await?;
    let mut stored: HashMap<(&str, &str), Vec<uuid::Uuid>> = HashMap::new();
    for (p, c, id) in &rows {
        stored.entry((p, c)).or_default().push(*id);
    }
    let mut a = Audit {
        stored: rows.len(),
        duplicated: stored.values().map(|ids| ids.len() - 1).sum(),
        ..Audit::default()
    };
    for o in outcomes {
        a.acknowledged += o.acked.len();
        for (client_id, ref_id) in &o.acked {
            match stored.get(&(o.subject.as_str(), client_id.as_str())) {
                Some(ids) if !ids.contains(&ref_id.0) => a.stored_under_another_id += 1,
                Some(_) => {}
                None => a.lost += 1,
            }
        }
    }
    a.stored_without_ack = stored
        .keys()
        .filter(|(p, c)| {
            !outcomes
                .iter()
                .any(|o| o.subject == *p && o.acked.contains_key(*c))
        })
        .count();
    Ok(a)
}

/// Drops and creates database `name` on `server`; returns its URL.
pub async fn fresh_database(server: &str, name: &str) -> anyhow::Result<String> {
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

/// A small xorshift: kill moments and churn need spread, not quality.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock.
    pub fn from_clock() -> Rng {
        Rng(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In `lo..hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi.saturating_sub(lo).max(1))
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

//! One simulated renderer: it presents (slides advance, speech starts and
//! stops, a transcript flows), reports its pipeline's stage latencies,
//! answers questions after a short "thinking" delay, carries out operator
//! commands, and acknowledges an emergency stop at once. It reconnects
//! after a drop and carries on from the session's snapshot.
//!
//! [`Presenter`] is the simulation, a state machine that turns frames and
//! time into frames to send; [`run`] is the connection around it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::time::Instant;

use super::script::{self, Pipeline, SLIDES};
use super::{Ctx, Ended, Slot, backoff, classify_close};
use crate::cli::DemoPace;
use crate::client::{Client, ConnectOptions, Incoming};
use crate::ids::EventId;
use crate::protocol::model::{Command, CustomAudience, Event, Role, StatePatch};
use crate::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame, SessionStatus, Snapshot};

/// Ids remembered to act on each question and stop once.
const REMEMBERED: usize = 512;
/// Silence between two sentences.
const SENTENCE_GAP: Duration = Duration::from_millis(900);
/// Silence after the last sentence of a slide before the next one (when
/// slides follow the script rather than a fixed interval).
const SLIDE_GAP: Duration = Duration::from_millis(2500);

/// Presents one session until it ends, reconnecting after every drop.
pub(super) async fn run(ctx: Arc<Ctx>, slot: Arc<Slot>) {
    let mut presenter = Presenter::new(slot.session, &ctx.pace, StdRng::from_os_rng());
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let ended = connection(&ctx, &slot, &mut presenter).await;
        match ended {
            Ok(Ended::Final(why)) => {
                tracing::info!(session = %slot.session, why, "demo renderer stops");
                return;
            }
            Ok(Ended::Dropped(why)) => {
                tracing::debug!(session = %slot.session, why, "demo renderer dropped; reconnecting");
            }
            Err(e) => {
                tracing::debug!(session = %slot.session, error = %e, "demo renderer failed; reconnecting");
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            failures = 0;
        }
        failures += 1;
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// One connection: join, then present until it ends.
async fn connection(ctx: &Ctx, slot: &Slot, p: &mut Presenter) -> anyhow::Result<Ended> {
    let token = ctx
        .token(Role::Renderer, &ctx.renderer_subject(slot), slot)
        .await?;
    let mut c = Client::connect(ctx.addr(), ConnectOptions::new(Codec::MsgPack, token)).await?;
    match c.recv_timeout(Duration::from_secs(10)).await? {
        Incoming::Frame(ServerFrame::Welcome { .. }) => {}
        Incoming::Closed(close) => return Ok(classify_close(close)),
        Incoming::Frame(other) => anyhow::bail!("expected welcome, got {other:?}"),
    }
    p.connected();
    c.send(&ClientFrame::Join {
        session: slot.session,
        resume: None,
        takeover: false,
        name: Some(slot.name.clone()),
        compact: false,
        echo: true,
        id: Some(p.next_id("join")),
    })
    .await?;
    loop {
        let wake = p.next_wake();
        let out = tokio::select! {
            incoming = c.recv() => match incoming? {
                Incoming::Closed(close) => return Ok(classify_close(close)),
                Incoming::Frame(f) => p.on_frame(f, Instant::now()),
            },
            _ = tokio::time::sleep_until(wake) => p.on_time(Instant::now()),
        };
        for frame in &out {
            c.send(frame).await?;
        }
        if let Some(end) = p.ended.take() {
            return Ok(end);
        }
    }
}

/// A question waiting for its answer.
#[derive(Debug)]
struct Pending {
    due: Instant,
    question_id: EventId,
    text: String,
}

/// The simulated avatar.
#[derive(Debug)]
pub(super) struct Presenter {
    session: crate::ids::SessionId,
    rng: StdRng,
    pipeline: Pipeline,
    slide_every: Option<Duration>,
    tick: Duration,
    think: Duration,
    /// A snapshot arrived on this connection.
    joined: bool,
    status: SessionStatus,
    /// Stopped by an emergency stop until the session is active again.
    halted: bool,
    slide: i32,
    sentences: Vec<String>,
    sentence: usize,
    words: usize,
    /// No speech before this (between sentences and slides).
    quiet_until: Instant,
    speaking: bool,
    next_word: Instant,
    next_slide: Option<Instant>,
    next_metrics: Instant,
    pending: VecDeque<Pending>,
    answered: VecDeque<EventId>,
    acked: VecDeque<EventId>,
    ids: u64,
    id_prefix: String,
    /// Set when the connection should end.
    pub(super) ended: Option<Ended>,
}

impl Presenter {
    pub(super) fn new(
        session: crate::ids::SessionId,
        pace: &DemoPace,
        mut rng: StdRng,
    ) -> Presenter {
        let now = Instant::now();
        let id_prefix = format!("{:08x}", rng.random::<u32>());
        Presenter {
            session,
            rng,
            pipeline: Pipeline::new(),
            slide_every: (pace.slide_ms > 0).then(|| Duration::from_millis(pace.slide_ms)),
            tick: Duration::from_secs_f64(1.0 / pace.updates_per_s.clamp(0.2, 100.0)),
            think: Duration::from_millis(pace.think_ms),
            joined: false,
            status: SessionStatus::Created,
            halted: false,
            slide: 0,
            sentences: script::sentences(0),
            sentence: 0,
            words: 0,
            quiet_until: now,
            speaking: false,
            next_word: now,
            next_slide: None,
            next_metrics: now,
            pending: VecDeque::new(),
            answered: VecDeque::new(),
            acked: VecDeque::new(),
            ids: 0,
            id_prefix,
            ended: None,
        }
    }

    /// A fresh connection: nothing is known until its snapshot.
    fn connected(&mut self) {
        self.joined = false;
        self.speaking = false;
    }

    fn next_id(&mut self, what: &str) -> String {
        self.ids += 1;
        format!("{what}-{}-{}", self.id_prefix, self.ids)
    }

    fn presenting(&self) -> bool {
        self.joined && self.status == SessionStatus::Active && !self.halted
    }

    /// When [`Presenter::on_time`] has something to do next.
    pub(super) fn next_wake(&self) -> Instant {
        let mut wake = self.next_metrics;
        if let Some(p) = self.pending.front() {
            wake = wake.min(p.due);
        }
        if self.presenting() {
            wake = wake.min(self.next_word.max(self.quiet_until));
            if let Some(s) = self.next_slide {
                wake = wake.min(s);
            }
        }
        wake
    }

    /// What the hub said, and what to send in return.
    pub(super) fn on_frame(&mut self, f: ServerFrame, now: Instant) -> Vec<ClientFrame> {
        let mut out = Vec::new();
        match f {
            ServerFrame::Snapshot(s) => self.on_snapshot(*s, now, &mut out),
            ServerFrame::Event { event, .. } if self.joined => self.on_event(event, now, &mut out),
            ServerFrame::Urgent {
                intervention_id, ..
            } => self.stop(intervention_id, &mut out),
            ServerFrame::Error {
                code, message, id, ..
            } => {
                let join = id.as_deref().is_some_and(|i| i.starts_with("join-"));
                match code {
                    ErrorCode::NotFound | ErrorCode::SessionEnded | ErrorCode::Forbidden
                        if join =>
                    {
                        self.ended = Some(Ended::Final(format!("join refused: {message}")));
                    }
                    _ if join => self.ended = Some(Ended::Dropped(format!("join: {message}"))),
                    ErrorCode::StaleRenderer => {
                        self.ended = Some(Ended::Final("replaced by another renderer".into()));
                    }
                    _ => {
                        tracing::debug!(session = %self.session, ?code, message, "demo renderer refused")
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn on_snapshot(&mut self, s: Snapshot, now: Instant, out: &mut Vec<ClientFrame>) {
        self.joined = true;
        self.status = s.status;
        if self.slide != s.state.current_slide || self.sentence >= self.sentences.len() {
            self.start_slide(s.state.current_slide, now);
        }
        if self.next_slide.is_none() {
            self.next_slide = self.slide_every.map(|every| now + every);
        }
        // What the hub says is still owed: stops first, then commands,
        // then the open questions.
        let mut pending = s.pending_commands.unwrap_or_default();
        pending.sort_by_key(|c| !c.emergency);
        for c in pending {
            if c.emergency {
                self.stop(c.command_id, out);
            } else if let Some(cmd) = c.command {
                self.command(c.command_id, cmd, now, out);
            }
        }
        for q in s.questions.unwrap_or_default() {
            self.question(q.question_id, q.text, now);
        }
        match s.status {
            SessionStatus::Created | SessionStatus::Starting => out.push(ClientFrame::Status {
                session: self.session,
                status: SessionStatus::Active,
                reason: Some("demo renderer ready".into()),
                id: Some(self.next_id("status")),
            }),
            SessionStatus::Stopping => self.finish(out),
            SessionStatus::Stopped | SessionStatus::Failed => {
                self.ended = Some(Ended::Final("session ended".into()));
            }
            SessionStatus::Active | SessionStatus::Paused => {}
        }
        out.push(self.state(Some(false)));
        self.speaking = false;
    }

    fn on_event(&mut self, e: Event, now: Instant, out: &mut Vec<ClientFrame>) {
        match e {
            Event::Lifecycle { status, .. } => {
                self.status = status;
                match status {
                    SessionStatus::Active => {
                        self.halted = false;
                        self.quiet_until = now + SENTENCE_GAP;
                    }
                    SessionStatus::Stopping => self.finish(out),
                    SessionStatus::Stopped | SessionStatus::Failed => {
                        self.ended = Some(Ended::Final("session ended".into()));
                    }
                    _ => {}
                }
            }
            Event::Question {
                question_id, text, ..
            } => self.question(question_id, text, now),
            Event::Command {
                command_id,
                command,
                ..
            } => self.command(command_id, command, now, out),
            Event::EmergencyStop {
                intervention_id, ..
            } => self.stop(intervention_id, out),
            _ => {}
        }
    }

    /// Time passed: speak, change slides, report metrics, answer.
    pub(super) fn on_time(&mut self, now: Instant) -> Vec<ClientFrame> {
        let mut out = Vec::new();
        if !self.joined {
            return out;
        }
        if now >= self.next_metrics {
            self.next_metrics = now + Duration::from_secs(1);
            let thinking = !self.pending.is_empty();
            out.push(ClientFrame::Metrics {
                session: self.session,
                metrics: self.pipeline.sample(&mut self.rng, thinking),
            });
        }
        if !self.presenting() {
            if self.speaking {
                self.speaking = false;
                out.push(self.state(Some(false)));
            }
            // The slide clock waits while the presentation does.
            if let Some(every) = self.slide_every {
                self.next_slide = Some(now + every);
            }
            return out;
        }
        while self.pending.front().is_some_and(|p| p.due <= now) {
            let p = self.pending.pop_front().expect("checked");
            out.push(self.answer(p));
        }
        if self.next_slide.is_some_and(|s| s <= now) {
            let next = (self.slide + 1).rem_euclid(SLIDES);
            self.start_slide(next, now);
            out.push(ClientFrame::State {
                session: self.session,
                state: StatePatch {
                    current_slide: Some(self.slide),
                    current_topic: Some(Some(script::topic(self.slide).to_owned())),
                    awaiting_questions: Some(self.slide == SLIDES - 1),
                    ..StatePatch::default()
                },
                id: None,
            });
        }
        if now >= self.next_word && now >= self.quiet_until {
            self.next_word = now + self.tick;
            self.speak(now, &mut out);
        }
        out
    }

    fn start_slide(&mut self, slide: i32, now: Instant) {
        self.slide = slide;
        self.sentences = script::sentences(slide);
        self.sentence = 0;
        self.words = 0;
        self.quiet_until = now + Duration::from_millis(400);
        self.next_slide = self.slide_every.map(|every| now + every);
    }

    /// One more word of the current sentence, as a transcript update.
    fn speak(&mut self, now: Instant, out: &mut Vec<ClientFrame>) {
        let Some(sentence) = self.sentences.get(self.sentence) else {
            if self.speaking {
                self.speaking = false;
                out.push(self.state(Some(false)));
            }
            if self.next_slide.is_none() {
                self.next_slide = Some(now + SLIDE_GAP);
            }
            return;
        };
        let words: Vec<&str> = sentence.split(' ').collect();
        self.words += 1;
        let done = self.words >= words.len();
        let text = words[..self.words.min(words.len())].join(" ");
        if !self.speaking {
            self.speaking = true;
            out.push(self.state(Some(true)));
        }
        out.push(ClientFrame::Publish {
            session: self.session,
            name: "transcript".into(),
            audience: CustomAudience::All,
            data: json!({"text": text, "slide": self.slide, "sentence": self.sentence, "final": done}),
            id: None,
        });
        if done {
            self.sentence += 1;
            self.words = 0;
            // A breath between sentences: three updates' worth, so the
            // transcript keeps close to its rate.
            self.quiet_until = now + (self.tick * 3).min(SENTENCE_GAP);
            self.speaking = false;
            out.push(self.state(Some(false)));
        }
    }

    fn state(&self, speaking: Option<bool>) -> ClientFrame {
        ClientFrame::State {
            session: self.session,
            state: StatePatch {
                is_speaking: speaking,
                ..StatePatch::default()
            },
            id: None,
        }
    }

    fn question(&mut self, question_id: EventId, text: String, now: Instant) {
        if self.answered.contains(&question_id)
            || self.pending.iter().any(|p| p.question_id == question_id)
        {
            return;
        }
        let jitter = self.rng.random_range(0.8..1.2);
        let due = self.pending.back().map_or(now, |p| p.due.max(now)) + self.think.mul_f64(jitter);
        self.pending.push_back(Pending {
            due,
            question_id,
            text,
        });
    }

    fn answer(&mut self, p: Pending) -> ClientFrame {
        remember(&mut self.answered, p.question_id);
        let (text, intent, confidence, sources) = script::answer(&p.text);
        ClientFrame::Response {
            session: self.session,
            // The question's id: a resend after a reconnect is the same
            // response, never a second one.
            id: format!("answer-{}", p.question_id),
            question_id: Some(p.question_id),
            text,
            confidence,
            response_time_ms: self.pipeline.response_time_ms(),
            intent: Some(intent.to_owned()),
            knowledge_sources: sources,
            command_id: None,
        }
    }

    fn command(&mut self, id: EventId, cmd: Command, now: Instant, out: &mut Vec<ClientFrame>) {
        if self.acked.contains(&id) {
            return;
        }
        remember(&mut self.acked, id);
        match cmd {
            Command::Say { text } => out.push(ClientFrame::Response {
                session: self.session,
                id: format!("say-{id}"),
                question_id: None,
                text,
                confidence: 1.0,
                response_time_ms: 0,
                intent: Some("operator".into()),
                knowledge_sources: Vec::new(),
                command_id: Some(id),
            }),
            Command::GotoSlide { slide } => {
                self.start_slide(slide.clamp(0, SLIDES - 1), now);
                out.push(ClientFrame::State {
                    session: self.session,
                    state: StatePatch {
                        current_slide: Some(self.slide),
                        current_topic: Some(Some(script::topic(self.slide).to_owned())),
                        ..StatePatch::default()
                    },
                    id: None,
                });
            }
            // The hub moves the session to paused or active; presenting
            // follows the lifecycle.
            Command::Pause | Command::Resume => {}
        }
        out.push(ClientFrame::CommandAck {
            session: self.session,
            command_id: id,
        });
    }

    /// An emergency stop: silent at once, acknowledged at once.
    fn stop(&mut self, intervention_id: EventId, out: &mut Vec<ClientFrame>) {
        if self.acked.contains(&intervention_id) {
            return;
        }
        remember(&mut self.acked, intervention_id);
        self.halted = true;
        out.push(ClientFrame::CommandAck {
            session: self.session,
            command_id: intervention_id,
        });
        if self.speaking {
            self.speaking = false;
            out.push(self.state(Some(false)));
        }
    }

    /// The session is stopping: confirm, and end.
    fn finish(&mut self, out: &mut Vec<ClientFrame>) {
        out.push(ClientFrame::Status {
            session: self.session,
            status: SessionStatus::Stopped,
            reason: Some("presentation finished".into()),
            id: Some(self.next_id("status")),
        });
        self.ended = Some(Ended::Final("session stopped".into()));
    }
}

fn remember(list: &mut VecDeque<EventId>, id: EventId) {
    list.push_back(id);
    if list.len() > REMEMBERED {
        list.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::model::{Counters, SessionState};

    fn pace() -> DemoPace {
        DemoPace {
            slide_ms: 1000,
            updates_per_s: 10.0,
            think_ms: 500,
            ..DemoPace::default()
        }
    }

    fn snapshot(session: crate::ids::SessionId, status: SessionStatus) -> ServerFrame {
        ServerFrame::Snapshot(Box::new(Snapshot {
            session,
            epoch: crate::ids::Epoch(1),
            seq: 1,
            status,
            name: None,
            state: SessionState::default(),
            counters: Counters::default(),
            presence: crate::protocol::frames::PresenceView {
                participant_count: 0,
                members: None,
                truncated: false,
            },
            control: None,
            context: None,
            metrics: None,
            alerts: None,
            held_responses: None,
            questions: None,
            pending_commands: None,
            jobs: None,
        }))
    }

    fn event(session: crate::ids::SessionId, event: Event) -> ServerFrame {
        ServerFrame::Event {
            session,
            seq: 2,
            ts: 0,
            event,
        }
    }

    #[tokio::test]
    async fn presents_answers_and_stops() {
        let session = crate::ids::SessionId::new();
        let mut p = Presenter::new(session, &pace(), StdRng::seed_from_u64(1));
        let t0 = Instant::now();
        let out = p.on_frame(snapshot(session, SessionStatus::Starting), t0);
        assert!(out.iter().any(|f| matches!(
            f,
            ClientFrame::Status {
                status: SessionStatus::Active,
                ..
            }
        )));
        p.on_frame(
            event(
                session,
                Event::Lifecycle {
                    status: SessionStatus::Active,
                    previous: SessionStatus::Starting,
                    reason: None,
                    by: None,
                },
            ),
            t0,
        );
        // Five simulated seconds: words, a slide change, metrics.
        let mut sent = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(5) {
            now = p.next_wake().max(now + Duration::from_millis(1));
            sent.extend(p.on_time(now));
        }
        assert!(
            sent.iter()
                .any(|f| matches!(f, ClientFrame::Publish { name, .. } if name == "transcript"))
        );
        assert!(sent.iter().any(
            |f| matches!(f, ClientFrame::State { state, .. } if state.current_slide.is_some())
        ));
        assert!(
            sent.iter()
                .any(|f| matches!(f, ClientFrame::Metrics { .. }))
        );

        // A question is answered after the thinking delay, once.
        let q = EventId::new();
        let question = Event::Question {
            question_id: q,
            participant_id: "ada".into(),
            participant_name: None,
            text: "What does it cost?".into(),
        };
        p.on_frame(event(session, question.clone()), now);
        p.on_frame(event(session, question), now);
        let mut answers = 0;
        let end = now + Duration::from_secs(2);
        while now < end {
            now = p.next_wake().max(now + Duration::from_millis(1));
            answers += p
                .on_time(now)
                .iter()
                .filter(|f| matches!(f, ClientFrame::Response { question_id: Some(id), .. } if *id == q))
                .count();
        }
        assert_eq!(answers, 1);

        // An emergency stop is acknowledged at once, once, and silences it.
        let stop = EventId::new();
        let out = p.on_frame(
            ServerFrame::Urgent {
                session,
                seq: 9,
                intervention_id: stop,
                reason: None,
            },
            now,
        );
        assert!(out.iter().any(
            |f| matches!(f, ClientFrame::CommandAck { command_id, .. } if *command_id == stop)
        ));
        let again = p.on_frame(
            event(
                session,
                Event::EmergencyStop {
                    intervention_id: stop,
                    operator_id: "ops-1".into(),
                    reason: None,
                },
            ),
            now,
        );
        assert!(again.is_empty());
        let later = p.on_time(now + Duration::from_secs(3));
        assert!(
            !later
                .iter()
                .any(|f| matches!(f, ClientFrame::Publish { .. }))
        );
    }
}

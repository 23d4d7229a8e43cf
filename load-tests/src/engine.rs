//! The load engine: sessions whose renderer publishes open-loop at a fixed
//! rate, and participants (and operators) that account for every event
//! they receive.
//!
//! Open loop: event `i` of a session is *due* at `start + i / rate`, and it
//! carries that due time. Latency is measured from the due time, not from
//! when the sender got around to sending it, so a stalled sender or hub
//! shows up as latency instead of hiding (coordinated omission). Senders
//! wake at most once a millisecond and send everything due, stamped with
//! its own due time.
//!
//! The generator runs on one thread (`LocalSet`), so shared counters are
//! plain `RefCell`s and cost nothing to update. The emergency-stop probe
//! alone runs on a thread of its own (see [`ProbeThread`]).

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use eva_hub::client::{Client, ClientReceiver, ClientSender, ConnectOptions};
use eva_hub::protocol::Codec;
use futures_util::future::LocalBoxFuture;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::accounting::{Tally, Totals};
use crate::report::latency_histogram;
use crate::scan::{find, probe};

/// Nanoseconds since the run started: the one clock of the generator.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }
    pub fn ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What the renderer publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// App-defined `custom` events: never conflated.
    Custom,
    /// `state` changes (the topic carries the probe): conflatable.
    State,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub sessions: usize,
    /// Participants per session.
    pub participants: usize,
    /// One operator watching each session.
    pub operators: bool,
    /// Events per second per session.
    pub rate: f64,
    #[serde(with = "secs")]
    pub duration: Duration,
    #[serde(with = "secs")]
    pub warmup: Duration,
    /// Bytes of application payload per event.
    pub payload: usize,
    pub kind: EventKind,
    /// Source addresses 127.0.0.2 … to spread connections over.
    pub sources: usize,
    /// Send an emergency stop to session 0 this often and time its
    /// arrival at the renderer.
    #[serde(with = "opt_secs")]
    pub estop_every: Option<Duration>,
    /// Subscribers join with `compact: true` (compact event frames), and
    /// the renderer with `echo: false`.
    pub compact: bool,
    /// Stamp each event with the time it is actually written to the
    /// renderer's socket instead of its due time: latency is then the
    /// hub's alone, without the sender's timer granularity (up to 1 ms).
    /// How late the sender was is reported beside it (`send_lag`), so a
    /// stalled sender still shows.
    pub stamp_sent: bool,
    /// Subscribers speak `eva.v1.msgpack` (the renderer and operators
    /// stay on JSON): bytes on the wire per delivery in MessagePack.
    pub msgpack: bool,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Events published per session during the measured window.
    pub sent: u64,
    pub totals: Totals,
    /// Every delivery's latency, µs.
    pub latency: Histogram<u64>,
    /// Per event, its slowest delivery (the broadcast's last delivery), µs.
    pub last_delivery: Histogram<u64>,
    /// Emergency stop: operator send to renderer receipt, µs.
    pub estop: Histogram<u64>,
    /// How late the sender wrote each event after its due time, µs.
    pub send_lag: Histogram<u64>,
    /// WebSocket bytes (frame headers included) of measured deliveries.
    pub bytes: u64,
    /// Deliveries of measured events.
    pub deliveries: u64,
    pub window: Duration,
    pub hub_cpu_seconds: Option<f64>,
    pub hub_rss_bytes: Option<u64>,
}

impl Outcome {
    pub fn deliveries_per_second(&self) -> f64 {
        self.deliveries as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Bytes on the wire (WebSocket framing included, TCP/IP not) per
    /// delivered event.
    pub fn bytes_per_delivery(&self) -> f64 {
        self.bytes as f64 / self.deliveries.max(1) as f64
    }

    pub fn cpu_seconds_per_million(&self) -> Option<f64> {
        let cpu = self.hub_cpu_seconds?;
        (self.deliveries > 0).then(|| cpu / (self.deliveries as f64 / 1e6))
    }
}

/// Shared results, updated by every subscriber.
struct Collector {
    latency: Histogram<u64>,
    /// Per session, per event: slowest delivery so far, µs.
    last: Vec<Vec<u64>>,
    /// Events numbered below this are warm-up and not recorded.
    first_measured: u64,
    deliveries: u64,
    bytes: u64,
}

impl Collector {
    fn record(&mut self, session: usize, i: u64, latency_us: u64, bytes: usize) {
        if i < self.first_measured {
            return;
        }
        let us = latency_us.max(1);
        let _ = self.latency.record(us);
        self.deliveries += 1;
        self.bytes += bytes as u64;
        if let Some(slot) = self.last[session].get_mut(i as usize)
            && *slot < us
        {
            *slot = us;
        }
    }
}

/// The `i`-th source address (127.0.0.2 onwards), or none.
pub fn source(n: usize, sources: usize) -> Option<IpAddr> {
    (sources > 1).then(|| {
        let k = 2 + (n % sources) as u32;
        IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | k))
    })
}

/// How a join was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Snapshot,
    Resumed,
    /// A discontinuity, then a snapshot.
    Discontinuity,
}

/// A joined connection.
#[derive(Debug)]
pub struct Joined {
    pub tx: ClientSender,
    pub rx: ClientReceiver,
    pub epoch: String,
    pub seq: u64,
    pub answer: Answer,
}

/// Connects, authenticates (header) and joins; returns once the snapshot
/// (or `resumed`) arrived.
pub async fn connect_and_join(
    hub: SocketAddr,
    token: &str,
    session: &str,
    src: Option<IpAddr>,
    resume: Option<(&str, u64)>,
) -> anyhow::Result<Joined> {
    connect_and_join_with(hub, token, session, src, resume, "").await
}

/// [`connect_and_join`] with more fields for the `join` frame, written as
/// JSON members after a comma (e.g. `,"compact":true`).
pub async fn connect_and_join_with(
    hub: SocketAddr,
    token: &str,
    session: &str,
    src: Option<IpAddr>,
    resume: Option<(&str, u64)>,
    join_fields: &str,
) -> anyhow::Result<Joined> {
    let mut opts = ConnectOptions::new(Codec::Json, token);
    opts.source = src;
    opts.read_buffer = 16 * 1024;
    let client = Client::connect(hub, opts).await?;
    let (mut tx, mut rx) = client.split();
    let join = match resume {
        None => format!(r#"{{"type":"join","session":"{session}"{join_fields}}}"#),
        Some((epoch, seq)) => format!(
            r#"{{"type":"join","session":"{session}","resume":{{"epoch":"{epoch}","seq":{seq}}}{join_fields}}}"#
        ),
    };
    tx.send_message(Message::Text(join.into())).await?;
    let mut answer = Answer::Snapshot;
    loop {
        let msg = rx
            .recv_message()
            .await
            .context("closed before the snapshot")??;
        let Message::Text(t) = msg else { continue };
        let b = t.as_bytes();
        if b.starts_with(br#"{"type":"snapshot""#) || b.starts_with(br#"{"type":"resumed""#) {
            if b.starts_with(br#"{"type":"resumed""#) {
                answer = Answer::Resumed;
            }
            let epoch = string_field(b, br#""epoch":""#).unwrap_or_default();
            let seq = crate::scan::u64_field(b, br#""seq":"#)
                .or_else(|| crate::scan::u64_field(b, br#""to":"#))
                .unwrap_or(0);
            return Ok(Joined {
                tx,
                rx,
                epoch,
                seq,
                answer,
            });
        }
        if b.starts_with(br#"{"type":"discontinuity""#) {
            answer = Answer::Discontinuity;
            continue; // a snapshot follows
        }
        if b.starts_with(br#"{"type":"error""#) {
            bail!("join refused: {t}");
        }
    }
}

/// Connects a subscriber speaking MessagePack and joins; returns once the
/// snapshot arrived. Frames are read as generic values: slower than the
/// JSON path's byte scanning, which only matters at rates where the
/// generator would be the bottleneck anyway.
async fn join_msgpack(
    hub: SocketAddr,
    token: &str,
    session: &str,
    src: Option<IpAddr>,
    compact: bool,
) -> anyhow::Result<ClientReceiver> {
    let mut opts = ConnectOptions::new(Codec::MsgPack, token);
    opts.source = src;
    opts.read_buffer = 16 * 1024;
    let (mut tx, mut rx) = Client::connect(hub, opts).await?.split();
    let join = serde_json::json!({"type": "join", "session": session, "compact": compact});
    tx.send_message(Message::Binary(Codec::MsgPack.encode_payload(&join).into()))
        .await?;
    loop {
        let msg = rx
            .recv_message()
            .await
            .context("closed before the snapshot")??;
        let Message::Binary(b) = msg else { continue };
        let v: serde_json::Value = Codec::MsgPack
            .decode(&b)
            .map_err(|e| anyhow::anyhow!("undecodable frame: {e}"))?;
        match v["type"].as_str() {
            Some("snapshot") => return Ok(rx),
            Some("error") => bail!("join refused: {v}"),
            _ => {}
        }
    }
}

/// [`probe`] for a MessagePack frame: an `event` frame or a compact one.
fn probe_msgpack(frame: &[u8]) -> Option<crate::scan::Probe> {
    let v: serde_json::Value = Codec::MsgPack.decode(frame).ok()?;
    let (seq, data) = if v["type"] == "event" {
        (v["seq"].as_u64()?, &v["event"]["data"])
    } else {
        (v["q"].as_u64()?, &v["data"])
    };
    Some(crate::scan::Probe {
        seq,
        i: data["i"].as_u64()?,
        t: data["t"].as_u64()?,
    })
}

/// The string value after `key` (which includes the opening quote).
pub fn string_field(b: &[u8], key: &[u8]) -> Option<String> {
    let at = find(b, key)?;
    let end = b[at..].iter().position(|&c| c == b'"')?;
    Some(String::from_utf8_lossy(&b[at..at + end]).into_owned())
}

/// Connects many clients, `parallel` at a time.
async fn connect_many<F, Fut, T>(n: usize, parallel: usize, f: F) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut out = Vec::with_capacity(n);
    let mut k = 0;
    while k < n {
        let batch: Vec<_> = (k..(k + parallel).min(n)).map(&f).collect();
        for r in futures_util::future::join_all(batch).await {
            out.push(r?);
        }
        k += parallel;
    }
    Ok(out)
}

fn event_message(session: &str, kind: EventKind, i: u64, t: u64, pad: &str) -> Message {
    let text = match kind {
        EventKind::Custom => format!(
            r#"{{"type":"publish","session":"{session}","name":"b","data":{{"i":{i},"t":{t},"p":"{pad}"}}}}"#
        ),
        EventKind::State => format!(
            r#"{{"type":"state","session":"{session}","state":{{"current_topic":"{i}:{t}"}}}}"#
        ),
    };
    Message::Text(text.into())
}

/// Padding that makes the event's `data` object `payload` bytes long.
fn padding(payload: usize) -> String {
    // {"i":<=10 digits,"t":<=13 digits,"p":""}
    let overhead = r#"{"i":1234567890,"t":1234567890123,"p":""}"#.len();
    "x".repeat(payload.saturating_sub(overhead))
}

struct SessionRig {
    id: String,
    renderer_tx: ClientSender,
    renderer_rx: ClientReceiver,
    /// Each subscriber with its group (the index of the hub it joined on).
    subscribers: Vec<(usize, ClientReceiver)>,
    estop_op: Option<ClientSender>,
    drains: Vec<ClientReceiver>,
}

/// A runtime on a thread of its own for the emergency-stop probe: the
/// operator that sends the stops, and the reads of the renderer that
/// receives them. On the generator's one thread, a stop's `urgent` frame
/// was read only after every subscriber frame that became readable in the
/// same poll of the sockets (up to a whole fan-out of 1,000, milliseconds
/// of work), and that wait was counted as the hub's. The probe's sockets
/// are registered with this runtime, so their readiness wakes this thread
/// alone; it inherits the generator's pinning and shares its core, and the
/// kernel runs it soon after it wakes since it is idle otherwise.
struct ProbeThread {
    handle: tokio::runtime::Handle,
    /// Dropped with the probe: the thread's runtime then ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl ProbeThread {
    fn start() -> anyhow::Result<ProbeThread> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("estop-probe".into())
            .spawn(move || {
                raise_priority();
                let _ = rt.block_on(stopped);
            })?;
        Ok(ProbeThread {
            handle,
            _stop: stop,
        })
    }
}

/// Asks the kernel to run the calling thread ahead of the generator's busy
/// one when both are ready: nice -10, which `renice` sets for one thread
/// when given its id. Only root may; elsewhere the probe keeps the normal
/// priority and says so.
fn raise_priority() {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok());
    let raised = tid.is_some_and(|tid| {
        std::process::Command::new("renice")
            .args(["-n", "-10", "-p", &tid.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !raised {
        eprintln!("note: the stop probe's thread runs at normal priority (renice -n -10 refused)");
    }
}

/// Spawns `task` on the probe's runtime when given one, else on the
/// generator's thread.
fn spawn_on<F>(probe: Option<&tokio::runtime::Handle>, task: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match probe {
        Some(h) => h.spawn(task),
        None => tokio::task::spawn_local(task),
    }
}

/// Runs a plan against a hub; `cpu` and `rss` read the hub's counters.
pub async fn run(hub: &crate::hubproc::Hub, plan: &Plan) -> anyhow::Result<Outcome> {
    let mut across = run_across(hub, &[hub], plan, None).await?;
    Ok(across.groups.remove(0))
}

/// Counters read at the start and at the end of the measured window
/// (e.g. from other processes); the run reports end − start of each.
pub type Gauges<'a> = &'a dyn Fn() -> LocalBoxFuture<'static, Vec<f64>>;

/// What [`run_across`] measured.
#[derive(Debug)]
pub struct Across {
    /// One outcome per hub that subscribers joined on, in the order given:
    /// its subscribers' deliveries and latency, and that hub's CPU.
    pub groups: Vec<Outcome>,
    /// End − start of each gauge over the measured window.
    pub gauges: Vec<f64>,
}

/// Runs a plan whose sessions are created and published on `home`, with
/// `plan.participants` participants per session joined on *each* hub of
/// `join_on`. Operators and the stop probe join on `home` and count in
/// group 0 (pass `home` first). Latency, delivery and the hub's CPU are
/// reported per hub of `join_on`.
pub async fn run_across(
    home: &crate::hubproc::Hub,
    join_on: &[&crate::hubproc::Hub],
    plan: &Plan,
    gauges: Option<Gauges<'_>>,
) -> anyhow::Result<Across> {
    let clock = Clock::new();
    let addr = home.addr;
    let pad = padding(plan.payload);
    let groups = join_on.len();
    let (sub_fields, renderer_fields) = if plan.compact {
        (r#","compact":true"#, r#","echo":false"#)
    } else {
        ("", "")
    };

    // --- set up sessions and clients ---
    // The stop probe (session 0's renderer and the operator that stops it)
    // connects on its own thread, so its sockets belong to that runtime.
    let probe = plan
        .estop_every
        .is_some()
        .then(ProbeThread::start)
        .transpose()?;
    let mut rigs = Vec::new();
    let mut conn_no = 0usize;
    for s in 0..plan.sessions {
        let id = home.create_session(&format!("load-{s}")).await?;
        let join = {
            let (token, id) = (format!("dev:renderer:r{s}"), id.clone());
            let src = source(conn_no, plan.sources);
            async move { connect_and_join_with(addr, &token, &id, src, None, renderer_fields).await }
        };
        let Joined {
            tx: mut rtx,
            rx: rrx,
            ..
        } = match &probe {
            Some(p) if s == 0 => p.handle.spawn(join).await??,
            _ => join.await?,
        };
        conn_no += 1;
        rtx.send_message(Message::Text(
            format!(r#"{{"type":"status","session":"{id}","status":"active"}}"#).into(),
        ))
        .await?;
        let mut subscribers = Vec::new();
        for (g, hub) in join_on.iter().enumerate() {
            let base = conn_no;
            let at = hub.addr;
            let subs = connect_many(plan.participants, 128, |k| {
                let id = id.clone();
                async move {
                    let token = format!("dev:participant:p{s}-{g}-{k}");
                    let src = source(base + k, plan.sources);
                    let rx = if plan.msgpack {
                        join_msgpack(at, &token, &id, src, plan.compact).await?
                    } else {
                        connect_and_join_with(at, &token, &id, src, None, sub_fields)
                            .await?
                            .rx
                    };
                    Ok((g, rx))
                }
            })
            .await?;
            conn_no += plan.participants;
            subscribers.extend(subs);
        }
        if plan.operators {
            let j = connect_and_join_with(
                addr,
                &format!("dev:operator:o{s}"),
                &id,
                source(conn_no, plan.sources),
                None,
                sub_fields,
            )
            .await?;
            conn_no += 1;
            subscribers.push((0, j.rx));
        }
        let mut drains = Vec::new();
        let estop_op = match &probe {
            Some(p) if s == 0 => {
                let (id, src) = (id.clone(), source(conn_no, plan.sources));
                let j = p
                    .handle
                    .spawn(async move {
                        connect_and_join(addr, "dev:operator:estop", &id, src, None).await
                    })
                    .await??;
                conn_no += 1;
                drains.push(j.rx);
                Some(j.tx)
            }
            _ => None,
        };
        rigs.push(SessionRig {
            id,
            renderer_tx: rtx,
            renderer_rx: rrx,
            subscribers,
            estop_op,
            drains,
        });
    }

    // --- start counting ---
    let period_ns = 1e9 / plan.rate;
    let start_ns = clock.ns() + 200_000_000;
    let warmup_events = (plan.warmup.as_secs_f64() * plan.rate).ceil() as u64;
    let total_events = ((plan.warmup + plan.duration).as_secs_f64() * plan.rate).floor() as u64;
    let end_ns = start_ns + (total_events as f64 * period_ns) as u64;
    let collectors: Vec<_> = (0..groups)
        .map(|_| {
            Rc::new(RefCell::new(Collector {
                latency: latency_histogram(),
                last: vec![vec![0; total_events as usize]; plan.sessions],
                first_measured: warmup_events,
                deliveries: 0,
                bytes: 0,
            }))
        })
        .collect();
    let estop_hist = Arc::new(Mutex::new(latency_histogram()));
    let estop_sent_at = Arc::new(AtomicU64::new(0));
    let send_lag = Rc::new(RefCell::new(latency_histogram()));
    let mut tallies = Vec::new();
    let mut tasks = Vec::new();
    let mut publishers = Vec::new();
    let sessions_n = rigs.len().max(1);
    for (s, rig) in rigs.into_iter().enumerate() {
        for (g, rx) in rig.subscribers {
            let tally = Rc::new(RefCell::new(Tally::new()));
            tallies.push((g, tally.clone()));
            let collector = collectors[g].clone();
            tasks.push(tokio::task::spawn_local(subscriber(
                rx, s, tally, collector, clock,
            )));
        }
        // A probe socket is read on the probe's thread, every other on this one.
        let on_probe = probe.as_ref().filter(|_| s == 0).map(|p| &p.handle);
        for rx in rig.drains {
            tasks.push(spawn_on(on_probe, drain(rx)));
        }
        // The renderer reads its own stream; in the stop probe it also
        // times `urgent` frames and acknowledges them.
        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Message>();
        let reader = renderer_reader(
            rig.renderer_rx,
            rig.id.clone(),
            ack_tx,
            estop_hist.clone(),
            estop_sent_at.clone(),
            clock,
        );
        tasks.push(spawn_on(on_probe, reader));
        // Independent sessions are not phase-locked: spread their first
        // sends over one period, as real renderers would be.
        let phase_ns = (period_ns * s as f64 / sessions_n as f64) as u64;
        publishers.push(tokio::task::spawn_local(publisher(
            rig.renderer_tx,
            rig.id.clone(),
            plan.kind,
            pad.clone(),
            Pace {
                period_ns,
                start_ns: start_ns + phase_ns,
                total: total_events,
                first_measured: warmup_events,
                stamp_sent: plan.stamp_sent,
            },
            send_lag.clone(),
            ack_rx,
            clock,
        )));
        if let (Some(op), Some(every), Some(h)) = (rig.estop_op, plan.estop_every, on_probe) {
            tasks.push(h.spawn(estop_sender(
                op,
                rig.id.clone(),
                every,
                start_ns + plan.warmup.as_nanos() as u64,
                end_ns,
                estop_sent_at.clone(),
                clock,
            )));
        }
    }

    // --- measure the window after warm-up ---
    let measure_from = start_ns + (warmup_events as f64 * period_ns) as u64;
    sleep_until_ns(clock, measure_from).await;
    let cpu0: Vec<_> = join_on.iter().map(|h| h.cpu_seconds()).collect();
    let gauges0 = match gauges {
        Some(g) => g().await,
        None => Vec::new(),
    };
    let window_start = clock.ns();
    let mut sent = 0;
    for p in publishers {
        sent = sent.max(p.await??);
    }
    // Let deliveries finish: until every subscriber has everything or the
    // stream has been quiet for a while.
    let expected = total_events;
    let quiet = Duration::from_secs(3);
    let mut last_total = 0;
    let mut last_change = Instant::now();
    loop {
        let done: u64 = tallies.iter().map(|(_, t)| t.borrow().next()).sum();
        if tallies.iter().all(|(_, t)| t.borrow().next() >= expected) {
            break;
        }
        if done != last_total {
            last_total = done;
            last_change = Instant::now();
        } else if last_change.elapsed() > quiet {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window = Duration::from_nanos(clock.ns() - window_start);
    let cpu1: Vec<_> = join_on.iter().map(|h| h.cpu_seconds()).collect();
    let gauges1 = match gauges {
        Some(g) => g().await,
        None => Vec::new(),
    };
    for t in &tasks {
        t.abort();
    }
    let mut outcomes = Vec::with_capacity(groups);
    for (g, hub) in join_on.iter().enumerate() {
        let mut totals = Totals::default();
        for (_, t) in tallies.iter().filter(|(tg, _)| *tg == g) {
            t.borrow().merge_into(&mut totals, sent);
        }
        let c = collectors[g].borrow();
        let mut last_delivery = latency_histogram();
        for per_session in &c.last {
            for &us in per_session.iter().skip(warmup_events as usize) {
                if us > 0 {
                    let _ = last_delivery.record(us);
                }
            }
        }
        let estop = if g == 0 {
            estop_hist.lock().clone()
        } else {
            latency_histogram()
        };
        outcomes.push(Outcome {
            sent: sent.saturating_sub(warmup_events),
            totals,
            latency: c.latency.clone(),
            last_delivery,
            estop,
            send_lag: send_lag.borrow().clone(),
            bytes: c.bytes,
            deliveries: c.deliveries,
            window,
            hub_cpu_seconds: cpu0[g].zip(cpu1[g]).map(|(a, b)| b - a),
            hub_rss_bytes: hub.rss_bytes(),
        });
    }
    Ok(Across {
        groups: outcomes,
        gauges: gauges1.iter().zip(&gauges0).map(|(b, a)| b - a).collect(),
    })
}

async fn sleep_until_ns(clock: Clock, at: u64) {
    let now = clock.ns();
    if at > now {
        tokio::time::sleep(Duration::from_nanos(at - now)).await;
    }
}

async fn subscriber(
    mut rx: ClientReceiver,
    session: usize,
    tally: Rc<RefCell<Tally>>,
    collector: Rc<RefCell<Collector>>,
    clock: Clock,
) {
    while let Some(Ok(msg)) = rx.recv_message().await {
        // The receive time is taken as each frame is read.
        let now = clock.ns();
        let (p, len) = match &msg {
            Message::Text(t) => (probe(t.as_bytes()), t.len()),
            Message::Binary(b) => (probe_msgpack(b), b.len()),
            _ => continue,
        };
        if let Some(p) = p {
            tally.borrow_mut().record(p.i);
            collector.borrow_mut().record(
                session,
                p.i,
                now.saturating_sub(p.t) / 1000,
                ws_frame_len(len),
            );
        }
    }
}

async fn drain(mut rx: ClientReceiver) {
    while let Some(Ok(_)) = rx.recv_message().await {}
}

async fn renderer_reader(
    mut rx: ClientReceiver,
    session: String,
    acks: mpsc::UnboundedSender<Message>,
    estop: Arc<Mutex<Histogram<u64>>>,
    sent_at: Arc<AtomicU64>,
    clock: Clock,
) {
    while let Some(Ok(msg)) = rx.recv_message().await {
        let Message::Text(t) = msg else { continue };
        let b = t.as_bytes();
        if b.starts_with(br#"{"type":"urgent""#) {
            let sent = sent_at.swap(0, Ordering::Relaxed);
            if sent > 0 {
                let _ = estop
                    .lock()
                    .record((clock.ns().saturating_sub(sent) / 1000).max(1));
            }
            if let Some(id) = string_field(b, br#""intervention_id":""#) {
                let _ = acks.send(Message::Text(
                    format!(
                        r#"{{"type":"command_ack","session":"{session}","command_id":"{id}"}}"#
                    )
                    .into(),
                ));
            }
        }
    }
}

/// Bytes of a server WebSocket frame with `payload` bytes (unmasked).
fn ws_frame_len(payload: usize) -> usize {
    payload
        + match payload {
            0..126 => 2,
            126..65536 => 4,
            _ => 10,
        }
}

/// When a publisher sends.
struct Pace {
    period_ns: f64,
    start_ns: u64,
    total: u64,
    first_measured: u64,
    stamp_sent: bool,
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    mut tx: ClientSender,
    session: String,
    kind: EventKind,
    pad: String,
    pace: Pace,
    send_lag: Rc<RefCell<Histogram<u64>>>,
    mut acks: mpsc::UnboundedReceiver<Message>,
    clock: Clock,
) -> anyhow::Result<u64> {
    let Pace {
        period_ns,
        start_ns,
        total,
        first_measured,
        stamp_sent,
    } = pace;
    let mut i: u64 = 0;
    let mut batch = Vec::with_capacity(256);
    let due = |i: u64| start_ns + (i as f64 * period_ns) as u64;
    sleep_until_ns(clock, start_ns).await;
    while i < total {
        let now = clock.ns();
        while i < total && due(i) <= now && batch.len() < 1024 {
            let stamp = if stamp_sent { clock.ns() } else { due(i) };
            if i >= first_measured {
                let _ = send_lag.borrow_mut().record(((now - due(i)) / 1000).max(1));
            }
            batch.push(event_message(&session, kind, i, stamp, &pad));
            i += 1;
        }
        while let Ok(ack) = acks.try_recv() {
            batch.push(ack);
        }
        if !batch.is_empty() {
            tx.send_all(batch.drain(..)).await?;
        }
        if i < total {
            sleep_until_ns(clock, due(i)).await;
        }
    }
    // Keep acknowledging stops until the run ends.
    tokio::task::spawn_local(async move {
        while let Some(ack) = acks.recv().await {
            if tx.send_message(ack).await.is_err() {
                break;
            }
        }
    });
    Ok(i)
}

async fn estop_sender(
    mut op: ClientSender,
    session: String,
    every: Duration,
    from_ns: u64,
    until_ns: u64,
    sent_at: Arc<AtomicU64>,
    clock: Clock,
) {
    let mut k = 0u64;
    let mut at = from_ns;
    while at < until_ns {
        sleep_until_ns(clock, at).await;
        sent_at.store(clock.ns(), Ordering::Relaxed);
        let msg = format!(r#"{{"type":"emergency_stop","session":"{session}","id":"e{k}"}}"#);
        if op.send_message(Message::Text(msg.into())).await.is_err() {
            return;
        }
        k += 1;
        at += every.as_nanos() as u64;
    }
}

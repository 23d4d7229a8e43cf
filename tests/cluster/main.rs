//! Several `eva-hub` processes sharing sessions through Redis (the
//! `redis` broker) and one PostgreSQL database: one order per session
//! across nodes, resume on another node, Redis and node failures, presence
//! across nodes and readiness.
//!
//! Each test starts real hub binaries (`--dev`) on free ports with
//! `REDIS_URL`, a key prefix of its own and the run's fresh PostgreSQL
//! database (tests/common/pg.rs). Tests that disturb Redis (kill its
//! pub/sub clients, kill it) use a `redis-server` of their own; the others
//! share one: `EVA_TEST_REDIS`, or the binary's private one.
//! `cross_node_order_on_a_redis_cluster` runs the ordering test through a
//! Redis Cluster (`EVA_TEST_REDIS_CLUSTER`, or a private one).
//! Nothing skips: without Redis, redis-server or PostgreSQL the tests
//! fail and say what to start. Tests run one at a time (they start up to
//! three hubs each and measure timings), each within a deadline; a failing
//! test prints the tail of every log it produced.
//!
//! `EVA_CLUSTER_SELF_TEST=1` runs every "node" as one hub with the
//! in-process broker: it checks the tests' own bookkeeping, and only
//! `cross_node_order`, `resume_on_other_node` and `pubsub_client_kill`
//! (which then kills nothing) can pass that way.

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code, unreachable_pub)]
mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use eva_hub::ids::SessionId;
use eva_hub::protocol::model::{Event, PresenceChange, Role, StatePatch, StreamPosition};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame, SessionStatus};
use serde_json::json;

use common::harness::{self, Test};
use common::pg::PgFixture;
use support::*;

/// Deadline of one test, inside the harness's own.
const TEST_LIMIT: Duration = Duration::from_secs(150);

fn main() -> ExitCode {
    // Every test needs the database the nodes share.
    harness::main_on_postgres(
        "cluster",
        "",
        1,
        TEST_LIMIT + Duration::from_secs(30),
        tests,
    )
}

fn tests(pg: Option<PgFixture>) -> Vec<Test> {
    let mut v = Vec::new();
    macro_rules! t {
        ($name:ident) => {{
            let pg = pg.clone();
            v.push(harness::test(stringify!($name), move || {
                bounded(stringify!($name), pg, $name)
            }));
        }};
    }
    t!(cross_node_order);
    t!(cross_node_order_on_a_redis_cluster);
    t!(resume_on_other_node);
    t!(pubsub_client_kill);
    t!(redis_restart);
    t!(node_kill);
    t!(presence_across_nodes);
    t!(readiness_flip);
    v
}

/// Runs a test body with a scratch directory and a log book, within
/// [`TEST_LIMIT`]; on failure or timeout prints the logs of every process
/// the test started, and makes sure they are gone before the next test.
async fn bounded<F, Fut>(name: &'static str, pg: Option<PgFixture>, body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pg = pg.expect("the PostgreSQL fixture");
    let dir = std::env::temp_dir().join(format!(
        "eva-cluster-{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let book = LogBook::new(name);
    let ctx = Ctx {
        name: name.to_owned(),
        dir: dir.clone(),
        database_url: pg.url.clone(),
        book: book.clone(),
    };
    let mut task = tokio::spawn(body(ctx));
    match tokio::time::timeout(TEST_LIMIT, &mut task).await {
        Ok(Ok(())) => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(Err(e)) => {
            book.dump();
            eprintln!("logs kept in {}", dir.display());
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
            panic!("{name}: {e}");
        }
        Err(_) => {
            task.abort();
            let _ = task.await;
            book.dump();
            panic!(
                "{name}: no result within {TEST_LIMIT:?}; it was at: {}",
                book.current_step()
            );
        }
    }
}

// ------------------------------------------------------------ building blocks

/// A renderer that joined and made the session active.
async fn renderer(node: &Node, session: SessionId, codec: Codec) -> Peer {
    let mut r = node.connect(Role::Renderer, "renderer-1", codec).await;
    r.join_fresh(session).await;
    r.send(&ClientFrame::Status {
        session,
        status: SessionStatus::Active,
        reason: None,
        id: Some("go".into()),
    })
    .await;
    match r
        .until("the ack of status active", |f| {
            matches!(f, ServerFrame::Ack { id, .. } | ServerFrame::Error { id: Some(id), .. } if id == "go")
        })
        .await
    {
        ServerFrame::Ack { .. } => r,
        other => panic!("{}: status active refused: {other:?}", r.label),
    }
}

/// What the renderer got for the state frames it pushed.
#[derive(Debug, Default)]
struct Pushed {
    /// slide → the seq its ack named.
    acks: BTreeMap<i32, Option<u64>>,
    errors: Vec<String>,
}

impl Pushed {
    fn check(&self, who: &str, want: usize) {
        assert!(
            self.errors.is_empty() && self.acks.len() == want,
            "{who}: {} of {want} state frames acknowledged; {} errors: {:?}",
            self.acks.len(),
            self.errors.len(),
            &self.errors[..self.errors.len().min(5)]
        );
    }
}

/// Pushes one `state` frame per slide, one every `every`, each with an id,
/// and collects their acks (until all came, or [`WAIT`] after the last).
async fn push_states(r: &mut Peer, session: SessionId, slides: &[i32], every: Duration) -> Pushed {
    let mut out = Pushed::default();
    let mut next = 0;
    let mut tick = tokio::time::interval(every);
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    while out.acks.len() + out.errors.len() < slides.len() {
        tokio::select! {
            _ = tick.tick(), if next < slides.len() => {
                let slide = slides[next];
                r.send(&ClientFrame::State {
                    session,
                    state: StatePatch { current_slide: Some(slide), ..Default::default() },
                    id: Some(format!("s{slide}")),
                })
                .await;
                next += 1;
                if next == slides.len() {
                    deadline = tokio::time::Instant::now() + WAIT;
                }
            }
            got = r.client.recv() => match got {
                Ok(eva_hub::client::Incoming::Frame(ServerFrame::Ack { id, seq, .. })) => {
                    if let Some(slide) = id.strip_prefix('s').and_then(|s| s.parse().ok()) {
                        out.acks.insert(slide, seq);
                    }
                }
                Ok(eva_hub::client::Incoming::Frame(ServerFrame::Error { id, code, message, .. })) => {
                    out.errors.push(format!("{id:?}: {code:?} {message}"));
                }
                Ok(eva_hub::client::Incoming::Frame(_)) => {}
                Ok(eva_hub::client::Incoming::Closed(c)) => {
                    out.errors.push(format!("renderer connection closed: {c:?}"));
                    return out;
                }
                Err(e) => {
                    out.errors.push(format!("renderer connection failed: {e}"));
                    return out;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                out.errors.push(format!(
                    "{} state frames never acknowledged within {WAIT:?} of the last",
                    slides.len() - out.acks.len() - out.errors.len()
                ));
                return out;
            }
        }
    }
    out
}

/// A backend publishing `n` custom `tick` events `{src, i}` over REST,
/// one after the other; the seq (or error) of each.
async fn backend(
    rest: Rest,
    session: SessionId,
    src: &'static str,
    from: usize,
    n: usize,
) -> Vec<(usize, Result<u64, String>)> {
    let mut out = Vec::with_capacity(n);
    for i in from..from + n {
        let r = rest
            .publish(session, "tick", json!({ "src": src, "i": i }))
            .await;
        out.push((i, r));
    }
    out
}

/// An operator streaming `publish` frames: bursts of `burst` frames in
/// one flush (so they reach its node together and are sequenced in runs),
/// each burst's answers awaited before the next. Returns each frame's
/// result as [`backend`] does.
async fn stream_publishes(
    mut op: Peer,
    session: SessionId,
    src: &'static str,
    n: usize,
    burst: usize,
) -> Vec<(usize, Result<u64, String>)> {
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(burst) {
        let frames: Vec<ClientFrame> = (start..(start + burst).min(n))
            .map(|i| ClientFrame::Publish {
                session,
                name: "tick".into(),
                audience: eva_hub::protocol::model::CustomAudience::All,
                data: json!({ "src": src, "i": i }),
                id: Some(format!("{src}-{i}")),
            })
            .collect();
        if let Err(e) = op.client.send_batch(&frames).await {
            panic!("{}: send failed: {e}", op.label);
        }
        let mut answered = BTreeMap::new();
        while answered.len() < frames.len() {
            let (id, result) = match op.next().await {
                ServerFrame::Ack { id, seq, .. } => (id, seq.ok_or_else(|| "no seq".to_owned())),
                ServerFrame::Error {
                    id: Some(id),
                    message,
                    ..
                } => (id, Err(message)),
                _ => continue,
            };
            if let Some(i) = id
                .strip_prefix(&format!("{src}-"))
                .and_then(|i| i.parse().ok())
            {
                answered.insert(i, result);
            }
        }
        out.extend(answered);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out
}

fn check_published(who: &str, results: &[(usize, Result<u64, String>)]) -> BTreeMap<usize, u64> {
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{who}: {} of {} REST publishes failed, e.g. {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(3)]
    );
    let seqs: Vec<u64> = results.iter().filter_map(|(_, r)| r.clone().ok()).collect();
    let order = consecutive_or_increasing(&seqs);
    assert!(
        order,
        "{who}: the seqs REST returned to one sequential publisher are not increasing: {seqs:?}"
    );
    results
        .iter()
        .filter_map(|(i, r)| r.as_ref().ok().map(|s| (*i, *s)))
        .collect()
}

fn consecutive_or_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

/// A participant or operator that records until the `end` marker.
struct Watcher {
    peer: Peer,
    role: Role,
    /// The snapshot's seq: the first event recorded must follow it.
    from: u64,
    epoch: eva_hub::ids::Epoch,
}

async fn watcher(
    node: &Node,
    role: Role,
    subject: &str,
    codec: Codec,
    session: SessionId,
) -> Watcher {
    let mut peer = node.connect(role, subject, codec).await;
    let snap = peer.join_fresh(session).await;
    Watcher {
        peer,
        role,
        from: snap.seq,
        epoch: snap.epoch,
    }
}

/// What a watcher recorded.
struct Recording {
    label: String,
    role: Role,
    from: u64,
    seen: Vec<Seen>,
    end: End,
}

fn spawn_recording(mut w: Watcher, within: Duration) -> tokio::task::JoinHandle<Recording> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let end = w
            .peer
            .record(&mut seen, within, |s| is_custom(s, "end"))
            .await;
        Recording {
            label: w.peer.label.clone(),
            role: w.role,
            from: w.from,
            seen,
            end,
        }
    })
}

/// The common checks over the recordings of one session: each ended at
/// the marker; operators saw every seq from their snapshot to the marker
/// (no gap, duplicate or reorder); the others saw exactly their view of
/// that stream; every watcher saw the same event at each seq; and each
/// publisher's events are at the seq it was told. Returns a report.
fn check_stream(
    recs: &[Recording],
    marker: u64,
    states: &BTreeMap<i32, Option<u64>>,
    ticks: &BTreeMap<(String, usize), u64>,
) -> String {
    let mut report = String::new();
    let mut problems = Vec::new();
    let full = recs
        .iter()
        .filter(|r| r.role == Role::Operator)
        .min_by_key(|r| r.from)
        .expect("an operator recording");
    let mut digests = Digests::default();
    for r in recs {
        digests.add(&r.label, &r.seen);
    }
    for r in recs {
        let seqs: Vec<u64> = r.seen.iter().map(|s| s.seq).collect();
        let order = if r.role == Role::Operator {
            consecutive(r.from + 1, seqs.iter().copied())
        } else {
            against(&view(&full.seen, r.role, r.from, marker), &seqs)
        };
        // Content: every state and tick this watcher must see is at its seq.
        let by_seq: BTreeMap<u64, &Seen> = r.seen.iter().map(|s| (s.seq, s)).collect();
        let (mut found, mut wrong) = (0, 0);
        for (slide, seq) in states {
            if let Some(seq) = seq
                && *seq > r.from
            {
                match by_seq.get(seq).and_then(|s| s.slide()) {
                    Some(x) if x == *slide => found += 1,
                    _ => wrong += 1,
                }
            }
        }
        for ((src, i), seq) in ticks {
            if *seq > r.from {
                match by_seq.get(seq).and_then(|s| s.custom()) {
                    Some(("tick", d)) if d["src"] == src.as_str() && d["i"] == *i => found += 1,
                    _ => wrong += 1,
                }
            }
        }
        let line = format!(
            "{}: end {:?}, from seq {}: {}; order: {} missing, {} duplicates, {} reorders {:?}; \
             published events at their seq: {found} found, {wrong} missing or different\n",
            r.label,
            r.end,
            r.from,
            summary(&r.seen),
            order.missing,
            order.duplicates,
            order.reorders,
            order.examples
        );
        report.push_str(&line);
        if r.end != End::Stopped
            || !order.clean()
            || wrong > 0
            || r.seen.last().map(|s| s.seq) != Some(marker)
        {
            problems.push(r.label.clone());
        }
    }
    report.push_str(&format!(
        "digests: {} seqs, {} comparisons across watchers, mismatches: {:?}\n",
        digests.seqs(),
        digests.compared,
        digests.mismatches
    ));
    eprint!("{report}");
    assert!(
        problems.is_empty() && digests.mismatches.is_empty(),
        "stream checks failed for {problems:?} (marker at seq {marker}):\n{report}"
    );
    report
}

// ------------------------------------------------------------ 1 and 3

const STATES: i32 = 300;
const TICKS: usize = 300;

/// Renderer on A pushing state every 10 ms while backends publish through
/// REST on B and C and an operator on B streams bursts of `publish` frames;
/// operators on every node, participants in both codecs;
/// optionally `CLIENT KILL TYPE pubsub` on `kill` three times meanwhile.
async fn ordered_traffic(book: &LogBook, nodes: &[Node], kill: Option<SocketAddr>) {
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    book.step("creating the session on A and its renderer");
    let session = a.create_session("cluster order").await;
    let mut r = renderer(a, session, Codec::MsgPack).await;
    book.step("joining operators and participants on every node");
    let watchers = vec![
        watcher(a, Role::Operator, "op-a", Codec::Json, session).await,
        watcher(b, Role::Operator, "op-b", Codec::MsgPack, session).await,
        watcher(c, Role::Operator, "op-c", Codec::Json, session).await,
        watcher(a, Role::Participant, "p-a", Codec::Json, session).await,
        watcher(b, Role::Participant, "p-b", Codec::MsgPack, session).await,
        watcher(c, Role::Participant, "p-c1", Codec::Json, session).await,
        watcher(c, Role::Participant, "p-c2", Codec::MsgPack, session).await,
    ];
    let recordings: Vec<_> = watchers
        .into_iter()
        .map(|w| spawn_recording(w, Duration::from_secs(60)))
        .collect();

    book.step("traffic: renderer state on A, REST events on B and C");
    let started = Instant::now();
    let slides: Vec<i32> = (0..STATES).collect();
    let renderer_task = tokio::spawn(async move {
        let pushed = push_states(&mut r, session, &slides, Duration::from_millis(10)).await;
        (r, pushed)
    });
    let on_b = tokio::spawn(backend(b.rest.clone(), session, "b", 0, TICKS));
    let on_c = tokio::spawn(backend(c.rest.clone(), session, "c", 0, TICKS));
    // An operator on B streams bursts of `publish` frames, sequenced in
    // runs between everyone else's events.
    let mut streamer = b.connect(Role::Operator, "streamer", Codec::Json).await;
    streamer.join_fresh(session).await;
    let streamed = tokio::spawn(stream_publishes(streamer, session, "ops", TICKS, 25));
    let killer = kill.map(|addr| {
        tokio::spawn(async move {
            let mut killed = Vec::new();
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(700)).await;
                killed.push(kill_pubsub_clients(addr).await);
            }
            killed
        })
    });
    let (_r, pushed) = renderer_task.await.expect("renderer task");
    let on_b = on_b.await.expect("backend B");
    let on_c = on_c.await.expect("backend C");
    let streamed = streamed.await.expect("streaming operator");
    let traffic = started.elapsed();
    if let Some(k) = killer {
        let killed = k.await.expect("killer task");
        eprintln!("CLIENT KILL TYPE pubsub closed {killed:?} connections");
        if killed.iter().all(|n| *n == 0) {
            eprintln!(
                "NOTE: no pub/sub connection was killed: the broker does not use Redis \
                 pub/sub, so this test did not disturb its delivery"
            );
        }
    }
    pushed.check("renderer on A", STATES as usize);
    let mut ticks = BTreeMap::new();
    for (src, res) in [("b", &on_b), ("c", &on_c), ("ops", &streamed)] {
        for (i, seq) in check_published(&format!("publisher {src}"), res) {
            ticks.insert((src.to_owned(), i), seq);
        }
    }
    book.step("publishing the end marker on A and waiting for every watcher");
    let marker = a
        .publish(session, "end", json!({}))
        .await
        .unwrap_or_else(|e| panic!("end marker: {e}"));
    let mut recs = Vec::new();
    for h in recordings {
        recs.push(h.await.expect("recording task"));
    }
    let report = check_stream(&recs, marker, &pushed.acks, &ticks);
    eprintln!(
        "traffic took {traffic:?}: {} states + {} custom events (REST and streamed), marker at seq {marker}; {} watchers",
        pushed.acks.len(),
        ticks.len(),
        report.lines().count() - 1
    );
}

async fn cross_node_order(ctx: Ctx) {
    let url = shared_redis_url();
    require_redis(&url).await;
    let cluster = Cluster::new(&ctx, url);
    let nodes = cluster.start(&["A", "B", "C"]).await;
    ordered_traffic(&ctx.book, &nodes, None).await;
    drop(nodes);
    cluster.clean_redis().await;
}

/// The same traffic through a Redis Cluster (3 masters, 3 replicas, the
/// binary's private one or `EVA_TEST_REDIS_CLUSTER`): the session's keys
/// and channel live on one shard, its events reach the other nodes by
/// sharded pub/sub.
async fn cross_node_order_on_a_redis_cluster(ctx: Ctx) {
    let url = common::services::redis_cluster_url();
    let cluster = Cluster::new(&ctx, url);
    let nodes = cluster.start(&["A", "B", "C"]).await;
    ordered_traffic(&ctx.book, &nodes, None).await;
}

async fn pubsub_client_kill(ctx: Ctx) {
    // A private Redis: killing every pub/sub client of the shared one would
    // disturb whatever else uses it.
    let redis = PrivateRedis::start(&ctx.dir, &ctx.book).await;
    let cluster = Cluster::new(&ctx, redis.url());
    let nodes = cluster.start(&["A", "B", "C"]).await;
    ordered_traffic(&ctx.book, &nodes, Some(redis.addr())).await;
}

// ------------------------------------------------------------ 2

async fn resume_on_other_node(ctx: Ctx) {
    let url = shared_redis_url();
    require_redis(&url).await;
    let cluster = Cluster::new(&ctx, url);
    let nodes = cluster.start(&["A", "B"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let book = &ctx.book;
    book.step("session on A, renderer on A, operator on B");
    let session = a.create_session("resume elsewhere").await;
    let _r = renderer(a, session, Codec::Json).await;
    let op = spawn_recording(
        watcher(b, Role::Operator, "op-b", Codec::Json, session).await,
        Duration::from_secs(60),
    );
    let mut p = a.connect(Role::Participant, "pat", Codec::Json).await;
    let snap = p.join_fresh(session).await;

    book.step("20 events while the participant is on A");
    let mut ticks = BTreeMap::new();
    for (i, s) in check_published(
        "backend on A",
        &backend(a.rest.clone(), session, "a", 0, 20).await,
    ) {
        ticks.insert(i, s);
    }
    let mut first = Vec::new();
    let end = p
        .record(
            &mut first,
            WAIT,
            |s| matches!(s.custom(), Some(("tick", d)) if d["i"] == 19),
        )
        .await;
    assert_eq!(end, End::Stopped, "participant on A: {}", summary(&first));
    let last_seq = first.last().map(|s| s.seq).expect("events");
    drop(p);

    book.step("30 events while it is away, published on B");
    for (i, s) in check_published(
        "backend on B",
        &backend(b.rest.clone(), session, "b", 20, 30).await,
    ) {
        ticks.insert(i, s);
    }
    book.step(format!("resuming on B from ({}, {last_seq})", snap.epoch));
    let mut p2 = b.connect(Role::Participant, "pat", Codec::MsgPack).await;
    let joined = p2
        .join(
            session,
            Some(StreamPosition {
                epoch: snap.epoch,
                seq: last_seq,
            }),
            None,
        )
        .await;
    let (from, to) = match joined {
        Joined::Resumed { epoch, from, to } => {
            assert_eq!(epoch, snap.epoch, "resumed in another epoch");
            (from, to)
        }
        other => panic!(
            "resume on B from ({}, {last_seq}) answered {other:?} instead of resumed",
            snap.epoch
        ),
    };
    assert_eq!(
        from,
        last_seq + 1,
        "resumed from {from}..{to} after seq {last_seq}"
    );
    assert!(
        to >= ticks[&49],
        "resumed to {to}, but tick 49 (published before the resume) is at seq {}",
        ticks[&49]
    );
    let mut missed = Vec::new();
    let end = p2
        .record(
            &mut missed,
            WAIT,
            |s| matches!(s.custom(), Some(("tick", d)) if d["i"] == 49),
        )
        .await;
    assert_eq!(
        end,
        End::Stopped,
        "missed events on B: {}",
        summary(&missed)
    );

    book.step("10 live events on A after the resume, then the marker");
    for (i, s) in check_published(
        "backend on A",
        &backend(a.rest.clone(), session, "a", 50, 10).await,
    ) {
        ticks.insert(i, s);
    }
    let marker = b.publish(session, "end", json!({})).await.expect("marker");
    let mut live = Vec::new();
    let end = p2.record(&mut live, WAIT, |s| is_custom(s, "end")).await;
    assert_eq!(end, End::Stopped, "live events on B: {}", summary(&live));
    let op = op.await.expect("operator");
    assert_eq!(op.end, End::Stopped, "operator on B: {}", summary(&op.seen));

    let full = &op.seen;
    let before = against(
        &view(full, Role::Participant, snap.seq, last_seq),
        &seq_list(&first),
    );
    let replay: Vec<u64> = missed.iter().map(|s| s.seq).filter(|s| *s <= to).collect();
    let replay_order = against(&view(full, Role::Participant, last_seq, to), &replay);
    let after: Vec<Seen> = missed.iter().chain(&live).cloned().collect();
    let after_order = against(
        &view(full, Role::Participant, last_seq, marker),
        &seq_list(&after),
    );
    let tick_is: Vec<u64> = first
        .iter()
        .chain(&after)
        .filter_map(|s| match s.custom() {
            Some(("tick", d)) => d["i"].as_u64(),
            _ => None,
        })
        .collect();
    let mut digests = Digests::default();
    digests.add("op-b", full);
    digests.add("pat@A", &first);
    digests.add("pat@B", &after);
    let report = format!(
        "on A: {} ({before:?}); resumed {from}..={to}; replay {} events ({replay_order:?}); \
         after the resume: {} ({after_order:?}); ticks seen {}; digests compared {}, mismatches {:?}",
        summary(&first),
        replay.len(),
        summary(&after),
        tick_is.len(),
        digests.compared,
        digests.mismatches
    );
    eprintln!("{report}");
    assert!(
        before.clean() && replay_order.clean() && after_order.clean(),
        "{report}"
    );
    assert_eq!(tick_is, (0..60).collect::<Vec<u64>>(), "{report}");
    assert!(digests.mismatches.is_empty(), "{report}");
    drop(nodes);
    cluster.clean_redis().await;
}

fn seq_list(seen: &[Seen]) -> Vec<u64> {
    seen.iter().map(|s| s.seq).collect()
}

// ------------------------------------------------------------ 4

async fn redis_restart(ctx: Ctx) {
    let book = &ctx.book;
    let mut redis = PrivateRedis::start(&ctx.dir, book).await;
    let cluster = Cluster::new(&ctx, redis.url());
    let nodes = cluster.start(&["A", "B"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    book.step("session on A with renderer, operator and participant on A");
    let session = a.create_session("redis restart").await;
    let mut r = renderer(a, session, Codec::Json).await;
    let mut op = a.connect(Role::Operator, "op-a", Codec::Json).await;
    let op_snap = op.join_fresh(session).await;
    let mut p = a.connect(Role::Participant, "pat", Codec::MsgPack).await;
    let p_snap = p.join_fresh(session).await;
    let (mut op_seen, mut p_seen) = (Vec::new(), Vec::new());

    let phases: [(&str, Vec<i32>); 3] = [
        ("before the outage", (0..20).collect()),
        ("during the outage", (100..120).collect()),
        ("after the restart", (200..220).collect()),
    ];
    let mut all_slides = Vec::new();
    for (k, (phase, slides)) in phases.iter().enumerate() {
        if k == 1 {
            book.step("SIGKILL redis");
            redis.kill();
            let (body, took) = wait_status(a, "/readyz", 503, Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("after Redis was killed: {e}"));
            eprintln!("A /readyz 503 after {took:?}: {body}");
            match a.get("/healthz").await {
                Ok((200, _)) => {}
                other => panic!("A /healthz while Redis is down: {other:?}"),
            }
        }
        if k == 2 {
            book.step("starting redis again on the same port");
            redis.restart().await;
            for n in [a, b] {
                let (_, took) = wait_status(n, "/readyz", 200, Duration::from_secs(15))
                    .await
                    .unwrap_or_else(|e| panic!("after Redis came back: {e}"));
                eprintln!("{} /readyz 200 {took:?} after Redis came back", n.name);
            }
        }
        book.step(format!("renderer pushes {} states {phase}", slides.len()));
        let pushed = push_states(&mut r, session, slides, Duration::from_millis(20)).await;
        pushed.check(&format!("renderer on A {phase}"), slides.len());
        let last = *slides.last().expect("slides");
        for (who, peer, out) in [
            ("operator", &mut op, &mut op_seen),
            ("participant", &mut p, &mut p_seen),
        ] {
            let n = out.len();
            let end = peer.record(out, WAIT, |s| s.slide() == Some(last)).await;
            assert_eq!(
                end,
                End::Stopped,
                "{who} on A {phase}: did not see slide {last}; it got {}",
                summary(&out[n..])
            );
        }
        if k == 1 {
            match a.get("/healthz").await {
                Ok((200, _)) => {}
                other => panic!("A /healthz while Redis is down: {other:?}"),
            }
        }
        all_slides.extend(slides.iter().copied());
    }

    book.step("a participant joins on B and must see the last slide");
    let mut q = b.connect(Role::Participant, "quinn", Codec::Json).await;
    let q_snap = q.join_fresh(session).await;

    let op_order = consecutive(op_snap.seq + 1, seq_list(&op_seen));
    let upto = op_seen.last().map(|s| s.seq).unwrap_or(0);
    let p_order = against(
        &view(&op_seen, Role::Participant, p_snap.seq, upto),
        &seq_list(&p_seen),
    );
    let p_slides: Vec<i32> = p_seen.iter().filter_map(Seen::slide).collect();
    let mut digests = Digests::default();
    digests.add("op-a", &op_seen);
    digests.add("pat", &p_seen);
    let report = format!(
        "operator: {} ({op_order:?}); participant: {} ({p_order:?}); participant slides {p_slides:?}; \
         digest mismatches {:?}; B snapshot at seq {} epoch {} slide {} (A's epoch {})",
        summary(&op_seen),
        summary(&p_seen),
        digests.mismatches,
        q_snap.seq,
        q_snap.epoch,
        q_snap.state.current_slide,
        op_snap.epoch
    );
    eprintln!("{report}");
    assert!(op_order.clean() && p_order.clean(), "{report}");
    assert!(digests.mismatches.is_empty(), "{report}");
    assert_eq!(
        p_slides, all_slides,
        "participant slides in order: {report}"
    );
    assert_eq!(
        q_snap.state.current_slide, 219,
        "B's snapshot shows the current slide: {report}"
    );
}

// ------------------------------------------------------------ 5

async fn node_kill(ctx: Ctx) {
    let url = shared_redis_url();
    require_redis(&url).await;
    let cluster = Cluster::new(&ctx, url);
    let mut nodes = cluster.start(&["A", "B", "C"]).await;
    let book = &ctx.book;
    book.step("session on A, renderer on A, operator on B, participants on C");
    let session = nodes[0].create_session("node kill").await;
    let mut r = renderer(&nodes[0], session, Codec::MsgPack).await;
    let op = spawn_recording(
        watcher(&nodes[1], Role::Operator, "op-b", Codec::Json, session).await,
        Duration::from_secs(60),
    );
    let targets = [nodes[0].rest.clone(), nodes[1].rest.clone()];
    let mut parts = Vec::new();
    for k in 0..4 {
        let codec = if k % 2 == 0 {
            Codec::Json
        } else {
            Codec::MsgPack
        };
        let subject = format!("p{k}");
        let w = watcher(&nodes[2], Role::Participant, &subject, codec, session).await;
        let target = targets[k % 2].clone();
        parts.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut log = Vec::new();
            let mut peer = w.peer;
            let mut reconnects = 0;
            loop {
                let end = peer
                    .record(&mut seen, Duration::from_secs(30), |s| is_custom(s, "end"))
                    .await;
                log.push(format!("{}: {end:?}", peer.label));
                match end {
                    End::Stopped => break,
                    End::TimedOut => break,
                    End::Closed(_) | End::Error(_) if reconnects < 3 => {
                        reconnects += 1;
                        let last = seen.last().map(|s| s.seq).unwrap_or(w.from);
                        peer = target.connect(Role::Participant, &subject, codec).await;
                        let j = peer
                            .join(
                                session,
                                Some(StreamPosition {
                                    epoch: w.epoch,
                                    seq: last,
                                }),
                                None,
                            )
                            .await;
                        log.push(format!("{} resume from {last}: {j:?}", peer.label));
                        if !matches!(j, Joined::Resumed { from, .. } if from == last + 1) {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            (subject, w.from, seen, log, reconnects)
        }));
    }

    book.step("renderer pushes 300 states on A; C is killed after about 1 s");
    let slides: Vec<i32> = (0..300).collect();
    let push = tokio::spawn(async move {
        let pushed = push_states(&mut r, session, &slides, Duration::from_millis(10)).await;
        (r, pushed)
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    book.step("SIGKILL node C");
    nodes[2].kill();
    let (_r, pushed) = push.await.expect("renderer");
    pushed.check("renderer on A", 300);
    book.step("end marker on B; waiting for the participants");
    let marker = nodes[1]
        .publish(session, "end", json!({}))
        .await
        .expect("marker");
    let op = op.await.expect("operator");
    let full_order = consecutive(op.from + 1, seq_list(&op.seen));
    assert!(
        op.end == End::Stopped && full_order.clean(),
        "operator on B: {:?} {} {full_order:?}",
        op.end,
        summary(&op.seen)
    );
    let mut digests = Digests::default();
    digests.add("op-b", &op.seen);
    let mut report = String::new();
    let mut bad = Vec::new();
    for h in parts {
        let (subject, from, seen, log, reconnects) = h.await.expect("participant task");
        digests.add(&subject, &seen);
        let order = against(
            &view(&op.seen, Role::Participant, from, marker),
            &seq_list(&seen),
        );
        let slides = seen.iter().filter_map(Seen::slide).count();
        report.push_str(&format!(
            "{subject}: {reconnects} reconnects, {} ({order:?}), {slides} states; {log:?}\n",
            summary(&seen)
        ));
        if !order.clean() || reconnects != 1 || seen.last().map(|s| s.seq) != Some(marker) {
            bad.push(subject);
        }
    }
    eprint!("{report}");
    assert!(
        bad.is_empty(),
        "participants {bad:?} failed (marker at seq {marker}):\n{report}"
    );
    assert!(
        digests.mismatches.is_empty(),
        "{:?}\n{report}",
        digests.mismatches
    );
    drop(nodes);
    cluster.clean_redis().await;
}

// ------------------------------------------------------------ 6

async fn presence_across_nodes(ctx: Ctx) {
    let url = shared_redis_url();
    require_redis(&url).await;
    let cluster = Cluster::new(&ctx, url);
    let mut nodes = cluster.start(&["A", "B", "C"]).await;
    let book = &ctx.book;
    let session = nodes[0].create_session("presence").await;
    let mut op = nodes[2].connect(Role::Operator, "op-c", Codec::Json).await;
    op.join_fresh(session).await;
    let carol = |s: &Seen| -> Option<PresenceChange> {
        match &s.event {
            Event::Presence { change, member, .. } if member.id == "carol" => Some(*change),
            _ => None,
        }
    };
    book.step("carol joins on A and on B at once");
    let mut on_a = nodes[0]
        .connect(Role::Participant, "carol", Codec::Json)
        .await;
    let mut on_b = nodes[1]
        .connect(Role::Participant, "carol", Codec::MsgPack)
        .await;
    tokio::join!(on_a.join_fresh(session), on_b.join_fresh(session));
    let grace = Duration::from_millis(PRESENCE_GRACE_MS);
    let mut seen = Vec::new();
    op.record(&mut seen, grace + Duration::from_millis(1500), |_| false)
        .await;
    let changes: Vec<PresenceChange> = seen.iter().filter_map(carol).collect();
    assert_eq!(
        changes,
        vec![PresenceChange::Join],
        "operator on C: carol on two nodes is one member: {}",
        summary(&seen)
    );

    book.step("closing carol's connection on A: no leave");
    let _ = tokio::time::timeout(WAIT, on_a.client.close()).await;
    let n = seen.len();
    op.record(&mut seen, grace + Duration::from_millis(2000), |_| false)
        .await;
    let changes: Vec<PresenceChange> = seen[n..].iter().filter_map(carol).collect();
    assert!(
        changes.is_empty(),
        "carol is still connected on B, yet the operator saw {changes:?}"
    );

    book.step("SIGKILL node B (carol's other connection)");
    nodes[1].kill();
    let killed = Instant::now();
    let bound = Duration::from_secs(PRESENCE_TTL_S) + grace + Duration::from_secs(6);
    let n = seen.len();
    let end = op
        .record(&mut seen, bound, |s| {
            carol(s) == Some(PresenceChange::Leave)
        })
        .await;
    let took = killed.elapsed();
    assert_eq!(
        end,
        End::Stopped,
        "no leave for carol within {bound:?} of killing B (presence TTL {PRESENCE_TTL_S} s, grace {grace:?}); \
         operator saw {}",
        summary(&seen[n..])
    );
    eprintln!("carol's leave arrived {took:?} after B was killed");
    let n = seen.len();
    op.record(&mut seen, Duration::from_millis(1500), |_| false)
        .await;
    let more: Vec<PresenceChange> = seen[n..].iter().filter_map(carol).collect();
    assert!(more.is_empty(), "after the leave: {more:?}");
    drop(nodes);
    cluster.clean_redis().await;
}

// ------------------------------------------------------------ 7

async fn readiness_flip(ctx: Ctx) {
    let book = &ctx.book;
    let mut redis = PrivateRedis::start(&ctx.dir, book).await;
    let cluster = Cluster::new(&ctx, redis.url());
    let nodes = cluster.start(&["A"]).await;
    let a = &nodes[0];
    wait_status(a, "/readyz", 200, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("before the outage: {e}"));
    book.step("SIGKILL redis");
    redis.kill();
    let (body, took) = wait_status(a, "/readyz", 503, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("after Redis was killed: {e}"));
    eprintln!("/readyz 503 after {took:?}: {body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    let failing = body["failing"].as_array().cloned().unwrap_or_default();
    let redis_entry = failing.iter().find(|f| f["name"] == "broker:redis");
    assert!(
        redis_entry.is_some_and(|f| f["error"].as_str().is_some_and(|e| !e.is_empty())),
        "/readyz names broker:redis with an error: {body}"
    );
    assert!(
        failing.iter().all(|f| f["name"] == "broker:redis"),
        "only Redis is down, yet: {body}"
    );
    match a.get("/healthz").await {
        Ok((200, _)) => {}
        other => panic!("/healthz while Redis is down: {other:?}"),
    }
    book.step("starting redis again");
    redis.restart().await;
    let (body, took) = wait_status(a, "/readyz", 200, Duration::from_secs(15))
        .await
        .unwrap_or_else(|e| panic!("after Redis came back: {e}"));
    eprintln!("/readyz 200 {took:?} after Redis came back: {body}");
    assert_eq!(body["status"], "ready", "{body}");
}

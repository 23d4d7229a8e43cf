//! The broker conformance suite: every `Broker` implementation must
//! sequence, deliver in order, keep bounded history, count presence and
//! keep checkpoints the same way. Each test runs against the in-process
//! broker, against the Redis broker on one Redis (`EVA_TEST_REDIS`, or a
//! private `redis-server` this binary starts), on a Redis Cluster
//! (`EVA_TEST_REDIS_CLUSTER`, or a private cluster of 3 masters and 3
//! replicas) and on a private Redis Cluster that speaks TLS and requires a
//! password (`secured.rs`); a fresh key prefix per test.
//! The tests that need several nodes or Redis itself run on Redis only,
//! on one server and on the cluster; `cluster_faults.rs` loads the
//! cluster with sessions on every master.

use std::sync::Arc;
use std::time::Duration;

use eva_hub::broker::memory::MemoryBroker;
use eva_hub::broker::redis::RedisBroker;
use eva_hub::broker::{Broker, BrokerError, BrokerHandler, Checkpoint, Condition};
use eva_hub::config::{RedisSettings, Settings};
use eva_hub::ids::{Seq, SessionId};
use eva_hub::protocol::model::{CustomAudience, Event, StreamPosition};
use eva_hub::stream::{Origin, Published};
use parking_lot::Mutex;
use serde_json::json;

const HISTORY: usize = 100;

#[path = "../common/services.rs"]
mod services;

mod cluster_faults;
mod migration;
mod secured;

fn redis_url() -> String {
    services::redis_url()
}

fn redis_settings() -> RedisSettings {
    settings_for(redis_url())
}

fn cluster_settings() -> RedisSettings {
    settings_for(services::redis_cluster_url())
}

/// A Redis Cluster that speaks TLS only to clients with a certificate and
/// the password, which its URL carries (secured.rs).
fn secured_cluster_settings() -> RedisSettings {
    tls_settings(services::shared_secured_cluster().url())
}

/// Settings for the TLS server(s) at `url`: the tests' authority, and the
/// client certificate the servers require.
fn tls_settings(url: String) -> RedisSettings {
    let files = services::tls_files();
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let mut cfg = settings_for(url);
    cfg.tls_ca_file = path(&files.ca);
    cfg.tls_cert_file = path(&files.client_cert);
    cfg.tls_key_file = path(&files.client_key);
    cfg
}

/// One Redis and a Redis Cluster: the Redis-only tests run on both.
fn redis_kinds() -> [(&'static str, RedisSettings); 2] {
    [("redis", redis_settings()), ("cluster", cluster_settings())]
}

fn settings_for(url: String) -> RedisSettings {
    let mut r = Settings::defaults().redis;
    r.url = url.into();
    r.prefix = format!("evatest-{}", uuid::Uuid::new_v4().simple());
    r.stream_maxlen = HISTORY;
    r.gap_wait_ms = 5;
    r.presence_ttl_s = 3;
    r
}

async fn redis_broker(cfg: &RedisSettings) -> Arc<RedisBroker> {
    match RedisBroker::connect(cfg, HISTORY).await {
        Ok(b) => Arc::new(b),
        Err(e) => panic!(
            "these tests need Redis at {} (start the server EVA_TEST_REDIS names, or unset \
             it to let the tests start their own): {e}",
            cfg.url.as_str()
        ),
    }
}

/// Records what the broker delivers.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(SessionId, Seq, String)>>,
    resets: Mutex<Vec<(SessionId, StreamPosition, bool)>>,
    /// Deliveries and resets in the order they came: (session, seq, the
    /// event's name, or `None` for a reset to that seq).
    timeline: Mutex<Vec<(SessionId, Seq, Option<String>)>>,
    /// Whether it offers checkpoints, as the hub does (a node hands a run
    /// it sequenced alone over with its checkpoint).
    keeps_replicas: std::sync::atomic::AtomicBool,
}

impl BrokerHandler for Recorder {
    fn on_publication(&self, p: Arc<Published>) {
        let name = match &p.event {
            Event::Custom { name, .. } => name.clone(),
            other => format!("{other:?}"),
        };
        self.timeline
            .lock()
            .push((p.session, p.seq, Some(name.clone())));
        self.seen.lock().push((p.session, p.seq, name));
    }

    fn on_stream_reset(
        &self,
        session: SessionId,
        position: StreamPosition,
        replica: Option<Vec<u8>>,
    ) {
        self.timeline.lock().push((session, position.seq, None));
        self.resets
            .lock()
            .push((session, position, replica.is_some()));
    }

    fn checkpoint(&self, session: SessionId) -> Option<Checkpoint> {
        if !self
            .keeps_replicas
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        let seq = self.seqs(session).last().copied().unwrap_or(0);
        Some(Checkpoint {
            position: StreamPosition {
                epoch: eva_hub::ids::Epoch::random(),
                seq,
            },
            replica: b"replica".to_vec(),
            state: "{}".into(),
            metrics: None,
            context: "{}".into(),
        })
    }
}

impl Recorder {
    fn seqs(&self, session: SessionId) -> Vec<Seq> {
        self.seen
            .lock()
            .iter()
            .filter(|(s, _, _)| *s == session)
            .map(|(_, seq, _)| *seq)
            .collect()
    }

    fn names(&self, session: SessionId) -> Vec<(Seq, String)> {
        self.seen
            .lock()
            .iter()
            .filter(|(s, _, _)| *s == session)
            .map(|(_, seq, n)| (*seq, n.clone()))
            .collect()
    }

    async fn wait_for(&self, session: SessionId, n: usize) -> Vec<Seq> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seqs = self.seqs(session);
            if seqs.len() >= n || tokio::time::Instant::now() > deadline {
                return seqs;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A plain client of the test's Redis, to act on it behind the broker's
/// back.
async fn admin(cfg: &RedisSettings) -> fred::prelude::Client {
    let admin = fred::prelude::Client::new(
        eva_hub::broker::redis::client_config(cfg).unwrap(),
        None,
        None,
        None,
    );
    fred::prelude::ClientLike::init(&admin).await.unwrap();
    admin
}

/// Deletes the session's stream behind the brokers' backs, as a Redis
/// that restarted empty (or a failover that lost it) would.
async fn lose_stream(cfg: &RedisSettings, s: SessionId) {
    let admin = admin(cfg).await;
    let keys: Vec<String> = ["position", "stream", "checkpoint"]
        .iter()
        .map(|part| format!("{}:session:{{{s}}}:{part}", cfg.prefix))
        .collect();
    let _: i64 = fred::prelude::KeysInterface::del(&admin, keys)
        .await
        .unwrap();
}

fn event(name: &str) -> Event {
    Event::Custom {
        name: name.into(),
        audience: CustomAudience::All,
        data: Box::new(json!({ "n": name })),
        from: "test".into(),
    }
}

async fn publish(b: &dyn Broker, s: SessionId, name: &str) -> Arc<Published> {
    b.publish(s, event(name), Origin::hub(), 1, Condition::Always)
        .await
        .expect("publish")
}

/// A base checkpoint for a stream begun at a fresh epoch.
fn base(replica: &[u8]) -> Checkpoint {
    Checkpoint {
        position: StreamPosition {
            epoch: eva_hub::ids::Epoch::random(),
            seq: 0,
        },
        replica: replica.to_vec(),
        state: "{}".into(),
        metrics: None,
        context: "{}".into(),
    }
}

/// The session's stream, begun as a node that loads it begins it.
async fn stream_of(b: &dyn Broker, s: SessionId) -> StreamPosition {
    match b.position(s).await.expect("position") {
        Some(pos) => pos,
        None => b.begin(s, base(b"base")).await.expect("begin"),
    }
}

async fn watched(b: &dyn Broker, s: SessionId) -> StreamPosition {
    let pos = stream_of(b, s).await;
    b.watch(s, pos).await.expect("watch");
    pos
}

fn consecutive(seqs: &[Seq], from: Seq) -> bool {
    seqs.iter().enumerate().all(|(i, s)| *s == from + i as Seq)
}

/// The implementations under test, each with its handler attached.
async fn brokers() -> Vec<(&'static str, Arc<dyn Broker>, Arc<Recorder>)> {
    let memory: Arc<dyn Broker> = Arc::new(MemoryBroker::new(HISTORY));
    let redis: Arc<dyn Broker> = redis_broker(&redis_settings()).await;
    let cluster: Arc<dyn Broker> = redis_broker(&cluster_settings()).await;
    let secured: Arc<dyn Broker> = redis_broker(&secured_cluster_settings()).await;
    let mut out = Vec::new();
    let all = [
        ("memory", memory),
        ("redis", redis),
        ("cluster", cluster),
        ("secured cluster", secured),
    ];
    for (name, b) in all {
        let rec = Arc::new(Recorder::default());
        b.attach(rec.clone());
        out.push((name, b, rec));
    }
    out
}

#[tokio::test]
async fn publications_are_sequenced_from_one_and_delivered_in_order() {
    for (name, b, rec) in brokers().await {
        let s = SessionId::new();
        let start = watched(b.as_ref(), s).await;
        assert_eq!(start.seq, 0, "{name}: a new stream starts empty");
        for i in 0..50 {
            let p = publish(b.as_ref(), s, &format!("e{i}")).await;
            assert_eq!(p.seq, i + 1, "{name}");
        }
        // A publish returns once this node delivered it.
        let seqs = rec.seqs(s);
        assert_eq!(seqs.len(), 50, "{name}: delivered before publish returned");
        assert!(consecutive(&seqs, 1), "{name}: {seqs:?}");
        let pos = b.position(s).await.unwrap().expect("a stream");
        assert_eq!((pos.epoch, pos.seq), (start.epoch, 50), "{name}");
    }
}

#[tokio::test]
async fn a_conditional_publish_fails_once_the_stream_moved() {
    for (name, b, _rec) in brokers().await {
        let s = SessionId::new();
        watched(b.as_ref(), s).await;
        publish(b.as_ref(), s, "a").await;
        let stale = b
            .publish(s, event("b"), Origin::hub(), 1, Condition::SeqIs(0))
            .await;
        assert!(
            matches!(stale, Err(BrokerError::Conflict { current: 1 })),
            "{name}: {stale:?}"
        );
        let fresh = b
            .publish(s, event("b"), Origin::hub(), 1, Condition::SeqIs(1))
            .await
            .expect("condition holds");
        assert_eq!(fresh.seq, 2, "{name}");
    }
}

fn run_of(prefix: &str, n: usize) -> Vec<(Event, Origin)> {
    (0..n)
        .map(|i| (event(&format!("{prefix}{i}")), Origin::hub()))
        .collect()
}

#[tokio::test]
async fn a_run_is_sequenced_back_to_back_or_not_at_all() {
    for (name, b, rec) in brokers().await {
        let s = SessionId::new();
        watched(b.as_ref(), s).await;
        publish(b.as_ref(), s, "a").await;
        let stale = b
            .publish_many(s, run_of("stale", 5), 1, Condition::SeqIs(0))
            .await;
        assert!(
            matches!(stale, Err(BrokerError::Conflict { current: 1 })),
            "{name}: {stale:?}"
        );
        assert_eq!(
            b.position(s).await.unwrap().unwrap().seq,
            1,
            "{name}: none of a refused run is sequenced"
        );
        let run = b
            .publish_many(s, run_of("r", 5), 1, Condition::SeqIs(1))
            .await
            .expect("condition holds");
        let got: Vec<Seq> = run.iter().map(|p| p.seq).collect();
        assert_eq!(
            got,
            vec![2, 3, 4, 5, 6],
            "{name}: numbered back to back, in order"
        );
        // Delivered before the call returned, in order, as sent.
        let names = rec.names(s);
        let expected: Vec<(Seq, String)> = std::iter::once((1, "a".to_owned()))
            .chain((0..5).map(|i| (i as Seq + 2, format!("r{i}"))))
            .collect();
        assert_eq!(names, expected, "{name}");
        let none = b.publish_many(s, Vec::new(), 1, Condition::Always).await;
        assert!(
            matches!(none.as_deref(), Ok([])),
            "{name}: an empty run publishes nothing"
        );
        assert_eq!(b.position(s).await.unwrap().unwrap().seq, 6, "{name}");
    }
}

#[tokio::test]
async fn history_returns_what_was_missed_until_it_is_trimmed() {
    for (name, b, _rec) in brokers().await {
        let s = SessionId::new();
        let start = watched(b.as_ref(), s).await;
        for i in 0..20 {
            publish(b.as_ref(), s, &format!("e{i}")).await;
        }
        let page = b.history(s, 15, 100).await.expect("history");
        assert_eq!(page.epoch, start.epoch, "{name}");
        assert_eq!(page.top, 20, "{name}");
        let seqs: Vec<Seq> = page.events.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![16, 17, 18, 19, 20], "{name}");
        assert!(matches!(page.events[0].event, Event::Custom { ref name, .. } if name == "e15"));
        let limited = b.history(s, 0, 3).await.unwrap();
        assert_eq!(limited.events.len(), 3, "{name}: limit is honoured");
        for i in 20..(HISTORY + 30) {
            publish(b.as_ref(), s, &format!("e{i}")).await;
        }
        let trimmed = b.history(s, 5, 100).await;
        assert!(
            matches!(trimmed, Err(BrokerError::Trimmed { after: 5 })),
            "{name}: history is bounded: {trimmed:?}"
        );
        let tail = b.history(s, (HISTORY + 20) as Seq, 100).await.unwrap();
        assert_eq!(tail.events.len(), 10, "{name}");
    }
}

#[tokio::test]
async fn watching_from_a_position_delivers_what_followed_it() {
    for (name, b, rec) in brokers().await {
        let s = SessionId::new();
        let start = stream_of(b.as_ref(), s).await;
        // Published before this node watches (by another node, or before
        // the replica existed).
        for i in 0..5 {
            b.publish(
                s,
                event(&format!("e{i}")),
                Origin::hub(),
                1,
                Condition::Always,
            )
            .await
            .unwrap();
        }
        rec.seen.lock().clear();
        b.watch(
            s,
            StreamPosition {
                epoch: start.epoch,
                seq: 2,
            },
        )
        .await
        .unwrap();
        publish(b.as_ref(), s, "e5").await;
        let seqs = rec.wait_for(s, 4).await;
        assert_eq!(seqs, vec![3, 4, 5, 6], "{name}");
    }
}

#[tokio::test]
async fn presence_counts_connections_per_member() {
    for (name, b, _rec) in brokers().await {
        let s = SessionId::new();
        watched(b.as_ref(), s).await;
        assert!(
            b.presence_join(s, "participant:a").await.unwrap(),
            "{name}: first"
        );
        assert!(
            !b.presence_join(s, "participant:a").await.unwrap(),
            "{name}: second"
        );
        assert!(
            b.presence_join(s, "participant:b").await.unwrap(),
            "{name}: other member"
        );
        assert!(
            !b.presence_leave(s, "participant:a").await.unwrap(),
            "{name}: one left"
        );
        assert!(
            b.presence_leave(s, "participant:a").await.unwrap(),
            "{name}: last"
        );
        assert!(
            b.presence_join(s, "participant:a").await.unwrap(),
            "{name}: back"
        );
    }
}

#[tokio::test]
async fn checkpoints_keep_the_newest_of_the_current_stream() {
    for (name, b, _rec) in brokers().await {
        let s = SessionId::new();
        let start = watched(b.as_ref(), s).await;
        for i in 0..3 {
            publish(b.as_ref(), s, &format!("e{i}")).await;
        }
        let cp = |seq: Seq, data: &[u8]| Checkpoint {
            position: StreamPosition {
                epoch: start.epoch,
                seq,
            },
            replica: data.to_vec(),
            state: "{}".into(),
            metrics: None,
            context: "{}".into(),
        };
        b.save_checkpoint(s, cp(3, b"three")).await.unwrap();
        b.save_checkpoint(s, cp(2, b"two")).await.unwrap();
        let loaded = b.load_checkpoint(s).await.unwrap();
        if b.wants_checkpoints() {
            let (pos, data) = loaded.expect("saved");
            assert_eq!(
                (pos.seq, data.as_slice()),
                (3, &b"three"[..]),
                "{name}: older one ignored"
            );
        } else {
            assert!(loaded.is_none(), "{name}: keeps none");
        }
    }
}

#[tokio::test]
async fn a_stream_begins_once_from_its_base() {
    for (name, b, _rec) in brokers().await {
        let s = SessionId::new();
        assert_eq!(b.position(s).await.unwrap(), None, "{name}: no stream yet");
        let first = base(b"first");
        let began = b.begin(s, first.clone()).await.unwrap();
        assert_eq!(began, first.position, "{name}: begun at the base");
        let second = b.begin(s, base(b"second")).await.unwrap();
        assert_eq!(second, first.position, "{name}: the first begin stands");
        assert_eq!(b.position(s).await.unwrap(), Some(first.position), "{name}");
        let loaded = b.load_checkpoint(s).await.unwrap();
        if b.wants_checkpoints() {
            assert_eq!(
                loaded,
                Some((first.position, b"first".to_vec())),
                "{name}: the base is the stream's first checkpoint"
            );
        }
        b.watch(s, began).await.unwrap();
        let p = publish(b.as_ref(), s, "e1").await;
        assert_eq!(p.seq, 1, "{name}");
        let pos = b.position(s).await.unwrap().expect("a stream");
        assert_eq!((pos.epoch, pos.seq), (first.position.epoch, 1), "{name}");
    }
}

// ---------------------------------------------------------------------
// Redis only: several nodes, and Redis itself misbehaving.
// ---------------------------------------------------------------------

async fn nodes(n: usize, cfg: &RedisSettings) -> Vec<(Arc<RedisBroker>, Arc<Recorder>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = cfg.clone();
        c.node_id = format!("node-{i}");
        let b = redis_broker(&c).await;
        let rec = Arc::new(Recorder::default());
        b.attach(rec.clone());
        out.push((b, rec));
    }
    out
}

#[tokio::test]
async fn nodes_publishing_concurrently_see_one_order() {
    for (kind, cfg) in redis_kinds() {
        concurrent_publishers_see_one_order(kind, &cfg).await;
    }
}

async fn concurrent_publishers_see_one_order(kind: &str, cfg: &RedisSettings) {
    let nodes = nodes(3, cfg).await;
    let s = SessionId::new();
    for (b, _) in &nodes {
        watched(b.as_ref(), s).await;
    }
    let per_node = 200;
    let tasks: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, (b, _))| {
            let b = b.clone();
            tokio::spawn(async move {
                for k in 0..per_node {
                    b.publish(
                        s,
                        event(&format!("n{i}-{k}")),
                        Origin::hub(),
                        1,
                        Condition::Always,
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total = 3 * per_node;
    let reference = {
        nodes[0].1.wait_for(s, total).await;
        nodes[0].1.names(s)
    };
    assert_eq!(reference.len(), total);
    for (i, (_, rec)) in nodes.iter().enumerate() {
        rec.wait_for(s, total).await;
        let got = rec.names(s);
        let seqs: Vec<Seq> = got.iter().map(|(s, _)| *s).collect();
        assert!(
            consecutive(&seqs, 1),
            "{kind} node {i}: 0 gaps, 0 duplicates, 0 reorders"
        );
        assert_eq!(
            got, reference,
            "{kind} node {i} saw the same event at every seq"
        );
    }
}

/// Runs published by three nodes at once: each run's events keep their
/// order and stay together, and every node sees the same order.
#[tokio::test]
async fn runs_from_several_nodes_are_never_interleaved() {
    for (kind, cfg) in redis_kinds() {
        let nodes = nodes(3, &cfg).await;
        let s = SessionId::new();
        for (b, _) in &nodes {
            watched(b.as_ref(), s).await;
        }
        let (runs, size) = (20, 10);
        let tasks: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, (b, _))| {
                let b = b.clone();
                tokio::spawn(async move {
                    for r in 0..runs {
                        let run = run_of(&format!("n{i}-r{r}-"), size);
                        b.publish_many(s, run, 1, Condition::Always).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let total = 3 * runs * size;
        let reference = nodes[0].1.wait_for(s, total).await;
        assert!(consecutive(&reference, 1), "{kind}");
        let order = nodes[0].1.names(s);
        for chunk in order.chunks(size) {
            let run = chunk[0].1.strip_suffix('0').expect("a run's first event");
            let names: Vec<String> = (0..size).map(|k| format!("{run}{k}")).collect();
            let got: Vec<String> = chunk.iter().map(|(_, n)| n.clone()).collect();
            assert_eq!(got, names, "{kind}: a run stays together and in order");
        }
        for (i, (_, rec)) in nodes.iter().enumerate() {
            rec.wait_for(s, total).await;
            assert_eq!(rec.names(s), order, "{kind} node {i} saw the same order");
        }
    }
}

/// Redis restarted empty under a node that publishes only on conditions
/// (a session whose only traffic is questions): no publication tells the
/// track, so the conditional publish itself must notice that its stream is
/// gone, follow the new one (the handler hears of the reset) and let the
/// retry succeed. Before, every retry conflicted and the session refused
/// questions until something unconditional was published; the crash
/// drill's Redis kills found it.
#[tokio::test]
async fn a_conditional_publish_follows_a_stream_redis_lost() {
    for (_, cfg) in redis_kinds() {
        conditional_publish_follows_a_lost_stream(&cfg).await;
    }
}

async fn conditional_publish_follows_a_lost_stream(cfg: &RedisSettings) {
    let b = redis_broker(cfg).await;
    let rec = Arc::new(Recorder::default());
    b.attach(rec.clone());
    let s = SessionId::new();
    let start = watched(b.as_ref(), s).await;
    for i in 0..3 {
        publish(b.as_ref(), s, &format!("e{i}")).await;
    }
    lose_stream(cfg, s).await;

    let stale = b
        .publish(s, event("q"), Origin::hub(), 1, Condition::SeqIs(3))
        .await;
    assert!(
        matches!(stale, Err(BrokerError::Conflict { current: 0 })),
        "{stale:?}"
    );
    let resets = rec.resets.lock().clone();
    let Some((_, at, _)) = resets.iter().find(|(session, _, _)| *session == s) else {
        panic!("the track did not follow the new stream: {resets:?}");
    };
    assert_ne!(at.epoch, start.epoch, "a new epoch");
    assert_eq!(at.seq, 0);
    let retried = b
        .publish(s, event("q"), Origin::hub(), 1, Condition::SeqIs(at.seq))
        .await
        .expect("the retry meets its condition");
    assert_eq!(retried.seq, 1);
    assert_eq!(
        b.position(s).await.unwrap(),
        Some(StreamPosition {
            epoch: at.epoch,
            seq: 1
        })
    );
}

#[tokio::test]
async fn killed_pubsub_connections_are_refilled_from_the_stream() {
    let mut cfg = redis_settings();
    // Room for everything published while the subscriber reconnects.
    cfg.stream_maxlen = 10_000;
    let nodes = nodes(2, &cfg).await;
    let s = SessionId::new();
    for (b, _) in &nodes {
        watched(b.as_ref(), s).await;
    }
    let publisher = nodes[0].0.clone();
    let total = 600;
    let task = tokio::spawn(async move {
        for k in 0..total {
            publisher
                .publish(
                    s,
                    event(&format!("e{k}")),
                    Origin::hub(),
                    1,
                    Condition::Always,
                )
                .await
                .unwrap();
            if k % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    let admin = admin(&cfg).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let _: fred::types::Value = fred::prelude::ClientLike::custom(
            &admin,
            fred::types::CustomCommand::new_static("CLIENT", None, false),
            vec!["KILL", "TYPE", "pubsub"],
        )
        .await
        .unwrap();
    }
    task.await.unwrap();
    let seqs = nodes[1].1.wait_for(s, total).await;
    assert_eq!(seqs.len(), total, "every event reached the other node");
    assert!(consecutive(&seqs, 1), "no gap, duplicate or reorder");
}

#[tokio::test]
async fn the_members_of_a_dead_node_are_counted_out_once() {
    for (_, cfg) in redis_kinds() {
        a_dead_node_s_members_are_counted_out_once(&cfg).await;
    }
}

async fn a_dead_node_s_members_are_counted_out_once(cfg: &RedisSettings) {
    let nodes = nodes(2, cfg).await;
    let s = SessionId::new();
    let (a, b) = (&nodes[0].0, &nodes[1].0);
    watched(a.as_ref(), s).await;
    watched(b.as_ref(), s).await;
    assert!(a.presence_join(s, "participant:a").await.unwrap());
    assert!(
        !b.presence_join(s, "participant:a").await.unwrap(),
        "counted on both nodes"
    );
    assert!(b.presence_join(s, "participant:only-b").await.unwrap());
    // Node b stops refreshing its heartbeat (it "dies").
    let b_node = b.node().to_owned();
    drop(nodes);
    let _ = b_node;
    let survivor = redis_broker(&RedisSettings {
        node_id: "survivor".into(),
        ..cfg.clone()
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut gone = Vec::new();
    while tokio::time::Instant::now() < deadline {
        gone.extend(survivor.reap().await.unwrap());
        if gone.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gone.sort();
    let mut want = vec![
        (s, "participant:a".to_owned()),
        (s, "participant:only-b".to_owned()),
    ];
    want.sort();
    assert_eq!(gone, want, "both nodes' members are counted out, each once");
    assert!(survivor.reap().await.unwrap().is_empty(), "and only once");
}

#[tokio::test]
async fn abuse_limit_counters_are_shared_by_every_node() {
    for (_, cfg) in redis_kinds() {
        counters_are_shared(&cfg).await;
    }
}

async fn counters_are_shared(cfg: &RedisSettings) {
    use eva_hub::counters::{RateKey, SlotKey};
    use eva_hub::ids::TenantId;
    let nodes = nodes(2, cfg).await;
    let mut limits = Settings::defaults().limits;
    limits.questions_per_minute = 3;
    let a = nodes[0]
        .0
        .shared_counters(&limits)
        .expect("Redis shares counters");
    let b = nodes[1]
        .0
        .shared_counters(&limits)
        .expect("Redis shares counters");
    // Heartbeats make each node's slots count; the broker writes them.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let tenant = SlotKey::Tenant(TenantId::default());
    assert!(a.acquire(tenant, 2).await.unwrap());
    assert!(b.acquire(tenant, 2).await.unwrap());
    assert!(!a.acquire(tenant, 2).await.unwrap(), "the cap spans nodes");
    b.release(tenant);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !a.acquire(tenant, 2).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a released slot is free again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asker = RateKey::Questions(TenantId::default(), "p1".into());
    for counters in [&a, &b, &a] {
        assert_eq!(counters.hit(&asker).await.unwrap(), Ok(()));
    }
    let refused = b.hit(&asker).await.unwrap();
    assert!(
        matches!(refused, Err(wait) if wait > Duration::ZERO),
        "the fourth question in a minute, on either node, waits: {refused:?}"
    );
    drop(nodes);
}

#[tokio::test]
async fn a_node_restarted_under_its_old_name_counts_its_old_members_out() {
    for (_, cfg) in redis_kinds() {
        a_restarted_node_counts_its_old_members_out(cfg).await;
    }
}

async fn a_restarted_node_counts_its_old_members_out(cfg: RedisSettings) {
    let cfg = RedisSettings {
        node_id: "restarting".into(),
        ..cfg
    };
    let s = SessionId::new();
    {
        let first = redis_broker(&cfg).await;
        watched(first.as_ref(), s).await;
        assert!(first.presence_join(s, "participant:a").await.unwrap());
    }
    // Back within the presence TTL, so its heartbeat is still fresh.
    let again = redis_broker(&cfg).await;
    assert_eq!(
        again.reap().await.unwrap(),
        vec![(s, "participant:a".to_owned())],
        "the previous life's member is counted out, once"
    );
    watched(again.as_ref(), s).await;
    assert!(
        again.presence_join(s, "participant:a").await.unwrap(),
        "and can join afresh"
    );
}

/// `redis.wait_replicas`: a publish returns once a replica holds the event
/// (a `WAIT` after each publish). On the cluster every master has a
/// replica; a single Redis has none, so each WAIT runs out its timeout and
/// the publish still succeeds.
#[tokio::test]
async fn publishes_can_wait_for_a_replica() {
    for (kind, mut cfg) in redis_kinds() {
        cfg.wait_replicas = 1;
        cfg.wait_timeout_ms = 20;
        let b = redis_broker(&cfg).await;
        let rec = Arc::new(Recorder::default());
        b.attach(rec.clone());
        let s = SessionId::new();
        watched(b.as_ref(), s).await;
        let waits_before = wait_calls(&cfg).await;
        for i in 0..20 {
            let p = publish(b.as_ref(), s, &format!("e{i}")).await;
            assert_eq!(p.seq, i + 1, "{kind}");
        }
        assert_eq!(rec.seqs(s).len(), 20, "{kind}");
        assert!(
            wait_calls(&cfg).await >= waits_before + 20,
            "{kind}: one WAIT per publish"
        );
    }
}

/// How many WAIT commands the servers of `cfg` ran (INFO commandstats
/// through redis-cli, summed over every server the URL names).
async fn wait_calls(cfg: &RedisSettings) -> u64 {
    let url = cfg.url.as_str().to_owned();
    tokio::task::spawn_blocking(move || {
        let servers = url
            .split(['/', '?', '&', '='])
            .filter_map(|part| part.rsplit_once(':'))
            .filter_map(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)));
        let mut total = 0;
        for (host, port) in servers {
            let out = std::process::Command::new("redis-cli")
                .args(["-h", &host, "-p", &port.to_string(), "info", "commandstats"])
                .output()
                .expect("redis-cli");
            let info = String::from_utf8_lossy(&out.stdout).into_owned();
            if let Some(line) = info.lines().find(|l| l.starts_with("cmdstat_wait:")) {
                total += line
                    .split(['=', ','])
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        total
    })
    .await
    .expect("wait_calls")
}

/// A handler that keeps a replica as the hub does: the names of the events
/// it applied, restored from a checkpoint on a reset that carries one.
#[derive(Default)]
struct Folder {
    applied: Mutex<Vec<String>>,
}

impl BrokerHandler for Folder {
    fn on_publication(&self, p: Arc<Published>) {
        if let Event::Custom { name, .. } = &p.event {
            self.applied.lock().push(name.clone());
        }
    }

    fn on_stream_reset(&self, _: SessionId, _: StreamPosition, replica: Option<Vec<u8>>) {
        if let Some(bytes) = replica {
            let text = String::from_utf8(bytes).expect("a replica this test wrote");
            *self.applied.lock() = text.lines().map(str::to_owned).collect();
        }
    }

    fn checkpoint(&self, _: SessionId) -> Option<Checkpoint> {
        let mut cp = base(self.applied.lock().join("\n").as_bytes());
        cp.position.seq = self.applied.lock().len() as Seq;
        Some(cp)
    }
}

/// Redis loses a session's stream while node A holds a replica of it. Node
/// B then loads the session from the database (its replica knows none of
/// A's events) and begins the stream again. A, following the new stream,
/// must load B's base rather than carry on from its own state: two nodes
/// never apply one stream to different states.
#[tokio::test]
async fn nodes_follow_a_stream_begun_again_from_its_base() {
    for (kind, cfg) in redis_kinds() {
        let (a, b) = (redis_broker(&cfg).await, redis_broker(&cfg).await);
        let (fa, fb) = (Arc::new(Folder::default()), Arc::new(Folder::default()));
        a.attach(fa.clone());
        b.attach(fb.clone());
        let s = SessionId::new();
        watched(a.as_ref(), s).await;
        for name in ["e1", "e2", "e3"] {
            publish(a.as_ref(), s, name).await;
        }
        assert_eq!(fa.applied.lock().len(), 3, "{kind}");

        lose_stream(&cfg, s).await;

        // B loads the session as the hub does with no stream: it begins
        // one from its replica.
        assert_eq!(b.position(s).await.unwrap(), None, "{kind}: lost");
        let began = b
            .begin(s, fb.checkpoint(s).expect("a replica"))
            .await
            .unwrap();
        b.watch(s, began).await.unwrap();

        publish(a.as_ref(), s, "e4").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let settled = |f: &Folder| f.applied.lock().last().map(String::as_str) == Some("e4");
        while !(settled(&fa) && settled(&fb)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(*fb.applied.lock(), vec!["e4".to_owned()], "{kind}: B");
        assert_eq!(
            *fa.applied.lock(),
            *fb.applied.lock(),
            "{kind}: A reloaded B's base instead of keeping its own state"
        );
        let pos = a.position(s).await.unwrap().expect("a stream");
        assert_eq!((pos.epoch, pos.seq), (began.epoch, 1), "{kind}");
    }
}

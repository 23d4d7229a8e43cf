//! The Redis broker on a Redis Cluster under load: sessions spread over
//! every master, and a master killed (its replica promoted). Three broker
//! nodes publish to every session at once; each node's deliveries must
//! stay gap-free (between the resets that announce a discontinuity), and
//! when the load stops every node must hold one history per session: the
//! same position and the same events.
//!
//! The fault tests start a cluster of their own, since they damage it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eva_hub::broker::redis::RedisBroker;
use eva_hub::broker::{Broker, Condition};
use eva_hub::config::RedisSettings;
use eva_hub::ids::{Seq, SessionId};
use eva_hub::stream::Origin;

use super::services::{self, PrivateCluster};
use super::{Recorder, event, nodes, settings_for, watched};

/// Publishes to every session from every node until stopped, and reads
/// one session's position (a plain command, not a script) per round;
/// counts the publishes that succeeded and failed, and the reads that
/// failed.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    reads_failed: Arc<AtomicU64>,
    /// The slowest publish to each session, for the failover report.
    slowest: Arc<parking_lot::Mutex<HashMap<SessionId, Duration>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(nodes: &[(Arc<RedisBroker>, Arc<Recorder>)], sessions: &[SessionId]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let reads_failed = Arc::new(AtomicU64::new(0));
        let slowest = Arc::new(parking_lot::Mutex::new(HashMap::new()));
        let tasks = nodes
            .iter()
            .enumerate()
            .map(|(i, (b, _))| {
                let (b, sessions) = (b.clone(), sessions.to_vec());
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                let (reads_failed, slowest) = (reads_failed.clone(), slowest.clone());
                tokio::spawn(async move {
                    let mut k = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for s in &sessions {
                            let name = format!("n{i}-{k}");
                            let started = Instant::now();
                            match b
                                .publish(*s, event(&name), Origin::hub(), 1, Condition::Always)
                                .await
                            {
                                Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                                Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                            };
                            let took = started.elapsed();
                            let mut slowest = slowest.lock();
                            let max = slowest.entry(*s).or_default();
                            *max = took.max(*max);
                        }
                        let read = sessions[k as usize % sessions.len()];
                        if b.position(read).await.is_err() {
                            reads_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        k += 1;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            reads_failed,
            slowest,
            tasks,
        }
    }

    /// The slowest publish to any of `sessions` so far.
    fn slowest(&self, sessions: &[SessionId]) -> Duration {
        let slowest = self.slowest.lock();
        sessions
            .iter()
            .filter_map(|s| slowest.get(s))
            .max()
            .copied()
            .unwrap_or_default()
    }

    /// Publishes that succeeded and failed.
    async fn stop(self) -> (u64, u64) {
        self.stop_counting_reads().await.0
    }

    /// (publishes that succeeded, failed), and reads that failed.
    async fn stop_counting_reads(self) -> ((u64, u64), u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("publisher");
        }
        (
            (
                self.ok.load(Ordering::Relaxed),
                self.failed.load(Ordering::Relaxed),
            ),
            self.reads_failed.load(Ordering::Relaxed),
        )
    }
}

/// A cluster-wide setup: 3 broker nodes on `cfg`, `n` sessions watched
/// by all of them.
async fn setup(
    cfg: &RedisSettings,
    n: usize,
) -> (Vec<(Arc<RedisBroker>, Arc<Recorder>)>, Vec<SessionId>) {
    let nodes = nodes(3, cfg).await;
    for (_, rec) in &nodes {
        rec.keeps_replicas.store(true, Ordering::Relaxed);
    }
    let sessions: Vec<SessionId> = (0..n).map(|_| SessionId::new()).collect();
    for s in &sessions {
        for (b, _) in &nodes {
            watched(b.as_ref(), *s).await;
        }
    }
    (nodes, sessions)
}

/// Every node delivered each session's events without a gap or a
/// duplicate, except across a reset (a discontinuity its clients hear
/// of); once quiet, all nodes agree on each session's position and on
/// the events delivered since the last reset any of them saw.
async fn assert_one_history(nodes: &[(Arc<RedisBroker>, Arc<Recorder>)], sessions: &[SessionId]) {
    for s in sessions {
        // Wait for the nodes to settle on one position.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let top = loop {
            let mut positions = Vec::new();
            for (b, rec) in nodes {
                let pos = b
                    .position(*s)
                    .await
                    .expect("position")
                    .expect("the stream exists after publishing");
                let last = rec
                    .timeline
                    .lock()
                    .iter()
                    .rev()
                    .find(|(x, _, _)| x == s)
                    .map(|(_, seq, _)| *seq)
                    .unwrap_or(0);
                positions.push((pos, last));
            }
            let first = positions[0].0;
            if positions
                .iter()
                .all(|(p, last)| *p == first && *last == first.seq)
            {
                break first.seq;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "session {s}: the nodes did not settle on one position: {positions:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Per node, the events delivered since its last reset.
        let mut since_reset: Vec<std::collections::BTreeMap<Seq, String>> = Vec::new();
        for (i, (_, rec)) in nodes.iter().enumerate() {
            let mut expected_next: Seq = 1;
            let mut mine = std::collections::BTreeMap::new();
            for (x, seq, name) in rec.timeline.lock().iter() {
                if x != s {
                    continue;
                }
                match name {
                    None => mine.clear(),
                    Some(name) => {
                        assert_eq!(
                            *seq, expected_next,
                            "session {s}, node {i}: a gap or duplicate without a discontinuity"
                        );
                        mine.insert(*seq, name.clone());
                    }
                }
                expected_next = seq + 1;
            }
            since_reset.push(mine);
        }
        for (i, mine) in since_reset.iter().enumerate().skip(1) {
            for (seq, name) in mine {
                if let Some(other) = since_reset[0].get(seq) {
                    assert_eq!(
                        name, other,
                        "session {s}, node {i}: event {seq} differs from node 0's (top {top})"
                    );
                }
            }
        }
    }
}

/// The sessions go on after a fault: a publish on each node to each
/// session succeeds.
async fn publish_on_every_node(
    nodes: &[(Arc<RedisBroker>, Arc<Recorder>)],
    sessions: &[SessionId],
) {
    for s in sessions {
        for (b, _) in nodes {
            super::publish(b.as_ref(), *s, "after").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_every_master_keep_one_order_across_nodes() {
    let cfg = settings_for(services::redis_cluster_url());
    sessions_on_every_master_keep_one_order(services::shared_cluster(), cfg).await;
}

/// Three nodes publish to 24 sessions on `cluster` (with `cfg`) at once:
/// no publish fails, the sessions' keys land on every master, and every
/// node ends with one history per session.
pub(super) async fn sessions_on_every_master_keep_one_order(
    cluster: &PrivateCluster,
    mut cfg: RedisSettings,
) {
    cfg.stream_maxlen = 10_000;
    let (nodes, sessions) = setup(&cfg, 24).await;
    let load = Load::start(&nodes, &sessions);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (ok, failed) = load.stop().await;
    assert!(ok > 0 && failed == 0, "{ok} published, {failed} failed");
    // The sessions' keys are spread over every master.
    let pattern = format!("{}:session:*", cfg.prefix);
    for master in cluster.masters() {
        let keys = cluster.cli(master, &["--scan", "--pattern", &pattern]);
        assert!(
            keys.lines().count() > 0,
            "master {master} holds none of the sessions' keys"
        );
    }
    assert_one_history(&nodes, &sessions).await;
}

/// The sessions of `sessions` that got a discontinuity on some node.
fn sessions_reset(
    nodes: &[(Arc<RedisBroker>, Arc<Recorder>)],
    sessions: &[SessionId],
) -> Vec<SessionId> {
    sessions
        .iter()
        .filter(|s| {
            nodes
                .iter()
                .any(|(_, rec)| rec.resets.lock().iter().any(|(x, _, _)| x == *s))
        })
        .copied()
        .collect()
}

/// A private cluster (its faults must not reach other tests), three nodes
/// and 12 sessions, with every node publishing to every session.
struct UnderLoad {
    cluster: Arc<PrivateCluster>,
    nodes: Vec<(Arc<RedisBroker>, Arc<Recorder>)>,
    sessions: Vec<SessionId>,
    load: Load,
    prefix: String,
}

/// Whether the private cluster's masters refuse every command while a
/// slot has no master (`cluster-require-full-coverage`, Redis' default
/// `yes`), or serve the slots they have (`no`).
#[derive(Clone, Copy, PartialEq)]
enum Coverage {
    Full,
    Partial,
}

async fn under_load_on_a_private_cluster(coverage: Coverage) -> UnderLoad {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "eva_hub=info".into()))
        .with_test_writer()
        .try_init();
    let cluster = Arc::new(PrivateCluster::start(3));
    if coverage == Coverage::Partial {
        for port in &cluster.ports {
            let set = ["config", "set", "cluster-require-full-coverage", "no"];
            assert_eq!(cluster.cli(*port, &set).trim(), "OK");
        }
    }
    let mut cfg = settings_for(cluster.url());
    cfg.stream_maxlen = 10_000;
    let (nodes, sessions) = setup(&cfg, 12).await;
    let load = Load::start(&nodes, &sessions);
    UnderLoad {
        cluster,
        nodes,
        sessions,
        load,
        prefix: cfg.prefix.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_master_under_load_keeps_one_history_per_session() {
    kill_a_master_under_load(Coverage::Full).await;
}

/// As above, with `cluster-require-full-coverage no`, which docs/CLUSTER.md
/// recommends: the other masters serve their slots throughout, so their
/// sessions' publishes do not pause while the cluster elects a master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_master_without_full_coverage_keeps_one_history_per_session() {
    kill_a_master_under_load(Coverage::Partial).await;
}

async fn kill_a_master_under_load(coverage: Coverage) {
    let UnderLoad {
        cluster,
        nodes,
        sessions,
        load,
        prefix,
    } = under_load_on_a_private_cluster(coverage).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = cluster.masters()[0];
    // The victim answers only for the keys of its own slots.
    let on_victim: Vec<SessionId> = sessions
        .iter()
        .filter(|s| {
            let position = format!("{prefix}:session:{{{s}}}:position");
            cluster.cli(victim, &["exists", &position]).trim() == "1"
        })
        .copied()
        .collect();
    cluster.kill(victim);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.wait_failover(victim, Duration::from_secs(30)))
        .await
        .expect("a replica takes the killed master's place");
    // Load goes on after the failover, so the hubs must recover alone.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let elsewhere: Vec<SessionId> = sessions
        .iter()
        .filter(|s| !on_victim.contains(s))
        .copied()
        .collect();
    let (slowest_victim, slowest_elsewhere) = (load.slowest(&on_victim), load.slowest(&elsewhere));
    let (ok, failed) = load.stop().await;
    assert_one_history(&nodes, &sessions).await;
    let reset = sessions_reset(&nodes, &sessions);
    eprintln!(
        "failover under load ({}): {ok} publishes succeeded, {failed} failed; {} of {} sessions got a discontinuity; {} were on the killed master; slowest publish {:.0} ms to those, {:.0} ms to the others",
        if coverage == Coverage::Full {
            "full coverage"
        } else {
            "cluster-require-full-coverage no"
        },
        reset.len(),
        sessions.len(),
        on_victim.len(),
        slowest_victim.as_secs_f64() * 1000.0,
        slowest_elsewhere.as_secs_f64() * 1000.0,
    );
    // Only the killed master's sessions may need a new epoch: the others'
    // shards went on.
    let elsewhere: Vec<&SessionId> = reset.iter().filter(|s| !on_victim.contains(s)).collect();
    assert!(
        elsewhere.is_empty(),
        "sessions on masters that kept running got a discontinuity: {elsewhere:?}"
    );
    // And the session goes on: a publish on each node lands everywhere.
    publish_on_every_node(&nodes, &sessions).await;
    assert_one_history(&nodes, &sessions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_loses_nothing() {
    let UnderLoad {
        cluster,
        nodes,
        sessions,
        load,
        ..
    } = under_load_on_a_private_cluster(Coverage::Full).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.reshard(4000))
        .await
        .expect("reshard");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ((ok, failed), reads_failed) = load.stop_counting_reads().await;
    let reset = sessions_reset(&nodes, &sessions).len();
    eprintln!(
        "resharding under load: {ok} publishes succeeded, {failed} failed, {reads_failed} position reads failed; {reset} of {} sessions got a discontinuity",
        sessions.len()
    );
    // A redirected command is sent again where its slot went: none fails.
    assert_eq!(failed, 0, "publishes failed during the resharding");
    assert_eq!(
        reads_failed, 0,
        "position reads failed during the resharding"
    );
    assert_one_history(&nodes, &sessions).await;
    publish_on_every_node(&nodes, &sessions).await;
    assert_one_history(&nodes, &sessions).await;
}

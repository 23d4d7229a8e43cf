//! Moving a deployment from one Redis to a Redis Cluster, as
//! docs/CLUSTER.md tells operators to: stop the nodes, copy the keys with
//! `redis-cli --cluster import`, start the nodes on the cluster. Every
//! session must carry on from the same stream: same epoch, same events,
//! the next number, so its clients resume without a discontinuity.

use std::process::{Command, Stdio};

use eva_hub::broker::Broker;
use eva_hub::ids::SessionId;
use eva_hub::protocol::model::Event;

use super::services::{self, PrivateRedis};
use super::{publish, redis_broker, settings_for, stream_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_import_carries_every_stream_over() {
    // A Redis of the test's own: the import copies every key it holds.
    let single = PrivateRedis::start();
    let cfg = settings_for(single.url());
    let sessions: Vec<SessionId> = (0..12).map(|_| SessionId::new()).collect();
    let mut before = Vec::new();
    {
        let node = redis_broker(&cfg).await;
        for s in &sessions {
            stream_of(node.as_ref(), *s).await;
            for i in 0..5 {
                publish(node.as_ref(), *s, &format!("e{i}")).await;
            }
            before.push(
                node.position(*s)
                    .await
                    .expect("position")
                    .expect("a stream"),
            );
        }
    }

    let cluster = services::shared_cluster();
    let out = Command::new("redis-cli")
        .args(["--cluster", "import"])
        .arg(format!("127.0.0.1:{}", cluster.masters()[0]))
        .args(["--cluster-from", &format!("127.0.0.1:{}", single.port)])
        .args(["--cluster-copy", "--cluster-replace"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "redis-cli --cluster import failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut on_cluster = cfg.clone();
    on_cluster.url = cluster.url().into();
    let node = redis_broker(&on_cluster).await;
    for (s, was) in sessions.iter().zip(&before) {
        let now = node.position(*s).await.expect("position");
        assert_eq!(now, Some(*was), "session {s}: the stream's position");
        let page = node.history(*s, 0, 100).await.expect("history");
        let names: Vec<String> = page
            .events
            .iter()
            .map(|p| match &p.event {
                Event::Custom { name, .. } => name.clone(),
                other => panic!("unexpected event {other:?}"),
            })
            .collect();
        assert_eq!(names, ["e0", "e1", "e2", "e3", "e4"], "session {s}");
        let next = publish(node.as_ref(), *s, "after").await;
        assert_eq!(next.seq, was.seq + 1, "session {s}: the next number");
        let after = node.position(*s).await.expect("position");
        assert_eq!(
            after.map(|p| p.epoch),
            Some(was.epoch),
            "session {s}: the same stream goes on"
        );
    }
}

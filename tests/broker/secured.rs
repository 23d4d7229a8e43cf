//! The Redis broker on servers secured as in production: TLS
//! (`rediss://`, `rediss-cluster://`), where the servers' certificates
//! chain to `redis.tls_ca_file` and the node presents `redis.tls_cert_file`
//! to servers that require a client certificate, and a password in the
//! URL. The conformance suite (main.rs) runs on such a cluster as well;
//! here, the cluster under load with nodes on every master, and what a
//! node does with the wrong certificates or no password.

use std::time::Duration;

use eva_hub::broker::Broker;
use eva_hub::broker::redis::RedisBroker;
use eva_hub::config::RedisSettings;
use eva_hub::ids::SessionId;

use super::cluster_faults::sessions_on_every_master_keep_one_order;
use super::services::{self, PrivateRedis};
use super::{nodes, publish, secured_cluster_settings, tls_settings, watched};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_every_master_of_a_secured_cluster_keep_one_order_across_nodes() {
    let cluster = services::shared_secured_cluster();
    sessions_on_every_master_keep_one_order(cluster, secured_cluster_settings()).await;
}

#[tokio::test]
async fn a_secured_cluster_refuses_a_node_without_its_password() {
    let cfg = secured_cluster_settings();
    let url = cfg.url.as_str();
    let without = url.replace(&format!(":{}@", services::SECURED_PASSWORD), "");
    assert_ne!(without, url, "the URL carries the password");
    let wrong = url.replace(services::SECURED_PASSWORD, "not-the-password");
    refused(
        &RedisSettings {
            url: without.into(),
            ..cfg.clone()
        },
        "noauth",
    )
    .await;
    refused(
        &RedisSettings {
            url: wrong.into(),
            ..cfg.clone()
        },
        "wrongpass",
    )
    .await;
}

/// Connecting with `cfg` fails, in time, with an error that contains
/// `expected`.
async fn refused(cfg: &RedisSettings, expected: &str) {
    let connect = RedisBroker::connect(cfg, 100);
    match tokio::time::timeout(Duration::from_secs(20), connect).await {
        Ok(Err(e)) => {
            eprintln!("refused as expected: {e}");
            assert!(
                e.to_string().to_lowercase().contains(expected),
                "the error names the cause ({expected}): {e}"
            )
        }
        Ok(Ok(_)) => panic!("connected without {expected}"),
        Err(_) => panic!("connecting did not fail within 20 s (wanted: {expected})"),
    }
}

#[tokio::test]
async fn a_tls_redis_serves_nodes_that_trust_it_and_present_a_certificate() {
    let redis = PrivateRedis::start_tls();
    let cfg = tls_settings(redis.url());
    assert!(cfg.url.as_str().starts_with("rediss://"));

    // With the authority and the client certificate: two nodes share a
    // session.
    let nodes = nodes(2, &cfg).await;
    let s = SessionId::new();
    for (b, _) in &nodes {
        watched(b.as_ref(), s).await;
    }
    for i in 0..10 {
        publish(nodes[i % 2].0.as_ref(), s, &format!("e{i}")).await;
    }
    for (_, rec) in &nodes {
        assert_eq!(rec.wait_for(s, 10).await, (1..=10).collect::<Vec<_>>());
    }
    assert_eq!(
        nodes[1].0.position(s).await.unwrap().map(|p| p.seq),
        Some(10)
    );

    // Without the tests' authority the server's certificate is not trusted.
    refused(
        &RedisSettings {
            tls_ca_file: String::new(),
            ..cfg.clone()
        },
        "certificate",
    )
    .await;
    // A missing file is named.
    refused(
        &RedisSettings {
            tls_ca_file: "/nonexistent/ca.pem".into(),
            ..cfg.clone()
        },
        "/nonexistent/ca.pem",
    )
    .await;
    // The server requires a client certificate.
    refused(
        &RedisSettings {
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            ..cfg.clone()
        },
        "certificaterequired",
    )
    .await;
}

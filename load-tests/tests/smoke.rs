//! A few seconds of each fan-out path against an in-process hub: a smoke
//! test of the harness (CI runs it), asserting correctness, never timing.

use std::sync::Arc;
use std::time::Duration;

use eva_hub::app::{App, Backends};
use eva_hub::auth::dev::DevAuthenticator;
use eva_hub::broker::memory::MemoryBroker;
use eva_hub::broker::redis::RedisBroker;
use eva_hub::config::Settings;
use eva_hub::store::Store;
use eva_hub::store::memory::MemoryStore;
use eva_load::engine::{EventKind, Plan};
use eva_load::hubproc::Hub;

async fn in_process_hub() -> Hub {
    let mut settings = Settings::defaults();
    settings.auth.dev = true;
    settings.store.database_url = "memory".into();
    // The harness measures the hub, not its abuse limits.
    settings.limits = eva_hub::config::LimitSettings::unlimited();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backends = Backends {
        broker: Arc::new(MemoryBroker::new(settings.session.history_size)),
        store: Arc::new(MemoryStore::new()),
        auth: Arc::new(DevAuthenticator),
    };
    let app = App::with(settings, listener, None, backends).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run(std::future::pending()));
    Hub::external(addr, None)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f)
}

#[test]
fn fanout_with_operators_and_stops_loses_nothing() {
    block_on(async {
        let hub = in_process_hub().await;
        let plan = Plan {
            sessions: 2,
            participants: 20,
            operators: true,
            rate: 200.0,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            payload: 128,
            kind: EventKind::Custom,
            sources: 1,
            estop_every: Some(Duration::from_millis(250)),
            compact: false,
            stamp_sent: false,
            msgpack: false,
        };
        let o = eva_load::engine::run(&hub, &plan).await.unwrap();
        assert_eq!(
            (o.totals.lost, o.totals.duplicated, o.totals.reordered),
            (0, 0, 0),
            "{:?}",
            o.totals
        );
        assert_eq!(
            o.deliveries,
            o.sent * 2 * 21,
            "every measured event reached every receiver"
        );
        assert!(!o.estop.is_empty(), "stops reached the renderer");
        assert!(!o.latency.is_empty() && !o.last_delivery.is_empty());
    });
}

#[test]
fn a_reconnect_storm_resumes_everyone_exactly() {
    block_on(async {
        let hub = in_process_hub().await;
        let o = eva_load::storm::run(&hub, 50, 100.0, Duration::from_millis(500), 1)
            .await
            .unwrap();
        assert_eq!(o.resumed, 50, "{o:?}");
        assert_eq!(
            (o.totals.lost, o.totals.duplicated, o.totals.reordered),
            (0, 0, 0),
            "{:?}",
            o.totals
        );
    });
}

/// An in-process node on the test Redis (`EVA_TEST_REDIS`, or a private
/// `redis-server`) under `prefix`, sharing `store`.
async fn in_process_node(prefix: &str, node: &str, store: Arc<dyn Store>) -> Hub {
    let mut settings = Settings::defaults();
    settings.auth.dev = true;
    settings.store.database_url = "memory".into();
    settings.limits = eva_hub::config::LimitSettings::unlimited();
    settings.redis.url = redis_url().into();
    settings.redis.prefix = prefix.to_owned();
    settings.redis.node_id = node.to_owned();
    let broker = RedisBroker::connect(&settings.redis, settings.session.history_size)
        .await
        .expect("the cluster smoke test needs Redis: start redis-server or set EVA_TEST_REDIS");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backends = Backends {
        broker: Arc::new(broker),
        store,
        auth: Arc::new(DevAuthenticator),
    };
    let app = App::with(settings, listener, None, backends).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run(std::future::pending()));
    Hub::external(addr, None)
}

#[path = "../../tests/common/services.rs"]
mod services;

fn redis_url() -> String {
    services::redis_url()
}

/// Needs Redis and fails (does not skip) without it.
#[test]
fn cluster_same_and_cross_node_subscribers_lose_nothing() {
    block_on(async {
        eva_load::cluster::require_redis(&redis_url())
            .await
            .unwrap();
        let prefix = format!("evaload-smoke-{}", uuid::Uuid::new_v4().simple());
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let a = in_process_node(&prefix, "a", store.clone()).await;
        let b = in_process_node(&prefix, "b", store).await;
        let plan = Plan {
            sessions: 1,
            participants: 5,
            operators: false,
            rate: 500.0,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            payload: 128,
            kind: EventKind::Custom,
            sources: 1,
            estop_every: None,
            compact: false,
            stamp_sent: false,
            msgpack: false,
        };
        let o = eva_load::cluster::run(&a, &b, None, &redis_url(), &plan)
            .await
            .unwrap();
        for (name, g) in [("same node", &o.same), ("cross node", &o.cross)] {
            assert_eq!(
                (g.totals.lost, g.totals.duplicated, g.totals.reordered),
                (0, 0, 0),
                "{name}: {:?}",
                g.totals
            );
            assert_eq!(g.deliveries, g.sent * 5, "{name}: every measured event");
        }
        assert!(o.redis_cpu_s.is_some(), "Redis CPU is read from INFO");
    });
}

/// Compact frames, the renderer without echo, and sender-stamped events:
/// the same accounting holds, in fewer bytes.
#[test]
fn compact_and_msgpack_frames_lose_nothing_and_are_smaller() {
    block_on(async {
        let hub = in_process_hub().await;
        let mut plan = Plan {
            sessions: 1,
            participants: 20,
            operators: false,
            rate: 200.0,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(300),
            payload: 128,
            kind: EventKind::Custom,
            sources: 1,
            estop_every: None,
            compact: false,
            stamp_sent: true,
            msgpack: false,
        };
        let full = eva_load::engine::run(&hub, &plan).await.unwrap();
        plan.compact = true;
        let compact = eva_load::engine::run(&hub, &plan).await.unwrap();
        plan.msgpack = true;
        let packed_compact = eva_load::engine::run(&hub, &plan).await.unwrap();
        plan.compact = false;
        let packed = eva_load::engine::run(&hub, &plan).await.unwrap();
        for o in [&full, &compact, &packed, &packed_compact] {
            assert_eq!(
                (o.totals.lost, o.totals.duplicated, o.totals.reordered),
                (0, 0, 0)
            );
            assert_eq!(o.deliveries, o.sent * 20);
        }
        // Each step is smaller: compact frames, then MessagePack.
        let bytes = [&full, &compact, &packed, &packed_compact].map(|o| o.bytes_per_delivery());
        assert!(bytes[1] < bytes[0], "{bytes:?}");
        assert!(bytes[2] < bytes[0] && bytes[3] < bytes[1], "{bytes:?}");
        assert!(bytes[3] < bytes[2], "{bytes:?}");
    });
}

/// The floor delivers the same scenario, stops included, without loss.
#[test]
fn the_floor_delivers_every_event() {
    block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::task::spawn_local(eva_load::floor::serve(listener));
        let floor = Hub::external(addr, None);
        for compact in [false, true] {
            let plan = Plan {
                sessions: 2,
                participants: 20,
                operators: true,
                rate: 200.0,
                duration: Duration::from_secs(1),
                warmup: Duration::from_millis(300),
                payload: 128,
                kind: EventKind::Custom,
                sources: 1,
                estop_every: Some(Duration::from_millis(250)),
                compact,
                stamp_sent: false,
                msgpack: false,
            };
            let o = eva_load::engine::run(&floor, &plan).await.unwrap();
            assert_eq!(
                (o.totals.lost, o.totals.duplicated, o.totals.reordered),
                (0, 0, 0)
            );
            assert_eq!(o.deliveries, o.sent * 2 * 21);
            assert!(!o.estop.is_empty(), "stops reached the renderer");
        }
    });
}

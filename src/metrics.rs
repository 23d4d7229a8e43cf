//! Every metric the hub exports, in one place.
//!
//! Rules that keep recording cheap and the series count bounded:
//! * handles are resolved once (statics below), so a hot-path update is one
//!   atomic add, not a registry lookup;
//! * nothing is recorded per delivery: fan-out counts once per event, the
//!   writer once per batch, latencies are sampled;
//! * label values come from closed sets (roles, event kinds, close codes,
//!   stages). Never a session, connection or tenant id.

use std::sync::LazyLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::protocol::model::{AlertType, Role};
use crate::protocol::{CloseCode, Event, SessionStatus};

/// Histogram buckets for every latency, in seconds: 50 µs to 2.5 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// Buckets for batch sizes (rows).
pub const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
];

/// Names of the histograms, so the exporter can give each its buckets.
pub const LATENCY_HISTOGRAMS: [&str; 9] = [
    "eva_fanout_latency_seconds",
    "eva_ingest_processing_seconds",
    "eva_webhook_delivery_seconds",
    "eva_webhook_attempt_seconds",
    "eva_emergency_stop_ack_seconds",
    "eva_renderer_stage_latency_seconds",
    "eva_renderer_component_latency_seconds",
    "eva_store_flush_seconds",
    "eva_redis_publish_seconds",
];
pub const BATCH_HISTOGRAMS: [&str; 1] = ["eva_store_batch_rows"];

const ROLES: [Role; 3] = [Role::Renderer, Role::Operator, Role::Participant];

fn role_index(role: Role) -> usize {
    match role {
        Role::Renderer => 0,
        Role::Operator => 1,
        Role::Participant => 2,
    }
}

struct Handles {
    connections: [Gauge; 3],
    frames_in: Vec<(&'static str, Counter)>,
    frames_out: Vec<(&'static str, Counter)>,
    bytes_out: Counter,
    fanout_latency: Histogram,
    conflated: Counter,
    slow_consumers: Counter,
    resume_hit: Counter,
    resume_miss: Counter,
    estop_ack: Histogram,
    stages: [Histogram; 4],
    components: [Histogram; 8],
    store_flush: Histogram,
    store_batch_rows: Histogram,
    redis_publish: Histogram,
}

/// Renderer pipeline stages (seed 002), in `Handles::stages` order.
const STAGES: [&str; 4] = ["stt", "llm", "tts", "total"];

/// Renderer components (seed 000 `performance_metrics.component`) with a
/// series of their own; anything else is counted as the last, `other`.
const COMPONENTS: [&str; 8] = [
    "speech_recognition",
    "language_model",
    "speech_synthesis",
    "rendering",
    "network",
    "knowledge_base",
    "pipeline",
    "other",
];

/// Every event kind, for pre-registered per-kind counters.
const EVENT_KINDS: [&str; 21] = [
    "created",
    "lifecycle",
    "state",
    "context",
    "presence",
    "counters",
    "renderer",
    "question",
    "response",
    "response_held",
    "takeover",
    "release",
    "command",
    "command_ack",
    "suggestion",
    "correction",
    "emergency_stop",
    "metrics",
    "alert",
    "alert_ack",
    "custom",
];

static H: LazyLock<Handles> = LazyLock::new(|| Handles {
    connections: ROLES.map(|r| gauge!("eva_connections", "role" => r.as_str())),
    frames_in: crate::protocol::codec::CLIENT_TYPES
        .iter()
        .map(|k| (*k, counter!("eva_frames_in_total", "kind" => *k)))
        .collect(),
    frames_out: EVENT_KINDS
        .iter()
        .map(|k| (*k, counter!("eva_frames_out_total", "kind" => *k)))
        .collect(),
    bytes_out: counter!("eva_bytes_out_total"),
    fanout_latency: histogram!("eva_fanout_latency_seconds"),
    conflated: counter!("eva_conflated_total"),
    slow_consumers: counter!("eva_slow_consumer_disconnects_total"),
    resume_hit: counter!("eva_resume_total", "result" => "hit"),
    resume_miss: counter!("eva_resume_total", "result" => "miss"),
    estop_ack: histogram!("eva_emergency_stop_ack_seconds"),
    stages: STAGES.map(|s| histogram!("eva_renderer_stage_latency_seconds", "stage" => s)),
    components: COMPONENTS
        .map(|c| histogram!("eva_renderer_component_latency_seconds", "component" => c)),
    store_flush: histogram!("eva_store_flush_seconds"),
    store_batch_rows: histogram!("eva_store_batch_rows"),
    redis_publish: histogram!("eva_redis_publish_seconds"),
});

/// Resolves every handle now, after the recorder is installed, so the
/// first event does not pay for it and every histogram (with each of its
/// closed label values) is listed by the first scrape, before any traffic:
/// dashboards and alerts see a zero, not a missing series.
pub fn init() {
    LazyLock::force(&H);
    LazyLock::force(&WH);
    LazyLock::force(&IN);
}

/// Outbound webhooks; `result` of an attempt is a closed set.
struct WebhookHandles {
    delivery: Histogram,
    attempt: Histogram,
    attempts: [(&'static str, Counter); 5],
    delivered: Counter,
    failed: Counter,
    disabled: Counter,
    queued: Gauge,
}

/// Attempt results: a 2xx, another status, a timeout, a network error,
/// a destination the address policy refused.
pub const WEBHOOK_RESULTS: [&str; 5] = ["success", "http_error", "timeout", "network", "refused"];

static WH: LazyLock<WebhookHandles> = LazyLock::new(|| WebhookHandles {
    delivery: histogram!("eva_webhook_delivery_seconds"),
    attempt: histogram!("eva_webhook_attempt_seconds"),
    attempts: WEBHOOK_RESULTS.map(|r| (r, counter!("eva_webhook_attempts_total", "result" => r))),
    delivered: counter!("eva_webhook_deliveries_total", "status" => "delivered"),
    failed: counter!("eva_webhook_deliveries_total", "status" => "failed"),
    disabled: counter!("eva_webhook_endpoints_disabled_total"),
    queued: gauge!("eva_webhook_queued"),
});

/// One attempt and how long its request took.
pub fn webhook_attempt(result: &'static str, took: Duration) {
    if let Some((_, c)) = WH.attempts.iter().find(|(r, _)| *r == result) {
        c.increment(1);
    }
    WH.attempt.record(took.as_secs_f64());
}

/// A delivery succeeded, `latency` after it was queued.
pub fn webhook_delivered(latency: Duration) {
    WH.delivered.increment(1);
    WH.delivery.record(latency.as_secs_f64());
}

/// A delivery failed for good.
pub fn webhook_failed() {
    WH.failed.increment(1);
}

pub fn webhook_endpoint_disabled() {
    WH.disabled.increment(1);
}

/// Deliveries claimed and waiting in memory, or in flight.
pub fn webhook_queued(n: usize) {
    WH.queued.set(n as f64);
}

/// Inbound vendor events (`docs/INGEST.md`). Sources and outcomes are
/// closed sets; a source that is none of them counts as `unknown`.
pub const INGEST_SOURCES: [&str; 5] = ["tavus", "heygen", "livekit", "generic", "unknown"];

/// `accepted`: new, for a session; `unmapped`: new, for no session;
/// `duplicate`: seen before; the rest are refusals, and `error` a store
/// failure.
pub const INGEST_OUTCOMES: [&str; 9] = [
    "accepted",
    "unmapped",
    "duplicate",
    "unknown_source",
    "not_enabled",
    "bad_signature",
    "malformed",
    "too_large",
    "error",
];

struct IngestHandles {
    events: Vec<((&'static str, &'static str), Counter)>,
    unapplied: Vec<(&'static str, Counter)>,
    processing: Histogram,
}

static IN: LazyLock<IngestHandles> = LazyLock::new(|| IngestHandles {
    events: INGEST_SOURCES
        .iter()
        .flat_map(|s| INGEST_OUTCOMES.iter().map(move |o| (*s, *o)))
        .map(|(s, o)| {
            (
                (s, o),
                counter!("eva_ingest_events_total", "source" => s, "outcome" => o),
            )
        })
        .collect(),
    unapplied: INGEST_SOURCES
        .iter()
        .map(|s| (*s, counter!("eva_ingest_unapplied_total", "source" => *s)))
        .collect(),
    processing: histogram!("eva_ingest_processing_seconds"),
});

fn ingest_source(source: &str) -> &'static str {
    INGEST_SOURCES
        .iter()
        .find(|s| **s == source)
        .copied()
        .unwrap_or("unknown")
}

/// One request to `/v1/ingest/{source}` and how it ended; `took` is from
/// receipt to the answer.
pub fn ingest_event(source: &str, outcome: &'static str, took: Duration) {
    let source = ingest_source(source);
    if let Some((_, c)) = IN.events.iter().find(|(k, _)| *k == (source, outcome)) {
        c.increment(1);
    }
    IN.processing.record(took.as_secs_f64());
}

/// An event recorded whose publish into its session failed.
pub fn ingest_unapplied(source: &str) {
    let source = ingest_source(source);
    if let Some((_, c)) = IN.unapplied.iter().find(|(s, _)| *s == source) {
        c.increment(1);
    }
}

pub fn connection_opened(role: Role) {
    H.connections[role_index(role)].increment(1.0);
}

pub fn connection_closed(role: Role) {
    H.connections[role_index(role)].decrement(1.0);
}

pub fn connection_close_code(code: CloseCode) {
    counter!("eva_connections_closed_total", "code" => code.as_label()).increment(1);
}

pub fn frame_in(kind: &'static str) {
    if let Some((_, c)) = H.frames_in.iter().find(|(k, _)| *k == kind) {
        c.increment(1);
    }
}

pub fn frame_in_rejected(reason: &'static str) {
    counter!("eva_frames_rejected_total", "reason" => reason).increment(1);
}

/// A credential or handshake refused; `reason` is a closed set (`missing`,
/// `invalid`, `expired`, `forbidden`, `unavailable`, `quota`, `inactive`,
/// `origin`).
pub fn auth_refused(reason: &'static str) {
    counter!("eva_auth_refused_total", "reason" => reason).increment(1);
}

/// A limit refused something; `limit` is a closed set
/// (`connections_per_ip`, `connections_per_tenant`, `frames`, `abuse`,
/// `questions`, `rest`).
pub fn limit_hit(limit: &'static str) {
    counter!("eva_limits_hit_total", "limit" => limit).increment(1);
}

/// One event delivered to `recipients` connections.
pub fn frames_out(event: &Event, recipients: usize) {
    if recipients == 0 {
        return;
    }
    let kind = event.kind();
    if let Some((_, c)) = H.frames_out.iter().find(|(k, _)| *k == kind) {
        c.increment(recipients as u64);
    }
}

/// Bytes handed to the kernel by one writer batch.
pub fn bytes_out(n: usize) {
    H.bytes_out.increment(n as u64);
}

/// Accepted → written latency of one (sampled) writer batch.
pub fn fanout_latency(us: u64) {
    H.fanout_latency.record(us as f64 / 1e6);
}

pub fn conflated(n: u64) {
    H.conflated.increment(n);
}

pub fn slow_consumer() {
    H.slow_consumers.increment(1);
}

pub fn resume(hit: bool) {
    if hit {
        H.resume_hit.increment(1)
    } else {
        H.resume_miss.increment(1)
    }
}

pub fn emergency_stop_ack(latency: Duration) {
    H.estop_ack.record(latency.as_secs_f64());
}

pub fn alert_raised(kind: AlertType) {
    counter!("eva_alerts_total", "type" => kind.as_str()).increment(1);
}

pub fn sessions_by_status(counts: &[(SessionStatus, usize)]) {
    for (status, n) in counts {
        gauge!("eva_sessions", "status" => status.as_str()).set(*n as f64);
    }
}

pub fn outbound_queue_bytes(total: usize) {
    gauge!("eva_outbound_queue_bytes").set(total as f64);
}

/// Renderer-reported stage latency (seed 002: `stt`, `llm`, `tts`,
/// `total`); other names are ignored.
pub fn renderer_stage(stage: &str, ms: f64) {
    if let Some(i) = STAGES.iter().position(|s| *s == stage) {
        H.stages[i].record(ms / 1000.0);
    }
}

/// Renderer-reported latency by component (seed 000
/// `performance_metrics.component`). Unknown components share `other`, so
/// a renderer cannot grow the series count.
pub fn renderer_component(component: Option<&str>, ms: f64) {
    let known = &COMPONENTS[..COMPONENTS.len() - 1];
    let i = component
        .and_then(|c| known.iter().position(|k| *k == c))
        .unwrap_or(COMPONENTS.len() - 1);
    H.components[i].record(ms / 1000.0);
}

pub fn store_flush(rows: usize, took: Duration) {
    H.store_batch_rows.record(rows as f64);
    H.store_flush.record(took.as_secs_f64());
}

pub fn store_flush_failed() {
    counter!("eva_store_flush_failures_total").increment(1);
}

pub fn store_backlog(rows: usize) {
    gauge!("eva_store_backlog_rows").set(rows as f64);
}

pub fn store_rows_dropped(kind: &'static str, n: u64) {
    counter!("eva_store_rows_dropped_total", "kind" => kind).increment(n);
}

pub fn store_metrics_expired(n: u64) {
    counter!("eva_store_metrics_expired_total").increment(n);
}

pub fn store_backlog_refused() {
    counter!("eva_store_backlog_refused_total").increment(1);
}

/// One sequencing round trip to Redis (publish script).
pub fn redis_publish(took: Duration) {
    H.redis_publish.record(took.as_secs_f64());
}

/// Publishes whose `WAIT` (`redis.wait_replicas`) timed out with fewer
/// replicas holding the event than asked: a failover now could lose it.
pub fn redis_wait_short() {
    counter!("eva_redis_wait_short_total").increment(1);
}

/// A script a Redis Cluster redirected (its slot moved or is moving) was
/// sent again.
pub fn redis_redirected() {
    counter!("eva_redis_redirects_total").increment(1);
}

/// A Redis client whose connection task had ended for good was started
/// again by the health monitor.
pub fn redis_client_restarted() {
    counter!("eva_redis_client_restarts_total").increment(1);
}

/// Pub/sub messages the node's buffer dropped; each gap is refilled from
/// the session's stream.
pub fn redis_pubsub_dropped(n: u64) {
    counter!("eva_redis_pubsub_dropped_total").increment(n);
}

/// Events a node read from a session's stream to fill a gap in pub/sub
/// delivery.
pub fn redis_refilled(n: u64) {
    counter!("eva_redis_refilled_events_total").increment(n);
}

/// A session's stream continued somewhere this node could not follow
/// event by event: `reason` is `restart` (Redis lost it), `outage` (this
/// node sequenced alone), `adopted` (another node's outage run), `behind`,
/// `diverged` (Redis lost events this node delivered, as in a failover).
pub fn redis_stream_reset(reason: &'static str) {
    counter!("eva_redis_stream_resets_total", "reason" => reason).increment(1);
}

/// Whether this node reaches Redis (1) or sequences alone (0).
pub fn redis_up(up: bool) {
    gauge!("eva_redis_up").set(if up { 1.0 } else { 0.0 });
}

/// Installs the Prometheus recorder once per process (tests start several
/// hubs in one process) and returns its handle.
pub fn install_exporter() -> metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut b = PrometheusBuilder::new();
            for name in LATENCY_HISTOGRAMS {
                b = b
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), &LATENCY_BUCKETS)
                    .expect("buckets are non-empty");
            }
            for name in BATCH_HISTOGRAMS {
                b = b
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), &BATCH_BUCKETS)
                    .expect("buckets are non-empty");
            }
            let handle = match b.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (an embedding program's):
                // keep ours unregistered but renderable.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            init();
            handle
        })
        .clone()
}

/// Process CPU seconds, resident bytes and open file descriptors, read
/// from /proc at scrape time, and the runtime's live tasks (a leak of
/// tasks or descriptors shows as growth under steady load).
pub fn process_gauges() {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        gauge!("eva_runtime_alive_tasks").set(rt.metrics().num_alive_tasks() as f64);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = 100.0; // USER_HZ on Linux
            if let (Some(u), Some(s)) = (f.get(11), f.get(12)) {
                let cpu = u.parse::<f64>().unwrap_or(0.0) + s.parse::<f64>().unwrap_or(0.0);
                gauge!("process_cpu_seconds_total").set(cpu / ticks);
            }
            if let Some(rss) = f.get(21).and_then(|v| v.parse::<f64>().ok()) {
                gauge!("process_resident_memory_bytes").set(rss * 4096.0);
            }
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!("process_open_fds").set(fds.count() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every histogram, with each of its closed label values, is in the
    /// first scrape: recorded or not, it was registered by `init`.
    #[test]
    fn every_histogram_is_listed_before_any_traffic() {
        let text = install_exporter().render();
        let mut expected: Vec<String> = LATENCY_HISTOGRAMS
            .iter()
            .chain(BATCH_HISTOGRAMS.iter())
            .filter(|n| !n.starts_with("eva_renderer_"))
            .map(|n| format!("{n}_count "))
            .collect();
        expected.extend(
            STAGES.map(|s| format!("eva_renderer_stage_latency_seconds_count{{stage=\"{s}\"}}")),
        );
        expected.extend(
            COMPONENTS.map(|c| {
                format!("eva_renderer_component_latency_seconds_count{{component=\"{c}\"}}")
            }),
        );
        for series in expected {
            assert!(
                text.lines().any(|l| l.starts_with(&series)),
                "{series} is missing from the first scrape:\n{text}"
            );
        }
    }
}

//! The dispatcher: claims due deliveries from the store, sends them with
//! bounded concurrency per endpoint, and records every outcome.
//!
//! Three kinds of task:
//! * the **claimer** wakes when a batch with webhook events commits (the
//!   writer says so), when an endpoint has room again, or every
//!   `poll_interval_ms` (retries that came due, other nodes' rows), and
//!   claims due deliveries with a lease, at most `queue_per_endpoint` per
//!   endpoint and none for an endpoint whose queue is full;
//! * one **attempt** task per request, at most
//!   `max_in_flight_per_endpoint` per endpoint, so a hanging endpoint ties
//!   up its own slots and nothing else;
//! * the **recorder** writes outcomes in batches; a delivery stays
//!   "held" (never claimed twice by this node) until its outcome is
//!   written.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use super::sign::{key_of, signature};
use super::ssrf::{AddressPolicy, GuardedResolver, Refused};
use crate::config::WebhookSettings;
use crate::metrics as m;
use crate::store::Store;
use crate::store::webhooks::{
    AttemptOutcome, ClaimRequest, DeliveryRecord, DeliveryStatus, DisabledEndpoint, WebhookRecord,
};
use crate::store::writer::BatchWriter;

/// Told about every endpoint the dispatcher disabled (the hub raises an
/// alert to the tenant's operators).
pub type OnDisabled = Arc<dyn Fn(DisabledEndpoint) + Send + Sync>;

/// One endpoint's queue on this node.
#[derive(Debug)]
struct Endpoint {
    /// The endpoint as last claimed (url, secret, limits).
    record: Mutex<WebhookRecord>,
    queue: Mutex<VecDeque<DeliveryRecord>>,
    in_flight: AtomicUsize,
}

impl Endpoint {
    fn load(&self) -> usize {
        self.queue.lock().len() + self.in_flight.load(Ordering::Relaxed)
    }
}

struct Shared {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    policy: AddressPolicy,
    client: reqwest::Client,
    endpoints: Mutex<HashMap<Uuid, Arc<Endpoint>>>,
    /// Claimed deliveries whose outcome is not yet written.
    held: Mutex<HashSet<i64>>,
    outcomes: mpsc::UnboundedSender<AttemptOutcome>,
    /// An endpoint has room again.
    room: Notify,
    closed: AtomicBool,
    on_disabled: OnDisabled,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("policy", &self.policy)
            .field("endpoints", &self.endpoints.lock().len())
            .finish_non_exhaustive()
    }
}

/// Handle to a running dispatcher.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

/// The HTTP client every attempt uses: connections checked against the
/// address policy after resolution, no redirects (a redirect could lead
/// anywhere), no proxy from the environment.
///
/// # Errors
/// If the TLS backend cannot be set up.
pub fn http_client(policy: AddressPolicy) -> Result<reqwest::Client, reqwest::Error> {
    // reqwest is built without a default crypto provider; use ring, which
    // the rest of the hub (Redis TLS) uses already. Installing twice is
    // harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver::shared(policy))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .build()
}

impl Dispatcher {
    /// Starts the claimer and the recorder.
    ///
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn start(
        store: Arc<dyn Store>,
        writer: BatchWriter,
        settings: WebhookSettings,
        policy: AddressPolicy,
        on_disabled: OnDisabled,
    ) -> anyhow::Result<Dispatcher> {
        let client = http_client(policy)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store,
            settings,
            policy,
            client,
            endpoints: Mutex::new(HashMap::new()),
            held: Mutex::new(HashSet::new()),
            outcomes: tx,
            room: Notify::new(),
            closed: AtomicBool::new(false),
            on_disabled,
        });
        tokio::spawn(claimer(shared.clone(), writer));
        tokio::spawn(recorder(shared.clone(), rx));
        Ok(Dispatcher { shared })
    }

    /// Stops claiming, hands queued deliveries back to the store and
    /// waits (until `deadline`) for requests in flight and every outcome
    /// to be written.
    pub async fn shutdown(&self, deadline: Instant) {
        let s = &self.shared;
        s.closed.store(true, Ordering::Relaxed);
        s.room.notify_one();
        let now = Utc::now();
        let endpoints: Vec<Arc<Endpoint>> = s.endpoints.lock().values().cloned().collect();
        for e in endpoints {
            let queued: Vec<DeliveryRecord> = e.queue.lock().drain(..).collect();
            for d in queued {
                let _ = s.outcomes.send(AttemptOutcome {
                    delivery_id: d.id,
                    webhook_id: d.webhook_id,
                    at: now,
                    status: DeliveryStatus::Pending,
                    next_attempt_at: now,
                    response_status: None,
                    error: d.last_error.clone(),
                    attempted: false,
                });
            }
        }
        while Instant::now() < deadline && !s.held.lock().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Claims due deliveries whenever there may be some.
async fn claimer(s: Arc<Shared>, writer: BatchWriter) {
    let poll = s.settings.poll_interval();
    loop {
        if s.closed.load(Ordering::Relaxed) {
            return;
        }
        claim_all(&s).await;
        tokio::select! {
            () = writer.webhooks_committed() => {}
            () = s.room.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Claims rounds until one comes back short.
async fn claim_all(s: &Arc<Shared>) {
    let cfg = &s.settings;
    loop {
        if s.closed.load(Ordering::Relaxed) {
            return;
        }
        let skip: Vec<Uuid> = s
            .endpoints
            .lock()
            .iter()
            .filter(|(_, e)| e.load() >= cfg.queue_per_endpoint)
            .map(|(id, _)| *id)
            .collect();
        let now = Utc::now();
        let req = ClaimRequest {
            now,
            lease_until: now + chrono::Duration::seconds(cfg.lease_s as i64),
            limit: cfg.claim_batch,
            per_endpoint: cfg.queue_per_endpoint,
            skip,
            only: Vec::new(),
        };
        let claimed = match s.store.claim_webhook_deliveries(&req).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying");
                return;
            }
        };
        let n = claimed.deliveries.len();
        let by_id: HashMap<Uuid, WebhookRecord> =
            claimed.endpoints.into_iter().map(|w| (w.id, w)).collect();
        for d in claimed.deliveries {
            if !s.held.lock().insert(d.id) {
                continue; // still ours from an earlier claim
            }
            let Some(record) = by_id.get(&d.webhook_id) else {
                // The endpoint was deleted with its deliveries meanwhile.
                s.held.lock().remove(&d.id);
                continue;
            };
            if !record.is_active {
                let _ = s.outcomes.send(disabled_outcome(&d));
                continue;
            }
            let endpoint = {
                let mut map = s.endpoints.lock();
                map.entry(d.webhook_id)
                    .or_insert_with(|| {
                        Arc::new(Endpoint {
                            record: Mutex::new(record.clone()),
                            queue: Mutex::new(VecDeque::new()),
                            in_flight: AtomicUsize::new(0),
                        })
                    })
                    .clone()
            };
            *endpoint.record.lock() = record.clone();
            endpoint.queue.lock().push_back(d);
            pump(s, &endpoint);
        }
        update_queued_gauge(s);
        if n < cfg.claim_batch {
            return;
        }
    }
}

fn update_queued_gauge(s: &Shared) {
    let queued: usize = s.endpoints.lock().values().map(|e| e.load()).sum();
    m::webhook_queued(queued);
}

/// Starts attempts while the endpoint has free slots.
fn pump(s: &Arc<Shared>, e: &Arc<Endpoint>) {
    let max = s.settings.max_in_flight_per_endpoint;
    loop {
        if e.in_flight.load(Ordering::Relaxed) >= max {
            return;
        }
        let Some(d) = e.queue.lock().pop_front() else {
            return;
        };
        e.in_flight.fetch_add(1, Ordering::Relaxed);
        let s = s.clone();
        let e = e.clone();
        tokio::spawn(async move {
            let record = e.record.lock().clone();
            let outcome = if record.is_active {
                attempt(&s, &record, &d).await
            } else {
                disabled_outcome(&d)
            };
            let _ = s.outcomes.send(outcome);
            // Only an endpoint the claimer skips for being full needs it
            // to come back; the others are claimed for on every round.
            let cap = s.settings.queue_per_endpoint;
            let was_full = e.load() >= cap;
            e.in_flight.fetch_sub(1, Ordering::Relaxed);
            pump(&s, &e);
            if was_full && e.load() < cap {
                s.room.notify_one();
            }
        });
    }
}

/// A delivery whose endpoint is disabled fails without a request.
fn disabled_outcome(d: &DeliveryRecord) -> AttemptOutcome {
    let now = Utc::now();
    m::webhook_failed();
    AttemptOutcome {
        delivery_id: d.id,
        webhook_id: d.webhook_id,
        at: now,
        status: DeliveryStatus::Failed,
        next_attempt_at: now,
        response_status: None,
        error: Some("the endpoint is disabled".into()),
        attempted: false,
    }
}

/// One request and its outcome.
async fn attempt(s: &Shared, w: &WebhookRecord, d: &DeliveryRecord) -> AttemptOutcome {
    let started = Instant::now();
    let result = send(s, w, d).await;
    let took = started.elapsed();
    let now = Utc::now();
    let made = d.attempts + 1;
    let mut outcome = AttemptOutcome {
        delivery_id: d.id,
        webhook_id: w.id,
        at: now,
        status: DeliveryStatus::Pending,
        next_attempt_at: now,
        response_status: None,
        error: None,
        attempted: true,
    };
    let retry_after = match result {
        Ok((status, _)) if status.is_success() => {
            m::webhook_attempt("success", took);
            outcome.status = DeliveryStatus::Delivered;
            outcome.response_status = Some(i32::from(status.as_u16()));
            let latency = (now - d.created_at).to_std().unwrap_or_default();
            m::webhook_delivered(latency);
            return outcome;
        }
        Ok((status, headers)) => {
            m::webhook_attempt("http_error", took);
            outcome.response_status = Some(i32::from(status.as_u16()));
            outcome.error = Some(format!("the endpoint answered {status}"));
            retry_after_of(&headers, now)
        }
        Err(AttemptError::Timeout) => {
            m::webhook_attempt("timeout", took);
            outcome.error = Some(format!("no answer within {} s", w.timeout_seconds));
            None
        }
        Err(AttemptError::Refused(why)) => {
            m::webhook_attempt("refused", took);
            outcome.error = Some(why);
            None
        }
        Err(AttemptError::Network(why)) => {
            m::webhook_attempt("network", took);
            outcome.error = Some(why);
            None
        }
    };
    if made > w.retry_count {
        outcome.status = DeliveryStatus::Failed;
        m::webhook_failed();
    } else {
        let max = Duration::from_secs(s.settings.retry_after_max_s);
        let wait = match retry_after {
            Some(after) => after.min(max),
            None => backoff(&s.settings, made),
        };
        outcome.next_attempt_at =
            now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
    }
    outcome
}

enum AttemptError {
    Timeout,
    Refused(String),
    Network(String),
}

/// Sends one signed request.
async fn send(
    s: &Shared,
    w: &WebhookRecord,
    d: &DeliveryRecord,
) -> Result<(StatusCode, HeaderMap), AttemptError> {
    let key = key_of(&w.secret)
        .map_err(|_| AttemptError::Refused("the endpoint's secret is malformed".into()))?;
    let timestamp = Utc::now().timestamp();
    let sig = signature(&key, &d.msg_id, timestamp, d.body.as_bytes());
    // An address literal never reaches the resolver: check it here.
    if let Ok(url) = reqwest::Url::parse(&w.url)
        && let Some(host) = url.host_str()
        && let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
        && let Some(why) = s.policy.refuses(ip)
    {
        return Err(AttemptError::Refused(format!(
            "destination refused: {ip} is {why}"
        )));
    }
    let timeout = Duration::from_secs(w.timeout_seconds.max(1) as u64);
    let res = s
        .client
        .post(&w.url)
        .timeout(timeout)
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("eva-hub-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", &d.msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", sig)
        .body(d.body.clone())
        .send()
        .await
        .map_err(classify)?;
    let status = res.status();
    let headers = res.headers().clone();
    // Read (and drop) a bounded part of the body so the connection can be
    // reused; a slow body counts against the same timeout.
    let _ = tokio::time::timeout(timeout, res.bytes()).await;
    Ok((status, headers))
}

fn classify(e: reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        return AttemptError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return AttemptError::Refused(r.to_string());
        }
        source = err.source();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    AttemptError::Network(text)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after_of(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or_default())
}

/// Exponential backoff with jitter: attempt `n` (1-based) waits between
/// half and all of `initial × 2^(n-1)`, capped at `retry_max_ms`.
fn backoff(cfg: &WebhookSettings, n: i32) -> Duration {
    let exp = cfg
        .retry_initial_ms
        .saturating_mul(1u64 << (n.clamp(1, 30) - 1))
        .min(cfg.retry_max_ms)
        .max(1);
    let ms = rand::rng().random_range(exp / 2..=exp);
    Duration::from_millis(ms)
}

/// Writes outcomes in batches, retrying while the store fails.
async fn recorder(s: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<AttemptOutcome>) {
    let max = s.settings.record_batch;
    let mut batch: Vec<AttemptOutcome> = Vec::with_capacity(max);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(50);
        let disabled = loop {
            match s
                .store
                .record_webhook_attempts(&batch, s.settings.disable_after_failures)
                .await
            {
                Ok(d) => break d,
                Err(e) => {
                    tracing::warn!(error = %e, outcomes = batch.len(),
                        "recording webhook outcomes failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        {
            let mut held = s.held.lock();
            for o in &batch {
                held.remove(&o.delivery_id);
            }
        }
        for d in disabled {
            m::webhook_endpoint_disabled();
            tracing::warn!(webhook = %d.id, tenant = %d.tenant, failures = d.failure_count,
                "webhook endpoint disabled after repeated failures");
            if let Some(e) = s.endpoints.lock().get(&d.id) {
                e.record.lock().is_active = false;
            }
            (s.on_disabled)(d);
        }
        batch.clear();
        update_queued_gauge(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let mut cfg = crate::config::Settings::defaults().webhooks;
        cfg.retry_initial_ms = 1000;
        cfg.retry_max_ms = 8000;
        for _ in 0..100 {
            let d1 = backoff(&cfg, 1).as_millis();
            assert!((500..=1000).contains(&d1));
            let d3 = backoff(&cfg, 3).as_millis();
            assert!((2000..=4000).contains(&d3));
            let d10 = backoff(&cfg, 10).as_millis();
            assert!((4000..=8000).contains(&d10));
        }
    }

    /// Names are checked after resolution, on every connection.
    #[tokio::test]
    async fn a_name_that_resolves_to_a_refused_address_is_never_called() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = http_client(AddressPolicy::default()).unwrap();
        let err = client
            .post(format!("http://localhost:{port}/hook"))
            .body("{}")
            .send()
            .await
            .unwrap_err();
        match classify(err) {
            AttemptError::Refused(why) => assert!(why.contains("loopback"), "{why}"),
            _ => panic!("expected the address policy to refuse localhost"),
        }
        // Allowed, the same name connects (and the listener accepts it).
        let client = http_client(AddressPolicy {
            allow_loopback: true,
            allow_private: false,
        })
        .unwrap();
        let call = client
            .post(format!("http://localhost:{port}/hook"))
            .timeout(Duration::from_millis(300))
            .send();
        let (res, accepted) = tokio::join!(call, listener.accept());
        assert!(accepted.is_ok(), "the connection was made");
        assert!(!matches!(
            res.map_err(classify),
            Err(AttemptError::Refused(_))
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after_of(&h, now), Some(Duration::from_secs(7)));
        let later = (now + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after_of(&h, now).unwrap();
        assert!(d <= Duration::from_secs(30) && d >= Duration::from_secs(28));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_of(&h, now), None);
    }
}

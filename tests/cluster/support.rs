//! Support for the multi-node tests: real `eva-hub` processes sharing one
//! Redis and one PostgreSQL database, a private `redis-server` that can be
//! killed and started again, clients that record what they receive, and
//! the checks over those recordings (gaps, duplicates, reorders, the same
//! event at each seq on every node).
//!
//! Every wait is bounded and every failure says what was counted; the logs
//! of every process a test started are printed when it fails.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::ids::{Epoch, SessionId};
use eva_hub::protocol::frames::{DiscontinuityReason, Snapshot};
use eva_hub::protocol::model::{Event, Role, StreamPosition};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest wait for one expected frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// Presence TTL the nodes run with (`redis.presence_ttl_s`).
pub const PRESENCE_TTL_S: u64 = 3;
/// Presence grace the nodes run with (`session.presence_grace_ms`).
pub const PRESENCE_GRACE_MS: u64 = 1000;

// ---------------------------------------------------------------- logs

/// What a test started (node and redis logs) and the step it is at, so a
/// failure or a timeout can say where it was and show the logs.
#[derive(Clone, Debug, Default)]
pub struct LogBook(Arc<Mutex<Book>>);

#[derive(Debug, Default)]
struct Book {
    test: String,
    step: String,
    logs: Vec<(String, PathBuf)>,
}

impl LogBook {
    pub fn new(test: &str) -> LogBook {
        let b = LogBook::default();
        b.0.lock().unwrap().test = test.to_owned();
        b
    }

    /// Records the current step (shown if the test fails or times out).
    pub fn step(&self, s: impl Into<String>) {
        let s = s.into();
        let mut b = self.0.lock().unwrap();
        eprintln!("[{}] {s}", b.test);
        b.step = s;
    }

    pub fn current_step(&self) -> String {
        self.0.lock().unwrap().step.clone()
    }

    fn register(&self, name: &str, path: &Path) {
        self.0
            .lock()
            .unwrap()
            .logs
            .push((name.to_owned(), path.to_owned()));
    }

    /// Prints the tail of every log registered.
    pub fn dump(&self) {
        let b = self.0.lock().unwrap();
        eprintln!(
            "\n==== {} failed at step: {} ====",
            b.test,
            if b.step.is_empty() { "-" } else { &b.step }
        );
        for (name, path) in &b.logs {
            eprintln!(
                "---- {name}: last lines of {} ----\n{}",
                path.display(),
                tail(path, 40)
            );
        }
        eprintln!("==== end of logs of {} ====\n", b.test);
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            let from = lines.len().saturating_sub(n);
            if lines.is_empty() {
                "(empty)".to_owned()
            } else {
                lines[from..].join("\n")
            }
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

/// A port that was free a moment ago (the caller retries if it is taken
/// by the time it is used).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// ---------------------------------------------------------------- redis

/// The Redis the tests share: `EVA_TEST_REDIS`, or the binary's private
/// one (tests/common/services.rs).
pub fn shared_redis_url() -> String {
    crate::common::services::redis_url()
}

/// `host:port` of a `redis://host:port[/db]` URL.
pub fn redis_addr(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("redis://")
        .unwrap_or_else(|| panic!("expected a redis:// URL, got {url}"));
    let hostport = rest.rsplit('@').next().unwrap_or(rest);
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    use std::net::ToSocketAddrs;
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("cannot resolve the Redis address in {url}"))
}

/// Sends one command in RESP and returns the first line of the reply
/// (`+OK`, `:3`, `-ERR …`, `$…`). Enough for PING, CLIENT KILL and EVAL
/// returning an integer.
pub async fn redis_cmd(addr: SocketAddr, args: &[&str]) -> Result<String, String> {
    let work = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if line.is_empty() {
            return Err("connection closed without a reply".to_owned());
        }
        Ok(line.trim_end().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .unwrap_or_else(|_| Err(format!("no reply from Redis at {addr} within 3 s")))
}

/// Panics, saying how to start it, if Redis at `url` does not answer PING:
/// these tests never skip.
pub async fn require_redis(url: &str) {
    match redis_cmd(redis_addr(url), &["PING"]).await {
        Ok(r) if r == "+PONG" => {}
        other => panic!(
            "\n\nRedis is required by the cluster tests and does not answer PING at {url}: {other:?}\n\
             Start the server EVA_TEST_REDIS names, or unset it to let the tests start their own.\n"
        ),
    }
}

/// Deletes every key under `prefix` (best effort; the tests' prefixes are
/// unique, this only keeps the shared Redis tidy).
pub async fn delete_prefix(url: &str, prefix: &str) {
    let script = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
                  redis.call('DEL', k) n = n + 1 end return n";
    let pattern = format!("{prefix}*");
    let _ = redis_cmd(redis_addr(url), &["EVAL", script, "0", &pattern]).await;
}

/// `CLIENT KILL TYPE pubsub`: returns how many connections Redis closed.
pub async fn kill_pubsub_clients(addr: SocketAddr) -> u64 {
    let r = redis_cmd(addr, &["CLIENT", "KILL", "TYPE", "pubsub"])
        .await
        .unwrap_or_else(|e| panic!("CLIENT KILL TYPE pubsub failed: {e}"));
    r.strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected reply to CLIENT KILL: {r}"))
}

/// A `redis-server` of the test's own, on a fixed port, that can be
/// SIGKILLed and started again on the same port (no persistence: a restart
/// loses every key).
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start(dir: &Path, book: &LogBook) -> PrivateRedis {
        let log = dir.join("redis.log");
        book.register("redis-server", &log);
        let mut last = String::new();
        for _ in 0..5 {
            let mut r = PrivateRedis {
                port: free_port(),
                log: log.clone(),
                child: None,
            };
            match r.spawn().await {
                Ok(()) => return r,
                Err(e) => last = e,
            }
        }
        panic!("could not start a private redis-server: {last}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run redis-server ({e}): the cluster tests need the redis-server \
                     binary on PATH (apt-get install redis-server)"
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = redis_cmd(self.addr(), &["PING"]).await
                && r == "+PONG"
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited with {status}:\n{}",
                    self.port,
                    tail(&self.log, 10)
                ));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "redis-server on port {} did not answer PING within 10 s:\n{}",
                    self.port,
                    tail(&self.log, 10)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (retrying while the port is still
    /// held).
    pub async fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn().await {
                Ok(()) => return,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "redis-server did not start again on port {}: {last}",
            self.port
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------- nodes

/// Everything a node needs to know about the cluster it joins.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub test: String,
    pub dir: PathBuf,
    pub redis_url: String,
    pub prefix: String,
    pub database_url: String,
    pub book: LogBook,
    /// Extra `EVA_HUB__…` settings for every node.
    pub env: Vec<(String, String)>,
}

impl Cluster {
    pub fn new(ctx: &Ctx, redis_url: String) -> Cluster {
        Cluster {
            test: ctx.name.clone(),
            dir: ctx.dir.clone(),
            redis_url,
            prefix: format!("evatest-{}", uuid::Uuid::new_v4().simple()),
            database_url: ctx.database_url.clone(),
            book: ctx.book.clone(),
            env: Vec::new(),
        }
    }

    /// Starts nodes with these names, concurrently; each answers
    /// `/healthz` when this returns.
    pub async fn start(&self, names: &[&str]) -> Vec<Node> {
        self.book.step(format!("starting nodes {names:?}"));
        if self_test() {
            // One in-process-broker hub standing in for every node: checks
            // the tests' own bookkeeping, not clustering.
            let first = Node::start(self, names[0]).await;
            let mut v: Vec<Node> = names[1..]
                .iter()
                .map(|n| Node {
                    name: format!("{n}(={})", names[0]),
                    addr: first.addr,
                    metrics_addr: first.metrics_addr,
                    log: first.log.clone(),
                    rest: Rest::new(n, first.addr),
                    child: None,
                })
                .collect();
            v.insert(0, first);
            return v;
        }
        futures_util::future::join_all(names.iter().map(|n| Node::start(self, n))).await
    }

    /// Removes the test's keys from Redis.
    pub async fn clean_redis(&self) {
        // A cluster is the binary's private one, gone when it exits (and
        // KEYS would reach only one of its shards).
        if !self.redis_url.starts_with("redis-cluster://") {
            delete_prefix(&self.redis_url, &self.prefix).await;
        }
    }
}

/// `EVA_CLUSTER_SELF_TEST=1`: one hub with the in-process broker plays
/// every node, to check the tests themselves while no Redis broker exists.
/// Only the tests that kill nothing can pass that way.
pub fn self_test() -> bool {
    std::env::var("EVA_CLUSTER_SELF_TEST").is_ok_and(|v| v == "1")
}

/// One `eva-hub serve --dev` process.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
    /// REST and WebSocket access, cloneable into tasks.
    pub rest: Rest,
    child: Option<Child>,
}

impl Node {
    /// Spawns the node on free ports and waits until `/healthz` answers
    /// 200. Panics with the node's log if it exits or does not answer
    /// within 30 s.
    pub async fn start(cluster: &Cluster, name: &str) -> Node {
        let mut last = String::new();
        for attempt in 0..3 {
            let log = cluster.dir.join(format!("node-{name}-{attempt}.log"));
            cluster.book.register(&format!("node {name}"), &log);
            match Node::try_start(cluster, name, log).await {
                Ok(n) => return n,
                Err((msg, retry)) => {
                    if !retry {
                        panic!("{msg}");
                    }
                    last = msg;
                }
            }
        }
        panic!("{last}");
    }

    async fn try_start(
        cluster: &Cluster,
        name: &str,
        log: PathBuf,
    ) -> Result<Node, (String, bool)> {
        let port = free_port();
        let metrics_port = free_port();
        let out =
            File::create(&log).map_err(|e| (format!("create {}: {e}", log.display()), false))?;
        let err = out.try_clone().map_err(|e| (e.to_string(), false))?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eva-hub"));
        for (k, _) in std::env::vars() {
            if k.starts_with("EVA_HUB")
                || k.ends_with("BACKTRACE")
                || k == "DATABASE_URL"
                || k == "REDIS_URL"
                || k == "RUST_LOG"
            {
                cmd.env_remove(k);
            }
        }
        cmd.args([
            "serve",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("DATABASE_URL", &cluster.database_url)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .envs(eva_hub::config::LimitSettings::unlimited_env())
        .envs(
            [
                ("SESSION__PRESENCE_GRACE_MS", PRESENCE_GRACE_MS.to_string()),
                ("SESSION__RENDERER_GRACE_MS", "500".into()),
                ("SESSION__TAKEOVER_GRACE_MS", "1000".into()),
                ("SESSION__EMERGENCY_ACK_TIMEOUT_MS", "1000".into()),
                ("SESSION__METRICS_INTERVAL_MS", "100".into()),
                ("SESSION__COUNTERS_INTERVAL_MS", "100".into()),
                ("SESSION__STATE_PERSIST_INTERVAL_MS", "100".into()),
                ("SESSION__STOP_TIMEOUT_MS", "500".into()),
                ("SERVER__SHUTDOWN_GRACE_MS", "3000".into()),
                ("STORE__FLUSH_INTERVAL_MS", "2".into()),
                ("STORE__MAX_CONNECTIONS", "4".into()),
                // Readers may fall behind on this 2-core machine; without
                // conflation every event must arrive, which is what the
                // gap checks need.
                ("WEBSOCKET__CONFLATE_AFTER_BYTES", (32u64 << 20).to_string()),
                ("WEBSOCKET__OUTBOUND_MAX_BYTES", (64u64 << 20).to_string()),
            ]
            .map(|(k, v)| (format!("EVA_HUB__{k}"), v)),
        )
        .envs(cluster.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        if !self_test() {
            cmd.env("REDIS_URL", &cluster.redis_url)
                .env("EVA_HUB__REDIS__PREFIX", &cluster.prefix)
                .env("EVA_HUB__REDIS__PRESENCE_TTL_S", PRESENCE_TTL_S.to_string())
                .env("EVA_HUB__REDIS__NODE_ID", name);
        }
        let child = cmd
            .spawn()
            .map_err(|e| (format!("cannot run the eva-hub binary: {e}"), false))?;
        let mut node = Node {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
            log,
            rest: Rest::new(name, SocketAddr::from(([127, 0, 0, 1], port))),
            child: Some(child),
        };
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = node.get("/healthz").await {
                return Ok(node);
            }
            if let Some(status) = node.exited() {
                let log = tail(&node.log, 30);
                let retry = log.contains("in use");
                return Err((
                    format!(
                        "node {name} exited with {status} before answering /healthz on {}; \
                         its log ({}):\n{log}",
                        node.addr,
                        node.log.display()
                    ),
                    retry,
                ));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err((
                    format!(
                        "node {name} did not answer /healthz on {} within 30 s; its log ({}):\n{}",
                        node.addr,
                        node.log.display(),
                        tail(&node.log, 30)
                    ),
                    false,
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then up to `within` for the node to drain and exit
    /// (SIGKILL after that). Returns the exit status if it exited by
    /// itself.
    pub async fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        let pid = self.pid()?;
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(s) = self.exited() {
                self.child = None;
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        None
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        self.rest.get(path).await
    }

    pub async fn create_session(&self, name: &str) -> SessionId {
        self.rest.create_session(name).await
    }

    pub async fn publish(
        &self,
        session: SessionId,
        name: &str,
        data: Value,
    ) -> Result<u64, String> {
        self.rest.publish(session, name, data).await
    }

    pub async fn connect(&self, role: Role, subject: &str, codec: Codec) -> Peer {
        self.rest.connect(role, subject, codec).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A node's REST API and WebSocket endpoint; cheap to clone into tasks.
#[derive(Clone, Debug)]
pub struct Rest {
    pub name: String,
    pub addr: SocketAddr,
    http: reqwest::Client,
}

impl Rest {
    pub fn new(name: &str, addr: SocketAddr) -> Rest {
        Rest {
            name: name.to_owned(),
            addr,
            http: test_http_client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let res = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        Ok((status, res.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let res = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        Ok((status, res.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /v1/sessions` on this node.
    pub async fn create_session(&self, name: &str) -> SessionId {
        match self.post("/v1/sessions", &json!({ "name": name })).await {
            Ok((201, body)) => body["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("node {}: session without an id: {body}", self.name)),
            other => panic!("node {}: POST /v1/sessions answered {other:?}", self.name),
        }
    }

    /// A backend event through `POST /v1/sessions/{id}/events`; the seq it
    /// got.
    pub async fn publish(
        &self,
        session: SessionId,
        name: &str,
        data: Value,
    ) -> Result<u64, String> {
        let body = json!({ "name": name, "audience": "all", "data": data });
        match self
            .post(&format!("/v1/sessions/{session}/events"), &body)
            .await?
        {
            (202, v) => v["seq"]
                .as_u64()
                .ok_or_else(|| format!("202 without a seq: {v}")),
            (status, v) => Err(format!("HTTP {status}: {v}")),
        }
    }

    /// A WebSocket client on this node, past `welcome`.
    pub async fn connect(&self, role: Role, subject: &str, codec: Codec) -> Peer {
        let label = format!("{}@{}({codec:?})", subject, self.name);
        let token = eva_hub::auth::dev::dev_token(role, subject, None);
        let client = tokio::time::timeout(
            WAIT,
            Client::connect(self.addr, ConnectOptions::new(codec, token)),
        )
        .await
        .unwrap_or_else(|_| panic!("{label}: connect timed out"))
        .unwrap_or_else(|e| panic!("{label}: connect failed: {e}"));
        let mut p = Peer { label, client };
        match p.next().await {
            ServerFrame::Welcome { .. } => p,
            other => panic!("{}: expected welcome, got {other:?}", p.label),
        }
    }
}

/// Polls `path` on `node` until it answers `want`; returns the last body
/// and how long it took, or an error saying what it answered instead.
pub async fn wait_status(
    node: &Node,
    path: &str,
    want: u16,
    within: Duration,
) -> Result<(Value, Duration), String> {
    let started = Instant::now();
    loop {
        let last = match node.get(path).await {
            Ok((s, body)) if s == want => return Ok((body, started.elapsed())),
            Ok((s, body)) => format!("HTTP {s} {body}"),
            Err(e) => e,
        };
        if started.elapsed() > within {
            return Err(format!(
                "node {} {path} did not answer {want} within {within:?}; last answer: {last}",
                node.name
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- clients

/// What one test gets: its name, a scratch directory, the run's database
/// and the log book.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub name: String,
    pub dir: PathBuf,
    pub database_url: String,
    pub book: LogBook,
}

/// One event as a client received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub seq: u64,
    pub ts: u64,
    pub event: Event,
}

impl Seen {
    /// What must be identical on every node for this seq.
    pub fn digest(&self) -> String {
        format!(
            "ts={} {}",
            self.ts,
            serde_json::to_string(&self.event).unwrap_or_default()
        )
    }

    /// `(name, data)` of a custom event.
    pub fn custom(&self) -> Option<(&str, &Value)> {
        match &self.event {
            Event::Custom { name, data, .. } => Some((name.as_str(), data)),
            _ => None,
        }
    }

    pub fn slide(&self) -> Option<i32> {
        match &self.event {
            Event::State { state } => Some(state.current_slide),
            _ => None,
        }
    }
}

/// How a recording ended.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// The stop predicate matched.
    Stopped,
    Closed(Option<(u16, String)>),
    TimedOut,
    Error(String),
}

/// What a join answered.
#[derive(Debug)]
pub enum Joined {
    Snapshot(Box<Snapshot>),
    Resumed {
        epoch: Epoch,
        from: u64,
        to: u64,
    },
    Discontinuity {
        reason: DiscontinuityReason,
        snapshot: Box<Snapshot>,
    },
}

/// A client with a label for messages.
#[derive(Debug)]
pub struct Peer {
    pub label: String,
    pub client: Client,
}

impl Peer {
    pub async fn send(&mut self, frame: &ClientFrame) {
        if let Err(e) = self.client.send(frame).await {
            panic!("{}: send failed: {e}", self.label);
        }
    }

    /// The next frame; panics on close or after [`WAIT`].
    pub async fn next(&mut self) -> ServerFrame {
        match self.client.recv_timeout(WAIT).await {
            Ok(Incoming::Frame(f)) => f,
            Ok(Incoming::Closed(c)) => panic!("{}: connection closed: {c:?}", self.label),
            Err(e) => panic!("{}: no frame within {WAIT:?}: {e}", self.label),
        }
    }

    /// Skips frames until one matches (panics after [`WAIT`]).
    pub async fn until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ServerFrame) -> bool,
    ) -> ServerFrame {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.client.recv_timeout(left).await {
                Ok(Incoming::Frame(f)) if pred(&f) => return f,
                Ok(Incoming::Frame(_)) => continue,
                Ok(Incoming::Closed(c)) => {
                    panic!("{}: closed ({c:?}) while waiting for {what}", self.label)
                }
                Err(e) => panic!("{}: no {what} within {WAIT:?}: {e}", self.label),
            }
        }
    }

    /// Joins (optionally resuming) and returns the answer; events that
    /// arrive before the snapshot or `resumed` are impossible by the
    /// protocol and fail the test.
    pub async fn join(
        &mut self,
        session: SessionId,
        resume: Option<StreamPosition>,
        name: Option<&str>,
    ) -> Joined {
        self.send(&ClientFrame::Join {
            session,
            resume,
            takeover: false,
            name: name.map(str::to_owned),
            compact: false,
            echo: true,
            id: None,
        })
        .await;
        loop {
            match self.next().await {
                ServerFrame::Joined { .. } => continue,
                ServerFrame::Snapshot(s) => return Joined::Snapshot(s),
                ServerFrame::Resumed {
                    epoch, from, to, ..
                } => return Joined::Resumed { epoch, from, to },
                ServerFrame::Discontinuity { reason, .. } => match self.next().await {
                    ServerFrame::Snapshot(s) => {
                        return Joined::Discontinuity {
                            reason,
                            snapshot: s,
                        };
                    }
                    other => panic!(
                        "{}: a snapshot must follow a discontinuity, got {other:?}",
                        self.label
                    ),
                },
                other => panic!("{}: join answered {other:?}", self.label),
            }
        }
    }

    /// Joins without resuming; the snapshot.
    pub async fn join_fresh(&mut self, session: SessionId) -> Snapshot {
        match self.join(session, None, None).await {
            Joined::Snapshot(s) => *s,
            other => panic!("{}: a fresh join answered {other:?}", self.label),
        }
    }

    /// Records events until `stop` matches one (it is recorded too), the
    /// connection ends, or `within` passes.
    pub async fn record(
        &mut self,
        out: &mut Vec<Seen>,
        within: Duration,
        mut stop: impl FnMut(&Seen) -> bool,
    ) -> End {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.client.recv_timeout(left).await {
                Ok(Incoming::Frame(ServerFrame::Event { seq, ts, event, .. })) => {
                    let s = Seen { seq, ts, event };
                    let done = stop(&s);
                    out.push(s);
                    if done {
                        return End::Stopped;
                    }
                }
                Ok(Incoming::Frame(_)) => {}
                Ok(Incoming::Closed(c)) => return End::Closed(c),
                Err(eva_hub::client::ClientError::Timeout) => return End::TimedOut,
                Err(e) => return End::Error(e.to_string()),
            }
        }
    }
}

/// A custom event named `name`.
pub fn is_custom(s: &Seen, name: &str) -> bool {
    matches!(s.custom(), Some((n, _)) if n == name)
}

// ---------------------------------------------------------------- checks

/// Gaps, duplicates and reorders in a sequence of seqs that should be
/// `first, first+1, …`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Order {
    pub events: usize,
    /// Seqs missing between consecutive received ones.
    pub missing: u64,
    pub duplicates: usize,
    pub reorders: usize,
    /// The first few problems, for the message.
    pub examples: Vec<String>,
}

impl Order {
    pub fn clean(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.reorders == 0
    }
}

/// Checks that `seqs` are exactly `first, first+1, …` (all of them
/// consecutive).
pub fn consecutive(first: u64, seqs: impl IntoIterator<Item = u64>) -> Order {
    let mut o = Order::default();
    let mut seen = HashSet::new();
    let mut expect = first;
    for s in seqs {
        o.events += 1;
        if !seen.insert(s) {
            o.duplicates += 1;
            note(&mut o.examples, format!("duplicate {s}"));
        } else if s < expect {
            o.reorders += 1;
            note(&mut o.examples, format!("{s} after {}", expect - 1));
        } else if s > expect {
            o.missing += s - expect;
            note(&mut o.examples, format!("gap {expect}..{}", s - 1));
            expect = s + 1;
        } else {
            expect = s + 1;
        }
    }
    o
}

/// Compares the seqs a client received with the ones it should have
/// received (in order).
pub fn against(expected: &[u64], got: &[u64]) -> Order {
    let mut o = Order {
        events: got.len(),
        ..Default::default()
    };
    let want: HashSet<u64> = expected.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut last = 0;
    for &s in got {
        if !seen.insert(s) {
            o.duplicates += 1;
            note(&mut o.examples, format!("duplicate {s}"));
            continue;
        }
        if s <= last {
            o.reorders += 1;
            note(&mut o.examples, format!("{s} after {last}"));
        }
        last = last.max(s);
        if !want.contains(&s) {
            o.reorders += 1;
            note(&mut o.examples, format!("unexpected {s}"));
        }
    }
    for s in expected {
        if !seen.contains(s) {
            o.missing += 1;
            note(&mut o.examples, format!("missing {s}"));
        }
    }
    o
}

fn note(v: &mut Vec<String>, s: String) {
    if v.len() < 8 {
        v.push(s);
    }
}

/// The seqs of `full` (a complete stream, as an operator sees it) that
/// `role` sees, within `(after, upto]`.
pub fn view(full: &[Seen], role: Role, after: u64, upto: u64) -> Vec<u64> {
    full.iter()
        .filter(|s| s.seq > after && s.seq <= upto && s.event.audience().includes(role))
        .map(|s| s.seq)
        .collect()
}

/// The digest seen at each seq, by whom first; mismatches are collected.
#[derive(Debug, Default)]
pub struct Digests {
    at: BTreeMap<u64, (String, String)>,
    pub compared: usize,
    pub mismatches: Vec<String>,
}

impl Digests {
    pub fn add(&mut self, who: &str, seen: &[Seen]) {
        for s in seen {
            let d = s.digest();
            match self.at.get(&s.seq) {
                None => {
                    self.at.insert(s.seq, (who.to_owned(), d));
                }
                Some((first, d0)) => {
                    self.compared += 1;
                    if *d0 != d && self.mismatches.len() < 5 {
                        self.mismatches
                            .push(format!("seq {}: {first} saw {d0}, {who} saw {d}", s.seq));
                    }
                }
            }
        }
    }

    pub fn seqs(&self) -> usize {
        self.at.len()
    }
}

/// A one-line summary of a recording: count, first and last seq, kinds.
pub fn summary(seen: &[Seen]) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for s in seen {
        *kinds.entry(s.event.kind()).or_default() += 1;
    }
    format!(
        "{} events, seq {:?}..{:?}, {kinds:?}",
        seen.len(),
        seen.first().map(|s| s.seq),
        seen.last().map(|s| s.seq)
    )
}

/// A REST client for the tests. reqwest is built without a default TLS
/// crypto provider (the hub installs ring when it starts, but these hubs
/// run in other processes), so install it here; installing twice is
/// harmless.
fn test_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

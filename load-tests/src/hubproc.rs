//! The hub under test: started as its own process (pinned to a core with
//! `taskset`), or an address of one already running. CPU time and resident
//! memory come from `/proc/<pid>`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A hub to send load to.
#[derive(Debug)]
pub struct Hub {
    pub addr: SocketAddr,
    /// Known when we can read its `/proc` entry.
    pub pid: Option<u32>,
    child: Option<Child>,
}

/// How to start a hub.
#[derive(Clone, Debug)]
pub struct Spawn {
    pub binary: PathBuf,
    /// CPU list for `taskset -c`, e.g. `0`; `None` runs unpinned.
    pub cpus: Option<String>,
    /// Extra `EVA_HUB__…` settings.
    pub env: Vec<(String, String)>,
}

impl Spawn {
    /// The release binary of this workspace.
    pub fn release_binary() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/eva-hub")
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Hub {
    /// An already running hub (its pid, if given, is used for CPU and RSS).
    pub fn external(addr: SocketAddr, pid: Option<u32>) -> Hub {
        Hub {
            addr,
            pid,
            child: None,
        }
    }

    /// Starts a hub in `--dev` mode on free loopback ports and waits until
    /// it answers `/healthz`.
    pub async fn spawn(opts: &Spawn) -> anyhow::Result<Hub> {
        if !opts.binary.exists() {
            bail!(
                "hub binary {} not found: build it with `cargo build --release --bin eva-hub`",
                opts.binary.display()
            );
        }
        let port = free_port()?;
        let metrics_port = free_port()?;
        let mut cmd = match &opts.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&opts.binary);
                c
            }
            None => Command::new(&opts.binary),
        };
        cmd.args([
            "serve",
            "--dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("EVA_HUB__STORE__DATABASE_URL", "memory")
        .env("EVA_HUB__LOG__LEVEL", "warn")
        // Load tests measure the hub, not its abuse limits: every limit off
        // (a setting of 0 disables it).
        .envs(
            [
                "CONNECTIONS_PER_IP",
                "TENANT_CONNECTIONS_DEFAULT",
                "FRAMES_PER_S",
                "FRAMES_BURST",
                "TELEMETRY_PER_S",
                "TELEMETRY_BURST",
                "INTERACTIONS_PER_S",
                "INTERACTIONS_BURST",
                "JOINS_PER_S",
                "JOINS_BURST",
                "STRIKES",
                "STRIKE_WINDOW_S",
                "QUESTIONS_PER_MINUTE",
                "REST_PER_S",
                "REST_BURST",
            ]
            .map(|k| (format!("EVA_HUB__LIMITS__{k}"), "0".to_owned())),
        )
        .envs(opts.env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        let child = cmd.spawn().context("cannot start the hub")?;
        let pid = child.id();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let hub = Hub {
            addr,
            pid: Some(pid),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(hub);
            }
            if Instant::now() > deadline {
                bail!("the hub did not start listening on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// User + system CPU seconds the hub process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Resident memory of the hub process, bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// Creates a session over REST; returns its id.
    pub async fn create_session(&self, name: &str) -> anyhow::Result<String> {
        let body = format!(r#"{{"name":"{name}"}}"#);
        let res = http(self.addr, "POST", "/v1/sessions", Some(&body)).await?;
        let v: serde_json::Value = serde_json::from_str(&res).context("create session answer")?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no session id in {res}"))
    }

    /// Moves a session to a status over REST.
    pub async fn set_status(&self, session: &str, status: &str) -> anyhow::Result<()> {
        let body = format!(r#"{{"status":"{status}"}}"#);
        http(
            self.addr,
            "POST",
            &format!("/v1/sessions/{session}/status"),
            Some(&body),
        )
        .await?;
        Ok(())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM would drain; the generator is done measuring.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal HTTP/1.1 request (the generator needs a handful).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .context("malformed HTTP answer")?;
    if !head.starts_with("HTTP/1.1 2") {
        bail!("{method} {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_owned())
}

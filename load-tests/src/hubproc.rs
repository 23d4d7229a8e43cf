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
    /// The Prometheus endpoint, when we started the hub.
    pub metrics_addr: Option<SocketAddr>,
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
    /// Extra environment: `EVA_HUB__…` settings (and `REDIS_URL`,
    /// `DATABASE_URL`, which override the memory store).
    pub env: Vec<(String, String)>,
    /// Where the hub's output goes; `None`: stderr is inherited, stdout
    /// dropped.
    pub log: Option<PathBuf>,
}

impl Spawn {
    /// The release binary of this workspace.
    pub fn release_binary() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/eva-hub")
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Hub {
    /// An already running hub (its pid, if given, is used for CPU and RSS).
    pub fn external(addr: SocketAddr, pid: Option<u32>) -> Hub {
        Hub {
            addr,
            metrics_addr: None,
            pid,
            child: None,
        }
    }

    /// Starts a hub in `--dev` mode on free loopback ports and waits until
    /// it answers `/healthz` (fails at once if it exits first).
    pub async fn spawn(opts: &Spawn) -> anyhow::Result<Hub> {
        Hub::spawn_on(opts, free_port()?).await
    }

    /// [`Hub::spawn`] on a given port: a hub restarted where its clients
    /// reconnect.
    pub async fn spawn_on(opts: &Spawn, port: u16) -> anyhow::Result<Hub> {
        if !opts.binary.exists() {
            bail!(
                "hub binary {} not found: build it with `cargo build --release --bin eva-hub`",
                opts.binary.display()
            );
        }
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
        .envs(eva_hub::config::LimitSettings::unlimited_env())
        .envs(opts.env.iter().cloned());
        match &opts.log {
            Some(path) => {
                let out = std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                cmd.stdout(out.try_clone()?).stderr(out);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        let child = cmd.spawn().context("cannot start the hub")?;
        let pid = child.id();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut hub = Hub {
            addr,
            metrics_addr: Some(format!("127.0.0.1:{metrics_port}").parse()?),
            pid: Some(pid),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // `/healthz`, not a TCP connect: the listener is bound before the
        // store is migrated, and a second node must not start migrating
        // while the first one still is.
        loop {
            if http(addr, "GET", "/healthz", None).await.is_ok() {
                return Ok(hub);
            }
            if let Some(status) = hub.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "the hub exited with {status} before answering /healthz on {addr}{}",
                    opts.log
                        .as_ref()
                        .map(|l| format!(" (its log: {})", l.display()))
                        .unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("the hub did not answer /healthz on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the floor (`eva-floor`, next to the release hub) on a free
    /// loopback port, pinned to `cpus`, and waits until it answers.
    pub async fn spawn_floor(cpus: Option<&str>) -> anyhow::Result<Hub> {
        let binary = Spawn::release_binary().with_file_name("eva-floor");
        if !binary.exists() {
            bail!(
                "{} not found: build it with `cargo build --release -p eva-load`",
                binary.display()
            );
        }
        let port = free_port()?;
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().context("cannot start the floor")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let hub = Hub {
            addr,
            metrics_addr: None,
            pid: Some(child.id()),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http(addr, "GET", "/healthz", None).await.is_err() {
            if Instant::now() > deadline {
                bail!("the floor did not answer on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(hub)
    }

    /// User + system CPU seconds the hub process has used so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(self.pid?)
    }

    /// The sum of a counter (all its label sets) on the hub's `/metrics`,
    /// 0 if it is not there yet. Needs a hub this generator started.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let addr = self
            .metrics_addr
            .context("no metrics address for this hub")?;
        let text = http(addr, "GET", "/metrics", None).await?;
        Ok(metric_sum(&text, name))
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

/// User + system CPU seconds process `pid` has used so far.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// The sum of the samples named `name` in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends one Redis command (RESP) and returns the reply's payload: the
/// text of a bulk or simple string, the digits of an integer. An error
/// reply is an error.
pub async fn redis_command(addr: &str, args: &[&str]) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to Redis at {addr}"))?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                bail!("Redis at {addr} closed the connection");
            }
            buf.extend_from_slice(&chunk[..n]);
            let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[1..eol]).into_owned();
            match buf[0] {
                b'+' | b':' => return Ok(head),
                b'-' => bail!("Redis: {head}"),
                b'$' => {
                    let len: usize = head.parse().context("bulk length")?;
                    if buf.len() >= eol + 2 + len {
                        return Ok(
                            String::from_utf8_lossy(&buf[eol + 2..eol + 2 + len]).into_owned()
                        );
                    }
                }
                _ => bail!("unexpected Redis reply {head}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .with_context(|| format!("Redis at {addr} did not answer within 5 s"))?
}

/// A field of a Redis `INFO` reply.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
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

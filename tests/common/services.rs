//! The PostgreSQL and Redis servers the tests run on.
//!
//! `EVA_TEST_POSTGRES` (`postgres://user@host:port`) and `EVA_TEST_REDIS`
//! (`redis://host:port`) select servers that are already running. Without
//! them, a test binary starts its own the first time a test asks: a
//! private PostgreSQL (`initdb` in a temporary directory, `pg_ctl start` on
//! a free loopback port) and a private `redis-server` (no persistence),
//! shared by all of the binary's tests. So a fresh machine needs only the
//! server packages installed, nothing started, and tests never touch a
//! server someone else uses.
//!
//! Each private server has a guard process: a shell that ignores the
//! terminal's signals and waits for its stdin to close. Only this process
//! holds the other end, so when the test binary exits, however it exits
//! (returning, panicking, killed), the guard stops the server and removes
//! its directory.
//!
//! Std only, so that the load tests can include this file too.
#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The PostgreSQL server URL, without a database.
pub fn postgres_url() -> String {
    match configured("EVA_TEST_POSTGRES") {
        Some(url) => url,
        None => private_postgres().url(),
    }
}

/// The Redis URL.
pub fn redis_url() -> String {
    match configured("EVA_TEST_REDIS") {
        Some(url) => url,
        None => private_redis().url(),
    }
}

/// Whether the tests run on their own PostgreSQL (no `EVA_TEST_POSTGRES`).
pub fn postgres_is_private() -> bool {
    configured("EVA_TEST_POSTGRES").is_none()
}

fn configured(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().trim_end_matches('/').to_owned())
}

/// A port that was free a moment ago (starting a server on it retries
/// with another when it was taken in between).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether `bin` is on the PATH.
fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Runs `cmd` to its end (stdin closed) and panics, with its output, unless
/// it succeeded; `what` names it in the message.
fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new empty directory under the system's temporary directory.
fn scratch_dir(kind: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("eva-test-{kind}-{}-{nanos:09}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Single-quotes `s` for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Starts the guard that runs `cleanup` (a shell command) once this
/// process has exited. The returned child must be kept for the life of
/// the process: its stdin is the only write end of the guard's pipe.
fn guard(cleanup: &str) -> Child {
    let script = format!("trap '' INT TERM HUP; cat >/dev/null; {cleanup}");
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the cleanup guard (sh): {e}"))
}

/// The last lines of a log file, for a failure message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Fails the test run with one line saying what to install.
fn missing(what: &str, package: &str, var: &str, example: &str) -> ! {
    panic!(
        "{what} not found: install it (apt-get install {package}), or set {var}={example} \
         to use a running server"
    )
}

// ---------------------------------------------------------------- postgres

/// A PostgreSQL of this test binary's own.
#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// `runuser -u <user> --` when running as root (PostgreSQL refuses
    /// to run as root).
    run_as: Option<String>,
    _guard: Mutex<Child>,
}

/// The binary's private PostgreSQL, started on first use.
pub fn private_postgres() -> &'static PrivatePostgres {
    static PG: OnceLock<PrivatePostgres> = OnceLock::new();
    PG.get_or_init(PrivatePostgres::start)
}

/// The directory with `initdb` and `pg_ctl`: on PATH, or the newest
/// under /usr/lib/postgresql (Debian does not put them on PATH).
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn user_exists(name: &str) -> bool {
    Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl PrivatePostgres {
    // The guard is never waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn start() -> PrivatePostgres {
        let bin = postgres_bin().unwrap_or_else(|| {
            missing(
                "PostgreSQL (initdb and pg_ctl, on PATH or under /usr/lib/postgresql/*/bin)",
                "postgresql",
                "EVA_TEST_POSTGRES",
                "postgres://user@host:port",
            )
        });
        let dir = scratch_dir("postgres");
        let run_as = running_as_root().then(|| {
            let user = if user_exists("postgres") {
                "postgres"
            } else {
                "nobody"
            };
            let ok = Command::new("chown")
                .args([user, &dir.to_string_lossy()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot give {} to the user {user}", dir.display());
            user.to_owned()
        });
        // The guard exists before the server does, so nothing outlives
        // the binary even if start-up fails half-way.
        let data = dir.join("data");
        let stop = format!(
            "{} {} -D {} -m immediate -w stop >/dev/null 2>&1; rm -rf {}",
            run_as
                .as_ref()
                .map(|u| format!("runuser -u {u} --"))
                .unwrap_or_default(),
            sh_quote(&bin.join("pg_ctl").to_string_lossy()),
            sh_quote(&data.to_string_lossy()),
            sh_quote(&dir.to_string_lossy()),
        );
        let mut pg = PrivatePostgres {
            port: 0,
            dir,
            bin,
            run_as,
            _guard: Mutex::new(guard(&stop)),
        };
        let started = Instant::now();
        run_ok(
            pg.command("initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
                .args(["--no-sync", "--no-instructions"]),
            "initdb",
        );
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port();
            match pg.pg_ctl("start") {
                Ok(()) => {
                    eprintln!(
                        "private PostgreSQL on 127.0.0.1:{} ({}), ready in {:.1} s",
                        pg.port,
                        pg.dir.display(),
                        started.elapsed().as_secs_f64()
                    );
                    return pg;
                }
                Err(e) => last = e,
            }
        }
        panic!("could not start a private PostgreSQL: {last}");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        c.stdin(Stdio::null());
        c
    }

    /// `pg_ctl <action>` (start, stop, restart), waiting for it to finish.
    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let log = self.dir.join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c max_connections=200 -c shared_buffers=32MB",
            self.port,
            self.dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "-m", "fast", "-w", "-t", "60", action])
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {action} failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                tail(&log)
            ))
        }
    }

    /// Restarts the server (fast shutdown: every connection ends).
    pub fn restart(&self) {
        self.pg_ctl("restart")
            .unwrap_or_else(|e| panic!("restarting the private PostgreSQL: {e}"));
    }

    /// Starts it again if it is down.
    pub fn ensure_running(&self) {
        if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            self.pg_ctl("start")
                .unwrap_or_else(|e| panic!("starting the private PostgreSQL again: {e}"));
        }
    }
}

// ---------------------------------------------------------------- redis

/// A `redis-server` of this test binary's own, without persistence. It
/// stops when the process exits.
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    /// The TLS port of a server started with [`PrivateRedis::start_tls`].
    pub tls_port: Option<u16>,
    _guard: Mutex<Child>,
}

/// The binary's private Redis, started on first use.
pub fn private_redis() -> &'static PrivateRedis {
    static REDIS: OnceLock<PrivateRedis> = OnceLock::new();
    REDIS.get_or_init(PrivateRedis::start)
}

impl PrivateRedis {
    /// Starts one (the binary's shared one is [`private_redis`]).
    pub fn start() -> PrivateRedis {
        PrivateRedis::start_with(None)
    }

    /// Starts one that also listens with TLS ([`tls_files`]), requiring
    /// a client certificate; [`PrivateRedis::url`] names the TLS port.
    pub fn start_tls() -> PrivateRedis {
        PrivateRedis::start_with(Some(tls_files()))
    }

    // The guard is never waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn start_with(tls: Option<&TlsFiles>) -> PrivateRedis {
        if !on_path("redis-server") {
            missing(
                "redis-server",
                "redis-server",
                "EVA_TEST_REDIS",
                "redis://host:port",
            );
        }
        let dir = scratch_dir("redis");
        let pidfile = dir.join("redis.pid");
        let stop = format!(
            "[ -f {pid} ] && kill -9 \"$(cat {pid})\"; rm -rf {dir}",
            pid = sh_quote(&pidfile.to_string_lossy()),
            dir = sh_quote(&dir.to_string_lossy()),
        );
        let guard = guard(&stop);
        let started = Instant::now();
        let tls_port = tls.map(|_| free_port());
        let extra = tls
            .zip(tls_port)
            .map(|(tls, port)| tls.server_args(port))
            .unwrap_or_default();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let port = start_redis_daemon(&dir, &extra);
        eprintln!(
            "private Redis on 127.0.0.1:{port} (TLS: {tls_port:?}), ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        PrivateRedis {
            port,
            tls_port,
            _guard: Mutex::new(guard),
        }
    }

    /// `redis://` on the plain port, or `rediss://` on the TLS port.
    pub fn url(&self) -> String {
        match self.tls_port {
            Some(port) => format!("rediss://127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }
}

/// Whether Redis on `port` answers PING.
fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    // A server that requires a password answers too.
    s.write_all(b"PING\r\n").is_ok()
        && s.read_exact(&mut buf).is_ok()
        && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
}

// ------------------------------------------------------------ redis tls

/// The certificates of the tests' TLS Redis servers, made once per process
/// with `openssl`: an authority, a certificate for 127.0.0.1 that the
/// servers present (to clients, and to each other on the cluster bus and
/// for replication), and a client certificate, both signed by the
/// authority. The servers require a client certificate
/// (`tls-auth-clients`, on by default).
#[derive(Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    _guard: Mutex<Child>,
}

/// The process's TLS files, made on first use.
pub fn tls_files() -> &'static TlsFiles {
    static FILES: OnceLock<TlsFiles> = OnceLock::new();
    FILES.get_or_init(TlsFiles::make)
}

impl TlsFiles {
    // The guard is never waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn make() -> TlsFiles {
        if !on_path("openssl") {
            panic!("openssl not found: install it (apt-get install openssl) to run the TLS tests");
        }
        let dir = scratch_dir("tls");
        let guard = guard(&format!("rm -rf {}", sh_quote(&dir.to_string_lossy())));
        let openssl = |args: &[&str]| {
            run_ok(
                Command::new("openssl").args(args).current_dir(&dir),
                &format!("openssl {args:?}"),
            );
        };
        let ec_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = ["-subj", "/CN=eva-hub test authority", "-days", "2"];
        let ca_ext = [
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ];
        let out = ["-keyout", "ca.key", "-out", "ca.crt"];
        openssl(&[&["req", "-x509"][..], &ec_key, &ca, &ca_ext, &out].concat());
        for (name, usage) in [
            ("server", "serverAuth,clientAuth"),
            ("client", "clientAuth"),
        ] {
            let ext = format!("{name}.ext");
            std::fs::write(
                dir.join(&ext),
                format!(
                    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"
                ),
            )
            .expect("write an openssl extension file");
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            let subject = format!("/CN=eva-hub test {name}");
            let request = ["req", "-keyout", &key, "-out", &csr, "-subj", &subject];
            openssl(&[&request[..], &ec_key].concat());
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &crt,
            ]);
        }
        TlsFiles {
            ca: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            _guard: Mutex::new(guard),
        }
    }

    /// A redis-server's arguments to listen with TLS on `port` as well.
    fn server_args(&self, port: u16) -> Vec<String> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&self.server_cert),
            "--tls-key-file".into(),
            path(&self.server_key),
            "--tls-ca-cert-file".into(),
            path(&self.ca),
        ]
    }

    /// redis-cli's arguments to speak TLS to those servers.
    fn cli_args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--tls".into(),
            "--cacert".into(),
            path(&self.ca),
            "--cert".into(),
            path(&self.client_cert),
            "--key".into(),
            path(&self.client_key),
        ]
    }
}

// -------------------------------------------------------- redis cluster

/// The Redis Cluster URL (fred's form, `redis-cluster://host:port?node=…`):
/// `EVA_TEST_REDIS_CLUSTER`, or this test binary's private cluster.
pub fn redis_cluster_url() -> String {
    match configured("EVA_TEST_REDIS_CLUSTER") {
        Some(url) => url,
        None => shared_cluster().url(),
    }
}

/// The binary's private Redis Cluster, started on first use and shared by
/// its tests (tests that kill nodes start their own).
pub fn shared_cluster() -> &'static PrivateCluster {
    static CLUSTER: OnceLock<PrivateCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| PrivateCluster::start(3))
}

/// The binary's private Redis Cluster that speaks TLS and requires a
/// password ([`PrivateCluster::start_secured`]), started on first use and
/// shared.
pub fn shared_secured_cluster() -> &'static PrivateCluster {
    static CLUSTER: OnceLock<PrivateCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| PrivateCluster::start_secured(3))
}

/// The password of [`PrivateCluster::start_secured`]'s nodes.
pub const SECURED_PASSWORD: &str = "eva-test-secret";

/// A Redis Cluster of this process's own on loopback ports: `masters`
/// masters with one replica each, from `redis-server --cluster-enabled
/// yes` and `redis-cli --cluster create` (one master and its replica are
/// joined by hand, for benchmarks). Failover is quick
/// (`cluster-node-timeout` 1 s) so tests can kill a master. Everything
/// stops when this process exits (the guard), or on [`PrivateCluster::stop`].
#[derive(Debug)]
pub struct PrivateCluster {
    /// Every node's client port, masters first as created.
    pub ports: Vec<u16>,
    /// Every node's TLS port, in the same order, for a cluster started
    /// with [`PrivateCluster::start_secured`]; empty otherwise.
    pub tls_ports: Vec<u16>,
    /// The nodes' password (`requirepass`), if they require one.
    password: Option<&'static str>,
    dir: PathBuf,
    guard: Mutex<Option<Child>>,
}

impl PrivateCluster {
    pub fn start(masters: usize) -> PrivateCluster {
        PrivateCluster::start_with(masters, None, None)
    }

    /// A cluster whose nodes speak TLS to clients, to each other (the
    /// cluster bus) and for replication ([`tls_files`]), requiring client
    /// certificates, and require [`SECURED_PASSWORD`] of clients and of
    /// each other (`requirepass`, `masterauth`). The plain ports stay open
    /// on loopback for the test's own `redis-cli` calls; a TLS client is
    /// told the TLS ports (`CLUSTER SLOTS`), and [`PrivateCluster::url`]
    /// names them, with the password.
    pub fn start_secured(masters: usize) -> PrivateCluster {
        PrivateCluster::start_with(masters, Some(tls_files()), Some(SECURED_PASSWORD))
    }

    // The guard is never waited for: it must outlive this process.
    #[allow(clippy::zombie_processes)]
    fn start_with(
        masters: usize,
        tls: Option<&TlsFiles>,
        password: Option<&'static str>,
    ) -> PrivateCluster {
        for bin in ["redis-server", "redis-cli"] {
            if !on_path(bin) {
                missing(
                    bin,
                    "redis-server redis-tools",
                    "EVA_TEST_REDIS_CLUSTER",
                    "redis-cluster://host:port?node=host:port",
                );
            }
        }
        let started = Instant::now();
        let dir = scratch_dir("redis-cluster");
        let stop = format!(
            "for p in {dir}/*/redis.pid; do [ -f \"$p\" ] && kill -9 \"$(cat \"$p\")\"; done; rm -rf {dir}",
            dir = sh_quote(&dir.to_string_lossy()),
        );
        let guard = guard(&stop);
        let (mut ports, mut tls_ports) = (Vec::new(), Vec::new());
        for i in 0..masters * 2 {
            let node = dir.join(format!("node{i}"));
            let (port, tls_port) = start_cluster_node(&node, tls, password);
            ports.push(port);
            tls_ports.extend(tls_port);
        }
        if masters == 1 {
            join_one_master(ports[0], ports[1], password);
        } else {
            // With tls-cluster, nodes meet over TLS: create it through the
            // TLS ports.
            let created = if tls.is_some() { &tls_ports } else { &ports };
            let addrs: Vec<String> = created.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            run_ok(
                Command::new("redis-cli")
                    .args(tls.map(TlsFiles::cli_args).unwrap_or_default())
                    .args(password_args(password))
                    .arg("--cluster")
                    .arg("create")
                    .args(&addrs)
                    .args(["--cluster-replicas", "1", "--cluster-yes"]),
                "redis-cli --cluster create",
            );
        }
        let cluster = PrivateCluster {
            ports,
            tls_ports,
            password,
            dir,
            guard: Mutex::new(Some(guard)),
        };
        cluster.wait_ok(Duration::from_secs(30));
        eprintln!(
            "private Redis Cluster ({masters} masters, {masters} replicas) on 127.0.0.1:{:?}, ready in {:.1} s",
            cluster.ports,
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    /// `redis-cluster://` naming every node, or `rediss-cluster://`
    /// naming their TLS ports.
    pub fn url(&self) -> String {
        let (scheme, ports) = if self.tls_ports.is_empty() {
            ("redis-cluster", &self.ports)
        } else {
            ("rediss-cluster", &self.tls_ports)
        };
        let auth = self.password.map(|p| format!(":{p}@")).unwrap_or_default();
        let mut url = format!("{scheme}://{auth}127.0.0.1:{}", ports[0]);
        for (i, port) in ports[1..].iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{port}"));
        }
        url
    }

    /// `redis-cli -p port args…`'s output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        redis_cli(port, self.password, args)
    }

    /// The ports of the nodes that are masters with slots now.
    pub fn masters(&self) -> Vec<u16> {
        let live = self
            .ports
            .iter()
            .copied()
            .find(|p| ping(*p))
            .expect("a live node");
        self.cli(live, &["cluster", "nodes"])
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail") && l.split(' ').count() > 8)
            .filter_map(|l| {
                let addr = l.split(' ').nth(1)?;
                addr.split('@').next()?.rsplit(':').next()?.parse().ok()
            })
            .collect()
    }

    /// Waits until every live node reports `cluster_state:ok` (the
    /// masters with slots cover all 16384) and every live replica's link to
    /// its master is up.
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let live: Vec<u16> = self.ports.iter().copied().filter(|p| ping(*p)).collect();
            let ok = !live.is_empty()
                && live.iter().all(|p| {
                    let replication = self.cli(*p, &["info", "replication"]);
                    self.cli(*p, &["cluster", "info"])
                        .contains("cluster_state:ok")
                        && (replication.contains("role:master")
                            || replication.contains("master_link_status:up"))
                });
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the Redis Cluster did not become ok: {}",
                    self.cli(
                        live.first().copied().unwrap_or(self.ports[0]),
                        &["cluster", "nodes"]
                    )
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves `slots` hash slots from the first master to the second with
    /// `redis-cli --cluster reshard`, keys and all, then waits until the
    /// cluster is ok.
    pub fn reshard(&self, slots: usize) {
        let masters = self.masters();
        let id = |port: u16| self.cli(port, &["cluster", "myid"]).trim().to_owned();
        let (from, to) = (id(masters[0]), id(masters[1]));
        run_ok(
            Command::new("redis-cli")
                .args(["--cluster", "reshard", &format!("127.0.0.1:{}", masters[0])])
                .args(["--cluster-from", &from, "--cluster-to", &to])
                .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"]),
            "redis-cli --cluster reshard",
        );
        self.wait_ok(Duration::from_secs(30));
    }

    /// Waits until the killed master on `port` is marked failed, a replica
    /// serves its slots and the cluster is ok again.
    pub fn wait_failover(&self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        while self.masters().contains(&port) || self.masters().len() < 3 {
            if Instant::now() > deadline {
                let live = self
                    .ports
                    .iter()
                    .copied()
                    .find(|p| ping(*p))
                    .unwrap_or(port);
                panic!(
                    "no replica took the place of the master on {port}: {}",
                    self.cli(live, &["cluster", "nodes"])
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.wait_ok(deadline.saturating_duration_since(Instant::now()));
    }

    /// Kills the node on `port` outright (SIGKILL), as a crash.
    pub fn kill(&self, port: u16) {
        let i = self
            .ports
            .iter()
            .position(|p| *p == port)
            .expect("a node of this cluster");
        let pidfile = self.dir.join(format!("node{i}")).join("redis.pid");
        let pid = std::fs::read_to_string(&pidfile).expect("the node's pid file");
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        let _ = std::fs::remove_file(&pidfile);
    }

    /// Stops every node now and removes the directory.
    pub fn stop(&self) {
        if let Some(mut guard) = self.guard.lock().unwrap_or_else(|e| e.into_inner()).take() {
            drop(guard.stdin.take());
            let _ = guard.wait();
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// redis-cli's arguments to authenticate with `password`, if any.
fn password_args(password: Option<&str>) -> Vec<String> {
    match password {
        Some(p) => vec!["-a".into(), p.into(), "--no-auth-warning".into()],
        None => Vec::new(),
    }
}

/// `redis-cli -p port args…`'s output (the plain port, on loopback).
fn redis_cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(password_args(password))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes a cluster of one master (every slot) and its replica, which
/// `redis-cli --cluster create` will not (it wants three masters): the
/// same server mode, replication included, as each master of a larger
/// cluster, for comparisons with it.
fn join_one_master(master: u16, replica: u16, password: Option<&str>) {
    let redis_cli = |port, args: &[&str]| redis_cli(port, password, args);
    let ok = |out: String, what: &str| {
        assert!(out.trim() == "OK", "{what} failed: {out}");
    };
    ok(
        redis_cli(master, &["cluster", "addslotsrange", "0", "16383"]),
        "CLUSTER ADDSLOTSRANGE",
    );
    let bus = redis_cli(master, &["config", "get", "cluster-port"]);
    let bus = bus.lines().nth(1).unwrap_or_default().trim().to_owned();
    ok(
        redis_cli(
            replica,
            &["cluster", "meet", "127.0.0.1", &master.to_string(), &bus],
        ),
        "CLUSTER MEET",
    );
    let id = redis_cli(master, &["cluster", "myid"]).trim().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The replica must know the master before it can follow it.
    loop {
        let out = redis_cli(replica, &["cluster", "replicate", &id]);
        if out.trim() == "OK" {
            return;
        }
        assert!(Instant::now() < deadline, "CLUSTER REPLICATE failed: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts one cluster-enabled `redis-server` in `dir` (client port and
/// cluster bus port both chosen free) and returns its client port, and its
/// TLS port with `tls`; with `password`, it requires that password of
/// its clients and uses it with its master.
fn start_cluster_node(
    dir: &Path,
    tls: Option<&TlsFiles>,
    password: Option<&str>,
) -> (u16, Option<u16>) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let bus = free_port().to_string();
    let tls_port = tls.map(|_| free_port());
    let mut tls_args = Vec::new();
    if let (Some(tls), Some(port)) = (tls, tls_port) {
        tls_args = tls.server_args(port);
        tls_args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
    }
    let mut args = vec![
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        &bus,
        "--cluster-node-timeout",
        "1000",
        "--cluster-config-file",
        "nodes.conf",
        // Replicas sync at once, so a master killed early has a
        // replica ready to take over.
        "--repl-diskless-sync-delay",
        "0",
    ];
    args.extend(tls_args.iter().map(String::as_str));
    if let Some(password) = password {
        args.extend(["--requirepass", password, "--masterauth", password]);
    }
    (start_redis_daemon(dir, &args), tls_port)
}

/// Starts a daemonized `redis-server` without persistence in `dir`
/// (`redis.pid`, `redis.log`) on a free loopback port, with `extra`
/// arguments, and returns the port once it answers PING. Retries on
/// another port when the chosen one was taken in between.
fn start_redis_daemon(dir: &Path, extra: &[&str]) -> u16 {
    let pidfile = dir.join("redis.pid");
    let log = dir.join("redis.log");
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let status = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(extra)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .arg("--pidfile")
            .arg(&pidfile)
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run redis-server: {e}"));
        if !status.success() {
            last = format!("redis-server exited with {status}: {}", tail(&log));
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // A daemon that could not bind exits after writing its pid
            // file.
            let gone = std::fs::read_to_string(&pidfile)
                .is_ok_and(|pid| !Path::new(&format!("/proc/{}", pid.trim())).exists());
            if gone {
                break;
            }
            if ping(port) {
                return port;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last = format!("redis-server did not answer PING: {}", tail(&log));
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            let _ = std::fs::remove_file(&pidfile);
        }
    }
    panic!(
        "could not start a private redis-server in {}: {last}",
        dir.display()
    );
}

//! Servers a drill starts for itself so that it can kill them: a private
//! PostgreSQL (initdb in a temporary directory, a free loopback port) and
//! a private redis-server. The machine's own servers are left alone.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::hubproc;

fn run(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn scratch(what: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("crash-drill-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A PostgreSQL of the drill's own: initdb in a temporary directory, on a
/// free loopback port, run as `postgres` when the drill runs as root.
pub struct PrivatePostgres {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    port: u16,
    run_as: Option<String>,
}

impl PrivatePostgres {
    pub fn start() -> anyhow::Result<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .context("no initdb under /usr/lib/postgresql/*/bin: install postgresql")?;
        let dir = scratch("postgres")?;
        let root = std::fs::read_to_string("/proc/self/status")?
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        let run_as = root.then(|| "postgres".to_owned());
        if let Some(u) = &run_as {
            run(std::process::Command::new("chown")
                .args([u.as_str()])
                .arg(&dir))?;
        }
        let pg = PrivatePostgres {
            bin,
            dir,
            port: hubproc::free_port()?,
            run_as,
        };
        run(pg
            .command("initdb")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]))?;
        pg.pg_ctl("start")?;
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn command(&self, program: &str) -> std::process::Command {
        let exe = self.bin.join(program);
        let mut c = match &self.run_as {
            Some(u) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", u, "--"]).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        c.stdin(std::process::Stdio::null());
        c
    }

    fn pg_ctl(&self, action: &str) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-o", &options, "-m", "immediate", "-w", "-t", "60", action]))
    }

    /// SIGKILL to the postmaster, then a start, which recovers from the
    /// WAL (retried while the killed server's backends still exit).
    pub async fn kill_and_restart(&self) -> anyhow::Result<()> {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))?;
        let pid = pid
            .lines()
            .next()
            .context("empty postmaster.pid")?
            .trim()
            .to_owned();
        run(std::process::Command::new("kill").args(["-9", &pid]))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.pg_ctl("start") {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server of the drill's own, keeping nothing on disk.
pub struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    pub fn start() -> anyhow::Result<PrivateRedis> {
        let port = hubproc::free_port()?;
        Ok(PrivateRedis {
            port,
            child: Self::spawn(port)?,
        })
    }

    fn spawn(port: u16) -> anyhow::Result<std::process::Child> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("cannot start redis-server: install redis-server")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, then a new, empty server on the same port.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port)?;
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

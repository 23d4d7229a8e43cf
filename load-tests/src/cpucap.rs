//! A CPU budget for a process: a cgroup (v1 `cpu` controller) with a CFS
//! quota, so that a server gets the same fraction of a core however many
//! other processes share the machine.
//!
//! broker-bench uses it to make Redis the bound on a 2-core machine: with
//! every redis-server held to, say, 0.1 core, one Redis and a cluster of
//! three masters compare as they would with a core per server, and the
//! hub nodes' own CPU is left over for them. It needs write access to
//! `/sys/fs/cgroup/cpu` (root, as in CI); without it the bench says so and
//! stops instead of measuring something else.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where the cgroup v1 `cpu` controller is mounted.
const CPU_CONTROLLER: &str = "/sys/fs/cgroup/cpu";

/// The CFS period. The quota is a fraction of it; a short period keeps a
/// throttled server's pauses short (the kernel's smallest quota is 1 ms,
/// so 20 ms allows budgets down to 0.05 core).
const PERIOD_US: u64 = 20_000;
const MIN_QUOTA_US: u64 = 1_000;

/// A process held to `cores` of CPU. The cgroup is removed on drop (its
/// process moved back to the root group first, if it still runs).
#[derive(Debug)]
pub struct CpuCap {
    dir: PathBuf,
    pid: u32,
}

impl CpuCap {
    /// Holds process `pid` (and the threads it starts from now on) to
    /// `cores` of CPU, e.g. 0.1 for a tenth of a core.
    pub fn apply(pid: u32, cores: f64) -> anyhow::Result<CpuCap> {
        let quota = (cores * PERIOD_US as f64).round() as u64;
        anyhow::ensure!(
            quota >= MIN_QUOTA_US,
            "a CPU cap of {cores} core is below the kernel's smallest quota ({} core)",
            MIN_QUOTA_US as f64 / PERIOD_US as f64
        );
        let root = Path::new(CPU_CONTROLLER);
        anyhow::ensure!(
            root.join("cgroup.procs").exists(),
            "no cgroup v1 cpu controller at {CPU_CONTROLLER}: cannot cap a server's CPU here"
        );
        let dir = root.join(format!("eva-bench-{}-{pid}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {} (capping CPU needs root)", dir.display()))?;
        let cap = CpuCap { dir, pid };
        cap.write("cpu.cfs_period_us", PERIOD_US)?;
        cap.write("cpu.cfs_quota_us", quota)?;
        // cgroup.procs moves every thread of the process (redis-server
        // starts its background threads before the bench finds it).
        cap.write("cgroup.procs", pid)?;
        Ok(cap)
    }

    fn write(&self, file: &str, value: impl std::fmt::Display) -> anyhow::Result<()> {
        let path = self.dir.join(file);
        std::fs::write(&path, value.to_string())
            .with_context(|| format!("cannot write {value} to {}", path.display()))
    }

    /// Periods in which the process used its whole budget and waited, and
    /// all periods, since the cap was applied.
    pub fn throttled(&self) -> (u64, u64) {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let field = |name: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        (field("nr_throttled"), field("nr_periods"))
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // A cgroup that holds a process cannot be removed: hand it back
        // to the root group first (it fails harmlessly if it has exited).
        let _ = std::fs::write(
            Path::new(CPU_CONTROLLER).join("cgroup.procs"),
            self.pid.to_string(),
        );
        let _ = std::fs::remove_dir(&self.dir);
    }
}

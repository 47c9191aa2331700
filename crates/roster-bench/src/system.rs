//! What the report says about the machine and the processes measured. Linux only: the figures
//! come from `/proc` (no crate reads `VmHWM`, the peak resident set, which the fan-out budget
//! needs), and a missing file reads as "unknown" rather than failing a run.

use serde::Serialize;

/// The machine a run happened on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu: String,
    /// Cores this process may use.
    pub cores: usize,
    /// Physical memory in MiB.
    pub memory_mib: u64,
    /// The 1-, 5- and 15-minute load averages when the run started.
    pub load_at_start: [f64; 3],
    /// The same when the run ended: other work on the machine shows here.
    pub load_at_end: [f64; 3],
    /// `uname -r`-like kernel release.
    pub kernel: String,
    /// The commit of the working tree, when it is a git checkout.
    pub commit: Option<String>,
    /// `release` or `debug`: figures of a debug build mean little.
    pub build: &'static str,
}

impl Machine {
    /// Describes this machine now (the end load is filled in by [`Machine::finish`]).
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = field_kib(&meminfo, "MemTotal:").unwrap_or(0) / 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let load = load_average();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_mib,
            load_at_start: load,
            load_at_end: load,
            kernel,
            commit,
            build: if cfg!(debug_assertions) { "debug" } else { "release" },
        }
    }

    /// Records the load average at the end of the run.
    pub fn finish(&mut self) {
        self.load_at_end = load_average();
    }
}

/// The three load averages of `/proc/loadavg`.
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().unwrap_or(f64::NAN));
    [
        parts.next().unwrap_or(f64::NAN),
        parts.next().unwrap_or(f64::NAN),
        parts.next().unwrap_or(f64::NAN),
    ]
}

/// Resident memory of a process: now and its peak so far, in KiB.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// `VmRSS`.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident set since the process started.
    pub peak_rss_kib: u64,
    /// `RssAnon`: the private part of `VmRSS` (heap, stacks): what the process itself holds.
    pub anon_kib: u64,
    /// `RssFile`: the file pages in `VmRSS`, mostly the SQLite file read through its memory map
    /// (the OS page cache, shared, reclaimable), which a store with `mmap_size` counts as RSS.
    pub file_kib: u64,
}

/// The memory of process `pid`, if it still runs.
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(Memory {
        rss_kib: field_kib(&status, "VmRSS:")?,
        peak_rss_kib: field_kib(&status, "VmHWM:")?,
        anon_kib: field_kib(&status, "RssAnon:")?,
        file_kib: field_kib(&status, "RssFile:")?,
    })
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // fixed: utime and stime are the 12th and 13th of them.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Clock ticks per second of `/proc/*/stat` times; 100 on every Linux configuration Roster
/// targets (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    100.0
}

//! Where the CPU went while a load was measured, read from Linux's `/proc` (elsewhere nothing
//! is reported): this process (the load generator, and the baseline server when that is the
//! one measured: it runs in this process), the server under test (`--server-pid`), every
//! `postgres` process of this machine (a local database; a remote one is not seen), and how
//! busy the whole machine was. Each is given as milliseconds of CPU per request, so that two
//! runs of different speed compare. `/proc` counts in ticks of 1/100 s (`USER_HZ`, 100 on
//! every Linux architecture), which is why a figure is only meaningful over thousands of
//! requests.

use serde::Serialize;
use std::collections::HashMap;

const TICK_MS: f64 = 10.0;

/// CPU ticks read at one moment.
pub struct Snapshot {
    own: u64,
    server: Option<u64>,
    postgres: HashMap<u32, u64>,
    /// (busy, total) ticks of all cores.
    machine: (u64, u64),
}

#[derive(Serialize, Clone, Copy)]
pub struct Cpu {
    /// This process: the load generator (and the baseline server when it was measured).
    pub loadgen_ms_per_req: f64,
    /// The server under test, when its pid was given.
    pub server_ms_per_req: Option<f64>,
    /// Every local `postgres` process (0 with SQLite).
    pub postgres_ms_per_req: f64,
    /// The share of all cores that was busy, in percent, and how many cores there are.
    pub machine_busy_pct: f64,
    pub cores: usize,
}

/// utime + stime of a process, in ticks.
fn ticks_of(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn postgres_ticks() -> HashMap<u32, u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        let pid: u32 = name.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        comm.starts_with("postgres")
            .then(|| ticks_of(&name).map(|t| (pid, t)))
            .flatten()
    })
    .collect()
}

/// (busy, total) ticks of the machine, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .take(8) // user nice system idle iowait irq softirq steal (guest is inside user)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn cores() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|s| {
            let per_core = |l: &&str| l.starts_with("cpu") && !l.starts_with("cpu ");
            s.lines().filter(per_core).count()
        })
        .unwrap_or(0)
}

/// `None` where there is no `/proc`.
pub fn snapshot(server_pid: Option<u32>) -> Option<Snapshot> {
    Some(Snapshot {
        own: ticks_of("self")?,
        server: server_pid.and_then(|p| ticks_of(&p.to_string())),
        postgres: postgres_ticks(),
        machine: machine_ticks()?,
    })
}

/// What was used between `before` and now, per request. A `postgres` process that started
/// meanwhile counts from zero; one that ended meanwhile is missed.
pub fn since(before: &Snapshot, server_pid: Option<u32>, requests: usize) -> Option<Cpu> {
    let now = snapshot(server_pid)?;
    let per_req = |ticks: u64| ticks as f64 * TICK_MS / requests.max(1) as f64;
    let pg: u64 = now
        .postgres
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0)))
        .sum();
    let server = match (before.server, now.server) {
        (Some(a), Some(b)) => Some(per_req(b.saturating_sub(a))),
        _ => None,
    };
    let busy = now.machine.0.saturating_sub(before.machine.0);
    let total = now.machine.1.saturating_sub(before.machine.1).max(1);
    Some(Cpu {
        loadgen_ms_per_req: per_req(now.own.saturating_sub(before.own)),
        server_ms_per_req: server,
        postgres_ms_per_req: per_req(pg),
        machine_busy_pct: 100.0 * busy as f64 / total as f64,
        cores: cores(),
    })
}

/// One line for the human report.
pub fn render(c: &Cpu) -> String {
    let server = c
        .server_ms_per_req
        .map(|s| format!("  server {s:.3}"))
        .unwrap_or_default();
    format!(
        "cpu ms/req  loadgen {:.3}{server}  postgres {:.3}  (machine {:.0}% busy, {} cores)",
        c.loadgen_ms_per_req, c.postgres_ms_per_req, c.machine_busy_pct, c.cores
    )
}

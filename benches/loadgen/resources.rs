//! CPU, iowait and disk accounting over a phase, the peer harness's way:
//! snapshots of `/proc` before and after, differenced.
//!
//! - server CPU: the server process and all its descendants, from
//!   `/proc/<pid>/stat` (utime, stime and the children's);
//! - client CPU: this process;
//! - other CPU: the machine's busy time minus both, so a disturbed phase
//!   shows up (it should be near 0);
//! - iowait and busy time from `/proc/stat`, disk writes from
//!   `/proc/diskstats` for the device holding the data.
//!
//! CPU figures are in % of one core (200% is a whole 2-core machine).
//! Linux reports process times in USER_HZ ticks, which is 100 per second
//! on every architecture Linux exposes to user space, so ticks per second
//! of wall time is directly a percentage.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Whose CPU is reported as the server's.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    /// A separate process tree, rooted at this pid.
    Process(u32),
    /// This process itself (the in-process raw reference); the client's
    /// own share is then reported as zero.
    ThisProcess,
}

/// The block device whose writes are counted.
#[derive(Debug, Clone)]
pub struct DiskDevice {
    name: String,
}

impl DiskDevice {
    /// The device holding `path`, if `/proc/diskstats` lists it (not, for
    /// example, on tmpfs or an overlay filesystem).
    pub fn holding(path: &Path) -> Option<Self> {
        let dev = std::fs::metadata(path).ok()?.dev();
        // glibc's encoding of dev_t.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
        stats.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let matches =
                fields.len() > 3 && fields[0].parse() == Ok(major) && fields[1].parse() == Ok(minor);
            matches.then(|| Self { name: fields[2].to_string() })
        })
    }

    /// The device's name in `/proc/diskstats`, such as `vda`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    client_ticks: u64,
    server_ticks: u64,
    machine_busy: u64,
    machine_iowait: u64,
    machine_total: u64,
    disk_writes: u64,
    disk_sectors_written: u64,
    disk_flushes: u64,
}

impl Snapshot {
    /// Reads the counters now.
    pub fn take(server: Server, disk: Option<&DiskDevice>) -> Self {
        let mut snapshot = Self { client_ticks: own_ticks(), ..Self::default() };
        snapshot.server_ticks = match server {
            Server::Process(pid) => tree_ticks(pid),
            Server::ThisProcess => snapshot.client_ticks,
        };
        if let Some(cpu) = machine_cpu() {
            // user nice system idle iowait irq softirq steal
            snapshot.machine_total = cpu.iter().take(8).sum();
            snapshot.machine_iowait = cpu[4];
            snapshot.machine_busy = snapshot.machine_total - cpu[3] - cpu[4];
        }
        if let Some(stats) = disk.and_then(disk_stats) {
            snapshot.disk_writes = stats[4];
            snapshot.disk_sectors_written = stats[6];
            snapshot.disk_flushes = stats.get(14).copied().unwrap_or(0);
        }
        snapshot
    }
}

/// The `resources` object of a phase record, between two snapshots.
pub fn usage(before: &Snapshot, after: &Snapshot, wall_s: f64, server: Server) -> Value {
    let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / wall_s;
    let machine_total = after.machine_total.saturating_sub(before.machine_total).max(1) as f64;
    let of_machine = |a: u64, b: u64| 200.0 * b.saturating_sub(a) as f64 / machine_total;
    let server_cpu = per_s(before.server_ticks, after.server_ticks);
    let client_cpu = match server {
        Server::Process(_) => per_s(before.client_ticks, after.client_ticks),
        Server::ThisProcess => 0.0,
    };
    let busy = of_machine(before.machine_busy, after.machine_busy);
    json!({
        "server_cpu_pct": server_cpu,
        "client_cpu_pct": client_cpu,
        "other_cpu_pct": busy - server_cpu - client_cpu,
        "machine_busy_pct_of_200": busy,
        "machine_iowait_pct_of_200": of_machine(before.machine_iowait, after.machine_iowait),
        "disk_write_ios_per_s": per_s(before.disk_writes, after.disk_writes),
        "disk_flushes_per_s": per_s(before.disk_flushes, after.disk_flushes),
        "disk_write_MB_per_s": per_s(before.disk_sectors_written, after.disk_sectors_written) * 512.0 / 1e6,
    })
}

/// Below this share of the machine busy, it counts as idle: the harness's
/// 15% of a 2-core machine.
const IDLE_BUSY_FRACTION: f64 = 0.075;

/// Waits until the machine has been idle for a second, or `limit` has
/// passed (then says so: `other_cpu_pct` will show the disturbance).
pub async fn wait_for_idle(limit: Duration) {
    if limit.is_zero() {
        return;
    }
    let deadline = Instant::now() + limit;
    let mut told = false;
    loop {
        let Some(before) = machine_cpu() else { return };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(after) = machine_cpu() else { return };
        let total: u64 = after.iter().take(8).sum::<u64>().saturating_sub(before.iter().take(8).sum());
        let idle = (after[3] + after[4]).saturating_sub(before[3] + before[4]);
        let busy = total.saturating_sub(idle) as f64 / total.max(1) as f64;
        if busy < IDLE_BUSY_FRACTION {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "machine still busy ({:.0}% of 200); measuring anyway, see other_cpu_pct",
                busy * 200.0
            );
            return;
        }
        if !told {
            eprintln!("machine busy ({:.0}% of 200); waiting up to {limit:?} for it to settle", busy * 200.0);
            told = true;
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name, starting with
/// the state: index 1 is the parent pid, 11..=14 utime, stime, cutime, cstime.
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; it ends at the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(|field| field.parse::<i64>().map_or(0, |v| v.max(0) as u64)).collect())
}

fn own_ticks() -> u64 {
    stat_fields("self").filter(|f| f.len() > 12).map_or(0, |f| f[11] + f[12])
}

/// CPU ticks of `root` and every descendant, including reaped children.
fn tree_ticks(root: u32) -> u64 {
    let mut parent_of = HashMap::new();
    let mut ticks_of = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Some(f) = stat_fields(&pid.to_string()).filter(|f| f.len() > 14) {
            parent_of.insert(pid, u32::try_from(f[1]).unwrap_or(0));
            ticks_of.insert(pid, f[11] + f[12] + f[13] + f[14]);
        }
    }
    ticks_of
        .iter()
        .filter(|&(&pid, _)| {
            let mut current = pid;
            // Process trees of servers are shallow; the bound guards against cycles
            // from pids reused between reads.
            for _ in 0..16 {
                if current == root {
                    return true;
                }
                match parent_of.get(&current) {
                    Some(&parent) if parent != 0 => current = parent,
                    _ => return false,
                }
            }
            false
        })
        .map(|(_, ticks)| ticks)
        .sum()
}

/// The first line of `/proc/stat`: the machine's CPU time by state.
fn machine_cpu() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> =
        stat.lines().next()?.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    (cpu.len() >= 8).then_some(cpu)
}

/// The counters of `disk` in `/proc/diskstats`, from "reads completed" on.
fn disk_stats(disk: &DiskDevice) -> Option<Vec<u64>> {
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 10 && fields[2] == disk.name)
            .then(|| fields[3..].iter().map(|v| v.parse().unwrap_or(0)).collect())
    })
}

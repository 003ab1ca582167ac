//! Smoke test of the load generator: `loadgen --quick` starts its own node
//! (the `consensusdb` binary next to it) on an ephemeral loopback port,
//! runs every phase and the raw reference, and must report no errors and
//! every event stored. It checks that figures are sane, never how fast.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
/// `--quick` takes well under a minute; this bounds a hung run.
const TIME_LIMIT: Duration = Duration::from_secs(120);
/// `--quick`'s event count.
const QUICK_EVENTS: u64 = 20_000;

/// The loadgen process group (loadgen and the node it starts), killed
/// together if the test ends before they do.
struct ProcessGroup(Child);

impl ProcessGroup {
    /// Its exit status, or `None` if it is still running after `limit`.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("waits for loadgen") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // The group id is loadgen's pid (process_group(0)); the shell's
            // builtin kill reaches the whole group.
            let group = format!("-{}", self.0.id());
            let _ = Command::new("sh").args(["-c", "kill -KILL -- \"$1\"", "sh", &group]).status();
            let _ = self.0.wait();
        }
    }
}

fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("loadgen wrote its results file");
    text.lines().map(|line| serde_json::from_str(line).expect("each line is a JSON record")).collect()
}

fn find<'a>(records: &'a [Value], system: &str, label: &str, phase: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["system"] == system && r["label"] == label && r["phase"] == phase).collect()
}

fn number(record: &Value, field: &str) -> f64 {
    record[field].as_f64().unwrap_or_else(|| panic!("{field} is a number in {record}"))
}

/// One `loadgen --quick` at a time: each runs fsynced loads and a 3-node
/// cluster, and the lag figures it checks assume the machine is not
/// shared with another run.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `loadgen --quick` with `args` in `dir`; returns its exit status
/// and what it printed on stderr (also echoed, for a failing test's log).
fn run_quick(dir: &Path, args: &[&str]) -> (ExitStatus, String) {
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let node = Path::new(LOADGEN).with_file_name("consensusdb");
    assert!(
        node.exists(),
        "{} is missing: build the node with `cargo build --release --workspace --bins` \
         (`cargo test --release --workspace --all-targets` builds it too)",
        node.display()
    );
    let stderr_path = dir.join("loadgen.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("creates the stderr file");
    let mut loadgen = ProcessGroup(
        Command::new(LOADGEN)
            .arg("--quick")
            .arg("--out")
            .arg(dir.join("results.jsonl"))
            .arg("--work-dir")
            .arg(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("starts loadgen"),
    );
    let status = loadgen.wait(TIME_LIMIT);
    let stderr = std::fs::read_to_string(&stderr_path).expect("reads loadgen's stderr");
    eprintln!("{stderr}");
    let status = status.unwrap_or_else(|| panic!("loadgen --quick did not finish within {TIME_LIMIT:?}"));
    (status, stderr)
}

/// The pids in loadgen's lines "node pid N serving ..." and "restarted the
/// node (pid N) ...", in order.
fn node_pids(stderr: &str) -> Vec<u32> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line
                .strip_prefix("loadgen: node pid ")
                .or_else(|| line.strip_prefix("loadgen: restarted the node (pid "))?;
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

#[test]
fn quick_run_reports_every_phase_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _) = run_quick(dir.path(), &[]);
    let records = records(&dir.path().join("results.jsonl"));
    for record in &records {
        println!("{record}");
    }
    assert!(status.success(), "loadgen exited with {status}");

    for record in &records {
        assert_eq!(record["errors"].as_u64().unwrap_or(0), 0, "errors in {record}");
        assert!(number(record, "unix_time") > 0.0);
    }
    let phases: BTreeSet<(String, String, String)> = records
        .iter()
        .map(|r| {
            let text = |field: &str| r[field].as_str().unwrap_or("").to_string();
            (text("label"), text("phase"), text("mode"))
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        ("rocksdb-raw-sync", "load", "single"),
        ("rocksdb-raw-sync", "du", ""),
        ("consensusdb-sync", "load", "single"),
        ("consensusdb-sync", "count", ""),
        ("consensusdb-sync", "du", ""),
        ("consensusdb-sync", "r1", "single"),
        ("consensusdb-sync", "r2", "single"),
        ("consensusdb-sync", "r3", "single"),
        ("rocksdb-raw-sync", "load", "batch100"),
        ("rocksdb-raw-sync-batch", "du", ""),
        ("consensusdb-sync", "load", "batch100"),
        ("consensusdb-sync-batch", "count", ""),
        ("consensusdb-sync-batch", "du", ""),
        ("consensusdb-sync", "catchup", ""),
        ("consensusdb-sync", "bootstrap", ""),
        ("consensusdb-sync", "lag", ""),
    ]
    .into_iter()
    .map(|(l, p, m)| (l.to_string(), p.to_string(), m.to_string()))
    .collect();
    assert_eq!(phases, expected);

    for (system, label) in [("consensusdb", "consensusdb-sync"), ("rocksdb-raw", "rocksdb-raw-sync")] {
        for load in find(&records, system, label, "load") {
            assert_eq!(number(load, "acked_events"), QUICK_EVENTS as f64, "{load}");
            assert!(number(load, "events_per_s") > 0.0, "{load}");
            assert!(number(&load["latency_per_ack"], "p50_us") > 0.0, "{load}");
            assert!(number(load, "server_cpu_us_per_event") >= 0.0, "{load}");
        }
    }
    for load in find(&records, "consensusdb", "consensusdb-sync", "load") {
        assert!(number(load, "ratio_vs_raw") > 0.0, "{load}");
    }
    for label in ["consensusdb-sync", "consensusdb-sync-batch"] {
        for count in find(&records, "consensusdb", label, "count") {
            assert_eq!(count["stored_events"].as_u64(), Some(QUICK_EVENTS), "{count}");
        }
    }
    for phase in ["r1", "r2", "r3"] {
        for read in find(&records, "consensusdb", "consensusdb-sync", phase) {
            assert!(number(read, "ops_per_s") > 0.0, "{read}");
            assert!(number(read, "events_per_op") > 0.0, "{read}");
        }
    }
    // Catch-up pulled every event; the lag phase's replicas applied every
    // acknowledged write, and each received every entry about once (a full
    // mesh must not ship it once per peer). No speed is asserted.
    for phase in ["catchup", "bootstrap"] {
        for catchup in find(&records, "consensusdb", "consensusdb-sync", phase) {
            assert_eq!(catchup["events"].as_u64(), Some(QUICK_EVENTS), "{catchup}");
            assert!(number(catchup, "events_per_s") > 0.0, "{catchup}");
        }
    }
    for lag in find(&records, "consensusdb", "consensusdb-sync", "lag") {
        let events = number(lag, "events");
        assert!(events > 0.0 && number(lag, "acked_events") == events, "{lag}");
        assert_eq!(number(&lag["lag"], "n"), 2.0 * events, "both replicas applied every write: {lag}");
        for replica in lag["shipped"].as_array().expect("shipped per replica") {
            // N−1 shipping would be 2.0; a stray duplicate while a stream
            // learns its exclusions is tolerated. The writer's log also
            // holds one entry no client wrote: the tenant's data key.
            let received = number(replica, "entries_received_per_event");
            assert!((1.0..1.1 + 1.0 / events).contains(&received), "{lag}");
        }
    }
    for du in records.iter().filter(|r| r["phase"] == "du") {
        assert!(number(du, "du_alloc_bytes") > 0.0, "{du}");
        assert!(number(du, "alloc_bytes_per_event") > 0.0, "{du}");
    }
}

/// `--restart-before-reads`: the single load's node is stopped and started
/// again between the load and the reads, on the same address, so the reads
/// still find every event and the follower still catches up from it.
#[test]
fn reads_after_a_restart_find_the_load_and_the_follower_still_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) =
        run_quick(dir.path(), &["--phases", "single,r3,catchup", "--restart-before-reads"]);
    assert!(status.success(), "loadgen exited with {status}");
    let pids = node_pids(&stderr);
    assert_eq!(pids.len(), 2, "one node started, then restarted: {stderr}");
    assert_ne!(pids[0], pids[1], "the restart is a new process");

    let records = records(&dir.path().join("results.jsonl"));
    let phases: BTreeSet<&str> = records.iter().filter_map(|r| r["phase"].as_str()).collect();
    assert_eq!(phases, BTreeSet::from(["load", "count", "du", "r3", "catchup", "bootstrap"]));
    for record in &records {
        assert_eq!(record["errors"].as_u64().unwrap_or(0), 0, "errors in {record}");
    }
    for read in find(&records, "consensusdb", "consensusdb-sync", "r3") {
        assert!(number(read, "events_per_op") > 0.0, "{read}");
    }
    // The catch-up and bootstrap records exist only once the follower's
    // frontier reached the restarted node's (the run fails otherwise), so
    // their presence in `phases` above is the check that it caught up.
}

#[test]
fn a_restart_before_reads_is_refused_for_a_node_this_run_did_not_start_or_without_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_quick(
        dir.path(),
        &["--server", "127.0.0.1:9", "--server-pid", "1", "--phases", "r1", "--restart-before-reads"],
    );
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("--restart-before-reads"), "the error names the option: {stderr}");

    // Nor is it taken silently when there are no reads to restart for.
    let (status, stderr) = run_quick(dir.path(), &["--phases", "single", "--restart-before-reads"]);
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("add r1, r2 or r3"), "the error says what is missing: {stderr}");
}

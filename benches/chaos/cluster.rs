//! The three nodes across their restarts: which process runs for each
//! node, its clock skew, and how many times it was started (a node's
//! generation, so status polls can be told apart by process lifetime).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::grpc;
use crate::node::{Launch, NodeProcess, Pids};
use crate::topology::{NODES, Topology};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A clean stop waits up to the shutdown grace (3 s), then flushes.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// Starts that fail (a port taken meanwhile, say) are retried this often.
const START_ATTEMPTS: u32 = 3;

/// One node's process and settings.
struct Slot {
    process: Option<NodeProcess>,
    skew_ms: i64,
}

/// The cluster under test.
pub struct Cluster {
    /// Where everything listens.
    pub topology: Topology,
    launches: Vec<Launch>,
    slots: Vec<Mutex<Slot>>,
    /// Starts so far, per node: generation g is the node's g-th process.
    generations: Vec<AtomicU64>,
    pids: Pids,
    started: Instant,
}

impl Cluster {
    /// The cluster's settings; nothing runs yet.
    pub fn new(binary: &Path, scratch: &Path, topology: Topology, pids: Pids) -> Self {
        let launches = (0..NODES)
            .map(|i| {
                let node = topology.nodes[i];
                Launch {
                    binary: binary.to_path_buf(),
                    data_dir: scratch.join(format!("node{i}-data")),
                    log: scratch.join(format!("node{i}.log")),
                    grpc: node.grpc,
                    http: node.http,
                    advertise: node.proxy,
                    source: node.source,
                    // Node 0 starts the cluster alone; the others join it.
                    peers: if i == 0 { Vec::new() } else { topology.peers_of(i) },
                }
            })
            .collect();
        Self {
            topology,
            launches,
            slots: (0..NODES).map(|_| Mutex::new(Slot { process: None, skew_ms: 0 })).collect(),
            generations: (0..NODES).map(|_| AtomicU64::new(0)).collect(),
            pids,
            started: Instant::now(),
        }
    }

    /// Seconds since the cluster was set up, for progress lines.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The generation (start count) of node `i`'s current or last process.
    pub fn generation(&self, i: usize) -> u64 {
        self.generations[i].load(Ordering::Acquire)
    }

    /// Node `i`'s log file.
    pub fn log(&self, i: usize) -> &Path {
        &self.launches[i].log
    }

    /// Node `i`'s clock skew, as of its last start or [`Cluster::set_skew`].
    pub async fn skew(&self, i: usize) -> i64 {
        self.slots[i].lock().await.skew_ms
    }

    /// Starts node `i` (it must be down) with its current skew; returns
    /// once it serves.
    pub async fn start(&self, i: usize) -> Result<(), Error> {
        let mut slot = self.slots[i].lock().await;
        if slot.process.is_some() {
            return Err(format!("node {i} is already running").into());
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let generation = self.generations[i].fetch_add(1, Ordering::AcqRel) + 1;
            let banner = format!(
                "start {generation} of node {i}, clock skew {} ms, at {:.1} s",
                slot.skew_ms,
                self.elapsed_s()
            );
            match NodeProcess::start(&self.launches[i], slot.skew_ms, &banner, &self.pids).await {
                Ok(process) => {
                    slot.process = Some(process);
                    return Ok(());
                }
                Err(error) => {
                    eprintln!("chaos: node {i} failed to start (retrying): {error}");
                    last_error = Some(error);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| "no start attempted".into()))
    }

    /// Kills node `i` with SIGKILL and waits until it is gone.
    pub async fn kill(&self, i: usize) -> Result<(), Error> {
        let process = self.slots[i].lock().await.process.take();
        match process {
            Some(process) => process.kill().await,
            None => Err(format!("node {i} is not running").into()),
        }
    }

    /// Stops node `i` with SIGTERM and waits for its exit. An exit other
    /// than a clean one is an error (the process is gone either way).
    pub async fn terminate(&self, i: usize) -> Result<(), Error> {
        let process = self.slots[i].lock().await.process.take();
        let Some(process) = process else { return Err(format!("node {i} is not running").into()) };
        match process.terminate(STOP_LIMIT).await? {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("node {i} stopped with {status} after SIGTERM").into()),
            None => Err(format!("node {i} did not stop within {STOP_LIMIT:?} of SIGTERM; killed it").into()),
        }
    }

    /// Sets the clock skew node `i` gets at its next start.
    pub async fn set_skew(&self, i: usize, skew_ms: i64) {
        self.slots[i].lock().await.skew_ms = skew_ms;
    }

    /// Whether node `i` has a process.
    pub async fn is_running(&self, i: usize) -> bool {
        self.slots[i].lock().await.process.is_some()
    }

    /// Waits until node `i` answers its status and is not bootstrapping.
    pub async fn wait_serving(&self, i: usize, limit: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            match grpc::status(self.topology.nodes[i].grpc).await {
                Ok(status) if status.bootstrapping.is_empty() => return Ok(()),
                Ok(status) => last = format!("bootstrapping: {}", status.bootstrapping),
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("node {i} did not serve within {limit:?} ({last})").into())
    }
}

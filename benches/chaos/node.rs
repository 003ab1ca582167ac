//! One node process: `consensusdb serve` with the harness's settings, its
//! stderr appended to one log file per node (a banner line marks each
//! start), stopped with SIGKILL or SIGTERM. Every process started is
//! registered in [`Pids`], which kills what is left when the harness
//! exits, panics or is interrupted.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the node prints on stdout once it serves gRPC, then HTTP.
const READY_GRPC: &str = "consensusdb serving gRPC on ";
const READY_HTTP: &str = "consensusdb serving HTTP on ";
/// A restart replays RocksDB's WAL; it takes well under this.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything a node is started with; the same on every restart except
/// the clock skew.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `consensusdb` binary.
    pub binary: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The log file its stderr is appended to.
    pub log: PathBuf,
    /// gRPC listen address.
    pub grpc: SocketAddr,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// Where peers reach it: its proxy.
    pub advertise: SocketAddr,
    /// The local address of its connections to peers.
    pub source: IpAddr,
    /// Seed peers (`--peer`); empty for the first node.
    pub peers: Vec<SocketAddr>,
}

/// Pids of the node processes running, killed together when the harness
/// ends (see [`KillOnDrop`]).
#[derive(Debug, Clone, Default)]
pub struct Pids(Arc<Mutex<BTreeSet<u32>>>);

impl Pids {
    fn add(&self, pid: u32) {
        self.0.lock().expect("the pid set lock is never poisoned").insert(pid);
    }

    fn remove(&self, pid: u32) {
        self.0.lock().expect("the pid set lock is never poisoned").remove(&pid);
    }

    /// Sends SIGKILL to every registered process and waits (up to 5 s)
    /// until they are gone. A pid stays registered until its process has
    /// been waited for, so it cannot have been reused.
    pub fn kill_all(&self) {
        let pids: Vec<u32> = self.0.lock().map(|set| set.iter().copied().collect()).unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            let alive = pids.iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    // A zombie (state Z) is dead; only its parent's wait is missing.
                    .is_ok_and(|stat| {
                        stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'))
                    })
            });
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Kills every registered node process when dropped.
pub struct KillOnDrop(pub Pids);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill_all();
    }
}

/// A running node process.
pub struct NodeProcess {
    child: Child,
    pid: u32,
    pids: Pids,
}

impl NodeProcess {
    /// Starts the node with `skew_ms` of clock skew and waits until it
    /// serves gRPC and HTTP. `banner` is written to the log first.
    pub async fn start(launch: &Launch, skew_ms: i64, banner: &str, pids: &Pids) -> Result<Self, Error> {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .map_err(|e| format!("opening {}: {e}", launch.log.display()))?;
        writeln!(log, "=== chaos: {banner} ===")?;
        let mut command = Command::new(&launch.binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CONSENSUSDB_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&launch.data_dir)
            .arg("--listen")
            .arg(launch.grpc.to_string())
            .arg("--http-listen")
            .arg(launch.http.to_string())
            .args(launch.peers.iter().flat_map(|peer| ["--peer".to_string(), peer.to_string()]))
            .args(crate::security::get().serve_args())
            .env("RUST_LOG", "warn")
            .env("CONSENSUSDB_CLUSTER__ADVERTISE", launch.advertise.to_string())
            .env("CONSENSUSDB_CLUSTER__SOURCE_ADDRESS", launch.source.to_string())
            .env("CONSENSUSDB_CLUSTER__HEARTBEAT_MS", "200")
            .env("CONSENSUSDB_CLUSTER__PURGE_INTERVAL_MS", "500")
            .env("CONSENSUSDB_STORAGE__SCAN_STALL_TIMEOUT_MS", "2000")
            .env("CONSENSUSDB_SERVER__SHUTDOWN_GRACE_MS", "3000")
            .env("CONSENSUSDB_DEV__CLOCK_SKEW_MS", skew_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().map_err(|e| {
            format!(
                "starting {}: {e} (build it with `cargo build --release --workspace --bins`)",
                launch.binary.display()
            )
        })?;
        let pid = child.id().ok_or("the node exited at once")?;
        pids.add(pid);
        let mut node = Self { child, pid, pids: pids.clone() };
        let stdout = node.child.stdout.take().ok_or("the node's stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            let (mut grpc, mut http) = (false, false);
            while let Some(line) = lines.next_line().await? {
                grpc |= line.starts_with(READY_GRPC);
                http |= line.starts_with(READY_HTTP);
                if grpc && http {
                    return Ok(true);
                }
            }
            Ok::<_, std::io::Error>(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => {}
            Ok(_) => {
                node.kill().await?;
                return Err(failure(&launch.log, "exited before serving"));
            }
            Err(_) => {
                node.kill().await?;
                return Err(failure(&launch.log, "did not serve within a minute"));
            }
        }
        // Keep reading stdout so a later line never meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(node)
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(mut self) -> Result<(), Error> {
        // Fails only if it already exited; the wait below reaps it then.
        let _ = self.child.start_kill();
        self.child.wait().await?;
        self.pids.remove(self.pid);
        Ok(())
    }

    /// SIGTERM (a clean shutdown), and waits up to `limit` for the exit;
    /// kills the process if it takes longer. Returns its exit status, or
    /// `None` if it had to be killed.
    pub async fn terminate(mut self, limit: Duration) -> Result<Option<ExitStatus>, Error> {
        let pid = self.pid.to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().await?;
        if !sent.success() {
            return Err(format!("could not send SIGTERM to {pid}").into());
        }
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Some(status?),
            Err(_) => {
                self.child.start_kill()?;
                self.child.wait().await?;
                None
            }
        };
        self.pids.remove(self.pid);
        Ok(status)
    }
}

/// An error naming what went wrong, with the end of the node's log.
fn failure(log: &Path, what: &str) -> Error {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("the node {what}; the end of its log ({}):\n{}", log.display(), tail.join("\n")).into()
}

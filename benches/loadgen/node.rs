//! The node under test: a `consensusdb serve` process this run starts on a
//! fresh data directory, or one that is already running.
//!
//! A started node gets fsync before every acknowledgement (`--sync
//! always`, the default, passed explicitly), an ephemeral loopback port,
//! and an environment without `CONSENSUSDB_*` variables, so nothing from
//! the caller's shell changes what is measured. It is stopped with SIGTERM
//! (a clean shutdown) and, as a fallback, killed when dropped, so no node
//! outlives the run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the node prints on stdout once storage is open and it listens.
const READY_PREFIX: &str = "consensusdb serving gRPC on ";
/// Start-up includes opening RocksDB, which replays nothing on a fresh dir.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A clean stop flushes the memtables of up to 500k events.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The node a phase talks to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its process id, for CPU accounting.
    pub pid: u32,
    /// Its data directory, for the `du` records, when known.
    pub data_dir: Option<PathBuf>,
}

/// A node this run started.
pub struct NodeProcess {
    child: Child,
    target: Target,
    log: PathBuf,
}

impl NodeProcess {
    /// Starts `binary` on `data_dir` and waits until it announces its
    /// address. Its log (stderr) goes to `log`.
    pub async fn start(binary: &Path, data_dir: &Path, log: &Path) -> Result<Self, Error> {
        Self::start_with_peers(binary, data_dir, log, &[]).await
    }

    /// Like [`NodeProcess::start`], replicating with `peers`.
    pub async fn start_with_peers(
        binary: &Path,
        data_dir: &Path,
        log: &Path,
        peers: &[SocketAddr],
    ) -> Result<Self, Error> {
        Self::start_on(binary, data_dir, log, "127.0.0.1:0", peers).await
    }

    /// Stops the node cleanly (which flushes its memtables) and starts it
    /// again on the same data directory and gRPC address, so clients and
    /// followers that know the address reach it again. No `--peer` is
    /// passed again: the node keeps the peers it learnt in its directory.
    pub async fn restart(self, binary: &Path) -> Result<Self, Error> {
        let (addr, log) = (self.target.addr, self.log.clone());
        let data_dir = self.target.data_dir.clone().ok_or("a started node has a data directory")?;
        self.stop().await?;
        Self::start_on(binary, &data_dir, &log, &addr.to_string(), &[]).await
    }

    async fn start_on(
        binary: &Path,
        data_dir: &Path,
        log: &Path,
        listen: &str,
        peers: &[SocketAddr],
    ) -> Result<Self, Error> {
        // Appended to: a restarted node's log follows its first run's.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("opening {}: {e}", log.display()))?;
        let mut command = Command::new(binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CONSENSUSDB_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--sync", "always", "--listen", listen, "--http-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(peers.iter().flat_map(|peer| ["--peer".to_string(), peer.to_string()]))
            .args(crate::security::get().serve_args())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "starting {}: {e} (build it with `cargo build --release --workspace --bins`)",
                binary.display()
            )
        })?;
        let pid = child.id().ok_or("the node exited at once")?;
        let stdout = child.stdout.take().ok_or("the node's stdout is piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let announced = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                    return Ok(Some(rest.split_whitespace().next().unwrap_or_default().to_string()));
                }
            }
            Ok::<_, std::io::Error>(None)
        })
        .await;
        let addr = match announced {
            Ok(Ok(Some(addr))) => addr.parse().map_err(|e| format!("the node announced {addr:?}: {e}"))?,
            Ok(Ok(None)) | Ok(Err(_)) => return Err(node_failure(log, "exited before serving")),
            Err(_) => return Err(node_failure(log, "did not announce its address in time")),
        };
        // Keep reading stdout so a later line never meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let target = Target { addr, pid, data_dir: Some(data_dir.to_path_buf()) };
        Ok(Self { child, target, log: log.to_path_buf() })
    }

    /// Where phases reach the node.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Stops the node with SIGTERM and waits for a clean exit; kills it if
    /// it does not stop in time.
    pub async fn stop(mut self) -> Result<(), Error> {
        // The shell's builtin kill: no signal crate is needed for one signal.
        let pid = self.target.pid.to_string();
        let sent = Command::new("sh").args(["-c", "kill -TERM \"$1\"", "sh", &pid]).status().await?;
        if !sent.success() {
            self.child.kill().await?;
            return Err("could not send SIGTERM to the node; killed it".into());
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if status.success() {
                    Ok(())
                } else {
                    Err(node_failure(&self.log, &format!("stopped with {status}")))
                }
            }
            Err(_) => {
                self.child.kill().await?;
                Err(format!("the node did not stop within {STOP_TIMEOUT:?}; killed it").into())
            }
        }
    }
}

/// An error naming what went wrong, with the end of the node's log.
fn node_failure(log: &Path, what: &str) -> Error {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(10).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!("the node {what}; the end of its log ({}):\n{}", log.display(), tail.join("\n")).into()
}

/// The `consensusdb` binary: `--node-bin`, or the one next to this executable.
pub fn default_binary() -> Result<PathBuf, Error> {
    Ok(std::env::current_exe()?.with_file_name("consensusdb"))
}

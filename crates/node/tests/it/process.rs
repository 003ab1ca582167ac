//! Process-level tests on the real `consensusdb` binary: crash with
//! `kill -9` mid-load (a lone node, and a replica that must resume from its
//! stored frontier), stop with SIGTERM mid-load, refuse a second process on
//! the same data directory, and a complete `--help`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consensusdb_proto::v1;

use crate::support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_consensusdb");

/// `consensusdb` with an environment free of the caller's `CONSENSUSDB_*`
/// settings, so only what a test passes configures the node.
fn consensusdb() -> Command {
    with_clean_env(Command::new(BINARY))
}

/// `command` without the caller's `CONSENSUSDB_*` settings, logging warnings.
fn with_clean_env(mut command: Command) -> Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONSENSUSDB_") {
            command.env_remove(name);
        }
    }
    command.env("RUST_LOG", "warn");
    command
}

/// A child process that is killed when dropped, even if a test panics
/// while it starts.
pub(crate) struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl KillOnDrop {
    /// Waits for the process to exit, or kills it and panics at `limit`.
    pub(crate) fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("waits") {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A `consensusdb serve` process with fsync on, ready to serve.
pub(crate) struct NodeProcess {
    pub(crate) child: KillOnDrop,
    pub(crate) addr: SocketAddr,
    /// The JSON gateway's address.
    pub(crate) http: SocketAddr,
    /// Its standard error, line by line, when [`Launch::capture_stderr`].
    pub(crate) stderr: Option<std::sync::mpsc::Receiver<String>>,
}

/// How to start a node beyond the defaults.
#[derive(Default)]
pub(crate) struct Launch {
    /// The gRPC address (an ephemeral port by default).
    pub(crate) listen: Option<String>,
    pub(crate) peers: Vec<SocketAddr>,
    /// More `serve` arguments, and `CONSENSUSDB_*` settings.
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    /// Starts the process with this soft and hard limit on open files.
    pub(crate) open_files: Option<u64>,
    /// Keeps standard error (with `RUST_LOG=info`) for the test to read.
    pub(crate) capture_stderr: bool,
    /// Starts with no TLS configuration, so the node makes its own CA
    /// under its data directory (the zero-configuration start); otherwise
    /// it serves with the tests' shared CA.
    pub(crate) self_made_tls: bool,
}

impl NodeProcess {
    pub(crate) fn start(data_dir: &Path) -> Self {
        Self::launch(data_dir, Launch::default())
    }

    /// A node on `listen` replicating with `peers`.
    fn start_with(data_dir: &Path, listen: &str, peers: &[SocketAddr]) -> Self {
        Self::launch(
            data_dir,
            Launch { listen: Some(listen.into()), peers: peers.to_vec(), ..Launch::default() },
        )
    }

    pub(crate) fn launch(data_dir: &Path, launch: Launch) -> Self {
        let mut args: Vec<std::ffi::OsString> = [
            "serve",
            "--sync",
            "always",
            "--listen",
            launch.listen.as_deref().unwrap_or("127.0.0.1:0"),
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
        ]
        .into_iter()
        .map(Into::into)
        .collect();
        args.push(data_dir.into());
        for peer in &launch.peers {
            args.push("--peer".into());
            args.push(peer.to_string().into());
        }
        if !launch.self_made_tls && !launch.args.iter().any(|arg| arg == "--insecure-plaintext") {
            let tls = &shared_ca().node;
            for (flag, path) in
                [("--tls-ca", &tls.ca_file), ("--tls-cert", &tls.cert_file), ("--tls-key", &tls.key_file)]
            {
                args.push(flag.into());
                args.push(path.clone().expect("set").into());
            }
        }
        args.extend(launch.args.iter().map(Into::into));
        let mut command = match launch.open_files {
            None => consensusdb(),
            // The shell sets the limit, then becomes the node.
            Some(limit) => {
                let mut shell = with_clean_env(Command::new("sh"));
                shell.arg("-c").arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\"")).arg(BINARY);
                shell
            }
        };
        command.args(&args);
        command.envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if launch.capture_stderr {
            command.env("RUST_LOG", "info").stderr(Stdio::piped());
        } else {
            command.stderr(Stdio::inherit());
        }
        let mut child = KillOnDrop(command.stdout(Stdio::piped()).spawn().expect("starts the binary"));
        let stdout = child.0.stdout.take().expect("piped stdout");
        let stderr = child.0.stderr.take().map(|stderr| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The gRPC line comes first, then the gateway's.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for prefix in ["consensusdb serving HTTP on ", "consensusdb serving gRPC on "] {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                    }
                }
            }
        });
        let announced = || -> SocketAddr {
            let line = rx.recv_timeout(TEST_TIMEOUT).expect("the node announces its addresses");
            line.parse().expect("a socket address")
        };
        let addr = announced();
        let http = announced();
        Self { child, addr, http, stderr }
    }

    /// The process id, for signals.
    pub(crate) fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn kill_9(&mut self) {
        self.child.0.kill().expect("SIGKILL");
        self.child.0.wait().expect("reaped");
    }

    pub(crate) fn send_sigterm(&self) {
        signal(self.pid(), "TERM");
    }
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`) to `pid` with the shell's
/// builtin kill: no procps needed on minimal systems.
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("sh")
        .args(["-c", "kill -s \"$1\" \"$2\"", "sh", signal, &pid.to_string()])
        .status()
        .expect("sh runs");
    assert!(status.success(), "kill -s {signal} {pid}");
}

type Acked = Arc<Mutex<Vec<(v1::Key, Vec<u8>)>>>;

/// Writers, each on its own connection, put until told to stop or until the
/// node goes away. Every acknowledged write is recorded.
async fn start_writers(
    addr: SocketAddr,
    count: usize,
    tenant: &str,
) -> (Acked, Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..count {
        let mut client = connect(addr).await;
        let (acked, stop, tenant) = (acked.clone(), stop.clone(), tenant.to_string());
        writers.push(tokio::spawn(async move {
            for i in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let k = key(&tenant, "EVENTS", &format!("writer{w}"), Some(at_ms(i)));
                let value = format!("{w}:{i}").into_bytes();
                match client.put(put_request(k.clone(), &value)).await {
                    Ok(_) => acked.lock().expect("no writer panicked").push((k, value)),
                    // The node went away under us: this write was not
                    // acknowledged, so it may or may not exist.
                    Err(_) => break,
                }
            }
        }));
    }
    (acked, stop, writers)
}

async fn wait_for_acks(acked: &Acked, at_least: usize) {
    eventually(TEST_TIMEOUT, &format!("{at_least} writes acknowledged"), async || {
        match acked.lock().expect("no writer panicked").len() {
            done if done >= at_least => Ok(()),
            done => Err(done),
        }
    })
    .await;
}

/// Reads every acknowledged write back from a fresh process; returns how many are missing.
async fn count_lost(addr: SocketAddr, acked: &[(v1::Key, Vec<u8>)]) -> usize {
    let mut client = connect(addr).await;
    let mut lost = 0;
    for (k, value) in acked {
        match client.get(v1::GetRequest { key: Some(k.clone()), read: None }).await {
            Ok(found) if found.get_ref().record.as_ref().is_some_and(|r| &r.value == value) => {}
            _ => lost += 1,
        }
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_no_acknowledged_write() {
    let temp = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(temp.path());
    let (acked, stop, writers) = start_writers(node.addr, 16, "crash").await;
    wait_for_acks(&acked, 2000).await;
    node.kill_9();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        tokio::time::timeout(TEST_TIMEOUT, writer).await.expect("writers stop").unwrap();
    }

    let node = NodeProcess::start(temp.path());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "the load produced acknowledged writes before the kill");
    let lost = count_lost(node.addr, &acked).await;
    // Straight to stderr: libtest's capture would hide println! on success.
    let _ = writeln!(std::io::stderr().lock(), "kill -9 mid-load: {} acknowledged, {lost} lost", acked.len());
    assert_eq!(lost, 0);
}

/// The cluster status of the node at `addr`.
async fn cluster_status(addr: SocketAddr) -> consensusdb_proto::mesh::v1::ClusterStatusResponse {
    use consensusdb_proto::mesh::v1::{ClusterStatusRequest, replication_client::ReplicationClient};
    let mut client = ReplicationClient::new(channel(addr).await);
    client.cluster_status(ClusterStatusRequest {}).await.expect("status").into_inner()
}

/// The digest of everything on the node at `addr`.
async fn digest(addr: SocketAddr) -> consensusdb_proto::mesh::v1::DigestResponse {
    use consensusdb_proto::mesh::v1::{DigestRequest, replication_client::ReplicationClient};
    let mut client = ReplicationClient::new(channel(addr).await);
    client.digest(DigestRequest::default()).await.expect("digest").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_a_replica_mid_load_resumes_from_its_frontier() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = NodeProcess::start(dir_a.path());
    let mut b = NodeProcess::start_with(dir_b.path(), "127.0.0.1:0", &[a.addr]);
    let b_addr = b.addr;
    let (acked, stop, writers) = start_writers(a.addr, 8, "replica").await;
    wait_for_acks(&acked, 1000).await;
    // B is pulling A's log when it dies.
    b.kill_9();
    wait_for_acks(&acked, 2000).await;
    let b = NodeProcess::start_with(dir_b.path(), &b_addr.to_string(), &[a.addr]);
    wait_for_acks(&acked, 3000).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        tokio::time::timeout(TEST_TIMEOUT, writer).await.expect("writers stop").unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let (from_a, from_b) = eventually(TEST_TIMEOUT, "the restarted replica catches up", async || {
        let (from_a, from_b) = (digest(a.addr).await, digest(b.addr).await);
        if from_a.frontier == from_b.frontier && from_a.total == from_b.total {
            Ok((from_a, from_b))
        } else {
            Err((from_a.frontier, from_b.frontier))
        }
    })
    .await;
    assert_eq!(from_a.regions, from_b.regions);
    // Every acknowledged write is on the replica...
    assert_eq!(count_lost(b.addr, &acked).await, 0);
    // ...and since the restart it was sent only what it lacked: nothing it
    // had applied before the crash came again (no duplicates), and the
    // frontier, dense by construction, left no gap.
    let status = cluster_status(b.addr).await;
    let from_peer = status.peers.iter().find(|p| p.address == a.addr.to_string()).expect("A is a peer of B");
    assert_eq!(from_peer.entries_received, from_peer.entries_applied, "re-sent entries: {from_peer:?}");
    let a_seq = from_a.frontier.iter().map(|m| m.seq).max().unwrap_or(0);
    assert!(from_peer.entries_applied < a_seq, "B resumed from its frontier, not from the start");
    let _ = writeln!(
        std::io::stderr().lock(),
        "replica kill -9: {} acknowledged on A, {} entries of {a_seq} pulled after the restart, 0 lost",
        acked.len(),
        from_peer.entries_applied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_load_drains_and_exits_cleanly() {
    let temp = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(temp.path());
    let (acked, stop, writers) = start_writers(node.addr, 8, "term").await;
    wait_for_acks(&acked, 500).await;
    node.send_sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let status = node.child.wait_for_exit(TEST_TIMEOUT);
        drop(node);
        status
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        tokio::time::timeout(TEST_TIMEOUT, writer).await.expect("writers stop").unwrap();
    }
    assert!(status.success(), "exit status {status:?}");

    let node = NodeProcess::start(temp.path());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "writes were in flight when SIGTERM arrived");
    let lost = count_lost(node.addr, &acked).await;
    let _ = writeln!(std::io::stderr().lock(), "SIGTERM mid-load: {} acknowledged, {lost} lost", acked.len());
    assert_eq!(lost, 0);
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_clearly() {
    let temp = tempfile::tempdir().unwrap();
    let _first = NodeProcess::start(temp.path());
    let mut second = KillOnDrop(
        consensusdb()
            .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
            .arg(temp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs"),
    );
    // If the lock check broke, the second node would serve forever: bound the wait.
    let status = second.wait_for_exit(TEST_TIMEOUT);
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().expect("piped"), &mut stderr).unwrap();
    assert!(stderr.contains("already in use by another process"), "{stderr}");
    assert!(!stderr.contains("serving gRPC"), "never announced as serving: {stderr}");
}

#[test]
fn help_documents_every_serve_flag_and_the_configuration_layers() {
    let top = consensusdb().arg("--help").output().expect("runs");
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(top.contains("serve") && top.contains("config"), "{top}");
    let serve = consensusdb().args(["serve", "--help"]).output().expect("runs");
    assert!(serve.status.success());
    let serve = String::from_utf8_lossy(&serve.stdout);
    for expected in [
        "--config",
        "--data-dir",
        "--listen",
        "--sync",
        "--insecure-plaintext",
        "CONSENSUSDB_CONFIG",
        "CONSENSUSDB_GRPC__LISTEN",
        "config.example.toml",
        "RUST_LOG",
        "127.0.0.1:4482",
        "./data",
    ] {
        assert!(serve.contains(expected), "serve --help lacks {expected}:\n{serve}");
    }
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_key() {
    let output = consensusdb().args(["config", "--tls-ca", "ca.pem"]).output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("give all of ca_file"), "{output:?}");
    let output =
        consensusdb().args(["config"]).env("CONSENSUSDB_GRPC__LISTEN", "nowhere").output().expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("grpc.listen"), "{output:?}");
    let output =
        consensusdb().args(["config"]).env("CONSENSUSDB_LIMITS__MAX_READ_LIMIT", "5").output().expect("runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("max_read_limit = 5"));
}

/// One HTTP/1.1 request over a fresh connection; the status, the head
/// (lower-cased) and the body.
fn http_request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, serde_json::Value) {
    use std::io::Read;
    let mut stream = https_stream_blocking(addr);
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("sends");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads the answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: application/json"), "every answer is JSON: {head}");
    (status, head, serde_json::from_str(body).expect("a JSON body"))
}

#[test]
fn the_gateway_answers_health_and_readiness_and_json_errors() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::start(data.path());
    let (status, _, body) = http_request(node.http, "GET", "/healthz");
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
    let (status, _, body) = http_request(node.http, "GET", "/readyz");
    assert_eq!((status, body), (200, serde_json::json!({"status": "ready"})));
    let (status, _, body) = http_request(node.http, "GET", "/no/such/path");
    assert_eq!(status, 404);
    assert_eq!(body, serde_json::json!({"code": "NOT_FOUND", "message": "no such path", "field": null}));
    let (status, head, body) = http_request(node.http, "POST", "/healthz");
    assert_eq!(status, 405);
    assert!(head.contains("allow: get,head"), "a 405 says what the path takes: {head}");
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success(), "the node stops cleanly");
}

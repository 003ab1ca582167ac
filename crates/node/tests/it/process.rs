//! Process-level tests on the real `consensusdb` binary: crash with
//! `kill -9` mid-load, stop with SIGTERM, refuse a second process on the
//! same data directory, and a complete `--help`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_consensusdb");

/// A `consensusdb serve` child process, killed on drop.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starts the binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("consensusdb serving gRPC on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the node announces its address")
            .parse()
            .expect("a socket address");
        Self { child, addr }
    }

    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let status =
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waits") {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_load_loses_no_acknowledged_write() {
    let temp = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(temp.path());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let client = connect(node.addr).await;
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let (mut client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let k = key("crash", "EVENTS", &format!("writer{w}"), Some(at_ms(i)));
                    let value = format!("{w}:{i}");
                    match client.put(put_request(k.clone(), value.as_bytes())).await {
                        Ok(_) => acked.lock().unwrap().push((k, value)),
                        // The node was killed under us: unacknowledged, so it may or may not exist.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the node mid-flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 2000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.kill_9();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        tokio::time::timeout(TEST_TIMEOUT, writer).await.expect("writers stop").unwrap();
    }

    let node = NodeProcess::start(temp.path());
    let mut client = connect(node.addr).await;
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "the load generated acknowledged writes");
    let mut lost = 0;
    for (k, value) in &acked {
        match client.get(consensusdb_proto::v1::GetRequest { key: Some(k.clone()), read: None }).await {
            Ok(found) if found.get_ref().record.as_ref().is_some_and(|r| r.value == value.as_bytes()) => {}
            _ => lost += 1,
        }
    }
    println!("{} acknowledged, {lost} lost", acked.len());
    assert_eq!(lost, 0);
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let temp = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(temp.path());
    let mut client = connect(node.addr).await;
    for i in 0..20 {
        must_put(&mut client, key("term", "EVENTS", "e", Some(at_ms(i))), b"v").await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = node.terminate();
        drop(node);
        status
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let node = NodeProcess::start(temp.path());
    let mut client = connect(node.addr).await;
    must_get(&mut client, key("term", "EVENTS", "e", Some(at_ms(19)))).await;
}

#[test]
fn a_second_process_on_the_same_data_dir_is_refused_clearly() {
    let temp = tempfile::tempdir().unwrap();
    let _first = NodeProcess::start(temp.path());
    let second = Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(temp.path())
        .output()
        .expect("runs");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already in use by another process"), "{stderr}");
}

#[test]
fn help_documents_every_serve_flag() {
    let top = Command::new(BINARY).arg("--help").output().expect("runs");
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(top.contains("serve") && top.contains("config"), "{top}");
    let serve = Command::new(BINARY).args(["serve", "--help"]).output().expect("runs");
    assert!(serve.status.success());
    let serve = String::from_utf8_lossy(&serve.stdout);
    for flag in [
        "--config",
        "--data-dir",
        "--listen",
        "--sync",
        "--insecure-plaintext",
        "CONSENSUSDB_CONFIG",
        "127.0.0.1:4482",
        "./data",
    ] {
        assert!(serve.contains(flag), "serve --help lacks {flag}:\n{serve}");
    }
}

#[test]
fn bad_configuration_exits_non_zero_naming_the_key() {
    let output = Command::new(BINARY)
        .args(["config", "--listen", "0.0.0.0:4482"])
        .env("CONSENSUSDB_LIMITS__MAX_READ_LIMIT", "5")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("grpc.listen"));
    let output = Command::new(BINARY)
        .args(["config"])
        .env("CONSENSUSDB_LIMITS__MAX_READ_LIMIT", "5")
        .output()
        .expect("runs");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("max_read_limit = 5"));
}

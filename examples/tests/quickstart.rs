//! Runs the quick-start binary against a real `consensusdb serve`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A node process, killed when dropped.
struct Node {
    child: Child,
    url: String,
    /// Where the node made its own CA and admin credential.
    tls_dir: PathBuf,
    _data: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `consensusdb` binary: built next to this package's binaries by
/// `cargo test --workspace`, since the node crate has integration tests.
fn node_binary() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_quickstart")).with_file_name("consensusdb");
    assert!(path.exists(), "{} is missing: run the tests with `cargo test --workspace`", path.display());
    path
}

fn start_node() -> Node {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(node_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start consensusdb");
    let stdout = child.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = ready_tx.send(line);
        }
    });
    let line = ready_rx.recv_timeout(Duration::from_secs(60)).expect("the node prints its ready line");
    let addr = line
        .strip_prefix("consensusdb serving gRPC on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    Node { child, url: format!("https://{addr}"), tls_dir: data.path().join("tls"), _data: data }
}

#[test]
fn quickstart_runs_against_a_node_and_stores_the_repeated_event_once() {
    let node = start_node();
    let mut example = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .arg(&node.url)
        .arg(&node.tls_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the quickstart");
    let started = Instant::now();
    while example.try_wait().expect("poll").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = example.kill();
            panic!("the quickstart did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = example.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "quickstart failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("latest balance: 140.00"), "{stdout}");
    assert!(stdout.contains("newest 5 balances: 140.00, 180.25, 95.50, 120.00, 100.00"), "{stdout}");
    assert!(stdout.contains("deposit written twice, stored 1 time(s)"), "{stdout}");
    assert!(stdout.contains("the node holds 50 bytes of ciphertext, we read \"PIN 4711\""), "{stdout}");
}

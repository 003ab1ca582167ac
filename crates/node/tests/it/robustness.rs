//! A node that cannot be taken down from outside, tested on the real
//! binary: thousands of idle connections, a SIGTERM while a client stalls
//! a scan and a peer is frozen, a full disk, and logs for a pipe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use consensusdb_proto::v1;

use crate::process::{Launch, NodeProcess, signal};
use crate::support::*;

/// Opens `count` idle connections to `addr`, more than the node's cap;
/// returns how many the node keeps open (the others it closes at once),
/// and the connections.
fn idle_connections(addr: SocketAddr, count: usize) -> (usize, Vec<TcpStream>) {
    let connections: Vec<TcpStream> = (0..count)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    // The node takes connections in the order they were made, and is at
    // its cap by now: once it has closed one more, made last, it has kept
    // or closed every one before it.
    let mut last = TcpStream::connect(addr).expect("the last connection");
    last.set_read_timeout(Some(TEST_TIMEOUT)).expect("sets a timeout");
    match last.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the node did not close a connection past its cap: {other:?}"),
    }
    let held = connections
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).expect("non-blocking");
            let mut byte = [0u8; 1];
            // Open and silent: the read would block. Closed: EOF or reset.
            matches!((&**stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    (held, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_leave_writes_working() {
    // This test needs descriptors for 2,000 connections of its own.
    let own = consensusdb_node::descriptors::raise_limit().expect("reads the limit");
    assert!(own >= 2_200, "the test process may open only {own} files; raise its hard limit");
    let data = tempfile::tempdir().expect("temp dir");
    // The limit a shell often hands a process, which the node cannot raise
    // here: it must share 1,024 descriptors between RocksDB and clients.
    let launch = Launch { open_files: Some(1024), ..Launch::default() };
    let mut node = NodeProcess::launch(data.path(), launch);
    // A client connected before the flood.
    let mut client = connect(node.addr).await;
    must_put(&mut client, key("fd", "EVENTS", "before", None), b"1").await;
    let http = node.http;
    let (held, connections) =
        tokio::task::spawn_blocking(move || idle_connections(http, 2_000)).await.unwrap();
    assert!(held > 100, "the node keeps a fair share of connections open ({held})");
    assert!(held < 1_000, "and closes the rest, keeping descriptors for its own files ({held} held)");
    // Writes go on, and enough of them to flush memtables and write files.
    let value = vec![b'x'; 64 * 1024];
    for i in 0..200 {
        must_put(&mut client, key("fd", "EVENTS", &format!("during-{i}"), None), &value).await;
    }
    // Once they go (closed, or timed out: a unit test covers that), their
    // places are free again.
    drop(connections);
    let mut fresh = connect(node.addr).await;
    must_put(&mut fresh, key("fd", "EVENTS", "after", None), b"2").await;
    // The flush at shutdown needs descriptors too.
    node.send_sigterm();
    let status = tokio::task::spawn_blocking(move || node.child.wait_for_exit(TEST_TIMEOUT)).await.unwrap();
    assert!(status.success(), "the node stopped cleanly: {status:?}");
    let node = NodeProcess::start(data.path());
    let mut client = connect(node.addr).await;
    assert_eq!(must_get(&mut client, key("fd", "EVENTS", "after", None)).await.value, b"2");
    let _ = writeln!(
        std::io::stderr().lock(),
        "2000 idle connections at an open-file limit of 1024: {held} held, the rest closed at once; writes kept working"
    );
}

/// 16 MiB in tenant `load`, so a stalled reader fills every buffer.
async fn load(
    client: &mut consensusdb_proto::v1::records_client::RecordsClient<tonic::transport::Channel>,
    tag: &str,
) {
    let value = vec![b'v'; 4096];
    for batch in 0..8 {
        let records = (0..500)
            .map(|i| put_request(key("load", tag, &format!("e{batch:02}-{i:04}"), None), &value))
            .collect();
        client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await.expect("batch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_stalled_scan_and_a_frozen_peer_exits_within_its_deadline() {
    let (dir_a, dir_b) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let grace = Duration::from_secs(2);
    let a = NodeProcess::launch(
        dir_a.path(),
        Launch {
            env: vec![("CONSENSUSDB_SERVER__SHUTDOWN_GRACE_MS".into(), grace.as_millis().to_string())],
            ..Launch::default()
        },
    );
    let b = NodeProcess::launch(dir_b.path(), Launch { peers: vec![a.addr], ..Launch::default() });
    let mut client = connect(a.addr).await;
    load(&mut client, "before").await;
    // A client opens a scan over HTTP and one over gRPC, and reads neither.
    let mut stalled_http = https_stream_blocking(a.http);
    write!(stalled_http, "GET /v1/scan/load?limit=10000 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").expect("sends");
    // The scan must really be under way (answered, then unread), or the
    // shutdown below would have no stalled scan to cut.
    stalled_http.sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout set");
    let mut status_line = [0u8; 12];
    stalled_http.read_exact(&mut status_line).expect("the scan answers");
    assert_eq!(&status_line, b"HTTP/1.1 200", "the stalled scan started");
    let stalled_grpc = client
        .scan_tenant(v1::ScanTenantRequest {
            major_key: "load".into(),
            options: Some(v1::ScanOptions { limit: 10_000, page_token: Vec::new(), read: None }),
        })
        .await
        .expect("scan starts");
    // The peer freezes while A still has entries to ship it.
    signal(b.pid(), "STOP");
    load(&mut client, "after").await;
    let started = Instant::now();
    a.send_sigterm();
    let (status, a) = tokio::task::spawn_blocking(move || {
        let mut a = a;
        (a.child.wait_for_exit(grace + Duration::from_secs(30)), a)
    })
    .await
    .unwrap();
    let took = started.elapsed();
    signal(b.pid(), "CONT");
    drop((stalled_http, stalled_grpc, a));
    assert!(status.success(), "A stopped cleanly: {status:?}");
    assert!(took < grace + Duration::from_secs(15), "A took {took:?} to stop");
    // Its data directory is free for a replacement at once.
    let replacement = NodeProcess::start(dir_a.path());
    let mut client = connect(replacement.addr).await;
    assert_eq!(must_get(&mut client, key("load", "after", "e07-0499", None)).await.value.len(), 4096);
    let _ = writeln!(
        std::io::stderr().lock(),
        "SIGTERM with a stalled scan and a frozen peer: stopped in {took:.1?} (grace {grace:?})"
    );
}

/// The standard error lines of `node` until it exits.
fn stderr_lines(node: &mut NodeProcess) -> Vec<String> {
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success());
    node.stderr.take().expect("captured").iter().collect()
}

#[test]
fn logs_to_a_pipe_carry_no_colour_and_json_logs_are_one_object_a_line() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut text = NodeProcess::launch(data.path(), Launch { capture_stderr: true, ..Launch::default() });
    let lines = stderr_lines(&mut text);
    assert!(lines.iter().any(|line| line.contains("storage opened")), "{lines:#?}");
    assert!(lines.iter().all(|line| !line.contains('\u{1b}')), "no ANSI escape on a pipe: {lines:#?}");
    let mut json = NodeProcess::launch(
        data.path(),
        Launch {
            capture_stderr: true,
            args: vec!["--log-format".into(), "json".into()],
            ..Launch::default()
        },
    );
    let lines = stderr_lines(&mut json);
    assert!(!lines.is_empty());
    for line in &lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{object}");
    }
    assert!(lines.iter().any(|line| line.contains("\"message\":\"storage opened\"")), "{lines:#?}");
}

/// A small tmpfs mounted for one test, unmounted when dropped: a disk that
/// can really fill up. Mounting needs root (or passwordless sudo), as the
/// test suite has on its machines.
struct SmallDisk {
    mount: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let mount = tempfile::tempdir().expect("temp dir");
        let size = format!("size={megabytes}m");
        let target = mount.path().to_str().expect("a UTF-8 path").to_string();
        let mounted = ["mount", "sudo"].iter().any(|program| {
            let mut command = std::process::Command::new(program);
            if *program == "sudo" {
                command.args(["-n", "mount"]);
            }
            command.args(["-t", "tmpfs", "-o", &size, "tmpfs", &target]).status().is_ok_and(|s| s.success())
        });
        assert!(mounted, "mounting a {megabytes} MB tmpfs needs root or passwordless sudo");
        Self { mount }
    }

    fn path(&self) -> &std::path::Path {
        self.mount.path()
    }

    /// Bytes in use on the disk.
    fn used(&self) -> u64 {
        let output = std::process::Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(self.path())
            .output()
            .expect("df runs");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let target = self.mount.path().to_path_buf();
        for program in ["umount", "sudo"] {
            let mut command = std::process::Command::new(program);
            if program == "sudo" {
                command.args(["-n", "umount"]);
            }
            if command.arg(&target).status().is_ok_and(|s| s.success()) {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_full_disk_restarts_without_free_space_and_leaks_nothing() {
    let disk = SmallDisk::mount(48);
    // Space to give back later, as an operator would by deleting a file.
    let spare = disk.path().join("spare");
    std::fs::write(&spare, vec![0u8; 8 << 20]).expect("writes the spare file");
    let data = disk.path().join("data");
    let mut node = NodeProcess::start(&data);
    let mut client = connect(node.addr).await;
    must_put(&mut client, key("disk", "EVENTS", "first", None), b"kept").await;
    // Fill the disk until the writer refuses: it cannot know whether the
    // failed group reached the disk, so it stops taking writes.
    let value = vec![b'f'; 64 * 1024];
    let mut batches = 0;
    let refused = loop {
        let records = (0..32)
            .map(|i| put_request(key("disk", "FILL", &format!("{batches}-{i}"), None), &value))
            .collect();
        match client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await {
            Ok(_) => batches += 1,
            Err(status) => break status,
        }
        assert!(batches < 1_000, "the disk never filled");
    };
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    node.send_sigterm();
    let _ = tokio::task::spawn_blocking(move || node.child.wait_for_exit(TEST_TIMEOUT)).await;
    // Restarting needs no free space, and restarts leave no more than a
    // few small files behind: RocksDB's info logs, of which it keeps four.
    let full = disk.used();
    let mut after = Vec::new();
    for _ in 0..8 {
        let mut node = NodeProcess::start(&data);
        let mut client = connect(node.addr).await;
        assert_eq!(must_get(&mut client, key("disk", "EVENTS", "first", None)).await.value, b"kept");
        node.send_sigterm();
        let _ = tokio::task::spawn_blocking(move || node.child.wait_for_exit(TEST_TIMEOUT)).await;
        after.push(disk.used().saturating_sub(full));
    }
    let (total, last_four) = (after[7], after[7] - after[3]);
    assert!(total < 1 << 20, "eight restarts took {total} bytes: {after:?}");
    assert!(last_four < 64 << 10, "once four info logs are kept, restarts take almost nothing: {after:?}");
    // With space given back, the node takes writes again.
    std::fs::remove_file(&spare).expect("removes the spare file");
    let node = NodeProcess::start(&data);
    let mut client = connect(node.addr).await;
    must_put(&mut client, key("disk", "EVENTS", "after", None), b"written").await;
    assert_eq!(must_get(&mut client, key("disk", "FILL", "0-0", None)).await.value.len(), value.len());
    let _ = writeln!(
        std::io::stderr().lock(),
        "full disk: {batches} batches of 2 MiB filled 48 MB; 8 restarts without free space took {total} bytes \
         ({last_four} for the last four); writes resume once space is freed"
    );
}

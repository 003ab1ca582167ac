//! The JSON gateway of the real binary, checked with outside tools over
//! HTTPS with client certificates: every `curl` example in the README
//! (against a node that made its own credentials, as the README's), a
//! property-based conformance run of the OpenAPI document (schemathesis),
//! and the status page in a headless browser (over plaintext: a headless
//! browser cannot present a client certificate without a certificate
//! store). The browser and schemathesis are installed by
//! `scripts/setup-test-deps.sh`, which the test command runs.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::process::{Launch, NodeProcess};
use crate::support::{TEST_TIMEOUT, shared_ca};

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn report(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The fenced `sh` blocks of a Markdown text that run `curl`.
fn curl_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                if block.lines().any(|l| l.trim_start().starts_with("curl ")) {
                    blocks.push(block.clone());
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_curl_example_in_the_readme_works_against_a_node() {
    let readme = std::fs::read_to_string(repo_file("README.md")).expect("reads the README");
    let blocks = curl_blocks(&readme);
    assert!(!blocks.is_empty(), "the README has curl examples");
    for block in &blocks {
        for line in block.lines().filter(|l| l.trim_start().starts_with("curl ")) {
            // Without -f, curl succeeds on a 4xx and the example could rot.
            assert!(line.contains(" -f"), "every README curl fails on an HTTP error (-f): {line}");
        }
    }
    // The README's paths are relative to where the node runs: ./data.
    let cwd = tempfile::tempdir().expect("temp dir");
    let launch = Launch { self_made_tls: true, ..Launch::default() };
    let mut node = NodeProcess::launch(&cwd.path().join("data"), launch);
    let script = blocks.join("\n").replace("127.0.0.1:4481", &node.http.to_string());
    let output = Command::new("timeout")
        .current_dir(cwd.path())
        .arg(TEST_TIMEOUT.as_secs().to_string())
        .args(["bash", "-euo", "pipefail", "-c", &script])
        .output()
        .expect("bash runs");
    assert!(output.status.success(), "the README's curl examples:\n{script}\n{}", report(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""status":"ready""#), "readyz answered: {stdout}");
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success());
}

/// Debian's Chromium, installed by the test set-up.
fn chromium() -> Command {
    let mut command = Command::new("timeout");
    command.args([
        "60",
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
    ]);
    command
}

#[test]
fn the_status_page_renders_its_figures_in_a_headless_browser() {
    let data = tempfile::tempdir().expect("temp dir");
    let plaintext = Launch { args: vec!["--insecure-plaintext".into()], ..Launch::default() };
    let mut node = NodeProcess::launch(data.path(), plaintext);
    let put = Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H", "content-type: application/json", "-d", r#"{"value":"1"}"#])
        .arg(format!("http://{}/v1/records/acme/orders/o-1", node.http))
        .output()
        .expect("curl runs");
    assert!(put.status.success(), "{}", report(&put));
    let profile = tempfile::tempdir().expect("temp dir");
    let output = chromium()
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("http://{}/", node.http))
        .output()
        .expect("chromium runs: install it with scripts/setup-test-deps.sh");
    assert!(output.status.success(), "{}", report(&output));
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains(r#"data-loaded="true""#), "the page rendered the status: {dom}");
    // Each figure holds a value, not the placeholder.
    for figure in ["node-id", "version", "uptime", "data-size", "records-estimate", "write-rate", "read-rate"]
    {
        let marker = format!(r#"data-figure="{figure}""#);
        let at = dom.find(&marker).unwrap_or_else(|| panic!("{figure} is on the page: {dom}"));
        let text = dom[at..].split_once('>').map(|(_, rest)| rest).unwrap_or_default();
        let text = text.split('<').next().unwrap_or_default().trim();
        assert!(!text.is_empty() && text != "…", "{figure} shows a value, got {text:?}");
    }
    assert!(dom.contains(r#"data-region="acme/orders""#), "the region is listed: {dom}");
    assert!(dom.contains(env!("CARGO_PKG_VERSION")), "the version is shown");
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success());
}

/// schemathesis, pinned by the test set-up, in its own virtualenv.
fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("CONSENSUSDB_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/consensusdb-venv")
    });
    venv.join("bin/schemathesis")
}

#[test]
fn the_gateway_conforms_to_its_openapi_document() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::start(data.path());
    let base = format!("https://{}", node.http);
    let admin = &shared_ca().admin;
    // schemathesis keeps a cache in its working directory: not in the repo.
    let scratch = tempfile::tempdir().expect("temp dir");
    let output = Command::new("timeout")
        .current_dir(scratch.path())
        .arg("300")
        .arg(schemathesis())
        .arg("--no-color")
        .arg("--config-file")
        .arg(repo_file("crates/node/tests/schemathesis.toml"))
        .args(["run", &format!("{base}/openapi.json"), "--url", &base])
        .arg("--tls-verify")
        .arg(&admin.ca)
        .arg("--request-cert")
        .arg(&admin.certificate)
        .arg("--request-cert-key")
        .arg(&admin.key)
        .args(["--checks", "all", "--max-examples", "50", "--workers", "1", "--request-timeout", "5"])
        .args(["--max-time", "120", "--seed", "42", "--generation-deterministic"])
        .output()
        .expect("schemathesis runs: install it with scripts/setup-test-deps.sh");
    assert!(output.status.success(), "schemathesis found a nonconformance:\n{}", report(&output));
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success());
}

/// curl as the admin of the tests' shared CA.
fn curl(args: &[&str]) -> String {
    let admin = &shared_ca().admin;
    let output = Command::new("curl")
        .arg("-fsS")
        .arg("--cacert")
        .arg(&admin.ca)
        .arg("--cert")
        .arg(&admin.certificate)
        .arg("--key")
        .arg(&admin.key)
        .args(args)
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl {args:?}: {}", report(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn one_set_of_metrics_counts_both_interfaces() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::start(data.path());
    // gRPC, through the command-line client.
    let put = Command::new(env!("CARGO_BIN_EXE_consensusdb"))
        .args(["put", "acme", "ACCOUNT", "balance", "100", "--untimed", "--server"])
        .arg(format!("https://{}", node.addr))
        .args(crate::support::shared_credential_args())
        .output()
        .expect("the client runs");
    assert!(put.status.success(), "{}", report(&put));
    // HTTP.
    let url = format!("https://{}/v1/records/acme/ACCOUNT/balance", node.http);
    let read = curl(&[&url]);
    assert!(read.contains(r#""value":"100""#), "HTTP reads what gRPC wrote: {read}");
    let metrics = curl(&[&format!("https://{}/metrics", node.http)]);
    for line in [
        r#"consensusdb_requests_total{code="OK",interface="grpc",operation="put"} 1"#,
        r#"consensusdb_requests_total{code="OK",interface="http",operation="get"} 1"#,
        "consensusdb_writes_committed_total 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let status = curl(&[&format!("https://{}/v1/status", node.http)]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("JSON");
    assert_eq!(status["totals"], serde_json::json!({"writes": 1, "reads": 1}), "{status}");
    assert_eq!(status["replication"]["peers"], serde_json::json!([]), "a lone node: {status}");
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success());
}

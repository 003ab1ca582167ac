//! The client commands and the shell of the real `consensusdb` binary,
//! against an in-process node: output, exit codes and error text.

use std::process::{Output, Stdio};

use consensusdb_proto::v1;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::support::*;

const BINARY: &str = env!("CARGO_BIN_EXE_consensusdb");

/// `consensusdb ARGS --server URL`, free of the caller's environment.
fn consensusdb(node: &TestNode, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONSENSUSDB_") {
            command.env_remove(name);
        }
    }
    command.args(args).arg("--server").arg(node.grpc_url()).args(node.credential_args()).kill_on_drop(true);
    command
}

async fn run(node: &TestNode, args: &[&str]) -> Output {
    let output = consensusdb(node, args).output();
    tokio::time::timeout(TEST_TIMEOUT, output).await.expect("the command finishes in time").expect("runs")
}

/// Runs a command that must succeed and returns its JSON lines.
async fn json_lines(node: &TestNode, args: &[&str]) -> Vec<Value> {
    let output = run(node, args).await;
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn client_commands_print_json_lines_and_tables() {
    let node = TestNode::start().await;
    let mut times = Vec::new();
    for (i, balance) in ["100", "120", "95"].iter().enumerate() {
        let at = format!("2026-11-21T10:0{i}:00Z");
        let put = json_lines(&node, &["put", "acme", "ACCOUNT", "balance", balance, "--time", &at]).await;
        assert_eq!(put.len(), 1);
        assert_eq!(put[0]["key"]["major_key"], "acme");
        times.push(put[0]["key"]["time_uuid"].as_str().expect("a timed record").to_string());
    }

    let got = json_lines(&node, &["get", "acme", "ACCOUNT", "balance", "--time", &times[1]]).await;
    assert_eq!(got[0]["value"], "120");
    let head =
        json_lines(&node, &["get", "acme", "ACCOUNT", "balance", "--time", &times[1], "--head-only"]).await;
    assert_eq!((&head[0]["value"], &head[0]["encoding"]), (&Value::Null, &Value::Null), "no value is read");
    assert!(head[0]["head"]["seq"].is_u64(), "{}", head[0]);

    let recent = json_lines(&node, &["recent", "acme", "ACCOUNT", "balance"]).await;
    assert_eq!(recent[0]["value"], "95");
    let earlier =
        json_lines(&node, &["recent", "acme", "ACCOUNT", "balance", "--at", "2026-11-21T10:01:30Z"]).await;
    assert_eq!(earlier[0]["value"], "120");

    let page = json_lines(&node, &["range", "acme", "ACCOUNT", "balance", "--limit", "2"]).await;
    assert_eq!(page.len(), 3, "two records, then the token line");
    let token = page[2]["next_page_token"].as_str().expect("a token");
    let rest =
        json_lines(&node, &["range", "acme", "ACCOUNT", "balance", "--limit", "2", "--page-token", token])
            .await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["value"], "100");
    let forward =
        json_lines(&node, &["range", "acme", "ACCOUNT", "balance", "--forward", "--limit", "1", "--all"])
            .await;
    let values: Vec<&str> = forward.iter().map(|r| r["value"].as_str().expect("text")).collect();
    assert_eq!(values, ["100", "120", "95"]);

    let table = run(&node, &["scan", "acme", "--format", "table"]).await;
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("TENANT"), "{text}");

    let touched =
        json_lines(&node, &["touch", "acme", "ACCOUNT", "balance", "--time", &times[0], "--ttl", "1h"]).await;
    assert!(touched[0]["head"]["expires_at_ms"].is_u64(), "{}", touched[0]);
    let removed = json_lines(&node, &["rm", "acme", "ACCOUNT", "balance", "--time", &times[0]]).await;
    assert_eq!(removed[0]["head"]["tombstone"], true);
    node.stop().await;
}

/// The JSON body of `GET path` on the node's gateway.
async fn gateway_get(node: &TestNode, path: &str) -> Value {
    use tokio::io::AsyncReadExt;
    let mut stream = node.http_stream().await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", node.http);
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut response = String::new();
    tokio::time::timeout(TEST_TIMEOUT, stream.read_to_string(&mut response))
        .await
        .expect("answers in time")
        .expect("reads");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn the_cli_prints_records_exactly_as_the_gateway_does() {
    let node = TestNode::start().await;
    let put = json_lines(
        &node,
        &["put", "acme", "ACCOUNT", "balance", "100", "--time", "2026-11-21T10:00:00Z", "--ttl", "1h"],
    )
    .await;
    let time = put[0]["key"]["time_uuid"].as_str().expect("a timed record").to_string();
    let path = format!("/v1/records/acme/ACCOUNT/balance/{time}");

    let cli = json_lines(&node, &["get", "acme", "ACCOUNT", "balance", "--time", &time]).await;
    let http = gateway_get(&node, &path).await;
    assert_eq!(cli[0], http, "one record, one shape");
    assert_eq!(put[0]["key"], http["key"]);
    assert_eq!(put[0]["head"], http["head"], "a write prints the head it left");

    let cli = json_lines(&node, &["get", "acme", "ACCOUNT", "balance", "--time", &time, "--head-only"]).await;
    let http = gateway_get(&node, &format!("{path}?head_only=true")).await;
    assert_eq!(cli[0], http, "head-only reads too");

    let scanned = json_lines(&node, &["scan", "acme"]).await;
    let gateway_scan = gateway_get(&node, "/v1/rows/acme/ACCOUNT/balance/range").await;
    assert_eq!(scanned[0], gateway_scan["records"][0], "scans and pages too");
    node.stop().await;
}

#[tokio::test]
async fn exit_codes_and_messages_name_what_was_wrong() {
    let node = TestNode::start().await;
    let missing = run(&node, &["get", "acme", "ACCOUNT", "nobody"]).await;
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("NOT_FOUND"));

    let empty_tenant = run(&node, &["put", "", "ACCOUNT", "balance", "1"]).await;
    assert_eq!(empty_tenant.status.code(), Some(2));
    assert!(stderr(&empty_tenant).contains("key.major_key"), "{}", stderr(&empty_tenant));

    let bad_time = run(&node, &["get", "acme", "ACCOUNT", "balance", "--time", "yesterday"]).await;
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(stderr(&bad_time).contains("--time"), "{}", stderr(&bad_time));

    let bad_ttl = run(&node, &["put", "acme", "ACCOUNT", "balance", "1", "--ttl", "soon"]).await;
    assert_eq!(bad_ttl.status.code(), Some(2));
    assert!(stderr(&bad_ttl).contains("--ttl"), "{}", stderr(&bad_ttl));

    let first = run(&node, &["put", "acme", "ACCOUNT", "once", "a", "--untimed", "--if-absent"]).await;
    assert!(first.status.success());
    let again = run(&node, &["put", "acme", "ACCOUNT", "once", "b", "--untimed", "--if-absent"]).await;
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));

    let usage = run(&node, &["put", "acme"]).await;
    assert_eq!(usage.status.code(), Some(2), "clap's usage errors exit 2 as well");

    // A content-derived id: the same event at the same time is one record.
    let event =
        ["put", "acme", "ACCOUNT", "events", "deposit 40", "--time", "2026-11-21T10:00:00Z", "--content-id"];
    let first = json_lines(&node, &event).await;
    let second = json_lines(&node, &event).await;
    assert!(first[0]["key"]["time_uuid"].is_string(), "{}", first[0]);
    assert_eq!(first[0]["key"]["time_uuid"], second[0]["key"]["time_uuid"]);

    let addr = node.addr;
    let credential_args = node.credential_args();
    node.stop().await;
    let mut down = Command::new(BINARY);
    down.args(["recent", "acme", "ACCOUNT", "balance", "--timeout", "3s", "--server"])
        .arg(format!("https://{addr}"))
        .args(credential_args);
    let unreachable =
        tokio::time::timeout(TEST_TIMEOUT, down.output()).await.expect("in time").expect("runs");
    assert_eq!(unreachable.status.code(), Some(5), "{}", stderr(&unreachable));
    assert!(stderr(&unreachable).contains("UNAVAILABLE"), "{}", stderr(&unreachable));
}

#[tokio::test]
async fn the_shell_runs_piped_commands_and_reports_the_last_failure() {
    let node = TestNode::start().await;
    let mut shell = consensusdb(&node, &["shell", "--no-history"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let script = "\
# a comment, then a blank line

put acme ACCOUNT balance 'one hundred' --untimed
get acme ACCOUNT balance
help
format table
scan acme
get acme ACCOUNT nobody
exit
put acme ACCOUNT never 'after exit' --untimed
";
    let mut stdin = shell.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).await.expect("writes");
    drop(stdin);
    let output =
        tokio::time::timeout(TEST_TIMEOUT, shell.wait_with_output()).await.expect("in time").expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(r#""value":"one hundred""#), "{stdout}");
    for command in ["put", "get", "recent", "range", "scan", "touch", "rm", "format", "exit"] {
        assert!(stdout.contains(&format!("  {command}")), "help lists {command}: {stdout}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("TENANT")), "format table took effect: {stdout}");
    assert!(stderr(&output).contains("NOT_FOUND"), "{}", stderr(&output));
    assert_eq!(output.status.code(), Some(3), "piped input exits with the last failure's code");

    let after_exit = json_lines(&node, &["scan", "acme"]).await;
    assert_eq!(after_exit.len(), 1, "nothing after `exit` ran");
    node.stop().await;
}

/// The shell's prompt.
const PROMPT: &str = "consensusdb> ";

/// Reads a terminal into `screen` until what it shows is `ready`.
async fn read_until(
    terminal: &mut tokio::process::ChildStdout,
    screen: &mut Vec<u8>,
    what: &str,
    ready: impl Fn(&str) -> bool,
) {
    let read = tokio::time::timeout(TEST_TIMEOUT, async {
        while !ready(&String::from_utf8_lossy(screen)) {
            let mut chunk = [0u8; 4096];
            match terminal.read(&mut chunk).await.expect("reads the terminal") {
                0 => return false,
                n => screen.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await;
    assert!(
        matches!(read, Ok(true)),
        "the terminal never showed {what}: {}",
        String::from_utf8_lossy(screen)
    );
}

#[tokio::test]
async fn the_shell_on_a_terminal_edits_lines_and_keeps_history() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let history = dir.path().join("history");
    // `script` gives the shell a pseudo-terminal, so it runs its line
    // editor exactly as for a person; our stdin is typed into it.
    let inner = format!(
        "{BINARY} shell --server {} {} --history {}",
        node.grpc_url(),
        node.credential_args().join(" "),
        history.to_str().expect("UTF-8 path")
    );
    let mut terminal = Command::new("script")
        .args(["-q", "-e", "-c", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("script(1) from util-linux runs");
    let mut stdin = terminal.stdin.take().expect("stdin");
    let mut stdout = terminal.stdout.take().expect("stdout");
    let mut screen = Vec::new();
    // Each line is typed once the shell prompts for it: typed earlier, it
    // could reach the line editor while it is still setting the terminal up.
    read_until(&mut stdout, &mut screen, "the first prompt", |shown| shown.contains(PROMPT)).await;
    for line in ["put acme ACCOUNT tty typed --untimed", "get acme ACCOUNT tty"] {
        stdin.write_all(format!("{line}\r").as_bytes()).await.expect("types");
        read_until(&mut stdout, &mut screen, &format!("a prompt after {line:?}"), |shown| {
            shown.rfind(line).is_some_and(|at| shown[at + line.len()..].contains(PROMPT))
        })
        .await;
    }
    stdin.write_all(b"exit\r").await.expect("types");
    let status = tokio::time::timeout(TEST_TIMEOUT, async {
        stdout.read_to_end(&mut screen).await.expect("reads the terminal");
        terminal.wait().await.expect("the shell exits")
    })
    .await
    .expect("in time");
    let screen = String::from_utf8_lossy(&screen);
    assert!(status.success(), "{screen}");
    assert!(screen.contains(PROMPT), "the prompt is shown on a terminal: {screen}");
    assert!(screen.contains(r#""value":"typed""#), "{screen}");
    let saved = std::fs::read_to_string(&history).expect("history saved");
    assert!(saved.contains("get acme ACCOUNT tty"), "{saved}");
    node.stop().await;
}

#[tokio::test]
async fn cluster_commands_show_status_digests_and_refuse_bad_peers() {
    let node = TestNode::start().await;
    json_lines(&node, &["put", "acme", "ACCOUNT", "balance", "100"]).await;
    let status = json_lines(&node, &["status"]).await;
    assert_eq!(status.len(), 1);
    let status = &status[0];
    assert_eq!(status["cluster_id"], "consensusdb");
    assert_eq!(status["peers"].as_array().map(Vec::len), Some(0), "a lone node is a one-node cluster");
    let frontier = status["frontier"].as_array().expect("frontier");
    assert_eq!(frontier.len(), 1);
    // Seq 1 holds the data key the node made for the tenant; the put is 2.
    assert_eq!(frontier[0]["seq"], 2);
    assert_eq!(frontier[0]["origin"], status["origin"]);

    let digest = json_lines(&node, &["digest", "--tenant", "acme"]).await;
    let total = digest[0]["total"].as_str().expect("hex digest");
    assert_eq!(total.len(), 64);
    assert_ne!(total, "0".repeat(64));
    assert_eq!(digest[0]["regions"][0]["region"], "ACCOUNT");
    let other = json_lines(&node, &["digest", "--tenant", "nobody"]).await;
    assert_eq!(other[0]["total"], "0".repeat(64), "an empty tenant sums to zero");

    let table = run(&node, &["digest", "--format", "table"]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("(total)"));

    let bad = run(&node, &["remove-peer", "not-a-peer"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("PEER"), "{}", stderr(&bad));
    let unknown = run(&node, &["remove-peer", "127.0.0.1:1"]).await;
    assert_eq!(unknown.status.code(), Some(3), "no such peer: {}", stderr(&unknown));
}

/// `consensusdb ARGS` as typed, with no `--server` added.
async fn run_bare(args: &[&str]) -> Output {
    run_bare_with(args, &[]).await
}

/// `consensusdb ARGS` with only `env` of the `CONSENSUSDB_*` variables.
async fn run_bare_with(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONSENSUSDB_") {
            command.env_remove(name);
        }
    }
    command.args(args).envs(env.iter().copied()).kill_on_drop(true);
    tokio::time::timeout(TEST_TIMEOUT, command.output())
        .await
        .expect("the command finishes in time")
        .expect("runs")
}

#[tokio::test]
async fn status_and_digest_show_everything_even_on_one_node_and_tables_cut_nothing() {
    let node = TestNode::start().await;
    json_lines(&node, &["put", "acme", "ACCOUNT", "balance", "100"]).await;
    let status = json_lines(&node, &["status"]).await;
    let purge = &status[0]["purge"];
    for watermark in ["stable_hlc", "stable_time", "log_purged_through", "versions_purged"] {
        assert!(purge.get(watermark).is_some(), "status shows the purge watermark {watermark}: {purge}");
    }
    assert_eq!(status[0]["state"], "serving");
    // A lone node has no peer rows, but its own table.
    let table = run(&node, &["status", "--format", "table"]).await;
    assert!(table.status.success(), "{}", stderr(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("FIELD"), "{text}");
    let origin = status[0]["origin"].as_str().expect("an origin");
    assert!(text.contains(origin) && text.contains("stable_time"), "{text}");
    // Digests are shown whole, so two that differ never look alike.
    let digest = json_lines(&node, &["digest"]).await;
    let total = digest[0]["total"].as_str().expect("hex digest").to_string();
    let table = run(&node, &["digest", "--format", "table"]).await;
    assert!(
        String::from_utf8_lossy(&table.stdout).contains(&total),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
}

#[tokio::test]
async fn servers_may_be_written_host_port_and_other_schemes_are_refused() {
    let node = TestNode::start().await;
    let server = node.addr.to_string();
    // The credential from the environment, as a deployment would give it.
    let admin = &shared_ca().admin;
    let env = [
        ("CONSENSUSDB_CA", admin.ca.as_path()),
        ("CONSENSUSDB_CERT", admin.certificate.as_path()),
        ("CONSENSUSDB_KEY", admin.key.as_path()),
    ];
    let put = run_bare_with(&["-s", &server, "put", "acme", "ACCOUNT", "bare", "1", "--untimed"], &env).await;
    assert!(put.status.success(), "host:port without a scheme is TLS: {}", stderr(&put));
    let get = run_bare_with(&["-s", &server, "get", "acme", "ACCOUNT", "bare"], &env).await;
    assert!(get.status.success(), "{}", stderr(&get));
    let status = run_bare_with(&["-s", &server, "status"], &env).await;
    assert!(status.status.success(), "{}", stderr(&status));
    // Without a credential (and none under ./data/tls), the CLI says what
    // to give.
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut missing = Command::new(BINARY);
    missing.current_dir(cwd.path()).args(["-s", &server, "get", "acme", "ACCOUNT", "bare"]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CONSENSUSDB_") {
            missing.env_remove(name);
        }
    }
    let missing = tokio::time::timeout(TEST_TIMEOUT, missing.output()).await.expect("in time").expect("runs");
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("--ca"), "{}", stderr(&missing));
    let ftp = format!("ftp://{server}");
    let refused = run_bare(&["-s", &ftp, "get", "acme", "ACCOUNT", "bare"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--server"), "{}", stderr(&refused));
}

#[tokio::test]
async fn a_content_derived_id_needs_the_events_own_time() {
    let node = TestNode::start().await;
    let refused = run(&node, &["put", "acme", "ACCOUNT", "events", "deposit 40", "--content-id"]).await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--content-id"), "{}", stderr(&refused));
    // The README's example, run twice, stores one record.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    let line =
        readme.lines().find(|line| line.contains("--content-id")).expect("the README shows --content-id");
    let command = line.split('#').next().expect("a command").trim();
    let args = shell_words::split(command).expect("shell words");
    assert_eq!(args[0], "consensusdb");
    let args: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let first = json_lines(&node, &args).await;
    let second = json_lines(&node, &args).await;
    assert!(first[0]["key"]["time_uuid"].is_string(), "{}", first[0]);
    assert_eq!(first[0]["key"]["time_uuid"], second[0]["key"]["time_uuid"], "the same event is one record");
    let scanned = json_lines(&node, &["range", "acme", "ACCOUNT", "events"]).await;
    assert_eq!(scanned.len(), 1, "{scanned:?}");
}

/// `consensusdb ARGS` against `node` with a bearer token and only the CA.
async fn run_with_token(node: &TestNode, token: &str, args: &[&str]) -> Output {
    let ca = node.admin.as_ref().expect("a TLS node").ca.display().to_string();
    let mut command = Command::new(BINARY);
    command.env_remove("CONSENSUSDB_TOKEN").env("CONSENSUSDB_TOKEN", token).kill_on_drop(true);
    command.args(args).args(["--server", &node.grpc_url(), "--ca", &ca]);
    tokio::time::timeout(TEST_TIMEOUT, command.output()).await.expect("in time").expect("runs")
}

#[tokio::test]
async fn tokens_and_grants_are_made_listed_used_and_taken_back_from_the_cli() {
    let node = TestNode::start().await;
    let made = json_lines(&node, &["token", "create", "--name", "ci", "--grant", "write:acme/*"]).await;
    let token = made[0]["token"].as_str().expect("the token is printed once").to_string();
    let id = made[0]["id"].as_str().expect("an id").to_string();
    assert_eq!(made[0]["grants"], "write:acme/*");

    let me = run_with_token(&node, &token, &["whoami"]).await;
    assert!(me.status.success(), "{}", stderr(&me));
    let me: Value = serde_json::from_slice(&me.stdout).expect("JSON");
    assert_eq!((me["kind"].as_str(), me["grants"].as_str()), (Some("token"), Some("write:acme/*")));
    let put = run_with_token(&node, &token, &["put", "acme/eu", "ORDERS", "o-1", "v"]).await;
    assert!(put.status.success(), "{}", stderr(&put));
    let outside = run_with_token(&node, &token, &["put", "acmecorp", "ORDERS", "o-1", "v"]).await;
    assert_eq!(outside.status.code(), Some(6), "denied: {}", stderr(&outside));
    assert!(stderr(&outside).contains("acmecorp"), "the refusal names the tenant: {}", stderr(&outside));

    let listed = json_lines(&node, &["token", "list"]).await;
    assert!(listed.iter().any(|t| t["id"] == id.as_str() && t["name"] == "ci"), "{listed:?}");
    assert!(listed.iter().all(|t| t.get("token").is_none()), "a listing never shows a secret");
    let listing = serde_json::to_string(&listed).expect("JSON");
    assert!(!listing.contains(&token[token.len() - 20..]), "no part of the secret is listed");
    json_lines(&node, &["token", "revoke", &id]).await;
    let revoked = run_with_token(&node, &token, &["get", "acme/eu", "ORDERS", "o-1"]).await;
    assert_eq!(revoked.status.code(), Some(6), "{}", stderr(&revoked));
    let again = run(&node, &["token", "revoke", &id]).await;
    assert_eq!(again.status.code(), Some(3), "nothing left to revoke: {}", stderr(&again));

    let bob = "cdb://consensusdb/client/bob";
    json_lines(&node, &["grant", "add", bob, "read:acme"]).await;
    let grants = json_lines(&node, &["grant", "list", bob]).await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0]["grants"], "read:acme");
    let everyone = json_lines(&node, &["grant", "list"]).await;
    assert!(
        everyone
            .iter()
            .any(|g| g["identity"] == "cdb://consensusdb/client/admin" && g["grants"] == "cluster-admin"),
        "the built-in admin is listed: {everyone:?}"
    );
    json_lines(&node, &["grant", "remove", bob, "read:acme"]).await;
    assert!(json_lines(&node, &["grant", "list", bob]).await.is_empty());
    let bad = run(&node, &["grant", "add", bob, "read:acme*"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("must end on one of"), "{}", stderr(&bad));
    let node_grant = run(&node, &["grant", "add", "cdb://consensusdb/node/n9", "read:acme"]).await;
    assert_eq!(node_grant.status.code(), Some(2), "nodes get no grants: {}", stderr(&node_grant));
    node.stop().await;
}

#[tokio::test]
async fn data_keys_are_listed_rotated_and_a_tenant_shredded_from_the_cli() {
    let node = TestNode::start().await;
    json_lines(&node, &["put", "acme", "ORDERS", "o-1", "before"]).await;
    let keys = json_lines(&node, &["keys", "list", "--tenant", "acme"]).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!((keys[0]["id"].as_u64(), keys[0]["master_key_id"].as_u64()), (Some(1), Some(1)));
    assert_eq!(keys[0]["destroyed"], false);
    let rotated = json_lines(&node, &["keys", "rotate", "--tenant", "acme"]).await;
    assert_eq!(rotated[0]["tenant"], "acme");
    json_lines(&node, &["put", "acme", "ORDERS", "o-2", "after"]).await;
    assert_eq!(json_lines(&node, &["keys", "list"]).await.len(), 2, "a new key after the rotation");
    let got = json_lines(&node, &["recent", "acme", "ORDERS", "o-1"]).await;
    assert_eq!(got[0]["value"], "before", "the old key still opens its value");

    // The value under the retired key is sealed again under the new one;
    // the command follows the work to its end.
    let done = run(&node, &["keys", "reencrypt", "--tenant", "acme"]).await;
    assert!(done.status.success(), "{}", stderr(&done));
    let progress: Value = serde_json::from_str(stdout(&done).trim()).expect("one JSON object");
    assert_eq!(progress["state"], "done", "{progress}");
    let counts = ["total", "scanned", "resealed", "already", "refused"].map(|field| progress[field].as_u64());
    assert_eq!(counts, [Some(2), Some(2), Some(1), Some(1), Some(0)], "{progress}");
    let shown = json_lines(&node, &["keys", "reencryption", "--tenant", "acme"]).await;
    assert_eq!((&shown[0]["state"], &shown[0]["resealed"]), (&progress["state"], &progress["resealed"]));
    let security = crate::security::status_as_admin(&node).await["security"].clone();
    assert_eq!(security["values_resealed"], 1, "{security}");
    let status = &security["reencryptions"][0];
    let expected = [Value::from("acme"), Value::from("done"), Value::from(1)];
    assert_eq!(
        [status["tenant"].clone(), status["state"].clone(), status["pass"].clone()],
        expected,
        "{status}"
    );
    let metrics = crate::security::as_admin(&node, "/metrics").await;
    assert!(metrics.contains("consensusdb_values_resealed_total 1"), "{metrics}");
    let got = json_lines(&node, &["recent", "acme", "ORDERS", "o-1"]).await;
    assert_eq!(got[0]["value"], "before", "the resealed value reads back");
    let never = run(&node, &["keys", "reencryption", "--tenant", "zeta"]).await;
    assert!(!never.status.success() && stderr(&never).contains("no re-encryption"), "{}", stderr(&never));

    let unconfirmed = run(&node, &["tenant", "shred", "acme"]).await;
    assert_eq!(unconfirmed.status.code(), Some(2), "{}", stderr(&unconfirmed));
    assert!(stderr(&unconfirmed).contains("--yes"), "{}", stderr(&unconfirmed));
    let shredded = json_lines(&node, &["tenant", "shred", "acme", "--yes"]).await;
    assert_eq!(shredded[0]["keys_destroyed"], 2);
    let listed = json_lines(&node, &["keys", "list", "--tenant", "acme"]).await;
    assert!(
        listed.iter().all(|key| key["destroyed"] == true && key["master_key_id"].is_null()),
        "{listed:?}"
    );
    let system = run(&node, &["tenant", "shred", "_consensusdb", "--yes"]).await;
    assert_eq!(system.status.code(), Some(2), "the system tenant is refused: {}", stderr(&system));
}

#[tokio::test]
async fn a_shred_stopped_before_its_records_were_removed_finishes_when_the_node_starts() {
    let data = tempfile::tempdir().expect("temp dir");
    // Straight on the store, with the node's master key: a write, then a
    // shred whose removal never ran, as if the node stopped right after.
    let ca = shared_ca().node.ca_file.clone().expect("the shared CA");
    let (keys, _) = consensusdb_pki::master_key_file::load(&ca.with_file_name("master.key")).expect("loads");
    let options = consensusdb_storage::StoreOptions {
        master_keys: Some(std::sync::Arc::new(keys)),
        ..consensusdb_storage::StoreOptions::new(data.path())
    };
    let store = consensusdb_storage::Store::open(options).expect("opens");
    let key = consensusdb_client::RowKey::new("acme", "ORDERS", "o-1").at(None);
    let record = consensusdb_storage::PutRecord {
        key,
        value: b"before the shred".to_vec(),
        compression: consensusdb_types::Compression::None,
        ttl_ms: None,
        if_absent: false,
        client_key: None,
    };
    store.put(record, None).await.expect("written");
    store.shred_tenant("acme").await.expect("shredded");
    store.close().await.expect("closes");
    drop(store);

    let node = TestNode::start_in(data.path(), |_| {}).await;
    let outcome = eventually(TEST_TIMEOUT, "the record removed", async || {
        let read = run(&node, &["get", "acme", "ORDERS", "o-1"]).await;
        if stderr(&read).contains("shredded") { Err(stderr(&read)) } else { Ok(read) }
    })
    .await;
    assert!(stderr(&outcome).contains("NOT_FOUND"), "{}", stderr(&outcome));
}

/// `consensusdb master-key ARGS --file FILE`: an offline command.
async fn master_key_command(args: &[&str], file: &std::path::Path) -> Output {
    let output = Command::new(BINARY).arg("master-key").args(args).arg("--file").arg(file).output();
    tokio::time::timeout(TEST_TIMEOUT, output).await.expect("the command finishes in time").expect("runs")
}

/// Waits until the node's status shows master keys for which `shown`
/// holds, and returns its security section.
async fn master_keys_shown(node: &TestNode, what: &str, shown: impl Fn(&Value) -> bool) -> Value {
    eventually(TEST_TIMEOUT, what, async || {
        let security = crate::security::status_as_admin(node).await["security"].clone();
        if shown(&security) { Ok(security) } else { Err(security) }
    })
    .await
}

#[tokio::test]
async fn the_master_key_rotates_and_the_old_one_retires_from_the_cli_with_no_restart() {
    let (data, secrets) = (tempfile::tempdir().expect("temp dir"), tempfile::tempdir().expect("temp dir"));
    let file = consensusdb_pki::master_key_file::ensure(secrets.path()).expect("master key file");
    let start = || {
        let file = file.clone();
        TestNode::start_in(data.path(), move |config| {
            config.seal.master_key_file = Some(file);
            config.seal.reload_interval_ms = 50;
        })
    };
    let node = start().await;
    json_lines(&node, &["put", "acme", "ORDERS", "o-1", "under master key 1"]).await;
    let security =
        master_keys_shown(&node, "the first key", |s| s["master_keys"]["held"] == serde_json::json!([1]))
            .await;
    assert_eq!(security["master_keys"]["current"], 1, "{security}");

    // Added staged: the running node loads it, and still wraps under 1.
    let added = master_key_command(&["add"], &file).await;
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(stdout(&added).contains("staged"), "{}", stdout(&added));
    let security =
        master_keys_shown(&node, "key 2 staged", |s| s["master_keys"]["staged"] == serde_json::json!([2]))
            .await;
    assert_eq!(
        (security["master_keys"]["current"].as_u64(), security["master_key_reloads"].as_u64()),
        (Some(1), Some(1))
    );
    let current = master_key_command(&["retire", "--id", "1"], &file).await;
    assert_eq!(current.status.code(), Some(1), "the current key is refused: {}", stderr(&current));
    assert!(stderr(&current).contains("current"), "{}", stderr(&current));

    let promoted = master_key_command(&["promote"], &file).await;
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    master_keys_shown(&node, "key 2 current", |s| s["master_keys"]["current"] == 2).await;
    json_lines(&node, &["keys", "rotate", "--tenant", "acme"]).await;
    json_lines(&node, &["put", "acme", "ORDERS", "o-2", "under master key 2"]).await;
    let listed = json_lines(&node, &["keys", "list", "--tenant", "acme"]).await;
    let wrapped_under: Vec<_> = listed.iter().map(|key| key["master_key_id"].clone()).collect();
    assert_eq!(wrapped_under, vec![Value::from(1), Value::from(2)], "{listed:?}");

    // Retiring key 1 before the re-wrap is refused by the running node,
    // which keeps both keys and says why.
    let early = std::fs::read(&file).expect("reads");
    let retired = master_key_command(&["retire", "--id", "1"], &file).await;
    assert!(retired.status.success(), "{}", stderr(&retired));
    let security = master_keys_shown(&node, "the early retirement refused", |s| {
        s["master_key_reloads_refused"].as_u64() >= Some(1)
    })
    .await;
    let why = security["last_master_key_reload_refusal"].as_str().unwrap_or_default();
    assert!(why.contains("would no longer unwrap") && why.contains("keys rewrap"), "{why}");
    assert_eq!(security["master_keys"]["held"], serde_json::json!([1, 2]), "{security}");
    let metrics = crate::security::as_admin(&node, "/metrics").await;
    assert!(metrics.contains("consensusdb_master_key_reloads_refused_total 1"), "{metrics}");

    // After the re-wrap, the same file is taken.
    std::fs::write(&file, early).expect("puts key 1 back");
    let rewrapped = json_lines(&node, &["keys", "rewrap"]).await;
    assert_eq!(
        (rewrapped[0]["master_key_id"].as_u64(), rewrapped[0]["rewrapped"].as_u64()),
        (Some(2), Some(1))
    );
    let retired = master_key_command(&["retire", "--id", "1"], &file).await;
    assert!(retired.status.success(), "{}", stderr(&retired));
    master_keys_shown(&node, "key 1 retired", |s| s["master_keys"]["held"] == serde_json::json!([2])).await;
    for (minor, value) in [("o-1", "under master key 1"), ("o-2", "under master key 2")] {
        let got = json_lines(&node, &["recent", "acme", "ORDERS", minor]).await;
        assert_eq!(got[0]["value"], value);
    }
    node.stop().await;

    // A restart, with nothing opened yet: key 1's data key is unwrapped
    // through its re-wrapped form.
    let node = start().await;
    let got = json_lines(&node, &["recent", "acme", "ORDERS", "o-1"]).await;
    assert_eq!(got[0]["value"], "under master key 1", "opened through its re-wrapped key");
    node.stop().await;
}

#[tokio::test]
async fn a_password_encrypts_on_the_client_from_the_command_line_and_the_shell() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "open sesame\n").expect("written");
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "close sesame\n").expect("written");
    let with = |file: &std::path::Path, args: &[&str]| {
        let mut args = args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        args.extend(["--password-file".to_string(), file.display().to_string()]);
        args
    };
    let run_strings = async |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&node, &args).await
    };

    let put =
        run_strings(with(&password_file, &["put", "acme", "NOTES", "n", "the plaintext", "--untimed"])).await;
    assert!(put.status.success(), "{}", stderr(&put));
    let put: Value = serde_json::from_slice(&put.stdout).expect("JSON");
    let fingerprint = put["head"]["client_key_fingerprint"].as_str().expect("a fingerprint").to_string();
    assert_eq!(fingerprint.len(), 16);

    let got = run_strings(with(&password_file, &["get", "acme", "NOTES", "n"])).await;
    assert!(got.status.success(), "{}", stderr(&got));
    let got: Value = serde_json::from_slice(&got.stdout).expect("JSON");
    assert_eq!(got["value"], "the plaintext");
    assert_eq!(got["head"]["client_key_fingerprint"], fingerprint.as_str());

    let without = run(&node, &["get", "acme", "NOTES", "n"]).await;
    assert_eq!(without.status.code(), Some(1), "{}", stderr(&without));
    assert!(stderr(&without).contains("FAILED_PRECONDITION"), "{}", stderr(&without));
    assert!(stderr(&without).contains("encrypted on the client"), "{}", stderr(&without));
    let head_only = json_lines(&node, &["get", "acme", "NOTES", "n", "--head-only"]).await;
    assert_eq!(head_only[0]["head"]["client_key_fingerprint"], fingerprint.as_str(), "heads need no key");

    let wrong = run_strings(with(&wrong_file, &["get", "acme", "NOTES", "n"])).await;
    assert_eq!(wrong.status.code(), Some(6), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("does not open"), "{}", stderr(&wrong));
    assert!(!stderr(&wrong).contains("sesame"), "the password is never printed");

    // The shell, with the password in the environment: one derivation
    // for the session, then every command of the tenant uses it.
    let mut shell = consensusdb(&node, &["shell", "--no-history"])
        .env("CONSENSUSDB_PASSWORD", "open sesame")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stdin = shell.stdin.take().expect("stdin");
    stdin
        .write_all(b"put acme NOTES m 'typed at the shell' --untimed\nget acme NOTES m\nget acme NOTES n\n")
        .await
        .expect("writes");
    drop(stdin);
    let output =
        tokio::time::timeout(TEST_TIMEOUT, shell.wait_with_output()).await.expect("in time").expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout.contains(r#""value":"typed at the shell""#), "{stdout}");
    assert!(stdout.contains(r#""value":"the plaintext""#), "{stdout}");
    let mut records = node.client.clone();
    let request = v1::GetRequest {
        key: Some(key("acme", "NOTES", "m", None)),
        read: Some(v1::ReadOptions { head_only: false, raw: true }),
    };
    let raw = records.get(request).await.expect("raw read").into_inner().record.expect("present");
    assert!(!raw.value.windows(5).any(|w| w == b"typed"), "the node holds ciphertext");
    node.stop().await;
}

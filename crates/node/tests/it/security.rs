//! Security from the outside: who gets in over TLS, what an anonymous
//! caller may reach, plaintext on either side of a TLS connection, what a
//! node without (or with the wrong) certificates says, and the
//! zero-configuration start that makes its own CA.

use std::process::Command;

use consensusdb_client::{Client, Credentials, ErrorCode, Record, RecordKey, RetryPolicy};
use consensusdb_node::config::NodeConfig;
use consensusdb_node::{Node, NodeError};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::process::{Launch, NodeProcess};
use crate::support::*;

fn key(minor: &str) -> RecordKey {
    consensusdb_client::RowKey::new("acme", "ACCOUNT", minor).at(None)
}

/// `curl -sS` with `args`: the HTTP status and the body.
async fn curl(args: &[&str]) -> (u16, String) {
    let output = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    let code = code.trim().parse().unwrap_or(0);
    assert_ne!(code, 0, "curl {args:?} got no answer: {}", String::from_utf8_lossy(&output.stderr));
    (code, body.to_string())
}

/// The body of `path` on the TLS node's gateway, as the admin of the
/// shared CA.
pub(crate) async fn as_admin(node: &TestNode, path: &str) -> String {
    get_as(&shared_ca().admin, node.http, path).await
}

/// The body of `path` on the gateway at `http`, as `admin`.
async fn get_as(admin: &consensusdb_client::AdminPaths, http: std::net::SocketAddr, path: &str) -> String {
    let shown = |path: &std::path::Path| path.display().to_string();
    let (ca, certificate, key) = (shown(&admin.ca), shown(&admin.certificate), shown(&admin.key));
    let url = format!("https://{http}{path}");
    let (code, body) = curl(&["--cacert", &ca, "--cert", &certificate, "--key", &key, &url]).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// `/v1/status` of the TLS node, as the admin of the shared CA.
pub(crate) async fn status_as_admin(node: &TestNode) -> serde_json::Value {
    serde_json::from_str(&as_admin(node, "/v1/status").await).expect("JSON")
}

fn ca_only() -> Credentials {
    Credentials::new(std::fs::read_to_string(&shared_ca().admin.ca).expect("reads the CA"))
}

fn client(url: String, credentials: Option<Credentials>) -> Client {
    let mut builder =
        Client::builder().endpoint(url).retry_policy(RetryPolicy::never()).timeout(CALL_TIMEOUT);
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    builder.build_lazy().expect("valid endpoint")
}

#[tokio::test]
async fn an_anonymous_caller_reaches_only_health_and_the_api_description() {
    let node = TestNode::start().await;
    // gRPC: through the handshake with no certificate, then refused.
    let refused = client(node.grpc_url(), Some(ca_only())).put(Record::new(key("k"), "v")).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unauthenticated, "{refused}");
    assert!(refused.to_string().contains("client certificate"), "{refused}");
    let channel = channel_with(node.addr, Some(&ca_only())).await;
    let health = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
    assert!(health.is_ok(), "health stays open: {health:?}");

    // HTTPS: the same, path by path.
    let ca = shared_ca().admin.ca.display().to_string();
    let url = |path: &str| format!("https://{}{path}", node.http);
    for open in ["/healthz", "/readyz", "/openapi.json"] {
        let (status, body) = curl(&["--cacert", &ca, &url(open)]).await;
        assert_eq!(status, 200, "{open}: {body}");
    }
    for closed in ["/v1/records/acme/ACCOUNT/k", "/v1/status", "/metrics", "/", "/v1/scan/acme"] {
        let (status, body) = curl(&["--cacert", &ca, &url(closed)]).await;
        assert_eq!(status, 401, "{closed}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(error["code"], "UNAUTHENTICATED", "{closed}: {body}");
    }
    // With the admin certificate, the status says how the node is secured,
    // and the metrics count each refusal by interface.
    let status = status_as_admin(&node).await;
    assert_eq!(status["security"]["transport"], "mtls", "{status}");
    let metrics = as_admin(&node, "/metrics").await;
    for line in [
        r#"consensusdb_requests_refused_total{code="UNAUTHENTICATED",interface="grpc"} 1"#,
        r#"consensusdb_requests_refused_total{code="UNAUTHENTICATED",interface="http"} 5"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    node.stop().await;
}

#[tokio::test]
async fn plaintext_on_either_side_of_a_tls_connection_fails_clearly() {
    let node = TestNode::start().await;
    // A plaintext client against a TLS node: an error, never an answer; the
    // node counts the refused handshake and says why.
    let plain = client(format!("http://{}", node.addr), None).put(Record::new(key("k"), "v")).await;
    let refused = plain.expect_err("no plaintext answer from a TLS node");
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    let seen = status_as_admin(&node).await;
    assert!(seen["security"]["handshakes_refused"].as_u64().unwrap_or(0) >= 1, "{seen}");
    assert!(seen["security"]["last_handshake_refusal"].is_string(), "{seen}");
    node.stop().await;

    // A TLS client against a plaintext node is told what is wrong.
    let plaintext = TestNode::start_plaintext().await;
    let refused = client(format!("https://{}", plaintext.addr), Some(shared_credentials()))
        .put(Record::new(key("k"), "v"))
        .await
        .expect_err("no TLS on the other side");
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    assert!(refused.to_string().contains("--insecure-plaintext"), "{refused}");
    // ...which serves anyone, and says so on its status.
    let mut open = plaintext.connect().await;
    must_put(&mut open, crate::support::key("acme", "ACCOUNT", "k", None), b"v").await;
    let (code, body) = curl(&[&format!("{}/v1/status", plaintext.http_url())]).await;
    assert_eq!(code, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(seen["security"]["transport"], "plaintext", "{seen}");
    plaintext.stop().await;
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_told_so() {
    let node = TestNode::start().await;
    let other = tempfile::tempdir().expect("temp dir");
    let names =
        consensusdb_pki::NodeNames { dns: vec!["localhost".into()], ips: vec!["127.0.0.1".parse().unwrap()] };
    consensusdb_pki::cluster_dir::init(
        other.path(),
        "consensusdb",
        "n",
        &names,
        consensusdb_pki::issue::DEFAULT_VALIDITY,
    )
    .expect("another CA");
    let stranger = Credentials::admin_in(other.path()).expect("reads");
    let refused = client(node.grpc_url(), Some(stranger)).put(Record::new(key("k"), "v")).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
    assert!(refused.to_string().contains("not signed by the CA you trust"), "{refused}");
    node.stop().await;
}

/// What `Node::open` says for `config`.
async fn open_error(config: &NodeConfig) -> String {
    let listener = consensusdb_node::bind(config).await.expect("binds");
    match Node::open(config, listener).await {
        Ok(_) => panic!("the node opened"),
        Err(error @ NodeError::Security(_)) => error.to_string(),
        Err(other) => panic!("not a security error: {other}"),
    }
}

#[tokio::test]
async fn a_node_without_the_right_certificates_says_what_to_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = NodeConfig { data_dir: dir.path().to_path_buf(), ..NodeConfig::default() };
    config.grpc.listen = "127.0.0.1:0".parse().expect("addr");
    config.cluster.peers = vec!["127.0.0.1:1".into()];
    let error = open_error(&config).await;
    assert!(error.contains("consensusdb init") && error.contains("--tls-cert"), "{error}");
    assert!(!dir.path().join("tls").exists(), "a node with peers never makes a CA of its own");

    config.cluster.peers.clear();
    config.tls = shared_ca().node.clone();
    config.cluster.id = "prod".into();
    let error = open_error(&config).await;
    assert!(error.contains("cluster.id"), "{error}");
}

#[test]
fn a_fresh_node_makes_its_own_ca_and_the_cli_finds_the_admin_credential() {
    let cwd = tempfile::tempdir().expect("temp dir");
    let launch = Launch { self_made_tls: true, capture_stderr: false, ..Launch::default() };
    let mut node = NodeProcess::launch(&cwd.path().join("data"), launch);
    let tls = cwd.path().join("data/tls");
    for file in
        ["ca.pem", "ca.key", "node-node-1.pem", "node-node-1.key", "client-admin.pem", "client-admin.key"]
    {
        assert!(tls.join(file).is_file(), "{file} was made");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls.join("client-admin.key")).expect("exists").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "private keys are the owner's only");
    // The CLI, run where the node runs, finds the credential by itself.
    let put = Command::new(env!("CARGO_BIN_EXE_consensusdb"))
        .current_dir(cwd.path())
        .args(["-s", &node.addr.to_string(), "put", "acme", "ACCOUNT", "balance", "1", "--untimed"])
        .env_remove("CONSENSUSDB_CA")
        .env_remove("CONSENSUSDB_CERT")
        .env_remove("CONSENSUSDB_KEY")
        .env_remove("CONSENSUSDB_SERVERS")
        .output()
        .expect("runs");
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success());
    // A restart keeps the CA it made.
    let ca = std::fs::read(tls.join("ca.pem")).expect("reads");
    let mut again =
        NodeProcess::launch(&cwd.path().join("data"), Launch { self_made_tls: true, ..Launch::default() });
    assert_eq!(std::fs::read(tls.join("ca.pem")).expect("reads"), ca, "the CA is made once");
    again.send_sigterm();
    assert!(again.child.wait_for_exit(TEST_TIMEOUT).success());
}

/// The certificate the TLS port at `addr`, speaking `protocol`, presents
/// to a new connection.
async fn presented_on(
    addr: std::net::SocketAddr,
    protocol: &[u8],
    admin: &consensusdb_client::AdminPaths,
) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let mut config = (*tls_client_config(admin)).clone();
    config.alpn_protocols = vec![protocol.to_vec()];
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
}

/// Replaces a file the way deployment tools do: a new file renamed over it.
fn replace(path: &std::path::Path, text: &str) {
    let fresh = path.with_extension("new");
    std::fs::write(&fresh, text).expect("writes");
    std::fs::rename(&fresh, path).expect("renames");
}

/// A CA of the test's own in `dir`, with node `n1` for 127.0.0.1 and the
/// admin client: a test that rewrites certificate files must not touch
/// the shared CA's.
fn own_ca(dir: &std::path::Path) -> consensusdb_pki::cluster_dir::Initialized {
    let validity = consensusdb_pki::issue::DEFAULT_VALIDITY;
    consensusdb_pki::cluster_dir::init(dir, "consensusdb", "n1", &n1_names(), validity).expect("a CA")
}

/// Where node `n1` of [`own_ca`] is dialed.
fn n1_names() -> consensusdb_pki::NodeNames {
    consensusdb_pki::NodeNames {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().expect("an IP")],
    }
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_rotated_on_disk_under_load_is_used_without_a_restart() {
    // A CA of the test's own: the shared one's files must not change.
    let certs = tempfile::tempdir().expect("temp dir");
    let made = own_ca(certs.path());
    let node_files = made.node.1.clone();
    let admin = consensusdb_client::AdminPaths::in_dir(certs.path());
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = NodeConfig { data_dir: data.path().to_path_buf(), ..NodeConfig::default() };
    config.grpc.listen = "127.0.0.1:0".parse().expect("addr");
    config.http.listen = "127.0.0.1:0".parse().expect("addr");
    config.tls = consensusdb_node::config::TlsConfig {
        ca_file: Some(made.ca.certificate.clone()),
        cert_file: Some(node_files.certificate.clone()),
        key_file: Some(node_files.key.clone()),
        reload_interval_ms: 100,
    };
    let listener = consensusdb_node::bind(&config).await.expect("binds");
    let http_listener = consensusdb_node::bind_http(&config).await.expect("binds").expect("gateway on");
    let (addr, http) = (listener.local_addr().unwrap(), http_listener.local_addr().unwrap());
    let node = Node::open(&config, listener).await.expect("opens").with_http(http_listener);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(node.serve(async { drop(stopped.await) }));
    // What new connections to the gRPC port and to the gateway are shown.
    let presented = async |admin: &consensusdb_client::AdminPaths| {
        (presented_on(addr, b"h2", admin).await, presented_on(http, b"http/1.1", admin).await)
    };
    let both = |pem: &str| (der_of(pem), der_of(pem));
    let first = std::fs::read_to_string(&node_files.certificate).expect("reads");
    assert_eq!(presented(&admin).await, both(&first));

    // Writers on one connection, opened before the rotation.
    let credentials = Credentials::admin_in(certs.path()).expect("reads");
    let writer = client(format!("https://{addr}"), Some(credentials.clone()));
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (writer, writing) = (writer.clone(), writing.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let key = consensusdb_client::RowKey::new("acme", "LOAD", "w").at(Some(at_ms(i)));
                writer.put(Record::new(key.clone(), "v")).await.expect("every write during the rotation");
                acked.push(key);
                i += 1;
            }
            acked
        })
    };

    // A new certificate and key for the same node, dropped into place.
    let ca = consensusdb_pki::Authority::load_dir(certs.path()).expect("loads the CA");
    let second = ca.issue_node("n1", &n1_names(), consensusdb_pki::issue::DEFAULT_VALIDITY).expect("issues");
    replace(&node_files.key, &second.key_pem);
    replace(&node_files.certificate, &second.certificate_pem);
    eventually(TEST_TIMEOUT, "new connections get the new certificate", async || {
        let now = presented(&admin).await;
        if now == both(&second.certificate_pem) { Ok(()) } else { Err("the old one on a port") }
    })
    .await;

    // A broken file is refused and the new certificate stays in use.
    replace(&node_files.certificate, "not a certificate");
    let status = eventually(TEST_TIMEOUT, "the broken file is refused", async || {
        let (code, body) = curl(&[
            "--cacert",
            &admin.ca.display().to_string(),
            "--cert",
            &admin.certificate.display().to_string(),
            "--key",
            &admin.key.display().to_string(),
            &format!("https://{http}/v1/status"),
        ])
        .await;
        let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if code == 200 && status["security"]["certificate_reloads_refused"].as_u64() >= Some(1) {
            Ok(status)
        } else {
            Err(body)
        }
    })
    .await;
    assert!(status["security"]["certificate_reloads"].as_u64() >= Some(1), "{status}");
    let why = status["security"]["last_reload_refusal"].as_str().unwrap_or_default();
    assert!(
        why.contains(&node_files.certificate.display().to_string()) || why.contains("certificate"),
        "{why}"
    );
    assert_eq!(presented(&admin).await, both(&second.certificate_pem), "the valid one stays in use");

    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let acked = load.await.expect("the writer finished");
    assert!(!acked.is_empty(), "writes went on across the rotation");
    let reader = client(format!("https://{addr}"), Some(credentials));
    let mut lost = 0;
    for key in &acked {
        if reader.get(key.clone()).await.expect("reads").is_none() {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{} acknowledged writes across the rotation", acked.len());
    let _ = stop.send(());
    served.await.expect("joins").expect("stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_the_master_key_of_a_running_process() {
    let certs = tempfile::tempdir().expect("temp dir");
    let made = own_ca(certs.path());
    let node_files = made.node.1.clone();
    let shown = |path: &std::path::Path| path.display().to_string();
    let launch = Launch {
        // Its own files (not the shared CA's), and no polling: only the
        // signal reloads.
        self_made_tls: true,
        args: vec![
            "--tls-ca".into(),
            shown(&made.ca.certificate),
            "--tls-cert".into(),
            shown(&node_files.certificate),
            "--tls-key".into(),
            shown(&node_files.key),
        ],
        env: vec![
            ("CONSENSUSDB_TLS__RELOAD_INTERVAL_MS".into(), "0".into()),
            ("CONSENSUSDB_SEAL__RELOAD_INTERVAL_MS".into(), "0".into()),
        ],
        ..Launch::default()
    };
    let data = tempfile::tempdir().expect("temp dir");
    let mut node = NodeProcess::launch(data.path(), launch);
    let admin = consensusdb_client::AdminPaths::in_dir(certs.path());
    let first = std::fs::read_to_string(&node_files.certificate).expect("reads");
    assert_eq!(presented_on(node.http, b"http/1.1", &admin).await, der_of(&first));

    let ca = consensusdb_pki::Authority::load_dir(certs.path()).expect("loads the CA");
    let second = ca.issue_node("n1", &n1_names(), consensusdb_pki::issue::DEFAULT_VALIDITY).expect("issues");
    replace(&node_files.key, &second.key_pem);
    replace(&node_files.certificate, &second.certificate_pem);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        presented_on(node.http, b"http/1.1", &admin).await,
        der_of(&first),
        "without polling, nothing changes before the signal"
    );
    crate::process::signal(node.pid(), "HUP");
    eventually(TEST_TIMEOUT, "SIGHUP puts the new certificate in use", async || {
        let now = presented_on(node.http, b"http/1.1", &admin).await;
        if now == der_of(&second.certificate_pem) { Ok(()) } else { Err("the old one") }
    })
    .await;

    // The master key file beside the CA: reloaded by the same signal.
    let master_keys = async || {
        let status: serde_json::Value =
            serde_json::from_str(&get_as(&admin, node.http, "/v1/status").await).expect("JSON");
        status["security"]["master_keys"].clone()
    };
    assert_eq!(master_keys().await["held"], serde_json::json!([1]));
    consensusdb_pki::master_key_file::add_key(&made.master_key).expect("adds a key");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(master_keys().await["held"], serde_json::json!([1]), "without polling, not before the signal");
    crate::process::signal(node.pid(), "HUP");
    eventually(TEST_TIMEOUT, "SIGHUP loads the staged master key", async || {
        let keys = master_keys().await;
        if keys["staged"] == serde_json::json!([2]) { Ok(()) } else { Err(keys) }
    })
    .await;
    node.send_sigterm();
    assert!(node.child.wait_for_exit(TEST_TIMEOUT).success(), "SIGHUP did not end the process");
}

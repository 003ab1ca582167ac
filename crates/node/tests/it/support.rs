//! A node running in-process on an ephemeral port, over mTLS with the
//! credentials it made for itself (plaintext only where a test asks for
//! it), `must_*` helpers, and [`eventually`], how tests wait for
//! something to happen.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use consensusdb_client::{AdminPaths, Client, Credentials};
use consensusdb_node::NodeError;
use consensusdb_node::config::{NodeConfig, TlsConfig};
use consensusdb_proto::v1::records_client::RecordsClient;
use consensusdb_proto::v1::{self, Compression};
use consensusdb_types::TimeUuid;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Bound on waits for a node to start or stop.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on every RPC a test client makes.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before checking a condition again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Checks `check` until it returns `Ok`, and returns what it holds. `Err`
/// carries what was seen instead: if the condition still fails after
/// `within`, the test fails naming `what` it waited for and showing the
/// last thing seen. Tests wait for conditions rather than for a fixed
/// time, which is too long on an idle machine and too short on a busy one.
pub async fn eventually<T, E: Debug>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match check().await {
            Ok(done) => return done,
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen:#?}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// A node serving gRPC and the JSON gateway on 127.0.0.1 with its own data
/// directory.
pub struct TestNode {
    pub addr: SocketAddr,
    pub http: SocketAddr,
    pub client: RecordsClient<Channel>,
    /// The admin credential the node made, `None` in plaintext.
    pub credentials: Option<Credentials>,
    /// Where that credential's files are, `None` in plaintext.
    pub admin: Option<AdminPaths>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), NodeError>>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// A node on a fresh temporary directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A node serving plaintext (`--insecure-plaintext`), on a fresh
    /// temporary directory: for the tests of plaintext itself.
    pub async fn start_plaintext() -> Self {
        Self::start_with(|config| config.dev.insecure_plaintext = true).await
    }

    /// A node on a fresh temporary directory, with changed configuration.
    pub async fn start_with(change: impl FnOnce(&mut NodeConfig)) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut node = Self::start_in(temp.path(), change).await;
        node._temp = Some(temp);
        node
    }

    /// A node on `data_dir`.
    pub async fn start_in(data_dir: &Path, change: impl FnOnce(&mut NodeConfig)) -> Self {
        let mut config = NodeConfig { data_dir: data_dir.to_path_buf(), ..NodeConfig::default() };
        config.grpc.listen = "127.0.0.1:0".parse().expect("addr");
        config.http.listen = "127.0.0.1:0".parse().expect("addr");
        config.tls = shared_ca().node.clone();
        change(&mut config);
        if config.dev.insecure_plaintext {
            config.tls = TlsConfig::default();
        }
        let listener = consensusdb_node::bind(&config).await.expect("binds");
        let addr = listener.local_addr().expect("local addr");
        let http_listener = consensusdb_node::bind_http(&config).await.expect("binds").expect("gateway on");
        let http = http_listener.local_addr().expect("local addr");
        let node = consensusdb_node::Node::open(&config, listener)
            .await
            .expect("node opens")
            .with_http(http_listener);
        let admin = node.is_tls().then(|| shared_ca().admin.clone());
        let credentials = admin.as_ref().map(|_| shared_credentials());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(node.serve(async move {
            let _ = signal.await;
        }));
        let client = connect_with(addr, credentials.as_ref()).await;
        Self {
            addr,
            http,
            client,
            credentials,
            admin,
            shutdown: Some(shutdown),
            task: Some(task),
            _temp: None,
        }
    }

    /// `https://` (or `http://` in plaintext) and the gRPC address.
    pub fn grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// `https://` (or `http://` in plaintext) and the gateway's address.
    pub fn http_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.http)
    }

    fn scheme(&self) -> &'static str {
        if self.credentials.is_some() { "https" } else { "http" }
    }

    /// A new gRPC client as the admin.
    pub async fn connect(&self) -> RecordsClient<Channel> {
        connect_with(self.addr, self.credentials.as_ref()).await
    }

    /// The CLI's flags for the admin credential (none in plaintext).
    pub fn credential_args(&self) -> Vec<String> {
        if self.admin.is_some() { shared_credential_args() } else { Vec::new() }
    }

    /// A raw connection to the gateway (TLS as the admin, unless in
    /// plaintext), for tests that write HTTP bytes themselves.
    pub async fn http_stream(&self) -> Box<dyn RawStream> {
        let tcp = tokio::net::TcpStream::connect(self.http).await.expect("connects to the gateway");
        let Some(admin) = &self.admin else { return Box::new(tcp) };
        let config = tls_client_config(admin);
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("TLS handshake");
        Box::new(tls)
    }
}

/// One CA for every in-process test node, so a client (and a proxy in
/// front of a node) reaches any of them with one credential, as in a
/// cluster. Kept in Cargo's per-target temporary directory and reused
/// across runs; nodes the binary starts with no TLS configuration make
/// their own instead (see the process tests).
pub struct SharedCa {
    /// The node credential every test node serves with.
    pub node: TlsConfig,
    /// The admin client credential.
    pub admin: AdminPaths,
}

pub fn shared_ca() -> &'static SharedCa {
    static SHARED: std::sync::OnceLock<SharedCa> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("test-ca-{}", std::process::id()));
        let names = consensusdb_pki::NodeNames {
            dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().expect("ip")],
        };
        let made = consensusdb_pki::cluster_dir::init(
            &dir,
            "consensusdb",
            "test-node",
            &names,
            consensusdb_pki::issue::DEFAULT_VALIDITY,
        )
        .expect("makes the test CA");
        SharedCa {
            node: TlsConfig {
                ca_file: Some(made.ca.certificate.clone()),
                cert_file: Some(made.node.1.certificate),
                key_file: Some(made.node.1.key),
                ..TlsConfig::default()
            },
            admin: AdminPaths {
                ca: made.ca.certificate,
                certificate: made.admin.1.certificate,
                key: made.admin.1.key,
            },
        }
    })
}

/// The admin client's credentials of [`shared_ca`].
pub fn shared_credentials() -> Credentials {
    let admin = &shared_ca().admin;
    Credentials::from_files(&admin.ca, &admin.certificate, &admin.key).expect("reads the credential")
}

/// The CLI's flags for the admin credential of [`shared_ca`].
pub fn shared_credential_args() -> Vec<String> {
    let admin = &shared_ca().admin;
    let shown = |path: &PathBuf| path.display().to_string();
    vec![
        "--ca".into(),
        shown(&admin.ca),
        "--cert".into(),
        shown(&admin.certificate),
        "--key".into(),
        shown(&admin.key),
    ]
}

/// A byte stream to a server.
pub trait RawStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawStream for T {}

/// A TLS client configuration for the gateway (ALPN http/1.1) from an
/// admin credential.
pub fn tls_client_config(admin: &AdminPaths) -> Arc<rustls::ClientConfig> {
    let read = |path: &Path| std::fs::read_to_string(path).expect("reads");
    let (ca, certificate, key) = (read(&admin.ca), read(&admin.certificate), read(&admin.key));
    let credential =
        consensusdb_pki::tls::PemCredential { ca_bundle: &ca, certificate_chain: &certificate, key: &key };
    let mut config =
        (*consensusdb_pki::tls::client_config(&credential).expect("a TLS configuration")).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl TestNode {
    /// A connected SDK client for this node, as the admin of [`shared_ca`].
    pub async fn sdk(&self) -> Client {
        Client::builder()
            .endpoint(self.grpc_url())
            .credentials(shared_credentials())
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .expect("connects")
    }

    /// Shuts down cleanly; panics if the node reports an error.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shutdown.take().map(|s| s.send(()));
        let task = self.task.take().expect("running");
        tokio::time::timeout(TEST_TIMEOUT, task)
            .await
            .expect("node stops in time")
            .expect("node task")
            .expect("node stops cleanly");
        self._temp.take()
    }
}

/// A client connected to the TLS node at `addr` as the admin of
/// [`shared_ca`].
pub async fn connect(addr: SocketAddr) -> RecordsClient<Channel> {
    connect_with(addr, Some(&shared_credentials())).await
}

/// A blocking TLS connection to the gateway at `addr` as the admin of
/// [`shared_ca`], for tests that write HTTP bytes themselves.
pub fn https_stream_blocking(
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let tcp = std::net::TcpStream::connect(addr).expect("connects to the gateway");
    tcp.set_read_timeout(Some(CALL_TIMEOUT)).expect("sets a timeout");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let connection = rustls::ClientConnection::new(tls_client_config(&shared_ca().admin), name).expect("TLS");
    rustls::StreamOwned::new(connection, tcp)
}

/// A client connected to `addr` (TLS with `credentials`, plaintext
/// without), retrying while the server starts. Every call it makes times
/// out, so a hung server fails a test instead of hanging it.
pub async fn connect_with(addr: SocketAddr, credentials: Option<&Credentials>) -> RecordsClient<Channel> {
    RecordsClient::new(channel_with(addr, credentials).await)
}

/// A channel to the TLS node at `addr` as the admin of [`shared_ca`].
pub async fn channel(addr: SocketAddr) -> Channel {
    channel_with(addr, Some(&shared_credentials())).await
}

/// A channel to `addr`, as [`connect_with`].
pub async fn channel_with(addr: SocketAddr, credentials: Option<&Credentials>) -> Channel {
    let url = if credentials.is_some() { format!("https://{addr}") } else { format!("http://{addr}") };
    let endpoint = consensusdb_client::endpoint_for(&url, credentials, "addr")
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT);
    eventually(TEST_TIMEOUT, &format!("connect to {addr}"), async || endpoint.connect().await).await
}

pub fn key(major: &str, region: &str, minor: &str, time: Option<TimeUuid>) -> v1::Key {
    v1::Key {
        major_key: major.into(),
        region: region.into(),
        minor_key: minor.into(),
        time_uuid: time.map(|t| t.as_bytes().to_vec()).unwrap_or_default(),
    }
}

pub fn row(major: &str, region: &str, minor: &str) -> v1::RowKey {
    v1::RowKey { major_key: major.into(), region: region.into(), minor_key: minor.into() }
}

pub fn put_request(key: v1::Key, value: &[u8]) -> v1::PutRequest {
    v1::PutRequest {
        key: Some(key),
        value: value.to_vec(),
        compression: Compression::None.into(),
        if_absent: false,
        ttl_ms: 0,
        write_concern: 0,
        client_key_fingerprint: Vec::new(),
    }
}

pub async fn must_put(client: &mut RecordsClient<Channel>, key: v1::Key, value: &[u8]) -> v1::Head {
    client
        .put(put_request(key.clone(), value))
        .await
        .unwrap_or_else(|status| panic!("put {key:?}: {status}"))
        .into_inner()
        .head
        .expect("put returns a head")
}

pub async fn must_get(client: &mut RecordsClient<Channel>, key: v1::Key) -> v1::Record {
    client
        .get(v1::GetRequest { key: Some(key.clone()), read: None })
        .await
        .unwrap_or_else(|status| panic!("get {key:?}: {status}"))
        .into_inner()
        .record
        .expect("get returns a record")
}

/// Drains a scan stream into its records and final page token.
pub async fn must_collect(
    stream: Result<tonic::Response<tonic::Streaming<v1::ScanChunk>>, tonic::Status>,
) -> (Vec<v1::Record>, Vec<u8>, usize) {
    let mut stream = stream.expect("scan starts").into_inner();
    let (mut records, mut token, mut chunks) = (Vec::new(), Vec::new(), 0);
    while let Some(chunk) = stream.message().await.expect("scan chunk") {
        chunks += 1;
        records.extend(chunk.records);
        if !chunk.next_page_token.is_empty() {
            token = chunk.next_page_token;
        }
    }
    (records, token, chunks)
}

/// The same v7 TimeUUID for the same `ms` (after a fixed base time) on every call.
pub fn at_ms(ms: u64) -> TimeUuid {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + ms);
    TimeUuid::from_content(time, &ms.to_be_bytes())
}

/// A TCP proxy in front of a node that a test can cut, as a crash or a
/// partition would: the listener closes and every open connection drops.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    tasks: tokio::task::JoinSet<()>,
}

impl CuttableProxy {
    /// Starts forwarding 127.0.0.1:ephemeral to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("local addr");
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, tasks }
    }

    /// Drops the listener and every connection through it.
    pub async fn cut(mut self) {
        self.tasks.shutdown().await;
    }
}

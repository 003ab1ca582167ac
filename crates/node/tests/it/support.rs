//! A node running in-process on an ephemeral port, `must_*` helpers, and
//! [`eventually`], how tests wait for something to happen.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use consensusdb_node::NodeError;
use consensusdb_node::config::NodeConfig;
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
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), NodeError>>>,
    _temp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// A node on a fresh temporary directory.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
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
        change(&mut config);
        let listener = consensusdb_node::bind(&config).await.expect("binds");
        let addr = listener.local_addr().expect("local addr");
        let http_listener = consensusdb_node::bind_http(&config).await.expect("binds").expect("gateway on");
        let http = http_listener.local_addr().expect("local addr");
        let node = consensusdb_node::Node::open(&config, listener)
            .await
            .expect("node opens")
            .with_http(http_listener);
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(node.serve(async move {
            let _ = signal.await;
        }));
        let client = connect(addr).await;
        Self { addr, http, client, shutdown: Some(shutdown), task: Some(task), _temp: None }
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

/// A client connected to `addr`, retrying while the server starts. Every
/// call it makes times out, so a hung server fails a test instead of
/// hanging it.
pub async fn connect(addr: SocketAddr) -> RecordsClient<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT);
    let channel =
        eventually(TEST_TIMEOUT, &format!("connect to {addr}"), async || endpoint.connect().await).await;
    RecordsClient::new(channel)
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

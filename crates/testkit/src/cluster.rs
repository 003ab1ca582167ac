//! An in-process cluster of real nodes on ephemeral loopback ports, over
//! mTLS with certificates from one [`TestPki`]. Every directed link
//! between two nodes runs through its own [`FaultProxy`], so a test can
//! partition, delay or drop any link, and heal it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use consensusdb_client::Client;
use consensusdb_mesh::{ConnectError, Connecting, Connector, PlainConnector, TlsConnector};
use consensusdb_node::Node;
use consensusdb_node::config::NodeConfig;
use consensusdb_node::security::NodeSecurity;
use consensusdb_proto::mesh::v1 as pb;
use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::{FaultProxy, TestPki, eventually};

/// Routes this node's connections to peer `address` through the proxy of
/// the link (this node → that peer), verifying the peer's certificate as
/// `address` (what it advertised), not as the proxy.
struct RoutedConnector {
    from: usize,
    routes: Arc<Mutex<Routes>>,
    /// `None` for a node configured with `--insecure-plaintext`.
    tls: Option<TlsConnector>,
}

#[derive(Default)]
struct Routes {
    /// Node index by advertised address.
    index: HashMap<String, usize>,
    /// The proxy address of each directed link.
    links: HashMap<(usize, usize), SocketAddr>,
}

impl Connector for RoutedConnector {
    fn connect(&self, address: &str, timeout: Duration) -> Connecting {
        let routed = {
            let routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            routes.index.get(address).and_then(|to| routes.links.get(&(self.from, *to))).copied()
        };
        match (routed, &self.tls) {
            (Some(proxy), Some(tls)) => tls.connect_via(&proxy.to_string(), address, timeout),
            (Some(proxy), None) => PlainConnector::default().connect(&proxy.to_string(), timeout),
            (None, _) => {
                let error =
                    ConnectError { address: address.into(), reason: "no test route to this address".into() };
                Box::pin(async move { Err(error) })
            }
        }
    }
}

/// One node of the cluster.
pub struct ClusterNode {
    /// Its gRPC address (also what it advertises).
    pub addr: SocketAddr,
    /// Its data directory.
    pub data_dir: PathBuf,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

/// Changes a node's configuration before it starts: (node index, config).
type Configure = dyn Fn(usize, &mut NodeConfig) + Send + Sync;

/// N nodes replicating with each other.
pub struct TestCluster {
    /// The nodes, by index.
    pub nodes: Vec<ClusterNode>,
    proxies: HashMap<(usize, usize), FaultProxy>,
    routes: Arc<Mutex<Routes>>,
    configure: Arc<Configure>,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes, each seeded with every other node.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, |_, _| {}).await
    }

    /// Like [`TestCluster::start`], letting `configure` change each node's
    /// configuration (node index, config) before it starts.
    pub async fn start_with(
        n: usize,
        configure: impl Fn(usize, &mut NodeConfig) + Send + Sync + 'static,
    ) -> Self {
        let cluster = Self::start_unready(n, configure).await;
        for i in 0..n {
            cluster.ready(i).await;
        }
        cluster
    }

    /// Like [`TestCluster::start_with`], without waiting for the nodes to
    /// accept writes (for tests of nodes that never may).
    pub async fn start_unready(
        n: usize,
        configure: impl Fn(usize, &mut NodeConfig) + Send + Sync + 'static,
    ) -> Self {
        Self::start_cut(n, &[], configure).await
    }

    /// Like [`TestCluster::start_unready`], with the links between each
    /// pair in `cut` partitioned (both ways) before any node starts: those
    /// nodes never reach each other, as two data centers joined only
    /// through a third.
    pub async fn start_cut(
        n: usize,
        cut: &[(usize, usize)],
        configure: impl Fn(usize, &mut NodeConfig) + Send + Sync + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut cluster = Self {
            nodes: Vec::new(),
            proxies: HashMap::new(),
            routes: Arc::default(),
            configure: Arc::new(configure),
            pki: TestPki::new(),
            _dir: dir,
        };
        let mut listeners = Vec::new();
        for i in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
            let addr = listener.local_addr().expect("bound");
            let data_dir = cluster._dir.path().join(format!("node{i}"));
            cluster.nodes.push(ClusterNode { addr, data_dir, running: None });
            listeners.push(listener);
        }
        for i in 0..n {
            cluster.add_links(i).await;
        }
        for &(a, b) in cut {
            cluster.partition(&[a], &[b]);
        }
        let seeds: Vec<String> = cluster.nodes.iter().map(|node| node.addr.to_string()).collect();
        for (i, listener) in listeners.into_iter().enumerate() {
            cluster.launch(i, listener, seeds.clone()).await;
        }
        cluster
    }

    /// Waits until node `i` accepts writes (a new node bootstraps first).
    pub async fn ready(&self, i: usize) {
        eventually(Duration::from_secs(60), &format!("node {i} becomes ready"), async || {
            match self.admin(i).await.cluster_status(pb::ClusterStatusRequest {}).await {
                Ok(status) if status.get_ref().bootstrapping.is_empty() => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }

    /// Adds a node seeded with one existing node only; it must find the
    /// others itself. Returns its index once it accepts writes.
    pub async fn join(&mut self, seed: usize) -> usize {
        let i = self.join_unready(seed).await;
        self.ready(i).await;
        i
    }

    /// Like [`TestCluster::join`], returning as soon as the node runs (it
    /// may still be bootstrapping), so a test can act on its links.
    pub async fn join_unready(&mut self, seed: usize) -> usize {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound");
        let i = self.nodes.len();
        let data_dir = self._dir.path().join(format!("node{i}"));
        self.nodes.push(ClusterNode { addr, data_dir, running: None });
        self.add_links(i).await;
        let seed = self.nodes[seed].addr.to_string();
        self.launch(i, listener, vec![seed]).await;
        i
    }

    /// Node `i`'s view of the cluster.
    pub async fn status(&self, i: usize) -> pb::ClusterStatusResponse {
        self.admin(i).await.cluster_status(pb::ClusterStatusRequest {}).await.expect("status").into_inner()
    }

    /// Creates the proxies between node `i` and every node before it.
    async fn add_links(&mut self, i: usize) {
        let mut routes = Vec::new();
        for j in 0..=i {
            for (from, to) in [(i, j), (j, i)] {
                if from == to || self.proxies.contains_key(&(from, to)) {
                    continue;
                }
                let proxy = FaultProxy::start(self.nodes[to].addr).await.expect("proxy starts");
                routes.push(((from, to), proxy.addr));
                self.proxies.insert((from, to), proxy);
            }
        }
        let mut table = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        table.index.insert(self.nodes[i].addr.to_string(), i);
        table.links.extend(routes);
    }

    async fn launch(&mut self, i: usize, listener: TcpListener, seeds: Vec<String>) {
        let node = &mut self.nodes[i];
        let mut config = NodeConfig { data_dir: node.data_dir.clone(), ..NodeConfig::default() };
        config.grpc.listen = node.addr;
        config.cluster.peers = seeds;
        config.cluster.advertise = node.addr.to_string();
        config.cluster.heartbeat_ms = 100;
        config.cluster.purge_interval_ms = 100;
        self.pki.configure(&mut config, &format!("node-{i}"));
        (self.configure)(i, &mut config);
        let routes = self.routes.clone();
        let connector = move |security: &NodeSecurity| -> Arc<dyn Connector> {
            let tls = match security {
                NodeSecurity::Plaintext => None,
                NodeSecurity::Tls { tls, .. } => Some(TlsConnector::new(tls.clone(), None)),
            };
            Arc::new(RoutedConnector { from: i, routes, tls })
        };
        let opened = Node::open_with(&config, listener, connector).await.expect("node opens");
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            if let Err(error) = opened.serve(async { drop(stopped.await) }).await {
                tracing::error!(%error, "test node failed");
            }
        });
        node.running = Some((stop, task));
    }

    /// Stops node `i` cleanly (its data stays).
    pub async fn stop(&mut self, i: usize) {
        if let Some((stop, task)) = self.nodes[i].running.take() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }

    /// Starts a stopped node again on the same address and data directory.
    pub async fn restart(&mut self, i: usize) {
        let listener = TcpListener::bind(self.nodes[i].addr).await.expect("rebinds its port");
        let seeds =
            self.nodes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n.addr.to_string()).collect();
        self.launch(i, listener, seeds).await;
        self.ready(i).await;
    }

    /// Stops node `i`, deletes its data directory and starts it again: a new
    /// node id on the same address.
    pub async fn wipe(&mut self, i: usize) {
        self.stop(i).await;
        std::fs::remove_dir_all(&self.nodes[i].data_dir).expect("removes the data directory");
        self.restart(i).await;
    }

    /// The proxy of the link `from → to`.
    pub fn link(&self, from: usize, to: usize) -> &FaultProxy {
        &self.proxies[&(from, to)]
    }

    /// Cuts every link between the two groups, in both directions.
    pub fn partition(&self, left: &[usize], right: &[usize]) {
        for &a in left {
            for &b in right {
                self.link(a, b).partition();
                self.link(b, a).partition();
            }
        }
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.proxies.values().for_each(FaultProxy::heal);
    }

    /// An SDK client for node `i`, as the admin client.
    pub fn client(&self, i: usize) -> Client {
        self.client_as(i, self.pki.admin()).build_lazy().expect("valid endpoint")
    }

    /// A replication client for node `i` (status, digests, removal), as the
    /// admin client.
    pub async fn admin(&self, i: usize) -> ReplicationClient<Channel> {
        self.pki.replication(self.nodes[i].addr).await
    }

    /// A channel to node `i` as the admin client, for the services the
    /// SDK does not wrap (access, replication).
    pub async fn admin_channel(&self, i: usize) -> Channel {
        self.pki.channel(self.nodes[i].addr).await
    }

    /// An SDK client for node `i` that acts with bearer `token` (trusting
    /// the cluster CA, presenting no certificate).
    pub fn client_with_token(&self, i: usize, token: &str) -> Client {
        let ca = std::fs::read_to_string(self.pki.ca_file()).expect("reads the CA");
        self.client_as(i, consensusdb_client::Credentials::new(ca))
            .token(token)
            .build_lazy()
            .expect("valid endpoint")
    }

    /// An SDK client for node `i` presenting client `name`'s certificate.
    pub fn client_named(&self, i: usize, name: &str) -> Client {
        self.client_as(i, self.pki.client(name)).build_lazy().expect("valid endpoint")
    }

    fn client_as(
        &self,
        i: usize,
        credentials: consensusdb_client::Credentials,
    ) -> consensusdb_client::ClientBuilder {
        Client::builder()
            .endpoints([format!("https://{}", self.nodes[i].addr)])
            .credentials(credentials)
            .timeout(Duration::from_secs(30))
    }

    /// The cluster's CA and credentials.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// Node `i`'s digest of everything, with the frontier it was taken at.
    pub async fn digest(&self, i: usize) -> pb::DigestResponse {
        self.admin(i).await.digest(pb::DigestRequest::default()).await.expect("digest").into_inner()
    }

    /// Waits until the running nodes report the same frontier and the same
    /// digest; panics with both views after `timeout`.
    pub async fn converge(&self, timeout: Duration) -> pb::DigestResponse {
        eventually(timeout, "the running nodes converge", async || {
            let mut digests = Vec::new();
            for (i, node) in self.nodes.iter().enumerate() {
                if node.running.is_some() {
                    digests.push((i, self.digest(i).await));
                }
            }
            let (_, first) = &digests[0];
            if digests.iter().all(|(_, d)| d.frontier == first.frontier && d.total == first.total) {
                return Ok(first.clone());
            }
            let views: Vec<String> = digests
                .iter()
                .map(|(i, d)| format!("node {i}: {} origins, total {:?}", d.frontier.len(), hex(&d.total)))
                .collect();
            Err(views)
        })
        .await
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }

    /// The data directory of node `i`.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

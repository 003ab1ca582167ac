//! A cluster CA for tests: node credentials to configure nodes with,
//! client credentials for the SDK, and channels to a node's replication
//! service, so every test runs over mTLS like production.

use std::net::SocketAddr;
use std::path::PathBuf;

use consensusdb_client::Credentials;
use consensusdb_node::config::{NodeConfig, TlsConfig};
use consensusdb_pki::issue::DEFAULT_VALIDITY;
use consensusdb_pki::{Authority, NodeNames, cluster_dir, credential_paths};
use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use tonic::transport::Channel;

/// The cluster id nodes are configured with by default, so a node made
/// with [`TestPki::configure`] needs no other change.
pub const TEST_CLUSTER: &str = "consensusdb";

/// A CA and the credentials it issued, in a temporary directory.
pub struct TestPki {
    ca: Authority,
    ca_file: PathBuf,
    dir: tempfile::TempDir,
}

impl TestPki {
    /// A new CA for [`TEST_CLUSTER`].
    pub fn new() -> Self {
        Self::for_cluster(TEST_CLUSTER)
    }

    /// A new CA for `cluster`, and the cluster's master key beside it.
    pub fn for_cluster(cluster: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca = Authority::create(cluster).expect("makes a CA");
        let ca_file = ca.save(dir.path()).expect("saves the CA").certificate;
        // Beside the CA, as `consensusdb init` leaves it: every node
        // configured from this CA seals with this one master key.
        consensusdb_pki::master_key_file::ensure(dir.path()).expect("makes the master key");
        Self { ca, ca_file, dir }
    }

    /// The CA.
    pub fn authority(&self) -> &Authority {
        &self.ca
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    /// The files of node `name`'s credential, issued on first use for
    /// `localhost` and 127.0.0.1.
    pub fn node(&self, name: &str) -> TlsConfig {
        let files = credential_paths(self.dir.path(), &format!("node-{name}"));
        if !files.certificate.exists() {
            let names =
                NodeNames { dns: vec!["localhost".into()], ips: vec!["127.0.0.1".parse().expect("ip")] };
            let issued =
                self.ca.issue_node(name, &names, DEFAULT_VALIDITY).expect("issues a node certificate");
            cluster_dir::save(self.dir.path(), issued).expect("saves it");
        }
        TlsConfig {
            ca_file: Some(self.ca_file.clone()),
            cert_file: Some(files.certificate),
            key_file: Some(files.key),
            ..TlsConfig::default()
        }
    }

    /// Node `name`'s credential as a client presents it: what a node
    /// dialing a peer (or a test posing as one) uses.
    pub fn node_credentials(&self, name: &str) -> Credentials {
        let files = self.node(name);
        let path = |path: Option<PathBuf>| path.expect("set");
        Credentials::from_files(&path(files.ca_file), &path(files.cert_file), &path(files.key_file))
            .expect("reads the credential")
    }

    /// Configures `config` to serve as node `name` of this CA's cluster.
    pub fn configure(&self, config: &mut NodeConfig, name: &str) {
        config.tls = self.node(name);
        config.cluster.id = self.ca.cluster().to_string();
    }

    /// Client `name`'s credentials (the CA and its certificate), issued on
    /// first use.
    pub fn client(&self, name: &str) -> Credentials {
        let files = credential_paths(self.dir.path(), &format!("client-{name}"));
        if !files.certificate.exists() {
            let issued = self.ca.issue_client(name, DEFAULT_VALIDITY).expect("issues a client certificate");
            cluster_dir::save(self.dir.path(), issued).expect("saves it");
        }
        Credentials::from_files(&self.ca_file, &files.certificate, &files.key).expect("reads the credential")
    }

    /// The admin client's credentials.
    pub fn admin(&self) -> Credentials {
        self.client(cluster_dir::ADMIN_CLIENT)
    }

    /// A channel to the node at `addr`, as the admin client.
    pub async fn channel(&self, addr: SocketAddr) -> Channel {
        channel(addr, &self.admin()).await
    }

    /// The replication service of the node at `addr`, as the admin client.
    pub async fn replication(&self, addr: SocketAddr) -> ReplicationClient<Channel> {
        ReplicationClient::new(self.channel(addr).await)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// A channel to the node at `addr` with `credentials`.
pub async fn channel(addr: SocketAddr, credentials: &Credentials) -> Channel {
    consensusdb_client::endpoint_for(&format!("https://{addr}"), Some(credentials), "addr")
        .expect("an endpoint")
        .connect()
        .await
        .unwrap_or_else(|error| {
            panic!("connect to {addr}: {}", consensusdb_types::error::error_chain(&error))
        })
}

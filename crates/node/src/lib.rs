//! Layer 5 of ConsensusDB: the node. It loads configuration, opens storage,
//! joins the replication mesh, serves the APIs and shuts down cleanly.
//!
//! The `consensusdb` binary (`main.rs`) is a thin command-line shell over
//! [`run`]; tests call [`run`] in-process with their own listener and
//! shutdown future. [`cli`] holds the client commands and the interactive
//! shell, which talk to nodes through the Rust SDK like any application.

pub mod cli;
pub mod config;
pub mod descriptors;
pub mod master_key;
pub mod reload;
pub mod security;

use std::future::Future;
use std::net::SocketAddr;

use std::sync::Arc;
use std::time::Duration;

use consensusdb_access::Access;
use consensusdb_api::http::hosts::AllowedHosts;
use consensusdb_api::{
    ConnectionLimits, Connections, Gateway, HandshakeRefusals, Metrics, Port, Readiness, RecordsApi,
    ServerTransport,
};
use consensusdb_client::AdminPaths;
use consensusdb_mesh::{Connector, Mesh, PlainConnector, TlsConnector};
use consensusdb_pki::cluster_dir;
use consensusdb_storage::{StorageError, Store};
use consensusdb_types::{FieldError, Identity, Role};
use tokio::net::TcpListener;

use crate::config::NodeConfig;
use crate::descriptors::DescriptorBudget;
use crate::master_key::MasterKeyReload;
use crate::reload::CertificateReload;
use crate::security::{NodeSecurity, SecurityError};

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage could not be opened or closed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The process could not listen for SIGTERM and SIGINT.
    #[error("cannot listen for shutdown signals: {0}")]
    Signals(std::io::Error),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] consensusdb_api::ServeError),
    /// The JSON gateway failed.
    #[error("HTTP gateway: {0}")]
    Http(std::io::Error),
    /// The metrics registry refused a metric (a bug).
    #[error("metrics: {0}")]
    Metrics(consensusdb_api::metrics::MetricsError),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The open-file limit could not be read.
    #[error("cannot read the open-file limit: {0}")]
    Descriptors(std::io::Error),
    /// The node cannot secure its ports (no certificate, a bad one).
    #[error("TLS: {0}")]
    Security(#[from] SecurityError),
    /// The node has no usable master key to seal values with.
    #[error("sealing: {0}")]
    MasterKey(#[from] master_key::MasterKeyError),
    /// The configuration is not valid.
    #[error("configuration: {0}")]
    Config(#[from] consensusdb_types::FieldError),
}

/// Binds the configured gRPC address.
pub async fn bind(config: &NodeConfig) -> Result<TcpListener, NodeError> {
    bind_addr(config.grpc.listen).await
}

/// Binds the configured JSON gateway address, if the gateway is enabled.
pub async fn bind_http(config: &NodeConfig) -> Result<Option<TcpListener>, NodeError> {
    if !config.http.enabled {
        return Ok(None);
    }
    Ok(Some(bind_addr(config.http.listen).await?))
}

/// Connections the kernel queues for a listener before it drops new ones.
/// A burst of clients (a fleet reconnecting after a restart, or a flood
/// the connection cap sheds) must not overflow it while the accept loop
/// catches up: a dropped SYN costs its client a one-second retransmit.
/// The default of 128 did overflow under such a burst; the kernel caps
/// this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 1024;

/// How often a node looks for re-wrapped copies of destroyed data keys
/// (left by a re-wrap that crossed a shred) and removes them.
const REWRAP_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

async fn bind_addr(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    let bind = || {
        let socket =
            if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        // As std's and tokio's own bind do: a restarted node rebinds at
        // once, past its old connections' TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().map_err(|source| NodeError::Bind { addr, source })
}

/// A node whose storage is open and whose listener is bound: ready to serve.
pub struct Node {
    store: Store,
    mesh: Mesh,
    listener: TcpListener,
    /// The JSON gateway's listener, when it is served.
    http: Option<TcpListener>,
    http_max_body_bytes: usize,
    http_allowed_hosts: Vec<String>,
    /// Tokens and grants: who each request acts for.
    access: Access,
    /// Client connections of both servers.
    connections: Connections,
    /// How each port's connections are secured.
    grpc_transport: ServerTransport,
    http_transport: ServerTransport,
    /// Failed TLS handshakes on either port.
    handshake_refusals: HandshakeRefusals,
    /// The admin client credential the node made for itself, if it did.
    self_made_admin: Option<AdminPaths>,
    /// Replaces the certificate when its files change, over TLS.
    reload: Option<CertificateReload>,
    /// Replaces the master keys when their file changes, when sealed.
    master_key_reload: Option<MasterKeyReload>,
    /// How long shutdown waits for calls in flight before cutting them.
    shutdown_grace: Duration,
}

impl Node {
    /// Opens storage (on the blocking pool: RocksDB may replay its WAL),
    /// secured as [`NodeSecurity::resolve`] decides, with peers reached
    /// over mTLS (plain TCP in development), from
    /// `cluster.source_address` when set.
    pub async fn open(config: &NodeConfig, listener: TcpListener) -> Result<Self, NodeError> {
        Self::open_with(config, listener, |security| {
            let source = config.cluster.source_address;
            match security {
                NodeSecurity::Plaintext => Arc::new(PlainConnector { source }),
                NodeSecurity::Tls { tls, .. } => Arc::new(TlsConnector::new(tls.clone(), source)),
            }
        })
        .await
    }

    /// Like [`Node::open`], with the way of reaching peers made by
    /// `connector` from the node's security (tests route it through
    /// fault-injecting proxies).
    pub async fn open_with(
        config: &NodeConfig,
        listener: TcpListener,
        connector: impl FnOnce(&NodeSecurity) -> Arc<dyn Connector>,
    ) -> Result<Self, NodeError> {
        let security = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || NodeSecurity::resolve(&config)).await??
        };
        let connector = connector(&security);
        let handshake_refusals = HandshakeRefusals::default();
        let (grpc_transport, http_transport, self_made_admin, reload) = match security {
            NodeSecurity::Plaintext => {
                tracing::warn!(
                    "DEVELOPMENT MODE (--insecure-plaintext): both ports serve plaintext to anyone who reaches \
                     them, nobody is authenticated, and peers are dialed without TLS"
                );
                (ServerTransport::Plaintext, ServerTransport::Plaintext, None, None)
            }
            NodeSecurity::Tls { tls, files, self_made_admin } => {
                let current = tls.current();
                tracing::info!(
                    identity = %current.identity,
                    certificate = %files.certificate.display(),
                    not_after = %current.not_after,
                    "serving mTLS"
                );
                let transport = |port| ServerTransport::Tls {
                    tls: tls.clone(),
                    port,
                    refusals: handshake_refusals.clone(),
                };
                let reload = CertificateReload::new(
                    files,
                    tls.clone(),
                    Duration::from_millis(config.tls.reload_interval_ms),
                );
                (transport(Port::Grpc), transport(Port::Http), self_made_admin, Some(reload))
            }
        };
        let limit = descriptors::current_limit().map_err(NodeError::Descriptors)?;
        let budget = DescriptorBudget::of(limit, config.server.max_connections);
        tracing::info!(
            open_file_limit = budget.limit,
            rocksdb_table_files = budget.rocksdb_table_files,
            max_connections = budget.connections,
            "file descriptors shared out"
        );
        let mut options = config.store_options(budget.rocksdb_table_files);
        let master_key_file = {
            let config = config.clone();
            match tokio::task::spawn_blocking(move || master_key::resolve(&config)).await?? {
                Some((keys, file)) => {
                    tracing::info!(file = %file.display(), master_keys = keys.ids().len(), "values are sealed at rest");
                    options.master_keys = Some(keys);
                    Some(file)
                }
                None => {
                    tracing::warn!(
                        "DEVELOPMENT MODE (--insecure-unsealed): new values are stored in the clear, and values \
                         sealed elsewhere cannot be read here"
                    );
                    None
                }
            }
        };
        let store = tokio::task::spawn_blocking(move || Store::open(options)).await??;
        let master_key_reload = master_key_file.map(|file| {
            MasterKeyReload::new(file, store.clone(), Duration::from_millis(config.seal.reload_interval_ms))
        });
        let bound =
            listener.local_addr().map_err(|source| NodeError::Bind { addr: config.grpc.listen, source })?;
        let mesh = Mesh::open(store.clone(), config.mesh_config(bound), connector).await?;
        let builtin_admin = Identity::new(&config.cluster.id, Role::Client, cluster_dir::ADMIN_CLIENT)
            .map_err(|error| FieldError::new("cluster.id", error.message))?;
        let access = Access::open(store.clone(), builtin_admin).await?;
        let connections = Connections::new(ConnectionLimits {
            max: budget.connections,
            idle_timeout: Duration::from_millis(config.server.idle_timeout_ms),
        });
        Ok(Self {
            store,
            access,
            mesh,
            listener,
            http: None,
            http_max_body_bytes: config.http.max_body_bytes,
            http_allowed_hosts: config.http.allowed_hosts.clone(),
            connections,
            grpc_transport,
            http_transport,
            handshake_refusals,
            self_made_admin,
            reload,
            master_key_reload,
            shutdown_grace: Duration::from_millis(config.server.shutdown_grace_ms),
        })
    }

    /// Whether the ports serve TLS (everything but `--insecure-plaintext`).
    pub fn is_tls(&self) -> bool {
        self.grpc_transport.is_tls()
    }

    /// The admin client credential the node made for itself on a
    /// zero-configuration start, if it did.
    pub fn self_made_admin(&self) -> Option<&AdminPaths> {
        self.self_made_admin.as_ref()
    }

    /// Failed TLS handshakes on either port.
    pub fn handshake_refusals(&self) -> &HandshakeRefusals {
        &self.handshake_refusals
    }

    /// What makes the node reload its certificate files (over TLS) and
    /// its master key file (when sealed) now: SIGHUP in the binary.
    pub fn reload_triggers(&self) -> Vec<Arc<tokio::sync::Notify>> {
        let certificate = self.reload.as_ref().map(CertificateReload::trigger);
        certificate.into_iter().chain(self.master_key_reload.as_ref().map(MasterKeyReload::trigger)).collect()
    }

    /// The client connections of both servers (cap, counts).
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// Also serves the JSON gateway, on `listener`.
    #[must_use]
    pub fn with_http(mut self, listener: TcpListener) -> Self {
        self.http = Some(listener);
        self
    }

    /// The address the JSON gateway serves on, if it is served.
    pub fn http_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.http.as_ref().map(TcpListener::local_addr)
    }

    /// The address the node serves on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The node's storage.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The node's place in the replication mesh.
    pub fn mesh(&self) -> &Mesh {
        &self.mesh
    }

    /// Serves gRPC (and the JSON gateway, if given) and replicates until
    /// `shutdown` completes, then ends replication streams, drains
    /// in-flight calls, commits and flushes queued writes, and closes
    /// storage. Calls still in flight after the shutdown grace period (a
    /// client that stopped reading, a frozen peer) are cut, so shutdown
    /// always ends.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let Node {
            store,
            access,
            mesh,
            listener,
            http,
            http_max_body_bytes,
            http_allowed_hosts,
            connections,
            grpc_transport,
            http_transport,
            handshake_refusals,
            self_made_admin: _,
            reload,
            master_key_reload,
            shutdown_grace,
        } = self;
        mesh.start();
        match store.resume_shred_removals().await {
            Ok(0) => {}
            Ok(resumed) => tracing::info!(resumed, "resumed removing shredded tenants' records"),
            Err(error) => tracing::warn!(%error, "could not look for unfinished shreds"),
        }
        match store.resume_reencryptions().await {
            Ok(0) => {}
            Ok(resumed) => tracing::info!(resumed, "resumed re-encrypting tenants' values"),
            Err(error) => tracing::warn!(%error, "could not look for unfinished re-encryptions"),
        }
        let sweeping = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(REWRAP_SWEEP_INTERVAL);
                loop {
                    every.tick().await;
                    if let Err(error) = store.remove_rewraps_of_destroyed_keys().await {
                        tracing::warn!(%error, "could not remove re-wrapped copies of destroyed data keys");
                    }
                }
            })
        };
        let live_tls = reload.as_ref().map(CertificateReload::live);
        let reloading = reload.map(|reload| tokio::spawn(reload.run()));
        let master_key_reloads = master_key_reload.as_ref().map(MasterKeyReload::tally);
        let reloading_master_keys = master_key_reload.map(|reload| tokio::spawn(reload.run()));
        let refreshing = access.spawn_refresher();
        // One shutdown, one readiness and one set of metrics, seen by both
        // servers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let readiness = Readiness::new(store.clone());
        let metrics = Metrics::new(store.counters()).map_err(NodeError::Metrics)?;
        let gateway = http.map(|listener| {
            let mut stopped = stopped.clone();
            let gateway = Gateway::new(store.clone(), access.clone(), readiness.clone(), metrics.clone())
                .with_mesh(mesh.clone())
                .with_connections(connections.clone())
                .with_max_body_bytes(http_max_body_bytes)
                .with_allowed_hosts(AllowedHosts::new(&http_allowed_hosts))
                .with_security(live_tls.clone(), handshake_refusals.clone())
                .with_master_key_reloads(master_key_reloads.clone());
            tokio::spawn(consensusdb_api::serve_http(
                gateway,
                listener,
                http_transport,
                connections.clone(),
                async move {
                    // An error means the sender is gone: stop too.
                    let _ = stopped.wait_for(|stop| *stop).await;
                },
            ))
        });
        // Cuts the connections still open once shutdown has waited its grace
        // period; aborted when serving ends before that.
        let (grace_started, grace_start) = tokio::sync::oneshot::channel::<()>();
        let grace = {
            let connections = connections.clone();
            tokio::spawn(async move {
                if grace_start.await.is_err() {
                    return;
                }
                tokio::time::sleep(shutdown_grace).await;
                tracing::warn!(
                    open = connections.open(),
                    "shutdown grace period over: cutting the connections still open"
                );
                connections.close_all();
            })
        };
        let stopping = {
            let mesh = mesh.clone();
            async move {
                shutdown.await;
                stop.send_replace(true);
                // Replication streams never end on their own; the graceful
                // shutdown below would wait for them forever.
                mesh.begin_stop();
                let _ = grace_started.send(());
            }
        };
        let api = RecordsApi::new(store.clone(), metrics, "grpc").with_mesh(mesh.clone());
        let served = consensusdb_api::serve_grpc(
            api,
            access,
            readiness,
            listener,
            grpc_transport,
            connections.clone(),
            Some(mesh.service()),
            stopping,
        )
        .await;
        let gateway_served = match gateway {
            Some(task) => task.await?.map_err(NodeError::Http),
            None => Ok(()),
        };
        grace.abort();
        refreshing.abort();
        if let Some(reloading) = reloading {
            reloading.abort();
        }
        // These hold store handles: gone before storage closes below.
        sweeping.abort();
        let _ = sweeping.await;
        if let Some(reloading) = reloading_master_keys {
            reloading.abort();
            let _ = reloading.await;
        }
        mesh.stop().await;
        // Close storage even if serving failed, so acknowledged writes are flushed.
        let closed = store.close().await;
        // The last handle closes RocksDB, which blocks: not on the reactor.
        // The mesh holds a handle too.
        tokio::task::spawn_blocking(move || drop((mesh, store))).await?;
        served?;
        gateway_served?;
        closed?;
        Ok(())
    }
}

/// Opens storage and serves on `listener` until `shutdown` completes; see
/// [`Node::serve`].
pub async fn run(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    Node::open(&config, listener).await?.serve(shutdown).await
}

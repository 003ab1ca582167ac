//! Layer 5 of ConsensusDB: the node. It loads configuration, opens storage,
//! serves the APIs and shuts down cleanly.
//!
//! The `consensusdb` binary (`main.rs`) is a thin command-line shell over
//! [`run`]; tests call [`run`] in-process with their own listener and
//! shutdown future. [`cli`] holds the client commands and the interactive
//! shell, which talk to nodes through the Rust SDK like any application.

pub mod cli;
pub mod config;

use std::future::Future;
use std::net::SocketAddr;

use consensusdb_storage::{StorageError, Store};
use tokio::net::TcpListener;

use crate::config::NodeConfig;

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
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Binds the configured gRPC address.
pub async fn bind(config: &NodeConfig) -> Result<TcpListener, NodeError> {
    let addr = config.grpc.listen;
    TcpListener::bind(addr).await.map_err(|source| NodeError::Bind { addr, source })
}

/// A node whose storage is open and whose listener is bound: ready to serve.
pub struct Node {
    store: Store,
    listener: TcpListener,
}

impl Node {
    /// Opens storage (on the blocking pool: RocksDB may replay its WAL).
    pub async fn open(config: &NodeConfig, listener: TcpListener) -> Result<Self, NodeError> {
        let options = config.store_options();
        let store = tokio::task::spawn_blocking(move || Store::open(options)).await??;
        Ok(Self { store, listener })
    }

    /// The address the node serves on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves gRPC until `shutdown` completes, then drains in-flight calls,
    /// commits and flushes queued writes, and closes storage.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let Node { store, listener } = self;
        let served = consensusdb_api::serve_grpc(store.clone(), listener, shutdown).await;
        // Close storage even if serving failed, so acknowledged writes are flushed.
        let closed = store.close().await;
        // The last handle closes RocksDB, which blocks: not on the reactor.
        tokio::task::spawn_blocking(move || drop(store)).await?;
        served?;
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

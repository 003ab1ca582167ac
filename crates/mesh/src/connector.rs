//! The transport seam: how a node opens a channel to a peer.
//!
//! The mesh never dials a socket itself. Production passes
//! [`PlainConnector`] (TLS plugs in here with the security work); tests pass
//! a connector that routes each link through a fault-injecting proxy, so
//! partitions, delays and drops act on the same code path as real traffic.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use consensusdb_types::error::error_chain;
use tonic::transport::{Channel, Endpoint};

/// Why a connection to a peer could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {address}: {reason}")]
pub struct ConnectError {
    /// The peer.
    pub address: String,
    /// Why.
    pub reason: String,
}

/// A boxed connect future.
pub type Connecting = Pin<Box<dyn Future<Output = Result<Channel, ConnectError>> + Send>>;

/// Opens channels to peers by their advertised address.
pub trait Connector: Send + Sync + 'static {
    /// A connected channel to `address` (`host:port`).
    fn connect(&self, address: &str, timeout: Duration) -> Connecting;
}

/// Plain HTTP/2 over TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainConnector {
    /// The local address connections come from; `None` lets the OS pick.
    pub source: Option<IpAddr>,
}

impl Connector for PlainConnector {
    fn connect(&self, address: &str, timeout: Duration) -> Connecting {
        let address = address.to_string();
        let source = self.source;
        Box::pin(async move {
            let failed = |reason: String| ConnectError { address: address.clone(), reason };
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| failed(e.to_string()))?
                .local_address(source)
                .connect_timeout(timeout)
                .tcp_nodelay(true)
                // Detects a peer that vanished without closing the stream
                // (a partition), so the stream fails over instead of hanging.
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            endpoint.connect().await.map_err(|e| failed(error_chain(&e)))
        })
    }
}

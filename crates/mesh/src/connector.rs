//! The transport seam: how a node opens a channel to a peer.
//!
//! The mesh never dials a socket itself. Production passes
//! [`TlsConnector`] (or [`PlainConnector`] in development); tests pass a
//! connector that routes each link through a fault-injecting proxy, so
//! partitions, delays and drops act on the same code path as real
//! traffic.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use consensusdb_pki::LiveTls;
use consensusdb_types::Role;
use consensusdb_types::error::error_chain;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
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

/// The HTTP/2 settings of every link to a peer.
fn endpoint(address: &str, timeout: Duration) -> Result<Endpoint, ConnectError> {
    Ok(Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| ConnectError { address: address.into(), reason: e.to_string() })?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        // Detects a peer that vanished without closing the stream
        // (a partition), so the stream fails over instead of hanging.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

/// Plain HTTP/2 over TCP: development (`--insecure-plaintext`) only.
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
            let endpoint = endpoint(&address, timeout)?.local_address(source);
            endpoint.connect().await.map_err(|e| ConnectError { address, reason: error_chain(&e) })
        })
    }
}

/// mTLS to peers: the node presents its own certificate, and the peer's
/// must be signed by the cluster CA, carry the host of its advertised
/// address, and be a node of this node's cluster (a client certificate
/// cannot authenticate a server, and one of another cluster is refused).
/// It dials with the node's credential in force at the time, so a
/// reloaded certificate is used from the next connection on.
#[derive(Clone)]
pub struct TlsConnector {
    tls: LiveTls,
    /// The local address connections come from; `None` lets the OS pick.
    source: Option<IpAddr>,
}

impl TlsConnector {
    /// Dials with the node's `tls`.
    pub fn new(tls: LiveTls, source: Option<IpAddr>) -> Self {
        Self { tls, source }
    }

    /// Connects to `dial` (`host:port`; a proxy in tests) and verifies the
    /// certificate there as the peer advertised at `address`.
    pub fn connect_via(&self, dial: &str, address: &str, timeout: Duration) -> Connecting {
        let (connector, dial, address) = (self.clone(), dial.to_string(), address.to_string());
        Box::pin(async move {
            let failed = |reason: String| ConnectError { address: address.clone(), reason };
            let name = ServerName::try_from(host_of(&address).to_string())
                .map_err(|e| failed(format!("no name to verify the peer as: {e}")))?;
            let endpoint = endpoint(&address, timeout)?;
            let dialing = tower::service_fn(move |_| {
                let (connector, dial, name) = (connector.clone(), dial.clone(), name.clone());
                async move { connector.handshake(&dial, name).await.map(TokioIo::new) }
            });
            endpoint.connect_with_connector(dialing).await.map_err(|e| failed(error_chain(&e)))
        })
    }

    async fn handshake(
        &self,
        dial: &str,
        name: ServerName<'static>,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let current = self.tls.current();
        let own = &current.identity;
        let tcp = tcp_connect(dial, self.source).await?;
        let tls = tokio_rustls::TlsConnector::from(current.client.clone()).connect(name, tcp).await?;
        let refused = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .ok_or_else(|| refused("the peer presented no certificate".into()))?;
        let peer = consensusdb_pki::identity_of(certificate).map_err(|e| refused(e.to_string()))?;
        if peer.role() != Role::Node || peer.cluster() != own.cluster() {
            return Err(refused(format!("the peer is {peer}, not a node of cluster {}", own.cluster())));
        }
        Ok(tls)
    }
}

impl Connector for TlsConnector {
    fn connect(&self, address: &str, timeout: Duration) -> Connecting {
        self.connect_via(address, address, timeout)
    }
}

/// The host of `host:port` (`[::1]:4482` is `::1`).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.strip_prefix('[').and_then(|host| host.strip_suffix(']')).unwrap_or(host)
}

/// A TCP connection to `address`, from `source` when given.
async fn tcp_connect(address: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let mut last = None;
    for target in tokio::net::lookup_host(address).await? {
        let socket = if target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        match socket.connect(target).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{address} resolves to nothing"))))
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_name_verified_is_the_host_of_the_advertised_address() {
        assert_eq!(host_of("node-2.db:4482"), "node-2.db");
        assert_eq!(host_of("10.0.0.2:4482"), "10.0.0.2");
        assert_eq!(host_of("[::1]:4482"), "::1");
    }
}

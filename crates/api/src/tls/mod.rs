//! TLS on the client-facing ports: what each accepted connection becomes
//! before a server sees it.
//!
//! - [`ServerTransport`]: TLS (the node's rustls configuration, narrowed to
//!   the protocol of the port) or plaintext (`--insecure-plaintext`).
//! - [`handshakes`]: connections admitted by [`crate::Connections`] go
//!   through their handshakes concurrently, each within a timeout, so one
//!   slow or silent caller can never hold up the accept loop.
//! - [`Secured`]: the connection a server serves, carrying what the
//!   handshake established ([`consensusdb_types::Connection`]: the remote
//!   address and the verified caller), attached to every request on it.

mod handshakes;
mod secured;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::ServerConfig;

pub use handshakes::secure;
pub use secured::Secured;

/// How long a caller has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a port's connections are secured.
#[derive(Clone)]
pub enum ServerTransport {
    /// Development only: no encryption, and nobody identified.
    Plaintext,
    /// TLS with this configuration; client certificates verified against
    /// the cluster CA when presented.
    Tls {
        /// The rustls configuration.
        config: Arc<ServerConfig>,
        /// Handshakes that failed on this port.
        refusals: HandshakeRefusals,
    },
}

impl ServerTransport {
    /// TLS for the gRPC port: ALPN `h2` only.
    pub fn grpc(config: &ServerConfig, refusals: HandshakeRefusals) -> Self {
        Self::for_protocol(config, b"h2", refusals)
    }

    /// TLS for the gateway: ALPN `http/1.1` only (the gateway speaks
    /// HTTP/1.1, and a client offered `h2` would pick it).
    pub fn http(config: &ServerConfig, refusals: HandshakeRefusals) -> Self {
        Self::for_protocol(config, b"http/1.1", refusals)
    }

    fn for_protocol(config: &ServerConfig, protocol: &[u8], refusals: HandshakeRefusals) -> Self {
        let mut config = config.clone();
        config.alpn_protocols = vec![protocol.to_vec()];
        Self::Tls { config: Arc::new(config), refusals }
    }

    /// Whether connections are encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls { .. })
    }
}

/// Failed TLS handshakes, across the ports that share it: how many, and
/// why the last one failed (an unknown CA, a certificate without an
/// identity, a timeout), for the status page and metrics.
#[derive(Clone, Default)]
pub struct HandshakeRefusals {
    count: Arc<AtomicU64>,
    last: Arc<std::sync::Mutex<Option<String>>>,
}

impl HandshakeRefusals {
    /// Handshakes refused since start.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Why the last refused handshake was refused.
    pub fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Counts a refusal and logs it, at warn for the first and every
    /// power of two after (a scanner must not flood the log).
    pub(crate) fn record(&self, remote: Option<std::net::SocketAddr>, why: String) {
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if count.is_power_of_two() {
            tracing::warn!(?remote, %why, refused = count, "TLS handshake refused");
        } else {
            tracing::debug!(?remote, %why, "TLS handshake refused");
        }
        *self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
    }
}

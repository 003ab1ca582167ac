//! TLS on the client-facing ports: what each accepted connection becomes
//! before a server sees it.
//!
//! - [`ServerTransport`]: TLS (the node's credential in force, for the
//!   protocol of the port) or plaintext (`--insecure-plaintext`).
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

use consensusdb_pki::LiveTls;

pub use handshakes::secure;
pub use secured::Secured;

/// How long a caller has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a port's connections are secured.
#[derive(Clone)]
pub enum ServerTransport {
    /// Development only: no encryption, and nobody identified.
    Plaintext,
    /// TLS with the node's credential in force when each connection
    /// arrives (so a reloaded certificate takes effect for new
    /// connections); client certificates verified against the cluster CA
    /// when presented.
    Tls {
        /// The node's TLS.
        tls: LiveTls,
        /// Which port: its protocol.
        port: Port,
        /// Handshakes that failed on this port.
        refusals: HandshakeRefusals,
    },
}

/// A port, by the protocol it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// gRPC (ALPN `h2`).
    Grpc,
    /// The gateway (ALPN `http/1.1`).
    Http,
}

impl ServerTransport {
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

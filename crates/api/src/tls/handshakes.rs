//! From admitted TCP connections to [`Secured`] ones.

use std::io;

use consensusdb_pki::LiveTls;
use consensusdb_types::{Caller, Connection};
use futures::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::{HANDSHAKE_TIMEOUT, HandshakeRefusals, Port, Secured, ServerTransport};
use crate::connections::Guarded;

/// Connections finished with their handshakes but not yet taken by the
/// server: a small buffer, since the server takes them at once.
const READY_BUFFER: usize = 16;

/// The connections of `accepted`, secured as `transport` says. Over TLS,
/// handshakes run concurrently, each bounded by [`HANDSHAKE_TIMEOUT`];
/// failed ones are counted and dropped. The listener inside `accepted`
/// closes soon after the returned stream is dropped.
pub fn secure(
    accepted: impl Stream<Item = io::Result<Guarded<TcpStream>>> + Send + 'static,
    transport: ServerTransport,
) -> impl Stream<Item = io::Result<Secured>> + Send {
    match transport {
        ServerTransport::Plaintext => accepted
            .map(|stream| {
                stream.map(|stream| {
                    let remote_addr = stream.get_ref().peer_addr().ok();
                    Secured::plain(stream, Connection { remote_addr, caller: Caller::Unchecked })
                })
            })
            .left_stream(),
        ServerTransport::Tls { tls, port, refusals } => {
            let (ready, taken) = mpsc::channel(READY_BUFFER);
            tokio::spawn(handshake_all(accepted, tls, port, refusals, ready));
            ReceiverStream::new(taken).right_stream()
        }
    }
}

/// Runs the handshakes of `accepted` until the server stops taking them.
async fn handshake_all(
    accepted: impl Stream<Item = io::Result<Guarded<TcpStream>>> + Send,
    tls: LiveTls,
    port: Port,
    refusals: HandshakeRefusals,
    ready: mpsc::Sender<io::Result<Secured>>,
) {
    let mut accepted = std::pin::pin!(accepted);
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = ready.closed() => break,
            next = accepted.next() => match next {
                Some(Ok(stream)) => {
                    // The credential in force now: a reload applies from
                    // the next connection on.
                    let current = tls.current();
                    let config = match port {
                        Port::Grpc => current.grpc.clone(),
                        Port::Http => current.http.clone(),
                    };
                    handshakes.spawn(handshake(TlsAcceptor::from(config), stream, refusals.clone()));
                }
                Some(Err(error)) => {
                    if ready.send(Err(error)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                if let Ok(Some(secured)) = done
                    && ready.send(Ok(secured)).await.is_err()
                {
                    break;
                }
            }
        }
    }
    // Dropping `handshakes` aborts those still running; dropping
    // `accepted` closes the listener.
}

/// One handshake: the secured connection, or `None` (counted) when it
/// failed, timed out, or presented a certificate without a usable identity.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: Guarded<TcpStream>,
    refusals: HandshakeRefusals,
) -> Option<Secured> {
    let remote_addr = stream.get_ref().peer_addr().ok();
    let refused = |why: String| {
        refusals.record(remote_addr, why);
        None
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return refused(error.to_string()),
        Err(_) => return refused(format!("no handshake within {HANDSHAKE_TIMEOUT:?}")),
    };
    let presented = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
    let caller = match presented {
        None => Caller::Anonymous,
        Some(certificate) => match consensusdb_pki::identity_of(certificate) {
            Ok(identity) => Caller::Verified(std::sync::Arc::new(identity)),
            Err(error) => {
                return refused(format!(
                    "a certificate of the cluster CA without a usable identity: {error}"
                ));
            }
        },
    };
    Some(Secured::tls(stream, Connection { remote_addr, caller }))
}

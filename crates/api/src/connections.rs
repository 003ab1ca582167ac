//! Admission and lifetime of client connections, for both servers.
//!
//! A node must not be taken down by connections it never asked for:
//! - **A cap.** At most `max` connections are open at once, across gRPC
//!   and HTTP; one more is accepted and closed at once (counted), so file
//!   descriptors stay for RocksDB's files, whose failure would stop the
//!   writer.
//! - **An idle timeout.** A connection that moves no byte either way for
//!   `idle_timeout` is closed: an HTTP keep-alive connection nobody uses,
//!   a client that stopped reading a response, a socket whose peer
//!   vanished. A live gRPC connection answers the server's HTTP/2 pings,
//!   so it is never idle: the cap, not the timeout, bounds those.
//!   Connections from peers (replication streams) arrive on the same port
//!   and count against the same cap until node identities (TLS) can tell
//!   them apart.
//! - **A forced close.** When shutdown has waited its grace period,
//!   [`Connections::close_all`] cuts every connection still open, so a
//!   stalled client or a frozen peer can never keep the process (and its
//!   data-directory lock) alive.
//! - **Accept errors** (out of descriptors, aborted handshakes) never end
//!   the accept loop; it pauses briefly instead of spinning.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// How long the accept loop pauses after an accept error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Bounds on client connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once, gRPC and HTTP together.
    pub max: usize,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    /// What an embedding that sets nothing gets; the node derives its cap
    /// from its open-file limit instead.
    fn default() -> Self {
        Self { max: 4096, idle_timeout: Duration::from_secs(300) }
    }
}

/// The connections of one node: shared by its servers. Cheap to clone.
#[derive(Clone)]
pub struct Connections {
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
    close_all: CancellationToken,
}

impl Connections {
    /// Connections bounded by `limits` (a cap beyond what a semaphore
    /// counts is taken as that: no machine holds so many).
    pub fn new(mut limits: ConnectionLimits) -> Self {
        limits.max = limits.max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            limits,
            permits: Arc::new(Semaphore::new(limits.max)),
            refused: Arc::default(),
            close_all: CancellationToken::new(),
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limits.max - self.permits.available_permits()
    }

    /// Connections closed at once because the cap was reached, since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Cuts every connection open now and any accepted later.
    pub fn close_all(&self) {
        self.close_all.cancel();
    }

    /// The connections `listener` accepts, each admitted under the cap and
    /// guarded by the idle timeout and [`Connections::close_all`].
    pub fn accept(
        &self,
        listener: TcpListener,
    ) -> impl Stream<Item = io::Result<Guarded<TcpStream>>> + Send + use<> {
        let connections = self.clone();
        futures::stream::unfold((listener, connections), |(listener, connections)| async move {
            let guarded = connections.next_admitted(&listener).await;
            Some((Ok(guarded), (listener, connections)))
        })
    }

    /// Waits for the next connection under the cap.
    async fn next_admitted(&self, listener: &TcpListener) -> Guarded<TcpStream> {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, or a client that reset
                    // before we took it: neither ends serving.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let Some(admitted) = self.admit(stream) else { continue };
            // Nagle's algorithm would hold back small responses for up to
            // 40 ms waiting for the client's delayed ACK.
            let _ = admitted.get_ref().set_nodelay(true);
            return admitted;
        }
    }

    /// `stream` guarded, holding a place under the cap; `None` (the stream
    /// closed and counted as refused) once the cap is reached.
    fn admit<S>(&self, stream: S) -> Option<Guarded<S>> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    max = self.limits.max,
                    refused,
                    "connection limit reached: closing new connections at once"
                );
            }
            drop(stream);
            return None;
        };
        Some(Guarded::new(stream, permit, self.limits.idle_timeout, self.close_all.clone()))
    }
}

/// A connection that holds its place under the cap, ends after its idle
/// timeout, and ends when every connection is closed.
pub struct Guarded<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Guarded<S> {
    fn new(
        inner: S,
        permit: OwnedSemaphorePermit,
        idle_timeout: Duration,
        close_all: CancellationToken,
    ) -> Self {
        Self {
            inner,
            _permit: permit,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            closed: Box::pin(close_all.cancelled_owned()),
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moved bytes: the idle clock starts again.
    fn active(&mut self) {
        self.idle.as_mut().reset(Instant::now() + self.idle_timeout);
    }

    /// While the connection waits: an error once it is closed by
    /// shutdown or idle too long.
    fn check_ended(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.closed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the node is shutting down",
            ));
        }
        if self.idle.as_mut().poll(cx).is_ready() {
            return Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long"));
        }
        Poll::Pending
    }

    /// What a write of the inner connection returned: bytes written
    /// restart the idle clock; a write that waits fails once the
    /// connection is closed or idle too long.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.active();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Ready(Err(ready!(self.check_ended(cx)))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(result)
            }
            Poll::Pending => Poll::Ready(Err(ready!(self.check_ended(cx)))),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => Poll::Ready(Err(ready!(self.check_ended(cx)))),
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The peer address and (later) TLS details of the wrapped connection
/// reach request handlers unchanged.
impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// Sends back what `stream` reads until it ends or fails (as a guarded
    /// connection does once it is closed), then drops it.
    async fn echo_until_closed(mut stream: impl AsyncRead + AsyncWrite + Unpin) {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            if stream.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    }

    async fn serve_echo(connections: Connections) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut accepted = Box::pin(connections.accept(listener));
            while let Some(Ok(stream)) = accepted.next().await {
                tokio::spawn(echo_until_closed(stream));
            }
        });
        addr
    }

    /// An in-memory connection admitted by `connections` and echoed; the
    /// client's end.
    fn echo_in_memory(connections: &Connections) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64);
        tokio::spawn(echo_until_closed(connections.admit(server).expect("under the cap")));
        client
    }

    /// Whether the server closed `stream` (reads end) within `within`.
    async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
        let mut buf = [0u8; 8];
        matches!(tokio::time::timeout(within, stream.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once_and_a_freed_place_is_reused() {
        let connections =
            Connections::new(ConnectionLimits { max: 2, idle_timeout: Duration::from_secs(60) });
        let addr = serve_echo(connections.clone()).await;
        let mut first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        first.write_all(b"x").await.unwrap();
        let mut echo = [0u8; 1];
        first.read_exact(&mut echo).await.unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut third, Duration::from_secs(5)).await, "over the cap: closed");
        assert_eq!(connections.refused(), 1);
        drop(first);
        // Its place is free once the server has seen it close.
        let freed = tokio::time::timeout(Duration::from_secs(5), async {
            while connections.open() > 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(freed.is_ok(), "the closed connection still holds its place");
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        fourth.write_all(b"y").await.unwrap();
        fourth.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"y", "a closed connection's place is free again");
    }

    /// Time is the subject, so the test moves tokio's paused clock itself:
    /// a busy machine cannot stretch the active connection's pauses past
    /// the timeout. The connections are in memory, since a paused clock
    /// jumps ahead whenever the runtime waits on real I/O.
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_and_an_active_one_is_not() {
        let idle_timeout = Duration::from_millis(300);
        let connections = Connections::new(ConnectionLimits { max: 10, idle_timeout });
        let mut idle = echo_in_memory(&connections);
        let mut active = echo_in_memory(&connections);
        let mut echo = [0u8; 1];
        for _ in 0..6 {
            tokio::time::advance(idle_timeout / 3).await;
            active.write_all(b"a").await.unwrap();
            active.read_exact(&mut echo).await.unwrap();
        }
        assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "idle past its timeout: closed");
        active.write_all(b"b").await.unwrap();
        active.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"b", "a connection in use stays open");
    }

    #[tokio::test]
    async fn closing_all_cuts_every_open_connection() {
        let connections =
            Connections::new(ConnectionLimits { max: 10, idle_timeout: Duration::from_secs(60) });
        let addr = serve_echo(connections.clone()).await;
        let mut open = TcpStream::connect(addr).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut echo = [0u8; 1];
        open.read_exact(&mut echo).await.unwrap();
        connections.close_all();
        assert!(closed_within(&mut open, Duration::from_secs(5)).await);
        assert_eq!(connections.open(), 0, "its place is given back");
    }
}

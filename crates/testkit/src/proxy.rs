//! A TCP proxy that injects faults into one directed link: partition
//! (existing connections cut, new ones refused), delay, and dropping every
//! open connection, then healing.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The state of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    up: bool,
    /// Added before each chunk is forwarded, in each direction.
    delay: Duration,
    /// Bumped to cut every open connection.
    epoch: u64,
}

/// Forwards `addr` to an upstream address, with faults on demand.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    link: watch::Sender<Link>,
    acceptor: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts forwarding a fresh loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let link = watch::Sender::new(Link { up: true, delay: Duration::ZERO, epoch: 0 });
        let watcher = link.subscribe();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = *watcher.borrow();
                if !state.up {
                    // A partition: the connection opens (the port is there)
                    // but is dropped at once, like a lost SYN-ACK.
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, upstream, watcher.clone(), state.epoch));
            }
        });
        Ok(Self { addr, link, acceptor })
    }

    /// Cuts every open connection and refuses new ones until [`FaultProxy::heal`].
    pub fn partition(&self) {
        self.link.send_modify(|link| {
            link.up = false;
            link.epoch += 1;
        });
    }

    /// Lets connections through again (with no delay).
    pub fn heal(&self) {
        self.link.send_modify(|link| {
            link.up = true;
            link.delay = Duration::ZERO;
        });
    }

    /// Delays every chunk by `delay` in each direction.
    pub fn delay(&self, delay: Duration) {
        self.link.send_modify(|link| link.delay = delay);
    }

    /// Cuts every open connection; new ones are let through.
    pub fn drop_connections(&self) {
        self.link.send_modify(|link| link.epoch += 1);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.partition();
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, link: watch::Receiver<Link>, epoch: u64) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut cut = link.clone();
    let cut = async move {
        let _ = cut.wait_for(|state| state.epoch != epoch || !state.up).await;
    };
    tokio::select! {
        () = pump(client_read, server_write, link.clone()) => {}
        () = pump(server_read, client_write, link) => {}
        () = cut => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: watch::Receiver<Link>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // The latency a test injects: the fault itself, so a fixed wait.
        let delay = link.borrow().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

//! The fault proxies: one per node, in front of its gRPC port, so every
//! node-to-node connection passes the destination's proxy. A proxy tells
//! the source node from the connection's peer IP and applies the state of
//! the directed link source → destination: up, or partitioned (new
//! connections are refused and open ones cut). Each link keeps an epoch
//! that a partition bumps, so a connection opened before it is cut even if
//! the link heals before the connection's task notices.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::topology::{NODES, Topology};

/// The state of one directed link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    up: bool,
    /// Bumped by every partition; connections of an older epoch are cut.
    epoch: u64,
}

/// Every directed link, `[from][to]`.
type Matrix = [[Link; NODES]; NODES];

/// The links' states, shared by the proxies and the nemesis.
#[derive(Clone)]
pub struct Links {
    state: Arc<watch::Sender<Matrix>>,
}

impl Links {
    /// Every link up.
    pub fn new() -> Self {
        let up = Link { up: true, epoch: 0 };
        Self { state: Arc::new(watch::Sender::new([[up; NODES]; NODES])) }
    }

    /// Partitions each directed link `(from, to)` of `links`.
    pub fn cut(&self, links: &[(usize, usize)]) {
        self.state.send_modify(|matrix| {
            for &(from, to) in links {
                let link = &mut matrix[from][to];
                link.up = false;
                link.epoch += 1;
            }
        });
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        self.state.send_modify(|matrix| {
            for link in matrix.iter_mut().flatten() {
                link.up = true;
            }
        });
    }

    fn watch(&self) -> watch::Receiver<Matrix> {
        self.state.subscribe()
    }
}

/// What the proxies counted.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    /// Connections forwarded.
    pub forwarded: AtomicU64,
    /// Connections refused because their link was partitioned.
    pub refused: AtomicU64,
    /// Open connections cut by a partition.
    pub cut: AtomicU64,
    /// Connections from an address that is no node's source address: their
    /// link cannot be told, so partitions do not apply to them.
    pub unknown_source: AtomicU64,
}

/// The running proxies; dropping them stops accepting.
pub struct Proxies {
    acceptors: Vec<JoinHandle<()>>,
    /// What they counted.
    pub counts: Arc<ProxyCounts>,
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for acceptor in &self.acceptors {
            acceptor.abort();
        }
    }
}

/// Starts one proxy per node of `topology`.
pub async fn start(topology: &Topology, links: &Links) -> std::io::Result<Proxies> {
    let counts = Arc::new(ProxyCounts::default());
    let mut acceptors = Vec::new();
    for (to, node) in topology.nodes.iter().enumerate() {
        let listener = TcpListener::bind(node.proxy).await?;
        let (topology, watch, counts) = (topology.clone(), links.watch(), counts.clone());
        let upstream = node.grpc;
        acceptors.push(tokio::spawn(async move {
            loop {
                let Ok((client, peer)) = listener.accept().await else {
                    // Out of descriptors, most likely: try again shortly.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let from = topology.node_of_source(peer.ip());
                let link = from.map(|from| watch.borrow()[from][to]);
                match (from, link) {
                    (Some(_), Some(link)) if !link.up => {
                        // Refused: the connection opens (the port is there)
                        // and is dropped at once.
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        drop(client);
                    }
                    (Some(from), Some(link)) => {
                        counts.forwarded.fetch_add(1, Ordering::Relaxed);
                        let cut = Cut { watch: watch.clone(), from, to, epoch: link.epoch };
                        tokio::spawn(forward(client, upstream, Some(cut), counts.clone()));
                    }
                    _ => {
                        counts.unknown_source.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(forward(client, upstream, None, counts.clone()));
                    }
                }
            }
        }));
    }
    Ok(Proxies { acceptors, counts })
}

/// When a forwarded connection must be cut.
struct Cut {
    watch: watch::Receiver<Matrix>,
    from: usize,
    to: usize,
    epoch: u64,
}

impl Cut {
    async fn wait(mut self) {
        let (from, to, epoch) = (self.from, self.to, self.epoch);
        // An error means the links are gone (shutdown): cut as well.
        let _ = self.watch.wait_for(|matrix| !matrix[from][to].up || matrix[from][to].epoch != epoch).await;
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, cut: Option<Cut>, counts: Arc<ProxyCounts>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let cut = async move {
        match cut {
            Some(cut) => cut.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = cut => {
            counts.cut.fetch_add(1, Ordering::Relaxed);
        }
    }
    // Dropping both sides closes them.
}

//! Where everything listens. Node i serves gRPC and HTTP on 127.0.0.(11+i),
//! its fault proxy listens on 127.0.0.(21+i), and its outgoing peer
//! connections come from 127.0.0.(31+i), which is how a proxy tells which
//! node a connection comes from. Ports are picked free at start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Nodes in the cluster.
pub const NODES: usize = 3;

/// The addresses of one node.
#[derive(Debug, Clone, Copy)]
pub struct NodeAddrs {
    /// gRPC API; clients connect here directly.
    pub grpc: SocketAddr,
    /// HTTP gateway.
    pub http: SocketAddr,
    /// The node's fault proxy, which it advertises to its peers.
    pub proxy: SocketAddr,
    /// The local address its connections to peers come from.
    pub source: IpAddr,
}

/// Every node's addresses.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Indexed by node.
    pub nodes: Vec<NodeAddrs>,
}

fn loopback(last: usize) -> IpAddr {
    let last = u8::try_from(last).expect("loopback octets stay below 256");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A port free on `ip` right now.
fn free_port(ip: IpAddr) -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind((ip, 0))?;
    Ok(listener.local_addr()?.port())
}

impl Topology {
    /// Picks free ports for every listener.
    pub fn pick() -> std::io::Result<Self> {
        let mut nodes = Vec::with_capacity(NODES);
        for i in 0..NODES {
            let (ip, proxy_ip) = (loopback(11 + i), loopback(21 + i));
            nodes.push(NodeAddrs {
                grpc: SocketAddr::new(ip, free_port(ip)?),
                http: SocketAddr::new(ip, free_port(ip)?),
                proxy: SocketAddr::new(proxy_ip, free_port(proxy_ip)?),
                source: loopback(31 + i),
            });
        }
        Ok(Self { nodes })
    }

    /// The node whose peer connections come from `ip`, if any.
    pub fn node_of_source(&self, ip: IpAddr) -> Option<usize> {
        self.nodes.iter().position(|node| node.source == ip)
    }

    /// The seeds of node `i`: every other node's proxy.
    pub fn peers_of(&self, i: usize) -> Vec<SocketAddr> {
        (0..NODES).filter(|&j| j != i).map(|j| self.nodes[j].proxy).collect()
    }
}

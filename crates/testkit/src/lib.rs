//! Test and benchmark harness for ConsensusDB (not shipped).
//!
//! - [`FaultProxy`]: a TCP proxy for one directed link that can partition,
//!   delay or drop it, and heal it.
//! - [`TestCluster`]: N real nodes in-process on ephemeral loopback ports,
//!   every link through its own proxy, with helpers to write through the
//!   SDK, stop, restart, wipe and join nodes, and wait for convergence.
//! - [`HostilePeer`]: a peer that speaks the replication protocol but sends
//!   what a test scripts (malformed entries, oversized gossip).
//! - [`TestPki`]: a cluster CA issuing node and client credentials, so
//!   tests run over mTLS like production.
//! - [`eventually`]: waits for a condition, under a deadline, instead of
//!   sleeping a fixed time.

mod cluster;
mod eventually;
mod hostile_peer;
mod pki;
mod proxy;

pub use cluster::{ClusterNode, TestCluster};
pub use eventually::eventually;
pub use hostile_peer::HostilePeer;
pub use pki::{TEST_CLUSTER, TestPki, channel};
pub use proxy::FaultProxy;

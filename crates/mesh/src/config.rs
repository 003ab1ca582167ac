//! How a node takes part in the mesh.

use std::time::Duration;

/// Mesh settings. One node with no peers is a working cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// Nodes of different clusters refuse each other's streams, so two
    /// clusters never merge by a mistyped address.
    pub cluster_id: String,
    /// Where other nodes reach this one (`host:port` of the gRPC API). Sent
    /// in handshakes, so peers learn of a node that joins through them.
    pub advertise_address: Option<String>,
    /// Seed peers (`host:port`). More are learned from the peers' own lists.
    pub seeds: Vec<String>,
    /// How often a source sends a heartbeat on each stream.
    pub heartbeat: Duration,
    /// First reconnect delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Time allowed to open a connection to a peer.
    pub connect_timeout: Duration,
    /// Bytes of log entries in one message to a peer.
    pub chunk_bytes: usize,
    /// Chunks a source queues per stream before it waits for the peer: with
    /// `chunk_bytes`, the memory a slow peer can cost its source.
    pub chunks_in_flight: usize,
    /// How often to purge what every member holds.
    pub purge_interval: Duration,
    /// A member further behind than this (in an origin's clock) is not
    /// waited for before purging the log; it must bootstrap again.
    pub retention_max_lag_ms: u64,
    /// A node whose clock is further than this from most of its peers'
    /// stamps no client writes; 0 turns the check off.
    pub max_clock_offset_ms: u64,
    /// Start even if the stored membership cannot be read: the node then
    /// starts from its seeds and purges nothing until a peer's heartbeat
    /// has told it the members that peer knows. Off by default, since a
    /// member forgotten while down could have removed keys brought back.
    pub forget_damaged_membership: bool,
}

impl MeshConfig {
    /// How long a clock measurement counts: ten heartbeats, so a clock
    /// that was fixed is believed again within about that.
    pub fn clock_window(&self) -> Duration {
        self.heartbeat.saturating_mul(10).max(Duration::from_secs(1))
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            cluster_id: "consensusdb".into(),
            advertise_address: None,
            seeds: Vec::new(),
            heartbeat: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            chunk_bytes: 1024 * 1024,
            chunks_in_flight: 4,
            purge_interval: Duration::from_secs(10),
            retention_max_lag_ms: 24 * 60 * 60 * 1000,
            max_clock_offset_ms: 500,
            forget_damaged_membership: false,
        }
    }
}

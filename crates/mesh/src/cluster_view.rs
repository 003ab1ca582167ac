//! This node's view of the cluster, in domain types: its peers with their
//! state and lag per origin, the purge watermarks, clock and bootstrap
//! holds. The `ClusterStatus` call, the status page and the metrics each
//! convert it at their own edge, so a figure added here is not a change to
//! the replication protocol.

use std::sync::atomic::Ordering;

use consensusdb_storage::{Frontier, WriteHold};
use consensusdb_types::{HybridClock, NodeId, Origin};

use crate::Inner;
pub use crate::peer_table::PeerState;

/// The cluster as this node sees it at one moment.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// This node's origin.
    pub origin: Origin,
    /// The cluster this node belongs to; nodes of other clusters are refused.
    pub cluster_id: String,
    /// The address peers reach this node at, if it advertises one.
    pub advertise_address: Option<String>,
    /// What this node has applied, per origin.
    pub frontier: Frontier,
    /// Every peer address known, pulled from or not.
    pub peers: Vec<PeerView>,
    /// Incoming versions that lost to a stored version with a greater stamp.
    pub conflicts: u64,
    /// Replicated stamps the drift bound kept from moving the clock.
    pub hlc_drift_clipped: u64,
    /// Replicated entries applied since start.
    pub entries_applied: u64,
    /// The highest stamp applied.
    pub hlc: u64,
    /// Tombstones and expired versions stamped below this are purged.
    pub stable_hlc: u64,
    /// Per origin, the log is purged up to this seq (every member has it).
    pub log_purged_through: Vec<(Origin, u64)>,
    /// Versions purged since start.
    pub versions_purged: u64,
    /// Why client writes wait for a bootstrap, while they do.
    pub bootstrapping: Option<String>,
    /// Why client writes are refused for this node's clock, while they are.
    pub clock_refusal: Option<String>,
    /// How far this node's clock may be from most of its peers' before it
    /// refuses client writes (0: never).
    pub max_clock_offset_ms: u64,
    /// The other members (reached, or learned of through others; removed
    /// ones excepted): purges wait for each, write concerns count them.
    pub members: Vec<NodeId>,
    /// Bootstraps started since start.
    pub bootstraps: u64,
    /// Replicated entries refused because they did not decode, since start.
    pub entries_refused: u64,
}

/// One peer, by address.
#[derive(Debug, Clone)]
pub struct PeerView {
    /// The address pulled from, `host:port`.
    pub address: String,
    /// The node behind the address, once a handshake or a heartbeat named it.
    pub node: Option<NodeId>,
    /// Where its puller stands.
    pub state: PeerState,
    /// Why the last stream or bootstrap with it failed; empty once it
    /// connects again.
    pub last_error: String,
    /// Per origin the peer advertises, how far this node is behind it.
    pub lag: Vec<OriginLag>,
    /// Entries from it applied (new to this node), since start.
    pub entries_applied: u64,
    /// Entries from it received, applied or already held, since start.
    pub entries_received: u64,
    /// Bytes of entry values received from it, since start.
    pub bytes_received: u64,
    /// How far the peer has applied this node's own origin.
    pub acked_own_seq: u64,
    /// The peer fell behind the retention cap and must bootstrap again.
    pub needs_bootstrap: bool,
    /// How far the peer's clock is ahead of this node's, and the
    /// uncertainty of that estimate, once heartbeats tell.
    pub clock_offset_ms: Option<i64>,
    /// How far off `clock_offset_ms` may be.
    pub clock_uncertainty_ms: Option<u64>,
    /// Entries from this peer refused because they did not decode.
    pub entries_refused: u64,
}

/// How far this node is behind a peer on one origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OriginLag {
    /// The origin.
    pub origin: Origin,
    /// Entries the peer holds that this node has not applied.
    pub entries: u64,
    /// Seconds between the peer's newest entry and this node's.
    pub seconds: f64,
}

impl PeerView {
    /// Entries behind, all origins.
    pub fn lag_entries(&self) -> u64 {
        self.lag.iter().map(|lag| lag.entries).sum()
    }

    /// The largest lag in seconds over the origins.
    pub fn lag_seconds(&self) -> f64 {
        self.lag.iter().map(|lag| lag.seconds).fold(0.0, f64::max)
    }
}

/// Seconds between two HLC values (their physical parts).
fn hlc_seconds(later: u64, earlier: u64) -> f64 {
    let ms = (later >> HybridClock::LOGICAL_BITS).saturating_sub(earlier >> HybridClock::LOGICAL_BITS);
    ms as f64 / 1000.0
}

pub(crate) fn build(inner: &Inner) -> ClusterView {
    let store = &inner.store;
    let own = store.origin();
    let frontier = store.frontier();
    let counters = store.counters();
    let (plan, lagging) = inner.last_purge.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let now = std::time::Instant::now();
    // One lock at a time (see `Inner`).
    let nodes: Vec<_> = inner.peers().peers.values().filter_map(|peer| peer.node).collect();
    let clock_offsets: std::collections::HashMap<_, _> = {
        let clocks = inner.clocks();
        nodes.into_iter().filter_map(|node| Some((node, clocks.offset(node, now)?.estimate()))).collect()
    };
    let peers = inner.peers();
    let peer_views = peers
        .peers
        .iter()
        .map(|(address, peer)| {
            let lag = peer
                .advertised
                .iter()
                .map(|(origin, theirs)| {
                    let ours = frontier.get(origin).copied().unwrap_or_default();
                    let entries = theirs.seq.saturating_sub(ours.seq);
                    let seconds = if entries == 0 { 0.0 } else { hlc_seconds(theirs.hlc, ours.hlc) };
                    OriginLag { origin: *origin, entries, seconds }
                })
                .collect();
            let clock = peer.node.and_then(|node| clock_offsets.get(&node).copied());
            let acked_own_seq = peer
                .node
                .and_then(|node| peers.members.get(&node))
                .and_then(|member| member.applied.get(&own))
                .map_or(0, |mark| mark.seq);
            PeerView {
                address: address.clone(),
                node: peer.node,
                state: peer.state,
                last_error: peer.last_error.clone(),
                lag,
                entries_applied: peer.entries_applied,
                entries_received: peer.entries_received,
                bytes_received: peer.bytes_received,
                acked_own_seq,
                needs_bootstrap: peer.node.is_some_and(|node| lagging.iter().any(|(n, _)| *n == node)),
                clock_offset_ms: clock.map(|(offset, _)| offset),
                clock_uncertainty_ms: clock.and_then(|(_, uncertainty)| uncertainty),
                entries_refused: peer.entries_refused,
            }
        })
        .collect();
    ClusterView {
        origin: own,
        cluster_id: inner.config.cluster_id.clone(),
        advertise_address: inner.config.advertise_address.clone(),
        hlc: frontier.values().map(|m| m.hlc).max().unwrap_or(0),
        frontier,
        peers: peer_views,
        conflicts: counters.conflicts_lost.load(Ordering::Relaxed),
        hlc_drift_clipped: counters.hlc_drift_clipped.load(Ordering::Relaxed),
        entries_applied: counters.entries_applied.load(Ordering::Relaxed),
        stable_hlc: plan.stable_hlc,
        log_purged_through: plan.log_upto,
        versions_purged: inner.versions_purged.load(Ordering::Relaxed),
        bootstrapping: store.write_hold(WriteHold::Bootstrap),
        clock_refusal: store.write_hold(WriteHold::ClockOffset),
        max_clock_offset_ms: inner.config.max_clock_offset_ms,
        members: peers.other_members(own.node).collect(),
        bootstraps: inner.bootstraps.load(Ordering::Relaxed),
        entries_refused: peers.peers.values().map(|peer| peer.entries_refused).sum(),
    }
}

//! `ClusterStatus`: peers, lag per peer and origin, conflicts and clock
//! bound hits, as this node sees them.

use std::sync::atomic::Ordering;

use consensusdb_proto::mesh::v1 as pb;
use consensusdb_types::HybridClock;

use crate::Inner;
use consensusdb_storage::WriteHold;

use crate::wire::{frontier_to_pb, node_to_bytes, origin_to_pb};

/// Seconds between two HLC values (their physical parts).
fn hlc_seconds(later: u64, earlier: u64) -> f64 {
    let ms = (later >> HybridClock::LOGICAL_BITS).saturating_sub(earlier >> HybridClock::LOGICAL_BITS);
    ms as f64 / 1000.0
}

pub(crate) fn build(inner: &Inner) -> pb::ClusterStatusResponse {
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
    let peer_status = peers
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
                    pb::OriginLag { origin: Some(origin_to_pb(origin)), entries, seconds }
                })
                .collect();
            let clock = peer.node.and_then(|node| clock_offsets.get(&node).copied());
            let acked_own_seq = peer
                .node
                .and_then(|node| peers.members.get(&node))
                .and_then(|member| member.applied.get(&own))
                .map_or(0, |mark| mark.seq);
            pb::PeerStatus {
                address: address.clone(),
                node_id: peer.node.as_ref().map(node_to_bytes).unwrap_or_default(),
                state: peer.state.name().into(),
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
    pb::ClusterStatusResponse {
        origin: Some(origin_to_pb(&own)),
        cluster_id: inner.config.cluster_id.clone(),
        advertise_address: inner.config.advertise_address.clone().unwrap_or_default(),
        frontier: frontier_to_pb(&frontier),
        peers: peer_status,
        conflicts: counters.conflicts_lost.load(Ordering::Relaxed),
        hlc_drift_clipped: counters.hlc_drift_clipped.load(Ordering::Relaxed),
        entries_applied: counters.entries_applied.load(Ordering::Relaxed),
        hlc: frontier.values().map(|m| m.hlc).max().unwrap_or(0),
        stable_hlc: plan.stable_hlc,
        log_purged_through: plan
            .log_upto
            .iter()
            .map(|(origin, seq)| pb::OriginMark { origin: Some(origin_to_pb(origin)), seq: *seq, hlc: 0 })
            .collect(),
        versions_purged: inner.versions_purged.load(Ordering::Relaxed),
        bootstrapping: inner.store.write_hold(WriteHold::Bootstrap).unwrap_or_default(),
        clock_refusal: inner.store.write_hold(WriteHold::ClockOffset).unwrap_or_default(),
        max_clock_offset_ms: inner.config.max_clock_offset_ms,
        members: peers
            .members
            .keys()
            .filter(|node| **node != own.node && !peers.removed.contains(node))
            .map(node_to_bytes)
            .collect(),
        bootstraps: inner.bootstraps.load(Ordering::Relaxed),
        entries_refused: peers.peers.values().map(|peer| peer.entries_refused).sum(),
    }
}

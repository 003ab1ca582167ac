//! Conversions between the mesh protocol's messages and domain types.

use consensusdb_proto::mesh::v1 as pb;
use consensusdb_proto::{convert, v1};
use consensusdb_storage::Frontier;
use consensusdb_types::{FrontierMark, NodeId, Origin};
use tonic::Status;

use crate::cluster_view::ClusterView;
use crate::peer_table::LogHold;
use crate::purge_plan::MemberView;

/// The protocol version this build speaks. Version 2: heartbeats name
/// the node behind each peer address, and carry wall clocks, log starts
/// and log holds. Nodes of different versions refuse each other's streams
/// (the handshake says which each speaks) rather than replicate with half
/// the rules.
pub const PROTOCOL_VERSION: u32 = 2;

pub(crate) fn origin_to_pb(origin: &Origin) -> v1::Origin {
    v1::Origin::from(origin)
}

pub(crate) fn node_to_bytes(node: &NodeId) -> Vec<u8> {
    node.to_bytes().to_vec()
}

pub(crate) fn known_peer_to_pb(address: String, node: Option<NodeId>) -> pb::KnownPeer {
    pb::KnownPeer { address, node_id: node.as_ref().map(node_to_bytes).unwrap_or_default() }
}

/// A known peer from the wire: its address and, if given, its node.
pub(crate) fn known_peer_from_pb(
    peer: pb::KnownPeer,
    field: &str,
) -> Result<(String, Option<NodeId>), Status> {
    let node = if peer.node_id.is_empty() {
        None
    } else {
        Some(node_from_bytes(&peer.node_id, &format!("{field}.node_id"))?)
    };
    Ok((peer.address, node))
}

pub(crate) fn node_from_bytes(bytes: &[u8], field: &str) -> Result<NodeId, Status> {
    convert::node_id(bytes, field).map_err(|error| Status::invalid_argument(error.to_string()))
}

pub(crate) fn origin_from_pb(origin: Option<&v1::Origin>, field: &str) -> Result<Origin, Status> {
    convert::origin(origin, field).map_err(|error| Status::invalid_argument(error.to_string()))
}

pub(crate) fn frontier_to_pb(frontier: &Frontier) -> Vec<pb::OriginMark> {
    frontier
        .iter()
        .map(|(origin, mark)| pb::OriginMark {
            origin: Some(origin_to_pb(origin)),
            seq: mark.seq,
            hlc: mark.hlc,
        })
        .collect()
}

pub(crate) fn frontier_from_pb(marks: &[pb::OriginMark], field: &str) -> Result<Frontier, Status> {
    marks
        .iter()
        .enumerate()
        .map(|(i, mark)| {
            let origin = origin_from_pb(mark.origin.as_ref(), &format!("{field}[{i}].origin"))?;
            Ok((origin, FrontierMark { seq: mark.seq, hlc: mark.hlc }))
        })
        .collect()
}

pub(crate) fn log_hold_to_pb(node: NodeId, hold: &LogHold) -> pb::LogHold {
    pb::LogHold { node_id: node_to_bytes(&node), from: frontier_to_pb(&hold.from), since_ms: hold.since_ms }
}

pub(crate) fn log_hold_from_pb(hold: &pb::LogHold, field: &str) -> Result<(NodeId, LogHold), Status> {
    Ok((
        node_from_bytes(&hold.node_id, &format!("{field}.node_id"))?,
        LogHold { from: frontier_from_pb(&hold.from, &format!("{field}.from"))?, since_ms: hold.since_ms },
    ))
}

pub(crate) fn member_to_pb(node: NodeId, view: &MemberView) -> pb::MemberView {
    pb::MemberView {
        // A member whose origin is not known yet is sent with its node id
        // and incarnation 0, which no origin has.
        origin: Some(origin_to_pb(&view.origin.unwrap_or(Origin { node, incarnation: 0 }))),
        applied: frontier_to_pb(&view.applied),
        promise: view.promise,
        promise_seq: view.promise_seq,
    }
}

pub(crate) fn member_from_pb(member: &pb::MemberView, field: &str) -> Result<(NodeId, MemberView), Status> {
    let origin = origin_from_pb(member.origin.as_ref(), &format!("{field}.origin"))?;
    Ok((
        origin.node,
        MemberView {
            origin: (origin.incarnation > 0).then_some(origin),
            applied: frontier_from_pb(&member.applied, &format!("{field}.applied"))?,
            promise: member.promise,
            promise_seq: member.promise_seq,
        },
    ))
}

/// The view as the `ClusterStatus` call answers it.
pub(crate) fn cluster_view_to_pb(view: ClusterView) -> pb::ClusterStatusResponse {
    let peers = view
        .peers
        .into_iter()
        .map(|peer| pb::PeerStatus {
            node_id: peer.node.as_ref().map(node_to_bytes).unwrap_or_default(),
            state: peer.state.as_str().into(),
            lag: peer
                .lag
                .iter()
                .map(|lag| pb::OriginLag {
                    origin: Some(origin_to_pb(&lag.origin)),
                    entries: lag.entries,
                    seconds: lag.seconds,
                })
                .collect(),
            address: peer.address,
            last_error: peer.last_error,
            entries_applied: peer.entries_applied,
            entries_received: peer.entries_received,
            bytes_received: peer.bytes_received,
            acked_own_seq: peer.acked_own_seq,
            needs_bootstrap: peer.needs_bootstrap,
            clock_offset_ms: peer.clock_offset_ms,
            clock_uncertainty_ms: peer.clock_uncertainty_ms,
            entries_refused: peer.entries_refused,
        })
        .collect();
    pb::ClusterStatusResponse {
        origin: Some(origin_to_pb(&view.origin)),
        cluster_id: view.cluster_id,
        advertise_address: view.advertise_address.unwrap_or_default(),
        frontier: frontier_to_pb(&view.frontier),
        peers,
        conflicts: view.conflicts,
        hlc_drift_clipped: view.hlc_drift_clipped,
        entries_applied: view.entries_applied,
        hlc: view.hlc,
        stable_hlc: view.stable_hlc,
        log_purged_through: view
            .log_purged_through
            .iter()
            .map(|(origin, seq)| pb::OriginMark { origin: Some(origin_to_pb(origin)), seq: *seq, hlc: 0 })
            .collect(),
        versions_purged: view.versions_purged,
        bootstrapping: view.bootstrapping.unwrap_or_default(),
        clock_refusal: view.clock_refusal.unwrap_or_default(),
        max_clock_offset_ms: view.max_clock_offset_ms,
        members: view.members.iter().map(node_to_bytes).collect(),
        bootstraps: view.bootstraps,
        entries_refused: view.entries_refused,
    }
}

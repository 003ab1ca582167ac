//! The replication mesh's view of the cluster, as the API layer sees it: a
//! function the node provides (api and mesh do not import each other), and the
//! names the gateway and the metrics give to node ids and origins.

use std::sync::Arc;

use consensusdb_proto::mesh::v1::ClusterStatusResponse;
use consensusdb_proto::{convert, v1};
use consensusdb_types::NodeId;

/// Asks the mesh for its current view (in memory, cheap).
pub type ClusterProbe = Arc<dyn Fn() -> ClusterStatusResponse + Send + Sync>;

/// A node id (16 bytes on the wire) as the node prints it (32 hex
/// digits); `None` when it is not 16 bytes (a peer before its first
/// handshake).
pub fn node_id_text(bytes: &[u8]) -> Option<String> {
    NodeId::from_bytes(bytes).map(|node| node.to_string())
}

/// A peer's node id as a metric label: empty before its first handshake.
pub(crate) fn peer_node_label(bytes: &[u8]) -> String {
    node_id_text(bytes).unwrap_or_default()
}

/// An origin as `node-id/incarnation`; empty when absent or malformed.
pub fn origin_label(origin: Option<&v1::Origin>) -> String {
    convert::origin(origin, "origin").map(|origin| origin.to_string()).unwrap_or_default()
}

//! Keeping what a node knows of the cluster across restarts: members and
//! what each had applied, removed nodes, and learned peer addresses.
//!
//! Without it, a node restarted while a member is down would forget that
//! member, purge tombstones it never saw, and let its older writes bring
//! removed keys back when it returns.

use consensusdb_proto::mesh::v1 as pb;
use consensusdb_storage::StorageError;
use consensusdb_types::{DecodeError, NodeId};
use prost::Message;

use crate::error::MeshError;
use crate::peer_table::PeerTable;
use crate::purge_plan::MemberView;
use crate::wire::{
    known_peer_from_pb, known_peer_to_pb, member_from_pb, member_to_pb, node_from_bytes, node_to_bytes,
};

/// A membership record, every part decoded.
pub(crate) struct Remembered {
    removed: Vec<NodeId>,
    members: Vec<(NodeId, MemberView)>,
    peers: Vec<(String, Option<NodeId>)>,
}

/// Decodes a stored record, or says which part is damaged. A record is
/// taken whole or not at all: dropping a member view that does not decode
/// would let purges run past that member.
pub(crate) fn decode(bytes: &[u8]) -> Result<Remembered, MeshError> {
    let record = pb::Membership::decode(bytes).map_err(|e| MeshError::Malformed(e.to_string()))?;
    let removed = record
        .removed
        .iter()
        .enumerate()
        .map(|(i, bytes)| node_from_bytes(bytes, &format!("removed[{i}]")))
        .collect::<Result<_, _>>()
        .map_err(MeshError::malformed)?;
    let members = record
        .members
        .iter()
        .enumerate()
        .map(|(i, member)| member_from_pb(member, &format!("members[{i}]")))
        .collect::<Result<_, _>>()
        .map_err(MeshError::malformed)?;
    // Records written before known peers held bare addresses.
    let mut peers: Vec<(String, Option<NodeId>)> =
        record.peers.into_iter().map(|address| (address, None)).collect();
    for (i, peer) in record.known_peers.into_iter().enumerate() {
        peers.push(known_peer_from_pb(peer, &format!("known_peers[{i}]")).map_err(MeshError::malformed)?);
    }
    Ok(Remembered { removed, members, peers })
}

/// The error that stops a node whose stored membership is damaged: purging
/// past a member it forgot could bring removed keys back.
pub(crate) fn damaged(reason: &MeshError) -> StorageError {
    StorageError::Corrupt(DecodeError {
        what: "stored membership",
        reason: format!(
            "column family `peers`, key `membership`: {reason}. The node does not start, since purging past a \
             member it no longer knows could bring removed keys back; set cluster.forget_damaged_membership = true \
             (CONSENSUSDB_CLUSTER__FORGET_DAMAGED_MEMBERSHIP=true) to start from the seeds, purging nothing until \
             a peer has listed the members it knows"
        ),
    })
}

/// The record of `table`, to store.
pub(crate) fn encode(table: &PeerTable) -> Vec<u8> {
    pb::Membership {
        members: table.members.iter().map(|(node, view)| member_to_pb(*node, view)).collect(),
        removed: table.removed.iter().map(node_to_bytes).collect(),
        peers: Vec::new(),
        known_peers: table
            .peers
            .iter()
            .filter(|(_, peer)| peer.state.is_pulled())
            .map(|(address, peer)| known_peer_to_pb(address.clone(), peer.node))
            .collect(),
    }
    .encode_to_vec()
}

impl Remembered {
    /// Adds the remembered peers, removals and member views to `table`.
    pub(crate) fn restore_into(self, table: &mut PeerTable) {
        table.removed.extend(self.removed);
        for (node, view) in &self.members {
            table.learn_member(*node, view);
        }
        for (address, node) in &self.peers {
            table.learn(address, *node);
        }
    }
}

#[cfg(test)]
mod tests {
    use consensusdb_types::{FrontierMark, Origin};

    use super::*;

    #[test]
    fn members_removals_and_peers_survive_a_restart() {
        let mut table = PeerTable::default();
        table.learn("10.0.0.2:4482", None);
        table.learn("10.0.0.3:4482", Some(NodeId(7)));
        let down = Origin { node: NodeId(7), incarnation: 2 };
        let view = MemberView {
            origin: Some(down),
            applied: [(down, FrontierMark { seq: 9, hlc: 90 })].into_iter().collect(),
            promise: 100,
            promise_seq: 9,
        };
        table.learn_member(NodeId(7), &view);
        table.removed.insert(NodeId(8));
        let mut restored = PeerTable::default();
        decode(&encode(&table)).expect("decodes").restore_into(&mut restored);
        assert_eq!(restored.members.get(&NodeId(7)), Some(&view), "a down member still counts");
        assert!(restored.removed.contains(&NodeId(8)));
        assert!(restored.peers.contains_key("10.0.0.2:4482"));
        assert_eq!(restored.peers["10.0.0.3:4482"].node, Some(NodeId(7)), "the node behind an address too");
        assert!(decode(&[0xff, 0xff]).is_err(), "garbage is refused, not trusted");
        let mut damaged = pb::Membership::decode(encode(&table).as_slice()).expect("decodes");
        damaged.members[0].origin.as_mut().expect("origin").node_id.truncate(3);
        let error = decode(&damaged.encode_to_vec()).err().expect("one damaged member fails the record");
        assert!(error.to_string().contains("members[0].origin.node_id"), "{error}");
        let legacy = pb::Membership { peers: vec!["10.0.0.9:4482".into()], ..Default::default() };
        let mut restored = PeerTable::default();
        decode(&legacy.encode_to_vec()).expect("decodes").restore_into(&mut restored);
        assert!(restored.peers.contains_key("10.0.0.9:4482"), "records of earlier versions still restore");
    }
}

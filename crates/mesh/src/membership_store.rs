//! Keeping what a node knows of the cluster across restarts: members and
//! what each had applied, removed nodes, and learned peer addresses.
//!
//! Without it, a node restarted while a member is down would forget that
//! member, purge tombstones it never saw, and let its older writes bring
//! removed keys back when it returns.

use consensusdb_proto::mesh::v1 as pb;
use prost::Message;

use crate::membership::PeerTable;
use crate::wire::{
    known_peer_from_pb, known_peer_to_pb, member_from_pb, member_to_pb, node_from_bytes, node_to_bytes,
};

/// A decoded membership record.
pub(crate) struct Remembered(pb::Membership);

pub(crate) fn decode(bytes: &[u8]) -> Result<Remembered, String> {
    pb::Membership::decode(bytes).map(Remembered).map_err(|e| e.to_string())
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
        for bytes in &self.0.removed {
            if let Ok(node) = node_from_bytes(bytes, "removed") {
                table.removed.insert(node);
            }
        }
        for (i, member) in self.0.members.iter().enumerate() {
            if let Ok((node, view)) = member_from_pb(member, &format!("members[{i}]")) {
                table.learn_member(node, &view);
            }
        }
        // Records written before known peers held bare addresses.
        for address in &self.0.peers {
            table.learn(address, None);
        }
        for (i, peer) in self.0.known_peers.into_iter().enumerate() {
            if let Ok((address, node)) = known_peer_from_pb(peer, &format!("known_peers[{i}]")) {
                table.learn(&address, node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use consensusdb_types::{FrontierMark, NodeId, Origin};

    use super::*;
    use crate::members::MemberView;

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
        let legacy = pb::Membership { peers: vec!["10.0.0.9:4482".into()], ..Default::default() };
        let mut restored = PeerTable::default();
        decode(&legacy.encode_to_vec()).expect("decodes").restore_into(&mut restored);
        assert!(restored.peers.contains_key("10.0.0.9:4482"), "records of earlier versions still restore");
    }
}

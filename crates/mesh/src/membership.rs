//! What this node knows of the cluster: the peers it pulls from, what each
//! advertises and acknowledges, and which nodes were removed.
//!
//! Peers are known by address until their first handshake names their node
//! id. An address that turns out to be this node, or a second address of a
//! node already connected, is kept (so it is not learned again) but not
//! pulled from.

use std::collections::{BTreeMap, BTreeSet};

use consensusdb_storage::Frontier;
use consensusdb_types::{NodeId, Origin};

use crate::address::{MAX_KNOWN_PEERS, MAX_MEMBERS};
use crate::members::{MemberView, Members};

/// Where the puller of one peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerState {
    /// Opening a stream.
    Connecting,
    /// Streaming.
    Connected,
    /// Waiting before the next attempt after a failure.
    BackingOff,
    /// Removed from the cluster by an admin call.
    Removed,
    /// The address is this node's own.
    Itself,
    /// Another address of a node already pulled from.
    Alias,
}

impl PeerState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PeerState::Connecting => "connecting",
            PeerState::Connected => "connected",
            PeerState::BackingOff => "backing_off",
            PeerState::Removed => "removed",
            PeerState::Itself => "self",
            PeerState::Alias => "alias",
        }
    }

    /// Whether a puller runs for the peer.
    pub(crate) fn is_pulled(self) -> bool {
        matches!(self, PeerState::Connecting | PeerState::Connected | PeerState::BackingOff)
    }
}

/// One peer, by address.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) node: Option<NodeId>,
    /// The peer's own origin, from its handshake.
    pub(crate) origin: Option<Origin>,
    pub(crate) state: PeerState,
    pub(crate) last_error: String,
    /// The peer's committed frontier, from its latest heartbeat.
    pub(crate) advertised: Frontier,
    pub(crate) entries_applied: u64,
    pub(crate) entries_received: u64,
    pub(crate) bytes_received: u64,
    /// Entries refused because they did not decode.
    pub(crate) entries_refused: u64,
}

impl Peer {
    fn new() -> Self {
        Self {
            node: None,
            origin: None,
            state: PeerState::Connecting,
            last_error: String::new(),
            advertised: Frontier::new(),
            entries_applied: 0,
            entries_received: 0,
            bytes_received: 0,
            entries_refused: 0,
        }
    }
}

/// A connected source, as the assignment of origins sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    /// The source's own origin (its node id and current incarnation).
    pub(crate) origin: Origin,
    /// The frontier it advertised last.
    pub(crate) advertised: &'a Frontier,
}

/// The membership table.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    pub(crate) peers: BTreeMap<String, Peer>,
    pub(crate) removed: BTreeSet<NodeId>,
    /// What each member has applied, from its acknowledgements, its
    /// heartbeats and other nodes' member lists.
    pub(crate) members: Members,
    /// Per origin, the sources that answered `OUT_OF_RANGE` for it.
    pub(crate) out_of_range: crate::assignment::Purged,
}

impl PeerTable {
    /// Whether entry `applied + 1` of `origin` is gone from every source
    /// that could supply it, so only a bootstrap can.
    ///
    /// Only the origin's own node is sure to have held every entry: a node
    /// that joined by bootstrap answers out of range below its snapshot
    /// without having purged anything, and heartbeat marks trail what is
    /// applied. So while the origin's node is a member, its own report is
    /// required (it purges only what every member applied, or what a member
    /// lagging past the retention cap lacks); a report from another source
    /// only moves the pull elsewhere. Once the origin's node is removed,
    /// every connected source that advertised more of the origin than
    /// `applied` must have reported. With none known, nothing is proven:
    /// a later heartbeat asks again.
    pub(crate) fn purged_everywhere(&self, origin: Origin, applied: u64) -> bool {
        let Some(reported) = self.out_of_range.get(&origin) else { return false };
        let origin_is_member =
            self.members.contains_key(&origin.node) && !self.removed.contains(&origin.node);
        if origin_is_member && !reported.contains(&origin.node) {
            return false;
        }
        let holders: Vec<NodeId> = self
            .sources()
            .iter()
            .filter(|s| {
                s.origin.node == origin.node
                    || s.advertised.get(&origin).is_some_and(|mark| mark.seq > applied)
            })
            .map(|s| s.origin.node)
            .collect();
        !holders.is_empty() && holders.iter().all(|node| reported.contains(node))
    }

    /// Adds an address not seen before, with the node behind it when a
    /// peer that reached it said which; returns whether the address is new
    /// (and so needs a puller). A node learned by gossip is taken only
    /// until a handshake names the node itself. Beyond
    /// [`MAX_KNOWN_PEERS`] addresses, new ones are not taken.
    pub(crate) fn learn(&mut self, address: &str, node: Option<NodeId>) -> bool {
        if let Some(peer) = self.peers.get_mut(address) {
            if peer.node.is_none() && node.is_some_and(|node| !self.removed.contains(&node)) {
                peer.node = node;
            }
            return false;
        }
        if address.is_empty() || self.peers.len() >= MAX_KNOWN_PEERS {
            return false;
        }
        let mut peer = Peer::new();
        peer.node = node;
        self.peers.insert(address.to_string(), peer);
        true
    }

    /// The peers currently streaming: their own origin and what they advertise.
    pub(crate) fn sources(&self) -> Vec<Source<'_>> {
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Connected)
            .filter_map(|p| p.origin.map(|origin| Source { origin, advertised: &p.advertised }))
            .collect()
    }

    /// Whether another address already streams from `node`.
    pub(crate) fn connected_elsewhere(&self, node: NodeId, address: &str) -> bool {
        self.peers
            .iter()
            .any(|(a, p)| a != address && p.node == Some(node) && p.state == PeerState::Connected)
    }

    /// Merges what is learned of a member (unless it was removed). Beyond
    /// [`MAX_MEMBERS`] members, new ones are not taken.
    pub(crate) fn learn_member(&mut self, node: NodeId, view: &MemberView) {
        if self.removed.contains(&node) {
            return;
        }
        if let Some(known) = self.members.get_mut(&node) {
            known.merge(view);
        } else if self.members.len() < MAX_MEMBERS {
            self.members.insert(node, view.clone());
        }
    }

    /// Whether a peer is known by address only (no node has reached it):
    /// what it holds is unknown, so nothing may be purged. An address a
    /// peer reached and named the node of counts as known, so in a chain
    /// A–B–C the ends, which never reach each other, still purge on what
    /// they learn of each other through B.
    pub(crate) fn has_unresolved_peer(&self) -> bool {
        self.peers.values().any(|p| p.node.is_none() && p.state.is_pulled())
    }

    /// Addresses worth telling other nodes about, with the node behind
    /// each when known.
    pub(crate) fn shareable(&self) -> Vec<(String, Option<NodeId>)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.state.is_pulled())
            .map(|(address, peer)| (address.clone(), peer.node))
            .collect()
    }

    /// Marks `node` removed; returns the addresses whose pullers must stop.
    pub(crate) fn remove_node(&mut self, node: NodeId) -> Vec<String> {
        self.removed.insert(node);
        self.members.remove(&node);
        let mut stopped = Vec::new();
        for (address, peer) in &mut self.peers {
            if peer.node == Some(node) && peer.state != PeerState::Removed {
                peer.state = PeerState::Removed;
                stopped.push(address.clone());
            }
        }
        stopped
    }
}

#[cfg(test)]
mod tests {
    use consensusdb_types::FrontierMark;

    use super::*;

    fn origin(node: u128) -> Origin {
        Origin { node: NodeId(node), incarnation: 1 }
    }

    /// A table with connected sources, each advertising `seq` of origin 1.
    fn table(sources: &[(u128, u64)]) -> PeerTable {
        let mut table = PeerTable::default();
        for &(node, seq) in sources {
            let address = format!("10.0.0.{node}:4482");
            table.learn(&address, None);
            let peer = table.peers.get_mut(&address).expect("learned");
            peer.node = Some(NodeId(node));
            peer.origin = Some(origin(node));
            peer.state = PeerState::Connected;
            peer.advertised = [(origin(1), FrontierMark { seq, hlc: seq })].into_iter().collect();
            table.members.insert(NodeId(node), MemberView::default());
        }
        table
    }

    fn report(table: &mut PeerTable, node: u128) {
        table.out_of_range.entry(origin(1)).or_default().insert(NodeId(node));
    }

    #[test]
    fn a_joiner_below_its_snapshot_is_no_proof_while_the_origin_node_holds_the_log() {
        // Node 4 joined by bootstrap: it advertises origin 1 up to 50 but its
        // log starts after its snapshot, so it reports entry 3 out of range.
        let mut table = table(&[(1, 50), (4, 50)]);
        report(&mut table, 4);
        assert!(!table.purged_everywhere(origin(1), 2), "node 1 still holds its own log");
        report(&mut table, 1);
        assert!(table.purged_everywhere(origin(1), 2), "the origin's node purged it too");
    }

    #[test]
    fn with_the_origin_node_unreachable_a_member_is_waited_for() {
        let mut table = table(&[(4, 50)]);
        table.members.insert(NodeId(1), MemberView::default());
        report(&mut table, 4);
        assert!(!table.purged_everywhere(origin(1), 2), "node 1 may come back with the entries");
        table.remove_node(NodeId(1));
        assert!(table.purged_everywhere(origin(1), 2), "removed: every holder left has reported");
    }

    #[test]
    fn every_advertising_source_must_report_once_the_origin_node_is_gone() {
        let mut table = table(&[(2, 50), (3, 50)]);
        table.removed.insert(NodeId(1));
        report(&mut table, 2);
        assert!(!table.purged_everywhere(origin(1), 2), "node 3 may still hold it");
        report(&mut table, 3);
        assert!(table.purged_everywhere(origin(1), 2));
        assert!(!table.purged_everywhere(origin(1), 60), "no source holds more than this node applied");
        assert!(!PeerTable::default().purged_everywhere(origin(1), 0), "no report, no proof");
    }
}

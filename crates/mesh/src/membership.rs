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
    /// Adds an address not seen before; returns whether it is new (and so
    /// needs a puller).
    pub(crate) fn learn(&mut self, address: &str) -> bool {
        if address.is_empty() || self.peers.contains_key(address) {
            return false;
        }
        self.peers.insert(address.to_string(), Peer::new());
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

    /// Merges what is learned of a member (unless it was removed).
    pub(crate) fn learn_member(&mut self, node: NodeId, view: &MemberView) {
        if !self.removed.contains(&node) {
            self.members.entry(node).or_default().merge(view);
        }
    }

    /// Whether a peer is known by address only (no handshake yet): what it
    /// holds is unknown, so nothing may be purged.
    pub(crate) fn has_unresolved_peer(&self) -> bool {
        self.peers.values().any(|p| p.node.is_none() && p.state.is_pulled())
    }

    /// Addresses worth telling other nodes about.
    pub(crate) fn shareable(&self) -> Vec<String> {
        self.peers.iter().filter(|(_, p)| p.state.is_pulled()).map(|(address, _)| address.clone()).collect()
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

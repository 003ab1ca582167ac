//! How the mesh reacts to what it hears: a peer learned or connected, a
//! source's heartbeat, a puller's progress, entries applied or refused, a
//! source that purged what this node needs, a node removed. Each reaction
//! updates the peer table ([`PeerTable`]) under its lock, then acts
//! (starts a puller or a bootstrap, wakes pullers) with the lock released.

use std::sync::Arc;

use consensusdb_storage::{ApplyAck, Frontier};
use consensusdb_types::{NodeId, Origin};

use crate::Inner;
use crate::peer_table::{LogHold, PeerState, PeerTable};
use crate::purge_plan::MemberView;

/// A source's heartbeat, decoded.
#[derive(Default)]
pub(crate) struct Heartbeat {
    pub(crate) advertised: Frontier,
    pub(crate) promise: u64,
    pub(crate) peers: Vec<(String, Option<NodeId>)>,
    pub(crate) removed: Vec<NodeId>,
    pub(crate) members: Vec<(NodeId, MemberView)>,
    /// The source's wall clock when it sent the heartbeat.
    pub(crate) wall_ms: u64,
    /// The source's bound of how far this node's clock is ahead of its own.
    pub(crate) caller_ahead_ms: Option<i64>,
    /// Per origin, the first seq the source can supply.
    pub(crate) log_starts: Frontier,
    /// The log holds the source knows.
    pub(crate) log_holds: Vec<(NodeId, LogHold)>,
}

impl Inner {
    /// Learns a peer address (from a handshake or a heartbeat), with the
    /// node behind it when the teller knows it, and starts pulling from it
    /// if it is new. The address must have been checked
    /// ([`address::check_peer_address`]).
    pub(crate) fn learn(self: &Arc<Self>, address: &str, node: Option<NodeId>) {
        if Some(address) == self.config.advertise_address.as_deref() {
            return;
        }
        if self.peers().learn(address, node) {
            tracing::info!(peer = %address, "learned of a peer");
            self.spawn_puller(address.to_string());
        }
    }

    pub(crate) fn peer_state(&self, address: &str) -> Option<PeerState> {
        self.peers().peers.get(address).map(|p| p.state)
    }

    pub(crate) fn record_peer_error(&self, address: &str, error: String) {
        if let Some(peer) = self.peers().peers.get_mut(address) {
            peer.last_error = error;
        }
    }

    pub(crate) fn set_peer_state(&self, address: &str, state: PeerState, error: Option<String>) {
        if let Some(peer) = self.peers().peers.get_mut(address) {
            // A removal wins over whatever the puller was doing.
            if peer.state != PeerState::Removed {
                peer.state = state;
            }
            if let Some(error) = error {
                peer.last_error = error;
            }
        }
    }

    /// Registers a stream's source after the handshake. Refuses (returns
    /// false) a removed node or one already streaming under another address.
    pub(crate) fn source_connected(&self, address: &str, origin: Origin) -> bool {
        let node = origin.node;
        let mut peers = self.peers();
        if peers.removed.contains(&node) || peers.connected_elsewhere(node, address) {
            return false;
        }
        peers.learn_member(node, &MemberView { origin: Some(origin), ..MemberView::default() });
        if let Some(peer) = peers.peers.get_mut(address) {
            peer.node = Some(node);
            peer.origin = Some(origin);
            peer.state = PeerState::Connected;
            peer.last_error.clear();
        }
        drop(peers);
        self.bump_topology();
        true
    }

    pub(crate) fn peer_disconnected(&self, address: &str) {
        let was_connected = {
            let mut peers = self.peers();
            peers.peers.get_mut(address).is_some_and(|peer| {
                let was = peer.state == PeerState::Connected;
                peer.advertised.clear();
                peer.log_starts.clear();
                peer.heard_at = None;
                was
            })
        };
        if was_connected {
            self.bump_topology();
        }
    }

    /// Peers to bootstrap from: connected ones first, then the rest.
    pub(crate) fn bootstrap_candidates(&self) -> Vec<String> {
        let peers = self.peers();
        let mut candidates: Vec<(bool, String)> = peers
            .peers
            .iter()
            .filter(|(_, p)| p.state.is_pulled())
            .map(|(address, p)| (p.state != PeerState::Connected, address.clone()))
            .collect();
        candidates.sort();
        candidates.into_iter().map(|(_, address)| address).collect()
    }

    /// Whether the next entry of `origin` this node needs is gone from
    /// every source that could supply it ([`PeerTable::purged_everywhere`]).
    /// Peers not reached yet are waited for up to twice the longest
    /// reconnect backoff.
    fn purged_everywhere(&self, peers: &PeerTable, origin: Origin) -> bool {
        let applied = self.store.frontier().get(&origin).map_or(0, |mark| mark.seq);
        peers.purged_everywhere(origin, applied, std::time::Instant::now(), self.config.max_backoff * 2)
    }

    /// Starts a bootstrap unless one is running.
    pub(crate) fn start_bootstrap(self: &Arc<Self>, reason: String) {
        // Raised here, before the task runs, so no puller starts a stream
        // in between.
        if !self.bootstrapping.send_replace(true) {
            self.bootstraps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.spawn(crate::bootstrap::run(self.clone(), reason));
        }
    }

    pub(crate) fn is_removed(&self, node: NodeId) -> bool {
        self.peers().removed.contains(&node)
    }

    /// What a source's heartbeat says: its frontier and clock promise, its
    /// wall clock (for the clock check), the peers, members, removals and
    /// log holds it knows, and where its log starts. Also re-checks
    /// whether entries reported out of range are gone everywhere.
    pub(crate) fn take_heartbeat(self: &Arc<Self>, address: &str, beat: Heartbeat) {
        let Heartbeat {
            advertised,
            promise,
            peers,
            removed,
            members,
            wall_ms,
            caller_ahead_ms,
            log_starts,
            log_holds,
        } = beat;
        // The `peers` lock is released at the end of this statement: the
        // clocks are never touched under it (see `Inner`).
        let source = self.peers().peers.get(address).and_then(|peer| peer.node);
        if let Some(source) = source {
            let own_wall = self.store.wall_clock_ms();
            self.clocks().heartbeat(source, wall_ms, own_wall, caller_ahead_ms, std::time::Instant::now());
        }
        let new_origins = {
            let mut table = self.peers();
            let now_ms = self.store.wall_clock_ms();
            for (node, hold) in &log_holds {
                table.hold_log_for(*node, hold, now_ms, self.config.retention_max_lag_ms);
            }
            let own = self.store.origin();
            table.members_heard();
            for (node, view) in &members {
                table.learn_member(*node, view);
                // What a member applied of this node's origin, as others
                // saw it, counts toward write concerns too: in a chain
                // A–B–C, C's acknowledgement reaches A only this way.
                // Only members this node tracks count (never a removed
                // node, nor one past the member cap).
                if *node != own.node
                    && table.members.contains_key(node)
                    && let Some(mark) = view.applied.get(&own)
                {
                    self.acks.record(*node, mark.seq);
                }
            }
            let source = table.peers.get(address).and_then(|peer| peer.origin);
            if let Some(source) = source {
                // The source's own view: what it applied, and its promise.
                let promise_seq = advertised.get(&source).map_or(0, |mark| mark.seq);
                let view =
                    MemberView { origin: Some(source), applied: advertised.clone(), promise, promise_seq };
                table.learn_member(source.node, &view);
            }
            let new = table.peers.get_mut(address).is_some_and(|peer| {
                let new = advertised.keys().any(|origin| !peer.advertised.contains_key(origin));
                peer.advertised = advertised;
                peer.log_starts = log_starts.into_iter().map(|(origin, mark)| (origin, mark.seq)).collect();
                peer.heard_at = Some(std::time::Instant::now());
                new
            });
            // What this source holds may complete the evidence for an
            // origin reported out of range before its holders were known.
            let purged = table
                .out_of_range_origins()
                .into_iter()
                .find(|origin| self.purged_everywhere(&table, *origin));
            if let Some(origin) = purged {
                table.clear_out_of_range();
                drop(table);
                self.start_bootstrap(format!("every source purged entries of {origin} this node needs"));
            }
            new
        };
        let mut changed = new_origins;
        for node in removed {
            changed |= self.remove_node(node);
        }
        if changed {
            self.bump_topology();
        }
        for (address, node) in &peers {
            self.learn(address, *node);
        }
    }

    /// Marks a node removed. Returns whether that is news.
    pub(crate) fn remove_node(&self, node: NodeId) -> bool {
        let mut peers = self.peers();
        if peers.removed.contains(&node) {
            return false;
        }
        let stopped = peers.remove_node(node);
        drop(peers);
        self.clocks().forget(node);
        self.acks.forget(node);
        tracing::warn!(%node, addresses = ?stopped, "node removed from the cluster");
        true
    }

    /// A puller's progress: what it has durably applied.
    pub(crate) fn record_acks(&self, puller: Origin, applied: Frontier) {
        if let Some(own) = applied.get(&self.store.origin()) {
            self.acks.record(puller.node, own.seq);
        }
        let view = MemberView { origin: Some(puller), applied, ..MemberView::default() };
        self.peers().learn_member(puller.node, &view);
    }

    /// A peer sent an entry that does not decode (refused, never stored).
    pub(crate) fn record_refused(&self, address: &str) {
        if let Some(peer) = self.peers().peers.get_mut(address) {
            peer.entries_refused += 1;
        }
    }

    pub(crate) fn record_applied(&self, address: &str, ack: ApplyAck, bytes: u64) {
        let mut peers = self.peers();
        if let Some(peer) = peers.peers.get_mut(address) {
            peer.entries_applied += ack.applied;
            peer.entries_received += ack.applied + ack.skipped;
            peer.bytes_received += bytes;
        }
        // Past a source's gap, that source is chosen again: every stream
        // gets a fresh choice of origins.
        if ack.applied > 0 && peers.forget_stale_out_of_range(&self.store.frontier()) {
            drop(peers);
            self.bump_topology();
        }
    }

    /// `source` cannot supply entry `wanted` of `origin`; it can again from
    /// `resume_at` on (an answer of an earlier version without it: never).
    pub(crate) fn record_out_of_range(
        self: &Arc<Self>,
        address: &str,
        source: NodeId,
        origin: Origin,
        wanted: u64,
        resume_at: u64,
    ) {
        let resume_at = if resume_at == 0 { u64::MAX } else { resume_at };
        let everywhere = {
            let mut peers = self.peers();
            if let Some(peer) = peers.peers.get_mut(address) {
                peer.last_error = format!("purged entries of {origin} from seq {wanted} on");
            }
            // A stale report (another source supplied past the gap since)
            // proves nothing.
            peers.report_out_of_range(origin, source, resume_at, std::time::Instant::now());
            peers.forget_stale_out_of_range(&self.store.frontier());
            self.purged_everywhere(&peers, origin)
        };
        // Other sources are asked next (the assignment passes this one over).
        self.bump_topology();
        if everywhere {
            self.peers().clear_out_of_range();
            self.start_bootstrap(format!("every source purged entries of {origin} from seq {wanted} on"));
        }
    }
}

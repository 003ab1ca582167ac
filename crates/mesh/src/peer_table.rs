//! What this node knows of the cluster: the peers it pulls from, what each
//! advertises and acknowledges, and which nodes were removed.
//!
//! Peers are known by address until a handshake, or another node's
//! heartbeat (which names the node behind each address it knows), names
//! their node id. An address that turns out to be this node, or a second
//! address of a node already connected, is kept (so it is not learned
//! again) but not pulled from.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use consensusdb_storage::Frontier;
use consensusdb_types::{NodeId, Origin};

use crate::address::{MAX_KNOWN_PEERS, MAX_MEMBERS};
use crate::assignment::{Purged, Source};
use crate::purge_plan::{MemberView, Members};

/// Where the puller of one peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
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
    /// The state as status and metrics label it.
    pub fn as_str(self) -> &'static str {
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
    pub fn is_pulled(self) -> bool {
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
    /// When the latest heartbeat came on the current stream (until one
    /// has, `advertised` and `log_starts` say nothing).
    pub(crate) heard_at: Option<Instant>,
    /// Per origin, the first seq the peer's log holds, or will (from its
    /// latest heartbeat): what it can still supply.
    pub(crate) log_starts: BTreeMap<Origin, u64>,
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
            heard_at: None,
            log_starts: BTreeMap::new(),
            entries_applied: 0,
            entries_received: 0,
            bytes_received: 0,
            entries_refused: 0,
        }
    }
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
    out_of_range: BTreeMap<Origin, OutOfRange>,
    /// Log holds: nodes installing (or just installed) a snapshot. The
    /// log is kept from each hold's frontier until the node's own
    /// acknowledgements reach it (or the retention cap passes). A hold
    /// is not a member view: it keeps log entries only, never tombstones,
    /// and confirms no write concern, since the node may not have
    /// installed anything yet.
    pub(crate) log_holds: BTreeMap<NodeId, LogHold>,
    /// Set once a member view was dropped because [`MAX_MEMBERS`] were
    /// known: what that member holds is unknown, so nothing is purged.
    members_overflowed: bool,
    /// Set when the stored membership was damaged and forgotten: which
    /// members exist is unknown until a peer's heartbeat lists the ones it
    /// knows, so nothing is purged until then.
    members_forgotten: bool,
}

impl PeerTable {
    /// The members other than `own`, removed ones excepted: the nodes
    /// purges wait for and write concerns count.
    pub(crate) fn other_members(&self, own: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.members.keys().copied().filter(move |node| *node != own && !self.removed.contains(node))
    }
}

/// A node that resumes by log from a snapshot's frontier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogHold {
    /// Per origin, the mark the node resumes after.
    pub(crate) from: Frontier,
    /// When the node serving the snapshot took the hold (its wall clock,
    /// ms). It travels with the hold, so gossip never renews a hold.
    pub(crate) since_ms: u64,
}

/// The `OUT_OF_RANGE` answers for one origin still current: each source
/// cannot supply the next entry this node needs.
#[derive(Debug)]
struct OutOfRange {
    /// Per source, the seq from which it can supply the origin again.
    resume_at: BTreeMap<NodeId, u64>,
    /// When the first of these answers came.
    since: Instant,
}

impl PeerTable {
    /// Keeps the log for `node` from `hold`'s frontier on, merged with
    /// any hold it has (the greater mark per origin, the later time: a
    /// second snapshot replaces the first). A hold older than `max_age_ms`
    /// (the retention cap) is not taken, so one gossiped back after it
    /// expired here stays expired; beyond [`MAX_MEMBERS`] holds, new ones
    /// are not taken.
    pub(crate) fn hold_log_for(&mut self, node: NodeId, hold: &LogHold, now_ms: u64, max_age_ms: u64) {
        if self.removed.contains(&node) || now_ms.saturating_sub(hold.since_ms) >= max_age_ms {
            return;
        }
        let since_ms = hold.since_ms.min(now_ms);
        if let Some(held) = self.log_holds.get_mut(&node) {
            crate::purge_plan::merge_frontier(&mut held.from, &hold.from);
            held.since_ms = held.since_ms.max(since_ms);
        } else if self.log_holds.len() < MAX_MEMBERS {
            self.log_holds.insert(node, LogHold { from: hold.from.clone(), since_ms });
        }
    }

    /// Drops the holds no longer needed: the node's own view has reached
    /// its hold on every origin (its acknowledgements now keep the log),
    /// or the hold is older than `max_age_ms` (the retention cap).
    pub(crate) fn release_log_holds(&mut self, now_ms: u64, max_age_ms: u64) {
        let members = &self.members;
        self.log_holds.retain(|node, hold| {
            let reached = members.get(node).is_some_and(|view| {
                hold.from
                    .iter()
                    .all(|(origin, mark)| view.applied.get(origin).is_some_and(|have| have.seq >= mark.seq))
            });
            !reached && now_ms.saturating_sub(hold.since_ms) < max_age_ms
        });
    }

    /// The log holds' frontiers.
    pub(crate) fn log_holds(&self) -> crate::purge_plan::LogHolds {
        self.log_holds.iter().map(|(node, hold)| (*node, hold.from.clone())).collect()
    }

    /// Records that `source` answered `OUT_OF_RANGE` for `origin`: it can
    /// supply the origin again from seq `resume_at` on.
    pub(crate) fn report_out_of_range(
        &mut self,
        origin: Origin,
        source: NodeId,
        resume_at: u64,
        now: Instant,
    ) {
        let reports = self
            .out_of_range
            .entry(origin)
            .or_insert_with(|| OutOfRange { resume_at: BTreeMap::new(), since: now });
        reports.resume_at.insert(source, resume_at);
    }

    /// Forgets the answers of sources that can supply the next entry again
    /// (this node got past their gap from another source); returns whether
    /// any went, so the choice of sources is made again.
    pub(crate) fn forget_stale_out_of_range(&mut self, applied: &Frontier) -> bool {
        let mut forgot = false;
        self.out_of_range.retain(|origin, reports| {
            let next = applied.get(origin).map_or(0, |mark| mark.seq).saturating_add(1);
            let before = reports.resume_at.len();
            reports.resume_at.retain(|_, resume_at| next < *resume_at);
            forgot |= reports.resume_at.len() < before;
            !reports.resume_at.is_empty()
        });
        forgot
    }

    /// Forgets every answer (a bootstrap is starting).
    pub(crate) fn clear_out_of_range(&mut self) {
        self.out_of_range.clear();
    }

    /// The origins with current answers.
    pub(crate) fn out_of_range_origins(&self) -> Vec<Origin> {
        self.out_of_range.keys().copied().collect()
    }

    /// Per origin, the sources that could not supply it: passed over when
    /// choosing where to pull it from.
    pub(crate) fn purged_sources(&self) -> Purged {
        self.out_of_range
            .iter()
            .map(|(origin, reports)| (*origin, reports.resume_at.keys().copied().collect()))
            .collect()
    }

    /// Whether entry `applied + 1` of `origin` is gone from every source
    /// that could supply it, so only a bootstrap can.
    ///
    /// It takes a current `OUT_OF_RANGE` answer for the entry, and then,
    /// of every peer this node pulls from, its own answer or, in its latest
    /// heartbeat, a log that starts after the entry (it purged it, or
    /// joined from a snapshot past it). A peer that holds the entry (its
    /// log starts at or before it, and it has applied it) can supply it:
    /// no bootstrap. A peer that cannot tell yet (not connected, no
    /// heartbeat on its stream, not that far itself, or too old a version
    /// to say where its log starts) is waited for, up to `patience` after
    /// the first answer, then passed over: two nodes behind the same purge
    /// must not wait on each other forever. Log starts only grow, so a
    /// late heartbeat can only delay the verdict, never make it wrong.
    pub(crate) fn purged_everywhere(
        &self,
        origin: Origin,
        applied: u64,
        now: Instant,
        patience: Duration,
    ) -> bool {
        let Some(reports) = self.out_of_range.get(&origin) else { return false };
        let next = applied.saturating_add(1);
        let waited = now.duration_since(reports.since) >= patience;
        let answered = |node: Option<NodeId>| {
            node.and_then(|node| reports.resume_at.get(&node)).is_some_and(|resume_at| next < *resume_at)
        };
        let mut gone_from = 0;
        for peer in self.peers.values().filter(|peer| peer.state.is_pulled()) {
            let heard = peer.state == PeerState::Connected && peer.heard_at.is_some();
            let log_start = peer.log_starts.get(&origin).copied();
            let purged_it = answered(peer.node) || (heard && log_start.is_some_and(|start| start > next));
            let holds_it = heard
                && log_start.is_some_and(|start| start <= next)
                && peer.advertised.get(&origin).is_some_and(|mark| mark.seq >= next);
            if purged_it {
                gone_from += 1;
            } else if holds_it || !waited {
                // It can supply the entry, or it may yet.
                return false;
            }
        }
        gone_from > 0
    }

    /// Adds an address not seen before, with the node behind it when a
    /// peer that reached it said which; returns whether the address is new
    /// (and so needs a puller). A node learned by gossip is taken only
    /// until a handshake names the node itself. Beyond
    /// [`MAX_KNOWN_PEERS`] addresses, new ones are not taken.
    pub(crate) fn learn(&mut self, address: &str, node: Option<NodeId>) -> bool {
        // The address of a removed node is never pulled from again.
        let node = node.filter(|node| !self.removed.contains(node));
        if let Some(peer) = self.peers.get_mut(address) {
            if peer.node.is_none() {
                peer.node = node;
            }
            return false;
        }
        if address.is_empty() {
            return false;
        }
        if self.peers.values().filter(|peer| peer.state.is_pulled()).count() >= MAX_KNOWN_PEERS {
            tracing::warn!(peer = %address, max = MAX_KNOWN_PEERS, "too many peers known: not learning another");
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
        } else {
            // A member this node does not track could lack what a purge
            // removes: purging waits (see `members_incomplete`).
            self.members_overflowed = true;
            tracing::warn!(%node, max = MAX_MEMBERS, "too many members known: purges wait");
        }
    }

    /// Whether some member may be missing from `members`: a view was
    /// dropped for lack of room, or the stored membership was forgotten
    /// and no peer has listed its members yet. Nothing is purged then.
    pub(crate) fn members_incomplete(&self) -> bool {
        self.members_overflowed || self.members_forgotten
    }

    /// The stored membership was damaged and is not used: wait for a
    /// peer's list of members before purging.
    pub(crate) fn forget_members(&mut self) {
        self.members_forgotten = true;
    }

    /// A peer's heartbeat listed the members it knows (merged by the
    /// caller), which include any member this node forgot.
    pub(crate) fn members_heard(&mut self) {
        self.members_forgotten = false;
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
        self.log_holds.remove(&node);
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

    /// A table with connected, heard sources, each holding origin 1 from
    /// the given seq on.
    fn table(sources: &[(u128, u64)]) -> PeerTable {
        let mut table = PeerTable::default();
        for &(node, log_start) in sources {
            let address = format!("10.0.0.{node}:4482");
            table.learn(&address, None);
            let peer = table.peers.get_mut(&address).expect("learned");
            peer.node = Some(NodeId(node));
            peer.origin = Some(origin(node));
            peer.state = PeerState::Connected;
            peer.heard_at = Some(Instant::now());
            peer.advertised = [(origin(1), FrontierMark { seq: 50, hlc: 50 })].into_iter().collect();
            peer.log_starts = [(origin(1), log_start)].into_iter().collect();
            table.members.insert(NodeId(node), MemberView::default());
        }
        table
    }

    /// `node` answers that it can supply origin 1 again from seq 40 on.
    fn report(table: &mut PeerTable, node: u128) {
        table.report_out_of_range(origin(1), NodeId(node), 40, Instant::now());
    }

    const PATIENCE: Duration = Duration::from_secs(10);

    fn everywhere(table: &PeerTable, applied: u64) -> bool {
        table.purged_everywhere(origin(1), applied, Instant::now(), PATIENCE)
    }

    #[test]
    fn a_source_whose_log_still_holds_the_entry_is_no_proof() {
        // Node 4 joined from a snapshot at 39: it cannot supply entry 3.
        // Node 1's log still starts at 1.
        let mut table = table(&[(1, 1), (4, 40)]);
        report(&mut table, 4);
        assert!(!everywhere(&table, 2), "node 1 still holds entry 3");
        // Node 1 purged through 39 since, as its next heartbeat says.
        table.peers.get_mut("10.0.0.1:4482").expect("known").log_starts.insert(origin(1), 40);
        assert!(everywhere(&table, 2), "no source can supply entry 3 any more");
    }

    #[test]
    fn answers_from_every_source_are_proof() {
        let mut table = table(&[(1, 1), (2, 1)]);
        report(&mut table, 1);
        assert!(!everywhere(&table, 2));
        report(&mut table, 2);
        assert!(everywhere(&table, 2));
        assert!(!everywhere(&table, 45), "past the gap, the answers are stale");
        assert!(!everywhere(&PeerTable::default(), 0), "no answer, no proof");
    }

    #[test]
    fn a_source_that_does_not_say_where_its_log_starts_is_waited_for() {
        // Node 2 lacks the origin, or runs a version whose heartbeats do
        // not carry log starts.
        let mut table = table(&[(1, 40), (2, 1)]);
        table.peers.get_mut("10.0.0.2:4482").expect("known").log_starts.clear();
        report(&mut table, 1);
        assert!(!everywhere(&table, 2), "node 2 may hold entry 3 or get it: wait a while");
        let later = Instant::now() + PATIENCE;
        assert!(table.purged_everywhere(origin(1), 2, later, PATIENCE), "then pass it over");
    }

    #[test]
    fn a_peer_not_heard_from_yet_is_waited_for_before_a_bootstrap() {
        // Node 1 purged what this node needs; node 4, which may hold it, is
        // still being connected to.
        let mut table = table(&[(1, 40)]);
        table.learn("10.0.0.4:4482", Some(NodeId(4)));
        report(&mut table, 1);
        assert!(!everywhere(&table, 2), "node 4 may still hold the entries");
        let later = Instant::now() + PATIENCE;
        assert!(table.purged_everywhere(origin(1), 2, later, PATIENCE), "waited long enough for node 4");
        report(&mut table, 4);
        assert!(everywhere(&table, 2), "node 4 cannot supply them either");
    }

    #[test]
    fn two_nodes_behind_the_same_purge_do_not_wait_on_each_other_forever() {
        // The origin (node 1) purged through 39; nodes 2 and this node both
        // stopped at seq 2. Node 2's log still starts at 1, but it does not
        // have entry 3 either.
        let mut table = table(&[(1, 40), (2, 1)]);
        table.peers.get_mut("10.0.0.2:4482").expect("known").advertised =
            [(origin(1), FrontierMark { seq: 2, hlc: 2 })].into_iter().collect();
        report(&mut table, 1);
        assert!(!everywhere(&table, 2), "node 2 may still get entry 3: wait a while");
        let later = Instant::now() + PATIENCE;
        assert!(table.purged_everywhere(origin(1), 2, later, PATIENCE), "then bootstrap");
    }

    fn hold(seq: u64, since_ms: u64) -> LogHold {
        LogHold { from: [(origin(1), FrontierMark { seq, hlc: seq })].into_iter().collect(), since_ms }
    }

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    #[test]
    fn a_log_hold_is_released_once_its_node_reached_it() {
        let mut table = table(&[]);
        table.hold_log_for(NodeId(3), &hold(10, 1_000), 2_000, DAY_MS);
        table.release_log_holds(3_000, DAY_MS);
        assert_eq!(table.log_holds().len(), 1, "node 3 has acknowledged nothing yet");
        let applied = [(origin(1), FrontierMark { seq: 10, hlc: 10 })].into_iter().collect();
        table.members.insert(NodeId(3), MemberView { applied, ..MemberView::default() });
        table.release_log_holds(4_000, DAY_MS);
        assert!(table.log_holds().is_empty(), "its own acknowledgements keep the log now");
    }

    #[test]
    fn gossip_never_renews_an_expired_log_hold() {
        // Node 3 never came back after its snapshot: the hold expires a
        // day after it was taken, on every node, whatever order the
        // heartbeats carrying it arrive in.
        let mut table = table(&[]);
        table.hold_log_for(NodeId(3), &hold(10, 1_000), 5_000, DAY_MS);
        table.release_log_holds(1_000 + DAY_MS, DAY_MS);
        assert!(table.log_holds().is_empty(), "expired");
        table.hold_log_for(NodeId(3), &hold(10, 1_000), 2_000 + DAY_MS, DAY_MS);
        assert!(table.log_holds().is_empty(), "a peer gossiping it back does not renew it");
    }

    #[test]
    fn log_holds_merge_to_the_latest_snapshot() {
        let mut table = table(&[]);
        table.hold_log_for(NodeId(3), &hold(20, 2_000), 3_000, DAY_MS);
        table.hold_log_for(NodeId(3), &hold(10, 1_000), 3_000, DAY_MS);
        assert_eq!(table.log_holds[&NodeId(3)], hold(20, 2_000), "an older copy changes nothing");
        // A time ahead of this node's clock counts from now.
        table.hold_log_for(NodeId(4), &hold(5, u64::MAX), 3_000, DAY_MS);
        assert_eq!(table.log_holds[&NodeId(4)].since_ms, 3_000);
    }
}

//! What each member of the cluster has applied, as far as this node knows,
//! and the purge plan that follows from it (docs/replication.md, purges).
//!
//! Views come from pullers' progress, sources' heartbeats, and the member
//! lists heartbeats carry, so in a chain every node learns about every
//! other. A view only grows (frontiers and promises are monotonic), so
//! merging takes maxima and a stale view only makes purging later, never
//! unsafe.
//!
//! - **Log:** an origin's entries up to the lowest seq every member has
//!   applied are needed by no one. A member further behind than the
//!   retention cap is not waited for; it must bootstrap again.
//! - **Tombstones and expired versions** stamped below the *stable HLC* are
//!   purged: for every origin, every member has applied that origin's
//!   entries up to an HLC at least that high. A member has all of origin
//!   O's entries up to the HLC of the last one it applied, and, if it has
//!   applied everything O had when O last promised its clock, up to that
//!   promise too. Every member counts here, the lagging ones included: a
//!   dead node must be removed before tombstones it may not have seen go.

use std::collections::HashMap;

use consensusdb_storage::{Frontier, PurgePlan};
use consensusdb_types::{FrontierMark, HybridClock, NodeId, Origin};

/// One member as this node knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberView {
    /// Its current origin, once known.
    pub(crate) origin: Option<Origin>,
    /// What it has durably applied.
    pub(crate) applied: Frontier,
    /// Every entry of its origin after `promise_seq` is stamped above `promise`.
    pub(crate) promise: u64,
    pub(crate) promise_seq: u64,
}

impl MemberView {
    /// Takes the maximum of every part.
    pub(crate) fn merge(&mut self, other: &MemberView) {
        if other.origin.is_some_and(|o| self.origin.is_none_or(|mine| o.incarnation > mine.incarnation)) {
            self.origin = other.origin;
        }
        merge_frontier(&mut self.applied, &other.applied);
        if other.promise > self.promise {
            self.promise = other.promise;
            self.promise_seq = other.promise_seq;
        }
    }
}

/// Raises each mark of `into` to the one in `from` where that is higher.
pub(crate) fn merge_frontier(into: &mut Frontier, from: &Frontier) {
    for (origin, mark) in from {
        let slot = into.entry(*origin).or_default();
        if mark.seq > slot.seq {
            *slot = *mark;
        }
    }
}

/// Everything known about the members, keyed by node.
pub(crate) type Members = HashMap<NodeId, MemberView>;

/// A member lagging past the retention cap on one origin: that origin's
/// log is purged without waiting for it (it must bootstrap when back).
pub(crate) type Lagging = Vec<(NodeId, Origin)>;

/// Per node, a log hold: the frontier a node resumes from by log once it
/// has installed a snapshot (see `PeerTable::log_holds`).
pub(crate) type LogHolds = HashMap<NodeId, Frontier>;

/// What the log must be kept for, per node: what each member applied,
/// raised to its log hold, and the holds of nodes not members yet. Only
/// the log purge reads these: a hold says nothing of what a node holds.
pub(crate) fn log_views(members: &Members, holds: &LogHolds) -> Members {
    let mut views = members.clone();
    for (node, hold) in holds {
        merge_frontier(&mut views.entry(*node).or_default().applied, hold);
    }
    views
}

/// The purge plan: tombstones and expired versions every member has the
/// stamps to settle, and, per origin, the log every node of `log_views`
/// (but the ones `lagging` on that origin) is past. `own` is this node: its
/// log is never purged of entries no other member holds, however far
/// behind the others are, or they would be lost.
pub(crate) fn plan(
    members: &Members,
    log_views: &Members,
    lagging: &[(NodeId, Origin)],
    own: NodeId,
) -> PurgePlan {
    if members.is_empty() {
        return PurgePlan::default();
    }
    let mut origins: Vec<Origin> = log_views.values().flat_map(|m| m.applied.keys().copied()).collect();
    origins.extend(members.values().filter_map(|m| m.origin));
    origins.sort_unstable();
    origins.dedup();
    let mut stable_hlc = u64::MAX;
    let mut log_upto = Vec::new();
    for origin in &origins {
        let settled = settled_through(members, origin);
        let mut held_elsewhere = 0;
        for (node, member) in members {
            let mark = member.applied.get(origin).copied().unwrap_or_default();
            stable_hlc = stable_hlc.min(covered_hlc(mark, settled));
            if *node != own {
                held_elsewhere = held_elsewhere.max(mark.seq);
            }
        }
        let lowest_seq = log_views
            .iter()
            .filter(|(node, _)| !lagging.contains(&(**node, *origin)))
            .map(|(_, view)| view.applied.get(origin).map_or(0, |mark| mark.seq))
            .min()
            .unwrap_or(u64::MAX);
        let lowest_seq = lowest_seq.min(held_elsewhere);
        if lowest_seq > 0 && lowest_seq != u64::MAX {
            log_upto.push((*origin, lowest_seq));
        }
    }
    PurgePlan { stable_hlc: if origins.is_empty() { 0 } else { stable_hlc }, log_upto }
}

/// How far `origin` is settled: `(seq, hlc)` such that every entry after
/// `seq` is stamped above `hlc`. A retired origin (its node has a newer
/// incarnation, or is no member) writes nothing more: it is settled at the
/// highest seq anyone applied, forever.
fn settled_through(members: &Members, origin: &Origin) -> (u64, u64) {
    let current = members.get(&origin.node).filter(|m| m.origin == Some(*origin));
    match current {
        Some(member) => (member.promise_seq, member.promise),
        None => {
            let last = members
                .values()
                .filter_map(|m| m.applied.get(origin))
                .map(|mark| mark.seq)
                .max()
                .unwrap_or(0);
            (last, u64::MAX)
        }
    }
}

/// The HLC up to which a member holding `mark` of an origin settled at
/// `(seq, hlc)` has every entry of it.
fn covered_hlc(mark: FrontierMark, (settled_seq, settled_hlc): (u64, u64)) -> u64 {
    if mark.seq >= settled_seq { mark.hlc.max(settled_hlc) } else { mark.hlc }
}

/// Whether a member is further behind on an origin than the retention
/// cap: the oldest entry it lacks, `wanted`, is stamped more than
/// `max_lag_ms` before the origin's newest entry here, `newest`, or is no
/// longer in this node's log at all (`first_held`, the first entry held
/// at or after `wanted`, is a later one or none), so this node can no
/// longer serve it by log. How long ago the member applied anything does
/// not matter: an origin that wrote its first entry ever, or its first
/// after a day of silence, lags no one who missed a few seconds of it.
pub(crate) fn lags_past(
    newest: FrontierMark,
    wanted: u64,
    first_held: Option<FrontierMark>,
    max_lag_ms: u64,
) -> bool {
    match first_held {
        Some(held) if held.seq == wanted => {
            (newest.hlc >> HybridClock::LOGICAL_BITS).saturating_sub(held.hlc >> HybridClock::LOGICAL_BITS)
                > max_lag_ms
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(node: u128) -> Origin {
        Origin { node: NodeId(node), incarnation: 1 }
    }

    fn mark(seq: u64, hlc: u64) -> FrontierMark {
        FrontierMark { seq, hlc }
    }

    fn member(node: u128, applied: &[(u128, u64, u64)], promise: (u64, u64)) -> (NodeId, MemberView) {
        (
            NodeId(node),
            MemberView {
                origin: Some(origin(node)),
                applied: applied.iter().map(|&(o, seq, hlc)| (origin(o), mark(seq, hlc))).collect(),
                promise_seq: promise.0,
                promise: promise.1,
            },
        )
    }

    #[test]
    fn stability_waits_for_the_slowest_member_of_every_origin() {
        // Node 1 wrote 10 entries up to HLC 100 and promised 150 at seq 10.
        // Node 2 has applied 1's entries up to seq 6 (HLC 60).
        let members: Members =
            [member(1, &[(1, 10, 100)], (10, 150)), member(2, &[(1, 6, 60)], (0, 200))].into_iter().collect();
        let plan = plan(&members, &members, &[], NodeId(9));
        assert_eq!(plan.stable_hlc, 60, "node 2 may still receive entries of node 1 stamped above 60");
        assert_eq!(plan.log_upto, vec![(origin(1), 6)]);
    }

    #[test]
    fn an_idle_origin_settles_at_its_promise() {
        // Both have all of node 1's entries; node 1 promised 150; node 2
        // wrote nothing and promised 300.
        let members: Members = [member(1, &[(1, 10, 100)], (10, 150)), member(2, &[(1, 10, 100)], (0, 300))]
            .into_iter()
            .collect();
        assert_eq!(plan(&members, &members, &[], NodeId(9)).stable_hlc, 150);
    }

    #[test]
    fn an_unknown_member_view_blocks_purging() {
        let mut members: Members = [member(1, &[(1, 10, 100)], (10, 150))].into_iter().collect();
        members.insert(NodeId(2), MemberView::default());
        let plan = plan(&members, &members, &[], NodeId(9));
        assert_eq!(plan.stable_hlc, 0);
        assert!(plan.log_upto.is_empty());
    }

    #[test]
    fn a_lagging_member_holds_back_tombstones_but_not_the_log_of_its_origin() {
        let members: Members = [
            member(1, &[(1, 10, 100), (3, 5, 50)], (10, 150)),
            member(2, &[(1, 2, 20), (3, 1, 10)], (0, 300)),
        ]
        .into_iter()
        .collect();
        let plan = plan(&members, &members, &[(NodeId(2), origin(1))], NodeId(9));
        assert_eq!(plan.stable_hlc, 10);
        assert_eq!(
            plan.log_upto,
            vec![(origin(1), 10), (origin(3), 1)],
            "origin 3's log still waits for node 2"
        );
    }

    #[test]
    fn lag_is_the_age_of_the_oldest_missing_entry() {
        let ms = |ms: u64| ms << 16;
        let newest = mark(10, ms(100_000));
        assert!(lags_past(newest, 3, Some(mark(3, ms(20_000))), 60_000), "missing 80 s of the origin");
        assert!(
            !lags_past(newest, 9, Some(mark(9, ms(99_000))), 60_000),
            "missing 1 s, however old its last entry"
        );
    }

    #[test]
    fn a_member_whose_next_entry_is_gone_from_the_log_lags() {
        let ms = |ms: u64| ms << 16;
        let newest = mark(10, ms(100_000));
        // Entry 3 was purged here: however young the first entry still
        // held, the member cannot catch up from this node by log.
        assert!(lags_past(newest, 3, Some(mark(8, ms(99_000))), 60_000));
        assert!(lags_past(newest, 3, None, 60_000));
    }

    #[test]
    fn a_first_entry_missed_during_a_blip_lags_no_one() {
        // Node 3 wrote its first entry ever while node 2 was cut off: node
        // 2 has never applied origin 3, yet it missed only that entry.
        let first_of_origin_3 = mark(1, 1_800_000_000_000 << 16);
        assert!(!lags_past(first_of_origin_3, 1, Some(first_of_origin_3), 24 * 3_600_000));
    }

    #[test]
    fn entries_only_this_node_holds_are_never_purged() {
        // Node 2 is far behind on node 1's origin, which only node 1 holds.
        let members: Members =
            [member(1, &[(1, 10, 100)], (10, 150)), member(2, &[], (0, 300))].into_iter().collect();
        assert!(plan(&members, &members, &[(NodeId(2), origin(1))], NodeId(1)).log_upto.is_empty());
    }

    #[test]
    fn a_retired_incarnation_is_settled_where_anyone_stopped() {
        let old = Origin { node: NodeId(1), incarnation: 1 };
        let mut members: Members = HashMap::new();
        members.insert(
            NodeId(1),
            MemberView {
                origin: Some(Origin { node: NodeId(1), incarnation: 2 }),
                applied: [(old, mark(5, 50))].into_iter().collect(),
                promise: 500,
                promise_seq: 0,
            },
        );
        members.insert(
            NodeId(2),
            MemberView {
                origin: Some(origin(2)),
                applied: [(old, mark(5, 50))].into_iter().collect(),
                promise: 400,
                promise_seq: 0,
            },
        );
        assert_eq!(
            plan(&members, &members, &[], NodeId(9)).stable_hlc,
            400,
            "the old origin writes nothing more"
        );
    }

    #[test]
    fn a_log_hold_keeps_the_log_but_settles_no_tombstone() {
        // Node 3 installs a snapshot at origin 1's seq 4 (HLC 40) and is no
        // member yet; the members have applied up to 10.
        let members: Members = [member(1, &[(1, 10, 100)], (10, 150)), member(2, &[(1, 10, 100)], (0, 300))]
            .into_iter()
            .collect();
        let holds: LogHolds =
            [(NodeId(3), [(origin(1), mark(4, 40))].into_iter().collect())].into_iter().collect();
        let plan = plan(&members, &log_views(&members, &holds), &[], NodeId(9));
        assert_eq!(plan.log_upto, vec![(origin(1), 4)], "node 3 resumes from seq 5 by log");
        assert_eq!(plan.stable_hlc, 150, "the hold counts for nothing else");
    }

    #[test]
    fn merging_views_takes_maxima() {
        let (_, mut a) = member(1, &[(1, 5, 50), (2, 1, 10)], (5, 60));
        let (_, b) = member(1, &[(1, 3, 30), (2, 4, 40)], (3, 40));
        a.merge(&b);
        assert_eq!(a.applied[&origin(1)], mark(5, 50));
        assert_eq!(a.applied[&origin(2)], mark(4, 40));
        assert_eq!((a.promise_seq, a.promise), (5, 60));
    }
}

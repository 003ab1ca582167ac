//! Comparing clocks with peers, so a node whose clock is far off stops
//! stamping client writes (docs/replication.md, after CockroachDB's max offset).
//!
//! One fast clock would make every later write elsewhere lose to its
//! stamps; one slow clock makes its own writes lose. Heartbeats carry the
//! sender's wall clock. For a heartbeat from peer P, `P's wall − own wall
//! at receipt` is a lower bound of how far P's clock is ahead (the transit
//! time only lowers it). P measures this node the same way and reports its
//! bound back, which gives an upper bound: the offset lies in
//! `[low, high]`, as in NTP. A queued heartbeat only widens the interval,
//! so delays never make a healthy clock look off.
//!
//! A peer is *definitely* off when even the nearest end of the interval is
//! beyond the maximum offset; an ambiguous interval counts as healthy (as
//! CockroachDB's `isHealthy` does, to never refuse writes spuriously). A
//! node refuses client writes while it is definitely off from more than
//! half of the peers it has fresh measurements of: with three or more
//! nodes that singles out the skewed one; with two, neither can tell whose
//! clock is wrong, so both refuse until it is fixed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use consensusdb_types::NodeId;

/// Most samples kept per peer: a window is about ten heartbeats.
const MAX_SAMPLES: usize = 64;

/// What is known of one peer's clock.
#[derive(Debug, Default)]
struct PeerClock {
    /// Lower bounds of (peer − own) in ms, newest last, with when each was
    /// taken.
    samples: VecDeque<(Instant, i64)>,
    /// The peer's latest lower bound of (own − peer), and when it came.
    reported: Option<(Instant, i64)>,
}

/// How far one peer's clock is ahead of this node's: within `[low, high]`
/// milliseconds (`high` unknown until the peer has reported its side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offset {
    pub(crate) low: i64,
    pub(crate) high: Option<i64>,
}

impl Offset {
    /// The middle of the interval, and half its width (`None` when open).
    pub(crate) fn estimate(self) -> (i64, Option<u64>) {
        match self.high {
            Some(high) => (low_mid(self.low, high), Some(high.abs_diff(self.low) / 2)),
            None => (self.low, None),
        }
    }

    /// Whether the offset is beyond `max_ms` whatever its true value in
    /// the interval: the peer surely ahead, or this node surely ahead.
    fn definitely_beyond(self, max_ms: i64) -> bool {
        self.low > max_ms || self.high.is_some_and(|high| high < -max_ms)
    }
}

/// The middle of `[low, high]`, without overflow whatever a peer sends.
fn low_mid(low: i64, high: i64) -> i64 {
    let middle = (i128::from(low) + i128::from(high)) / 2;
    i64::try_from(middle).unwrap_or(if middle < 0 { i64::MIN } else { i64::MAX })
}

/// The clocks of every peer this node hears heartbeats from.
#[derive(Debug)]
pub(crate) struct ClockOffsets {
    peers: HashMap<NodeId, PeerClock>,
    /// Measurements older than this are forgotten, so a fixed clock is
    /// believed within one window.
    window: Duration,
    /// The offset beyond which a clock is off; 0 turns the check off.
    max_offset_ms: u64,
}

/// The outcome of comparing clocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within bounds with most measured peers (or nothing to compare).
    Healthy,
    /// Off from most measured peers: client writes must be refused.
    Off(String),
}

impl ClockOffsets {
    pub(crate) fn new(window: Duration, max_offset_ms: u64) -> Self {
        Self { peers: HashMap::new(), window, max_offset_ms }
    }

    /// A heartbeat from `node`, sent at `their_wall_ms` by its clock and
    /// received at `own_wall_ms` by this node's, carrying `reported`: its
    /// bound of how far this node is ahead of it.
    pub(crate) fn heartbeat(
        &mut self,
        node: NodeId,
        their_wall_ms: u64,
        own_wall_ms: u64,
        reported: Option<i64>,
        now: Instant,
    ) {
        let window = self.window;
        let peer = self.peers.entry(node).or_default();
        if their_wall_ms > 0 {
            let difference = i128::from(their_wall_ms) - i128::from(own_wall_ms);
            let sample =
                i64::try_from(difference).unwrap_or(if difference < 0 { i64::MIN } else { i64::MAX });
            peer.samples.push_back((now, sample));
            // Heartbeats come once an interval; more is a peer misbehaving.
            if peer.samples.len() > MAX_SAMPLES {
                peer.samples.pop_front();
            }
        }
        if let Some(reported) = reported {
            peer.reported = Some((now, reported));
        }
        while peer.samples.front().is_some_and(|(at, _)| now.duration_since(*at) > window) {
            peer.samples.pop_front();
        }
    }

    /// This node's best recent lower bound of how far `node` is ahead of
    /// it: what the heartbeats this node sends `node` report.
    pub(crate) fn bound_of(&self, node: NodeId, now: Instant) -> Option<i64> {
        let peer = self.peers.get(&node)?;
        peer.samples.iter().filter(|(at, _)| now.duration_since(*at) <= self.window).map(|(_, s)| *s).max()
    }

    /// What is known of `node`'s clock now.
    pub(crate) fn offset(&self, node: NodeId, now: Instant) -> Option<Offset> {
        let low = self.bound_of(node, now)?;
        let high = self.peers[&node]
            .reported
            .filter(|(at, _)| now.duration_since(*at) <= self.window)
            .map(|(_, reported)| reported.saturating_neg())
            // Both bounds hold, so a crossed pair means clocks moved between
            // measurements: trust the interval only once it makes sense.
            .filter(|high| *high >= low);
        Some(Offset { low, high })
    }

    /// Forgets a node (removed from the cluster).
    pub(crate) fn forget(&mut self, node: NodeId) {
        self.peers.remove(&node);
    }

    /// Compares this node's clock with every peer measured recently.
    pub(crate) fn verdict(&self, now: Instant, name: impl Fn(NodeId) -> String) -> Verdict {
        if self.max_offset_ms == 0 {
            return Verdict::Healthy;
        }
        let max = i64::try_from(self.max_offset_ms).unwrap_or(i64::MAX);
        let measured: Vec<(NodeId, Offset)> =
            self.peers.keys().filter_map(|node| Some((*node, self.offset(*node, now)?))).collect();
        let off: Vec<String> = measured
            .iter()
            .filter(|(_, offset)| offset.definitely_beyond(max))
            .map(|(node, offset)| {
                let (ms, _) = offset.estimate();
                let side = if ms > 0 { "behind" } else { "ahead of" };
                format!("{} s {side} {}", ms.unsigned_abs() as f64 / 1000.0, name(*node))
            })
            .collect();
        if off.is_empty() || off.len() * 2 <= measured.len() {
            return Verdict::Healthy;
        }
        Verdict::Off(format!(
            "this node's clock is more than {} ms off from {} of the {} peers it compares with ({}); \
             it stamps no client writes until its clock agrees (check its time sync, e.g. NTP)",
            self.max_offset_ms,
            off.len(),
            measured.len(),
            off.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const NOW_MS: u64 = 1_800_000_000_000;

    fn offsets() -> ClockOffsets {
        ClockOffsets::new(Duration::from_secs(10), 500)
    }

    /// Both directions measured with `transit` ms each way: peer `node`
    /// runs `skew` ms ahead of this node.
    fn both_ways(offsets: &mut ClockOffsets, node: u128, skew: i64, transit: u64, now: Instant) {
        let their_send = NOW_MS.saturating_add_signed(skew);
        // Its heartbeat arrives `transit` later by this node's clock; ours
        // arrives `transit` later by its clock, so it measures -skew - transit.
        let reported = -skew - i64::try_from(transit).unwrap();
        offsets.heartbeat(NodeId(node), their_send, NOW_MS + transit, Some(reported), now);
    }

    fn name(node: NodeId) -> String {
        format!("node {}", node.0)
    }

    #[test]
    fn one_fast_clock_among_three_is_singled_out() {
        let now = Instant::now();
        // This node is healthy; node 3 is an hour fast.
        let mut healthy = offsets();
        both_ways(&mut healthy, 2, 3, 1, now);
        both_ways(&mut healthy, 3, HOUR, 1, now);
        assert_eq!(healthy.verdict(now, name), Verdict::Healthy, "one peer of two off is not a majority");
        // From the fast node's side, both peers are an hour behind.
        let mut fast = offsets();
        both_ways(&mut fast, 1, -HOUR, 1, now);
        both_ways(&mut fast, 2, -HOUR + 3, 1, now);
        let Verdict::Off(reason) = fast.verdict(now, name) else { panic!("the fast node must refuse") };
        assert!(reason.contains("2 of the 2 peers") && reason.contains("3600"), "{reason}");
        assert!(reason.contains("ahead of node 1"), "{reason}");
    }

    #[test]
    fn a_late_heartbeat_never_makes_a_healthy_clock_look_off() {
        let now = Instant::now();
        let mut offsets = offsets();
        // Clocks agree, but heartbeats sat 5 s in a queue each way: the
        // interval is wide and ambiguous, so it counts as healthy.
        both_ways(&mut offsets, 2, 0, 5_000, now);
        let offset = offsets.offset(NodeId(2), now).unwrap();
        assert_eq!(offset, Offset { low: -5_000, high: Some(5_000) });
        assert!(!offset.definitely_beyond(500));
        assert_eq!(offsets.verdict(now, name), Verdict::Healthy);
    }

    #[test]
    fn one_way_measurements_prove_only_a_peer_ahead() {
        let now = Instant::now();
        let mut offsets = offsets();
        // Only node 2's heartbeats arrive; it seems an hour behind, but
        // transit time could explain any part of that.
        offsets.heartbeat(NodeId(2), NOW_MS - 3_600_000, NOW_MS, None, now);
        assert_eq!(offsets.offset(NodeId(2), now), Some(Offset { low: -HOUR, high: None }));
        assert_eq!(offsets.verdict(now, name), Verdict::Healthy);
        // A peer whose heartbeats show it an hour ahead is surely ahead.
        offsets.heartbeat(NodeId(2), NOW_MS + 3_600_000, NOW_MS, None, now);
        assert!(matches!(offsets.verdict(now, name), Verdict::Off(_)));
    }

    #[test]
    fn two_nodes_cannot_tell_whose_clock_is_wrong_so_both_refuse() {
        let now = Instant::now();
        let mut a = offsets();
        both_ways(&mut a, 2, HOUR, 1, now);
        let mut b = offsets();
        both_ways(&mut b, 1, -HOUR, 1, now);
        assert!(matches!(a.verdict(now, name), Verdict::Off(_)));
        assert!(matches!(b.verdict(now, name), Verdict::Off(_)));
    }

    #[test]
    fn a_fixed_clock_is_believed_once_old_measurements_age_out() {
        let start = Instant::now();
        let mut offsets = offsets();
        both_ways(&mut offsets, 2, HOUR, 1, start);
        assert!(matches!(offsets.verdict(start, name), Verdict::Off(_)));
        let later = start + Duration::from_secs(11);
        both_ways(&mut offsets, 2, 10, 1, later);
        assert_eq!(offsets.verdict(later, name), Verdict::Healthy);
        assert_eq!(offsets.offset(NodeId(2), later).unwrap().estimate().0, 10);
    }

    #[test]
    fn extreme_values_from_a_peer_neither_overflow_nor_panic() {
        let now = Instant::now();
        let mut offsets = offsets();
        offsets.heartbeat(NodeId(2), u64::MAX, 1, Some(i64::MIN), now);
        let (estimate, _) = offsets.offset(NodeId(2), now).expect("measured").estimate();
        assert!(estimate > 0);
        for _ in 0..1_000 {
            offsets.heartbeat(NodeId(2), NOW_MS, NOW_MS, None, now);
        }
        assert!(offsets.peers[&NodeId(2)].samples.len() <= MAX_SAMPLES);
    }

    #[test]
    fn a_zero_maximum_turns_the_check_off() {
        let now = Instant::now();
        let mut offsets = ClockOffsets::new(Duration::from_secs(10), 0);
        both_ways(&mut offsets, 2, HOUR, 1, now);
        assert_eq!(offsets.verdict(now, name), Verdict::Healthy);
    }
}

//! Which source each origin is pulled from.
//!
//! In a full mesh every node holds every origin, so pulling all of them from
//! every peer would ship each entry N−1 times. Each origin is pulled from
//! one preferred source: the origin's own node when it is connected,
//! otherwise the connected source with the lowest node id that advertises
//! the origin. Every other source is told to exclude it. A connected
//! source's own origin is known from its handshake, before it writes
//! anything, so even its first entry comes once. An origin no connected
//! source advertises yet is excluded nowhere, so nothing new ever waits for
//! an assignment; the writer drops the duplicates that can bring.

use std::collections::{BTreeMap, BTreeSet};

use consensusdb_storage::Frontier;
use consensusdb_types::{NodeId, Origin};

/// A connected source, as the assignment of origins sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    /// The source's own origin (its node id and current incarnation).
    pub(crate) origin: Origin,
    /// The frontier it advertised last.
    pub(crate) advertised: &'a Frontier,
}

/// Per origin, the sources that answered `OUT_OF_RANGE` for it: they are
/// passed over, so the others are asked before a bootstrap.
pub(crate) type Purged = BTreeMap<Origin, BTreeSet<NodeId>>;

/// The origins the stream from `source` must not send. `own` (this node's
/// origin) is left out: sources never send a puller its own origin.
pub(crate) fn excluded_for(
    source: NodeId,
    sources: &[Source<'_>],
    own: Origin,
    purged: &Purged,
) -> Vec<Origin> {
    let origins: BTreeSet<Origin> =
        sources.iter().flat_map(|s| s.advertised.keys().copied().chain(std::iter::once(s.origin))).collect();
    origins
        .into_iter()
        .filter(|origin| *origin != own)
        .filter(|origin| preferred(origin, sources, purged).is_some_and(|chosen| chosen != source))
        .collect()
}

/// The node `origin` is pulled from.
fn preferred(origin: &Origin, sources: &[Source<'_>], purged: &Purged) -> Option<NodeId> {
    let gone = purged.get(origin);
    let usable = |s: &&Source<'_>| gone.is_none_or(|nodes| !nodes.contains(&s.origin.node));
    if sources.iter().filter(usable).any(|s| s.origin.node == origin.node) {
        return Some(origin.node);
    }
    sources.iter().filter(usable).filter(|s| s.advertised.contains_key(origin)).map(|s| s.origin.node).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_types::FrontierMark;

    fn origin(node: u128) -> Origin {
        Origin { node: NodeId(node), incarnation: 1 }
    }

    fn frontier(nodes: &[u128]) -> Frontier {
        nodes.iter().map(|&n| (origin(n), FrontierMark { seq: 5, hlc: 5 })).collect()
    }

    fn source(node: u128, advertised: &Frontier) -> Source<'_> {
        Source { origin: origin(node), advertised }
    }

    #[test]
    fn each_origin_comes_from_its_own_node_when_connected() {
        // This node is 9; sources 1, 2 and 3 each hold all three origins.
        let all = frontier(&[1, 2, 3]);
        let sources = [source(1, &all), source(2, &all), source(3, &all)];
        assert_eq!(excluded_for(NodeId(1), &sources, origin(9), &Purged::new()), vec![origin(2), origin(3)]);
        assert_eq!(excluded_for(NodeId(2), &sources, origin(9), &Purged::new()), vec![origin(1), origin(3)]);
    }

    #[test]
    fn a_connected_source_s_origin_is_assigned_before_it_writes() {
        let empty = Frontier::new();
        let sources = [source(1, &empty), source(2, &empty)];
        assert_eq!(excluded_for(NodeId(1), &sources, origin(9), &Purged::new()), vec![origin(2)]);
        assert_eq!(excluded_for(NodeId(2), &sources, origin(9), &Purged::new()), vec![origin(1)]);
    }

    #[test]
    fn an_unreachable_origin_comes_from_one_forwarder() {
        // Origin 3 is not connected (a chain, or a partition): 1 and 2 both
        // hold it, and only the lower id forwards it.
        let all = frontier(&[1, 2, 3]);
        let sources = [source(1, &all), source(2, &all)];
        assert_eq!(excluded_for(NodeId(1), &sources, origin(9), &Purged::new()), vec![origin(2)]);
        assert_eq!(excluded_for(NodeId(2), &sources, origin(9), &Purged::new()), vec![origin(1), origin(3)]);
    }

    #[test]
    fn a_source_that_purged_an_origin_is_passed_over() {
        let all = frontier(&[1, 2, 3]);
        let sources = [source(1, &all), source(2, &all)];
        let purged: Purged = [(origin(1), [NodeId(1)].into_iter().collect())].into_iter().collect();
        // Origin 1 now comes from node 2, though node 1 is its own node.
        assert_eq!(excluded_for(NodeId(2), &sources, origin(9), &purged), vec![origin(3)]);
        assert_eq!(excluded_for(NodeId(1), &sources, origin(9), &purged), vec![origin(1), origin(2)]);
    }

    #[test]
    fn the_own_origin_is_left_out() {
        let (f1, f2) = (frontier(&[1, 9]), frontier(&[2, 9]));
        let sources = [source(1, &f1), source(2, &f2)];
        assert_eq!(excluded_for(NodeId(2), &sources, origin(9), &Purged::new()), vec![origin(1)]);
        assert_eq!(excluded_for(NodeId(1), &sources, origin(9), &Purged::new()), vec![origin(2)]);
    }
}

//! The conflict rule: for any key, the version with the greatest stamp wins,
//! and a tombstone is an ordinary version.
//!
//! Laws (tested below): the merge that keeps the winner is commutative,
//! associative and idempotent, so every node that has seen the same set of
//! versions keeps the same one, whatever order they arrived in. Local writes
//! and replicated entries both go through [`incoming_wins`].

use crate::Stamp;

/// Whether a version stamped `incoming` replaces the stored version stamped
/// `existing` (`None` when the key has no stored version). Equal stamps mean
/// the same mutation delivered twice; it does not replace itself.
pub fn incoming_wins(existing: Option<&Stamp>, incoming: &Stamp) -> bool {
    existing.is_none_or(|existing| incoming > existing)
}

/// The winner of two versions: the merge every replica applies.
pub fn merge<'a, T>(a: (&'a Stamp, &'a T), b: (&'a Stamp, &'a T)) -> (&'a Stamp, &'a T) {
    if incoming_wins(Some(a.0), b.0) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Origin};
    use proptest::prelude::*;

    fn stamp() -> impl Strategy<Value = Stamp> {
        (0u64..8, 0u128..3, 0u32..2).prop_map(|(hlc, node, incarnation)| Stamp {
            hlc,
            origin: Origin { node: NodeId(node), incarnation },
        })
    }

    /// Applies versions one by one, as a replica receiving them would.
    fn apply_all(versions: &[(Stamp, u8)]) -> Option<(Stamp, u8)> {
        let mut state: Option<(Stamp, u8)> = None;
        for (stamp, value) in versions {
            if incoming_wins(state.as_ref().map(|s| &s.0), stamp) {
                state = Some((*stamp, *value));
            }
        }
        state
    }

    proptest! {
        #[test]
        fn any_arrival_order_gives_the_same_state(
            versions in proptest::collection::vec((stamp(), any::<u8>()), 1..12)
                .prop_map(|mut v| { v.sort_by_key(|x| x.0); v.dedup_by_key(|x| x.0); v }),
            seed in any::<u64>(),
        ) {
            let mut shuffled = versions.clone();
            let mut rng = seed;
            for i in (1..shuffled.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let expected = versions.iter().max_by_key(|v| v.0).copied();
            prop_assert_eq!(apply_all(&versions), expected);
            prop_assert_eq!(apply_all(&shuffled), expected);
        }

        #[test]
        fn merge_laws(a in stamp(), b in stamp(), c in stamp()) {
            let (va, vb, vc) = (1u8, 2u8, 3u8);
            // Commutative (up to equal stamps, which are the same mutation).
            prop_assert_eq!(merge((&a, &va), (&b, &vb)).0, merge((&b, &vb), (&a, &va)).0);
            // Associative.
            let left = merge(merge((&a, &va), (&b, &vb)), (&c, &vc));
            let right = merge((&a, &va), merge((&b, &vb), (&c, &vc)));
            prop_assert_eq!(left.0, right.0);
            // Idempotent.
            prop_assert_eq!(merge((&a, &va), (&a, &va)).1, &va);
        }
    }

    #[test]
    fn duplicate_delivery_does_not_replace() {
        let s = Stamp { hlc: 5, origin: Origin { node: NodeId(1), incarnation: 1 } };
        assert!(!incoming_wins(Some(&s), &s));
        assert!(incoming_wins(None, &s));
    }
}

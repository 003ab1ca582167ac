//! Origins, stamps and the hybrid logical clock that issues them.
//!
//! Every mutation is stamped `(hlc, origin)`, where the origin is
//! `(node id, incarnation)`. Stamps are totally ordered, first by HLC then by
//! origin, and that order alone decides conflicts (see [`crate::conflict`]).

use std::fmt;

use crate::wire::{DecodeError, Reader};

/// A node's random 128-bit id, created at first start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u128);

impl NodeId {
    /// Encoded length: the id as 16 big-endian bytes, everywhere it is
    /// stored or sent (stamps, the data directory, both protocols).
    pub const ENCODED_LEN: usize = 16;

    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The id's 16 bytes, big-endian.
    pub fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        self.0.to_be_bytes()
    }

    /// The id from its 16 bytes; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; Self::ENCODED_LEN]>::try_from(bytes).ok().map(|bytes| Self(u128::from_be_bytes(bytes)))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// One life of a node's data: the node id plus an incarnation that changes
/// whenever the data directory is new or restored from an older copy. The
/// frontier is keyed by origin, so a wiped node's new writes (seq 1, 2, ...)
/// are never mistaken for ones already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// The node.
    pub node: NodeId,
    /// Which life of its data directory.
    pub incarnation: u32,
}

impl Origin {
    /// Encoded length: 16 bytes of node id and 4 of incarnation.
    pub const ENCODED_LEN: usize = 20;

    /// Big-endian bytes, which sort like the origin.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..NodeId::ENCODED_LEN].copy_from_slice(&self.node.to_bytes());
        out[16..].copy_from_slice(&self.incarnation.to_be_bytes());
        out
    }

    /// Decodes [`Origin::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes, "origin");
        let origin = Self::read(&mut reader)?;
        reader.finish()?;
        Ok(origin)
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self { node: NodeId(reader.u128()?), incarnation: reader.u32()? })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.incarnation)
    }
}

/// The version stamp of one mutation. Ordered by `hlc`, then `origin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Hybrid logical clock: milliseconds in the high 48 bits, a counter in
    /// the low 16.
    pub hlc: u64,
    /// Where the mutation was accepted.
    pub origin: Origin,
}

impl Stamp {
    /// The wall-clock milliseconds of the HLC (the write time).
    pub fn physical_ms(&self) -> u64 {
        self.hlc >> HybridClock::LOGICAL_BITS
    }
}

/// A hybrid logical clock (Kulkarni et al.): it follows the wall clock but
/// never goes backwards and never issues the same value twice.
///
/// It takes the wall-clock time as an argument, so it has no I/O and tests
/// can drive it.
#[derive(Debug, Clone, Default)]
pub struct HybridClock {
    last: u64,
}

impl HybridClock {
    /// Bits of the logical counter.
    pub const LOGICAL_BITS: u32 = 16;

    /// A clock that will issue values strictly above `floor` (for example the
    /// highest HLC this node has already stamped, read back at start).
    pub fn starting_after(floor: u64) -> Self {
        Self { last: floor }
    }

    /// The next stamp value, given the current wall-clock milliseconds.
    pub fn tick(&mut self, now_ms: u64) -> u64 {
        self.last = self.peek(now_ms);
        self.last
    }

    /// The value [`HybridClock::tick`] would issue now, without issuing it.
    pub fn peek(&self, now_ms: u64) -> u64 {
        (now_ms << Self::LOGICAL_BITS).max(self.last.saturating_add(1))
    }

    /// Moves the clock up to a stamp seen from elsewhere, but not more than
    /// `max_drift_ms` ahead of the wall clock. Returns `false` if the bound
    /// clipped it (the caller counts that).
    pub fn observe(&mut self, seen: u64, now_ms: u64, max_drift_ms: u64) -> bool {
        let ceiling = now_ms.saturating_add(max_drift_ms) << Self::LOGICAL_BITS;
        self.last = self.last.max(seen.min(ceiling));
        seen <= ceiling
    }

    /// Raises the clock to `floor` without a drift bound: for a value this
    /// node promised itself never to stamp at or below.
    pub fn raise_to(&mut self, floor: u64) {
        self.last = self.last.max(floor);
    }

    /// The last value issued or observed.
    pub fn last(&self) -> u64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_strictly_monotonic_even_when_wall_clock_steps_back() {
        let mut clock = HybridClock::default();
        let a = clock.tick(1000);
        let b = clock.tick(1000);
        let c = clock.tick(900);
        assert!(a < b && b < c);
        assert_eq!(a >> HybridClock::LOGICAL_BITS, 1000);
    }

    #[test]
    fn restart_floor_is_respected() {
        let floor = 5000 << HybridClock::LOGICAL_BITS;
        let mut clock = HybridClock::starting_after(floor);
        assert!(clock.tick(10) > floor);
    }

    #[test]
    fn observe_is_bounded_by_drift() {
        let mut clock = HybridClock::default();
        assert!(clock.observe(1500 << 16, 1000, 1000));
        assert!(!clock.observe(9000 << 16, 1000, 1000));
        assert_eq!(clock.last(), 2000 << 16);
        assert!(clock.tick(1000) > 2000 << 16);
    }

    #[test]
    fn origin_bytes_round_trip_and_sort() {
        let a = Origin { node: NodeId(1), incarnation: 7 };
        let b = Origin { node: NodeId(2), incarnation: 1 };
        assert_eq!(Origin::from_bytes(&a.to_bytes()).unwrap(), a);
        assert!(a.to_bytes() < b.to_bytes());
        assert!(Origin::from_bytes(&[0; 19]).is_err());
    }

    #[test]
    fn node_ids_are_sixteen_big_endian_bytes_and_nothing_else() {
        let node = NodeId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        assert_eq!(node.to_bytes(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        assert_eq!(NodeId::from_bytes(&node.to_bytes()), Some(node));
        assert_eq!(NodeId::from_bytes(&[0; 15]), None);
        assert_eq!(NodeId::from_bytes(&[0; 17]), None);
        assert_eq!(NodeId::from_bytes(&[]), None);
        let origin = Origin { node, incarnation: 3 };
        assert_eq!(origin.to_bytes()[..NodeId::ENCODED_LEN], node.to_bytes(), "stamps use the same bytes");
    }
}

//! The convergence digest: a 256-bit additive hash over the versions a node
//! keeps.
//!
//! Each kept version contributes `SHA-256(key, stamp, tombstone)`, read as a
//! 256-bit number, and a digest is their sum mod 2^256. Replacing a version
//! subtracts the old contribution and adds the new one, so the digest is
//! kept up to date in the same `WriteBatch` as the record and never drifts.
//! Addition commutes, so two nodes holding the same versions have the same
//! digest whatever order the versions arrived in. XOR would not do: two
//! equal contributions would cancel.
//!
//! Bytes: 32, big-endian, so the encoding of a digest is its hex form.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::Stamp;

/// A 256-bit additive hash. Four 64-bit limbs, least significant first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Digest([u64; 4]);

impl Digest {
    /// Encoded length.
    pub const LEN: usize = 32;

    /// The contribution of one kept version.
    pub fn of_version(key: &[u8], stamp: &Stamp, tombstone: bool) -> Self {
        let mut hasher = Sha256::new();
        // The key is length-prefixed so `(key, stamp)` pairs cannot collide
        // by shifting bytes between the two.
        hasher.update((key.len() as u64).to_be_bytes());
        hasher.update(key);
        hasher.update(stamp.hlc.to_be_bytes());
        hasher.update(stamp.origin.to_bytes());
        hasher.update([u8::from(tombstone)]);
        Self::from_bytes(&hasher.finalize().into())
    }

    /// `self + other` mod 2^256.
    #[must_use]
    pub fn wrapping_add(self, other: Self) -> Self {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, slot) in out.iter_mut().enumerate() {
            let (sum, c1) = self.0[i].overflowing_add(other.0[i]);
            let (sum, c2) = sum.overflowing_add(u64::from(carry));
            *slot = sum;
            carry = c1 || c2;
        }
        Self(out)
    }

    /// `self - other` mod 2^256.
    #[must_use]
    pub fn wrapping_sub(self, other: Self) -> Self {
        self.wrapping_add(other.negate())
    }

    /// The additive inverse: `x.wrapping_add(x.negate())` is zero.
    #[must_use]
    pub fn negate(self) -> Self {
        Self(self.0.map(|limb| !limb)).wrapping_add(Self([1, 0, 0, 0]))
    }

    /// Whether this is the digest of nothing.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// Big-endian bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        for (i, limb) in self.0.iter().enumerate() {
            out[(3 - i) * 8..(4 - i) * 8].copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    /// Reads [`Digest::to_bytes`].
    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> Self {
        let mut limbs = [0u64; 4];
        for (i, limb) in limbs.iter_mut().enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[(3 - i) * 8..(4 - i) * 8]);
            *limb = u64::from_be_bytes(word);
        }
        Self(limbs)
    }

    /// Reads a stored or received digest; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <&[u8; Self::LEN]>::try_from(bytes).ok().map(Self::from_bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_bytes().iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeId, Origin};
    use proptest::prelude::*;

    fn digest() -> impl Strategy<Value = Digest> {
        any::<[u64; 4]>().prop_map(Digest)
    }

    proptest! {
        #[test]
        fn addition_is_a_group(a in digest(), b in digest(), c in digest()) {
            prop_assert_eq!(a.wrapping_add(b), b.wrapping_add(a));
            prop_assert_eq!(a.wrapping_add(b).wrapping_add(c), a.wrapping_add(b.wrapping_add(c)));
            prop_assert_eq!(a.wrapping_add(b).wrapping_sub(b), a);
            prop_assert!(a.wrapping_sub(a).is_zero());
            prop_assert_eq!(Digest::from_bytes(&a.to_bytes()), a);
        }
    }

    #[test]
    fn carries_cross_limbs_and_wrap() {
        let max = Digest([u64::MAX; 4]);
        assert!(max.wrapping_add(Digest([1, 0, 0, 0])).is_zero());
        assert_eq!(Digest([u64::MAX, 0, 0, 0]).wrapping_add(Digest([1, 0, 0, 0])), Digest([0, 1, 0, 0]));
        assert_eq!(Digest::default().wrapping_sub(Digest([1, 0, 0, 0])), max);
    }

    #[test]
    fn equal_contributions_do_not_cancel() {
        let stamp = Stamp { hlc: 1, origin: Origin { node: NodeId(1), incarnation: 1 } };
        let v = Digest::of_version(b"k", &stamp, false);
        assert!(!v.wrapping_add(v).is_zero());
        assert_ne!(v, Digest::of_version(b"k", &stamp, true));
        assert_eq!(v.to_string().len(), 64);
    }
}

//! The head of a record: everything about a version except its value.
//!
//! Heads live in the `records` column family; values live apart in
//! `values` (see [`crate::stored_value`]), so head-only reads and scans never
//! load a value, and compaction can drop an expired value while the head
//! stays behind as the stub that conflict resolution still needs.
//!
//! Format 1, big-endian:
//!
//! ```text
//! format:u8 flags:u8 hlc:u64 origin:[u8;20] seq:u64 expires_at_ms:u64
//! stored_size:u32 key_id:u32 [nonce:[u8;12] if sealed]
//! [resealed_by:[u8;20] resealed_hlc:u64 if resealed]
//! [client_key:[u8;8] if client-encrypted]
//! flags: bit 0 tombstone, bits 1-2 codec, bit 3 sealed, bit 4 has expiry,
//!        bit 5 client-encrypted, bit 6 resealed (only with bit 3)
//! ```
//!
//! Bits 5 and 6 came after the first release of format 1. A head without
//! them encodes exactly as before, and a reader that predates them refuses
//! the flag as unknown rather than misread the bytes after it.

use crate::wire::{DecodeError, Reader};
use crate::{Compression, KeyFingerprint, Origin, Stamp};

/// The current head format byte.
pub const HEAD_FORMAT: u8 = 1;

const TOMBSTONE: u8 = 1 << 0;
const CODEC_SHIFT: u8 = 1;
const CODEC_MASK: u8 = 0b11 << CODEC_SHIFT;
const SEALED: u8 = 1 << 3;
const HAS_EXPIRY: u8 = 1 << 4;
const CLIENT_ENCRYPTED: u8 = 1 << 5;
const RESEALED: u8 = 1 << 6;
const KNOWN_FLAGS: u8 = TOMBSTONE | CODEC_MASK | SEALED | HAS_EXPIRY | CLIENT_ENCRYPTED | RESEALED;

/// Bytes sealing adds to a value (the AES-GCM tag): a sealed value's
/// stored bytes are its ciphertext and this tag.
pub const SEAL_TAG_BYTES: usize = 16;

/// How a sealed (encrypted at rest) value was sealed: which of its
/// tenant's data keys (of the origin in the stamp, or of the origin that
/// sealed it again) and the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// Which data key sealed the value, among those its key's origin made
    /// for the tenant.
    pub key_id: u32,
    /// The AES-GCM nonce.
    pub nonce: [u8; 12],
    /// Set when a re-encryption sealed the value again after its write.
    pub resealed: Option<Resealed>,
}

/// A re-encryption of a version: the same stamp, seq and value, sealed
/// again under a newer key by the origin `by`, in its log entry at `hlc`.
/// The key and nonce are then `by`'s: its key, its entry's seq and index.
///
/// Ordered by `hlc`, then `by`: of two seals of one version, every node
/// keeps the greater (see [`Seal::supersedes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resealed {
    /// The HLC of the re-encryption's log entry.
    pub hlc: u64,
    /// The origin that sealed the value again, under a key of its own.
    pub by: Origin,
}

impl Seal {
    /// The seal of the value at `index` in the origin's log entry `seq`:
    /// its nonce is the seq then the index, big-endian, which never
    /// repeats under one origin's key (the reasoning is in
    /// `consensusdb-seal`). The log therefore stores only the key id.
    pub fn at(key_id: u32, seq: u64, index: u32) -> Self {
        Self { key_id, nonce: Self::nonce_at(seq, index), resealed: None }
    }

    /// The origin whose data key this is: the one that sealed the value
    /// last, the stamp's own origin unless a re-encryption sealed it again.
    pub fn key_origin(&self, stamp: &Stamp) -> Origin {
        self.resealed.map_or(stamp.origin, |resealed| resealed.by)
    }

    /// Whether this seal replaces `other` on the same version: a
    /// re-encryption replaces the first seal (or a value stored in the
    /// clear, `None`) and any earlier re-encryption. Every node keeps the
    /// same one, whatever order they come in.
    pub fn supersedes(&self, other: Option<&Seal>) -> bool {
        self.resealed.is_some() && self.resealed > other.and_then(|seal| seal.resealed)
    }

    /// The nonce of the value at `index` in the log entry `seq`.
    pub fn nonce_at(seq: u64, index: u32) -> [u8; 12] {
        let mut nonce = [0; 12];
        nonce[..8].copy_from_slice(&seq.to_be_bytes());
        nonce[8..].copy_from_slice(&index.to_be_bytes());
        nonce
    }
}

/// The metadata of one version of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Who wins a conflict.
    pub stamp: Stamp,
    /// The dense sequence number within the stamp's origin.
    pub seq: u64,
    /// Absolute expiry, Unix milliseconds; `None` never expires.
    pub expires_at_ms: Option<u64>,
    /// Bytes of the value as the client stored it (after compression,
    /// before sealing: the seal's tag is not counted).
    pub stored_size: u32,
    /// The codec of the stored value.
    pub compression: Compression,
    /// This version removes the key.
    pub tombstone: bool,
    /// Encryption at rest, if the value is sealed.
    pub seal: Option<Seal>,
    /// The client-side key the client encrypted the value with, if it did:
    /// then the value is ciphertext to the node as well.
    pub client_key: Option<KeyFingerprint>,
}

impl Head {
    /// Whether reads must hide this version at `now_ms`.
    pub fn is_hidden(&self, now_ms: u64) -> bool {
        self.tombstone || self.is_expired(now_ms)
    }

    /// Whether the version has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// The HLC below which this version may be purged once it is causally
    /// stable: a tombstone at its stamp; a version with an expiry at the
    /// later of its stamp and its expiry (as an HLC, so purging also waits
    /// for the expiry); `None` for a live version that never expires.
    pub fn purgeable_at(&self) -> Option<u64> {
        if self.tombstone {
            return Some(self.stamp.hlc);
        }
        // Saturating: an expiry millennia away must not wrap to a small HLC.
        self.expires_at_ms
            .map(|at| self.stamp.hlc.max(at.saturating_mul(1 << crate::HybridClock::LOGICAL_BITS)))
    }

    /// Encodes in the current format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(66);
        self.encode_into(&mut out);
        out
    }

    /// [`Head::encode`] into `out`, replacing what it held, so a writer
    /// staging many heads reuses one buffer.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        let mut flags = self.compression.code() << CODEC_SHIFT;
        if self.tombstone {
            flags |= TOMBSTONE;
        }
        if self.seal.is_some() {
            flags |= SEALED;
        }
        if self.expires_at_ms.is_some() {
            flags |= HAS_EXPIRY;
        }
        if self.client_key.is_some() {
            flags |= CLIENT_ENCRYPTED;
        }
        if self.seal.is_some_and(|seal| seal.resealed.is_some()) {
            flags |= RESEALED;
        }
        out.push(HEAD_FORMAT);
        out.push(flags);
        out.extend_from_slice(&self.stamp.hlc.to_be_bytes());
        out.extend_from_slice(&self.stamp.origin.to_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.expires_at_ms.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.stored_size.to_be_bytes());
        out.extend_from_slice(&self.seal.map_or(0, |s| s.key_id).to_be_bytes());
        if let Some(seal) = &self.seal {
            out.extend_from_slice(&seal.nonce);
            if let Some(resealed) = &seal.resealed {
                out.extend_from_slice(&resealed.by.to_bytes());
                out.extend_from_slice(&resealed.hlc.to_be_bytes());
            }
        }
        if let Some(client_key) = &self.client_key {
            out.extend_from_slice(&client_key.0);
        }
    }

    /// Decodes any supported format.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes, "head");
        let format = reader.u8()?;
        if format != HEAD_FORMAT {
            return Err(reader.error(format!("unknown head format {format}")));
        }
        let flags = reader.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(reader.error(format!("unknown flags {flags:#04x}")));
        }
        let compression = Compression::from_code((flags & CODEC_MASK) >> CODEC_SHIFT)
            .ok_or_else(|| reader.error("unknown codec"))?;
        let hlc = reader.u64()?;
        let origin = Origin::read(&mut reader)?;
        let seq = reader.u64()?;
        let expires_at_ms = reader.u64()?;
        let stored_size = reader.u32()?;
        let key_id = reader.u32()?;
        if flags & RESEALED != 0 && flags & SEALED == 0 {
            return Err(reader.error("resealed but not sealed"));
        }
        let seal = if flags & SEALED != 0 {
            let nonce = reader.array()?;
            let resealed = if flags & RESEALED != 0 {
                let by = Origin::read(&mut reader)?;
                Some(Resealed { by, hlc: reader.u64()? })
            } else {
                None
            };
            Some(Seal { key_id, nonce, resealed })
        } else {
            None
        };
        let client_key =
            if flags & CLIENT_ENCRYPTED != 0 { Some(KeyFingerprint(reader.array()?)) } else { None };
        reader.finish()?;
        Ok(Head {
            stamp: Stamp { hlc, origin },
            seq,
            expires_at_ms: (flags & HAS_EXPIRY != 0).then_some(expires_at_ms),
            stored_size,
            compression,
            tombstone: flags & TOMBSTONE != 0,
            seal,
            client_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(hlc in any::<u64>(), node in any::<u128>(), inc in any::<u32>(), seq in any::<u64>(),
                       expiry in proptest::option::of(any::<u64>()), size in any::<u32>(), codec in 0u8..3,
                       tombstone in any::<bool>(),
                       seal in proptest::option::of((any::<u32>(), any::<[u8; 12]>(),
                           proptest::option::of((any::<u64>(), any::<u128>(), any::<u32>())))),
                       client_key in proptest::option::of(any::<[u8; 8]>())) {
            let head = Head {
                stamp: Stamp { hlc, origin: Origin { node: NodeId(node), incarnation: inc } },
                seq,
                expires_at_ms: expiry,
                stored_size: size,
                compression: Compression::from_code(codec).expect("valid"),
                tombstone,
                seal: seal.map(|(key_id, nonce, resealed)| Seal {
                    key_id,
                    nonce,
                    resealed: resealed.map(|(hlc, node, incarnation)| Resealed {
                        hlc,
                        by: Origin { node: NodeId(node), incarnation },
                    }),
                }),
                client_key: client_key.map(KeyFingerprint),
            };
            prop_assert_eq!(Head::decode(&head.encode()).expect("decodes"), head);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Head::decode(&bytes);
        }
    }

    #[test]
    fn a_far_expiry_never_wraps_to_an_early_purge() {
        let origin = Origin { node: crate::NodeId(1), incarnation: 1 };
        let head = Head {
            stamp: Stamp { hlc: 5, origin },
            seq: 1,
            expires_at_ms: Some(u64::MAX / 2),
            stored_size: 0,
            compression: Compression::None,
            tombstone: false,
            seal: None,
            client_key: None,
        };
        assert_eq!(head.purgeable_at(), Some(u64::MAX));
        assert_eq!(Head { expires_at_ms: None, ..head }.purgeable_at(), None);
        assert_eq!(Head { tombstone: true, ..head }.purgeable_at(), Some(5));
    }

    #[test]
    fn a_resealed_flag_without_a_seal_is_refused() {
        let head = Head {
            stamp: Stamp { hlc: 5, origin: Origin { node: crate::NodeId(1), incarnation: 1 } },
            seq: 1,
            expires_at_ms: None,
            stored_size: 0,
            compression: Compression::None,
            tombstone: false,
            seal: None,
            client_key: None,
        };
        let mut bytes = head.encode();
        bytes[1] |= RESEALED;
        assert!(Head::decode(&bytes).unwrap_err().to_string().contains("resealed but not sealed"));
    }

    #[test]
    fn a_head_without_client_encryption_encodes_as_format_1_always_did() {
        let origin = Origin { node: crate::NodeId(7), incarnation: 1 };
        let head = Head {
            stamp: Stamp { hlc: 9, origin },
            seq: 3,
            expires_at_ms: None,
            stored_size: 4,
            compression: Compression::Lz4,
            tombstone: false,
            seal: Some(Seal::at(2, 3, 0)),
            client_key: None,
        };
        // format, flags, hlc, origin, seq, expiry, size, key id, nonce.
        assert_eq!(head.encode().len(), 1 + 1 + 8 + 20 + 8 + 8 + 4 + 4 + 12);
        let encrypted = Head { client_key: Some(KeyFingerprint([5; 8])), ..head };
        let bytes = encrypted.encode();
        assert_eq!(bytes.len(), head.encode().len() + 8);
        assert_eq!(bytes[1] & CLIENT_ENCRYPTED, CLIENT_ENCRYPTED);
        // A head cut before its fingerprint is refused, not read as unencrypted.
        assert!(Head::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn unknown_format_is_refused_clearly() {
        let err = Head::decode(&[9, 0]).unwrap_err();
        assert!(err.to_string().contains("unknown head format 9"));
    }
}

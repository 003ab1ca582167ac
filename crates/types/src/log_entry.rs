//! Log entries: the full mutation behind each seq of an origin.
//!
//! The log holds the mutation itself, not a reference into the records,
//! because the record may be overwritten, removed or expired before the
//! entry is shipped to a peer. A batch put is one entry, which replicas
//! apply all-or-nothing.
//!
//! Log key: `origin:[u8;20] seq:u64be`, so one origin's entries are one
//! contiguous range in seq order.
//!
//! Format 1 value, big-endian:
//!
//! ```text
//! format:u8 hlc:u64 count:u32 mutation*
//! mutation = kind:u8 (1 put, 2 tombstone, 3 sealed put) key:sized
//!            [codec:u8 expires_at_ms:u64 (0 = never) value:sized  if put]
//!            [codec:u8 expires_at_ms:u64 key_id:u32 value:sized if sealed put]
//! sized    = len:u32 bytes
//! ```
//!
//! A put whose value the client encrypted (see [`KeyFingerprint`]) has bit
//! 4 set in its kind (`0x11`, `0x13`) and the key's fingerprint,
//! `[u8;8]`, just before its value. Without the bit, a put encodes as it
//! always did; a reader that predates it refuses the kind as unknown.
//!
//! A sealed put's value is its ciphertext and tag; its nonce is not stored,
//! because it is the entry's seq and the mutation's index in the entry
//! ([`Seal::at`]): a replica rebuilds it, and no peer can choose it.

use crate::head::SEAL_TAG_BYTES;
use crate::wire::{DecodeError, Reader, put_sized};
use crate::{Compression, Head, KeyFingerprint, Origin, Seal, Stamp};

/// The current log entry format byte.
pub const LOG_FORMAT: u8 = 1;

const PUT: u8 = 1;
const TOMBSTONE: u8 = 2;
const SEALED_PUT: u8 = 3;
/// Or'ed onto a put's kind when the client encrypted its value.
const CLIENT_ENCRYPTED: u8 = 0x10;

/// What a mutation does to its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationKind {
    /// Writes a value.
    Put {
        /// The value as stored (already compressed).
        value: Vec<u8>,
        /// The codec of `value`.
        compression: Compression,
        /// Absolute expiry, Unix milliseconds.
        expires_at_ms: Option<u64>,
        /// How `value` was sealed at its origin; `None` for a value stored
        /// in the clear (the system tenant, or a node in development mode).
        seal: Option<Seal>,
        /// The client-side key the client encrypted `value` with, if any.
        client_key: Option<KeyFingerprint>,
    },
    /// Removes the key (a tombstone version).
    Tombstone,
}

/// One key's change within a log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// The encoded record key (see [`crate::key_codec`]).
    pub key: Vec<u8>,
    /// What happens to it.
    pub kind: MutationKind,
}

impl Mutation {
    /// The head this mutation leaves on its key.
    pub fn head(&self, stamp: Stamp, seq: u64) -> Head {
        match &self.kind {
            MutationKind::Put { value, compression, expires_at_ms, seal, client_key } => {
                let tag = if seal.is_some() { SEAL_TAG_BYTES } else { 0 };
                let stored_size = u32::try_from(value.len().saturating_sub(tag))
                    .expect("values are bounded by Limits, far below 4 GiB");
                Head {
                    stamp,
                    seq,
                    expires_at_ms: *expires_at_ms,
                    stored_size,
                    compression: *compression,
                    tombstone: false,
                    seal: *seal,
                    client_key: *client_key,
                }
            }
            MutationKind::Tombstone => Head {
                stamp,
                seq,
                expires_at_ms: None,
                stored_size: 0,
                compression: Compression::None,
                tombstone: true,
                seal: None,
                client_key: None,
            },
        }
    }
}

/// One seq of one origin: every mutation of one client write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The origin that accepted the write.
    pub origin: Origin,
    /// Dense, starting at 1, within the origin.
    pub seq: u64,
    /// The HLC part of the stamp shared by every mutation of the entry.
    pub hlc: u64,
    /// The changes, applied together.
    pub mutations: Vec<Mutation>,
}

impl LogEntry {
    /// The stamp of every mutation in the entry.
    pub fn stamp(&self) -> Stamp {
        Stamp { hlc: self.hlc, origin: self.origin }
    }

    /// The key of this entry in the log column family.
    pub fn log_key(&self) -> [u8; 28] {
        log_key(&self.origin, self.seq)
    }

    /// Encodes the value stored under [`LogEntry::log_key`].
    pub fn encode_value(&self) -> Vec<u8> {
        let size: usize = self
            .mutations
            .iter()
            .map(|m| {
                m.key.len()
                    + 30
                    + match &m.kind {
                        MutationKind::Put { value, .. } => value.len(),
                        MutationKind::Tombstone => 0,
                    }
            })
            .sum();
        let mut out = Vec::with_capacity(13 + size);
        out.push(LOG_FORMAT);
        out.extend_from_slice(&self.hlc.to_be_bytes());
        let count = u32::try_from(self.mutations.len()).expect("batches are bounded by Limits");
        out.extend_from_slice(&count.to_be_bytes());
        for mutation in &self.mutations {
            match &mutation.kind {
                MutationKind::Put { value, compression, expires_at_ms, seal, client_key } => {
                    let kind = if seal.is_some() { SEALED_PUT } else { PUT };
                    out.push(if client_key.is_some() { kind | CLIENT_ENCRYPTED } else { kind });
                    put_sized(&mut out, &mutation.key);
                    out.push(compression.code());
                    out.extend_from_slice(&expires_at_ms.unwrap_or(0).to_be_bytes());
                    if let Some(seal) = seal {
                        out.extend_from_slice(&seal.key_id.to_be_bytes());
                    }
                    if let Some(client_key) = client_key {
                        out.extend_from_slice(&client_key.0);
                    }
                    put_sized(&mut out, value);
                }
                MutationKind::Tombstone => {
                    out.push(TOMBSTONE);
                    put_sized(&mut out, &mutation.key);
                }
            }
        }
        out
    }

    /// Decodes a log entry from its key and value.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, DecodeError> {
        let (origin, seq) = decode_log_key(key)?;
        let mut reader = Reader::new(value, "log entry");
        let format = reader.u8()?;
        if format != LOG_FORMAT {
            return Err(reader.error(format!("unknown log entry format {format}")));
        }
        let hlc = reader.u64()?;
        let count = reader.u32()? as usize;
        // Each mutation takes at least 5 bytes; refuse counts the input cannot hold.
        if count > value.len() / 5 {
            return Err(reader.error(format!("count {count} exceeds what {} bytes can hold", value.len())));
        }
        let mut mutations = Vec::with_capacity(count);
        for index in 0..count {
            let kind = reader.u8()?;
            let key = reader.sized()?.to_vec();
            // Only a put may carry the client-encrypted bit; a tombstone
            // with it falls through to "unknown kind".
            let (kind, client_encrypted) = match kind & !CLIENT_ENCRYPTED {
                PUT | SEALED_PUT if kind & CLIENT_ENCRYPTED != 0 => (kind & !CLIENT_ENCRYPTED, true),
                _ => (kind, false),
            };
            let kind = match kind {
                PUT | SEALED_PUT => {
                    let compression =
                        Compression::from_code(reader.u8()?).ok_or_else(|| reader.error("unknown codec"))?;
                    let expires_at_ms = Some(reader.u64()?).filter(|&at| at != 0);
                    let seal = if kind == SEALED_PUT {
                        let index = u32::try_from(index).expect("count is a u32");
                        Some(Seal::at(reader.u32()?, seq, index))
                    } else {
                        None
                    };
                    let client_key =
                        if client_encrypted { Some(KeyFingerprint(reader.array()?)) } else { None };
                    let value = reader.sized()?.to_vec();
                    if seal.is_some() && value.len() < SEAL_TAG_BYTES {
                        return Err(reader.error("a sealed value is shorter than its tag"));
                    }
                    MutationKind::Put { value, compression, expires_at_ms, seal, client_key }
                }
                TOMBSTONE => MutationKind::Tombstone,
                other => return Err(reader.error(format!("unknown mutation kind {other}"))),
            };
            mutations.push(Mutation { key, kind });
        }
        reader.finish()?;
        Ok(LogEntry { origin, seq, hlc, mutations })
    }
}

/// The HLC of an encoded log entry, read without decoding the rest.
pub fn peek_hlc(value: &[u8]) -> Result<u64, DecodeError> {
    let mut reader = Reader::new(value, "log entry");
    let format = reader.u8()?;
    if format != LOG_FORMAT {
        return Err(reader.error(format!("unknown log entry format {format}")));
    }
    reader.u64()
}

/// The log column family key of `(origin, seq)`.
pub fn log_key(origin: &Origin, seq: u64) -> [u8; 28] {
    let mut out = [0u8; 28];
    out[..20].copy_from_slice(&origin.to_bytes());
    out[20..].copy_from_slice(&seq.to_be_bytes());
    out
}

/// Splits a log key into origin and seq.
pub fn decode_log_key(key: &[u8]) -> Result<(Origin, u64), DecodeError> {
    let mut reader = Reader::new(key, "log key");
    let origin = Origin::read(&mut reader)?;
    let seq = reader.u64()?;
    reader.finish()?;
    Ok((origin, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeId;
    use proptest::prelude::*;

    /// A mutation; a sealed put's seal is set by [`sealed_at`] once its
    /// place in the entry is known.
    fn mutation() -> impl Strategy<Value = Mutation> {
        let put = (
            proptest::collection::vec(any::<u8>(), 16..48),
            0u8..3,
            proptest::option::of(1u64..),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<[u8; 8]>()),
        )
            .prop_map(|(value, codec, expires_at_ms, key_id, client_key)| MutationKind::Put {
                value,
                compression: Compression::from_code(codec).expect("valid"),
                expires_at_ms,
                seal: key_id.map(|key_id| Seal { key_id, nonce: [0; 12] }),
                client_key: client_key.map(KeyFingerprint),
            });
        (proptest::collection::vec(any::<u8>(), 1..16), prop_oneof![put, Just(MutationKind::Tombstone)])
            .prop_map(|(key, kind)| Mutation { key, kind })
    }

    /// Gives each sealed put the nonce of its place in entry `seq`.
    fn sealed_at(seq: u64, mut mutations: Vec<Mutation>) -> Vec<Mutation> {
        for (index, mutation) in mutations.iter_mut().enumerate() {
            if let MutationKind::Put { seal: Some(seal), .. } = &mut mutation.kind {
                *seal = Seal::at(seal.key_id, seq, index as u32);
            }
        }
        mutations
    }

    proptest! {
        #[test]
        fn round_trips(node in any::<u128>(), inc in any::<u32>(), seq in any::<u64>(), hlc in any::<u64>(),
                       mutations in proptest::collection::vec(mutation(), 0..5)) {
            let mutations = sealed_at(seq, mutations);
            let entry = LogEntry { origin: Origin { node: NodeId(node), incarnation: inc }, seq, hlc, mutations };
            let decoded = LogEntry::decode(&entry.log_key(), &entry.encode_value()).expect("decodes");
            prop_assert_eq!(peek_hlc(&entry.encode_value()).expect("peeks"), hlc);
            prop_assert_eq!(decoded, entry);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = LogEntry::decode(&[0u8; 28], &bytes);
        }
    }

    #[test]
    fn a_sealed_put_keeps_only_its_key_id_and_its_nonce_follows_its_place() {
        let origin = Origin { node: NodeId(1), incarnation: 1 };
        let sealed = |key_id| Mutation {
            key: b"k".to_vec(),
            kind: MutationKind::Put {
                value: vec![7; 20],
                compression: Compression::None,
                expires_at_ms: None,
                seal: Some(Seal::at(key_id, 9, 1)),
                client_key: None,
            },
        };
        let tombstone = Mutation { key: b"t".to_vec(), kind: MutationKind::Tombstone };
        let entry = LogEntry { origin, seq: 9, hlc: 1, mutations: vec![tombstone, sealed(5)] };
        let decoded = LogEntry::decode(&entry.log_key(), &entry.encode_value()).expect("decodes");
        assert_eq!(decoded, entry);
        let head = decoded.mutations[1].head(entry.stamp(), 9);
        assert_eq!(head.seal, Some(Seal { key_id: 5, nonce: Seal::nonce_at(9, 1) }));
        assert_eq!(head.stored_size, 4, "the tag is not part of the client's value");
        // The same bytes under another seq open with another nonce: a peer
        // cannot choose one.
        let moved = LogEntry::decode(&log_key(&origin, 10), &entry.encode_value()).expect("decodes");
        assert_ne!(moved.mutations[1], entry.mutations[1]);
        // A sealed value too short to hold its tag is refused.
        let mut short = entry.clone();
        short.mutations[1].kind = MutationKind::Put {
            value: vec![1; 3],
            compression: Compression::None,
            expires_at_ms: None,
            seal: Some(Seal::at(5, 9, 1)),
            client_key: None,
        };
        assert!(LogEntry::decode(&short.log_key(), &short.encode_value()).is_err());
    }

    #[test]
    fn a_client_encrypted_put_keeps_its_fingerprint_and_only_a_put_may_carry_one() {
        let origin = Origin { node: NodeId(1), incarnation: 1 };
        let put = |seal| Mutation {
            key: b"k".to_vec(),
            kind: MutationKind::Put {
                value: vec![7; 20],
                compression: Compression::None,
                expires_at_ms: Some(5),
                seal,
                client_key: Some(KeyFingerprint([3; 8])),
            },
        };
        let entry =
            LogEntry { origin, seq: 4, hlc: 1, mutations: vec![put(None), put(Some(Seal::at(2, 4, 1)))] };
        let bytes = entry.encode_value();
        let decoded = LogEntry::decode(&entry.log_key(), &bytes).expect("decodes");
        assert_eq!(decoded, entry);
        assert_eq!(decoded.mutations[1].head(entry.stamp(), 4).client_key, Some(KeyFingerprint([3; 8])));
        let tombstone = Mutation { key: b"k".to_vec(), kind: MutationKind::Tombstone };
        let mut bytes = LogEntry { mutations: vec![tombstone], ..entry.clone() }.encode_value();
        bytes[13] |= CLIENT_ENCRYPTED;
        let error = LogEntry::decode(&entry.log_key(), &bytes).unwrap_err();
        assert!(error.to_string().contains("unknown mutation kind 18"), "{error}");
    }

    #[test]
    fn log_keys_sort_by_origin_then_seq() {
        let a = Origin { node: NodeId(1), incarnation: 1 };
        let b = Origin { node: NodeId(1), incarnation: 2 };
        assert!(log_key(&a, 2) < log_key(&a, 10));
        assert!(log_key(&a, u64::MAX) < log_key(&b, 0));
    }
}

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
//!
//! A reseal (kind 4, `0x14` for a client-encrypted value) is a background
//! re-encryption: the same version of a record, sealed again under the
//! entry origin's key. It names the version it seals again, so it does not
//! take the entry's stamp:
//!
//! ```text
//! reseal = key:sized codec:u8 expires_at_ms:u64 key_id:u32
//!          version_hlc:u64 version_origin:[u8;20] version_seq:u64
//!          [client_key:[u8;8]] value:sized
//! ```
//!
//! Its nonce is the entry's seq and its index, as for a sealed put, and
//! its key is the entry origin's ([`crate::Resealed`]).

use crate::head::SEAL_TAG_BYTES;
use crate::wire::{DecodeError, Reader, put_sized};
use crate::{Compression, Head, KeyFingerprint, Origin, Resealed, Seal, Stamp};

/// The current log entry format byte.
pub const LOG_FORMAT: u8 = 1;

const PUT: u8 = 1;
const TOMBSTONE: u8 = 2;
const SEALED_PUT: u8 = 3;
const RESEAL: u8 = 4;
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
    /// Seals an existing version again (a background re-encryption): it
    /// replaces the value and seal of the version `version`, `version_seq`
    /// where a node holds exactly that version, and does nothing
    /// elsewhere (see [`Seal::supersedes`]).
    Reseal {
        /// The stamp of the version sealed again.
        version: Stamp,
        /// Its seq in its own origin's log.
        version_seq: u64,
        /// The value sealed again: ciphertext, then tag.
        value: Vec<u8>,
        /// The version's codec.
        compression: Compression,
        /// The version's expiry.
        expires_at_ms: Option<u64>,
        /// The new seal: the entry origin's key, the entry's nonce.
        seal: Seal,
        /// The version's client-side key, if the client encrypted it.
        client_key: Option<KeyFingerprint>,
    },
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
            MutationKind::Reseal {
                version,
                version_seq,
                value,
                compression,
                expires_at_ms,
                seal,
                client_key,
            } => Head {
                stamp: *version,
                seq: *version_seq,
                expires_at_ms: *expires_at_ms,
                stored_size: u32::try_from(value.len().saturating_sub(SEAL_TAG_BYTES))
                    .expect("values are bounded by Limits, far below 4 GiB"),
                compression: *compression,
                tombstone: false,
                seal: Some(*seal),
                client_key: *client_key,
            },
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
                        MutationKind::Reseal { value, .. } => value.len() + 36,
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
                MutationKind::Reseal {
                    version,
                    version_seq,
                    value,
                    compression,
                    expires_at_ms,
                    seal,
                    client_key,
                } => {
                    out.push(if client_key.is_some() { RESEAL | CLIENT_ENCRYPTED } else { RESEAL });
                    put_sized(&mut out, &mutation.key);
                    out.push(compression.code());
                    out.extend_from_slice(&expires_at_ms.unwrap_or(0).to_be_bytes());
                    out.extend_from_slice(&seal.key_id.to_be_bytes());
                    out.extend_from_slice(&version.hlc.to_be_bytes());
                    out.extend_from_slice(&version.origin.to_bytes());
                    out.extend_from_slice(&version_seq.to_be_bytes());
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
            // Only a put or a reseal may carry the client-encrypted bit; a
            // tombstone with it falls through to "unknown kind".
            let (kind, client_encrypted) = match kind & !CLIENT_ENCRYPTED {
                PUT | SEALED_PUT | RESEAL if kind & CLIENT_ENCRYPTED != 0 => (kind & !CLIENT_ENCRYPTED, true),
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
                RESEAL => {
                    let compression =
                        Compression::from_code(reader.u8()?).ok_or_else(|| reader.error("unknown codec"))?;
                    let expires_at_ms = Some(reader.u64()?).filter(|&at| at != 0);
                    let key_id = reader.u32()?;
                    let version = Stamp { hlc: reader.u64()?, origin: Origin::read(&mut reader)? };
                    let version_seq = reader.u64()?;
                    let client_key =
                        if client_encrypted { Some(KeyFingerprint(reader.array()?)) } else { None };
                    let value = reader.sized()?.to_vec();
                    if value.len() < SEAL_TAG_BYTES {
                        return Err(reader.error("a sealed value is shorter than its tag"));
                    }
                    let index = u32::try_from(index).expect("count is a u32");
                    let seal =
                        Seal { resealed: Some(Resealed { hlc, by: origin }), ..Seal::at(key_id, seq, index) };
                    MutationKind::Reseal {
                        version,
                        version_seq,
                        value,
                        compression,
                        expires_at_ms,
                        seal,
                        client_key,
                    }
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
                seal: key_id.map(|key_id| Seal::at(key_id, 0, 0)),
                client_key: client_key.map(KeyFingerprint),
            });
        let reseal = (
            proptest::collection::vec(any::<u8>(), 16..48),
            (0u8..3, proptest::option::of(1u64..), any::<u32>()),
            (any::<u64>(), any::<u128>(), any::<u32>(), any::<u64>()),
            proptest::option::of(any::<[u8; 8]>()),
        )
            .prop_map(
                |(value, (codec, expires_at_ms, key_id), (hlc, node, incarnation, seq), client_key)| {
                    MutationKind::Reseal {
                        version: Stamp { hlc, origin: Origin { node: NodeId(node), incarnation } },
                        version_seq: seq,
                        value,
                        compression: Compression::from_code(codec).expect("valid"),
                        expires_at_ms,
                        seal: Seal::at(key_id, 0, 0),
                        client_key: client_key.map(KeyFingerprint),
                    }
                },
            );
        (
            proptest::collection::vec(any::<u8>(), 1..16),
            prop_oneof![put, reseal, Just(MutationKind::Tombstone)],
        )
            .prop_map(|(key, kind)| Mutation { key, kind })
    }

    /// Gives each sealed put the nonce of its place in the entry, and each
    /// reseal the entry's origin and HLC as well.
    fn sealed_at(entry: &mut LogEntry) {
        for (index, mutation) in entry.mutations.iter_mut().enumerate() {
            let at = Seal::at(0, entry.seq, index as u32);
            match &mut mutation.kind {
                MutationKind::Put { seal: Some(seal), .. } => *seal = Seal { key_id: seal.key_id, ..at },
                MutationKind::Reseal { seal, .. } => {
                    let resealed = Some(Resealed { hlc: entry.hlc, by: entry.origin });
                    *seal = Seal { key_id: seal.key_id, resealed, ..at };
                }
                _ => {}
            }
        }
    }

    proptest! {
        #[test]
        fn round_trips(node in any::<u128>(), inc in any::<u32>(), seq in any::<u64>(), hlc in any::<u64>(),
                       mutations in proptest::collection::vec(mutation(), 0..5)) {
            let mut entry = LogEntry { origin: Origin { node: NodeId(node), incarnation: inc }, seq, hlc, mutations };
            sealed_at(&mut entry);
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
        assert_eq!(head.seal, Some(Seal { key_id: 5, nonce: Seal::nonce_at(9, 1), resealed: None }));
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
    fn a_reseal_leaves_the_head_of_the_version_it_names_sealed_under_its_own_origins_key() {
        let writer = Origin { node: NodeId(1), incarnation: 1 };
        let resealer = Origin { node: NodeId(2), incarnation: 4 };
        let version = Stamp { hlc: 100, origin: writer };
        let reseal = Mutation {
            key: b"k".to_vec(),
            kind: MutationKind::Reseal {
                version,
                version_seq: 7,
                value: vec![3; 21],
                compression: Compression::Lz4,
                expires_at_ms: Some(9_000),
                seal: Seal { resealed: Some(Resealed { hlc: 500, by: resealer }), ..Seal::at(2, 30, 0) },
                client_key: None,
            },
        };
        let entry = LogEntry { origin: resealer, seq: 30, hlc: 500, mutations: vec![reseal] };
        let decoded = LogEntry::decode(&entry.log_key(), &entry.encode_value()).expect("decodes");
        assert_eq!(decoded, entry);
        let head = decoded.mutations[0].head(entry.stamp(), entry.seq);
        assert_eq!(
            (head.stamp, head.seq, head.expires_at_ms, head.stored_size),
            (version, 7, Some(9_000), 5)
        );
        let seal = head.seal.expect("sealed");
        assert_eq!(seal.key_origin(&head.stamp), resealer, "the resealer's key opens it now");
        assert_eq!(seal.nonce, Seal::nonce_at(30, 0), "the nonce of its place in the resealer's log");
        assert_eq!(Head::decode(&head.encode()).expect("decodes"), head);
        // Which seal of a version every node keeps: the latest reseal.
        let first = Seal::at(1, 7, 0);
        assert!(seal.supersedes(Some(&first)) && seal.supersedes(None));
        assert!(!first.supersedes(Some(&seal)) && !first.supersedes(None));
        assert!(!seal.supersedes(Some(&seal)), "the same reseal again changes nothing");
        let later = Seal { resealed: Some(Resealed { hlc: 501, by: writer }), ..seal };
        assert!(later.supersedes(Some(&seal)) && !seal.supersedes(Some(&later)));
        // Under another seq the same bytes open with another nonce, and
        // name another resealing entry: a peer chooses neither.
        let moved = LogEntry::decode(&log_key(&resealer, 31), &entry.encode_value()).expect("decodes");
        assert_ne!(moved.mutations[0], entry.mutations[0]);
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

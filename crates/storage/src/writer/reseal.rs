//! Sealing stored versions again, for a background re-encryption
//! (`sealing::reencrypt`): each version is opened and sealed under this
//! origin's current key for its tenant, in one log entry of this origin
//! per batch, and keeps its stamp, seq and expiry.
//!
//! Why a version keeps its stamp: with a new one, a re-encryption would be
//! a new write. It would win over a concurrent write or removal on another
//! node that it never saw (LWW by stamp), bringing back what a client
//! removed. A reseal changes only how the version is sealed; where it
//! applies is [`ResealRule`]'s to say.
//!
//! Why the nonce never repeats: the value is sealed under this origin's
//! own subkey of its key, with the nonce of its place in this origin's log
//! (the reseal entry's seq and the value's index in it), the same scheme
//! as every other value this origin seals. The stamp stays in the
//! associated data, so a resealed ciphertext still opens only as the
//! version it belongs to.

use consensusdb_seal::{KeyId, NonceParts, TAG_BYTES};
use consensusdb_types::key_codec::encode_key;
use consensusdb_types::{Head, LogEntry, Mutation, MutationKind, Resealed, Seal, Stamp};

use super::{Accepted, Group, Version, Writer};
use crate::StorageError;
use crate::clock::now_ms;
use crate::sealing::key_records::shred_key;
use crate::sealing::{associated_data, describe_key, stamp_bytes};

/// Versions of one tenant to seal again, each named by its key and stamp
/// as the re-encryption found them.
#[derive(Debug)]
pub(crate) struct ResealBatch {
    pub(crate) tenant: String,
    pub(crate) versions: Vec<(Vec<u8>, Stamp)>,
    /// Bytes of their values (as their heads say), which the writer loads:
    /// counted against the writer's queue like a write's.
    pub(crate) value_bytes: usize,
}

impl ResealBatch {
    /// Bytes of the keys it names and the values the writer will load.
    pub(crate) fn byte_size(&self) -> usize {
        self.value_bytes + self.versions.iter().map(|(key, _)| key.len()).sum::<usize>()
    }
}

/// What the writer did with a [`ResealBatch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealOutcome {
    /// Versions sealed again under this origin's current key.
    pub resealed: u64,
    /// Versions sealed under that key already.
    pub already: u64,
    /// Versions no longer current (overwritten, removed, expired, or
    /// stamped before a shred of the tenant): nothing to do.
    pub changed: u64,
    /// Versions whose value could not be opened or read, each with why (a
    /// key missing, a value altered on disk, a record that does not
    /// decode): left as they are.
    pub refused: Vec<String>,
}

pub(crate) type ResealReply = tokio::sync::oneshot::Sender<Result<ResealOutcome, StorageError>>;

/// What a reseal does where it arrives.
pub(super) enum ResealRule {
    /// The node holds the version it names, under an earlier seal: its
    /// value and seal are replaced.
    Replace,
    /// The node has not applied that version yet (the reseal came first,
    /// from another origin's log): the reseal is that version, staged as
    /// one under the conflict rule; the version itself, when it comes,
    /// is the same stamp and changes nothing.
    AsVersion,
    /// The node applied the version and holds something else now (a newer
    /// version, a tombstone, nothing once purged), or a later seal of it:
    /// nothing to do. Staged as a version, the reseal would bring back
    /// what was removed.
    Ignore,
}

/// What a version found for resealing turns out to be, as the writer sees it.
enum Found {
    /// Its key, the version and the value opened.
    Open(Box<(Vec<u8>, Version, Vec<u8>)>),
    Already,
    Changed,
    Refused(String),
}

impl Writer {
    /// Stages a reseal batch; answered once its group is durable.
    pub(super) fn accept_reseal(&mut self, group: &mut Group, batch: ResealBatch, reply: ResealReply) {
        match self.stage_reseals(group, batch) {
            Ok(outcome) => group.accepted.push(Accepted::Reseal(reply, outcome)),
            Err(error) => drop(reply.send(Err(error))),
        }
    }

    fn stage_reseals(
        &mut self,
        group: &mut Group,
        batch: ResealBatch,
    ) -> Result<ResealOutcome, StorageError> {
        if self.installing {
            return Err(StorageError::NotAccepting { reason: "bootstrapping from a peer".into() });
        }
        if !self.keys.vault.is_sealing() {
            return Err(StorageError::Unsealed { what: "re-encrypting values".into() });
        }
        // As the writer sees them, staged and in-flight writes included.
        let shred = encode_key(&shred_key(&batch.tenant));
        let shredded_at =
            self.current(&shred, &mut group.staged)?.filter(|v| !v.head.tombstone).map(|v| v.head.stamp);
        let current_key = self.keys.current_id(&batch.tenant);
        let mut outcome = ResealOutcome::default();
        let mut opened = Vec::with_capacity(batch.versions.len());
        for (key, stamp) in batch.versions {
            match self.find_to_reseal(group, key, stamp, shredded_at, current_key) {
                Found::Open(found) => opened.push(*found),
                Found::Already => outcome.already += 1,
                Found::Changed => outcome.changed += 1,
                Found::Refused(why) => outcome.refused.push(why),
            }
        }
        if opened.is_empty() {
            return Ok(outcome);
        }
        let wall = self.wall_ms();
        // Made now if this origin has no key for the tenant (logged before
        // the reseals), so a batch with nothing to reseal makes none.
        let (key_id, sealer) = self.tenant_sealer(group, &batch.tenant, wall)?;
        let entry_hlc = self.clock.tick(wall);
        let seq = self.next_seq;
        self.next_seq += 1;
        let resealed = Some(Resealed { hlc: entry_hlc, by: self.origin });
        let key_id_bytes = key_id.0.to_be_bytes();
        let mut mutations = Vec::with_capacity(opened.len());
        let mut existing = Vec::with_capacity(opened.len());
        for (index, (key, version, mut value)) in opened.into_iter().enumerate() {
            let index = u32::try_from(index).expect("a reseal batch holds far fewer than 2^32 values");
            let head = version.head;
            value.reserve_exact(TAG_BYTES);
            let stamp = stamp_bytes(&head.stamp);
            let nonce = sealer.seal_in_place(
                NonceParts { seq, index },
                &associated_data(&key, &key_id_bytes, &stamp),
                &mut value,
            );
            let kind = MutationKind::Reseal {
                version: head.stamp,
                version_seq: head.seq,
                value,
                compression: head.compression,
                expires_at_ms: head.expires_at_ms,
                seal: Seal { key_id: key_id.0, nonce, resealed },
                client_key: head.client_key,
            };
            mutations.push(Mutation { key, kind });
            existing.push(Some(version));
        }
        outcome.resealed = mutations.len() as u64;
        let entry = LogEntry { origin: self.origin, seq, hlc: entry_hlc, mutations };
        self.log_and_stage(group, entry, existing);
        Ok(outcome)
    }

    /// The version at `key` stamped `stamp`, opened, if it is still there
    /// to reseal: not replaced since it was found, not stamped at or before
    /// a shred of its tenant (which removes it), not under `current_key`
    /// (this origin's key for the tenant) already. A record this node
    /// cannot read or open is refused alone, not the batch.
    fn find_to_reseal(
        &mut self,
        group: &mut Group,
        key: Vec<u8>,
        stamp: Stamp,
        shredded_at: Option<Stamp>,
        current_key: Option<KeyId>,
    ) -> Found {
        let now = now_ms();
        let version = match self.current(&key, &mut group.staged) {
            Ok(Some(version)) if version.head.stamp == stamp && !version.head.is_hidden(now) => version,
            Ok(_) => return Found::Changed,
            Err(error) => return Found::Refused(error.to_string()),
        };
        if shredded_at.is_some_and(|shred| stamp <= shred) {
            return Found::Changed;
        }
        let seal = version.head.seal;
        if seal.is_some_and(|s| s.key_origin(&stamp) == self.origin && Some(KeyId(s.key_id)) == current_key) {
            return Found::Already;
        }
        // Resealed by another node at an HLC this node's next stamp does
        // not pass (its clock ran further ahead than the drift bound lets
        // this one follow): a reseal from here would not supersede it.
        let next_hlc = self.clock.peek(self.wall_ms());
        if seal.and_then(|s| s.resealed).is_some_and(|resealed| resealed.hlc >= next_hlc) {
            return Found::Already;
        }
        let stored = match &version.value {
            Some(value) => value.clone(),
            None => match self.stored_value(&key) {
                Ok(Some(value)) => value,
                // Not expired (checked above), so the value should be there.
                Ok(None) => {
                    return Found::Refused(format!("{}: the record has no value", describe_key(&key)));
                }
                Err(error) => return Found::Refused(error.to_string()),
            },
        };
        let plaintext = match seal {
            None => stored,
            Some(seal) => match self.open_to_rewrite(&key, &version.head, seal, &stored, &mut group.staged) {
                Ok(plaintext) => plaintext,
                // Its key went with a shred: the shred's removal takes it.
                Err(StorageError::Unopenable { shredded: true, .. }) => return Found::Changed,
                Err(error) => return Found::Refused(error.to_string()),
            },
        };
        Found::Open(Box::new((key, version, plaintext)))
    }

    /// What the reseal of the version `head` names does at `key`, where
    /// `existing` is held (see [`ResealRule`]). `version_unseen`: this node
    /// had not applied that version before. The system tenant is never
    /// sealed: a reseal of one of its records (only a peer gone wrong sends
    /// one) is ignored, or it would make the cluster's keys unreadable.
    pub(super) fn reseal_rule(
        &self,
        key: &[u8],
        head: &Head,
        existing: Option<&Version>,
        version_unseen: bool,
    ) -> ResealRule {
        if self.keys.is_system(key) {
            return ResealRule::Ignore;
        }
        let held = existing.filter(|current| {
            !current.head.tombstone && current.head.stamp == head.stamp && current.head.seq == head.seq
        });
        match held {
            Some(current) if head.seal.is_some_and(|seal| seal.supersedes(current.head.seal.as_ref())) => {
                ResealRule::Replace
            }
            Some(_) => ResealRule::Ignore,
            None if version_unseen => ResealRule::AsVersion,
            None => ResealRule::Ignore,
        }
    }
}

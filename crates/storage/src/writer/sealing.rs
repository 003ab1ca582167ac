//! Sealing in the writer: each value of a client write is sealed after
//! its log entry has a seq, under this origin's current key for the
//! value's tenant, with the nonce of its place in the log (seq, index).
//! The log entry, the replication stream, snapshots and `values` then all
//! hold that one ciphertext.
//!
//! A tenant this origin has no key for yet gets one first: made here,
//! wrapped under the current master key, and logged in an entry of its
//! own just before the write that needs it, in the same group commit.
//! Making keys in the writer, the one thread that hands out this origin's
//! seqs, is what orders every key before its values in the log without
//! any lock.

use std::collections::HashMap;
use std::sync::Arc;

use consensusdb_seal::{DataKey, KeyId, NonceParts, Sealer};
use consensusdb_types::key_codec::{decode_tenant, encode_key};
use consensusdb_types::{Compression, LogEntry, Mutation, MutationKind, Origin, SYSTEM_TENANT, Seal};
use rocksdb::DB;

use super::{Group, Writer};
use crate::StorageError;
use crate::sealing::key_records::KeyRef;
use crate::sealing::{Vault, associated_data, stamp_bytes};

/// The keys the writer seals with: this origin's current key per tenant.
pub(crate) struct WriterKeys {
    pub(crate) vault: Arc<Vault>,
    current: HashMap<String, (KeyId, Arc<Sealer>)>,
    /// The highest key id this origin has used; ids are never reused.
    highest_id: u32,
}

impl WriterKeys {
    /// The current keys of `origin`, opened from what it made before. A
    /// key that does not unwrap (a master key file without the key that
    /// wrapped it) is an error here, at start, not at the first write.
    pub(crate) fn load(vault: Arc<Vault>, db: &DB, origin: Origin) -> Result<Self, StorageError> {
        if !vault.is_sealing() {
            // Seals nothing; what it made before stays for when it does.
            let highest_id = vault.own_keys(db, origin)?.highest_id;
            return Ok(Self { vault, current: HashMap::new(), highest_id });
        }
        let own = vault.own_keys(db, origin)?;
        let mut current = HashMap::with_capacity(own.newest.len());
        for (tenant, (id, _made_at)) in own.newest {
            let key = KeyRef { tenant, origin, id };
            let sealer = vault.sealer(db, &key).map_err(|reason| StorageError::Unopenable {
                key: key.to_string(),
                reason: reason.to_string(),
                shredded: false,
            })?;
            current.insert(key.tenant, (id, sealer));
        }
        Ok(Self { vault, current, highest_id: own.highest_id })
    }

    /// Drops every current key: after a bootstrap made this node a new
    /// incarnation, whose values need keys of its own.
    pub(crate) fn start_new_origin(&mut self) {
        self.current.clear();
        self.highest_id = 0;
    }
}

impl Writer {
    /// The tenant of each mutation whose value this write seals; `None`
    /// for one stored in the clear (a tombstone, the system tenant, or a
    /// node without a master key).
    pub(super) fn tenants_to_seal(
        &self,
        mutations: &[Mutation],
    ) -> Result<Vec<Option<String>>, StorageError> {
        mutations
            .iter()
            .map(|mutation| {
                let sealed =
                    self.keys.vault.is_sealing() && matches!(mutation.kind, MutationKind::Put { .. });
                if !sealed {
                    return Ok(None);
                }
                let tenant = decode_tenant(&mutation.key)?;
                Ok((tenant != SYSTEM_TENANT).then_some(tenant))
            })
            .collect()
    }

    /// Makes a key for each tenant in `tenants` this origin has none for,
    /// each logged in an entry of its own (so before the write's entry).
    pub(super) fn make_missing_keys(
        &mut self,
        group: &mut Group,
        tenants: &[Option<String>],
        wall: u64,
    ) -> Result<(), StorageError> {
        for tenant in tenants.iter().flatten() {
            if self.keys.current.contains_key(tenant) {
                continue;
            }
            let masters = self.keys.vault.masters().expect("tenants are sealed only with master keys");
            let id =
                KeyId(self.keys.highest_id.checked_add(1).ok_or_else(|| StorageError::NotAccepting {
                    reason: "this origin has used every data key id; restore it as a new incarnation".into(),
                })?);
            let data_key = DataKey::generate(id);
            let key = KeyRef { tenant: tenant.clone(), origin: self.origin, id };
            let record_key = encode_key(&key.record_key());
            let existing = self.current(&record_key, &mut group.staged)?;
            let wrapped = masters.current().wrap(tenant, &data_key).encode();
            let kind = MutationKind::Put {
                value: wrapped,
                compression: Compression::None,
                expires_at_ms: None,
                seal: None,
            };
            let entry = LogEntry {
                origin: self.origin,
                seq: self.next_seq,
                hlc: self.clock.tick(wall),
                mutations: vec![Mutation { key: record_key, kind }],
            };
            self.next_seq += 1;
            self.log_and_stage(group, entry, vec![existing]);
            let sealer = Arc::new(data_key.sealer_for(&self.origin.to_bytes()));
            self.keys.highest_id = id.0;
            self.keys.vault.remember(key, sealer.clone());
            self.keys.current.insert(tenant.clone(), (id, sealer));
            tracing::info!(tenant = %tenant, key_id = id.0, origin = %self.origin, "made a data key");
        }
        Ok(())
    }

    /// Seals the puts of `entry` whose tenant is given, each under its
    /// tenant's current key, in place.
    pub(super) fn seal_entry(&self, entry: &mut LogEntry, tenants: &[Option<String>]) {
        let stamp = stamp_bytes(&entry.stamp());
        for (index, (mutation, tenant)) in entry.mutations.iter_mut().zip(tenants).enumerate() {
            let (Some(tenant), MutationKind::Put { value, seal, .. }) = (tenant, &mut mutation.kind) else {
                continue;
            };
            let (id, sealer) = &self.keys.current[tenant];
            let index = u32::try_from(index).expect("a batch holds far fewer than 2^32 records");
            let key_id = id.0.to_be_bytes();
            let sealed = sealer.seal(
                NonceParts { seq: entry.seq, index },
                &associated_data(&mutation.key, &key_id, &stamp),
                value,
            );
            *value = sealed.ciphertext;
            *seal = Some(Seal::at(id.0, entry.seq, index));
        }
    }
}

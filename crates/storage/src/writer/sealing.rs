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
use consensusdb_types::key_codec::{decode_key, decode_tenant, encode_key, tenant_component, tenant_prefix};
use consensusdb_types::{
    Compression, Head, LogEntry, Mutation, MutationKind, Origin, SYSTEM_TENANT, Seal, Stamp,
};
use rocksdb::DB;

use super::{Group, KeyMap, Version, Writer};
use crate::StorageError;
use crate::sealing::key_records::{KeyRef, ROTATIONS_REGION};
use crate::sealing::{LastSealer, Unopenable, Vault, associated_data, refusal, stamp_bytes};

/// The keys the writer seals with: this origin's current key per tenant.
pub(crate) struct WriterKeys {
    pub(crate) vault: Arc<Vault>,
    current: HashMap<String, CurrentKey>,
    /// The highest key id this origin has used; ids are never reused.
    highest_id: u32,
    /// The encoded prefix of the system tenant, whose records may rotate
    /// or destroy keys.
    system_prefix: Vec<u8>,
}

/// The key one value is sealed with, and its sealer.
pub(super) type ValueSealer = (KeyId, Arc<Sealer>);

/// A key this origin seals a tenant's new values with.
struct CurrentKey {
    id: KeyId,
    sealer: Arc<Sealer>,
    /// The HLC of its record: a rotation after it retires it.
    made_at: u64,
}

impl WriterKeys {
    /// The current keys of `origin`, opened from what it made before. A
    /// key that does not unwrap (a master key file without the key that
    /// wrapped it) is an error here, at start, not at the first write.
    pub(crate) fn load(vault: Arc<Vault>, db: &DB, origin: Origin) -> Result<Self, StorageError> {
        let system_prefix = tenant_prefix(SYSTEM_TENANT);
        if !vault.is_sealing() {
            // Seals nothing; what it made before stays for when it does.
            let highest_id = vault.own_keys(db, origin)?.highest_id;
            return Ok(Self { vault, current: HashMap::new(), highest_id, system_prefix });
        }
        let own = vault.own_keys(db, origin)?;
        let mut current = HashMap::with_capacity(own.newest.len());
        for (tenant, (id, made_at)) in own.newest {
            let key = KeyRef { tenant, origin, id };
            let sealer = vault.sealer(db, &key).map_err(|reason| StorageError::Unopenable {
                key: key.to_string(),
                reason: reason.to_string(),
                shredded: false,
            })?;
            current.insert(key.tenant, CurrentKey { id, sealer, made_at });
        }
        Ok(Self { vault, current, highest_id: own.highest_id, system_prefix })
    }

    /// Drops the current keys the data no longer holds live and unrotated:
    /// after a snapshot is installed, whose records (a shred or a rotation
    /// this node missed) came in without passing through [`Self::notice`].
    /// A value sealed under a key the snapshot destroyed would never open.
    /// If the keys cannot be read, every current key goes (always safe:
    /// the next write makes a new one), and the install still completes.
    pub(crate) fn recheck(&mut self, db: &DB, origin: Origin) {
        match self.vault.own_keys(db, origin) {
            Ok(own) => {
                self.current.retain(|tenant, current| {
                    own.newest.get(tenant).is_some_and(|(id, _)| *id == current.id)
                });
                self.highest_id = self.highest_id.max(own.highest_id);
            }
            Err(error) => {
                tracing::warn!(%error, "after the install, this node's keys could not be read: \
                    each tenant gets a new key at its next write");
                self.current.clear();
            }
        }
    }

    /// The sealer of `key` if it is this origin's current key for its
    /// tenant, which the writer holds whether or not RocksDB does yet.
    fn current_sealer(&self, key: &KeyRef, origin: Origin) -> Option<Arc<Sealer>> {
        let current = self.current.get(&key.tenant).filter(|current| current.id == key.id)?;
        (key.origin == origin).then(|| current.sealer.clone())
    }

    /// The id of this origin's current key for `tenant`, if it has one.
    pub(super) fn current_id(&self, tenant: &str) -> Option<KeyId> {
        self.current.get(tenant).map(|current| current.id)
    }

    /// Whether `key` (encoded) is a record of the system tenant, which is
    /// never sealed.
    pub(super) fn is_system(&self, key: &[u8]) -> bool {
        key.starts_with(&self.system_prefix)
    }

    /// Drops every current key: after a bootstrap made this node a new
    /// incarnation, whose values need keys of its own.
    pub(crate) fn start_new_origin(&mut self) {
        self.current.clear();
        self.highest_id = 0;
    }

    /// Takes note of a system record the writer just staged (written here
    /// or replicated): a tenant whose keys were rotated or destroyed gets
    /// a new key at its next write. Returns the key it destroys, if it
    /// destroys one, for the vault to forget once the destruction is
    /// written: before that, readers still find the key live in RocksDB.
    pub(crate) fn notice(
        &mut self,
        key: &[u8],
        tombstone: bool,
        stamp: &Stamp,
        origin: Origin,
    ) -> Option<KeyRef> {
        if !self.is_system(key) {
            return None;
        }
        let Ok(key) = decode_key(key) else { return None };
        if key.row.region == ROTATIONS_REGION && !tombstone {
            let tenant = &key.row.minor;
            if self.current.get(tenant).is_some_and(|current| current.made_at <= stamp.hlc) {
                self.current.remove(tenant);
                tracing::info!(tenant = %tenant, "the tenant's keys were rotated: new values get a new key");
            }
        } else if let Some(destroyed) = KeyRef::of_record(&key).filter(|_| tombstone) {
            let ours = destroyed.origin == origin
                && self.current.get(&destroyed.tenant).is_some_and(|current| current.id == destroyed.id);
            if ours {
                self.current.remove(&destroyed.tenant);
            }
            return Some(destroyed);
        }
        None
    }
}

impl Writer {
    /// Opens the sealed value of `key` that a touch rewrites. Its data key
    /// is looked up as the writer sees it, staged and in-flight groups
    /// included: for what the writer does next, a destruction it has
    /// staged (a shred) has destroyed the key already, even before RocksDB
    /// holds it, and a touch must not carry the value past the shred under
    /// a new key.
    pub(super) fn open_to_rewrite(
        &self,
        key: &[u8],
        head: &Head,
        seal: Seal,
        stored: &[u8],
        staged: &mut KeyMap<Option<Version>>,
    ) -> Result<Vec<u8>, StorageError> {
        let tenant = decode_tenant(key)?;
        let data_key = KeyRef { tenant, origin: seal.key_origin(&head.stamp), id: KeyId(seal.key_id) };
        let record = encode_key(&data_key.record_key());
        if self.current(&record, staged)?.is_some_and(|version| version.head.tombstone) {
            return Err(refusal(key, Unopenable::KeyDestroyed(data_key)));
        }
        // A key this origin made in a group still in flight is not in
        // RocksDB yet, and may have left the vault's cache: the writer's
        // own current key opens what it sealed.
        let own = self.keys.current_sealer(&data_key, self.origin);
        let last = own.map(|sealer| LastSealer::holding(data_key.clone(), sealer)).unwrap_or_default();
        self.keys.vault.open_with(self.db(), key, &data_key.tenant, head, stored, &last)
    }

    /// The key each mutation's value is sealed with, making the keys
    /// this origin lacks (each logged in an entry of its own, so before
    /// the write's entry); `None` for a value stored in the clear (a
    /// tombstone, the system tenant, or a node without a master key).
    /// Runs of one tenant, as in most batches, are looked up once.
    pub(super) fn sealers_for(
        &mut self,
        group: &mut Group,
        mutations: &[Mutation],
        wall: u64,
    ) -> Result<Vec<Option<ValueSealer>>, StorageError> {
        let mut sealers = Vec::with_capacity(mutations.len());
        let mut last: Option<(&[u8], Option<ValueSealer>)> = None;
        for mutation in mutations {
            if !self.keys.vault.is_sealing() || !matches!(mutation.kind, MutationKind::Put { .. }) {
                sealers.push(None);
                continue;
            }
            let tenant_bytes = tenant_component(&mutation.key);
            if let Some((bytes, sealer)) = &last
                && *bytes == tenant_bytes
            {
                sealers.push(sealer.clone());
                continue;
            }
            // A tenant without a zero byte is its own UTF-8 bytes: looked
            // up without decoding (an allocation per value otherwise).
            let decoded;
            let tenant = match std::str::from_utf8(tenant_bytes) {
                Ok(tenant) if !tenant_bytes.contains(&0) => tenant,
                _ => {
                    decoded = decode_tenant(&mutation.key)?;
                    &decoded
                }
            };
            let sealer =
                if tenant == SYSTEM_TENANT { None } else { Some(self.tenant_sealer(group, tenant, wall)?) };
            last = Some((tenant_bytes, sealer.clone()));
            sealers.push(sealer);
        }
        Ok(sealers)
    }

    /// This origin's current key for `tenant`, made first if it has none
    /// (logged in an entry of its own, in `group`).
    pub(super) fn tenant_sealer(
        &mut self,
        group: &mut Group,
        tenant: &str,
        wall: u64,
    ) -> Result<ValueSealer, StorageError> {
        if !self.keys.current.contains_key(tenant) {
            self.make_key(group, tenant, wall)?;
        }
        let current = &self.keys.current[tenant];
        Ok((current.id, current.sealer.clone()))
    }

    /// Makes this origin's key for `tenant`, logged in an entry of its
    /// own, and makes it the tenant's current key.
    fn make_key(&mut self, group: &mut Group, tenant: &str, wall: u64) -> Result<(), StorageError> {
        let made_at = self.clock.tick(wall);
        let masters = self.keys.vault.masters().expect("tenants are sealed only with master keys");
        let id = KeyId(self.keys.highest_id.checked_add(1).ok_or_else(|| StorageError::NotAccepting {
            reason: "this origin has used every data key id; restore it as a new incarnation".into(),
        })?);
        let data_key = DataKey::generate(id);
        let key = KeyRef { tenant: tenant.to_string(), origin: self.origin, id };
        let record_key = encode_key(&key.record_key());
        let existing = self.current(&record_key, &mut group.staged)?;
        let wrapped = masters.current().wrap(tenant, &data_key).encode();
        let kind = MutationKind::Put {
            value: wrapped,
            compression: Compression::None,
            expires_at_ms: None,
            seal: None,
            client_key: None,
        };
        let entry = LogEntry {
            origin: self.origin,
            seq: self.next_seq,
            hlc: made_at,
            mutations: vec![Mutation { key: record_key, kind }],
        };
        self.next_seq += 1;
        self.log_and_stage(group, entry, vec![existing]);
        let sealer = Arc::new(data_key.sealer_for(&self.origin.to_bytes()));
        self.keys.highest_id = id.0;
        self.keys.vault.remember(key, sealer.clone());
        self.keys.current.insert(tenant.to_string(), CurrentKey { id, sealer, made_at });
        tracing::info!(tenant = %tenant, key_id = id.0, origin = %self.origin, "made a data key");
        Ok(())
    }

    /// Seals the puts of `entry` that have a sealer, in place.
    pub(super) fn seal_entry(entry: &mut LogEntry, sealers: &[Option<ValueSealer>]) {
        let stamp = stamp_bytes(&entry.stamp());
        for (index, (mutation, sealer)) in entry.mutations.iter_mut().zip(sealers).enumerate() {
            let (Some((id, sealer)), MutationKind::Put { value, seal, .. }) = (sealer, &mut mutation.kind)
            else {
                continue;
            };
            let index = u32::try_from(index).expect("a batch holds far fewer than 2^32 records");
            let key_id = id.0.to_be_bytes();
            let at = NonceParts { seq: entry.seq, index };
            // In place: staging left room for the tag, so the writer
            // neither allocates nor frees a value here.
            sealer.seal_in_place(at, &associated_data(&mutation.key, &key_id, &stamp), value);
            *seal = Some(Seal::at(id.0, entry.seq, index));
        }
    }
}

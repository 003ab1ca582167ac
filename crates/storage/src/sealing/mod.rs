//! Sealed storage: values encrypted at rest (see `consensusdb-seal` for
//! the scheme). This module decides which key seals what and finds keys
//! to open values with:
//!
//! - [`key_records`]: where wrapped data keys live and how they are named;
//! - [`admin`]: rotating a tenant's keys, re-wrapping every key under the
//!   current master key, listing keys, shredding;
//! - [`master_reload`]: putting a new master key file in force on a
//!   running node, once it is shown to lose no key;
//! - [`Vault`]: the node's master keys and the data keys opened so far
//!   (kept in `opened_keys`), shared by readers and the writer;
//! - the writer seals each value after giving its log entry a seq
//!   (`writer/sealing.rs`).
//!
//! What a sealed value is bound to (its associated data): the encoded
//! record key, the key id and the stamp. A ciphertext copied onto another
//! record, another version or another key does not open.
//!
//! - [`reencrypt`]: sealing a tenant's values again, in the background,
//!   under keys made after its last rotation.

pub(crate) mod admin;
pub(crate) mod key_records;
pub(crate) mod master_reload;
mod opened_keys;
pub(crate) mod reencrypt;
pub(crate) mod reencryption_progress;
mod tenant_walk;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use consensusdb_seal::{DataKey, KeyId, MasterKeys, SealError, Sealer, WrappedKey};
use consensusdb_types::key_codec::{decode_key, encode_key};
use consensusdb_types::{Head, Origin, Stamp, stored_value};
use rocksdb::DB;

use crate::StorageError;
use crate::columns::{self, RECORDS, VALUES};
use key_records::KeyRef;
use opened_keys::OpenedKeys;

/// The associated data of a sealed value.
pub(crate) fn associated_data<'a>(
    encoded_key: &'a [u8],
    key_id: &'a [u8; 4],
    stamp: &'a [u8; 28],
) -> [&'a [u8]; 3] {
    [encoded_key, key_id, stamp]
}

/// A stamp as associated data: its HLC, then its origin.
pub(crate) fn stamp_bytes(stamp: &Stamp) -> [u8; 28] {
    let mut out = [0; 28];
    out[..8].copy_from_slice(&stamp.hlc.to_be_bytes());
    out[8..].copy_from_slice(&stamp.origin.to_bytes());
    out
}

/// The master keys and the data keys opened so far.
pub(crate) struct Vault {
    /// `None`: the node runs unsealed (development mode). It still reads
    /// values stored in the clear, and refuses sealed ones clearly.
    /// Replaced whole when the master key file is reloaded; read only to
    /// unwrap or wrap a data key, never per value.
    masters: Option<RwLock<Arc<MasterKeys>>>,
    /// Each opened key's sealer for its origin, as unwrapping and
    /// deriving one costs microseconds.
    opened: OpenedKeys,
}

impl Vault {
    pub(crate) fn new(masters: Option<Arc<MasterKeys>>) -> Self {
        Self { masters: masters.map(RwLock::new), opened: OpenedKeys::with_capacity(OpenedKeys::CAPACITY) }
    }

    /// Whether new values are sealed.
    pub(crate) fn is_sealing(&self) -> bool {
        self.masters.is_some()
    }

    /// The master keys in force, when sealing.
    pub(crate) fn masters(&self) -> Option<Arc<MasterKeys>> {
        let masters = self.masters.as_ref()?;
        Some(masters.read().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// Puts `new` in force in place of `replaced`, unless the master keys
    /// changed since `replaced` was read (another reload came first).
    /// Returns whether it did. Opened data keys stay opened: a data key
    /// is the same whichever master key wraps it.
    fn replace_masters(&self, replaced: &Arc<MasterKeys>, new: Arc<MasterKeys>) -> bool {
        let Some(masters) = &self.masters else { return false };
        let mut masters = masters.write().unwrap_or_else(PoisonError::into_inner);
        if !Arc::ptr_eq(&masters, replaced) {
            return false;
        }
        *masters = new;
        true
    }

    /// Remembers a key the writer has just made.
    pub(crate) fn remember(&self, key: KeyRef, sealer: Arc<Sealer>) {
        self.opened.insert(key, sealer);
    }

    /// Forgets keys whose records now hold their destruction, so no later
    /// read opens a value with them. The committer calls it once the
    /// destruction is written (the `opened_keys` module says why then).
    pub(crate) fn forget(&self, keys: &[KeyRef]) {
        if !keys.is_empty() {
            self.opened.forget(keys);
        }
    }

    /// Forgets every opened key; they are opened again from their records.
    pub(crate) fn forget_all(&self) {
        self.opened.forget_all();
    }

    /// The sealer of `key`: opened before, or unwrapped from its record.
    pub(crate) fn sealer(&self, db: &DB, key: &KeyRef) -> Result<Arc<Sealer>, Unopenable> {
        let miss = match self.opened.get(key) {
            Ok(sealer) => return Ok(sealer),
            Err(miss) => miss,
        };
        let sealer = Arc::new(self.data_key(db, key)?.sealer_for(&key.origin.to_bytes()));
        self.opened.keep(miss, key.clone(), sealer.clone());
        Ok(sealer)
    }

    /// The data key `key`, unwrapped with the master keys in force (see
    /// [`data_key_under`]).
    pub(crate) fn data_key(&self, db: &DB, key: &KeyRef) -> Result<DataKey, Unopenable> {
        let masters = self.masters().ok_or(Unopenable::NoMasterKey)?;
        data_key_under(&masters, db, key)
    }

    /// Opens the stored bytes of the sealed version `head` of
    /// `encoded_key`, trying `last` (the sealer a reader used last) before
    /// the vault, and leaving there the sealer it used. Never returns bytes
    /// that did not authenticate.
    pub(crate) fn open_with(
        &self,
        db: &DB,
        encoded_key: &[u8],
        tenant: &str,
        head: &Head,
        stored: &[u8],
        last: &LastSealer,
    ) -> Result<Vec<u8>, StorageError> {
        let Some(seal) = head.seal else { return Ok(stored.to_vec()) };
        let refused = |reason: Unopenable| refusal(encoded_key, reason);
        // The writer's key, unless a re-encryption sealed it again since.
        let key_origin = seal.key_origin(&head.stamp);
        let key_of = || KeyRef { tenant: tenant.to_string(), origin: key_origin, id: KeyId(seal.key_id) };
        let (key_id, stamp) = (seal.key_id.to_be_bytes(), stamp_bytes(&head.stamp));
        let open = |sealer: &Sealer| {
            sealer
                .open_parts(
                    KeyId(seal.key_id),
                    &seal.nonce,
                    stored,
                    &associated_data(encoded_key, &key_id, &stamp),
                )
                .map_err(|error| refused(Unopenable::Refused(key_of(), error)))
        };
        if let Some(opened) = last.with(tenant, key_origin, seal.key_id, open) {
            return opened;
        }
        let key = key_of();
        let sealer = self.sealer(db, &key).map_err(refused)?;
        let opened = open(&sealer);
        last.set(key, sealer);
        opened
    }

    /// The newest key of each tenant that `origin` made (live, and made
    /// after the tenant's last rotation), and the highest key id it used:
    /// what the writer seals with after a restart.
    pub(crate) fn own_keys(&self, db: &DB, origin: Origin) -> Result<OwnKeys, StorageError> {
        let mut rotated_at = HashMap::new();
        system_records(db, key_records::ROTATIONS_REGION, |key, head| {
            if !head.tombstone {
                rotated_at.insert(key.row.minor, head.stamp.hlc);
            }
        })?;
        let mut own = OwnKeys::default();
        system_records(db, key_records::KEYS_REGION, |key, head| {
            let Some(key) = KeyRef::of_record(&key).filter(|key| key.origin == origin) else { return };
            own.highest_id = own.highest_id.max(key.id.0);
            let rotated = rotated_at.get(&key.tenant).is_some_and(|&at| head.stamp.hlc <= at);
            if head.tombstone || rotated {
                return;
            }
            let newest = own.newest.entry(key.tenant.clone()).or_insert((key.id, head.stamp.hlc));
            if key.id > newest.0 {
                *newest = (key.id, head.stamp.hlc);
            }
        })?;
        Ok(own)
    }
}

/// The data key `key`, unwrapped with `masters`: from its own record if this node
/// holds the master key that wrapped it, or else from a re-wrapped
/// form under a master key it holds (the newest first). Its own record
/// alone decides whether the key exists.
pub(crate) fn data_key_under(masters: &MasterKeys, db: &DB, key: &KeyRef) -> Result<DataKey, Unopenable> {
    let damaged = |why: String| Unopenable::KeyDamaged(key.clone(), why);
    let wrapped = match wrapping_at(db, &key.encoded_record_key(), key)? {
        Wrapping::Missing => return Err(Unopenable::KeyMissing(key.clone())),
        Wrapping::Destroyed => return Err(Unopenable::KeyDestroyed(key.clone())),
        Wrapping::Wrapped(wrapped) => wrapped,
    };
    let held = masters.ids();
    if held.contains(&wrapped.master_id) {
        return masters.unwrap(&key.tenant, &wrapped).map_err(|e| damaged(e.to_string()));
    }
    for master in held.into_iter().rev() {
        let at = encode_key(&key.rewrapped_record_key(master));
        if let Wrapping::Wrapped(rewrapped) = wrapping_at(db, &at, key)?
            && rewrapped.master_id == master
        {
            return masters.unwrap(&key.tenant, &rewrapped).map_err(|e| damaged(e.to_string()));
        }
    }
    Err(damaged(SealError::UnknownMasterKey { id: wrapped.master_id.0 }.to_string()))
}

/// What a record of a data key, or of one of its re-wrapped forms, holds.
pub(crate) enum Wrapping {
    Missing,
    Destroyed,
    Wrapped(WrappedKey),
}

impl Wrapping {
    /// The master key it is wrapped under, if it holds a wrapped key.
    pub(crate) fn master_id(&self) -> Option<KeyId> {
        match self {
            Wrapping::Wrapped(wrapped) => Some(wrapped.master_id),
            Wrapping::Missing | Wrapping::Destroyed => None,
        }
    }
}

/// The wrapped key the system record `record_key` holds for `key`.
pub(crate) fn wrapping_at(db: &DB, record_key: &[u8], key: &KeyRef) -> Result<Wrapping, Unopenable> {
    let head = db.get_pinned_cf(columns::handle(db, RECORDS), record_key).map_err(Unopenable::engine)?;
    let damaged = |why: String| Unopenable::KeyDamaged(key.clone(), why);
    match head.map(|bytes| Head::decode(&bytes)) {
        None => return Ok(Wrapping::Missing),
        Some(Err(error)) => return Err(damaged(error.to_string())),
        Some(Ok(head)) if head.tombstone => return Ok(Wrapping::Destroyed),
        Some(Ok(head)) => debug_assert!(head.seal.is_none(), "the system tenant is never sealed"),
    }
    let entry = db
        .get_pinned_cf(columns::handle(db, VALUES), record_key)
        .map_err(Unopenable::engine)?
        .ok_or_else(|| damaged("its record has no value".into()))?;
    let wrapped = stored_value::decode(&entry).map_err(|e| damaged(e.to_string()))?;
    let wrapped = WrappedKey::decode(wrapped).map_err(|e| damaged(e.to_string()))?;
    if wrapped.data_id != key.id {
        return Err(damaged(format!("its record holds key {}", wrapped.data_id.0)));
    }
    Ok(Wrapping::Wrapped(wrapped))
}

/// Visits the key and head of every record of a system tenant region.
pub(crate) fn system_records(
    db: &DB,
    region: &str,
    mut visit: impl FnMut(consensusdb_types::RecordKey, Head),
) -> Result<(), StorageError> {
    let prefix = consensusdb_types::key_codec::region_prefix(consensusdb_types::SYSTEM_TENANT, region);
    let mut iter = db.raw_iterator_cf(columns::handle(db, RECORDS));
    iter.seek(&prefix);
    while let (Some(key), Some(head)) = (iter.key(), iter.value()) {
        if !key.starts_with(&prefix) {
            break;
        }
        visit(decode_key(key)?, Head::decode(head)?);
        iter.next();
    }
    iter.status()?;
    Ok(())
}

/// The sealer a reader used last, with its key: a walk meets runs of
/// values sealed under one key, and this spares each a lookup in the
/// vault (a lock, a hash and an allocation). A reader is used by one
/// thread and reads one snapshot: a scan that began before a shred keeps
/// opening, with the key it holds here, values of that snapshot, as a
/// read that began before the shred would have returned them.
#[derive(Default)]
pub(crate) struct LastSealer(RefCell<Option<(KeyRef, Arc<Sealer>)>>);

impl LastSealer {
    /// Runs `work` with the last sealer if it is the one of that key.
    /// Borrowed, not cloned: a scan calls this for every value, and an
    /// `Arc` clone is two atomic operations each time.
    fn with<T>(&self, tenant: &str, origin: Origin, id: u32, work: impl FnOnce(&Sealer) -> T) -> Option<T> {
        let last = self.0.borrow();
        let (key, sealer) = last.as_ref()?;
        (key.id.0 == id && key.origin == origin && key.tenant == tenant).then(|| work(sealer))
    }

    fn set(&self, key: KeyRef, sealer: Arc<Sealer>) {
        *self.0.borrow_mut() = Some((key, sealer));
    }

    /// One that holds `sealer` for `key` already.
    pub(crate) fn holding(key: KeyRef, sealer: Arc<Sealer>) -> Self {
        Self(RefCell::new(Some((key, sealer))))
    }
}

/// The keys an origin made, as found on disk.
#[derive(Debug, Default)]
pub(crate) struct OwnKeys {
    /// Per tenant: the newest live key and the HLC it was made at.
    pub(crate) newest: HashMap<String, (KeyId, u64)>,
    /// The highest key id the origin used, live or destroyed: ids are
    /// never reused.
    pub(crate) highest_id: u32,
}

/// Why a sealed value cannot be opened here.
#[derive(Debug)]
pub(crate) enum Unopenable {
    NoMasterKey,
    KeyMissing(KeyRef),
    KeyDestroyed(KeyRef),
    KeyDamaged(KeyRef, String),
    Refused(KeyRef, SealError),
    Engine(String),
}

impl Unopenable {
    fn engine(error: rocksdb::Error) -> Self {
        Self::Engine(error.to_string())
    }
}

impl std::fmt::Display for Unopenable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unopenable::NoMasterKey => f.write_str(
                "the value is sealed and this node runs without a master key (development mode); \
                 start it with the cluster's master key file",
            ),
            Unopenable::KeyMissing(key) => write!(f, "{key} is not on this node"),
            Unopenable::KeyDestroyed(key) => {
                write!(f, "{key} was destroyed (the tenant was shredded): its values are gone for good")
            }
            Unopenable::KeyDamaged(key, why) => write!(f, "{key} cannot be unwrapped: {why}"),
            Unopenable::Refused(key, SealError::Tampered) => write!(
                f,
                "the stored bytes do not authenticate under {key}: they were altered on disk \
                 (or moved from another record); no bytes are returned"
            ),
            Unopenable::Refused(key, error) => write!(f, "{key}: {error}"),
            Unopenable::Engine(error) => write!(f, "storage engine: {error}"),
        }
    }
}

/// The error of a read of the sealed value at `encoded_key` that cannot
/// be opened.
pub(crate) fn refusal(encoded_key: &[u8], reason: Unopenable) -> StorageError {
    StorageError::Unopenable {
        key: describe_key(encoded_key),
        shredded: matches!(reason, Unopenable::KeyDestroyed(_)),
        reason: reason.to_string(),
    }
}

/// A stored key as `tenant/region/minor[/time]`, or hex if it does not
/// decode, for messages.
pub(crate) fn describe_key(encoded: &[u8]) -> String {
    match decode_key(encoded) {
        Ok(key) => match key.time {
            Some(time) => format!("{}/{}/{}/{time}", key.row.major, key.row.region, key.row.minor),
            None => format!("{}/{}/{}", key.row.major, key.row.region, key.row.minor),
        },
        Err(_) => format!("stored key {}", crate::error::hex(encoded)),
    }
}

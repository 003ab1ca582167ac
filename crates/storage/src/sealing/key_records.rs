//! Where data keys live: one record per key in the system tenant, which
//! the mesh replicates like any data, so every node holds every wrapped
//! key (and a node that bootstraps gets them with its snapshot).
//!
//! `_consensusdb / keys / <tenant>/<origin hex>/<key id hex>`: untimed;
//! the value is the [`WrappedKey`](consensusdb_seal::WrappedKey). Each
//! origin makes its own keys and numbers them itself, so two nodes making
//! a tenant's first key at once write two different records and never
//! collide. A key's record is logged before any value it seals, in its
//! origin's log, and a replica applies an origin's entries in order: a
//! replica holds the key before it holds the value. Destroying a key (a
//! shred) writes a tombstone over its record, which replicates too.
//!
//! `_consensusdb / keys_rewrapped / <tenant>/<origin hex>/<key id hex>/<master id hex>`:
//! the same data key wrapped again under a newer master key, so the older
//! master key can be retired. Beside the key's record, never over it: the
//! key's own record alone says whether the key exists. A rewrite of it
//! would carry a newer stamp, so a re-wrap on one node that crossed a shred
//! on another would bring the destroyed key back everywhere, and a key
//! would look newer than the rotation that retired it. A shred destroys
//! re-wrapped forms with the key.
//!
//! Beside them, one untimed record per tenant in each of:
//! - `key_rotations / <tenant>`: its stamp is when the tenant's keys were
//!   last rotated; every node's writer stops sealing with a key it made
//!   before that, and makes a new one;
//! - `shreds / <tenant>`: its stamp is when the tenant was shredded;
//!   records written before it are removed;
//! - `shreds_removed / <tenant>`: the removal of a shred's records is done
//!   (its value: the HLC of the shred it finished);
//! - `reencryptions / <tenant>`: its stamp is when a re-encryption of the
//!   tenant's values started, on the node of its origin;
//! - `reencryptions_done / <tenant>`: that re-encryption finished (its
//!   value: the HLC of the start it finished).

use consensusdb_seal::KeyId;
use consensusdb_types::key_codec::encode_key;
use consensusdb_types::{Origin, RecordKey, RowKey, SYSTEM_TENANT};

use crate::error::hex;

/// The system tenant's region of data keys.
pub const KEYS_REGION: &str = "keys";
/// The system tenant's region of data keys re-wrapped under newer master keys.
pub const REWRAPPED_REGION: &str = "keys_rewrapped";
/// The system tenant's region of key rotations, one record per tenant.
pub const ROTATIONS_REGION: &str = "key_rotations";
/// The system tenant's region of shreds, one record per tenant.
pub const SHREDS_REGION: &str = "shreds";
/// The system tenant's region marking, per tenant, that a shred's records
/// were all removed (newer than the shred record: that shred is done).
pub const SHRED_REMOVALS_REGION: &str = "shreds_removed";
/// The system tenant's region of re-encryptions started, one per tenant.
pub const REENCRYPTIONS_REGION: &str = "reencryptions";
/// The system tenant's region marking, per tenant, that a re-encryption
/// finished.
pub const REENCRYPTIONS_DONE_REGION: &str = "reencryptions_done";

/// The record marking `tenant`'s last key rotation.
pub(crate) fn rotation_key(tenant: &str) -> RecordKey {
    RowKey::new(SYSTEM_TENANT, ROTATIONS_REGION, tenant).at(None)
}

/// The record marking `tenant`'s shred.
pub(crate) fn shred_key(tenant: &str) -> RecordKey {
    RowKey::new(SYSTEM_TENANT, SHREDS_REGION, tenant).at(None)
}

/// The record marking that `tenant`'s shredded records were removed.
pub(crate) fn shred_removal_key(tenant: &str) -> RecordKey {
    RowKey::new(SYSTEM_TENANT, SHRED_REMOVALS_REGION, tenant).at(None)
}

/// The record marking that a re-encryption of `tenant` started.
pub(crate) fn reencryption_key(tenant: &str) -> RecordKey {
    RowKey::new(SYSTEM_TENANT, REENCRYPTIONS_REGION, tenant).at(None)
}

/// The record marking that a re-encryption of `tenant` finished.
pub(crate) fn reencryption_done_key(tenant: &str) -> RecordKey {
    RowKey::new(SYSTEM_TENANT, REENCRYPTIONS_DONE_REGION, tenant).at(None)
}

/// Which data key: a tenant's, made by an origin, numbered by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KeyRef {
    pub(crate) tenant: String,
    pub(crate) origin: Origin,
    pub(crate) id: KeyId,
}

impl KeyRef {
    /// The key of its record.
    pub(crate) fn record_key(&self) -> RecordKey {
        let minor = format!("{}/{}/{:08x}", self.tenant, hex(&self.origin.to_bytes()), self.id.0);
        RowKey::new(SYSTEM_TENANT, KEYS_REGION, minor).at(None)
    }

    /// [`KeyRef::record_key`], encoded.
    pub(crate) fn encoded_record_key(&self) -> Vec<u8> {
        encode_key(&self.record_key())
    }

    /// The key of its re-wrapped form under master key `master`.
    pub(crate) fn rewrapped_record_key(&self, master: KeyId) -> RecordKey {
        let minor = format!("{}/{:08x}", self.record_key().row.minor, master.0);
        RowKey::new(SYSTEM_TENANT, REWRAPPED_REGION, minor).at(None)
    }

    /// The key and master key of a re-wrapped form's record, if it is one.
    pub(crate) fn of_rewrapped_record(key: &RecordKey) -> Option<(Self, KeyId)> {
        if key.row.major != SYSTEM_TENANT || key.row.region != REWRAPPED_REGION || key.time.is_some() {
            return None;
        }
        let (minor, master) = key.row.minor.rsplit_once('/')?;
        let master = KeyId(u32::from_str_radix(master, 16).ok()?);
        let key = Self::of_record(&RowKey::new(SYSTEM_TENANT, KEYS_REGION, minor).at(None))?;
        Some((key, master))
    }

    /// The key a record of the keys region holds, if it is one. Split from
    /// the right: a tenant may hold `/`, the origin and id never do.
    pub(crate) fn of_record(key: &RecordKey) -> Option<Self> {
        if key.row.major != SYSTEM_TENANT || key.row.region != KEYS_REGION || key.time.is_some() {
            return None;
        }
        let mut parts = key.row.minor.rsplitn(3, '/');
        let id = u32::from_str_radix(parts.next()?, 16).ok()?;
        let origin = Origin::from_bytes(&unhex(parts.next()?)?).ok()?;
        let tenant = parts.next()?.to_string();
        Some(Self { tenant, origin, id: KeyId(id) })
    }
}

impl std::fmt::Display for KeyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "data key {} of tenant {:?} made by {}", self.id.0, self.tenant, self.origin)
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use consensusdb_types::NodeId;

    use super::*;

    #[test]
    fn a_key_ref_survives_its_record_key_even_with_slashes_in_the_tenant() {
        let key = KeyRef {
            tenant: "acme/eu/01".into(),
            origin: Origin { node: NodeId(u128::MAX - 5), incarnation: 3 },
            id: KeyId(0x1234_5678),
        };
        assert_eq!(KeyRef::of_record(&key.record_key()), Some(key.clone()));
        let rewrapped = key.rewrapped_record_key(KeyId(7));
        assert_eq!(KeyRef::of_rewrapped_record(&rewrapped), Some((key.clone(), KeyId(7))));
        assert_eq!(KeyRef::of_record(&rewrapped), None);
        assert_eq!(KeyRef::of_rewrapped_record(&key.record_key()), None);
        let other = RowKey::new(SYSTEM_TENANT, "tokens", key.record_key().row.minor).at(None);
        assert_eq!(KeyRef::of_record(&other), None);
        let garbage = RowKey::new(SYSTEM_TENANT, KEYS_REGION, "acme/zz/1").at(None);
        assert_eq!(KeyRef::of_record(&garbage), None);
    }
}

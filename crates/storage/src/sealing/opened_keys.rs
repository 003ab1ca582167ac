//! The data keys a node has opened, each as its sealer for one origin,
//! kept so that a read does not unwrap its key again (a point lookup, an
//! AES-GCM unwrap, an HKDF and an AES key schedule: microseconds, against
//! a fraction of one to open a value).
//!
//! Two things make it more than a map:
//!
//! - **It is bounded.** A node with a million tenants would otherwise keep
//!   a sealer for every key it ever opened. At [`OpenedKeys::CAPACITY`]
//!   a random half of the entries goes; the next read of one of those
//!   keys unwraps it again.
//! - **A destroyed key does not come back.** Once a key's destruction (a
//!   shred, written here or replicated) is in RocksDB, the committer
//!   forgets the key (after a snapshot install, every key is forgotten). A reader that missed before that, read the key's
//!   record while it was still live, and kept what it unwrapped after the
//!   forget would leave the destroyed key here, opening the shredded
//!   tenant's values on this node until a restart. So a miss carries the
//!   count of forgets it saw, and what it unwrapped is kept only if no key
//!   was forgotten since; a miss after the forget reads the destruction.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use consensusdb_seal::Sealer;

use super::key_records::KeyRef;

/// The opened keys; see the module documentation.
pub(crate) struct OpenedKeys {
    inner: RwLock<Inner>,
    capacity: usize,
}

struct Inner {
    sealers: HashMap<KeyRef, Arc<Sealer>>,
    /// Keys forgotten so far (any key): a miss that saw fewer may have
    /// read a record that no longer holds a live key.
    forgets: u64,
}

/// A lookup that missed: what [`OpenedKeys::keep`] checks against.
#[must_use = "keep what was unwrapped with it"]
pub(crate) struct Miss {
    forgets: u64,
}

impl OpenedKeys {
    /// Sealers kept at most. Each is some 600 bytes (an AES-256 key
    /// schedule and a GHASH table), so about 10 MiB in all; one for every
    /// key of 16,384 tenant-origin pairs read often.
    pub(crate) const CAPACITY: usize = 16_384;

    /// An empty cache holding at most `capacity` sealers.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let inner = Inner { sealers: HashMap::new(), forgets: 0 };
        Self { inner: RwLock::new(inner), capacity: capacity.max(1) }
    }

    /// The sealer of `key`, or a [`Miss`] to keep its unwrapped sealer with.
    pub(crate) fn get(&self, key: &KeyRef) -> Result<Arc<Sealer>, Miss> {
        let inner = self.read();
        inner.sealers.get(key).cloned().ok_or(Miss { forgets: inner.forgets })
    }

    /// Keeps the sealer a reader unwrapped after `miss`, unless a key was
    /// forgotten since: then the record it read may be destroyed by now,
    /// and the next lookup reads it again.
    pub(crate) fn keep(&self, miss: Miss, key: KeyRef, sealer: Arc<Sealer>) {
        let mut inner = self.write();
        if inner.forgets == miss.forgets {
            inner.insert(key, sealer, self.capacity);
        }
    }

    /// Keeps the sealer of a key the writer has just made, which nothing
    /// can have destroyed yet.
    pub(crate) fn insert(&self, key: KeyRef, sealer: Arc<Sealer>) {
        self.write().insert(key, sealer, self.capacity);
    }

    /// Drops `keys`, and makes every miss before now keep nothing.
    pub(crate) fn forget(&self, keys: &[KeyRef]) {
        let mut inner = self.write();
        for key in keys {
            inner.sealers.remove(key);
        }
        inner.forgets += 1;
    }

    /// Drops every key, as [`OpenedKeys::forget`] does one.
    pub(crate) fn forget_all(&self) {
        let mut inner = self.write();
        inner.sealers.clear();
        inner.forgets += 1;
    }

    /// Sealers held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.read().sealers.len()
    }

    // A panic elsewhere while holding the lock leaves the map whole (each
    // change is one map operation), so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn insert(&mut self, key: KeyRef, sealer: Arc<Sealer>, capacity: usize) {
        if !self.sealers.contains_key(&key) {
            // A random half, in one pass: no bookkeeping on the read path
            // (as an LRU would need) and no key favoured but the one coming
            // in. The pass (a fraction of a millisecond at full capacity,
            // under the write lock) comes about once every capacity / 2
            // misses.
            while self.sealers.len() >= capacity {
                self.sealers.retain(|_, _| rand::random::<bool>());
            }
        }
        self.sealers.insert(key, sealer);
    }
}

#[cfg(test)]
mod tests {
    use consensusdb_seal::{DataKey, KeyId};
    use consensusdb_types::{NodeId, Origin};

    use super::*;

    fn key(tenant: &str, id: u32) -> (KeyRef, Arc<Sealer>) {
        let origin = Origin { node: NodeId::random(), incarnation: 1 };
        let sealer = Arc::new(DataKey::generate(KeyId(id)).sealer_for(&origin.to_bytes()));
        (KeyRef { tenant: tenant.into(), origin, id: KeyId(id) }, sealer)
    }

    #[test]
    fn what_a_reader_unwrapped_is_kept_unless_a_key_was_forgotten_meanwhile() {
        let opened = OpenedKeys::with_capacity(OpenedKeys::CAPACITY);
        let (acme, sealer) = key("acme", 1);

        // The control: nothing forgotten between the miss and the keep.
        let miss = opened.get(&acme).expect_err("not opened yet");
        opened.keep(miss, acme.clone(), sealer.clone());
        assert!(opened.get(&acme).is_ok());

        // The committer forgets the key (its destruction is written) after
        // a reader missed and read its still-live record: what the reader
        // unwrapped is not kept.
        opened.forget(std::slice::from_ref(&acme));
        let miss = opened.get(&acme).expect_err("forgotten");
        opened.forget(std::slice::from_ref(&acme));
        opened.keep(miss, acme.clone(), sealer.clone());
        assert!(opened.get(&acme).is_err(), "a key destroyed meanwhile came back");

        // Dropping every key counts as a forget too.
        let miss = opened.get(&acme).expect_err("forgotten");
        opened.forget_all();
        opened.keep(miss, acme.clone(), sealer);
        assert!(opened.get(&acme).is_err());
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity_and_keeps_the_newest_key() {
        let opened = OpenedKeys::with_capacity(3);
        for id in 1..=10 {
            let (key, sealer) = key("acme", id);
            opened.insert(key.clone(), sealer);
            assert!(opened.get(&key).is_ok(), "key {id} was not kept");
            assert!(opened.len() <= 3, "{} sealers held", opened.len());
        }
    }
}

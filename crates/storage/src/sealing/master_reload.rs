//! Putting a new master key file in force on a running node, the way a
//! node takes a new certificate: the operator replaces the file, and the
//! node reloads it (`consensusdb-node`'s reload task). A new set of keys
//! is taken only if it loses nothing: it must agree with the keys in use
//! on every id both hold (another cluster's file, or a damaged one, does
//! not), keep the key that wraps this node's new data keys and wrap under
//! no older one (a stale copy of the file, from before a promotion), and
//! unwrap every live data key the keys in use unwrap. Otherwise the keys
//! in use stay, and the refusal says why.

use std::sync::Arc;

use consensusdb_seal::MasterKeys;

use super::admin::live_data_keys;
use super::data_key_under;
use crate::store::run_blocking;
use crate::{StorageError, Store};

/// How many keys a refusal names; it counts them all.
const NAMED_IN_REFUSAL: usize = 5;

/// The master keys a node holds, by id: never their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeysInForce {
    /// Every key held, oldest first.
    pub held: Vec<u32>,
    /// Those staged: they unwrap, but wrap nothing yet.
    pub staged: Vec<u32>,
    /// The one that wraps new data keys.
    pub current: u32,
}

impl MasterKeysInForce {
    fn of(keys: &MasterKeys) -> Self {
        Self {
            held: keys.ids().into_iter().map(|id| id.0).collect(),
            staged: keys.staged_ids().into_iter().map(|id| id.0).collect(),
            current: keys.current().id().0,
        }
    }
}

/// What a reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeysReplaced {
    /// The keys now in force.
    pub now: MasterKeysInForce,
    /// The live data keys shown to unwrap under them.
    pub data_keys_checked: usize,
}

impl Store {
    /// The master keys in force; `None` when the node runs unsealed.
    pub fn master_keys_in_force(&self) -> Option<MasterKeysInForce> {
        self.shared.vault.masters().map(|keys| MasterKeysInForce::of(&keys))
    }

    /// Puts `new` in force in place of the master keys in use, if it loses
    /// nothing (see the module). A refusal changes nothing.
    pub async fn replace_master_keys(&self, new: MasterKeys) -> Result<MasterKeysReplaced, StorageError> {
        let (engine, vault) = (self.shared.engine.clone(), self.shared.vault.clone());
        run_blocking(move || {
            let db = &engine.db;
            let refused = |reason: String| StorageError::MasterKeysRefused { reason };
            let Some(old) = vault.masters() else {
                return Err(StorageError::Unsealed { what: "loading master keys".into() });
            };
            old.agrees_with(&new).map_err(|error| refused(error.to_string()))?;
            let current = old.current();
            if new.current().id() < current.id() {
                return Err(refused(format!(
                    "it would wrap new data keys under master key {}, older than the current one ({}): \
                     a copy of the file from before the promotion?",
                    new.current().id().0,
                    current.id().0
                )));
            }
            if !new.holds(current) {
                return Err(refused(format!(
                    "it lacks master key {}, which wraps the data keys this node makes now: \
                     promote a newer key, and let it reach every node, before retiring this one",
                    current.id().0
                )));
            }
            // A key the keys in use cannot unwrap either (a master key
            // this node never had) is not this reload's loss.
            let live = live_data_keys(db)?;
            let lost: Vec<String> = live
                .iter()
                .filter(|key| data_key_under(&old, db, key).is_ok() && data_key_under(&new, db, key).is_err())
                .map(ToString::to_string)
                .collect();
            if !lost.is_empty() {
                let named = lost.iter().take(NAMED_IN_REFUSAL).cloned().collect::<Vec<_>>().join(", ");
                return Err(refused(format!(
                    "{} live data key(s) would no longer unwrap on this node, among them {named}: \
                     run `consensusdb keys rewrap` and wait until its re-wrapped keys reach this node \
                     (`consensusdb keys list`), or keep the older master key",
                    lost.len()
                )));
            }
            let now = MasterKeysInForce::of(&new);
            if !vault.replace_masters(&old, Arc::new(new)) {
                return Err(refused(
                    "the master keys changed while this reload was checked: try again".into(),
                ));
            }
            Ok(MasterKeysReplaced { now, data_keys_checked: live.len() })
        })
        .await?
    }
}

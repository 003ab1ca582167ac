//! What an administrator does with data keys: rotate a tenant's,
//! re-wrap them all under the current master key (so an older one can be
//! retired), list them, and shred a tenant (destroy its keys everywhere,
//! then remove its records). Each change is a write to the system tenant, so it
//! replicates to every node, and every node's writer acts on it
//! (`writer/sealing.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use consensusdb_seal::{KeyId, WrappedKey};
use consensusdb_types::key_codec::encode_key;
use consensusdb_types::{Compression, FieldError, Head, Origin, SYSTEM_TENANT, Stamp, stored_value};
use tokio::sync::Semaphore;

use super::key_records::{
    KEYS_REGION, KeyRef, REWRAPPED_REGION, SHREDS_REGION, rotation_key, shred_key, shred_removal_key,
};
use super::tenant_walk::TenantWalk;
use super::{Wrapping, data_key_under, system_records, wrapping_at};
use crate::columns::{self, RECORDS, VALUES};
use crate::store::run_blocking;
use crate::{PutRecord, StorageError, Store};

/// A data key as listed: never its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyInfo {
    /// Its tenant.
    pub tenant: String,
    /// The origin that made it and seals with it.
    pub origin: Origin,
    /// Its number among that origin's keys.
    pub id: u32,
    /// The newest master key that wraps it (its own wrapping, or a
    /// re-wrapped form); `None` once destroyed.
    pub master_key_id: Option<u32>,
    /// When it was made, or destroyed (the HLC of its record's version).
    pub stamp: Stamp,
    /// Destroyed by a shred.
    pub destroyed: bool,
}

/// What a shred did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShredOutcome {
    /// Keys destroyed now.
    pub keys_destroyed: u32,
    /// When the shred took effect: records stamped at or before it are
    /// the tenant's shredded records.
    pub shredded_at: Stamp,
}

/// What a re-wrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapOutcome {
    /// The master key every live data key is now wrapped under (this
    /// node's current one).
    pub master_key_id: u32,
    /// Keys re-wrapped now.
    pub rewrapped: u32,
    /// Keys wrapped under it already (made under it, or re-wrapped before).
    pub already: u32,
    /// Keys this node could not unwrap, each with why: not re-wrapped.
    pub failed: Vec<String>,
}

/// Removals of a shredded tenant's records in flight at once.
const REMOVALS_IN_FLIGHT: usize = 64;

/// The outcome of a finished removal task.
fn joined<T>(done: Result<Result<T, StorageError>, tokio::task::JoinError>) -> Result<T, StorageError> {
    done.map_err(|error| StorageError::Io {
        context: "a removal task".into(),
        source: std::io::Error::other(error.to_string()),
    })?
}

/// A tenant an administrator names, checked like a record's tenant; the
/// system tenant's keys are not the administrator's to change.
pub(crate) fn check_tenant(tenant: &str, store: &Store) -> Result<(), StorageError> {
    consensusdb_types::key::validate_component("tenant", tenant, store.limits())?;
    if tenant == SYSTEM_TENANT {
        return Err(
            FieldError::new("tenant", format!("{SYSTEM_TENANT:?} is the cluster's own tenant")).into()
        );
    }
    Ok(())
}

/// A record of the system tenant, stored as it is (never sealed).
fn system_record(key: consensusdb_types::RecordKey, value: Vec<u8>) -> PutRecord {
    PutRecord { key, value, compression: Compression::None, ttl_ms: None, if_absent: false, client_key: None }
}

/// A marker record of the system tenant (its stamp is what counts).
pub(crate) fn marker(key: consensusdb_types::RecordKey, what: &str) -> PutRecord {
    system_record(key, what.as_bytes().to_vec())
}

impl Store {
    /// Rotates `tenant`'s data keys: every node seals the tenant's new
    /// values under a new key of its own once the rotation reaches it;
    /// what older keys sealed stays readable. Returns when it took effect.
    pub async fn rotate_tenant_key(&self, tenant: &str) -> Result<Stamp, StorageError> {
        check_tenant(tenant, self)?;
        let ack = self.put(marker(rotation_key(tenant), "rotated"), None).await?;
        Ok(ack.heads[0].stamp)
    }

    /// The data keys of `tenant`, or of every tenant, in key order.
    pub async fn data_keys(&self, tenant: Option<String>) -> Result<Vec<DataKeyInfo>, StorageError> {
        let engine = self.shared.engine.clone();
        run_blocking(move || {
            let db = &engine.db;
            let rewrapped = newest_rewraps(db)?;
            let mut keys = Vec::new();
            system_records(db, KEYS_REGION, |record, head| {
                let Some(key) = KeyRef::of_record(&record) else { return };
                if tenant.as_ref().is_some_and(|tenant| *tenant != key.tenant) {
                    return;
                }
                keys.push((key, record, head));
            })?;
            keys.into_iter()
                .map(|(key, record, head)| {
                    let master_key_id = if head.tombstone {
                        None
                    } else {
                        let own =
                            wrapping_at(db, &encode_key(&record), &key).ok().and_then(|w| w.master_id());
                        own.map(|id| id.0).max(rewrapped.get(&key).copied())
                    };
                    Ok(DataKeyInfo {
                        tenant: key.tenant,
                        origin: key.origin,
                        id: key.id.0,
                        master_key_id,
                        stamp: head.stamp,
                        destroyed: head.tombstone,
                    })
                })
                .collect()
        })
        .await?
    }

    /// Shreds `tenant`: marks when, then destroys every data key it has
    /// (tombstones over their records, which replicate: every node then
    /// refuses the tenant's values, and cannot open them ever again).
    /// Its records are removed by [`Store::remove_shredded`].
    pub async fn shred_tenant(&self, tenant: &str) -> Result<ShredOutcome, StorageError> {
        check_tenant(tenant, self)?;
        let shredded_at = self.put(marker(shred_key(tenant), "shredded"), None).await?.heads[0].stamp;
        let mut keys_destroyed = 0;
        for key in self.data_keys(Some(tenant.to_string())).await? {
            if key.destroyed {
                continue;
            }
            let key = KeyRef { tenant: key.tenant, origin: key.origin, id: KeyId(key.id) };
            self.remove(key.record_key(), None).await?;
            keys_destroyed += 1;
        }
        // The re-wrapped forms hold the same keys: gone with them.
        for record in self.rewrapped_records(tenant).await? {
            self.remove(record, None).await?;
        }
        tracing::warn!(tenant, keys_destroyed, "shredded the tenant: its data keys are destroyed");
        Ok(ShredOutcome { keys_destroyed, shredded_at })
    }

    /// The live records of re-wrapped forms of `tenant`'s keys.
    pub(crate) async fn rewrapped_records(
        &self,
        tenant: &str,
    ) -> Result<Vec<consensusdb_types::RecordKey>, StorageError> {
        let (engine, tenant) = (self.shared.engine.clone(), tenant.to_string());
        run_blocking(move || {
            let mut records = Vec::new();
            system_records(&engine.db, REWRAPPED_REGION, |record, head| {
                let ours = KeyRef::of_rewrapped_record(&record).is_some_and(|(key, _)| key.tenant == tenant);
                if ours && !head.tombstone {
                    records.push(record);
                }
            })?;
            Ok(records)
        })
        .await?
    }

    /// Removes the re-wrapped forms of keys whose own record says they were
    /// destroyed. No read uses one, but it keeps a wrapped copy of a
    /// destroyed key at rest: a re-wrap on one node that crossed a shred
    /// on another leaves one behind, which reaches every node after the
    /// shred removed the forms it knew of. Every node runs this now and
    /// then (`consensusdb-node`); the removals replicate. Returns how many.
    pub async fn remove_rewraps_of_destroyed_keys(&self) -> Result<usize, StorageError> {
        let engine = self.shared.engine.clone();
        let orphans = run_blocking(move || {
            let db = &engine.db;
            let mut forms = Vec::new();
            system_records(db, REWRAPPED_REGION, |record, head| {
                if let Some((key, _)) = KeyRef::of_rewrapped_record(&record).filter(|_| !head.tombstone) {
                    forms.push((record, key));
                }
            })?;
            let destroyed = |key: &KeyRef| {
                matches!(wrapping_at(db, &key.encoded_record_key(), key), Ok(Wrapping::Destroyed))
            };
            Ok::<_, StorageError>(
                forms
                    .into_iter()
                    .filter(|(_, key)| destroyed(key))
                    .map(|(record, _)| record)
                    .collect::<Vec<_>>(),
            )
        })
        .await??;
        for record in &orphans {
            self.remove(record.clone(), None).await?;
        }
        if !orphans.is_empty() {
            tracing::info!(removed = orphans.len(), "removed re-wrapped copies of destroyed data keys");
        }
        Ok(orphans.len())
    }

    /// Re-wraps every live data key, of every tenant and origin, under
    /// this node's current master key, beside its record (see
    /// `key_records`); the re-wrapped forms replicate. Once they have
    /// reached every node, older master keys unwrap nothing that is still
    /// needed, and can be retired from the master key file. Safe to run
    /// again: keys already wrapped under the current key are skipped.
    pub async fn rewrap_data_keys(&self) -> Result<RewrapOutcome, StorageError> {
        let (engine, vault) = (self.shared.engine.clone(), self.shared.vault.clone());
        let (current, plan) = run_blocking(move || {
            let db = &engine.db;
            let Some(masters) = vault.masters() else {
                return Err(StorageError::Unsealed { what: "re-wrapping data keys".into() });
            };
            // One set of master keys for the whole plan, even if a reload
            // replaces them meanwhile.
            let current = masters.current();
            let live = live_data_keys(db)?;
            let mut plan = RewrapPlan::default();
            for key in live {
                let wrapped_under = |at: &[u8]| wrapping_at(db, at, &key).ok().and_then(|w| w.master_id());
                let own = wrapped_under(&key.encoded_record_key());
                let again = wrapped_under(&encode_key(&key.rewrapped_record_key(current.id())));
                if own == Some(current.id()) || again == Some(current.id()) {
                    plan.already += 1;
                    continue;
                }
                match data_key_under(&masters, db, &key) {
                    Ok(data_key) => {
                        let wrapped = current.wrap(&key.tenant, &data_key);
                        plan.rewraps.push((key, wrapped));
                    }
                    Err(reason) => plan.failed.push(format!("{key}: {reason}")),
                }
            }
            Ok((current.id(), plan))
        })
        .await??;
        let mut rewrapped = 0;
        for (key, wrapped) in plan.rewraps {
            let record = key.rewrapped_record_key(current);
            self.put(system_record(record.clone(), wrapped.encode()), None).await?;
            // A shred here since the plan was made would have missed this
            // form: it goes too.
            if self.key_destroyed(key).await? {
                self.remove(record, None).await?;
                continue;
            }
            rewrapped += 1;
        }
        if !plan.failed.is_empty() {
            tracing::error!(failed = ?plan.failed, "some data keys could not be re-wrapped");
        }
        tracing::info!(master_key = current.0, rewrapped, already = plan.already, "re-wrapped the data keys");
        Ok(RewrapOutcome { master_key_id: current.0, rewrapped, already: plan.already, failed: plan.failed })
    }

    /// Whether `key`'s record is a tombstone: the key was shredded.
    async fn key_destroyed(&self, key: KeyRef) -> Result<bool, StorageError> {
        let engine = self.shared.engine.clone();
        run_blocking(move || match wrapping_at(&engine.db, &key.encoded_record_key(), &key) {
            Ok(wrapping) => Ok(matches!(wrapping, Wrapping::Destroyed)),
            Err(reason) => Err(StorageError::Unopenable {
                key: key.to_string(),
                reason: reason.to_string(),
                shredded: false,
            }),
        })
        .await?
    }

    /// Removes `tenant`'s shredded records ([`Store::remove_shredded`]) in
    /// the background, logging the outcome. If it stops (the node stops,
    /// or a write fails), [`Store::resume_shred_removals`] takes it up
    /// again at the next start.
    pub fn spawn_shred_removal(&self, tenant: String, shredded_at: Stamp) {
        let store = self.clone();
        self.spawn_while_open(async move {
            if let Err(error) = store.remove_shredded(&tenant, shredded_at).await {
                tracing::warn!(%tenant, %error, "removing the shredded tenant's records stopped: \
                    it resumes when this node starts again");
            }
        });
    }

    /// Runs `work` in the background until it ends or the store closes, so
    /// no task holds the data directory after the store let it go.
    pub(crate) fn spawn_while_open(&self, work: impl Future<Output = ()> + Send + 'static) {
        let mut closing = self.shared.closing.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                () = work => {}
                _ = closing.wait_for(|closing| *closing) => {}
            }
        });
    }

    /// Marks the task that started at `started` finished (see
    /// [`Store::unfinished`]): the record holds that start's HLC.
    pub(crate) async fn mark_finished(
        &self,
        done_key: consensusdb_types::RecordKey,
        started: Stamp,
    ) -> Result<(), StorageError> {
        self.put(system_record(done_key, started.hlc.to_be_bytes().to_vec()), None).await?;
        Ok(())
    }

    /// The shreds this node made (in any incarnation) whose records it has
    /// not finished removing: each tenant and when its shred took effect.
    pub async fn pending_shred_removals(&self) -> Result<Vec<(String, Stamp)>, StorageError> {
        self.unfinished(SHREDS_REGION, shred_removal_key).await
    }

    /// The tasks this node started (in any incarnation) and has not
    /// finished, each tenant with when its task started: marked by a
    /// record per tenant in `started_region` whose stamp is this node's,
    /// and finished by a record at `done_key(tenant)` holding the HLC of
    /// the start it finished (so a newer start is pending again).
    pub(crate) async fn unfinished(
        &self,
        started_region: &'static str,
        done_key: fn(&str) -> consensusdb_types::RecordKey,
    ) -> Result<Vec<(String, Stamp)>, StorageError> {
        let (engine, node) = (self.shared.engine.clone(), self.origin().node);
        run_blocking(move || {
            let db = &engine.db;
            let mut started = Vec::new();
            system_records(db, started_region, |record, head| {
                if !head.tombstone && head.stamp.origin.node == node {
                    started.push((record.row.minor, head.stamp));
                }
            })?;
            let finished = |tenant: &str| -> Result<Option<u64>, StorageError> {
                let record = encode_key(&done_key(tenant));
                let Some(head) = db.get_pinned_cf(columns::handle(db, RECORDS), &record)? else {
                    return Ok(None);
                };
                if Head::decode(&head)?.tombstone {
                    return Ok(None);
                }
                let value = db.get_pinned_cf(columns::handle(db, VALUES), &record)?;
                Ok(value.and_then(|value| {
                    let hlc = stored_value::decode(&value).ok()?.first_chunk::<8>().copied()?;
                    Some(u64::from_be_bytes(hlc))
                }))
            };
            let mut pending = Vec::with_capacity(started.len());
            for (tenant, at) in started {
                if finished(&tenant)?.is_none_or(|done| done < at.hlc) {
                    pending.push((tenant, at));
                }
            }
            Ok(pending)
        })
        .await?
    }

    /// Takes up in the background the removals of shredded records this
    /// node had not finished when it stopped. Returns how many.
    pub async fn resume_shred_removals(&self) -> Result<usize, StorageError> {
        let pending = self.pending_shred_removals().await?;
        for (tenant, shredded_at) in &pending {
            tracing::info!(%tenant, "resuming the removal of a shredded tenant's records");
            self.spawn_shred_removal(tenant.clone(), *shredded_at);
        }
        Ok(pending.len())
    }

    /// Removes the records of `tenant` stamped at or before `shredded_at`
    /// (a tombstone each, which replicates), keeping later ones, then marks
    /// the shred's removal done. Returns how many it removed. Safe to run
    /// again: what is gone is skipped.
    pub async fn remove_shredded(&self, tenant: &str, shredded_at: Stamp) -> Result<u64, StorageError> {
        check_tenant(tenant, self)?;
        let slots = Arc::new(Semaphore::new(REMOVALS_IN_FLIGHT));
        let mut removals = tokio::task::JoinSet::new();
        let mut removed = 0;
        let mut walk = TenantWalk::new(self, tenant);
        while let Some(records) = walk.next().await? {
            for record in records.into_iter().filter(|record| record.head.stamp <= shredded_at) {
                let slot = slots.clone().acquire_owned().await.map_err(|_| StorageError::ShuttingDown)?;
                let store = self.clone();
                removals.spawn(async move {
                    let _slot = slot;
                    store.remove(record.key, None).await
                });
                while let Some(done) = removals.try_join_next() {
                    joined(done)?;
                    removed += 1;
                }
            }
        }
        while let Some(done) = removals.join_next().await {
            joined(done)?;
            removed += 1;
        }
        self.mark_finished(shred_removal_key(tenant), shredded_at).await?;
        tracing::info!(tenant, removed, "removed the shredded tenant's records");
        Ok(removed)
    }
}

/// The re-wraps a node will write, planned from what it holds.
#[derive(Default)]
struct RewrapPlan {
    rewraps: Vec<(KeyRef, WrappedKey)>,
    already: u32,
    failed: Vec<String>,
}

/// For each data key with a live re-wrapped form, the newest master key
/// that wraps it so.
fn newest_rewraps(db: &rocksdb::DB) -> Result<HashMap<KeyRef, u32>, StorageError> {
    let mut newest = HashMap::new();
    system_records(db, REWRAPPED_REGION, |record, head| {
        if let Some((key, master)) = KeyRef::of_rewrapped_record(&record).filter(|_| !head.tombstone) {
            let entry = newest.entry(key).or_insert(master.0);
            *entry = (*entry).max(master.0);
        }
    })?;
    Ok(newest)
}

/// Every data key whose record is live (not destroyed), of every tenant
/// and origin.
pub(crate) fn live_data_keys(db: &rocksdb::DB) -> Result<Vec<KeyRef>, StorageError> {
    let mut live = Vec::new();
    system_records(db, KEYS_REGION, |record, head| {
        if let Some(key) = KeyRef::of_record(&record).filter(|_| !head.tombstone) {
            live.push(key);
        }
    })?;
    Ok(live)
}

//! Re-encryption: after a tenant's keys are rotated, old values stay
//! sealed under the keys the rotation retired (still readable). A
//! re-encryption, run on one node, walks the tenant's records and has the
//! writer seal each such value again under that node's current key for
//! the tenant (`writer/reseal.rs`); the reseals replicate, so every node
//! ends with the same ciphertext. Values stored in the clear (written by a
//! node in development mode) are sealed the same way.
//!
//! What it leaves: values written since the rotation (under keys made
//! after it) and records stamped at or before a shred of the tenant (the
//! shred removes them, and a value whose key a shred destroyed counts as
//! changed). Values it cannot read or open (a missing key, bytes altered
//! on disk) are counted and named, and left as they are.
//!
//! Progress is kept in memory and shown by [`Store::reencryption`]. The
//! start is a record of the system tenant (`reencryptions/<tenant>`), and
//! the end another (`reencryptions_done/<tenant>`): a node that stops
//! half-way takes the work up again when it starts (values done already
//! are then counted as such).
//!
//! The rotation it goes by is this node's view of it: run it where the
//! rotation was made, or once it has replicated here. A rotation that
//! arrives while it runs starts another walk.
//!
//! One batch is in the writer at a time, so client writes wait behind at
//! most one batch's commit.

use std::collections::HashMap;
use std::sync::PoisonError;

use consensusdb_types::key_codec::{encode_key, prefix_successor, tenant_prefix};
use consensusdb_types::{Head, Origin, Stamp};
use rocksdb::DB;

use super::admin::{check_tenant, marker};
use super::key_records::{
    KEYS_REGION, KeyRef, REENCRYPTIONS_REGION, reencryption_done_key, reencryption_key, rotation_key,
    shred_key,
};
use super::reencryption_progress::{
    Job, ReencryptionProgress, ReencryptionState, StopsUnlessFinished, progress_of, update,
};
use super::system_records;
use super::tenant_walk::TenantWalk;
use crate::clock::now_ms;
use crate::columns::{self, RECORDS};
use crate::store::run_blocking;
use crate::writer::ResealBatch;
use crate::{StorageError, Store};

/// Most values sealed again in one log entry.
const BATCH_VALUES: usize = 256;
/// Most bytes of values in one batch (or a client batch's limit, if
/// smaller): an entry stays as small as a client's could be, so it ships
/// within any peer's message limit.
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long a re-encryption waits before trying again when the node does
/// not accept writes.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// What a re-encryption does with a record.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// Seal it again.
    Reseal,
    /// Sealed under a key made after the last rotation.
    Already,
    /// Stamped at or before the tenant's shred, which removes it.
    Shredded,
}

/// What a walk over one tenant's records goes by, read as it starts.
struct Plan {
    /// When the tenant's keys were last rotated.
    rotated_at: Option<u64>,
    /// When the tenant was last shredded.
    shredded_at: Option<Stamp>,
    /// The tenant's live data keys, by origin and id, with the HLC each
    /// was made at.
    keys: HashMap<(Origin, u32), u64>,
    /// Live records of the tenant.
    live_records: u64,
}

impl Plan {
    fn load(db: &DB, tenant: &str) -> Result<Self, StorageError> {
        let rotated_at = Self::rotated_at(db, tenant)?;
        let shredded_at = live_head(db, shred_key(tenant))?.map(|head| head.stamp);
        let mut keys = HashMap::new();
        system_records(db, KEYS_REGION, |record, head| {
            if let Some(key) =
                KeyRef::of_record(&record).filter(|key| key.tenant == tenant && !head.tombstone)
            {
                keys.insert((key.origin, key.id.0), head.stamp.hlc);
            }
        })?;
        Ok(Self { rotated_at, shredded_at, keys, live_records: count_live(db, tenant)? })
    }

    /// The HLC of `tenant`'s last rotation, if its keys were ever rotated.
    fn rotated_at(db: &DB, tenant: &str) -> Result<Option<u64>, StorageError> {
        Ok(live_head(db, rotation_key(tenant))?.map(|head| head.stamp.hlc))
    }

    fn need(&self, head: &Head) -> Need {
        if self.shredded_at.is_some_and(|at| head.stamp <= at) {
            return Need::Shredded;
        }
        let Some(seal) = head.seal else { return Need::Reseal };
        match self.keys.get(&(seal.key_origin(&head.stamp), seal.key_id)) {
            Some(&made_at) if self.rotated_at.is_none_or(|rotated| made_at > rotated) => Need::Already,
            _ => Need::Reseal,
        }
    }
}

/// The head of the system record `key`, unless it is absent or removed.
fn live_head(db: &DB, key: consensusdb_types::RecordKey) -> Result<Option<Head>, StorageError> {
    let head = db.get_pinned_cf(columns::handle(db, RECORDS), encode_key(&key))?;
    Ok(head.map(|bytes| Head::decode(&bytes)).transpose()?.filter(|head| !head.tombstone))
}

/// The live (not removed, not expired) records of `tenant`. A head that
/// does not decode is not counted (the walk's scan skips it too).
fn count_live(db: &DB, tenant: &str) -> Result<u64, StorageError> {
    let prefix = tenant_prefix(tenant);
    let mut options = rocksdb::ReadOptions::default();
    if let Some(upper) = prefix_successor(&prefix) {
        options.set_iterate_upper_bound(upper);
    }
    let now = now_ms();
    let mut iter = db.raw_iterator_cf_opt(columns::handle(db, RECORDS), options);
    iter.seek(&prefix);
    let mut live = 0;
    while let Some(head) = iter.value() {
        if Head::decode(head).is_ok_and(|head| !head.is_hidden(now)) {
            live += 1;
        }
        iter.next();
    }
    iter.status()?;
    Ok(live)
}

impl Store {
    /// Starts re-encrypting `tenant`'s values on this node (see the module
    /// documentation) and returns its progress; if one is running already,
    /// returns that one's progress instead of starting another.
    pub async fn start_reencryption(&self, tenant: &str) -> Result<ReencryptionProgress, StorageError> {
        check_tenant(tenant, self)?;
        if !self.shared.vault.is_sealing() {
            return Err(StorageError::Unsealed { what: "re-encrypting values".into() });
        }
        if let Some(running) = self.reencryption(tenant).filter(|p| p.state == ReencryptionState::Running) {
            return Ok(running);
        }
        // Written first: a job runs only once its start is durable, so a
        // node that stops while it runs takes it up again. Two starts at
        // once write two records; the second finds the first running.
        let started_at = self.put(marker(reencryption_key(tenant), "started"), None).await?.heads[0].stamp;
        let job = match self.shared.reencryptions.claim(tenant, started_at) {
            Ok(job) => job,
            Err(running) => return Ok(progress_of(&running)),
        };
        self.spawn_reencryption(job.clone());
        Ok(progress_of(&job))
    }

    /// The progress of the latest re-encryption of `tenant` this node ran
    /// since it started, if any.
    pub fn reencryption(&self, tenant: &str) -> Option<ReencryptionProgress> {
        self.shared.reencryptions.get(tenant)
    }

    /// The latest re-encryption of each tenant this node ran since it
    /// started, in tenant order.
    pub fn reencryptions(&self) -> Vec<ReencryptionProgress> {
        self.shared.reencryptions.all()
    }

    /// Takes up in the background the re-encryptions this node had not
    /// finished when it stopped. Returns how many. A node without a master
    /// key takes none up (it says so), and keeps them for when it has one.
    pub async fn resume_reencryptions(&self) -> Result<usize, StorageError> {
        let pending = self.unfinished(REENCRYPTIONS_REGION, reencryption_done_key).await?;
        if !self.shared.vault.is_sealing() {
            if !pending.is_empty() {
                tracing::warn!(
                    pending = pending.len(),
                    "re-encryptions this node had not finished wait \
                    until it runs with the cluster's master key"
                );
            }
            return Ok(0);
        }
        let mut resumed = 0;
        for (tenant, started_at) in pending {
            if let Ok(job) = self.shared.reencryptions.claim(&tenant, started_at) {
                tracing::info!(%tenant, "resuming the re-encryption of a tenant's values");
                self.spawn_reencryption(job);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    fn spawn_reencryption(&self, job: Job) {
        let store = self.clone();
        self.spawn_while_open(async move {
            // Whatever ends the task (the store closing drops it mid-way),
            // the job is not left "running".
            let guard = StopsUnlessFinished(job.clone());
            let (tenant, started_at) = {
                let progress = job.lock().unwrap_or_else(PoisonError::into_inner);
                (progress.tenant.clone(), progress.started_at)
            };
            let state = match store.reencrypt(&tenant, &job).await {
                Ok(()) => match store.mark_finished(reencryption_done_key(&tenant), started_at).await {
                    Ok(()) => ReencryptionState::Done,
                    Err(error) => ReencryptionState::Stopped(error.to_string()),
                },
                Err(error) => ReencryptionState::Stopped(error.to_string()),
            };
            let progress = progress_of(&job);
            match &state {
                ReencryptionState::Stopped(error) => {
                    tracing::warn!(%tenant, %error, scanned = progress.scanned,
                    "re-encrypting the tenant's values stopped: it resumes when this node starts again")
                }
                _ => tracing::info!(%tenant, resealed = progress.resealed, already = progress.already,
                    refused = progress.refused, "re-encrypted the tenant's values"),
            }
            update(&job, |progress| progress.state = state);
            drop(guard);
        });
    }

    /// Walks `tenant`'s records and seals again those that need it, in
    /// batches, counting into `job`; again, from the start, if the tenant's
    /// keys were rotated meanwhile (what it sealed may be under a key that
    /// rotation retired).
    async fn reencrypt(&self, tenant: &str, job: &Job) -> Result<(), StorageError> {
        loop {
            self.wait_while_installing().await;
            let (engine, name) = (self.shared.engine.clone(), tenant.to_string());
            let plan = run_blocking(move || Plan::load(&engine.db, &name)).await??;
            update(job, |progress| progress.start_pass(plan.live_records, plan.rotated_at));
            self.reencryption_pass(tenant, &plan, job).await?;
            let (engine, name) = (self.shared.engine.clone(), tenant.to_string());
            let rotated_at = run_blocking(move || Plan::rotated_at(&engine.db, &name)).await??;
            if rotated_at == plan.rotated_at {
                return Ok(());
            }
            tracing::info!(%tenant, "the tenant's keys were rotated during its re-encryption: another pass");
        }
    }

    /// One walk over `tenant`'s records under `plan`.
    async fn reencryption_pass(&self, tenant: &str, plan: &Plan, job: &Job) -> Result<(), StorageError> {
        let max_bytes = self.limits().max_batch_bytes.min(BATCH_BYTES);
        let mut batch = ResealBatch { tenant: tenant.to_string(), versions: Vec::new(), value_bytes: 0 };
        let mut walk = TenantWalk::new(self, tenant);
        while let Some(records) = walk.next().await? {
            for record in records {
                let need = plan.need(&record.head);
                update(job, |progress| {
                    progress.scanned += 1;
                    match need {
                        Need::Already => progress.already += 1,
                        Need::Shredded => progress.changed += 1,
                        Need::Reseal => {}
                    }
                });
                if need != Need::Reseal {
                    continue;
                }
                let bytes = record.head.stored_size as usize;
                if batch.versions.len() >= BATCH_VALUES || batch.value_bytes + bytes > max_bytes {
                    self.reseal_batch(&mut batch, job).await?;
                }
                batch.value_bytes += bytes;
                batch.versions.push((encode_key(&record.key), record.head.stamp));
            }
        }
        self.reseal_batch(&mut batch, job).await
    }

    /// Has the writer seal `batch` again, emptying it, and counts what it
    /// did. While the node does not accept writes (a bootstrap, a write
    /// hold), waits and tries again.
    async fn reseal_batch(&self, batch: &mut ResealBatch, job: &Job) -> Result<(), StorageError> {
        if batch.versions.is_empty() {
            return Ok(());
        }
        let versions = std::mem::take(&mut batch.versions);
        let value_bytes = std::mem::take(&mut batch.value_bytes);
        loop {
            let sent = ResealBatch { tenant: batch.tenant.clone(), versions: versions.clone(), value_bytes };
            match self.reseal(sent).await {
                Ok(outcome) => {
                    update(job, |progress| progress.add(outcome));
                    return Ok(());
                }
                Err(StorageError::NotAccepting { reason }) => {
                    tracing::info!(tenant = %batch.tenant, %reason, "re-encryption waits: writes are not accepted");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                Err(StorageError::Bootstrapping) => self.wait_while_installing().await,
                Err(error) => return Err(error),
            }
        }
    }

    /// Returns once no snapshot is being installed.
    async fn wait_while_installing(&self) {
        while self.is_installing() {
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use consensusdb_types::{NodeId, Seal};

    use super::*;

    fn head(hlc: u64, origin: Origin, seal: Option<Seal>) -> Head {
        Head {
            stamp: Stamp { hlc, origin },
            seq: 1,
            expires_at_ms: None,
            stored_size: 4,
            compression: consensusdb_types::Compression::None,
            tombstone: false,
            seal,
            client_key: None,
        }
    }

    #[test]
    fn values_under_keys_the_last_rotation_retired_are_sealed_again_and_no_others() {
        let a = Origin { node: NodeId(1), incarnation: 1 };
        let b = Origin { node: NodeId(2), incarnation: 1 };
        let plan = Plan {
            rotated_at: Some(100),
            shredded_at: Some(Stamp { hlc: 20, origin: a }),
            keys: HashMap::from([((a, 1), 10), ((a, 2), 150), ((b, 1), 90)]),
            live_records: 0,
        };
        let resealed_by_b =
            Seal { resealed: Some(consensusdb_types::Resealed { hlc: 160, by: b }), ..Seal::at(1, 7, 0) };
        let cases = [
            (head(50, a, Some(Seal::at(1, 3, 0))), Need::Reseal, "a key made before the rotation"),
            (head(200, a, Some(Seal::at(2, 9, 0))), Need::Already, "a key made after it"),
            (head(50, a, None), Need::Reseal, "a value stored in the clear"),
            (
                head(60, a, Some(Seal::at(7, 4, 0))),
                Need::Reseal,
                "a key this node does not hold (refused later)",
            ),
            (head(20, a, Some(Seal::at(2, 2, 0))), Need::Shredded, "stamped at the shred"),
            (head(50, a, Some(resealed_by_b)), Need::Reseal, "b's key 1, made before the rotation"),
        ];
        for (head, need, case) in cases {
            assert_eq!(plan.need(&head), need, "{case}");
        }
        let unrotated = Plan { rotated_at: None, shredded_at: None, ..plan };
        assert_eq!(unrotated.need(&head(50, a, Some(Seal::at(1, 3, 0)))), Need::Already);
        assert_eq!(unrotated.need(&head(50, a, None)), Need::Reseal);
    }
}

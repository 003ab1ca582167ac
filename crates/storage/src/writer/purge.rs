//! Purging in the writer: causally stable tombstones and expired versions,
//! and log entries every member has applied. Tombstones of destroyed data
//! keys stay (see `purge`).
//!
//! The replication layer decides *what* is safe (see `PurgePlan`); the
//! writer does it in one `WriteBatch`, so a purged version leaves its
//! record, its value, its queue entry and its digest contribution together.

use consensusdb_types::key_codec::{region_prefix, region_prefix_of};
use consensusdb_types::log_entry::log_key;
use consensusdb_types::{DecodeError, Digest, Head, HybridClock, Origin, SYSTEM_TENANT};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use super::Writer;
use crate::clock::now_ms;
use crate::columns::{self, DIGESTS, LOG, PURGE_QUEUE, RECORDS, VALUES};
use crate::sealing::key_records::KEYS_REGION;
use crate::{StorageError, SyncPolicy};

/// Most versions purged per round, so one round is a bounded batch.
const MAX_VERSIONS_PER_ROUND: usize = 10_000;

/// What may be purged, decided by the replication layer from what every
/// member of the cluster has acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgePlan {
    /// Every member has applied every origin's entries stamped below this
    /// HLC: tombstones and expired versions stamped below it are causally
    /// stable, and no older write of their key can still arrive.
    pub stable_hlc: u64,
    /// Per origin, the last seq every member has applied: the log up to it
    /// is no longer needed by anyone.
    pub log_upto: Vec<(Origin, u64)>,
}

/// What a purge round removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Tombstones and expired versions removed.
    pub versions: u64,
    /// Whether versions remain that the plan already allows (the round hit
    /// its bound): run another round.
    pub more: bool,
}

impl Writer {
    pub(crate) fn purge(&mut self, plan: &PurgePlan) -> Result<PurgeOutcome, StorageError> {
        if self.installing {
            // The plan was made for the records being replaced.
            return Err(StorageError::Bootstrapping);
        }
        let now = now_ms();
        // Expired versions also wait for their expiry on this node's clock.
        let bound = plan.stable_hlc.min(now << HybridClock::LOGICAL_BITS);
        let engine = self.engine.clone();
        let db = &engine.db;
        let (records, values, queue) =
            (columns::handle(db, RECORDS), columns::handle(db, VALUES), columns::handle(db, PURGE_QUEUE));
        let mut batch = WriteBatch::default();
        let mut outcome = PurgeOutcome::default();
        let mut digests: std::collections::HashMap<Vec<u8>, Digest> = std::collections::HashMap::new();
        // A destroyed data key's tombstone is never purged: it is what tells
        // a read of a value the key sealed (one the shred has not removed
        // yet, or one a node cut off during the shred wrote) that its
        // tenant was shredded, rather than that the key is missing, which
        // would be reported as data loss. One small record per key.
        let data_keys = region_prefix(SYSTEM_TENANT, KEYS_REGION);
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(bound.to_be_bytes().to_vec());
        for (scanned, item) in db.iterator_cf_opt(queue, options, IteratorMode::Start).enumerate() {
            if scanned >= MAX_VERSIONS_PER_ROUND {
                outcome.more = true;
                break;
            }
            let (queued, _) = item?;
            batch.delete_cf(queue, &queued);
            let Some((at, key)) = queued.split_first_chunk::<8>() else {
                return Err(damaged_queue_entry(&queued));
            };
            let at = u64::from_be_bytes(*at);
            // The queue entry is current only if the stored head still is
            // the version it was queued for.
            let Some(bytes) = db.get_pinned_cf(records, key)? else { continue };
            let head = Head::decode(&bytes)?;
            if head.purgeable_at() != Some(at) || !(head.tombstone || head.is_expired(now)) {
                continue;
            }
            if head.tombstone && key.starts_with(&data_keys) {
                continue;
            }
            batch.delete_cf(records, key);
            batch.delete_cf(values, key);
            if let Some(region) = region_prefix_of(key) {
                let delta = digests.entry(region.to_vec()).or_default();
                *delta = delta.wrapping_sub(Digest::of_version(key, &head.stamp, head.tombstone));
            }
            outcome.versions += 1;
        }
        let digest_family = columns::handle(db, DIGESTS);
        for (region, delta) in digests {
            batch.merge_cf(digest_family, region, delta.to_bytes());
        }
        let log = columns::handle(db, LOG);
        for (origin, upto) in &plan.log_upto {
            batch.delete_range_cf(log, log_key(origin, 0), log_key(origin, upto.saturating_add(1)));
        }
        let mut write = WriteOptions::default();
        write.set_sync(self.sync == SyncPolicy::Always);
        db.write_opt(batch, &write)?;
        Ok(outcome)
    }
}

/// A purge-queue key too short to hold its time: the round stops with an
/// error naming the family and the key, rather than guess which version
/// the entry stood for.
fn damaged_queue_entry(queued: &[u8]) -> StorageError {
    StorageError::Corrupt(DecodeError {
        what: "purge queue entry",
        reason: format!(
            "column family `{PURGE_QUEUE}`, key {:?}: {} bytes, shorter than its 8-byte time",
            crate::error::hex(queued),
            queued.len()
        ),
    })
}

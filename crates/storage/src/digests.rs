//! Reading and rebuilding the per-region convergence digests.
//!
//! The writer keeps each region's [`Digest`] current with merge operands in
//! the same `WriteBatch` as the records. These functions read them together
//! with the frontier from one snapshot, so a report names exactly the
//! entries it covers, and rebuild them from the records when a data
//! directory predates them.

use std::collections::BTreeMap;

use consensusdb_types::key_codec::{decode_region_prefix, prefix_successor, region_prefix_of, tenant_prefix};
use consensusdb_types::{Digest, FrontierMark, Head, Origin};
use rocksdb::{DB, IteratorMode, ReadOptions, WriteBatch};

use crate::StorageError;
use crate::columns::{self, DIGESTS, FRONTIER, PURGE_QUEUE, RECORDS};
use crate::frontier_view::Frontier;

/// The digest of one region (table) of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionDigest {
    /// The tenant.
    pub major: String,
    /// The region.
    pub region: String,
    /// Sum of the contributions of every version kept in the region.
    pub digest: Digest,
}

/// Digests and the frontier they were taken at, from one snapshot. Two
/// reports are comparable only at equal frontiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestReport {
    /// The frontier of the snapshot.
    pub frontier: Frontier,
    /// Every region with a non-zero digest, in key order.
    pub regions: Vec<RegionDigest>,
}

impl DigestReport {
    /// The digest of one tenant: the sum of its regions'.
    pub fn tenant(&self, major: &str) -> Digest {
        self.regions
            .iter()
            .filter(|r| r.major == major)
            .fold(Digest::default(), |sum, r| sum.wrapping_add(r.digest))
    }

    /// The digest of everything reported.
    pub fn total(&self) -> Digest {
        self.regions.iter().fold(Digest::default(), |sum, r| sum.wrapping_add(r.digest))
    }
}

/// The digests of one tenant (or of all, for `None`) and the frontier, read
/// from one snapshot.
pub(crate) fn report(db: &DB, major: Option<&str>) -> Result<DigestReport, StorageError> {
    let snapshot = db.snapshot();
    let mut frontier = Frontier::new();
    let mut options = ReadOptions::default();
    options.set_snapshot(&snapshot);
    for item in db.iterator_cf_opt(columns::handle(db, FRONTIER), options, IteratorMode::Start) {
        let (key, value) = item?;
        frontier.insert(Origin::from_bytes(&key)?, FrontierMark::decode(&value)?);
    }
    let mut options = ReadOptions::default();
    options.set_snapshot(&snapshot);
    if let Some(major) = major {
        let prefix = tenant_prefix(major);
        if let Some(upper) = prefix_successor(&prefix) {
            options.set_iterate_upper_bound(upper);
        }
        options.set_iterate_lower_bound(prefix);
    }
    let mut regions = Vec::new();
    for item in db.iterator_cf_opt(columns::handle(db, DIGESTS), options, IteratorMode::Start) {
        let (key, value) = item?;
        let digest = Digest::from_slice(&value).ok_or_else(|| {
            StorageError::Corrupt(consensusdb_types::DecodeError {
                what: "digest",
                reason: format!("{} bytes, not {}", value.len(), Digest::LEN),
            })
        })?;
        if digest.is_zero() {
            continue;
        }
        let (major, region) = decode_region_prefix(&key)?;
        regions.push(RegionDigest { major, region, digest });
    }
    Ok(DigestReport { frontier, regions })
}

/// Recomputes the families derived from `records` (every region's digest,
/// and the purge queue), replacing what they hold. Blocks for a full pass
/// over the heads.
pub(crate) fn rebuild(db: &DB) -> Result<(), StorageError> {
    let (digests, queue) = (columns::handle(db, DIGESTS), columns::handle(db, PURGE_QUEUE));
    let mut batch = WriteBatch::default();
    for family in [digests, queue] {
        for item in db.iterator_cf(family, IteratorMode::Start) {
            batch.delete_cf(family, item?.0);
        }
    }
    let mut sums: BTreeMap<Vec<u8>, Digest> = BTreeMap::new();
    for item in db.iterator_cf(columns::handle(db, RECORDS), IteratorMode::Start) {
        let (key, value) = item?;
        let head = Head::decode(&value)?;
        if let Some(region) = region_prefix_of(&key) {
            let sum = sums.entry(region.to_vec()).or_default();
            *sum = sum.wrapping_add(Digest::of_version(&key, &head.stamp, head.tombstone));
        }
        if let Some(at) = head.purgeable_at() {
            batch.put_cf(queue, columns::purge_queue_key(at, &key), []);
        }
    }
    for (region, sum) in &sums {
        batch.put_cf(digests, region, sum.to_bytes());
    }
    let mut sync = rocksdb::WriteOptions::default();
    sync.set_sync(true);
    db.write_opt(batch, &sync)?;
    tracing::info!(regions = sums.len(), "rebuilt digests and the purge queue from the records");
    Ok(())
}

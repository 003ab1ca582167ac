//! What the node reports about its storage: RocksDB's own size and
//! compaction figures, and record counts per tenant and region for the
//! status page. Everything here reads RocksDB, so it runs on the blocking
//! pool.

use consensusdb_types::key_codec::{decode_region_prefix, prefix_successor};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions};

use crate::StorageError;
use crate::columns::{self, ALL, DIGESTS, RECORDS};
use crate::store::{Store, run_blocking};

/// RocksDB's figures for the whole database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Bytes in live SST files, every column family.
    pub sst_bytes: u64,
    /// Bytes held in memtables, every column family.
    pub memtable_bytes: u64,
    /// Bytes compaction still has to rewrite to settle the levels
    /// (RocksDB's estimate).
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Keys in the records family: live records plus the tombstones and
    /// expired heads not yet purged (RocksDB's estimate).
    pub records_estimate: u64,
}

impl StorageStats {
    /// Data held, on disk and in memory.
    pub fn data_bytes(&self) -> u64 {
        self.sst_bytes + self.memtable_bytes
    }
}

/// How many records one region holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCount {
    /// The tenant (major key).
    pub major: String,
    /// The region.
    pub region: String,
    /// Exact up to the count limit asked for, above it an estimate from the
    /// region's share of the records family on disk. Counts tombstones and
    /// expired heads until they are purged.
    pub records: u64,
    /// Whether `records` is an estimate.
    pub estimated: bool,
}

/// Record counts of the first regions in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionCounts {
    /// The regions, in key order.
    pub regions: Vec<RegionCount>,
    /// More regions exist than were asked for.
    pub truncated: bool,
}

fn property_sum(db: &DB, name: &str, families: &[&str]) -> u64 {
    families
        .iter()
        .filter_map(|&family| db.property_int_value_cf(columns::handle(db, family), name).ok().flatten())
        .sum()
}

fn stats(db: &DB) -> StorageStats {
    StorageStats {
        sst_bytes: property_sum(db, "rocksdb.live-sst-files-size", &ALL),
        memtable_bytes: property_sum(db, "rocksdb.cur-size-all-mem-tables", &ALL),
        pending_compaction_bytes: property_sum(db, "rocksdb.estimate-pending-compaction-bytes", &ALL),
        running_compactions: db
            .property_int_value("rocksdb.num-running-compactions")
            .ok()
            .flatten()
            .unwrap_or(0),
        records_estimate: property_sum(db, "rocksdb.estimate-num-keys", &[RECORDS]),
    }
}

/// Counts the keys of one region exactly, stopping at `limit`.
fn count_keys(db: &DB, prefix: &[u8], upper: Option<&[u8]>, limit: u64) -> Result<u64, StorageError> {
    let mut options = ReadOptions::default();
    if let Some(upper) = upper {
        options.set_iterate_upper_bound(upper.to_vec());
    }
    let mut iterator = db.raw_iterator_cf_opt(columns::handle(db, RECORDS), options);
    iterator.seek(prefix);
    let mut counted = 0;
    while iterator.valid() && counted < limit {
        counted += 1;
        iterator.next();
    }
    iterator.status()?;
    Ok(counted)
}

fn region_counts(db: &DB, max_regions: usize, exact_up_to: u64) -> Result<RegionCounts, StorageError> {
    let records = columns::handle(db, RECORDS);
    let total_keys = property_sum(db, "rocksdb.estimate-num-keys", &[RECORDS]);
    // No encoded key starts with 0xFF (UTF-8 never holds that byte).
    let total_bytes = db.get_approximate_sizes_cf(&records, &[rocksdb::Range::new(&[], &[0xFF])])[0];
    let mut counts = RegionCounts::default();
    // Every region that ever held a version has a digest entry, so the
    // digests family lists the regions without walking the records.
    for item in db.iterator_cf(columns::handle(db, DIGESTS), IteratorMode::From(&[], Direction::Forward)) {
        let (prefix, _) = item?;
        if counts.regions.len() == max_regions {
            counts.truncated = true;
            break;
        }
        let Ok((major, region)) = decode_region_prefix(&prefix) else { continue };
        let upper = prefix_successor(&prefix);
        let exact = count_keys(db, &prefix, upper.as_deref(), exact_up_to.saturating_add(1))?;
        let (records, estimated) = if exact <= exact_up_to {
            (exact, false)
        } else {
            // Past the limit, scale the family's key estimate by the
            // region's share of its bytes on disk; never below what was
            // counted.
            let end = upper.clone().unwrap_or_else(|| vec![0xFF]);
            let bytes = db.get_approximate_sizes_cf(&records, &[rocksdb::Range::new(&prefix, &end)])[0];
            let share = if total_bytes == 0 { 0.0 } else { bytes as f64 / total_bytes as f64 };
            (((total_keys as f64 * share) as u64).max(exact_up_to), true)
        };
        if records > 0 {
            counts.regions.push(RegionCount { major, region, records, estimated });
        }
    }
    Ok(counts)
}

impl Store {
    /// RocksDB's size and compaction figures.
    pub async fn stats(&self) -> Result<StorageStats, StorageError> {
        let engine = self.shared.engine.clone();
        run_blocking(move || stats(&engine.db)).await
    }

    /// Record counts of the first `max_regions` regions (in key order):
    /// exact up to `exact_up_to` records a region, estimated above.
    pub async fn region_counts(
        &self,
        max_regions: usize,
        exact_up_to: u64,
    ) -> Result<RegionCounts, StorageError> {
        let engine = self.shared.engine.clone();
        run_blocking(move || region_counts(&engine.db, max_regions, exact_up_to)).await?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use consensusdb_types::{Compression, RowKey};

    use crate::{PutRecord, Store, StoreOptions};

    fn put(major: &str, region: &str, minor: &str) -> PutRecord {
        PutRecord {
            key: RowKey::new(major, region, minor).at(None),
            value: b"v".to_vec(),
            compression: Compression::None,
            ttl_ms: None,
            if_absent: false,
            client_key: None,
        }
    }

    #[tokio::test]
    async fn regions_are_counted_exactly_up_to_the_limit_then_estimated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreOptions::new(dir.path())).unwrap();
        for minor in ["a", "b", "c", "d", "e"] {
            store.put(put("acme", "orders", minor), None).await.unwrap();
        }
        store.put(put("acme", "users", "x"), None).await.unwrap();
        store.put(put("zeta", "orders", "y"), None).await.unwrap();

        let counts = store.region_counts(10, 100).await.unwrap();
        let listed: Vec<_> = counts
            .regions
            .iter()
            .map(|r| (r.major.as_str(), r.region.as_str(), r.records, r.estimated))
            .collect();
        assert_eq!(
            listed,
            [("acme", "orders", 5, false), ("acme", "users", 1, false), ("zeta", "orders", 1, false)]
        );
        assert!(!counts.truncated);

        let capped = store.region_counts(2, 3).await.unwrap();
        assert!(capped.truncated, "a third region exists");
        assert_eq!(capped.regions.len(), 2);
        let orders = &capped.regions[0];
        assert!(orders.estimated && orders.records >= 3, "{orders:?}");
        assert_eq!((capped.regions[1].records, capped.regions[1].estimated), (1, false));

        let stats = store.stats().await.unwrap();
        assert!(stats.memtable_bytes > 0, "{stats:?}");
        assert_eq!(stats.data_bytes(), stats.sst_bytes + stats.memtable_bytes);
        store.close().await.unwrap();
    }
}

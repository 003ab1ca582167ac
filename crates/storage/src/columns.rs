//! The column families, by role, and their RocksDB options.

use consensusdb_types::{Digest, stored_value};
use rocksdb::MergeOperands;
use rocksdb::compaction_filter::Decision;
use rocksdb::{BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options};

use crate::clock::now_ms;

/// Record key -> [`consensusdb_types::Head`] (the newest version).
pub(crate) const RECORDS: &str = "records";
/// Record key -> stored value of the version in `records`.
pub(crate) const VALUES: &str = "values";
/// `(origin, seq)` -> full [`consensusdb_types::LogEntry`].
pub(crate) const LOG: &str = "log";
/// Origin -> [`consensusdb_types::FrontierMark`].
pub(crate) const FRONTIER: &str = "frontier";
/// The replication layer's record of the cluster: members, what each has
/// applied, removed nodes, peer addresses.
pub(crate) const PEERS: &str = "peers";
/// Region prefix -> [`consensusdb_types::Digest`] of the versions kept in
/// that region, maintained by merge operands of digest changes.
pub(crate) const DIGESTS: &str = "digests";
/// `purgeable_at:u64be ++ record key` -> nothing: every kept tombstone and
/// expiring version, in the order they may be purged
/// ([`consensusdb_types::Head::purgeable_at`]).
pub(crate) const PURGE_QUEUE: &str = "purge_queue";

/// Families derived from `records`: rebuilt from it when missing.
pub(crate) const DERIVED: [&str; 2] = [DIGESTS, PURGE_QUEUE];

/// The `purge_queue` key of a version of `key`.
pub(crate) fn purge_queue_key(purgeable_at: u64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&purgeable_at.to_be_bytes());
    out.extend_from_slice(key);
    out
}
/// Format versions and node identity.
pub(crate) const META: &str = "meta";

/// Every column family this build knows, besides RocksDB's `default`.
pub(crate) const ALL: [&str; 8] = [RECORDS, VALUES, LOG, FRONTIER, PEERS, META, DIGESTS, PURGE_QUEUE];

/// The handle of a column family. Every family in [`ALL`] is opened with
/// the database, so a missing one is a bug, not an input error.
pub(crate) fn handle<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} is opened with the database"))
}

/// Options for the database as a whole.
pub(crate) fn db_options(max_open_files: i32) -> Options {
    let mut options = Options::default();
    // Bounded, so client connections can never take the descriptors RocksDB
    // needs to flush and compact (a flush that fails stops the writer).
    options.set_max_open_files(max_open_files);
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    // Two cores is the reference machine; RocksDB's default of 2 background
    // jobs is right there and scales with `increase_parallelism` elsewhere.
    options.increase_parallelism(
        std::thread::available_parallelism().map_or(2, |n| i32::try_from(n.get()).unwrap_or(2)),
    );
    options.set_compression_type(DBCompressionType::Lz4);
    // A WAL file is kept until every family's memtable holding part of it
    // is flushed. `frontier` takes a few bytes per group, so its memtable
    // rarely fills and pins every WAL file up to RocksDB's default cap of
    // four times all write buffers (387 MB of WAL after 500,000 events,
    // measured). Past this cap RocksDB flushes the families holding the
    // oldest file, which also bounds the replay after a crash.
    options.set_max_total_wal_size(128 << 20);
    options.set_keep_log_file_num(INFO_LOG_FILES);
    options.set_max_log_file_size(INFO_LOG_FILE_BYTES);
    // Restarting on a full disk (measured on a full 48 MB tmpfs):
    // - by default RocksDB flushes the replayed WAL into new table files
    //   while opening, which needs about the WAL's size of free space, and
    //   each failed open left a partial table file behind; with
    //   `avoid_flush_during_recovery` the replayed writes stay in memtables
    //   (and the WAL with them) until a regular flush;
    // - RocksDB preallocates each new WAL file (about the write buffer's
    //   size): on a nearly full disk that took what was left, and the next
    //   small write (the OPTIONS file) failed the open; `allow_fallocate`
    //   off preallocates nothing.
    // The binding has no setters for these two, hence the option string.
    options
        .get_options_from_string("avoid_flush_during_recovery=true;allow_fallocate=false")
        .expect("a fixed, valid RocksDB option string")
}

/// RocksDB's own info logs kept: each start rotates one, and the default
/// (1,000 of them) let a node that kept failing to start fill its disk.
const INFO_LOG_FILES: usize = 4;
/// The size at which an info log is rotated.
const INFO_LOG_FILE_BYTES: usize = 16 << 20;

/// Block compression by level: none in L0, LZ4 below. L0 files are
/// memtables flushed as they are and compacted into the level under them
/// soon after, so compressing them costs CPU on every byte written for
/// space held briefly (LZ4 in flushes was 5% of a catching-up node's CPU,
/// measured with `perf record -a`); compaction compresses everything it
/// writes. With dynamic level sizes the second entry is whichever level
/// L0 compacts into.
const COMPRESSION_PER_LEVEL: [DBCompressionType; 7] = [
    DBCompressionType::None,
    DBCompressionType::Lz4,
    DBCompressionType::Lz4,
    DBCompressionType::Lz4,
    DBCompressionType::Lz4,
    DBCompressionType::Lz4,
    DBCompressionType::Lz4,
];

/// Descriptors for every column family.
pub(crate) fn descriptors() -> Vec<ColumnFamilyDescriptor> {
    ALL.iter()
        .map(|&name| {
            let mut options = Options::default();
            options.set_compression_per_level(&COMPRESSION_PER_LEVEL);
            if name == RECORDS || name == VALUES {
                // Every write looks up its key's current head first (conflict
                // rule, put-if-absent), and a new TimeUUID is almost always
                // absent: a whole-key bloom filter answers that from memory
                // instead of reading an index and a block from every level.
                let mut table = BlockBasedOptions::default();
                table.set_bloom_filter(10.0, false);
                options.set_block_based_table_factory(&table);
            }
            if name == RECORDS {
                // The same question asked of the memtable: without a filter
                // an absent key costs a full skiplist search (10% of the
                // node's CPU under a batch load, measured with perf).
                options.set_memtable_whole_key_filtering(true);
                options.set_memtable_prefix_bloom_ratio(0.05);
            }
            if name == VALUES {
                // Drop expired values at compaction. The head in `records`
                // stays behind as the stub that still takes part in conflict
                // resolution, so a late older put cannot win on one node and
                // lose on another. (The Rust binding can only *replace* a
                // value with a `'static` slice, which is why heads and values
                // live in separate column families: removal needs no new bytes.)
                options.set_compaction_filter("drop_expired_values", |_level, _key, value: &[u8]| {
                    if stored_value::is_expired(value, now_ms()) { Decision::Remove } else { Decision::Keep }
                });
            }
            if name == DIGESTS {
                // Digest changes are written as merge operands and summed by
                // RocksDB, so a write never reads the current digest.
                options.set_merge_operator_associative("digest_sum", sum_digests);
            }
            ColumnFamilyDescriptor::new(name, options)
        })
        .collect()
}

/// The merge operator of `digests`: the sum of the stored digest and every
/// operand, mod 2^256. Only 32-byte values are ever written; anything else
/// is corruption, and returning `None` makes RocksDB report it.
fn sum_digests(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut sum = match existing {
        Some(bytes) => Digest::from_slice(bytes)?,
        None => Digest::default(),
    };
    for operand in operands {
        sum = sum.wrapping_add(Digest::from_slice(operand)?);
    }
    Some(sum.to_bytes().to_vec())
}

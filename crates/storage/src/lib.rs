//! Layer 2 of ConsensusDB: one RocksDB per node. This is the only crate that
//! names RocksDB.
//!
//! Column families, by role:
//!
//! | family     | key                | value                                  |
//! |------------|--------------------|----------------------------------------|
//! | `records`  | encoded record key | the newest version's head               |
//! | `values`   | encoded record key | that version's value, with its expiry   |
//! | `log`      | origin, seq        | the full mutation ([`consensusdb_types::LogEntry`]) |
//! | `frontier` | origin             | last applied seq and HLC                |
//! | `peers`    | `membership`       | members, removed nodes, known peers     |
//! | `meta`     | name               | format versions, node id, incarnation   |
//! | `digests`  | region prefix      | convergence digest of the region        |
//! | `purge_queue` | purgeable-at HLC, key | tombstones and expiring versions, in purge order |
//!
//! Invariants:
//! - One write is one `WriteBatch` holding its heads, values, log entry and
//!   frontier mark, committed by the single writer thread in groups,
//!   synced before acknowledgement by default.
//! - Seqs of an origin are dense: a rejected write never takes one.
//! - For any key the version with the greatest stamp is kept
//!   ([`consensusdb_types::conflict`]); a tombstone is an ordinary version.
//! - Reads hide tombstones and expired versions; compaction drops expired
//!   values and keeps their heads as stubs.
//! - A data directory of an unknown format, or one in use by another
//!   process, is refused with a clear error.
//! - No RocksDB call runs on the async reactor.

mod clock;
mod columns;
mod data_dir;
mod digests;
mod error;
mod frontier_view;
mod page_token;
mod reads;
/// Raw-RocksDB reference for benchmarks: the writer's per-event bytes, without the store around them.
#[cfg(feature = "bench-reference")]
pub mod reference;
mod replication;
mod scan;
mod sealing;
mod snapshot;
mod stats;
mod store;
mod validate;
mod value_cursor;
mod write_gate;
mod writer;
mod writer_health;

use std::sync::atomic::AtomicU64;

pub use data_dir::{DATA_DIR_FORMAT, KEY_ENCODING_FORMAT};
pub use digests::{DigestReport, RegionDigest};
pub use error::StorageError;
pub use frontier_view::Frontier;
pub use reads::{Page, ReadOptions, Record};
pub use replication::{LogChunk, RawEntry};
pub use scan::ScanStream;
pub use sealing::admin::{DataKeyInfo, RewrapOutcome, ShredOutcome};
pub use sealing::master_reload::{MasterKeysInForce, MasterKeysReplaced};
pub use sealing::reencryption_progress::{ReencryptionProgress, ReencryptionState};
pub use snapshot::{InstallOutcome, SnapshotPart, SnapshotRecord};
pub use stats::{RegionCount, RegionCounts, StorageStats};
pub use store::{
    PutRecord, Queued, RangeQuery, RangeWindow, ScanQuery, ScanScope, Store, StoreOptions, SyncPolicy,
};
pub use write_gate::WriteHold;
pub use writer::{ApplyAck, PurgeOutcome, PurgePlan, ResealOutcome, WriteAck};

/// Monotonic counters and histograms, read by the metrics endpoint.
#[derive(Debug)]
pub struct Counters {
    /// Writes (log entries) committed.
    pub writes_committed: AtomicU64,
    /// Group commits (synced `WriteBatch`es).
    pub groups_committed: AtomicU64,
    /// Incoming versions that lost to a stored version with a greater stamp.
    pub conflicts_lost: AtomicU64,
    /// Client TimeUUIDs refused for being too far in the future.
    pub future_time_rejected: AtomicU64,
    /// Client writes refused because a version with a later stamp (from a
    /// clock ahead of this node's) already held their key.
    pub writes_superseded: AtomicU64,
    /// Replicated entries applied.
    pub entries_applied: AtomicU64,
    /// Damaged records (a head, key or value that does not decode) that
    /// reads skipped instead of failing.
    pub damaged_records_skipped: AtomicU64,
    /// Sealed values that reads refused because they could not be opened
    /// (altered on disk, or their key missing or damaged).
    pub sealed_values_refused: AtomicU64,
    /// Values this node sealed again under a newer key (a re-encryption).
    pub values_resealed: AtomicU64,
    /// Replicated stamps that the drift bound kept from moving the HLC
    /// as far as they asked.
    pub hlc_drift_clipped: AtomicU64,
    /// Writes and applied chunks answered by one group commit.
    pub group_size: prometheus::Histogram,
    /// Seconds to write and sync one group commit's `WriteBatch`.
    pub commit_seconds: prometheus::Histogram,
}

impl Default for Counters {
    fn default() -> Self {
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(name, help).buckets(buckets))
                .unwrap_or_else(|error| panic!("histogram {name} has valid options: {error}"))
        };
        Self {
            writes_committed: AtomicU64::new(0),
            groups_committed: AtomicU64::new(0),
            conflicts_lost: AtomicU64::new(0),
            future_time_rejected: AtomicU64::new(0),
            writes_superseded: AtomicU64::new(0),
            entries_applied: AtomicU64::new(0),
            damaged_records_skipped: AtomicU64::new(0),
            sealed_values_refused: AtomicU64::new(0),
            values_resealed: AtomicU64::new(0),
            hlc_drift_clipped: AtomicU64::new(0),
            group_size: histogram(
                "consensusdb_group_commit_size",
                "Writes and applied replication chunks answered by one group commit.",
                prometheus::exponential_buckets(1.0, 2.0, 12).unwrap_or_default(),
            ),
            commit_seconds: histogram(
                "consensusdb_group_commit_seconds",
                "Seconds to write and sync one group commit (WAL append and fsync).",
                prometheus::exponential_buckets(0.000_05, 2.0, 16).unwrap_or_default(),
            ),
        }
    }
}

#[cfg(test)]
mod reencrypt_tests;
#[cfg(test)]
mod replication_tests;
#[cfg(test)]
mod scan_tests;
#[cfg(test)]
mod sealing_tests;
#[cfg(test)]
mod tests;

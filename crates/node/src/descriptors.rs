//! File descriptors: the process limit, and how it is shared between
//! RocksDB's files and client connections.
//!
//! Both draw on one per-process limit, and the soft limit a shell hands a
//! process is often 1,024. A thousand idle connections then took every
//! descriptor; the next RocksDB flush failed, and the writer, which cannot
//! know whether a failed write reached the disk, stopped for good. So the
//! node raises its soft limit to the hard one at start, and splits what it
//! has: half for RocksDB's table files (its `max_open_files`), half, less a
//! margin for everything else, for client connections. Neither can then
//! take the other's share.

/// Descriptors kept for what is neither a table file nor a client
/// connection: the WAL, the manifest, logs, listeners, connections to
/// peers, the runtime's own.
const MARGIN: u64 = 128;
/// RocksDB's own files beside its table files (WAL, manifest, info log).
const ROCKSDB_OTHER_FILES: u64 = 64;

/// How the descriptors of the process are shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The process's soft limit.
    pub limit: u64,
    /// Table files RocksDB may keep open.
    pub rocksdb_table_files: i32,
    /// Client connections (gRPC and HTTP together) open at once.
    pub connections: usize,
}

impl DescriptorBudget {
    /// The share-out of `limit` descriptors; `configured_connections`
    /// (0 = derived) overrides the connections' share.
    pub fn of(limit: u64, configured_connections: usize) -> Self {
        let half = limit / 2;
        let rocksdb_table_files = half.saturating_sub(ROCKSDB_OTHER_FILES).max(16);
        let derived = half.saturating_sub(MARGIN).max(16);
        let connections = if configured_connections == 0 {
            usize::try_from(derived).unwrap_or(usize::MAX)
        } else {
            configured_connections
        };
        Self {
            limit,
            rocksdb_table_files: i32::try_from(rocksdb_table_files).unwrap_or(i32::MAX),
            connections,
        }
    }
}

/// Raises the soft limit on open files to the hard limit. Returns the
/// limit in force (unchanged where it cannot be raised).
pub fn raise_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The soft limit on open files now.
pub fn current_limit() -> std::io::Result<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_and_connections_each_get_their_own_share() {
        let small = DescriptorBudget::of(1024, 0);
        assert_eq!(small, DescriptorBudget { limit: 1024, rocksdb_table_files: 448, connections: 384 });
        assert!(
            small.rocksdb_table_files as u64 + ROCKSDB_OTHER_FILES + small.connections as u64 + MARGIN
                <= 1024
        );
        let large = DescriptorBudget::of(1 << 20, 0);
        assert_eq!(large.connections, (1 << 19) - 128);
        assert_eq!(DescriptorBudget::of(1 << 20, 5000).connections, 5000, "configured wins");
    }
}

//! Opening a data directory: the process lock, the format check and the
//! node identity.
//!
//! Layout:
//!
//! ```text
//! <data_dir>/node.lock   held (flock) while a process uses the directory
//! <data_dir>/rocksdb/    the database
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use consensusdb_types::{FrontierMark, NodeId, Origin};
use rocksdb::DB;

use crate::StorageError;
use crate::columns::{self, FRONTIER, META, RECORDS};

/// The data directory format this build writes and reads.
pub const DATA_DIR_FORMAT: u32 = 1;
/// The key encoding this build writes and reads.
pub const KEY_ENCODING_FORMAT: u32 = 1;

const META_DATA_DIR_FORMAT: &[u8] = b"format.data_dir";
const META_KEY_ENCODING: &[u8] = b"format.key_encoding";
const META_NODE_ID: &[u8] = b"node_id";
pub(crate) const META_INCARNATION: &[u8] = b"incarnation";
/// Present while a bootstrap snapshot is being installed.
pub(crate) const META_BOOTSTRAP_PENDING: &[u8] = b"bootstrap.pending";

/// Holds the directory's lock for as long as it lives.
pub(crate) struct DataDirLock {
    _file: File,
}

/// The database handle and the directory lock, dropped in that order.
pub(crate) struct Engine {
    pub(crate) db: DB,
    _lock: DataDirLock,
}

/// An opened data directory.
pub(crate) struct OpenedDataDir {
    pub(crate) engine: Engine,
    pub(crate) origin: Origin,
    /// Where this origin's own log stands: the last seq and its HLC.
    pub(crate) own_mark: FrontierMark,
    /// The applied frontier of every origin, this one included.
    pub(crate) frontier: HashMap<Origin, FrontierMark>,
    /// The highest HLC applied from any origin: the clock starts above it.
    pub(crate) clock_floor: u64,
    /// The directory was created by this open.
    pub(crate) created: bool,
    /// A snapshot install was cut short: it must be redone before the node
    /// takes writes.
    pub(crate) bootstrap_pending: bool,
}

/// Locks, opens and checks `path`, creating it on first start. RocksDB
/// keeps at most `max_open_files` table files open (-1: all of them).
pub(crate) fn open(path: &Path, max_open_files: i32) -> Result<OpenedDataDir, StorageError> {
    std::fs::create_dir_all(path)
        .map_err(StorageError::io(format!("creating data directory {}", path.display())))?;
    let lock = lock(path)?;
    let db_path = rocksdb_path(path);
    let derived_missing = refuse_unknown_column_families(path, &db_path)?;
    let db = DB::open_cf_descriptors(&columns::db_options(max_open_files), &db_path, columns::descriptors())?;
    let (origin, created) = load_or_create_identity(path, &db)?;
    let bootstrap_pending = db.get_cf(columns::handle(&db, META), META_BOOTSTRAP_PENDING)?.is_some();
    if derived_missing {
        crate::digests::rebuild(&db)?;
    }
    let frontier = load_frontier(&db)?;
    let own_mark = frontier.get(&origin).copied().unwrap_or_default();
    let clock_floor = frontier.values().map(|mark| mark.hlc).max().unwrap_or(0);
    Ok(OpenedDataDir {
        engine: Engine { db, _lock: lock },
        origin,
        own_mark,
        frontier,
        clock_floor,
        created,
        bootstrap_pending,
    })
}

/// Every origin's mark in the `frontier` column family.
fn load_frontier(db: &DB) -> Result<HashMap<Origin, FrontierMark>, StorageError> {
    let mut frontier = HashMap::new();
    for item in db.iterator_cf(columns::handle(db, FRONTIER), rocksdb::IteratorMode::Start) {
        let (key, value) = item?;
        frontier.insert(Origin::from_bytes(&key)?, FrontierMark::decode(&value)?);
    }
    Ok(frontier)
}

/// The database of `path` opened read-only, so every write fails: lets tests
/// drive the writer's failure path with a real RocksDB error.
#[cfg(test)]
pub(crate) fn open_read_only(path: &Path) -> Engine {
    let db = DB::open_cf_for_read_only(&rocksdb::Options::default(), rocksdb_path(path), columns::ALL, false)
        .expect("opens read-only");
    Engine { db, _lock: lock(path).expect("directory is free") }
}

fn lock(path: &Path) -> Result<DataDirLock, StorageError> {
    let lock_path = path.join("node.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(StorageError::io(format!("opening {}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(TryLockError::WouldBlock) => {
            Err(StorageError::DataDirInUse { path: path.to_path_buf(), lock: lock_path })
        }
        Err(TryLockError::Error(source)) => {
            Err(StorageError::Io { context: format!("locking {}", lock_path.display()), source })
        }
    }
}

/// A directory written by a newer build may hold column families this build
/// does not know; RocksDB would refuse it with an opaque message. Returns
/// whether an existing database lacks a family derived from the records
/// (written before it existed), which must then be computed from them.
fn refuse_unknown_column_families(path: &Path, db_path: &Path) -> Result<bool, StorageError> {
    if !db_path.join("CURRENT").exists() {
        return Ok(false);
    }
    let existing = DB::list_cf(&rocksdb::Options::default(), db_path)?;
    if let Some(unknown) =
        existing.iter().find(|name| name.as_str() != "default" && !columns::ALL.contains(&name.as_str()))
    {
        return Err(unknown_format(
            path,
            format!(
                "it has a column family {unknown:?} this build does not know; it was written by a newer ConsensusDB"
            ),
        ));
    }
    Ok(columns::DERIVED.iter().any(|derived| !existing.iter().any(|name| name == derived)))
}

fn unknown_format(path: &Path, reason: String) -> StorageError {
    StorageError::DataDir { path: path.to_path_buf(), reason }
}

/// The node's origin, and whether this call created it.
fn load_or_create_identity(path: &Path, db: &DB) -> Result<(Origin, bool), StorageError> {
    let meta = columns::handle(db, META);
    let read_u32 = |key: &[u8]| -> Result<Option<u32>, StorageError> {
        match db.get_cf(meta, key)? {
            None => Ok(None),
            Some(bytes) => bytes.as_slice().try_into().map(|b| Some(u32::from_be_bytes(b))).map_err(|_| {
                unknown_format(path, format!("meta entry {} is not 4 bytes", String::from_utf8_lossy(key)))
            }),
        }
    };
    match db.get_cf(meta, META_NODE_ID)? {
        None => {
            // First start, unless something is already here: a directory with
            // meta entries or records but no node id is damaged or foreign,
            // and must not be silently taken over.
            let holds_data = |family| {
                db.iterator_cf(columns::handle(db, family), rocksdb::IteratorMode::Start).next().is_some()
            };
            if holds_data(META) || holds_data(RECORDS) {
                return Err(unknown_format(
                    path,
                    "it holds data but no node_id in meta; refusing to adopt it".into(),
                ));
            }
            let origin = Origin { node: NodeId::random(), incarnation: 1 };
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(meta, META_DATA_DIR_FORMAT, DATA_DIR_FORMAT.to_be_bytes());
            batch.put_cf(meta, META_KEY_ENCODING, KEY_ENCODING_FORMAT.to_be_bytes());
            batch.put_cf(meta, META_NODE_ID, origin.node.to_bytes());
            batch.put_cf(meta, META_INCARNATION, origin.incarnation.to_be_bytes());
            let mut sync = rocksdb::WriteOptions::default();
            sync.set_sync(true);
            db.write_opt(batch, &sync)?;
            tracing::info!(node = %origin.node, data_dir = %path.display(), "created a new data directory");
            Ok((origin, true))
        }
        Some(node_bytes) => {
            for (key, supported) in
                [(META_DATA_DIR_FORMAT, DATA_DIR_FORMAT), (META_KEY_ENCODING, KEY_ENCODING_FORMAT)]
            {
                let found = read_u32(key)?;
                if found != Some(supported) {
                    let name = String::from_utf8_lossy(key);
                    let found = found.map_or_else(|| "none".to_string(), |v| v.to_string());
                    return Err(unknown_format(
                        path,
                        format!("{name} is {found}, but this build supports only {supported}"),
                    ));
                }
            }
            let node = NodeId::from_bytes(&node_bytes)
                .ok_or_else(|| unknown_format(path, "node_id is not 16 bytes".into()))?;
            let incarnation = read_u32(META_INCARNATION)?
                .ok_or_else(|| unknown_format(path, "meta has a node_id but no incarnation".into()))?;
            Ok((Origin { node, incarnation }, false))
        }
    }
}

/// The path of the RocksDB directory inside a data directory.
pub(crate) fn rocksdb_path(data_dir: &Path) -> PathBuf {
    data_dir.join("rocksdb")
}

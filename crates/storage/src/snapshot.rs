//! Bootstrap snapshots: a consistent copy of a node's records, digests and
//! the frontier they cover, streamed to a node that must start from one (a
//! new node, one whose needed log entries were purged everywhere, or one
//! whose data directory is older than the cluster's).
//!
//! The source reads everything from one RocksDB snapshot. The receiver
//! installs it through its writer in three steps (begin, records, end); a
//! marker in `meta` spans them, so an install cut short by a crash is
//! redone at the next start instead of leaving a half-copied store.

use consensusdb_types::{Digest, FrontierMark, Origin};
use rocksdb::{IteratorMode, ReadOptions};
use tokio::sync::{mpsc, oneshot};

use crate::columns::{self, DIGESTS, FRONTIER, RECORDS, VALUES};
use crate::writer::WriterMessage;
pub(crate) use crate::writer::install::InstallStep;
pub use crate::writer::install::{InstallOutcome, SnapshotRecord};
use crate::{Frontier, StorageError, Store};

/// A piece of a snapshot, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotPart {
    /// First: the frontier the snapshot covers.
    Frontier(Frontier),
    /// Then the records, in key order.
    Records(Vec<SnapshotRecord>),
    /// Last: every region's digest (region prefix, digest).
    Digests(Vec<(Vec<u8>, Digest)>),
}

fn export(
    engine: &crate::data_dir::Engine,
    chunk_bytes: usize,
    out: &mpsc::Sender<Result<SnapshotPart, StorageError>>,
) -> Result<(), StorageError> {
    let db = &engine.db;
    let snapshot = db.snapshot();
    let read = || {
        let mut options = ReadOptions::default();
        options.set_snapshot(&snapshot);
        options
    };
    let mut frontier = Frontier::new();
    for item in db.iterator_cf_opt(columns::handle(db, FRONTIER), read(), IteratorMode::Start) {
        let (key, value) = item?;
        frontier.insert(Origin::from_bytes(&key)?, FrontierMark::decode(&value)?);
    }
    let send = |part| out.blocking_send(Ok(part)).map_err(|_| StorageError::ShuttingDown);
    send(SnapshotPart::Frontier(frontier))?;
    let values = columns::handle(db, VALUES);
    let mut chunk = Vec::new();
    let mut bytes = 0;
    for item in db.iterator_cf_opt(columns::handle(db, RECORDS), read(), IteratorMode::Start) {
        let (key, head) = item?;
        let value = snapshot.get_cf(values, &key)?;
        bytes += key.len() + head.len() + value.as_ref().map_or(0, Vec::len);
        chunk.push(SnapshotRecord { key: key.into_vec(), head: head.into_vec(), value });
        if bytes >= chunk_bytes {
            send(SnapshotPart::Records(std::mem::take(&mut chunk)))?;
            bytes = 0;
        }
    }
    if !chunk.is_empty() {
        send(SnapshotPart::Records(chunk))?;
    }
    let mut digests = Vec::new();
    for item in db.iterator_cf_opt(columns::handle(db, DIGESTS), read(), IteratorMode::Start) {
        let (region, value) = item?;
        let digest = Digest::from_slice(&value).ok_or_else(|| {
            StorageError::Corrupt(consensusdb_types::DecodeError {
                what: "digest",
                reason: "not 32 bytes".into(),
            })
        })?;
        digests.push((region.into_vec(), digest));
    }
    send(SnapshotPart::Digests(digests))
}

impl Store {
    /// Streams a consistent snapshot: the frontier, the records in chunks of
    /// about `chunk_bytes`, then the digests. Reads one RocksDB snapshot on
    /// a blocking thread; stops when the receiver is dropped.
    pub fn export_snapshot(&self, chunk_bytes: usize) -> mpsc::Receiver<Result<SnapshotPart, StorageError>> {
        let (sender, receiver) = mpsc::channel(2);
        let engine = self.shared.engine.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = export(&engine, chunk_bytes, &sender) {
                let _ = sender.blocking_send(Err(error));
            }
        });
        receiver
    }

    async fn install_step(&self, step: InstallStep) -> Result<InstallOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        self.inbox()?
            .send(WriterMessage::Install(step, reply))
            .await
            .map_err(|_| StorageError::ShuttingDown)?;
        answer.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// Starts installing a snapshot: client writes must already be closed
    /// ([`Store::hold_writes`]). Clears the records, digests and purge
    /// queue and the log of other origins; replicated entries are refused
    /// until [`Store::install_end`].
    pub async fn install_begin(&self) -> Result<(), StorageError> {
        self.install_step(InstallStep::Begin).await.map(drop)
    }

    /// Stores a chunk of the snapshot's records.
    pub async fn install_records(&self, records: Vec<SnapshotRecord>) -> Result<(), StorageError> {
        self.install_step(InstallStep::Records(records)).await.map(drop)
    }

    /// Finishes an install: the snapshot's digests and frontier, then this
    /// node's own writes the snapshot lacks, re-applied from its log. If the
    /// snapshot holds this node's own origin beyond its log, the node takes
    /// a new incarnation.
    pub async fn install_end(
        &self,
        frontier: Frontier,
        digests: Vec<(Vec<u8>, Digest)>,
    ) -> Result<InstallOutcome, StorageError> {
        self.install_step(InstallStep::End { frontier, digests }).await
    }
}

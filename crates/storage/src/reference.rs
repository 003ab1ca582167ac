//! A raw-RocksDB reference for the write path: the bytes our writer commits
//! per event, written with nothing around them, so a benchmark can report
//! ConsensusDB's throughput as a ratio of what RocksDB alone does with the
//! same work on the same disk in the same run.
//!
//! [`RawReference::commit`] writes, in one synced `WriteBatch`, exactly what
//! the writer stages for a put of those events as one request (see
//! `writer.rs`, `commit_group` and `stage`):
//!
//! - per event, its head into `records` and its stored value (expiry prefix
//!   plus value bytes) into `values`, both under the encoded record key;
//! - one log entry holding one mutation per event (the key and the value
//!   again) into `log`, under `(origin, seq)`;
//! - the origin's frontier mark into `frontier`.
//!
//! The database uses the store's own options and column family descriptors,
//! so compression, compaction and the `values` compaction filter are the
//! same.
//!
//! What it leaves out, on purpose (that is what the ratio measures):
//!
//! - no gRPC: no network, no protobuf decoding, no async runtime;
//! - no validation of keys, values or limits, and no compression attempt;
//! - no read-before-write: the writer reads each key's stored head to apply
//!   the conflict rule and put-if-absent; the reference just overwrites;
//! - no group-commit queue: each caller commits its own batch directly
//!   (concurrent callers still meet in RocksDB's own write group);
//! - no data-directory lock, format check or node identity in `meta`: a
//!   reference directory is not a node's data directory, and a node refuses
//!   to adopt one.
//!
//! Concurrent commits draw seqs and HLC values under one short lock, but
//! write outside it, so their batches may land out of seq order and the
//! frontier mark may briefly name an earlier seq than the newest. The bytes
//! written are the same, which is all a reference needs.

use std::path::Path;
use std::sync::Mutex;

use consensusdb_types::key_codec::encode_key;
use consensusdb_types::{
    Compression, FrontierMark, HybridClock, LogEntry, Mutation, MutationKind, NodeId, Origin, RecordKey,
    stored_value,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use crate::StorageError;
use crate::clock::now_ms;
use crate::columns::{self, FRONTIER, LOG, RECORDS, VALUES};
use crate::data_dir::rocksdb_path;

/// A RocksDB database laid out like a node's, written to directly.
pub struct RawReference {
    db: DB,
    origin: Origin,
    /// The next seq and the clock, drawn together so seq order is HLC order.
    sequencer: Mutex<Sequencer>,
}

struct Sequencer {
    next_seq: u64,
    clock: HybridClock,
}

impl RawReference {
    /// Creates (or reopens) the database under `dir/rocksdb`, the same
    /// layout as a node's data directory, with a fresh random origin.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(StorageError::io(format!("creating reference directory {}", dir.display())))?;
        let db =
            DB::open_cf_descriptors(&columns::db_options(-1), rocksdb_path(dir), columns::descriptors())?;
        Ok(Self {
            db,
            origin: Origin { node: NodeId::random(), incarnation: 1 },
            sequencer: Mutex::new(Sequencer { next_seq: 1, clock: HybridClock::default() }),
        })
    }

    /// Writes `events` (record key, uncompressed value) as one log entry in
    /// one synced `WriteBatch`: what a `PutBatch` of them commits, or a lone
    /// `Put` when there is one event.
    pub fn commit(&self, events: &[(RecordKey, &[u8])]) -> Result<(), StorageError> {
        if events.is_empty() {
            return Ok(());
        }
        let (seq, hlc) = self.next_seq_and_hlc();
        let mut entry =
            LogEntry { origin: self.origin, seq, hlc, mutations: Vec::with_capacity(events.len()) };
        let stamp = entry.stamp();
        let records = columns::handle(&self.db, RECORDS);
        let values = columns::handle(&self.db, VALUES);
        let mut batch = WriteBatch::default();
        for (key, value) in events {
            let mutation = Mutation {
                key: encode_key(key),
                kind: MutationKind::Put {
                    value: value.to_vec(),
                    compression: Compression::None,
                    expires_at_ms: None,
                    seal: None,
                    client_key: None,
                },
            };
            batch.put_cf(records, &mutation.key, mutation.head(stamp, seq).encode());
            batch.put_cf(values, &mutation.key, stored_value::encode(None, value));
            entry.mutations.push(mutation);
        }
        batch.put_cf(columns::handle(&self.db, LOG), entry.log_key(), entry.encode_value());
        batch.put_cf(
            columns::handle(&self.db, FRONTIER),
            self.origin.to_bytes(),
            FrontierMark { seq, hlc }.encode(),
        );
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    fn next_seq_and_hlc(&self) -> (u64, u64) {
        // A panic while holding this lock cannot leave it inconsistent (two
        // plain field updates), so a poisoned lock is still usable.
        let mut sequencer = self.sequencer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = sequencer.next_seq;
        sequencer.next_seq += 1;
        (seq, sequencer.clock.tick(now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_types::{Head, RowKey, TimeUuid};
    use std::time::{Duration, UNIX_EPOCH};

    fn key(minor: &str, ms: u64) -> RecordKey {
        RowKey::new("t0001", "r0", minor)
            .at(Some(TimeUuid::random_at(UNIX_EPOCH + Duration::from_millis(ms))))
    }

    /// A column family's entries, as (key, value).
    type Entries = Vec<(Box<[u8]>, Box<[u8]>)>;

    fn entries(db: &DB, family: &str) -> Entries {
        db.iterator_cf(columns::handle(db, family), rocksdb::IteratorMode::Start)
            .map(|item| item.expect("iterates"))
            .collect()
    }

    #[test]
    fn commits_what_the_writer_stages_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let single = key("m1", 1_700_000_000_000);
        let batch = [key("m2", 1_700_000_000_001), key("m3", 1_700_000_000_002)];
        let origin = {
            let reference = RawReference::open(dir.path()).expect("opens");
            reference.commit(&[(single.clone(), b"one".as_slice())]).expect("commits one");
            let pairs: Vec<_> = batch.iter().map(|k| (k.clone(), b"two".as_slice())).collect();
            reference.commit(&pairs).expect("commits a batch");
            reference.commit(&[]).expect("an empty commit writes nothing");
            reference.origin
        };

        let db = DB::open_cf_descriptors(
            &columns::db_options(-1),
            rocksdb_path(dir.path()),
            columns::descriptors(),
        )
        .expect("reopens with the store's column families");
        let heads = entries(&db, RECORDS);
        assert_eq!(heads.len(), 3);
        for (_, head) in &heads {
            let head = Head::decode(head).expect("a head");
            assert_eq!(head.stamp.origin, origin);
            assert_eq!(head.compression, Compression::None);
        }
        let values = entries(&db, VALUES);
        assert_eq!(values.len(), 3);
        assert!(values.iter().any(|(k, _)| **k == *encode_key(&single)));
        assert_eq!(stored_value::decode(&values[0].1).expect("a stored value"), b"one");

        let log = entries(&db, LOG);
        let log: Vec<LogEntry> =
            log.iter().map(|(k, v)| LogEntry::decode(k, v).expect("a log entry")).collect();
        assert_eq!(log.iter().map(|e| (e.seq, e.mutations.len())).collect::<Vec<_>>(), [(1, 1), (2, 2)]);
        assert!(log[0].hlc < log[1].hlc);

        let frontier = entries(&db, FRONTIER);
        assert_eq!(frontier.len(), 1);
        assert_eq!(FrontierMark::decode(&frontier[0].1).expect("a mark").seq, 2);
    }
}

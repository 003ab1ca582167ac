//! Installing a bootstrap snapshot in the writer (see `snapshot.rs`, which
//! reads snapshots and hands the steps defined here to the writer).

use std::sync::atomic::Ordering;

use std::collections::HashMap;

use consensusdb_types::key_codec::{decode_key, region_prefix_of};
use consensusdb_types::log_entry::log_key;
use consensusdb_types::{Digest, FrontierMark, Head, LogEntry, MutationKind, Origin, stored_value};
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use super::{Group, Writer};
use crate::columns::{self, DIGESTS, FRONTIER, LOG, META, PURGE_QUEUE, RECORDS, VALUES};
use crate::data_dir::{META_BOOTSTRAP_PENDING, META_INCARNATION};
use crate::{Frontier, StorageError};

/// One record as stored: its key, encoded head and encoded stored value
/// (`None` for a tombstone or a value compaction dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The encoded record key.
    pub key: Vec<u8>,
    /// The encoded [`consensusdb_types::Head`].
    pub head: Vec<u8>,
    /// The encoded stored value.
    pub value: Option<Vec<u8>>,
}

/// One step of installing a snapshot.
#[derive(Debug)]
pub(crate) enum InstallStep {
    /// Clear the records and their derived families; refuse applies.
    Begin,
    /// Store records.
    Records(Vec<SnapshotRecord>),
    /// Store digests and the frontier, keep this node's own writes the
    /// snapshot lacks, and accept applies again.
    End { frontier: Frontier, digests: Vec<(Vec<u8>, Digest)> },
}

/// What an install did to this node's identity and own writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstallOutcome {
    /// Set when the snapshot held this node's own origin beyond its local
    /// log (a data directory older than what the cluster saw): the node now
    /// writes as this new incarnation.
    pub new_origin: Option<Origin>,
    /// Own log entries the snapshot lacked, re-applied on top of it.
    pub reapplied_own: u64,
}

/// Above every key of the cleared families: record keys and region
/// prefixes start with UTF-8 (never 0xFF), purge-queue keys with an HLC
/// whose top byte stays below 0xFF for millennia.
const ABOVE_ALL_KEYS: [u8; 16] = [0xFF; 16];

impl Writer {
    pub(crate) fn install(&mut self, step: InstallStep) -> Result<InstallOutcome, StorageError> {
        match step {
            InstallStep::Begin => self.install_begin().map(|()| InstallOutcome::default()),
            InstallStep::Records(records) => {
                self.install_records(records).map(|()| InstallOutcome::default())
            }
            InstallStep::End { frontier, digests } => self.install_end(frontier, digests),
        }
    }

    fn set_installing(&mut self, installing: bool) {
        // The snapshot may destroy keys (a shred this node missed): none
        // opened before it is trusted after.
        self.keys.vault.forget_all();
        self.installing = installing;
        self.shared_installing.store(installing, Ordering::Release);
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        Ok(self.engine.db.write_opt(batch, &options)?)
    }

    fn install_begin(&mut self) -> Result<(), StorageError> {
        let db = &self.engine.db;
        let mut batch = WriteBatch::default();
        for family in [RECORDS, VALUES, DIGESTS, PURGE_QUEUE] {
            batch.delete_range_cf(columns::handle(db, family), &[][..], &ABOVE_ALL_KEYS[..]);
        }
        // Other origins restart from the snapshot's frontier; their old log
        // would leave gaps, so it goes too. This node's own log stays: the
        // writes in it that the snapshot lacks are re-applied at the end.
        for origin in self.frontier.keys().filter(|o| **o != self.origin) {
            batch.delete_range_cf(columns::handle(db, LOG), log_key(origin, 0), log_key(origin, u64::MAX));
            batch.delete_cf(columns::handle(db, FRONTIER), origin.to_bytes());
        }
        batch.put_cf(columns::handle(db, META), META_BOOTSTRAP_PENDING, [1]);
        self.write(batch, true)?;
        self.set_installing(true);
        let own = self.origin;
        self.frontier.retain(|origin, _| *origin == own);
        self.view.replace(self.frontier.iter().map(|(o, m)| (*o, *m)).collect());
        Ok(())
    }

    fn install_records(&mut self, records: Vec<SnapshotRecord>) -> Result<(), StorageError> {
        if !self.installing {
            return Err(StorageError::NotInstalling);
        }
        let db = &self.engine.db;
        let (heads, values, queue) =
            (columns::handle(db, RECORDS), columns::handle(db, VALUES), columns::handle(db, PURGE_QUEUE));
        let mut batch = WriteBatch::default();
        // Digests are summed from the records as they are stored, not taken
        // on trust: they always describe exactly what this node holds.
        let mut digests: HashMap<Vec<u8>, Digest> = HashMap::new();
        for record in records {
            // Checked before anything is stored, as replicated entries are.
            // A damaged record (a source holding one from a bad disk, or
            // from before entries were checked) is skipped and counted, as
            // scans skip it: refusing the whole snapshot would leave every
            // joiner unable to bootstrap from that source, or any source.
            let head = match check_snapshot_record(&record) {
                Ok(head) => head,
                Err(error) => {
                    self.counters.damaged_records_skipped.fetch_add(1, Ordering::Relaxed);
                    let key = crate::error::hex(&record.key);
                    tracing::error!(%key, %error, "skipped a damaged snapshot record");
                    continue;
                }
            };
            if let Some(at) = head.purgeable_at() {
                batch.put_cf(queue, columns::purge_queue_key(at, &record.key), []);
            }
            if let Some(region) = region_prefix_of(&record.key) {
                let sum = digests.entry(region.to_vec()).or_default();
                *sum = sum.wrapping_add(Digest::of_version(&record.key, &head.stamp, head.tombstone));
            }
            if let Some(value) = &record.value {
                batch.put_cf(values, &record.key, value);
            }
            batch.put_cf(heads, &record.key, &record.head);
        }
        for (region, sum) in digests {
            batch.merge_cf(columns::handle(db, DIGESTS), region, sum.to_bytes());
        }
        // Not synced: the pending marker makes a crash redo the install.
        self.write(batch, false)
    }

    fn install_end(
        &mut self,
        snapshot_frontier: Frontier,
        digests: Vec<(Vec<u8>, Digest)>,
    ) -> Result<InstallOutcome, StorageError> {
        if !self.installing {
            return Err(StorageError::NotInstalling);
        }
        let engine = self.engine.clone();
        let db = &engine.db;
        let mut outcome = InstallOutcome::default();
        let mut group = Group::default();
        let shipped = digests.iter().fold(Digest::default(), |sum, (_, d)| sum.wrapping_add(*d));
        let installed = crate::digests::report(db, None)?.total();
        if shipped != installed {
            // The source's digests disagree with its own records: keep the
            // ones computed from what was installed, and say so.
            tracing::error!(%shipped, %installed, "the snapshot's digests do not match its records");
        }
        let own = self.origin;
        let local = self.next_seq - 1;
        let snapshot_own = snapshot_frontier.get(&own).map_or(0, |mark| mark.seq);
        let mut frontier: std::collections::HashMap<Origin, FrontierMark> =
            snapshot_frontier.iter().filter(|(o, _)| **o != own).map(|(o, m)| (*o, *m)).collect();
        if snapshot_own > local {
            // The cluster holds more of this origin than this directory: it
            // is older than what was replicated. Writing on as this origin
            // would reuse seqs, so the node becomes a new incarnation; the
            // old origin's entries are the cluster's, like any other's.
            let new = Origin { node: own.node, incarnation: own.incarnation + 1 };
            frontier.insert(own, snapshot_frontier[&own]);
            group.batch.put_cf(columns::handle(db, META), META_INCARNATION, new.incarnation.to_be_bytes());
            tracing::warn!(old = %own, %new, snapshot_seq = snapshot_own, local_seq = local,
                "the cluster holds this node's origin beyond its log: continuing as a new incarnation");
            self.origin = new;
            self.shared_incarnation.store(new.incarnation, Ordering::Release);
            self.next_seq = 1;
            self.keys.start_new_origin();
            outcome.new_origin = Some(new);
        } else {
            outcome.reapplied_own = self.reapply_own_log(&mut group, snapshot_own, &snapshot_frontier)?;
            if let Some(mark) = self.frontier.get(&own) {
                frontier.insert(own, *mark);
            }
        }
        for (origin, mark) in &frontier {
            group.batch.put_cf(columns::handle(db, FRONTIER), origin.to_bytes(), mark.encode());
        }
        for (region, delta) in &group.digests {
            if !delta.is_zero() {
                group.batch.merge_cf(columns::handle(db, DIGESTS), region, delta.to_bytes());
            }
        }
        group.batch.delete_cf(columns::handle(db, META), META_BOOTSTRAP_PENDING);
        // Written directly, not through the committer: the keys this group
        // destroys are forgotten with every other when installing ends.
        self.write(group.batch, true)?;
        self.keys.recheck(db, self.origin);
        // Never stamp below anything the snapshot holds.
        self.clock.raise_to(frontier.values().map(|mark| mark.hlc).max().unwrap_or(0));
        self.view.replace(frontier.iter().map(|(o, m)| (*o, *m)).collect());
        self.frontier = frontier;
        self.set_installing(false);
        Ok(outcome)
    }

    /// Stages this node's own log entries after `after_seq` on top of the
    /// installed records, under the conflict rule. Returns how many. A
    /// reseal among them brings its version only if `installed` (the
    /// snapshot's frontier, this node's own origin included) shows the
    /// snapshot lacks it; otherwise the snapshot holds the version, or what
    /// replaced it.
    fn reapply_own_log(
        &mut self,
        group: &mut Group,
        after_seq: u64,
        installed: &Frontier,
    ) -> Result<u64, StorageError> {
        let local = self.next_seq - 1;
        let engine = self.engine.clone();
        let db = &engine.db;
        let own = self.origin;
        let mut options = ReadOptions::default();
        options.set_iterate_upper_bound(log_key(&own, u64::MAX).to_vec());
        let start = log_key(&own, after_seq.saturating_add(1));
        let iterator = db.iterator_cf_opt(
            columns::handle(db, LOG),
            options,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let mut count = 0;
        for item in iterator {
            let (key, value) = item?;
            let entry = LogEntry::decode(&key, &value)?;
            if entry.seq != after_seq + 1 + count {
                // Own entries between the snapshot and this one were purged
                // here, yet the snapshot lacks them: it is too old to use.
                return Err(StorageError::SnapshotBehind { snapshot: after_seq, next_held: entry.seq });
            }
            let (stamp, seq) = (entry.stamp(), entry.seq);
            for mutation in entry.mutations {
                let existing = self.current(&mutation.key, &mut group.staged)?;
                let unseen = match &mutation.kind {
                    MutationKind::Reseal { version, version_seq, .. } => {
                        installed.get(&version.origin).is_none_or(|mark| mark.seq < *version_seq)
                    }
                    MutationKind::Put { .. } | MutationKind::Tombstone => false,
                };
                self.stage_mutation(group, stamp, seq, mutation, existing, unseen);
            }
            count += 1;
        }
        if after_seq + count < local {
            return Err(StorageError::SnapshotBehind {
                snapshot: after_seq,
                next_held: after_seq + count + 1,
            });
        }
        if count > 0 {
            tracing::info!(entries = count, "re-applied this node's own writes the snapshot lacked");
        }
        Ok(count)
    }
}

/// The head of a snapshot record whose key, head and value all decode.
fn check_snapshot_record(record: &SnapshotRecord) -> Result<Head, consensusdb_types::DecodeError> {
    decode_key(&record.key)?;
    let head = Head::decode(&record.head)?;
    if let Some(value) = &record.value {
        stored_value::decode(value)?;
    }
    Ok(head)
}

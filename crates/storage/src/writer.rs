//! The single writer: it takes concurrent writes and commits each group of
//! them as one synced `WriteBatch`.
//!
//! Order of work for every command in a group:
//! 1. drop it if its deadline has passed (nothing applied, no seq used);
//! 2. check it against the stored state *and* the writes earlier in the same
//!    group (put-if-absent, touch needs a live record);
//! 3. only then allocate its seq and stamp, so rejected writes never leave
//!    gaps in the origin's seq;
//! 4. stage the record heads and values (under the conflict rule), the full
//!    log entry, and, once per group, the frontier mark.
//!
//! Once a write has a seq it commits, even if its deadline passes while the
//! group is synced. The thread owns the hybrid logical clock, so stamps need
//! no lock.
//!
//! If RocksDB fails to write a group, the writes' outcome is unknown: the
//! WAL may hold them (a failed fsync after a successful write) and replay
//! them at the next start. So the writer never hands those seqs out again;
//! it answers "outcome unknown" and stops accepting writes (fail-stop) until
//! the node restarts and recovers its frontier from disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use consensusdb_types::conflict::incoming_wins;
use consensusdb_types::{
    Compression, FrontierMark, Head, HybridClock, LogEntry, Mutation, MutationKind, Origin, stored_value,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use crate::data_dir::Engine;
use crate::writer_health::WriterHealth;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::columns::{self, FRONTIER, LOG, RECORDS, VALUES};
use crate::{Counters, StorageError, SyncPolicy};

/// One record of a put, checked and compressed, waiting for the writer.
#[derive(Debug)]
pub(crate) struct StagedPut {
    pub(crate) key: Vec<u8>,
    /// The request field naming this record's key, for errors.
    pub(crate) field: String,
    pub(crate) value: Vec<u8>,
    pub(crate) compression: Compression,
    pub(crate) expires_at_ms: Option<u64>,
    pub(crate) if_absent: bool,
}

/// Most bytes of values and keys committed in one group, so one
/// `WriteBatch` stays a bounded allocation however large the requests.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// A change a client asked for.
#[derive(Debug)]
pub(crate) enum WriteCommand {
    /// One or more records, committed as one log entry.
    Put(Vec<StagedPut>),
    /// Re-write the live record at `key` with a new expiry.
    Touch { key: Vec<u8>, field: String, expires_at_ms: Option<u64> },
    /// Write a tombstone at `key`.
    Remove { key: Vec<u8> },
}

impl WriteCommand {
    /// Bytes of keys and values the command carries.
    pub(crate) fn byte_size(&self) -> usize {
        match self {
            WriteCommand::Put(records) => records.iter().map(|r| r.key.len() + r.value.len()).sum(),
            WriteCommand::Touch { key, .. } | WriteCommand::Remove { key } => key.len(),
        }
    }
}

/// What an accepted write became.
#[derive(Debug, Clone)]
pub struct WriteAck {
    /// The seq of its log entry.
    pub seq: u64,
    /// The head left on each key, in request order.
    pub heads: Vec<Head>,
}

pub(crate) type Reply = oneshot::Sender<Result<WriteAck, StorageError>>;

pub(crate) enum WriterMessage {
    Write {
        command: WriteCommand,
        deadline: Option<Instant>,
        reply: Reply,
    },
    /// Finish everything queued before this message, flush, and stop.
    Shutdown(oneshot::Sender<Result<(), StorageError>>),
}

impl WriterMessage {
    fn byte_size(&self) -> usize {
        match self {
            WriterMessage::Write { command, .. } => command.byte_size(),
            WriterMessage::Shutdown(_) => 0,
        }
    }
}

pub(crate) struct Writer {
    pub(crate) engine: Arc<Engine>,
    pub(crate) origin: Origin,
    pub(crate) clock: HybridClock,
    pub(crate) next_seq: u64,
    pub(crate) sync: SyncPolicy,
    pub(crate) max_group: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) health: Arc<WriterHealth>,
    /// Set after a failed group commit; every later write is refused.
    pub(crate) stopped: Option<String>,
}

/// The newest version of a key as the group sees it: stored, or staged by
/// an earlier write of the same group.
#[derive(Clone)]
struct Version {
    head: Head,
    /// The stored value bytes, when known (staged puts; loaded for touch).
    value: Option<Vec<u8>>,
}

struct Accepted {
    reply: Reply,
    ack: WriteAck,
}

/// A mutation with the stamp of the version it would replace, loaded before
/// the write is given a seq so that staging it cannot fail.
struct Planned {
    mutation: Mutation,
    existing: Option<Version>,
}

impl Writer {
    fn db(&self) -> &DB {
        &self.engine.db
    }

    /// Runs until a shutdown message or until every sender is gone.
    pub(crate) fn run(mut self, mut inbox: mpsc::Receiver<WriterMessage>) {
        let mut group = Vec::with_capacity(self.max_group);
        while let Some(first) = inbox.blocking_recv() {
            let mut bytes = first.byte_size();
            group.push(first);
            while group.len() < self.max_group && bytes < MAX_GROUP_BYTES {
                match inbox.try_recv() {
                    Ok(message) => {
                        bytes += message.byte_size();
                        group.push(message);
                    }
                    Err(_) => break,
                }
            }
            let mut shutdown = None;
            let mut writes = Vec::with_capacity(group.len());
            for message in group.drain(..) {
                match message {
                    WriterMessage::Write { command, deadline, reply } if shutdown.is_none() => {
                        writes.push((command, deadline, reply));
                    }
                    WriterMessage::Write { reply, .. } => {
                        let _ = reply.send(Err(StorageError::ShuttingDown));
                    }
                    WriterMessage::Shutdown(done) => shutdown = Some(done),
                }
            }
            self.commit_group(writes);
            if let Some(done) = shutdown {
                inbox.close();
                while let Ok(message) = inbox.try_recv() {
                    if let WriterMessage::Write { reply, .. } = message {
                        let _ = reply.send(Err(StorageError::ShuttingDown));
                    }
                }
                let _ = done.send(self.flush());
                return;
            }
        }
    }

    /// Syncs the WAL and flushes every column family's memtable, so the
    /// next start replays nothing.
    fn flush(&self) -> Result<(), StorageError> {
        self.db().flush_wal(true)?;
        let families: Vec<_> = columns::ALL.iter().map(|name| columns::handle(self.db(), name)).collect();
        self.db().flush_cfs_opt(&families, &rocksdb::FlushOptions::default())?;
        Ok(())
    }

    pub(crate) fn commit_group(&mut self, writes: Vec<(WriteCommand, Option<Instant>, Reply)>) {
        if let Some(reason) = &self.stopped {
            for (_, _, reply) in writes {
                let _ = reply.send(Err(StorageError::WriterStopped { reason: reason.clone() }));
            }
            return;
        }
        let mut batch = WriteBatch::default();
        let mut staged: HashMap<Vec<u8>, Option<Version>> = HashMap::new();
        let mut accepted = Vec::with_capacity(writes.len());
        let mut last_mark = None;
        for (command, deadline, reply) in writes {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let _ = reply.send(Err(StorageError::DeadlineExceeded));
                continue;
            }
            let planned = match self.plan(command, &mut staged) {
                Ok(planned) => planned,
                Err(error) => {
                    let _ = reply.send(Err(error));
                    continue;
                }
            };
            let entry = LogEntry {
                origin: self.origin,
                seq: self.next_seq,
                hlc: self.clock.tick(now_ms()),
                mutations: Vec::with_capacity(planned.len()),
            };
            self.next_seq += 1;
            let (entry, heads) = self.stage(&mut batch, &mut staged, entry, planned);
            last_mark = Some(FrontierMark { seq: entry.seq, hlc: entry.hlc });
            accepted.push(Accepted { reply, ack: WriteAck { seq: entry.seq, heads } });
        }
        let Some(mark) = last_mark else { return };
        let frontier = columns::handle(self.db(), FRONTIER);
        batch.put_cf(frontier, self.origin.to_bytes(), mark.encode());
        let mut options = WriteOptions::default();
        options.set_sync(self.sync == SyncPolicy::Always);
        match self.db().write_opt(batch, &options) {
            Ok(()) => {
                self.counters.groups_committed.fetch_add(1, Ordering::Relaxed);
                self.counters.writes_committed.fetch_add(accepted.len() as u64, Ordering::Relaxed);
                for Accepted { reply, ack } in accepted {
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(%reason, "group commit failed; outcome unknown, refusing writes until restart");
                self.health.mark_stopped();
                for Accepted { reply, .. } in accepted {
                    let _ = reply.send(Err(StorageError::OutcomeUnknown { reason: reason.clone() }));
                }
                self.stopped = Some(reason);
            }
        }
    }

    /// Checks a command against the current state and turns it into mutations.
    fn plan(
        &self,
        command: WriteCommand,
        staged: &mut HashMap<Vec<u8>, Option<Version>>,
    ) -> Result<Vec<Planned>, StorageError> {
        let now = now_ms();
        let mutations = match command {
            WriteCommand::Put(records) => {
                for record in records.iter().filter(|r| r.if_absent) {
                    if let Some(current) = self.current(&record.key, staged)?
                        && !current.head.is_hidden(now)
                    {
                        return Err(StorageError::AlreadyExists { field: record.field.clone() });
                    }
                }
                records
                    .into_iter()
                    .map(|r| Mutation {
                        key: r.key,
                        kind: MutationKind::Put {
                            value: r.value,
                            compression: r.compression,
                            expires_at_ms: r.expires_at_ms,
                        },
                    })
                    .collect()
            }
            WriteCommand::Touch { key, field, expires_at_ms } => {
                let current = self
                    .current(&key, staged)?
                    .filter(|v| !v.head.is_hidden(now))
                    .ok_or_else(|| StorageError::NotFound { field: field.clone() })?;
                let value = match current.value {
                    Some(value) => value,
                    None => self.stored_value(&key)?.ok_or(StorageError::NotFound { field })?,
                };
                vec![Mutation {
                    key,
                    kind: MutationKind::Put { value, compression: current.head.compression, expires_at_ms },
                }]
            }
            WriteCommand::Remove { key } => vec![Mutation { key, kind: MutationKind::Tombstone }],
        };
        mutations
            .into_iter()
            .map(|mutation| {
                let existing = self.current(&mutation.key, staged)?;
                Ok(Planned { mutation, existing })
            })
            .collect()
    }

    /// The newest version of `key`, staged in this group or stored.
    fn current(
        &self,
        key: &[u8],
        staged: &mut HashMap<Vec<u8>, Option<Version>>,
    ) -> Result<Option<Version>, StorageError> {
        if let Some(version) = staged.get(key) {
            return Ok(version.clone());
        }
        let records = columns::handle(self.db(), RECORDS);
        let version = match self.db().get_pinned_cf(records, key)? {
            Some(bytes) => Some(Version { head: Head::decode(&bytes)?, value: None }),
            None => None,
        };
        staged.insert(key.to_vec(), version.clone());
        Ok(version)
    }

    fn stored_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let values = columns::handle(self.db(), VALUES);
        match self.db().get_pinned_cf(values, key)? {
            Some(bytes) => Ok(Some(stored_value::decode(&bytes)?.to_vec())),
            None => Ok(None),
        }
    }

    /// Adds the entry's record changes (those that win) and the entry itself
    /// to the batch. Returns the entry and the head of each mutation.
    fn stage(
        &self,
        batch: &mut WriteBatch,
        staged: &mut HashMap<Vec<u8>, Option<Version>>,
        mut entry: LogEntry,
        planned: Vec<Planned>,
    ) -> (LogEntry, Vec<Head>) {
        let records = columns::handle(self.db(), RECORDS);
        let values = columns::handle(self.db(), VALUES);
        let log = columns::handle(self.db(), LOG);
        let stamp = entry.stamp();
        let mut heads = Vec::with_capacity(planned.len());
        for Planned { mutation, existing } in planned {
            let head = mutation.head(stamp, entry.seq);
            if incoming_wins(existing.as_ref().map(|v| &v.head.stamp), &stamp) {
                batch.put_cf(records, &mutation.key, head.encode());
                let value = match &mutation.kind {
                    MutationKind::Put { value, expires_at_ms, .. } => {
                        batch.put_cf(values, &mutation.key, stored_value::encode(*expires_at_ms, value));
                        Some(value.clone())
                    }
                    MutationKind::Tombstone => {
                        batch.delete_cf(values, &mutation.key);
                        None
                    }
                };
                staged.insert(mutation.key.clone(), Some(Version { head, value }));
            } else {
                // Only possible when a replicated stamp from a clock ahead of
                // ours already holds the key: the newer version stays.
                self.counters.conflicts_lost.fetch_add(1, Ordering::Relaxed);
            }
            heads.push(head);
            entry.mutations.push(mutation);
        }
        batch.put_cf(log, entry.log_key(), entry.encode_value());
        (entry, heads)
    }
}

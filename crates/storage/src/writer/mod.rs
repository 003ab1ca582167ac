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
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use consensusdb_types::conflict::incoming_wins;
use consensusdb_types::key_codec::region_prefix_of;
use consensusdb_types::{
    Compression, Digest, FrontierMark, Head, HybridClock, LogEntry, Mutation, MutationKind, Origin, Stamp,
    stored_value,
};
use rocksdb::{DB, WriteBatch, WriteOptions};

use crate::data_dir::Engine;
use crate::writer_health::WriterHealth;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::columns::{self, DIGESTS, FRONTIER, LOG, PURGE_QUEUE, RECORDS, VALUES};
use crate::frontier_view::FrontierView;
use crate::snapshot::{InstallOutcome, InstallStep};
use crate::{Counters, StorageError, SyncPolicy};

mod apply;
mod install;
mod purge;

pub use purge::{PurgeOutcome, PurgePlan};

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
pub(crate) type ApplyReply = oneshot::Sender<Result<ApplyAck, StorageError>>;

/// What applying a chunk of replicated entries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyAck {
    /// Entries applied now.
    pub applied: u64,
    /// Entries at or below the frontier already: delivered before, possibly
    /// by another source.
    pub skipped: u64,
}

/// A replicated log entry, decoded for applying, with its encoded value kept
/// to store verbatim so the entry is forwarded exactly as its origin wrote it.
#[derive(Debug, Clone)]
pub(crate) struct IncomingEntry {
    pub(crate) entry: LogEntry,
    pub(crate) encoded: Vec<u8>,
}

pub(crate) enum WriterMessage {
    Write {
        command: WriteCommand,
        deadline: Option<Instant>,
        reply: Reply,
    },
    /// Replicated entries, in the order their source sent them.
    Apply {
        entries: Vec<IncomingEntry>,
        reply: ApplyReply,
    },
    /// Promise an HLC: answered after every write queued before it has
    /// committed, with a value below every stamp issued after it.
    Promise(oneshot::Sender<u64>),
    /// Purge what the plan allows (after the group before it commits).
    Purge(PurgePlan, oneshot::Sender<Result<PurgeOutcome, StorageError>>),
    /// One step of installing a bootstrap snapshot.
    Install(InstallStep, oneshot::Sender<Result<InstallOutcome, StorageError>>),
    /// Finish everything queued before this message, flush, and stop.
    Shutdown(oneshot::Sender<Result<(), StorageError>>),
}

impl WriterMessage {
    fn byte_size(&self) -> usize {
        match self {
            WriterMessage::Write { command, .. } => command.byte_size(),
            WriterMessage::Apply { entries, .. } => entries.iter().map(|e| e.encoded.len()).sum(),
            WriterMessage::Install(InstallStep::Records(records), _) => records
                .iter()
                .map(|r| r.key.len() + r.head.len() + r.value.as_ref().map_or(0, Vec::len))
                .sum(),
            WriterMessage::Promise(_)
            | WriterMessage::Purge(..)
            | WriterMessage::Install(..)
            | WriterMessage::Shutdown(_) => 0,
        }
    }
}

/// One piece of work of a group.
pub(crate) enum Pending {
    Write(WriteCommand, Option<Instant>, Reply),
    Apply(Vec<IncomingEntry>, ApplyReply),
}

impl Pending {
    fn refuse(self, error: impl Fn() -> StorageError) {
        match self {
            Pending::Write(_, _, reply) => drop(reply.send(Err(error()))),
            Pending::Apply(_, reply) => drop(reply.send(Err(error()))),
        }
    }
}

pub(crate) struct Writer {
    pub(crate) engine: Arc<Engine>,
    pub(crate) origin: Origin,
    pub(crate) clock: HybridClock,
    pub(crate) next_seq: u64,
    /// The committed frontier of every origin; the writer is its only author.
    pub(crate) frontier: HashMap<Origin, FrontierMark>,
    /// Where committed frontier advances are published.
    pub(crate) view: Arc<FrontierView>,
    /// How far ahead of the wall clock a replicated stamp may move the HLC.
    pub(crate) max_clock_drift_ms: u64,
    /// Added to the wall clock (development switch, to test skewed clocks).
    pub(crate) clock_skew_ms: i64,
    /// The incarnation the store reports; changed by an install that finds
    /// this directory older than the cluster.
    pub(crate) shared_incarnation: Arc<AtomicU32>,
    /// Between the first and last step of a snapshot install: replicated
    /// entries are refused.
    pub(crate) installing: bool,
    /// `installing`, for the store to read.
    pub(crate) shared_installing: Arc<AtomicBool>,
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

enum Accepted {
    Write(Reply, WriteAck),
    Apply(ApplyReply, ApplyAck),
}

/// A mutation with the stamp of the version it would replace, loaded before
/// the write is given a seq so that staging it cannot fail.
struct Planned {
    mutation: Mutation,
    existing: Option<Version>,
}

/// Everything one group commit stages.
#[derive(Default)]
struct Group {
    batch: WriteBatch,
    /// The newest version of every key the group has looked at.
    staged: HashMap<Vec<u8>, Option<Version>>,
    /// Frontier advances, one mark per origin.
    marks: HashMap<Origin, FrontierMark>,
    /// Digest changes per region prefix.
    digests: HashMap<Vec<u8>, Digest>,
    accepted: Vec<Accepted>,
}

impl Writer {
    fn db(&self) -> &DB {
        &self.engine.db
    }

    /// The wall clock the HLC follows.
    fn wall_ms(&self) -> u64 {
        now_ms().saturating_add_signed(self.clock_skew_ms)
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
            let mut promises = Vec::new();
            let mut purges = Vec::new();
            let mut installs = Vec::new();
            let mut work = Vec::with_capacity(group.len());
            for message in group.drain(..) {
                let pending = match message {
                    WriterMessage::Write { command, deadline, reply } => {
                        Pending::Write(command, deadline, reply)
                    }
                    WriterMessage::Apply { entries, reply } => Pending::Apply(entries, reply),
                    WriterMessage::Promise(reply) => {
                        promises.push(reply);
                        continue;
                    }
                    WriterMessage::Purge(plan, reply) => {
                        purges.push((plan, reply));
                        continue;
                    }
                    WriterMessage::Install(step, reply) => {
                        installs.push((step, reply));
                        continue;
                    }
                    WriterMessage::Shutdown(done) => {
                        shutdown = Some(done);
                        continue;
                    }
                };
                if shutdown.is_none() {
                    work.push(pending);
                } else {
                    pending.refuse(|| StorageError::ShuttingDown);
                }
            }
            self.commit_group(work);
            // Every stamp issued so far is committed (or failed); every later
            // one is above the wall clock now.
            for reply in promises {
                self.clock.raise_to(self.wall_ms() << HybridClock::LOGICAL_BITS);
                // Every later tick is above the clock's last value, which
                // may be ahead of the wall clock after applying peers' stamps.
                let _ = reply.send(self.clock.last());
            }
            for (plan, reply) in purges {
                let outcome = match &self.stopped {
                    Some(reason) => Err(StorageError::WriterStopped { reason: reason.clone() }),
                    None => self.purge(&plan),
                };
                let _ = reply.send(outcome);
            }
            for (step, reply) in installs {
                let outcome = match &self.stopped {
                    Some(reason) => Err(StorageError::WriterStopped { reason: reason.clone() }),
                    None => self.install(step),
                };
                let _ = reply.send(outcome);
            }
            if let Some(done) = shutdown {
                inbox.close();
                while let Ok(message) = inbox.try_recv() {
                    match message {
                        WriterMessage::Write { reply, .. } => {
                            drop(reply.send(Err(StorageError::ShuttingDown)))
                        }
                        WriterMessage::Apply { reply, .. } => {
                            drop(reply.send(Err(StorageError::ShuttingDown)))
                        }
                        WriterMessage::Purge(_, reply) => drop(reply.send(Err(StorageError::ShuttingDown))),
                        WriterMessage::Install(_, reply) => drop(reply.send(Err(StorageError::ShuttingDown))),
                        WriterMessage::Promise(_) | WriterMessage::Shutdown(_) => {}
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

    pub(crate) fn commit_group(&mut self, work: Vec<Pending>) {
        if let Some(reason) = &self.stopped {
            for pending in work {
                pending.refuse(|| StorageError::WriterStopped { reason: reason.clone() });
            }
            return;
        }
        let mut group = Group::default();
        for pending in work {
            match pending {
                Pending::Write(command, deadline, reply) => {
                    self.accept_write(&mut group, command, deadline, reply)
                }
                Pending::Apply(entries, reply) => match self.apply_chunk(&mut group, entries) {
                    Ok(ack) => group.accepted.push(Accepted::Apply(reply, ack)),
                    Err(error) => drop(reply.send(Err(error))),
                },
            }
        }
        if group.marks.is_empty() {
            // Nothing changed (every entry was rejected or already applied):
            // answer without a commit.
            self.answer(group.accepted);
            return;
        }
        let frontier = columns::handle(self.db(), FRONTIER);
        for (origin, mark) in &group.marks {
            group.batch.put_cf(frontier, origin.to_bytes(), mark.encode());
        }
        let digests = columns::handle(self.db(), DIGESTS);
        for (region, delta) in &group.digests {
            if !delta.is_zero() {
                group.batch.merge_cf(digests, region, delta.to_bytes());
            }
        }
        let mut options = WriteOptions::default();
        options.set_sync(self.sync == SyncPolicy::Always);
        match self.db().write_opt(group.batch, &options) {
            Ok(()) => {
                self.counters.groups_committed.fetch_add(1, Ordering::Relaxed);
                self.frontier.extend(group.marks.iter().map(|(o, m)| (*o, *m)));
                self.view.publish(group.marks);
                self.answer(group.accepted);
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::error!(%reason, "group commit failed; outcome unknown, refusing writes until restart");
                self.health.mark_stopped();
                for accepted in group.accepted {
                    let error = StorageError::OutcomeUnknown { reason: reason.clone() };
                    match accepted {
                        Accepted::Write(reply, _) => drop(reply.send(Err(error))),
                        Accepted::Apply(reply, _) => drop(reply.send(Err(error))),
                    }
                }
                self.stopped = Some(reason);
            }
        }
    }

    fn answer(&self, accepted: Vec<Accepted>) {
        for accepted in accepted {
            match accepted {
                Accepted::Write(reply, ack) => {
                    self.counters.writes_committed.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Ok(ack));
                }
                Accepted::Apply(reply, ack) => {
                    self.counters.entries_applied.fetch_add(ack.applied, Ordering::Relaxed);
                    let _ = reply.send(Ok(ack));
                }
            }
        }
    }

    /// Checks a client write, gives it a seq and stages it.
    fn accept_write(
        &mut self,
        group: &mut Group,
        command: WriteCommand,
        deadline: Option<Instant>,
        reply: Reply,
    ) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = reply.send(Err(StorageError::DeadlineExceeded));
            return;
        }
        if self.installing {
            // A write that passed the store's gate just before a bootstrap
            // closed it: refused here, where the install is ordered.
            let reason = "bootstrapping from a peer".to_string();
            let _ = reply.send(Err(StorageError::NotAccepting { reason }));
            return;
        }
        let planned = match self.plan(command, &mut group.staged) {
            Ok(planned) => planned,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let mut entry = LogEntry {
            origin: self.origin,
            seq: self.next_seq,
            hlc: self.clock.tick(self.wall_ms()),
            mutations: Vec::with_capacity(planned.len()),
        };
        self.next_seq += 1;
        let stamp = entry.stamp();
        let mut heads = Vec::with_capacity(planned.len());
        for Planned { mutation, existing } in planned {
            heads.push(self.stage_mutation(group, stamp, entry.seq, &mutation, existing));
            entry.mutations.push(mutation);
        }
        let log = columns::handle(self.db(), LOG);
        group.batch.put_cf(log, entry.log_key(), entry.encode_value());
        group.marks.insert(self.origin, FrontierMark { seq: entry.seq, hlc: entry.hlc });
        group.accepted.push(Accepted::Write(reply, WriteAck { seq: entry.seq, heads }));
    }

    /// Stages one mutation under the conflict rule: the record, its value and
    /// the digest change when it wins; a count when it loses. Returns the
    /// head the mutation carries.
    fn stage_mutation(
        &self,
        group: &mut Group,
        stamp: Stamp,
        seq: u64,
        mutation: &Mutation,
        existing: Option<Version>,
    ) -> Head {
        let head = mutation.head(stamp, seq);
        if !incoming_wins(existing.as_ref().map(|v| &v.head.stamp), &stamp) {
            // A version with a greater stamp holds the key: a replicated
            // write from a clock ahead of ours, or two creates of one key on
            // two nodes. The greater stamp stays, on every node.
            self.counters.conflicts_lost.fetch_add(1, Ordering::Relaxed);
            return head;
        }
        let records = columns::handle(self.db(), RECORDS);
        let values = columns::handle(self.db(), VALUES);
        group.batch.put_cf(records, &mutation.key, head.encode());
        let value = match &mutation.kind {
            MutationKind::Put { value, expires_at_ms, .. } => {
                group.batch.put_cf(values, &mutation.key, stored_value::encode(*expires_at_ms, value));
                Some(value.clone())
            }
            MutationKind::Tombstone => {
                group.batch.delete_cf(values, &mutation.key);
                None
            }
        };
        let queue = columns::handle(self.db(), PURGE_QUEUE);
        if let Some(at) = existing.as_ref().and_then(|old| old.head.purgeable_at()) {
            group.batch.delete_cf(queue, columns::purge_queue_key(at, &mutation.key));
        }
        if let Some(at) = head.purgeable_at() {
            group.batch.put_cf(queue, columns::purge_queue_key(at, &mutation.key), []);
        }
        if let Some(region) = region_prefix_of(&mutation.key) {
            let delta = group.digests.entry(region.to_vec()).or_default();
            if let Some(old) = &existing {
                *delta = delta.wrapping_sub(Digest::of_version(
                    &mutation.key,
                    &old.head.stamp,
                    old.head.tombstone,
                ));
            }
            *delta = delta.wrapping_add(Digest::of_version(&mutation.key, &stamp, head.tombstone));
        }
        group.staged.insert(mutation.key.clone(), Some(Version { head, value }));
        head
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
}

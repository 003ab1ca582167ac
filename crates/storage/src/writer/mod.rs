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
//! Each staged group is handed to the committer thread (`committer.rs`).
//! After a large group of replicated entries this thread stages the next
//! group while that one is written; staging reads the group in flight
//! before RocksDB, so it sees every earlier write.
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
    Compression, Digest, FrontierMark, Head, HybridClock, KeyFingerprint, LogEntry, Mutation, MutationKind,
    Origin, Stamp, stored_value,
};
use rocksdb::{DB, WriteBatch};

use crate::data_dir::Engine;
use crate::writer_health::WriterHealth;
use tokio::sync::{mpsc, oneshot};

use crate::clock::now_ms;
use crate::columns::{self, DIGESTS, FRONTIER, LOG, PURGE_QUEUE, RECORDS, VALUES};
use crate::frontier_view::FrontierView;
use crate::sealing::key_records::KeyRef;
use crate::{Counters, StorageError, SyncPolicy};
use install::{InstallOutcome, InstallStep};

mod apply;
mod committer;
pub(crate) mod install;
mod purge;
mod reseal;
mod sealing;

pub(crate) use committer::Committer;
use committer::StagedGroup;
pub use purge::{PurgeOutcome, PurgePlan};
pub use reseal::ResealOutcome;
use reseal::ResealRule;
pub(crate) use reseal::{ResealBatch, ResealReply};
pub(crate) use sealing::WriterKeys;

/// A map keyed by record keys or region prefixes. foldhash (hashbrown's own
/// default, seeded per process) rather than SipHash: hashing keys was 5% of
/// a catching-up writer's time.
pub(crate) type KeyMap<V> = HashMap<Vec<u8>, V, foldhash::fast::RandomState>;

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
    pub(crate) client_key: Option<KeyFingerprint>,
}

/// Most bytes of values and keys committed in one group, so one
/// `WriteBatch` stays a bounded allocation however large the requests.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Bytes of replicated entries from which a group is staged while the one
/// before is written (see [`worth_overlapping`]).
const OVERLAP_MIN_BYTES: usize = 1024 * 1024;

/// Whether the writer should stage the next group while this one is
/// written. Only for large groups of replicated entries (a catch-up), where
/// staging is half the work. Client writes mostly wait on fsyncs: collected
/// after the group before is durable, the next group holds every write
/// that arrived during its fsync, where overlapping would split them into
/// more, smaller synced groups.
fn worth_overlapping(work: &[Pending]) -> bool {
    let applies_only = work.iter().all(|pending| matches!(pending, Pending::Apply(..)));
    applies_only && work.iter().map(Pending::byte_size).sum::<usize>() >= OVERLAP_MIN_BYTES
}

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

/// Bytes of replicated entries as they arrived.
fn encoded_bytes(entries: &[IncomingEntry]) -> usize {
    entries.iter().map(|e| e.encoded.len()).sum()
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
    /// Seal stored versions again (a background re-encryption).
    Reseal(ResealBatch, ResealReply),
    /// Finish everything queued before this message, flush, and stop.
    Shutdown(oneshot::Sender<Result<(), StorageError>>),
}

impl WriterMessage {
    fn byte_size(&self) -> usize {
        match self {
            WriterMessage::Write { command, .. } => command.byte_size(),
            WriterMessage::Apply { entries, .. } => encoded_bytes(entries),
            WriterMessage::Reseal(batch, _) => batch.byte_size(),
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
    Reseal(ResealBatch, ResealReply),
}

impl Pending {
    /// Bytes of keys and values it brings: what its log entry holds.
    fn byte_size(&self) -> usize {
        match self {
            Pending::Write(command, ..) => command.byte_size(),
            Pending::Apply(entries, _) => encoded_bytes(entries),
            Pending::Reseal(batch, _) => batch.byte_size(),
        }
    }

    fn refuse(self, error: impl Fn() -> StorageError) {
        match self {
            Pending::Write(_, _, reply) => drop(reply.send(Err(error()))),
            Pending::Apply(_, reply) => drop(reply.send(Err(error()))),
            Pending::Reseal(_, reply) => drop(reply.send(Err(error()))),
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
    /// Marked stopped after a failed group commit; every later write is
    /// refused.
    pub(crate) health: Arc<WriterHealth>,
    /// Writes each staged group while the next is staged.
    pub(crate) committer: Committer,
    /// The newest version of every key the group in the committer's hands
    /// looked at: staging reads it before RocksDB, which may not hold that
    /// group yet.
    pub(crate) in_flight: KeyMap<Option<Version>>,
    /// What values are sealed with.
    pub(crate) keys: WriterKeys,
}

/// The newest version of a key as the group sees it: stored, or staged by
/// an earlier write of the same group or of the group in flight.
#[derive(Clone)]
pub(crate) struct Version {
    pub(crate) head: Head,
    /// The stored value bytes, when known (staged puts; loaded for touch).
    value: Option<Vec<u8>>,
}

enum Accepted {
    Write(Reply, WriteAck),
    Apply(ApplyReply, ApplyAck),
    Reseal(ResealReply, ResealOutcome),
}

impl Accepted {
    /// Answers with `error` instead of the acknowledgement.
    fn fail(self, error: StorageError) {
        match self {
            Accepted::Write(reply, _) => drop(reply.send(Err(error))),
            Accepted::Apply(reply, _) => drop(reply.send(Err(error))),
            Accepted::Reseal(reply, _) => drop(reply.send(Err(error))),
        }
    }
}

/// A mutation with the stamp of the version it would replace, loaded before
/// the write is given a seq so that staging it cannot fail.
struct Planned {
    mutation: Mutation,
    existing: Option<Version>,
    /// The request field naming the mutation's key, for errors.
    field: String,
}

/// Everything one group commit stages.
#[derive(Default)]
struct Group {
    batch: WriteBatch,
    /// The newest version of every key the group has looked at.
    staged: KeyMap<Option<Version>>,
    /// Frontier advances, one mark per origin.
    marks: HashMap<Origin, FrontierMark>,
    /// Digest changes per region prefix.
    digests: KeyMap<Digest>,
    accepted: Vec<Accepted>,
    /// Applied entries, kept to be freed by the committer.
    applied: Vec<Vec<IncomingEntry>>,
    /// Data keys the group destroys (a shred, written or replicated).
    destroyed_keys: Vec<KeyRef>,
    /// Reused for each head and stored value staged.
    encode_buffer: Vec<u8>,
}

impl Group {
    /// A group whose batch has room for `bytes` from the start.
    fn with_batch_capacity(bytes: usize) -> Self {
        Self { batch: WriteBatch::with_capacity_bytes(bytes), ..Self::default() }
    }
}

impl Writer {
    fn db(&self) -> &DB {
        &self.engine.db
    }

    /// The wall clock the HLC follows.
    fn wall_ms(&self) -> u64 {
        crate::clock::skewed_now_ms(self.clock_skew_ms)
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
                    WriterMessage::Reseal(batch, reply) => Pending::Reseal(batch, reply),
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
            let overlap = worth_overlapping(&work);
            self.commit_group(work);
            // Each of the others needs every group before it in RocksDB.
            let nothing_else =
                promises.is_empty() && purges.is_empty() && installs.is_empty() && shutdown.is_none();
            if !(overlap && nothing_else) {
                self.drain();
            }
            // Every stamp issued so far is committed (or failed); every later
            // one is above the wall clock now.
            for reply in promises {
                self.clock.raise_to(self.wall_ms() << HybridClock::LOGICAL_BITS);
                // Every later tick is above the clock's last value, which
                // may be ahead of the wall clock after applying peers' stamps.
                let _ = reply.send(self.clock.last());
            }
            for (plan, reply) in purges {
                let outcome = match self.health.stop_reason() {
                    Some(reason) => Err(StorageError::WriterStopped { reason }),
                    None => self.purge(&plan),
                };
                let _ = reply.send(outcome);
            }
            for (step, reply) in installs {
                let outcome = match self.health.stop_reason() {
                    Some(reason) => Err(StorageError::WriterStopped { reason }),
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
                        WriterMessage::Reseal(_, reply) => drop(reply.send(Err(StorageError::ShuttingDown))),
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

    /// Returns once every group before this one is committed and answered,
    /// and everything staged and handed over.
    pub(crate) fn commit_group(&mut self, work: Vec<Pending>) {
        if let Some(reason) = self.health.stop_reason() {
            for pending in work {
                pending.refuse(|| StorageError::WriterStopped { reason: reason.clone() });
            }
            return;
        }
        // Every value goes into the batch twice (its log entry and
        // `values`), plus keys and heads. Reserving that up front spares
        // the batch's buffer its doublings, each a copy of all of it.
        let bytes: usize = work.iter().map(Pending::byte_size).sum();
        let mut group = Group::with_batch_capacity(2 * bytes + 160 * work.len());
        for pending in work {
            match pending {
                Pending::Write(command, deadline, reply) => {
                    self.accept_write(&mut group, command, deadline, reply)
                }
                Pending::Apply(entries, reply) => match self.apply_chunk(&mut group, entries) {
                    Ok(ack) => group.accepted.push(Accepted::Apply(reply, ack)),
                    Err(error) => drop(reply.send(Err(error))),
                },
                Pending::Reseal(batch, reply) => self.accept_reseal(&mut group, batch, reply),
            }
        }
        if group.marks.is_empty() {
            // Nothing changed (every entry was rejected or already applied):
            // answered without a write, yet after the group in flight, which
            // may be what applied them.
            let nothing = StagedGroup {
                batch: None,
                marks: group.marks,
                accepted: group.accepted,
                destroyed_keys: group.destroyed_keys,
                garbage: Box::new(group.applied),
            };
            self.committer.commit(nothing);
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
        // Later groups are staged on this one's marks: if its write fails,
        // the committer refuses them too, and the writer stops.
        self.frontier.extend(group.marks.iter().map(|(o, m)| (*o, *m)));
        // The versions of the group before, no longer read once this one is
        // staged, are freed by the committer too: freeing was a tenth of
        // this thread's time.
        let superseded = std::mem::take(&mut self.in_flight);
        self.committer.commit(StagedGroup {
            batch: Some(group.batch),
            marks: group.marks,
            accepted: group.accepted,
            destroyed_keys: group.destroyed_keys,
            garbage: Box::new((group.applied, superseded)),
        });
        // The committer has taken this group, so the one before is in
        // RocksDB: only this group's versions are not yet readable there.
        self.in_flight = group.staged;
    }

    /// Returns once every staged group is committed and answered, so
    /// RocksDB holds everything the writer has staged.
    pub(crate) fn drain(&mut self) {
        self.committer.drain();
        self.in_flight.clear();
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
        let wall = self.wall_ms();
        if let Err(error) = self.check_not_superseded(&planned, self.clock.peek(wall)) {
            let _ = reply.send(Err(error));
            return;
        }
        let (mutations, existing): (Vec<_>, Vec<_>) =
            planned.into_iter().map(|Planned { mutation, existing, .. }| (mutation, existing)).unzip();
        let sealers = match self.sealers_for(group, &mutations, wall) {
            Ok(sealers) => sealers,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        let mut entry =
            LogEntry { origin: self.origin, seq: self.next_seq, hlc: self.clock.tick(wall), mutations };
        self.next_seq += 1;
        Self::seal_entry(&mut entry, &sealers);
        let seq = entry.seq;
        let heads = self.log_and_stage(group, entry, existing);
        group.accepted.push(Accepted::Write(reply, WriteAck { seq, heads }));
    }

    /// Logs an entry of this origin and stages its mutations; returns the
    /// head each leaves. `existing` holds each mutation's current version.
    fn log_and_stage(
        &mut self,
        group: &mut Group,
        entry: LogEntry,
        existing: Vec<Option<Version>>,
    ) -> Vec<Head> {
        let (seq, stamp) = (entry.seq, entry.stamp());
        let log = columns::handle(self.db(), LOG);
        group.batch.put_cf(log, entry.log_key(), entry.encode_value());
        group.marks.insert(self.origin, FrontierMark { seq, hlc: entry.hlc });
        // Encoded into the log above, the mutations are staged by value.
        (entry.mutations.into_iter().zip(existing))
            .map(|(mutation, existing)| self.stage_mutation(group, stamp, seq, mutation, existing, false))
            .collect()
    }

    /// Refuses a write whose stamp (`hlc`, this origin) would lose to a
    /// version already held for one of its keys: it would never become the
    /// current version, anywhere. That happens only when a peer's clock ran
    /// further ahead than the drift bound lets this node's clock follow;
    /// the write is refused before it takes a seq, and the caller is told.
    fn check_not_superseded(&self, planned: &[Planned], hlc: u64) -> Result<(), StorageError> {
        let stamp = Stamp { hlc, origin: self.origin };
        for plan in planned {
            if let Some(current) = plan.existing.as_ref().map(|v| v.head.stamp)
                && !incoming_wins(Some(&current), &stamp)
            {
                self.counters.writes_superseded.fetch_add(1, Ordering::Relaxed);
                return Err(StorageError::Superseded { field: plan.field.clone(), current, clock: hlc });
            }
        }
        Ok(())
    }

    /// Stages one mutation under the conflict rule: the record, its value and
    /// the digest change when it wins; a count when it loses. Returns the
    /// head the mutation carries. Taken by value: its key and value become
    /// the group's newest version without a copy.
    ///
    /// A reseal follows its own rule (`writer/reseal.rs`):
    /// `reseal_version_unseen` says whether this node had not applied the
    /// version it names before this mutation's chunk.
    fn stage_mutation(
        &mut self,
        group: &mut Group,
        stamp: Stamp,
        seq: u64,
        mutation: Mutation,
        existing: Option<Version>,
        reseal_version_unseen: bool,
    ) -> Head {
        let head = mutation.head(stamp, seq);
        // A reseal's head carries the stamp of the version it seals again.
        let stamp = head.stamp;
        let replaces_same_version = match &mutation.kind {
            MutationKind::Reseal { .. } => {
                match self.reseal_rule(&mutation.key, &head, existing.as_ref(), reseal_version_unseen) {
                    ResealRule::Ignore => return head,
                    ResealRule::Replace => true,
                    ResealRule::AsVersion => false,
                }
            }
            MutationKind::Put { .. } | MutationKind::Tombstone => false,
        };
        if !replaces_same_version && !incoming_wins(existing.as_ref().map(|v| &v.head.stamp), &stamp) {
            // A version with a greater stamp holds the key: a replicated
            // write from a clock ahead of ours, or two creates of one key on
            // two nodes. The greater stamp stays, on every node. Not counted:
            // the same stamp (the version met again after a reseal brought
            // it first), and a reseal taken as its version (the version
            // counts when it comes itself).
            let reseal = matches!(mutation.kind, MutationKind::Reseal { .. });
            if !reseal && existing.as_ref().is_none_or(|v| v.head.stamp != stamp) {
                self.counters.conflicts_lost.fetch_add(1, Ordering::Relaxed);
            }
            return head;
        }
        let records = columns::handle(self.db(), RECORDS);
        let values = columns::handle(self.db(), VALUES);
        head.encode_into(&mut group.encode_buffer);
        group.batch.put_cf(records, &mutation.key, &group.encode_buffer);
        let value = match mutation.kind {
            MutationKind::Put { value, expires_at_ms, .. }
            | MutationKind::Reseal { value, expires_at_ms, .. } => {
                stored_value::encode_into(&mut group.encode_buffer, expires_at_ms, &value);
                group.batch.put_cf(values, &mutation.key, &group.encode_buffer);
                Some(value)
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
            let mut change = Digest::of_version(&mutation.key, &stamp, head.tombstone);
            if let Some(old) = &existing {
                change = change.wrapping_sub(Digest::of_version(
                    &mutation.key,
                    &old.head.stamp,
                    old.head.tombstone,
                ));
            }
            // Looked up by slice first: the region's key is copied once per
            // group, not once per mutation.
            match group.digests.get_mut(region) {
                Some(delta) => *delta = delta.wrapping_add(change),
                None => drop(group.digests.insert(region.to_vec(), change)),
            }
        }
        if let Some(destroyed) = self.keys.notice(&mutation.key, head.tombstone, &stamp, self.origin) {
            group.destroyed_keys.push(destroyed);
        }
        let version = Some(Version { head, value });
        match group.staged.get_mut(&mutation.key) {
            Some(slot) => *slot = version,
            None => drop(group.staged.insert(mutation.key, version)),
        }
        head
    }

    /// Checks a command against the current state and turns it into mutations.
    fn plan(
        &self,
        command: WriteCommand,
        staged: &mut KeyMap<Option<Version>>,
    ) -> Result<Vec<Planned>, StorageError> {
        let now = now_ms();
        let mutations: Vec<(Mutation, String)> = match command {
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
                    .map(|r| {
                        let kind = MutationKind::Put {
                            value: r.value,
                            compression: r.compression,
                            expires_at_ms: r.expires_at_ms,
                            seal: None,
                            client_key: r.client_key,
                        };
                        (Mutation { key: r.key, kind }, r.field)
                    })
                    .collect()
            }
            WriteCommand::Touch { key, field, expires_at_ms } => {
                let current = self
                    .current(&key, staged)?
                    .filter(|v| !v.head.is_hidden(now))
                    .ok_or_else(|| StorageError::NotFound { field: field.clone() })?;
                let stored = match current.value {
                    Some(value) => value,
                    None => self
                        .stored_value(&key)?
                        .ok_or_else(|| StorageError::NotFound { field: field.clone() })?,
                };
                // A touch writes a new version, with a new stamp and seq:
                // its value is opened here and sealed again like any put.
                let value = match current.head.seal {
                    Some(seal) => self.open_to_rewrite(&key, &current.head, seal, &stored, staged)?,
                    None => stored,
                };
                let kind = MutationKind::Put {
                    value,
                    compression: current.head.compression,
                    expires_at_ms,
                    seal: None,
                    client_key: current.head.client_key,
                };
                vec![(Mutation { key, kind }, field)]
            }
            WriteCommand::Remove { key } => {
                vec![(Mutation { key, kind: MutationKind::Tombstone }, "key".to_string())]
            }
        };
        mutations
            .into_iter()
            .map(|(mutation, field)| {
                let existing = self.current(&mutation.key, staged)?;
                Ok(Planned { mutation, existing, field })
            })
            .collect()
    }

    /// The newest version of `key`: staged in this group, in the group in
    /// flight, or stored; remembered in `staged` for the rest of the group.
    fn current(
        &self,
        key: &[u8],
        staged: &mut KeyMap<Option<Version>>,
    ) -> Result<Option<Version>, StorageError> {
        if let Some(version) = staged.get(key) {
            return Ok(version.clone());
        }
        let version = self.version_of(key, staged)?;
        staged.insert(key.to_vec(), version.clone());
        Ok(version)
    }

    /// The newest version of `key`: staged in this group, in the group in
    /// flight, or stored.
    fn version_of(
        &self,
        key: &[u8],
        staged: &KeyMap<Option<Version>>,
    ) -> Result<Option<Version>, StorageError> {
        if let Some(version) = staged.get(key).or_else(|| self.in_flight.get(key)) {
            return Ok(version.clone());
        }
        let records = columns::handle(self.db(), RECORDS);
        Ok(match self.db().get_pinned_cf(records, key)? {
            Some(bytes) => Some(Version { head: Head::decode(&bytes)?, value: None }),
            None => None,
        })
    }

    fn stored_value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let values = columns::handle(self.db(), VALUES);
        match self.db().get_pinned_cf(values, key)? {
            Some(bytes) => Ok(Some(stored_value::decode(&bytes)?.to_vec())),
            None => Ok(None),
        }
    }
}

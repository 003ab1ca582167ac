//! The committing half of the writer, on its own thread: it writes each
//! staged group's `WriteBatch` (synced), then publishes the group's frontier
//! advances and answers its writers, while the writer thread stages the
//! next group.
//!
//! Why two threads: staging a group of replicated entries (the conflict
//! check's reads, the conflict rule, digests, encoding the batch) took 60%
//! of its time and writing it (WAL, fsync, memtables) 40%; overlapping them
//! took applying from 191k to 275k entries/s (`cargo bench --workspace
//! --bench storage -- storage_apply_catch_up`, with the puller queueing
//! its next chunk before awaiting the last).
//!
//! The writer overlaps only large groups of replicated entries; after any
//! other group it drains first (`writer::worth_overlapping` says why).
//!
//! The hand-over is a rendezvous: [`Committer::commit`] returns only when the
//! committer has taken the group, which it does only after finishing the one
//! before. So at most one group is in flight while the next is staged, and
//! the writer knows exactly which staged versions are not yet in RocksDB
//! (see `Writer::in_flight`). [`Committer::drain`] waits until nothing is in
//! flight; the writer calls it before anything that reads or changes the
//! database outside a group (promises, purges, installs, shutdown).
//!
//! A failed write stops the store (fail-stop): that group's writers get
//! "outcome unknown", and every group staged after it, which was built on
//! top of it, is refused without being written.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use consensusdb_types::{FrontierMark, Origin};
use rocksdb::{WriteBatch, WriteOptions};

use super::{Accepted, SyncPolicy};
use crate::data_dir::Engine;
use crate::frontier_view::FrontierView;
use crate::sealing::Vault;
use crate::sealing::key_records::KeyRef;
use crate::writer_health::WriterHealth;
use crate::{Counters, StorageError};

/// A staged group, ready to be written.
pub(super) struct StagedGroup {
    /// What to write; `None` when the group changed nothing (every entry
    /// was already applied, every write refused) and only answers remain.
    pub(super) batch: Option<WriteBatch>,
    /// The frontier advances the batch holds, published once it is durable.
    pub(super) marks: HashMap<Origin, FrontierMark>,
    /// Whom to answer once it is durable.
    pub(super) accepted: Vec<Accepted>,
    /// Data keys the batch destroys: the vault forgets them once the batch
    /// is written, and keeps none a reader unwrapped from its record
    /// before (`sealing::opened_keys`).
    pub(super) destroyed_keys: Vec<KeyRef>,
    /// What the writer is done with, freed here after the answers so the
    /// writer thread spends its time staging.
    pub(super) garbage: Box<dyn Send>,
}

/// What the committer thread is told.
enum Message {
    Commit(StagedGroup),
    /// Taken only after everything before it is done; carries nothing.
    Drain,
}

/// The writer's handle on the committer thread.
pub(crate) struct Committer {
    sender: Option<mpsc::SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    health: Arc<WriterHealth>,
}

/// The committer thread's state.
struct Committing {
    engine: Arc<Engine>,
    vault: Arc<Vault>,
    view: Arc<FrontierView>,
    counters: Arc<Counters>,
    health: Arc<WriterHealth>,
    options: WriteOptions,
}

impl Committer {
    /// Starts the committer thread.
    pub(crate) fn start(
        engine: Arc<Engine>,
        vault: Arc<Vault>,
        view: Arc<FrontierView>,
        counters: Arc<Counters>,
        health: Arc<WriterHealth>,
        sync: SyncPolicy,
    ) -> Result<Self, StorageError> {
        // Capacity 0: a send completes only when the thread receives it.
        let (sender, receiver) = mpsc::sync_channel(0);
        let mut options = WriteOptions::default();
        options.set_sync(sync == SyncPolicy::Always);
        let committing = Committing { engine, vault, view, counters, health: health.clone(), options };
        let thread = std::thread::Builder::new()
            .name("consensusdb-commit".into())
            .spawn(move || {
                for message in receiver {
                    if let Message::Commit(group) = message {
                        committing.commit(group);
                    }
                }
            })
            .map_err(StorageError::io("starting the committer thread"))?;
        Ok(Self { sender: Some(sender), thread: Some(thread), health })
    }

    /// Hands `group` over. Returns once every group handed over before it
    /// is committed and answered; `group` itself may still be in flight.
    pub(super) fn commit(&self, group: StagedGroup) {
        let Some(sender) = &self.sender else { return refuse(group.accepted, "the committer has stopped") };
        if let Err(mpsc::SendError(Message::Commit(group))) = sender.send(Message::Commit(group)) {
            // The thread is gone (it panicked): nothing more is durable.
            self.health.mark_stopped("the committer thread ended");
            refuse(group.accepted, "the committer thread ended");
        }
    }

    /// Returns once every group handed over is committed and answered.
    pub(super) fn drain(&self) {
        if let Some(sender) = &self.sender {
            // An error means the thread is gone, so nothing is in flight.
            let _ = sender.send(Message::Drain);
        }
    }
}

impl Drop for Committer {
    /// Lets the thread finish what it holds and waits for it, so the
    /// database handle is released when the writer is.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the committer thread panicked");
        }
    }
}

impl Committing {
    fn commit(&self, group: StagedGroup) {
        let StagedGroup { batch, marks, accepted, destroyed_keys, garbage } = group;
        self.write_and_answer(batch, marks, accepted, &destroyed_keys);
        drop(garbage);
    }

    fn write_and_answer(
        &self,
        batch: Option<WriteBatch>,
        marks: HashMap<Origin, FrontierMark>,
        accepted: Vec<Accepted>,
        destroyed_keys: &[KeyRef],
    ) {
        if let Some(reason) = self.health.stop_reason() {
            // Staged on top of a group that failed: never written.
            return refuse(accepted, &reason);
        }
        if let Some(batch) = batch {
            let started = std::time::Instant::now();
            let written = self.engine.db.write_opt(batch, &self.options);
            self.counters.commit_seconds.observe(started.elapsed().as_secs_f64());
            if let Err(error) = written {
                let reason = error.to_string();
                tracing::error!(%reason, "group commit failed; outcome unknown, refusing writes until restart");
                self.health.mark_stopped(&reason);
                for accepted in accepted {
                    accepted.fail(StorageError::OutcomeUnknown { reason: reason.clone() });
                }
                return;
            }
            self.counters.groups_committed.fetch_add(1, Ordering::Relaxed);
            self.counters.group_size.observe(accepted.len() as f64);
            // Before publishing: a reader that waits for this group must
            // find the destroyed keys gone from the vault too.
            self.vault.forget(destroyed_keys);
            self.view.publish(marks);
        }
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
                Accepted::Reseal(reply, outcome) => {
                    self.counters.values_resealed.fetch_add(outcome.resealed, Ordering::Relaxed);
                    let _ = reply.send(Ok(outcome));
                }
            }
        }
    }
}

/// Answers every writer of a group that will not be written.
fn refuse(accepted: Vec<Accepted>, reason: &str) {
    for accepted in accepted {
        accepted.fail(StorageError::WriterStopped { reason: reason.to_string() });
    }
}

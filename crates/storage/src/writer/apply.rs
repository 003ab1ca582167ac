//! Applying replicated entries in the writer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use consensusdb_types::{FrontierMark, Mutation, MutationKind, Origin};

use super::{Group, IncomingEntry, Writer};
use crate::columns::{self, LOG};
use crate::{ApplyAck, StorageError};

impl Writer {
    /// Stages replicated entries: all of the chunk or none of it.
    ///
    /// Entries at or below the frontier are skipped (two sources may deliver
    /// the same origin). Each origin must continue exactly at its frontier;
    /// a gap refuses the chunk, and the source stream restarts from the
    /// frontier. Limits and the future-time bound are client rules and are
    /// not applied here: refusing a replicated entry would stall its origin
    /// forever.
    pub(super) fn apply_chunk(
        &mut self,
        group: &mut Group,
        entries: Vec<IncomingEntry>,
    ) -> Result<ApplyAck, StorageError> {
        if self.installing {
            return Err(StorageError::Bootstrapping);
        }
        let mut ack = ApplyAck::default();
        let mut next: HashMap<Origin, u64> = HashMap::new();
        let mut fresh: Vec<IncomingEntry> = Vec::with_capacity(entries.len());
        for incoming in entries {
            let origin = incoming.entry.origin;
            let expected = *next.entry(origin).or_insert_with(|| self.mark_in(group, &origin).seq + 1);
            if incoming.entry.seq < expected {
                ack.skipped += 1;
                continue;
            }
            if origin == self.origin {
                return Err(StorageError::OwnOriginAhead { seq: incoming.entry.seq, local: expected - 1 });
            }
            if incoming.entry.seq > expected {
                return Err(StorageError::Gap { origin, expected, got: incoming.entry.seq });
            }
            next.insert(origin, expected + 1);
            fresh.push(incoming);
        }
        // Staged in key order, so consecutive memtable inserts land next to
        // each other and the skiplist reuses its last insert position instead
        // of searching from the top (the search was a quarter of a catching-up
        // writer's time). The sort is stable: one key's versions keep their
        // arrival order, and changes to different keys commute. The log holds
        // each entry as encoded, so the decoded mutations are moved out and
        // staged by value.
        let mut mutations: Vec<_> = fresh
            .iter_mut()
            .flat_map(|incoming| {
                let (stamp, seq) = (incoming.entry.stamp(), incoming.entry.seq);
                incoming.entry.mutations.drain(..).map(move |mutation| (mutation, stamp, seq))
            })
            .collect();
        mutations.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        // Whether each reseal's version was applied here before this chunk
        // (read before the chunk's own marks are added below).
        let unseen: Vec<bool> =
            mutations.iter().map(|(mutation, ..)| self.reseal_version_unseen(mutation, group)).collect();
        // Every key's version is read first, so staging below cannot fail
        // half-way.
        let loaded = mutations
            .iter()
            .map(|(mutation, ..)| self.version_of(&mutation.key, &group.staged))
            .collect::<Result<Vec<_>, _>>()?;
        let engine = self.engine.clone();
        let log = columns::handle(&engine.db, LOG);
        for IncomingEntry { entry, encoded } in &fresh {
            let wall = self.wall_ms();
            if !self.clock.observe(entry.hlc, wall, self.max_clock_drift_ms) {
                self.counters.hlc_drift_clipped.fetch_add(1, Ordering::Relaxed);
            }
            group.batch.put_cf(log, entry.log_key(), encoded);
            group.marks.insert(entry.origin, FrontierMark { seq: entry.seq, hlc: entry.hlc });
            ack.applied += 1;
        }
        for (((mutation, stamp, seq), loaded), unseen) in mutations.into_iter().zip(loaded).zip(unseen) {
            // A key met twice in the chunk: its first version may be staged.
            let existing = match group.staged.get(&mutation.key) {
                Some(staged) => staged.clone(),
                None => loaded,
            };
            self.stage_mutation(group, stamp, seq, mutation, existing, unseen);
        }
        group.applied.push(fresh);
        Ok(ack)
    }

    /// Whether `mutation` is a reseal of a version this node has not
    /// applied yet (its origin's frontier, with this group's advances, is
    /// below the version's seq): it came here before the version did.
    fn reseal_version_unseen(&self, mutation: &Mutation, group: &Group) -> bool {
        match &mutation.kind {
            MutationKind::Reseal { version, version_seq, .. } => {
                *version_seq > self.mark_in(group, &version.origin).seq
            }
            MutationKind::Put { .. } | MutationKind::Tombstone => false,
        }
    }

    /// The frontier mark of `origin` including this group's advances.
    fn mark_in(&self, group: &Group, origin: &Origin) -> FrontierMark {
        group.marks.get(origin).or_else(|| self.frontier.get(origin)).copied().unwrap_or_default()
    }
}

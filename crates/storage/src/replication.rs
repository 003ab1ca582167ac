//! What the replication layer asks of storage: the log of any origin from a
//! seq on, the committed frontier and a signal when it moves, and applying
//! entries pulled from a peer.
//!
//! Entries travel as their encoded log value ([`RawEntry`]), exactly as the
//! origin's writer stored them, so forwarding through a chain of nodes
//! neither re-encodes nor alters them.

use consensusdb_types::key_codec::decode_key;
use consensusdb_types::log_entry::{decode_log_key, log_key, peek_hlc};
use consensusdb_types::{FrontierMark, LogEntry, Origin};
use rocksdb::{DB, IteratorMode, ReadOptions};
use tokio::sync::watch;

use crate::columns::{self, LOG, PEERS};

/// The `peers` key of the replication layer's membership record.
const MEMBERSHIP_KEY: &[u8] = b"membership";
use crate::writer::{IncomingEntry, WriterMessage};
use crate::{ApplyAck, DigestReport, Frontier, PurgeOutcome, PurgePlan, Queued, StorageError, Store};

/// One log entry of one origin, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// The origin that accepted the write.
    pub origin: Origin,
    /// Its seq within the origin.
    pub seq: u64,
    /// The encoded log value ([`LogEntry::encode_value`]).
    pub value: Vec<u8>,
}

impl RawEntry {
    /// Decodes the entry and checks its structure before anything stores
    /// it: every mutation's key must decode as a record key, or it would
    /// be stored where no read can name it and every scan of its tenant
    /// would trip over it. Client limits and the future-time bound are
    /// *not* applied (docs/architecture.md, replication): refusing a well-formed entry would stall
    /// its origin for good.
    fn decode(self) -> Result<IncomingEntry, StorageError> {
        let bad = |reason: String| StorageError::BadEntry {
            what: format!("entry {} seq {}", self.origin, self.seq),
            reason,
        };
        let entry = LogEntry::decode(&log_key(&self.origin, self.seq), &self.value)
            .map_err(|error| bad(error.to_string()))?;
        for (i, mutation) in entry.mutations.iter().enumerate() {
            decode_key(&mutation.key).map_err(|error| bad(format!("mutation {i}: {error}")))?;
        }
        Ok(IncomingEntry { entry, encoded: self.value })
    }
}

/// The answer to [`Store::log_since`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogChunk {
    /// The next entries, in seq order, starting right after the seq asked
    /// for; empty when there are none yet.
    Entries(Vec<RawEntry>),
    /// The entry after the seq asked for has been purged: the asker must
    /// get it elsewhere or bootstrap. Never a silent skip.
    OutOfRange {
        /// The oldest seq still held, if any.
        first_available: Option<u64>,
    },
}

/// Reads `origin`'s entries after `after_seq`: at most `max_entries`, and
/// stopping after the entry that reaches `max_bytes` (at least one entry).
fn read_log(
    db: &DB,
    origin: &Origin,
    after_seq: u64,
    committed_seq: u64,
    max_entries: usize,
    max_bytes: usize,
) -> Result<LogChunk, StorageError> {
    if committed_seq <= after_seq {
        return Ok(LogChunk::Entries(Vec::new()));
    }
    let mut options = ReadOptions::default();
    // Never read past what is committed: a later group may be in the
    // memtable, and shipping it before it is durable would tell a peer
    // about an entry this node could lose.
    options.set_iterate_upper_bound(log_key(origin, committed_seq.saturating_add(1)).to_vec());
    let start = log_key(origin, after_seq.saturating_add(1));
    let iterator = db.iterator_cf_opt(
        columns::handle(db, LOG),
        options,
        IteratorMode::From(&start, rocksdb::Direction::Forward),
    );
    let mut entries = Vec::new();
    let mut bytes = 0;
    for (expected, item) in (after_seq + 1..).zip(iterator) {
        let (key, value) = item?;
        let (found_origin, seq) = decode_log_key(&key)?;
        if found_origin != *origin {
            break;
        }
        if seq != expected {
            // A stretch is missing (purged below a later bootstrap): ship
            // what comes before it; the next read reports the gap.
            if entries.is_empty() {
                return Ok(LogChunk::OutOfRange { first_available: Some(seq) });
            }
            break;
        }
        bytes += value.len();
        entries.push(RawEntry { origin: *origin, seq, value: value.into_vec() });
        if entries.len() >= max_entries || bytes >= max_bytes {
            break;
        }
    }
    if entries.is_empty() {
        // The frontier says entries exist past `after_seq`, yet none are
        // held: they were purged.
        return Ok(LogChunk::OutOfRange { first_available: None });
    }
    Ok(LogChunk::Entries(entries))
}

impl Store {
    /// The committed (durable) frontier of every origin this node holds.
    pub fn frontier(&self) -> Frontier {
        self.shared.view.snapshot()
    }

    /// An HLC that every entry of this node's own origin stamped at or
    /// below it is already committed (so in [`Store::frontier`] read after
    /// this returns), and every later one is stamped above. Heartbeats carry
    /// it: peers learn how far an idle origin is settled (the causal
    /// stability rule for purges).
    pub async fn clock_promise(&self) -> Result<u64, StorageError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inbox()?.send(WriterMessage::Promise(reply)).await.map_err(|_| StorageError::ShuttingDown)?;
        answer.await.map_err(|_| StorageError::ShuttingDown)
    }

    /// A receiver that changes after every group commit: local writes and
    /// applied entries alike.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.shared.view.watch()
    }

    /// The committed entries of `origin` after `after_seq`, at most
    /// `max_entries` and about `max_bytes` (always at least one entry when
    /// any is due).
    pub async fn log_since(
        &self,
        origin: Origin,
        after_seq: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<LogChunk, StorageError> {
        let committed = self.shared.view.mark(&origin).seq;
        let engine = self.shared.engine.clone();
        crate::store::run_blocking(move || {
            read_log(&engine.db, &origin, after_seq, committed, max_entries.max(1), max_bytes)
        })
        .await?
    }

    /// Applies entries pulled from a peer, in the order given: the records
    /// under the conflict rule, the digests, the log entries (kept for
    /// forwarding) and the frontier, in one durable group commit. Entries at
    /// or below the frontier are skipped; a gap refuses the whole chunk.
    pub async fn apply(&self, entries: Vec<RawEntry>) -> Result<ApplyAck, StorageError> {
        if entries.is_empty() {
            return Ok(ApplyAck::default());
        }
        self.queue_apply(entries).await?.answer().await
    }

    /// [`Store::apply`] in two steps: returns once the entries are decoded
    /// and queued behind everything queued before, and the answer comes
    /// after they commit. A puller that queues its next chunk before
    /// awaiting the last keeps the writer staging one group while the one
    /// before is written.
    pub async fn queue_apply(&self, entries: Vec<RawEntry>) -> Result<Queued<ApplyAck>, StorageError> {
        let bytes: usize = entries.iter().map(|e| e.value.len()).sum();
        // Decoding a chunk of a few MiB is worth a trip to the blocking pool.
        let decode = move || entries.into_iter().map(RawEntry::decode).collect::<Result<Vec<_>, _>>();
        let entries =
            if bytes <= 64 * 1024 { decode()? } else { crate::store::run_blocking(decode).await?? };
        self.queue_for_writer(bytes, |reply| WriterMessage::Apply { entries, reply }).await
    }

    /// For each `(origin, seq)`, the seq and HLC of the first entry of
    /// `origin` at or after `seq` this node's log holds (`None` if none):
    /// whether this node can still serve a lagging member the entry it
    /// lacks, and how old that entry is.
    pub async fn first_held_entries(
        &self,
        queries: Vec<(Origin, u64)>,
    ) -> Result<Vec<Option<FrontierMark>>, StorageError> {
        let engine = self.shared.engine.clone();
        crate::store::run_blocking(move || {
            let db = &engine.db;
            let mut iterator = db.raw_iterator_cf(columns::handle(db, LOG));
            queries
                .iter()
                .map(|(origin, seq)| {
                    iterator.seek(log_key(origin, *seq));
                    let held = match (iterator.key(), iterator.value()) {
                        (Some(key), Some(value)) => match decode_log_key(key)? {
                            (found, seq) if found == *origin => {
                                Some(FrontierMark { seq, hlc: peek_hlc(value)? })
                            }
                            _ => None,
                        },
                        _ => None,
                    };
                    iterator.status()?;
                    Ok(held)
                })
                .collect()
        })
        .await?
    }

    /// Purges what `plan` allows: causally stable tombstones and expired
    /// versions (with their digest contributions), and log entries every
    /// member has applied. Bounded per call; `more` says to call again.
    pub async fn purge(&self, plan: PurgePlan) -> Result<PurgeOutcome, StorageError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inbox()?
            .send(WriterMessage::Purge(plan, reply))
            .await
            .map_err(|_| StorageError::ShuttingDown)?;
        answer.await.map_err(|_| StorageError::ShuttingDown)?
    }

    /// Stores the replication layer's own record of the cluster (opaque
    /// bytes) in the `peers` family, synced.
    pub async fn save_membership(&self, bytes: Vec<u8>) -> Result<(), StorageError> {
        let engine = self.shared.engine.clone();
        crate::store::run_blocking(move || {
            let mut options = rocksdb::WriteOptions::default();
            options.set_sync(true);
            engine.db.put_cf_opt(columns::handle(&engine.db, PEERS), MEMBERSHIP_KEY, bytes, &options)
        })
        .await??;
        Ok(())
    }

    /// What [`Store::save_membership`] stored last, if anything.
    pub async fn load_membership(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let engine = self.shared.engine.clone();
        Ok(crate::store::run_blocking(move || {
            engine.db.get_cf(columns::handle(&engine.db, PEERS), MEMBERSHIP_KEY)
        })
        .await??)
    }

    /// The convergence digests of one tenant, or of every tenant for
    /// `None`, with the frontier they were taken at.
    pub async fn digests(&self, major: Option<String>) -> Result<DigestReport, StorageError> {
        let engine = self.shared.engine.clone();
        crate::store::run_blocking(move || crate::digests::report(&engine.db, major.as_deref())).await?
    }
}

//! The async face of the storage layer.
//!
//! Writes go to the single writer thread through a bounded queue; reads run
//! on tokio's blocking pool. No RocksDB call ever runs on the async reactor.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use consensusdb_types::key_codec::{
    encode_key, encode_timed, prefix_successor, region_prefix, row_prefix, tenant_prefix, timed_prefix,
};
use consensusdb_types::{
    Compression, FieldError, Head, HybridClock, KeyFingerprint, Limits, NodeId, Origin, RecordKey, RowKey,
    TimeUuid,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::clock::now_ms;
use crate::data_dir::{self, Engine};
use crate::frontier_view::FrontierView;
use crate::reads::SnapshotReader;
use crate::scan::{ScanChunks, ScanStream};
use crate::sealing::Vault;
use crate::sealing::reencryption_progress::Reencryptions;
use crate::validate;
use crate::value_cursor::KeyRange;
use crate::write_gate::{WriteGate, WriteHold};
use crate::writer::WriterKeys;
use crate::writer::{Committer, ResealBatch, ResealOutcome, StagedPut, WriteCommand, Writer, WriterMessage};
use crate::writer_health::WriterHealth;
use crate::{Counters, Page, ReadOptions, Record, StorageError, WriteAck};
use consensusdb_seal::MasterKeys;
use consensusdb_types::error::field_path;

/// When the writer syncs the WAL. In configuration (with the `serde`
/// feature) it is spelled `always` or `os`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "lowercase"))]
pub enum SyncPolicy {
    /// fsync every group before acknowledging it (the default). An
    /// acknowledged write survives a crash of the process or the machine.
    #[default]
    Always,
    /// Write the WAL to the OS but do not fsync. An acknowledged write
    /// survives a crash of the process, not of the machine.
    Os,
}

/// How to open a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The data directory.
    pub data_dir: PathBuf,
    /// When to fsync.
    pub sync: SyncPolicy,
    /// Limits on client input.
    pub limits: Limits,
    /// Most writes committed in one group.
    pub max_group_commit: usize,
    /// Bytes of keys and values that may wait for the writer; further
    /// writers wait for room, so memory stays bounded under any load.
    pub writer_queue_bytes: usize,
    /// Scans that may stream at once; more are refused as `UNAVAILABLE`.
    pub max_concurrent_scans: usize,
    /// How far ahead of the local wall clock a replicated stamp may move the
    /// hybrid logical clock, in milliseconds. A peer whose clock runs
    /// further ahead still replicates, but cannot drag this node's stamps
    /// with it; each clipped stamp is counted.
    pub max_clock_drift_ms: u64,
    /// DEVELOPMENT ONLY: milliseconds added to the wall clock this node
    /// stamps writes with, to test skewed clocks. Expiry and reads use the
    /// true clock.
    pub clock_skew_ms: i64,
    /// How long a scan waits for its client to take the next chunk before
    /// it gives up (the client then gets an error with a page token to
    /// resume from), so a stalled client cannot hold a thread and a
    /// snapshot.
    pub scan_stall_timeout: Duration,
    /// Most table files RocksDB keeps open (-1: every one). Bounded within
    /// the process's file-descriptor limit, so other uses of descriptors
    /// (client connections) can never starve RocksDB's own.
    pub max_open_files: i32,
    /// The master keys values are sealed under. `None` stores new values
    /// in the clear (development only; the node refuses to start without
    /// keys unless told so).
    pub master_keys: Option<Arc<MasterKeys>>,
}

impl StoreOptions {
    /// Defaults for `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            sync: SyncPolicy::Always,
            limits: Limits::default(),
            max_group_commit: 1024,
            writer_queue_bytes: 256 * 1024 * 1024,
            max_concurrent_scans: 64,
            max_clock_drift_ms: 60_000,
            clock_skew_ms: 0,
            scan_stall_timeout: Duration::from_secs(60),
            max_open_files: -1,
            master_keys: None,
        }
    }
}

/// Messages the writer channel holds; memory is bounded by `writer_queue_bytes`.
const WRITER_CHANNEL_CAPACITY: usize = 65_536;
/// The queue always has room for the largest single request.
const MIN_QUEUE_ROOM_KIB: u32 = (consensusdb_types::limits::MAX_PAYLOAD_BYTES / 1024) as u32 + 1;

/// One record of a put, as a client asked for it.
#[derive(Debug, Clone)]
pub struct PutRecord {
    /// Where to write.
    pub key: RecordKey,
    /// The value, uncompressed.
    pub value: Vec<u8>,
    /// The codec to store it with (used only if it makes the value smaller).
    pub compression: Compression,
    /// Time to live; `None` never expires.
    pub ttl_ms: Option<u64>,
    /// Refuse the write if a live record exists at the key.
    pub if_absent: bool,
    /// Set when the client encrypted `value` itself, with the key of this
    /// fingerprint: the node stores the value as it came (its compression
    /// must be `None`: the client compressed before encrypting) and marks
    /// the head.
    pub client_key: Option<KeyFingerprint>,
}

/// Which records a range read returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeWindow {
    /// Newest first, from `at_or_before` (inclusive; `None` = the newest).
    NewestFirst {
        /// The upper bound.
        at_or_before: Option<TimeUuid>,
    },
    /// Oldest first, in `[from, until)`; `None` leaves that side open.
    Forward {
        /// The inclusive lower bound.
        from: Option<TimeUuid>,
        /// The exclusive upper bound.
        until: Option<TimeUuid>,
    },
}

/// A paged read of the timed records of one row.
#[derive(Debug, Clone)]
pub struct RangeQuery {
    /// The row.
    pub row: RowKey,
    /// Direction and bounds.
    pub window: RangeWindow,
    /// Most records in the page.
    pub limit: u32,
    /// From a previous page, to continue.
    pub page_token: Option<Vec<u8>>,
    /// Heads only, raw values.
    pub read: ReadOptions,
}

/// What a scan covers. Scans include untimed records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanScope {
    /// Every record of a tenant.
    Tenant {
        /// The tenant.
        major: String,
    },
    /// Every record of one region (table) of a tenant.
    Region {
        /// The tenant.
        major: String,
        /// The region.
        region: String,
    },
    /// Every record of one row.
    Row(RowKey),
}

/// A streamed, paged scan.
#[derive(Debug, Clone)]
pub struct ScanQuery {
    /// What to scan.
    pub scope: ScanScope,
    /// Most records in total; the last chunk carries a page token if more remain.
    pub limit: u32,
    /// From a previous scan, to continue.
    pub page_token: Option<Vec<u8>>,
    /// Heads only, raw values.
    pub read: ReadOptions,
}

pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    node: NodeId,
    /// Written by the writer when an install makes this a new incarnation.
    incarnation: Arc<AtomicU32>,
    /// Set by the writer between the first and last step of an install.
    installing: Arc<AtomicBool>,
    /// Why client writes are refused, if they are.
    write_gate: WriteGate,
    /// Added to the wall clock stamps follow (development switch).
    clock_skew_ms: i64,
    created: bool,
    limits: Limits,
    /// `None` only while dropping.
    inbox: Option<mpsc::Sender<WriterMessage>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Room in the writer queue, in KiB of keys and values.
    queue_room: Arc<Semaphore>,
    queue_room_kib: u32,
    scan_slots: Arc<Semaphore>,
    max_concurrent_scans: usize,
    scan_stall_timeout: Duration,
    /// Set once by [`Store::close`]; running scans watch it.
    pub(crate) closing: watch::Sender<bool>,
    counters: Arc<Counters>,
    writer_health: Arc<WriterHealth>,
    pub(crate) view: Arc<FrontierView>,
    /// Keys to open sealed values with.
    pub(crate) vault: Arc<Vault>,
    /// The re-encryptions run since the store opened, with their progress.
    pub(crate) reencryptions: Reencryptions,
}

/// A node's storage: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
}

/// Work in the writer's queue: its answer to come, and the queue room it
/// holds until then.
#[must_use = "the answer says whether the work was done"]
pub struct Queued<T> {
    answer: oneshot::Receiver<Result<T, StorageError>>,
    _room: OwnedSemaphorePermit,
}

impl<T> Queued<T> {
    /// Waits for the writer's answer.
    pub async fn answer(self) -> Result<T, StorageError> {
        self.answer.await.map_err(|_| StorageError::ShuttingDown)?
    }
}

impl Store {
    /// Opens (or creates) the data directory and starts the writer thread.
    /// Blocks on disk I/O: call it before serving, or on the blocking pool.
    pub fn open(options: StoreOptions) -> Result<Self, StorageError> {
        options.limits.validate("limits")?;
        let opened = data_dir::open(&options.data_dir, options.max_open_files)?;
        let engine = Arc::new(opened.engine);
        let counters = Arc::new(Counters::default());
        let writer_health = Arc::new(WriterHealth::default());
        // The channel only orders writes; `queue_room` bounds their memory.
        let (inbox, receiver) = mpsc::channel(WRITER_CHANNEL_CAPACITY);
        let queue_room_kib =
            u32::try_from(options.writer_queue_bytes / 1024).unwrap_or(u32::MAX).max(MIN_QUEUE_ROOM_KIB);
        let view = Arc::new(FrontierView::new(opened.frontier.iter().map(|(o, m)| (*o, *m)).collect()));
        let incarnation = Arc::new(AtomicU32::new(opened.origin.incarnation));
        let vault = Arc::new(Vault::new(options.master_keys.clone()));
        let keys = WriterKeys::load(vault.clone(), &engine.db, opened.origin)?;
        let installing = Arc::new(AtomicBool::new(opened.bootstrap_pending));
        let writer = Writer {
            engine: engine.clone(),
            origin: opened.origin,
            // Above every HLC applied from any origin, so a node never stamps
            // a write below one it has already seen (and maybe purged).
            clock: HybridClock::starting_after(opened.clock_floor),
            next_seq: opened.own_mark.seq + 1,
            frontier: opened.frontier,
            view: view.clone(),
            max_clock_drift_ms: options.max_clock_drift_ms,
            clock_skew_ms: options.clock_skew_ms,
            shared_incarnation: incarnation.clone(),
            installing: opened.bootstrap_pending,
            shared_installing: installing.clone(),
            sync: options.sync,
            max_group: options.max_group_commit.max(1),
            counters: counters.clone(),
            health: writer_health.clone(),
            committer: Committer::start(
                engine.clone(),
                vault.clone(),
                view.clone(),
                counters.clone(),
                writer_health.clone(),
                options.sync,
            )?,
            in_flight: Default::default(),
            keys,
        };
        let handle = std::thread::Builder::new()
            .name("consensusdb-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(StorageError::io("starting the writer thread"))?;
        tracing::info!(origin = %opened.origin, last_seq = opened.own_mark.seq, "storage opened");
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                node: opened.origin.node,
                incarnation,
                installing,
                write_gate: if opened.bootstrap_pending {
                    WriteGate::held(
                        WriteHold::Bootstrap,
                        "a bootstrap from a peer was cut short and must be redone first".into(),
                    )
                } else {
                    WriteGate::default()
                },
                clock_skew_ms: options.clock_skew_ms,
                created: opened.created,
                limits: options.limits,
                inbox: Some(inbox),
                writer: Mutex::new(Some(handle)),
                queue_room: Arc::new(Semaphore::new(queue_room_kib as usize)),
                queue_room_kib,
                scan_slots: Arc::new(Semaphore::new(options.max_concurrent_scans.max(1))),
                max_concurrent_scans: options.max_concurrent_scans.max(1),
                scan_stall_timeout: options.scan_stall_timeout,
                closing: watch::Sender::new(false),
                counters,
                writer_health,
                view,
                vault,
                reencryptions: Reencryptions::default(),
            }),
        })
    }

    /// This node's origin (node id and incarnation).
    pub fn origin(&self) -> Origin {
        Origin { node: self.shared.node, incarnation: self.shared.incarnation.load(Ordering::Acquire) }
    }

    /// Whether this open created the data directory.
    pub fn is_new(&self) -> bool {
        self.shared.created
    }

    /// Why client writes are refused, if they are: every hold in force
    /// ([`Store::hold_writes`]).
    pub fn writes_closed(&self) -> Option<String> {
        self.shared.write_gate.reason()
    }

    /// Why `hold` keeps client writes closed, if it does.
    pub fn write_hold(&self, hold: WriteHold) -> Option<String> {
        self.shared.write_gate.reason_of(hold)
    }

    /// Whether a snapshot install is under way (or was cut short): the
    /// records are incomplete, so this node must not serve a snapshot.
    pub fn is_installing(&self) -> bool {
        self.shared.installing.load(Ordering::Acquire)
    }

    /// Refuses client writes with `reason` until `hold` is released; other
    /// holds are independent.
    pub fn hold_writes(&self, hold: WriteHold, reason: impl Into<String>) {
        self.shared.write_gate.hold(hold, reason.into());
    }

    /// Lifts `hold`; writes are accepted again once no hold is left.
    pub fn release_writes(&self, hold: WriteHold) {
        self.shared.write_gate.release(hold);
    }

    /// The wall clock this node stamps writes with, in Unix milliseconds
    /// (the development clock skew included): what heartbeats tell peers,
    /// so they can compare clocks.
    pub fn wall_clock_ms(&self) -> u64 {
        crate::clock::skewed_now_ms(self.shared.clock_skew_ms)
    }

    /// The limits client input is checked against.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Whether new values are sealed (a master key was given).
    pub fn is_sealing(&self) -> bool {
        self.shared.vault.is_sealing()
    }

    /// Counters for metrics.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Whether writes are accepted: false after a failed group commit
    /// stopped the writer (until the node restarts).
    pub fn is_writable(&self) -> bool {
        !self.shared.writer_health.is_stopped()
    }

    /// Writes one record. Field errors name `key.*`, `value`, `ttl_ms`.
    pub async fn put(&self, record: PutRecord, deadline: Option<Instant>) -> Result<WriteAck, StorageError> {
        let staged = self.stage_puts(vec![record], |_| String::new()).await?;
        self.submit(WriteCommand::Put(staged), deadline).await
    }

    /// Writes several records as one log entry and one durable commit, all
    /// or nothing. Field errors name `records[i].*`.
    pub async fn put_batch(
        &self,
        records: Vec<PutRecord>,
        deadline: Option<Instant>,
    ) -> Result<WriteAck, StorageError> {
        validate::batch(&records, &self.shared.limits)?;
        let staged = self.stage_puts(records, |i| format!("records[{i}]")).await?;
        self.submit(WriteCommand::Put(staged), deadline).await
    }

    /// Validates and compresses puts. Large batches compress on the blocking pool.
    async fn stage_puts(
        &self,
        records: Vec<PutRecord>,
        prefix: impl Fn(usize) -> String,
    ) -> Result<Vec<StagedPut>, StorageError> {
        let now = now_ms();
        let limits = self.shared.limits;
        let mut checked = Vec::with_capacity(records.len());
        for (index, record) in records.into_iter().enumerate() {
            let prefix = prefix(index);
            let expires_at_ms = validate::put_record(&record, &limits, now, &prefix)?;
            self.check_not_in_future(&record.key, &field_path(&prefix, "key"))?;
            checked.push((record, expires_at_ms, field_path(&prefix, "key")));
        }
        // Compressing a few KiB is cheaper than a trip to the blocking pool;
        // large batches must not stall the reactor.
        const INLINE_COMPRESSION_BYTES: usize = 64 * 1024;
        let total: usize = checked.iter().map(|(r, _, _)| r.value.len()).sum();
        let compress = move || {
            checked
                .into_iter()
                .map(|(record, expires_at_ms, field)| {
                    let key = encode_key(&record.key);
                    let (compression, mut value) = record.compression.compress_owned(record.value);
                    // Room for the seal's tag, so the writer seals in place.
                    value.reserve_exact(consensusdb_types::head::SEAL_TAG_BYTES);
                    StagedPut {
                        key,
                        field,
                        value,
                        compression,
                        expires_at_ms,
                        if_absent: record.if_absent,
                        client_key: record.client_key,
                    }
                })
                .collect::<Vec<_>>()
        };
        if total <= INLINE_COMPRESSION_BYTES { Ok(compress()) } else { run_blocking(compress).await }
    }

    /// Writes a new version of the live record at `key` with the same value
    /// and a new expiry (`None` = never). `NotFound` if there is none.
    pub async fn touch(
        &self,
        key: RecordKey,
        ttl_ms: Option<u64>,
        deadline: Option<Instant>,
    ) -> Result<Head, StorageError> {
        self.check_write_key(&key)?;
        let expires_at_ms = validate::expiry(ttl_ms, now_ms(), "")?;
        let command = WriteCommand::Touch { key: encode_key(&key), field: "key".into(), expires_at_ms };
        Ok(first_head(self.submit(command, deadline).await?))
    }

    /// Writes a tombstone at `key`. Removing an absent key still writes one,
    /// so the removal wins over an older version that has not arrived yet.
    pub async fn remove(&self, key: RecordKey, deadline: Option<Instant>) -> Result<Head, StorageError> {
        self.check_write_key(&key)?;
        let command = WriteCommand::Remove { key: encode_key(&key) };
        Ok(first_head(self.submit(command, deadline).await?))
    }

    async fn submit(
        &self,
        command: WriteCommand,
        deadline: Option<Instant>,
    ) -> Result<WriteAck, StorageError> {
        if let Some(reason) = self.writes_closed() {
            return Err(StorageError::NotAccepting { reason });
        }
        self.send_to_writer(command.byte_size(), |reply| WriterMessage::Write { command, deadline, reply })
            .await
    }

    /// Has the writer seal a batch of stored versions again (a
    /// re-encryption, `sealing::reencrypt`).
    pub(crate) async fn reseal(&self, batch: ResealBatch) -> Result<ResealOutcome, StorageError> {
        if let Some(reason) = self.writes_closed() {
            return Err(StorageError::NotAccepting { reason });
        }
        self.send_to_writer(batch.byte_size(), |reply| WriterMessage::Reseal(batch, reply)).await
    }

    /// Queues a message for the writer and waits for its answer, holding
    /// room for `bytes` in the queue until then, so memory stays bounded.
    pub(crate) async fn send_to_writer<T>(
        &self,
        bytes: usize,
        message: impl FnOnce(oneshot::Sender<Result<T, StorageError>>) -> WriterMessage,
    ) -> Result<T, StorageError> {
        self.queue_for_writer(bytes, message).await?.answer().await
    }

    /// Queues a message for the writer, behind everything queued before
    /// this returns, without waiting for its answer.
    pub(crate) async fn queue_for_writer<T>(
        &self,
        bytes: usize,
        message: impl FnOnce(oneshot::Sender<Result<T, StorageError>>) -> WriterMessage,
    ) -> Result<Queued<T>, StorageError> {
        if *self.shared.closing.borrow() {
            return Err(StorageError::ShuttingDown);
        }
        let kib = u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX).min(self.shared.queue_room_kib);
        let room = self
            .shared
            .queue_room
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| StorageError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        self.inbox()?.send(message(reply)).await.map_err(|_| StorageError::ShuttingDown)?;
        Ok(Queued { answer, _room: room })
    }

    /// Checks the key of a touch or remove, as puts check theirs.
    fn check_write_key(&self, key: &RecordKey) -> Result<(), StorageError> {
        validate::key(key, &self.shared.limits, "key")?;
        self.check_not_in_future(key, "key")
    }

    /// Refuses (and counts) a client TimeUUID beyond the future bound.
    fn check_not_in_future(&self, key: &RecordKey, field: &str) -> Result<(), StorageError> {
        validate::not_in_future(key, &self.shared.limits, now_ms(), field).map_err(|error| {
            self.shared.counters.future_time_rejected.fetch_add(1, Ordering::Relaxed);
            error.into()
        })
    }

    pub(crate) fn inbox(&self) -> Result<&mpsc::Sender<WriterMessage>, StorageError> {
        self.shared.inbox.as_ref().ok_or(StorageError::ShuttingDown)
    }

    /// The live record at `key`.
    pub async fn get(&self, key: RecordKey, read: ReadOptions) -> Result<Option<Record>, StorageError> {
        validate::key(&key, &self.shared.limits, "key")?;
        let encoded = encode_key(&key);
        self.read(read, move |reader| reader.get(&encoded)).await
    }

    /// The newest live timed record of `row` at or before `at` (`None` = the newest).
    pub async fn get_recent(
        &self,
        row: RowKey,
        at: Option<TimeUuid>,
        read: ReadOptions,
    ) -> Result<Option<Record>, StorageError> {
        row.validate(&self.shared.limits).map_err(|e| e.within("row"))?;
        let range = newest_first_range(&row, at);
        self.read(read, move |reader| Ok(reader.page(&range, true, None, 1, usize::MAX)?.records.pop())).await
    }

    /// A page of the timed records of a row.
    pub async fn get_range(&self, query: RangeQuery) -> Result<Page, StorageError> {
        query.row.validate(&self.shared.limits).map_err(|e| e.within("row"))?;
        let limit = validate::read_limit(query.limit, &self.shared.limits)?;
        let (range, reverse) = match query.window {
            RangeWindow::NewestFirst { at_or_before } => (newest_first_range(&query.row, at_or_before), true),
            RangeWindow::Forward { from, until } => {
                if let (Some(from), Some(until)) = (from, until)
                    && encode_timed(&query.row, &until) <= encode_timed(&query.row, &from)
                {
                    return Err(FieldError::new("forward.until", "must be later than from").into());
                }
                (forward_range(&query.row, from, until), false)
            }
        };
        let max_bytes = self.shared.limits.page_bytes;
        self.read(query.read, move |reader| {
            reader.page(&range, reverse, query.page_token.as_deref(), limit, max_bytes)
        })
        .await
    }

    /// Streams a scan in chunks of at most `limits.page_bytes` (or one
    /// record). The last chunk carries a page token if the limit cut the
    /// scan short. The scan stops when the stream is dropped; if its client
    /// takes nothing for `scan_stall_timeout`, or the store closes, the
    /// stream ends with [`StorageError::ScanCutShort`] and a token to
    /// resume from. At most `max_concurrent_scans` run at once, each
    /// holding one blocking thread and one snapshot.
    pub fn scan(&self, query: ScanQuery) -> Result<ScanStream, StorageError> {
        let limits = self.shared.limits;
        let limit = validate::read_limit(query.limit, &limits)?;
        let prefix = match &query.scope {
            ScanScope::Tenant { major } => {
                consensusdb_types::key::validate_component("major_key", major, &limits)?;
                tenant_prefix(major)
            }
            ScanScope::Region { major, region } => {
                consensusdb_types::key::validate_component("major_key", major, &limits)?;
                consensusdb_types::key::validate_component("region", region, &limits)?;
                region_prefix(major, region)
            }
            ScanScope::Row(row) => {
                row.validate(&limits).map_err(|e| e.within("row"))?;
                row_prefix(row)
            }
        };
        let upper = prefix_successor(&prefix).expect("encoded prefixes end in a terminator below 0xFF");
        let range = KeyRange { lower: prefix, upper };
        if let Some(token) = &query.page_token {
            crate::page_token::decode(token, &range.lower, &range.upper)?;
        }
        let slot = self.shared.scan_slots.clone().try_acquire_owned().map_err(|_| StorageError::Busy {
            what: format!("{} scans are already streaming; retry later", self.shared.max_concurrent_scans),
        })?;
        let (chunks, stream) = ScanChunks::channel(
            limit,
            limits.page_bytes,
            self.shared.scan_stall_timeout,
            tokio::runtime::Handle::current(),
            self.shared.closing.subscribe(),
            query.page_token.clone(),
        );
        let (engine, vault, counters) =
            (self.shared.engine.clone(), self.shared.vault.clone(), self.shared.counters.clone());
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let reader =
                SnapshotReader::new(&engine.db, &vault, query.read, now_ms(), &counters).skipping_damaged();
            chunks.run(&reader, &range, query.page_token.as_deref());
        });
        Ok(stream)
    }

    /// Runs a read against a fresh snapshot on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        options: ReadOptions,
        work: impl FnOnce(&SnapshotReader<'_>) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (engine, vault, counters) =
            (self.shared.engine.clone(), self.shared.vault.clone(), self.shared.counters.clone());
        run_blocking(move || work(&SnapshotReader::new(&engine.db, &vault, options, now_ms(), &counters)))
            .await?
    }

    /// Stops accepting writes, commits everything already queued, flushes
    /// and stops the writer thread. Reads keep working until the last clone
    /// of the store is dropped.
    pub async fn close(&self) -> Result<(), StorageError> {
        if self.shared.closing.send_replace(true) {
            return Ok(());
        }
        let (done, finished) = oneshot::channel();
        if self.inbox()?.send(WriterMessage::Shutdown(done)).await.is_ok() {
            finished.await.map_err(|_| StorageError::ShuttingDown)??;
        }
        let handle = self.shared.writer.lock().ok().and_then(|mut handle| handle.take());
        if let Some(handle) = handle {
            // The writer replied before returning, so this join is immediate.
            if run_blocking(move || handle.join()).await?.is_err() {
                tracing::error!("the writer thread panicked while stopping");
            }
        }
        tracing::info!("storage closed");
        Ok(())
    }
}

impl Drop for Shared {
    /// Closing the queue ends the writer loop (after it commits what is
    /// queued); joining it releases the writer's handle on the database, so
    /// the data directory is free as soon as the last `Store` is gone.
    fn drop(&mut self) {
        self.inbox.take();
        if let Some(handle) = self.writer.get_mut().ok().and_then(Option::take)
            && handle.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }
}

/// Runs blocking work on tokio's blocking pool.
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work).await.map_err(|join| StorageError::Io {
        context: "blocking task".into(),
        source: std::io::Error::other(join.to_string()),
    })
}

fn first_head(ack: WriteAck) -> Head {
    *ack.heads.first().expect("a touch or remove writes exactly one head")
}

/// Timed records of `row` up to and including `at`.
fn newest_first_range(row: &RowKey, at: Option<TimeUuid>) -> KeyRange {
    let lower = timed_prefix(row);
    let upper = match at {
        // Keys are prefix-free, so `key ++ 0x00` is the next possible key:
        // an exclusive bound there includes `at` itself.
        Some(at) => {
            let mut key = encode_timed(row, &at);
            key.push(0);
            key
        }
        None => prefix_successor(&lower).expect("timed prefix ends below 0xFF"),
    };
    KeyRange { lower, upper }
}

/// Timed records of `row` in `[from, until)`.
fn forward_range(row: &RowKey, from: Option<TimeUuid>, until: Option<TimeUuid>) -> KeyRange {
    let prefix = timed_prefix(row);
    KeyRange {
        lower: from.map_or_else(|| prefix.clone(), |from| encode_timed(row, &from)),
        upper: until.map_or_else(
            || prefix_successor(&prefix).expect("timed prefix ends below 0xFF"),
            |until| encode_timed(row, &until),
        ),
    }
}

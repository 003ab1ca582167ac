//! Reads: point gets, the newest record at or before a time, ranges and
//! scans. These functions block; the async [`crate::Store`] runs them on
//! the blocking pool.
//!
//! Every read works on one RocksDB snapshot, so a head and its value always
//! belong to the same version. Tombstones and expired versions are skipped.
//! Head-only reads never touch the `values` column family.

use std::borrow::Cow;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use consensusdb_types::key_codec::decode_key;
use consensusdb_types::limits::MAX_PAYLOAD_BYTES;
use consensusdb_types::{Compression, Head, RecordKey, stored_value};
use rocksdb::{DB, SnapshotWithThreadMode};

use crate::columns::{self, RECORDS, VALUES};
use crate::error::hex;
use crate::sealing::{LastSealer, Vault};
use crate::value_cursor::{KeyRange, ValueCursor};
use crate::{Counters, StorageError, page_token};

/// What a read returns besides the heads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Return heads only; values are not loaded.
    pub head_only: bool,
    /// Return values as stored (still compressed), with the codec in the head.
    pub raw: bool,
}

/// One live version of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its key.
    pub key: RecordKey,
    /// Its head.
    pub head: Head,
    /// The value; `None` for head-only reads. Decompressed unless raw.
    pub value: Option<Vec<u8>>,
}

impl Record {
    /// Rough bytes this record takes in a response, for chunking.
    pub(crate) fn response_size(&self, encoded_key_len: usize) -> usize {
        encoded_key_len + 96 + self.value.as_ref().map_or(0, Vec::len)
    }
}

/// A page of records and the token for the next page, if there may be more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The records, in the query's order.
    pub records: Vec<Record>,
    /// Pass back to continue after the last record.
    pub next_page_token: Option<Vec<u8>>,
}

/// Reads against one snapshot.
pub(crate) struct SnapshotReader<'a> {
    db: &'a DB,
    snapshot: SnapshotWithThreadMode<'a, DB>,
    options: ReadOptions,
    now_ms: u64,
    /// Opens sealed values.
    vault: &'a Vault,
    /// Counts damaged records that walks skip, and sealed values refused.
    counters: &'a Counters,
    /// Whether walks skip damaged records (scans) or fail on them.
    skip_damaged: bool,
    /// The sealer of the last sealed value opened: a walk meets runs of
    /// values under one key, and this spares each the vault's lookup.
    last_sealer: LastSealer,
}

impl<'a> SnapshotReader<'a> {
    pub(crate) fn new(
        db: &'a DB,
        vault: &'a Vault,
        options: ReadOptions,
        now_ms: u64,
        counters: &'a Counters,
    ) -> Self {
        Self {
            db,
            snapshot: db.snapshot(),
            options,
            now_ms,
            vault,
            counters,
            skip_damaged: false,
            last_sealer: LastSealer::default(),
        }
    }

    /// Makes walks skip damaged records (counted and logged with their key)
    /// instead of failing: one damaged record must not make every scan of
    /// its tenant fail. Narrow reads (a key, the newest of a row, a page of
    /// a row) still fail on one, rather than answer with another record.
    pub(crate) fn skipping_damaged(mut self) -> Self {
        self.skip_damaged = true;
        self
    }

    /// The live record at `key`, if any. A damaged record is an error
    /// naming its key.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Record>, StorageError> {
        let records = columns::handle(self.db, RECORDS);
        let Some(bytes) = self.snapshot.get_pinned_cf(records, key)? else {
            return Ok(None);
        };
        let Some(head) = self.live_head(&bytes).map_err(|e| at_key(e, key))? else { return Ok(None) };
        if self.options.head_only {
            return self.record(key, head, None).map_err(|e| at_key(e, key));
        }
        let entry = self.snapshot.get_pinned_cf(columns::handle(self.db, VALUES), key)?;
        self.record(key, head, entry.as_deref()).map_err(|e| at_key(e, key))
    }

    /// The head, or `None` if reads must hide it.
    fn live_head(&self, head_bytes: &[u8]) -> Result<Option<Head>, StorageError> {
        let head = Head::decode(head_bytes)?;
        Ok((!head.is_hidden(self.now_ms)).then_some(head))
    }

    /// Builds the record for a live head and its stored value entry (ignored
    /// for head-only reads), or `None` if the value has just expired.
    fn record(&self, key: &[u8], head: Head, entry: Option<&[u8]>) -> Result<Option<Record>, StorageError> {
        let record_key = decode_key(key)?;
        let value = if self.options.head_only {
            None
        } else {
            match entry {
                Some(entry) => {
                    let stored =
                        self.opened(key, &record_key.row.major, &head, stored_value::decode(entry)?)?;
                    Some(match stored {
                        // Opened into a buffer of its own: an uncompressed
                        // value is moved out, not copied again.
                        Cow::Owned(value) if self.options.raw || head.compression == Compression::None => {
                            value
                        }
                        stored if self.options.raw => stored.into_owned(),
                        stored => head.compression.decompress(&stored, MAX_PAYLOAD_BYTES)?,
                    })
                }
                // Compaction ignores snapshots: an expiring value can vanish
                // between our clock read and now. Hide it, as it is expired.
                None if head.expires_at_ms.is_some() => return Ok(None),
                None => {
                    return Err(StorageError::Corrupt(consensusdb_types::DecodeError {
                        what: "record",
                        reason: "a live head has no value".into(),
                    }));
                }
            }
        };
        Ok(Some(Record { key: record_key, head, value }))
    }

    /// The value as the client stored it (compressed): opened if sealed.
    /// A refusal is counted and logged with the record's key, and no
    /// bytes are returned.
    fn opened<'v>(
        &self,
        key: &[u8],
        tenant: &str,
        head: &Head,
        stored: &'v [u8],
    ) -> Result<Cow<'v, [u8]>, StorageError> {
        if head.seal.is_none() {
            return Ok(Cow::Borrowed(stored));
        }
        match self.vault.open_with(self.db, key, tenant, head, stored, &self.last_sealer) {
            Ok(value) => Ok(Cow::Owned(value)),
            Err(error) => {
                if let StorageError::Unopenable { shredded: false, .. } = error {
                    self.counters.sealed_values_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, "a read refused a sealed value");
                }
                Err(error)
            }
        }
    }

    /// Visits live records in `range`, forwards or backwards, starting after
    /// `resume_after`. Returns `true` if the range may hold more records
    /// after the last one visited (the visitor stopped early).
    pub(crate) fn walk(
        &self,
        range: &KeyRange,
        reverse: bool,
        resume_after: Option<&[u8]>,
        mut visit: impl FnMut(Record, &[u8]) -> ControlFlow<()>,
    ) -> Result<bool, StorageError> {
        let records = columns::handle(self.db, RECORDS);
        let mut options = rocksdb::ReadOptions::default();
        options.set_iterate_lower_bound(range.lower.clone());
        options.set_iterate_upper_bound(range.upper.clone());
        let mut iter = self.snapshot.raw_iterator_cf_opt(records, options);
        match (reverse, resume_after) {
            (false, None) => iter.seek_to_first(),
            (true, None) => iter.seek_to_last(),
            (false, Some(after)) => {
                iter.seek(after);
                if iter.key() == Some(after) {
                    iter.next();
                }
            }
            (true, Some(after)) => {
                iter.seek_for_prev(after);
                if iter.key() == Some(after) {
                    iter.prev();
                }
            }
        }
        let step = |iter: &mut rocksdb::DBRawIteratorWithThreadMode<'_, DB>| {
            if reverse { iter.prev() } else { iter.next() }
        };
        let mut values =
            (!self.options.head_only).then(|| ValueCursor::new(self.db, &self.snapshot, range, reverse));
        while let (Some(key), Some(head)) = (iter.key(), iter.value()) {
            let found = match self.live_head(head) {
                Ok(Some(head)) => {
                    let entry = match values.as_mut() {
                        Some(values) => values.value_at(key)?,
                        None => None,
                    };
                    self.record(key, head, entry)
                }
                Ok(None) => Ok(None),
                Err(error) => Err(error),
            };
            let record = match found {
                Ok(record) => record,
                Err(StorageError::Corrupt(error)) if self.skip_damaged => {
                    self.counters.damaged_records_skipped.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(key = %hex(key), %error, "a read skipped a damaged record");
                    None
                }
                Err(error) => return Err(at_key(error, key)),
            };
            if let Some(record) = record
                && visit(record, key).is_break()
            {
                step(&mut iter);
                iter.status()?;
                return Ok(iter.valid());
            }
            step(&mut iter);
        }
        iter.status()?;
        Ok(false)
    }

    /// One page of up to `limit` records of `range`, cut short before it
    /// would pass `max_bytes`.
    pub(crate) fn page(
        &self,
        range: &KeyRange,
        reverse: bool,
        page_token: Option<&[u8]>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StorageError> {
        let resume =
            page_token.map(|token| page_token::decode(token, &range.lower, &range.upper)).transpose()?;
        let mut page = PageBuilder::new(max_bytes);
        let mut full = false;
        let more = self.walk(range, reverse, resume, |record, key| {
            if !page.fits(&record, key) {
                full = true;
                return ControlFlow::Break(());
            }
            page.push(record, key);
            if page.records.len() >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })?;
        Ok(page.finish(more || full))
    }
}

/// Collects records up to a byte budget and remembers the last key taken.
pub(crate) struct PageBuilder {
    pub(crate) records: Vec<Record>,
    bytes: usize,
    max_bytes: usize,
    last_key: Vec<u8>,
}

impl PageBuilder {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self { records: Vec::new(), bytes: 0, max_bytes, last_key: Vec::new() }
    }

    /// Whether `record` fits; the first record of a page always does.
    pub(crate) fn fits(&self, record: &Record, key: &[u8]) -> bool {
        self.records.is_empty() || self.bytes + record.response_size(key.len()) <= self.max_bytes
    }

    pub(crate) fn push(&mut self, record: Record, key: &[u8]) {
        self.bytes += record.response_size(key.len());
        self.records.push(record);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
    }

    /// Takes the records so far, leaving an empty builder that still
    /// remembers the last key.
    pub(crate) fn take(&mut self) -> Vec<Record> {
        self.bytes = 0;
        std::mem::take(&mut self.records)
    }

    /// The page, with a token to resume after the last record if `more`.
    pub(crate) fn finish(self, more: bool) -> Page {
        Page { records: self.records, next_page_token: more.then(|| page_token::encode(&self.last_key)) }
    }
}

/// A damaged record's error, naming the stored key (other errors as they are).
fn at_key(error: StorageError, key: &[u8]) -> StorageError {
    match error {
        StorageError::Corrupt(mut error) => {
            error.reason = format!("{} (stored key {})", error.reason, hex(key));
            StorageError::Corrupt(error)
        }
        other => other,
    }
}

//! The records operations, once, in domain types: what the gRPC service and
//! the JSON gateway both call after decoding their requests, so semantics,
//! validation and error codes cannot differ between the two. Each interface
//! only converts its wire format to these types and [`ServiceError`] back.

use std::time::{Duration, Instant};

use consensusdb_storage::{
    Page, PutRecord, RangeQuery, ReadOptions, Record, ScanQuery, StorageError, Store, WriteAck,
};
use consensusdb_types::{ErrorCode, FieldError, Head, RecordKey, RowKey, TimeUuid};
use tokio::sync::mpsc;

/// A failed operation, ready for any interface to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// The shared code, which each interface maps once to its own status.
    pub code: ErrorCode,
    /// Says what was wrong; starts with the field when there is one.
    pub message: String,
    /// The request field at fault, in the interface's own naming.
    pub field: Option<String>,
}

impl ServiceError {
    /// A record that is not there, at `field`.
    fn not_found(field: &str, message: &str) -> Self {
        Self { code: ErrorCode::NotFound, message: format!("{field}: {message}"), field: Some(field.into()) }
    }

    /// The same error with its field under `parent` (`limit` becomes
    /// `options.limit`), for interfaces that nest the field.
    #[must_use]
    pub fn within(mut self, parent: &str) -> Self {
        if let Some(field) = &self.field {
            let nested = format!("{parent}.{field}");
            if let Some(rest) = self.message.strip_prefix(&format!("{field}:")) {
                self.message = format!("{nested}:{rest}");
            }
            self.field = Some(nested);
        }
        self
    }
}

impl From<StorageError> for ServiceError {
    fn from(error: StorageError) -> Self {
        let code = error.code();
        if code == ErrorCode::Internal {
            // Logged here, once, whichever interface answers.
            tracing::error!(%error, "internal error serving a request");
        }
        Self { code, message: error.to_string(), field: error.field().map(str::to_string) }
    }
}

impl From<FieldError> for ServiceError {
    fn from(error: FieldError) -> Self {
        Self { code: ErrorCode::InvalidArgument, message: error.to_string(), field: Some(error.field) }
    }
}

/// Pages of a scan as the store produces them.
pub type ScanPages = mpsc::Receiver<Result<Page, StorageError>>;

/// The records operations of one node.
#[derive(Clone)]
pub struct RecordsApi {
    store: Store,
}

impl RecordsApi {
    /// The operations over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Writes one record; with `write_concern` > 0, answers only once that
    /// many peers have applied it. Returns the head it left.
    pub async fn put(
        &self,
        record: PutRecord,
        write_concern: u32,
        deadline: Option<Instant>,
    ) -> Result<Option<Head>, ServiceError> {
        let ack = self.store.put(record, deadline).await?;
        self.await_write_concern(ack.seq, write_concern, deadline).await?;
        Ok(ack.heads.first().copied())
    }

    /// Writes records all or nothing, as one log entry.
    pub async fn put_batch(
        &self,
        records: Vec<PutRecord>,
        write_concern: u32,
        deadline: Option<Instant>,
    ) -> Result<WriteAck, ServiceError> {
        let ack = self.store.put_batch(records, deadline).await?;
        self.await_write_concern(ack.seq, write_concern, deadline).await?;
        Ok(ack)
    }

    /// The live record at `key`; `NotFound` at `key_field` when there is none.
    pub async fn get(
        &self,
        key: RecordKey,
        read: ReadOptions,
        key_field: &str,
    ) -> Result<Record, ServiceError> {
        self.store
            .get(key, read)
            .await?
            .ok_or_else(|| ServiceError::not_found(key_field, "no live record at this key"))
    }

    /// The newest live timed record of `row` at or before `at` (now if
    /// `None`); `NotFound` at `row_field` when there is none.
    pub async fn get_recent(
        &self,
        row: RowKey,
        at: Option<TimeUuid>,
        read: ReadOptions,
        row_field: &str,
        at_field: &str,
    ) -> Result<Record, ServiceError> {
        self.store.get_recent(row, at, read).await?.ok_or_else(|| {
            ServiceError::not_found(row_field, &format!("no live timed record at or before {at_field}"))
        })
    }

    /// One page of a row's timed records.
    pub async fn get_range(&self, query: RangeQuery) -> Result<Page, ServiceError> {
        Ok(self.store.get_range(query).await?)
    }

    /// A row, region or tenant in key order, page by page.
    pub fn scan(&self, query: ScanQuery) -> Result<ScanPages, ServiceError> {
        Ok(self.store.scan(query)?)
    }

    /// Gives the live record at `key` a new expiry.
    pub async fn touch(
        &self,
        key: RecordKey,
        ttl_ms: Option<u64>,
        deadline: Option<Instant>,
    ) -> Result<Head, ServiceError> {
        Ok(self.store.touch(key, ttl_ms, deadline).await?)
    }

    /// Removes the record at `key` (a tombstone).
    pub async fn remove(&self, key: RecordKey, deadline: Option<Instant>) -> Result<Head, ServiceError> {
        Ok(self.store.remove(key, deadline).await?)
    }

    /// Waits for `peers` peers to apply the committed write `seq`. Gives up
    /// a little before the caller's deadline, so the answer saying how many
    /// confirmed reaches the caller before it stops listening.
    async fn await_write_concern(
        &self,
        seq: u64,
        peers: u32,
        deadline: Option<Instant>,
    ) -> Result<(), ServiceError> {
        const REPLY_MARGIN: Duration = Duration::from_millis(50);
        if peers == 0 {
            return Ok(());
        }
        let deadline = deadline.map(|d| d.checked_sub(REPLY_MARGIN).unwrap_or(d));
        Ok(self.store.wait_for_peers(seq, peers, deadline).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_a_field_renames_it_in_the_message_too() {
        let error = ServiceError::from(FieldError::new("limit", "must be between 1 and 10000, got 0"));
        let nested = error.within("options");
        assert_eq!(nested.field.as_deref(), Some("options.limit"));
        assert_eq!(nested.message, "options.limit: must be between 1 and 10000, got 0");
        assert_eq!(nested.code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn storage_errors_keep_their_code_and_field() {
        let error = ServiceError::from(StorageError::AlreadyExists { field: "records[1].key".into() });
        assert_eq!(error.code, ErrorCode::AlreadyExists);
        assert_eq!(error.field.as_deref(), Some("records[1].key"));
        assert_eq!(ServiceError::from(StorageError::ShuttingDown).code, ErrorCode::Unavailable);
        assert_eq!(ServiceError::from(StorageError::ShuttingDown).field, None);
    }
}

//! The records operations, once, in domain types: what the gRPC service and
//! the JSON gateway both call after decoding their requests, so semantics,
//! validation and error codes cannot differ between the two. Each interface
//! only converts its wire format to these types and [`ServiceError`] back.
//!
//! Every operation takes the [`Principal`] the request acts for and checks
//! it against the tenant it touches here, before anything is read or
//! written: the one place grants are enforced for both interfaces. A scan
//! names its tenant and a page token never leads outside the scan's range
//! (the store checks), so a scan never reaches past a grant either.

use std::time::{Duration, Instant};

use consensusdb_mesh::{Mesh, WriteConcernError};
use consensusdb_storage::{
    Page, PutRecord, RangeQuery, ReadOptions, Record, ScanQuery, ScanScope, ScanStream, StorageError, Store,
    WriteAck,
};
use consensusdb_types::{
    ErrorCode, FieldError, Head, Permission, Principal, RecordKey, Refusal, RowKey, TimeUuid,
};

use crate::metrics::{Kind, Metrics};

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
    pub fn within(self, parent: &str) -> Self {
        self.renamed(|field| Some(format!("{parent}.{field}")))
    }

    /// The same error with its field named as `rename` says (`None` keeps
    /// it), in the message too: for interfaces whose fields are laid out
    /// differently from the records layer's (`key.time_uuid` is a path
    /// segment `time_uuid` in the JSON gateway).
    #[must_use]
    pub fn renamed(mut self, rename: impl FnOnce(&str) -> Option<String>) -> Self {
        let Some(field) = self.field.take() else { return self };
        let Some(new) = rename(&field) else {
            self.field = Some(field);
            return self;
        };
        if let Some(rest) = self.message.strip_prefix(&format!("{field}:")) {
            self.message = format!("{new}:{rest}");
        }
        self.field = Some(new);
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

impl From<WriteConcernError> for ServiceError {
    fn from(error: WriteConcernError) -> Self {
        let (code, field) = match error {
            WriteConcernError::MorePeersThanKnown { .. } => {
                (ErrorCode::FailedPrecondition, Some("write_concern".to_string()))
            }
            WriteConcernError::NotConfirmedInTime { .. } => (ErrorCode::DeadlineExceeded, None),
        };
        Self { code, message: error.to_string(), field }
    }
}

impl From<Refusal> for ServiceError {
    fn from(refusal: Refusal) -> Self {
        Self { code: refusal.code(), message: refusal.to_string(), field: None }
    }
}

impl From<FieldError> for ServiceError {
    fn from(error: FieldError) -> Self {
        Self { code: ErrorCode::InvalidArgument, message: error.to_string(), field: Some(error.field) }
    }
}

/// Pages of a scan as the store produces them; a scan cut short ends in
/// an error, never as if complete.
pub type ScanPages = ScanStream;

/// The records operations of one node, as served by one interface.
#[derive(Clone)]
pub struct RecordsApi {
    store: Store,
    metrics: Metrics,
    interface: &'static str,
    mesh: Option<Mesh>,
}

impl RecordsApi {
    /// The operations over `store`, counted in `metrics` under `interface`
    /// (`grpc`, `http`). Without [`RecordsApi::with_mesh`] the node has
    /// no peers, so any write concern is refused.
    pub fn new(store: Store, metrics: Metrics, interface: &'static str) -> Self {
        Self { store, metrics, interface, mesh: None }
    }

    /// The node's storage.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Where requests are counted.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Answers write concerns through the node's replication mesh.
    #[must_use]
    pub fn with_mesh(mut self, mesh: Mesh) -> Self {
        self.mesh = Some(mesh);
        self
    }

    /// Refuses, before anything is written, a write concern no set of
    /// known peers could meet ([`Mesh::check_write_concern`]).
    fn check_write_concern(&self, write_concern: u32) -> Result<(), ServiceError> {
        match &self.mesh {
            _ if write_concern == 0 => Ok(()),
            Some(mesh) => Ok(mesh.check_write_concern(write_concern)?),
            None => Err(WriteConcernError::MorePeersThanKnown { wanted: write_concern, known: 0 }.into()),
        }
    }

    /// Counts an answered request under `operation` and its code.
    fn observed<T>(
        &self,
        operation: &str,
        kind: Kind,
        started: Instant,
        result: Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let code = match &result {
            Ok(_) => "OK",
            Err(error) => error.code.as_str(),
        };
        self.metrics.observe(self.interface, operation, kind, code, started);
        result
    }

    /// Writes one record; with `write_concern` > 0, answers only once that
    /// many peers have applied it. Returns the head it left.
    pub async fn put(
        &self,
        principal: &Principal,
        record: PutRecord,
        write_concern: u32,
        deadline: Option<Instant>,
    ) -> Result<Head, ServiceError> {
        let started = Instant::now();
        let result: Result<_, ServiceError> = async {
            principal.allows(&record.key.row.major, Permission::Write)?;
            self.check_write_concern(write_concern)?;
            let ack = self.store.put(record, deadline).await?;
            self.await_write_concern(ack.seq, write_concern, deadline).await?;
            ack.heads.first().copied().ok_or_else(|| ServiceError {
                code: ErrorCode::Internal,
                message: "the store acknowledged a put without its head".into(),
                field: None,
            })
        }
        .await;
        self.observed("put", Kind::Write, started, result)
    }

    /// Writes records all or nothing, as one log entry.
    pub async fn put_batch(
        &self,
        principal: &Principal,
        records: Vec<PutRecord>,
        write_concern: u32,
        deadline: Option<Instant>,
    ) -> Result<WriteAck, ServiceError> {
        let started = Instant::now();
        let result: Result<_, ServiceError> = async {
            let tenants: std::collections::BTreeSet<&str> =
                records.iter().map(|record| record.key.row.major.as_str()).collect();
            for tenant in tenants {
                principal.allows(tenant, Permission::Write)?;
            }
            self.check_write_concern(write_concern)?;
            let ack = self.store.put_batch(records, deadline).await?;
            self.await_write_concern(ack.seq, write_concern, deadline).await?;
            Ok(ack)
        }
        .await;
        self.observed("put_batch", Kind::Write, started, result)
    }

    /// The live record at `key`; `NotFound` at `key_field` when there is none.
    pub async fn get(
        &self,
        principal: &Principal,
        key: RecordKey,
        read: ReadOptions,
        key_field: &str,
    ) -> Result<Record, ServiceError> {
        let started = Instant::now();
        let result = async {
            principal.allows(&key.row.major, Permission::Read)?;
            self.store
                .get(key, read)
                .await?
                .ok_or_else(|| ServiceError::not_found(key_field, "no live record at this key"))
        }
        .await;
        self.observed("get", Kind::Read, started, result)
    }

    /// The newest live timed record of `row` at or before `at` (the newest
    /// of all if `None`, which may be stamped up to the future-time bound
    /// ahead); `NotFound` at `row_field` when there is none.
    pub async fn get_recent(
        &self,
        principal: &Principal,
        row: RowKey,
        at: Option<TimeUuid>,
        read: ReadOptions,
        row_field: &str,
        at_field: &str,
    ) -> Result<Record, ServiceError> {
        let started = Instant::now();
        let result = async {
            principal.allows(&row.major, Permission::Read)?;
            self.store.get_recent(row, at, read).await?.ok_or_else(|| {
                ServiceError::not_found(row_field, &format!("no live timed record at or before {at_field}"))
            })
        }
        .await;
        self.observed("get_recent", Kind::Read, started, result)
    }

    /// One page of a row's timed records.
    pub async fn get_range(&self, principal: &Principal, query: RangeQuery) -> Result<Page, ServiceError> {
        let started = Instant::now();
        let result = async {
            principal.allows(&query.row.major, Permission::Read)?;
            Ok(self.store.get_range(query).await?)
        }
        .await;
        self.observed("get_range", Kind::Read, started, result)
    }

    /// A row, region or tenant in key order, page by page.
    pub fn scan(&self, principal: &Principal, query: ScanQuery) -> Result<ScanPages, ServiceError> {
        let started = Instant::now();
        let tenant = match &query.scope {
            ScanScope::Tenant { major } | ScanScope::Region { major, .. } => major,
            ScanScope::Row(row) => &row.major,
        };
        let result = principal
            .allows(tenant, Permission::Read)
            .map_err(ServiceError::from)
            .and_then(|()| Ok(self.store.scan(query)?));
        self.observed("scan", Kind::Read, started, result)
    }

    /// Gives the live record at `key` a new expiry.
    pub async fn touch(
        &self,
        principal: &Principal,
        key: RecordKey,
        ttl_ms: Option<u64>,
        deadline: Option<Instant>,
    ) -> Result<Head, ServiceError> {
        let started = Instant::now();
        let result = async {
            principal.allows(&key.row.major, Permission::Write)?;
            Ok(self.store.touch(key, ttl_ms, deadline).await?)
        }
        .await;
        self.observed("touch", Kind::Write, started, result)
    }

    /// Removes the record at `key` (a tombstone).
    pub async fn remove(
        &self,
        principal: &Principal,
        key: RecordKey,
        deadline: Option<Instant>,
    ) -> Result<Head, ServiceError> {
        let started = Instant::now();
        let result = async {
            principal.allows(&key.row.major, Permission::Write)?;
            Ok(self.store.remove(key, deadline).await?)
        }
        .await;
        self.observed("remove", Kind::Write, started, result)
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
        // Checked up front: no mesh and a write concern never get here.
        let Some(mesh) = self.mesh.as_ref().filter(|_| peers > 0) else { return Ok(()) };
        let deadline = deadline.map(|d| d.checked_sub(REPLY_MARGIN).unwrap_or(d));
        Ok(mesh.await_write_concern(seq, peers, deadline).await?)
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
    fn renaming_a_field_renames_it_in_the_message_and_keeps_what_is_not_renamed() {
        let error = ServiceError::from(FieldError::new("key.time_uuid", "is too far in the future"));
        let renamed = error.clone().renamed(|field| field.strip_prefix("key.").map(str::to_string));
        assert_eq!(renamed.field.as_deref(), Some("time_uuid"));
        assert_eq!(renamed.message, "time_uuid: is too far in the future");
        assert_eq!(error.clone().renamed(|_| None), error);
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

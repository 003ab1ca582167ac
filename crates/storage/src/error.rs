//! The storage layer's errors, each mapped to one shared [`ErrorCode`].

use std::path::PathBuf;

use consensusdb_types::{DecodeError, ErrorCode, FieldError};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request was malformed; names the field.
    #[error("{0}")]
    Invalid(#[from] FieldError),
    /// Put-if-absent found a live record.
    #[error("{field}: a live record already exists at this key")]
    AlreadyExists {
        /// The key field of the offending record.
        field: String,
    },
    /// There is no live record to touch or read.
    #[error("{field}: no live record at this key")]
    NotFound {
        /// The key field of the request.
        field: String,
    },
    /// A version with a later stamp than this write would get already holds
    /// the key: the write would never become the current version, so it
    /// was refused before it took a seq. A peer whose clock runs ahead of
    /// this node's (beyond the drift bound) wrote that version.
    #[error(
        "{field}: not written: the key holds a version stamped {} by {}, later than this node's clock \
         ({}), so this write could never become the current version. A node whose clock runs ahead \
         wrote that version; compare the nodes' clocks (`consensusdb status`) and retry once they agree",
        hlc_time(current.hlc), current.origin, hlc_time(*clock)
    )]
    Superseded {
        /// The key field of the refused record.
        field: String,
        /// The stamp of the version that holds the key.
        current: consensusdb_types::Stamp,
        /// The HLC this write would have been stamped with.
        clock: u64,
    },
    /// The deadline passed before the writer gave the write a seq; the write
    /// was not applied.
    #[error("deadline exceeded before the write was accepted; it was not applied")]
    DeadlineExceeded,
    /// Too much work of one kind is under way; retry later.
    #[error("busy: {what}")]
    Busy {
        /// What is saturated.
        what: String,
    },
    /// The store is closing and accepts no more work.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// Another process holds the data directory.
    #[error("data directory {path} is already in use by another process (lock held on {lock})", path = path.display(), lock = lock.display())]
    DataDirInUse {
        /// The data directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The data directory cannot be used by this build.
    #[error("data directory {path}: {reason}", path = path.display())]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Stored bytes could not be decoded.
    #[error("stored data is damaged: {0}")]
    Corrupt(#[from] DecodeError),
    /// RocksDB reported an error.
    #[error("storage engine: {0}")]
    Engine(#[from] rocksdb::Error),
    /// Writing the write's group failed in a way that may or may not have
    /// made it durable (the WAL may replay it at the next start).
    #[error(
        "storage failed while committing this write ({reason}); it may or may not have been \
         applied: retry it with the same TimeUUID on another node, or here after a restart"
    )]
    OutcomeUnknown {
        /// The storage engine's error.
        reason: String,
    },
    /// An earlier storage failure stopped the writer; nothing is accepted
    /// until the node restarts and recovers its state from disk.
    #[error("this node stopped accepting writes after a storage failure ({reason}); restart it")]
    WriterStopped {
        /// The storage engine's error.
        reason: String,
    },
    /// A replicated chunk skipped entries of an origin: the source must
    /// resume from this node's frontier.
    #[error(
        "replicated entries of origin {origin} jump from seq {expected} to {got}; resume from the frontier"
    )]
    Gap {
        /// The origin.
        origin: consensusdb_types::Origin,
        /// The seq that had to come next.
        expected: u64,
        /// The seq that came.
        got: u64,
    },
    /// A peer holds this node's own origin beyond its local log: the data
    /// directory is older than what the cluster has seen (restored from a
    /// backup, or copied). Its seqs would be reused, so it is refused.
    #[error(
        "a peer holds this node's own origin up to at least seq {seq}, but the local log ends at {local}: \
         the data directory is older than what the cluster saw; start it as a new incarnation"
    )]
    OwnOriginAhead {
        /// The seq the peer sent.
        seq: u64,
        /// The local log's last seq.
        local: u64,
    },
    /// The node is installing a bootstrap snapshot and takes no replicated
    /// entries until it is done.
    #[error("this node is installing a bootstrap snapshot; retry when it is done")]
    Bootstrapping,
    /// A snapshot lacks this node's own entries from `snapshot + 1` on,
    /// and its own log no longer holds them all: another source's snapshot
    /// is needed.
    #[error(
        "the snapshot holds this node's own writes only to seq {snapshot}, and its log resumes at {next_held}"
    )]
    SnapshotBehind {
        /// The snapshot's mark of the own origin.
        snapshot: u64,
        /// The first own seq the log holds after it.
        next_held: u64,
    },
    /// An install step came without `install_begin`.
    #[error("no snapshot install is under way")]
    NotInstalling,
    /// Client writes are not accepted now (a node joining or re-joining
    /// accepts them only after bootstrapping).
    #[error("this node accepts no writes yet: {reason}")]
    NotAccepting {
        /// Why, and what it waits for.
        reason: String,
    },
    /// A scan stopped before its end for a reason other than its limit:
    /// the records already returned are good, and `resume_token` continues
    /// right after the last of them (or where the scan began).
    #[error("the scan was cut short: {reason}; {}", resume_hint(.resume_token.is_some()))]
    ScanCutShort {
        /// Why the scan stopped.
        reason: String,
        /// The page token that resumes after the last record returned.
        resume_token: Option<Vec<u8>>,
    },
    /// A replicated entry (or snapshot record) is malformed: it is refused,
    /// never stored.
    #[error("refused malformed {what} from a peer: {reason}")]
    BadEntry {
        /// Which entry (origin and seq) or snapshot record.
        what: String,
        /// What does not decode.
        reason: String,
    },
    /// A sealed value cannot be opened: it does not authenticate (altered
    /// on disk), or its key is missing, damaged or destroyed. No bytes are
    /// returned.
    #[error("{key}: the value cannot be read: {reason}")]
    Unopenable {
        /// The record (or key) concerned, as `tenant/region/minor[/time]`.
        key: String,
        /// Why.
        reason: String,
        /// The key was destroyed on purpose (the tenant was shredded):
        /// not data loss but a refused precondition.
        shredded: bool,
    },
    /// The operation needs a master key, and this node runs unsealed
    /// (development mode).
    #[error("{what} needs the cluster's master key, and this node runs unsealed (development mode)")]
    Unsealed {
        /// What was asked.
        what: String,
    },
    /// A new set of master keys would have lost a key in use; the keys in
    /// use stay.
    #[error("the new master keys were refused, and the ones in use stay: {reason}")]
    MasterKeysRefused {
        /// Why.
        reason: String,
    },
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// An HLC's wall-clock part as RFC 3339 with milliseconds.
fn hlc_time(hlc: u64) -> String {
    let ms = hlc >> consensusdb_types::HybridClock::LOGICAL_BITS;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

/// What a client of a cut-short scan can do.
fn resume_hint(resumable: bool) -> &'static str {
    if resumable {
        "the records before this error are complete and in key order: continue with the page token given"
    } else {
        "no record was returned: run the scan again from its start"
    }
}

impl StorageError {
    /// The shared error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            StorageError::Invalid(_) => ErrorCode::InvalidArgument,
            StorageError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            StorageError::NotFound { .. } => ErrorCode::NotFound,
            StorageError::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            StorageError::ShuttingDown
            | StorageError::Busy { .. }
            | StorageError::OutcomeUnknown { .. }
            | StorageError::WriterStopped { .. }
            | StorageError::Bootstrapping
            | StorageError::ScanCutShort { .. }
            | StorageError::NotAccepting { .. } => ErrorCode::Unavailable,
            StorageError::Superseded { .. }
            | StorageError::NotInstalling
            | StorageError::SnapshotBehind { .. }
            | StorageError::Unsealed { .. }
            | StorageError::MasterKeysRefused { .. } => ErrorCode::FailedPrecondition,
            StorageError::DataDirInUse { .. }
            | StorageError::DataDir { .. }
            | StorageError::Gap { .. }
            | StorageError::OwnOriginAhead { .. } => ErrorCode::FailedPrecondition,
            StorageError::BadEntry { .. } => ErrorCode::InvalidArgument,
            StorageError::Corrupt(_) | StorageError::Engine(_) | StorageError::Io { .. } => {
                ErrorCode::Internal
            }
            StorageError::Unopenable { shredded: true, .. } => ErrorCode::FailedPrecondition,
            StorageError::Unopenable { shredded: false, .. } => ErrorCode::DataLoss,
        }
    }

    /// The request field at fault, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            StorageError::Invalid(e) => Some(&e.field),
            StorageError::AlreadyExists { field }
            | StorageError::NotFound { field }
            | StorageError::Superseded { field, .. } => Some(field),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| StorageError::Io { context, source }
    }
}

/// Stored bytes (a key) as lowercase hex, for errors and logs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
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
            | StorageError::WriterStopped { .. } => ErrorCode::Unavailable,
            StorageError::DataDirInUse { .. } | StorageError::DataDir { .. } => ErrorCode::FailedPrecondition,
            StorageError::Corrupt(_) | StorageError::Engine(_) | StorageError::Io { .. } => {
                ErrorCode::Internal
            }
        }
    }

    /// The request field at fault, if the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            StorageError::Invalid(e) => Some(&e.field),
            StorageError::AlreadyExists { field } | StorageError::NotFound { field } => Some(field),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| StorageError::Io { context, source }
    }
}

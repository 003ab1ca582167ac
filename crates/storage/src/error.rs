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
    /// The write's group could not be committed; nothing of it was applied.
    #[error("the write was not applied: {reason}")]
    CommitFailed {
        /// Why the group failed.
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
            StorageError::ShuttingDown => ErrorCode::Unavailable,
            StorageError::DataDirInUse { .. } | StorageError::DataDir { .. } => ErrorCode::FailedPrecondition,
            StorageError::Corrupt(_)
            | StorageError::Engine(_)
            | StorageError::CommitFailed { .. }
            | StorageError::Io { .. } => ErrorCode::Internal,
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

//! The one mapping from shared error codes to gRPC statuses.

use consensusdb_storage::StorageError;
use consensusdb_types::{ErrorCode, FieldError};
use tonic::{Code, Status};

/// Trailer naming the request field at fault, for clients that want it
/// without parsing the message.
pub const FIELD_METADATA: &str = "x-consensusdb-field";

/// The gRPC code of a shared error code.
pub fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Internal => Code::Internal,
    }
}

/// The status for a storage error. Internal errors are logged here, once.
pub fn from_storage(error: StorageError) -> Status {
    let code = error.code();
    if code == ErrorCode::Internal {
        tracing::error!(%error, "internal error serving a request");
    }
    with_field(Status::new(grpc_code(code), error.to_string()), error.field())
}

/// The status for bad input.
pub fn from_field(error: FieldError) -> Status {
    with_field(Status::invalid_argument(error.to_string()), Some(&error.field))
}

fn with_field(mut status: Status, field: Option<&str>) -> Status {
    if let Some(value) = field.and_then(|f| f.parse().ok()) {
        status.metadata_mut().insert(FIELD_METADATA, value);
    }
    status
}

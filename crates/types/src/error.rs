//! The error codes shared by every layer and interface.
//!
//! Each crate has its own error enum; each of those maps to one
//! [`ErrorCode`], and each code maps once to a gRPC status (in the API crate)
//! and once to an HTTP status (here).

use std::fmt;

/// The outcome class of a failed request, independent of the transport.
///
/// Non-exhaustive: codes may be added, so SDK users' matches need a
/// fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed; the message names the field.
    InvalidArgument,
    /// The record does not exist (or is removed or expired).
    NotFound,
    /// Put-if-absent found a live record.
    AlreadyExists,
    /// The caller's deadline passed before the write was given a seq.
    DeadlineExceeded,
    /// The node cannot serve now (shutting down, overloaded writer queue).
    Unavailable,
    /// A requested position no longer exists (for example a purged seq).
    OutOfRange,
    /// The request is valid but the state does not allow it.
    FailedPrecondition,
    /// The request is larger than the node takes (a message or body over
    /// its size limit); sending it again will not help.
    ResourceExhausted,
    /// No credential, or one the node does not accept: present a client
    /// certificate from the cluster CA.
    Unauthenticated,
    /// The caller is known but not allowed this operation.
    PermissionDenied,
    /// A bug or a damaged data directory. Never used for bad input.
    Internal,
    /// Stored data cannot be read back: a sealed value that fails its
    /// authentication (altered on disk) or whose key this node lacks. The
    /// message names the record; no bytes are returned.
    DataLoss,
}

impl ErrorCode {
    /// The HTTP status the JSON gateway answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument | ErrorCode::OutOfRange => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists => 409,
            ErrorCode::FailedPrecondition => 412,
            ErrorCode::ResourceExhausted => 413,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::DeadlineExceeded => 504,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal | ErrorCode::DataLoss => 500,
        }
    }

    /// A stable, machine-readable name (`INVALID_ARGUMENT`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::OutOfRange => "OUT_OF_RANGE",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::DataLoss => "DATA_LOSS",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `parent.name`, or `name` at the top level: the path of a request field.
pub fn field_path(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") }
}

/// Bad input, naming the field that was wrong (`key.major_key`,
/// `records[3].ttl_ms`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The request field, in the wire message's own spelling.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error for a field nested under `parent` (`records[2]` + `key.major_key`).
    pub fn within(self, parent: &str) -> Self {
        Self { field: format!("{parent}.{}", self.field), message: self.message }
    }
}

/// An error and its causes on one line (`outer: inner: root`): transport
/// errors such as tonic's say only "transport error" at the top.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_never_a_500() {
        assert_eq!(ErrorCode::InvalidArgument.http_status(), 400);
        assert_eq!(ErrorCode::NotFound.http_status(), 404);
        assert_eq!(ErrorCode::AlreadyExists.http_status(), 409);
        assert_eq!(ErrorCode::Unavailable.http_status(), 503);
        assert_eq!(ErrorCode::Internal.http_status(), 500);
        assert_eq!(ErrorCode::InvalidArgument.to_string(), "INVALID_ARGUMENT");
    }

    #[test]
    fn field_paths_join_with_dots_except_at_the_top() {
        assert_eq!(field_path("", "ttl_ms"), "ttl_ms");
        assert_eq!(field_path("records[1]", "key"), "records[1].key");
    }

    #[test]
    fn nested_fields_keep_their_path() {
        let error = FieldError::new("key.major_key", "must not be empty").within("records[2]");
        assert_eq!(error.field, "records[2].key.major_key");
        assert_eq!(error.to_string(), "records[2].key.major_key: must not be empty");
    }
}

//! The error answers each kind of route may give, declared once for the
//! OpenAPI document (a client generator, and the conformance run in CI,
//! hold the gateway to them).

use utoipa::IntoResponses;

use super::error::ErrorBody;

/// Errors of a read.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only the OpenAPI document names these.
pub(crate) enum ReadErrors {
    /// A parameter is invalid; `field` names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No live record there (or no such path: a path segment is empty).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The node is shutting down or overloaded; try another node or later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Errors of a scan or page read (which answer an empty page, not 404).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum ListErrors {
    /// A parameter is invalid; `field` names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such path: a path segment is empty.
    #[response(status = 404)]
    NoSuchPath(ErrorBody),
    /// The node is shutting down or overloaded.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Errors of a write with a JSON body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum WriteErrors {
    /// A parameter or body field is invalid; `field` names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such path: a path segment is empty.
    #[response(status = 404)]
    NoSuchPath(ErrorBody),
    /// `if_absent` was set and a live record is at the key.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// `write_concern` asks more peers than this node knows; nothing was
    /// written.
    #[response(status = 412)]
    TooFewPeers(ErrorBody),
    /// The body is over the gateway's limit (`http.max_body_bytes`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not sent as `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Writes are closed (bootstrap, storage failure, shutdown) or the
    /// writer is overloaded.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `timeout_ms` passed, or not enough peers confirmed the write
    /// concern in time; the message says how many did.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

/// Errors of a touch (a JSON body, and a record that must exist).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum TouchErrors {
    /// A parameter or body field is invalid.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No live record there (or no such path: a path segment is empty).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The body is over the gateway's limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not sent as `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Writes are closed or the writer is overloaded.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `timeout_ms` passed.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

/// Errors of a removal.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum RemoveErrors {
    /// A parameter is invalid.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such path: a path segment is empty.
    #[response(status = 404)]
    NoSuchPath(ErrorBody),
    /// Writes are closed or the writer is overloaded.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `timeout_ms` passed.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

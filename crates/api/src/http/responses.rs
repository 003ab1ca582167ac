//! The error answers each kind of route may give, declared once for the
//! OpenAPI document (a client generator, and the conformance run in CI,
//! hold the gateway to them).
//!
//! Every route may also answer [`EdgeErrors`]: those come before routing,
//! whatever the route, so the document adds them to every operation
//! (see `openapi::with_edge_errors`).

use utoipa::IntoResponses;

use super::error::ErrorBody;

/// Answers given before routing (`hosts`, `limits`), whatever the route. An
/// operation that declares one of these codes itself keeps its own.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum EdgeErrors {
    /// A body declared over the gateway's limit, refused before it is read.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The path and query are over 8 KiB.
    #[response(status = 414)]
    UriTooLong(ErrorBody),
    /// The `Host` is not a name this gateway answers to (an IP address,
    /// `localhost`, or one of `http.allowed_hosts`).
    #[response(status = 421)]
    MisdirectedRequest(ErrorBody),
    /// Over 100 header fields, or 64 KiB of headers.
    #[response(status = 431)]
    HeadersTooLarge(ErrorBody),
}

/// Answers of the authentication layer, on every route but the open ones
/// (`/healthz`, `/readyz`, `/openapi.json`, `/docs`).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum RefusalErrors {
    /// No credential, or a bearer token that is unknown, revoked or
    /// malformed.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// A caller without the grant the route needs on its tenant (or the
    /// `monitor` role, for status and metrics); the message names both.
    #[response(status = 403)]
    PermissionDenied(ErrorBody),
}

/// Errors of a read.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only the OpenAPI document names these.
pub(crate) enum ReadErrors {
    /// A parameter is invalid; `field` names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No live record there.
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
    /// No route has this path.
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
    /// No route has this path.
    #[response(status = 404)]
    NoSuchPath(ErrorBody),
    /// `if_absent` was set and a live record is at the key.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// Nothing was written: `write_concern` asks more peers than this node
    /// knows, or a key holds a version stamped later than this node's
    /// clock (a node whose clock runs ahead wrote it).
    #[response(status = 412)]
    Refused(ErrorBody),
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
    /// No live record there.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Nothing was written: the key holds a version stamped later than
    /// this node's clock (a node whose clock runs ahead wrote it).
    #[response(status = 412)]
    Superseded(ErrorBody),
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
    /// No route has this path.
    #[response(status = 404)]
    NoSuchPath(ErrorBody),
    /// Nothing was written: the key holds a version stamped later than
    /// this node's clock (a node whose clock runs ahead wrote it).
    #[response(status = 412)]
    Superseded(ErrorBody),
    /// Writes are closed or the writer is overloaded.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `timeout_ms` passed.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

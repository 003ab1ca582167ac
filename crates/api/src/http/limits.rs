//! Limits on a request's shape, checked before routing so every refusal is
//! JSON like any other error, and a body that is too large is refused on
//! its `Content-Length` at once, not after it has been read.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use consensusdb_types::ErrorCode;

use super::Gateway;
use super::error::HttpError;

/// Longest request target (path and query) answered; longer gets 414.
pub(crate) const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Most header fields answered; more gets 431.
pub(crate) const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values answered; more gets 431.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuses requests over the limits with a JSON error naming what is too
/// large; lets the rest through.
pub(crate) async fn check(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    match refusal(&request, gateway.max_body_bytes) {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    }
}

fn refusal(request: &Request, max_body_bytes: usize) -> Option<HttpError> {
    let target = request.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_TARGET_BYTES {
        return Some(HttpError::with_status(
            StatusCode::URI_TOO_LONG,
            ErrorCode::InvalidArgument,
            format!("uri: the path and query are {target} bytes, over the limit of {MAX_TARGET_BYTES}"),
            Some("uri".into()),
        ));
    }
    let headers = request.headers();
    let header_bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Some(HttpError::with_status(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::InvalidArgument,
            format!(
                "headers: {} fields of {header_bytes} bytes, over the limit of {MAX_HEADERS} fields or \
                 {MAX_HEADER_BYTES} bytes",
                headers.len()
            ),
            Some("headers".into()),
        ));
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_body_bytes as u64) {
        return Some(body_too_large(max_body_bytes));
    }
    None
}

/// The answer to a body over the gateway's limit.
pub(crate) fn body_too_large(max_body_bytes: usize) -> HttpError {
    HttpError::with_status(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ResourceExhausted,
        format!(
            "body: over the gateway's limit of {max_body_bytes} bytes (http.max_body_bytes); split it, \
             for example into several batches"
        ),
        Some("body".into()),
    )
}

//! The gateway's error answer: the HTTP status of the shared error code and
//! a JSON body `{code, message, field}`, the same three facts a gRPC status
//! carries (code, message, `x-consensusdb-field` trailer).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use consensusdb_types::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::records_api::ServiceError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The shared code's stable name (`INVALID_ARGUMENT`, `NOT_FOUND`, ...).
    pub code: &'static str,
    /// What was wrong; starts with the field when there is one.
    pub message: String,
    /// The request field at fault, or `null`.
    pub field: Option<String>,
    /// Only on the `error` line of a scan the node gave up on part way:
    /// pass it as `page_token` to continue after the last record sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

impl ErrorBody {
    /// The same error, with the page token that resumes the scan it ended.
    #[must_use]
    pub fn resumable_at(mut self, next_page_token: Option<String>) -> Self {
        self.next_page_token = next_page_token;
        self
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    body: ErrorBody,
}

impl HttpError {
    /// An answer with the HTTP status of `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>, field: Option<String>) -> Self {
        Self::with_status(http_status(code), code, message, field)
    }

    /// An answer whose HTTP status is more precise than the shared code's,
    /// for what only HTTP has (an unknown path, a wrong method).
    pub fn with_status(
        status: StatusCode,
        code: ErrorCode,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        Self {
            status,
            body: ErrorBody { code: code.as_str(), message: message.into(), field, next_page_token: None },
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

/// The HTTP status of a shared code (the mapping lives with the codes).
fn http_status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<ServiceError> for HttpError {
    fn from(error: ServiceError) -> Self {
        Self::new(error.code, error.message, error.field)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_types::FieldError;

    #[test]
    fn service_errors_keep_code_message_and_field() {
        let error = HttpError::from(ServiceError::from(FieldError::new("limit", "must be at least 1")));
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            serde_json::to_value(error.body()).ok(),
            Some(serde_json::json!({
                "code": "INVALID_ARGUMENT",
                "message": "limit: must be at least 1",
                "field": "limit",
            }))
        );
    }

    #[test]
    fn each_shared_code_has_its_http_status() {
        let status = |code| HttpError::new(code, "m", None).status().as_u16();
        assert_eq!(status(ErrorCode::NotFound), 404);
        assert_eq!(status(ErrorCode::AlreadyExists), 409);
        assert_eq!(status(ErrorCode::Unavailable), 503);
        assert_eq!(status(ErrorCode::DeadlineExceeded), 504);
        assert_eq!(status(ErrorCode::Internal), 500);
    }
}

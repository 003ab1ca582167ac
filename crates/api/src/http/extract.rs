//! Request extractors whose every rejection is an [`HttpError`] naming the
//! field at fault: axum's own answer with plain text, without the field.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use consensusdb_types::ErrorCode;
use serde::de::DeserializeOwned;

use super::Gateway;
use super::error::HttpError;

fn invalid(field: Option<String>, message: String) -> HttpError {
    HttpError::new(ErrorCode::InvalidArgument, message, field)
}

/// A serde error at `path` (`.` for the whole input) as an answer.
fn at_path(path: &serde_path_to_error::Path, whole: &str, message: impl std::fmt::Display) -> HttpError {
    let path = path.to_string();
    let field = if path == "." { whole.to_string() } else { path };
    invalid(Some(field.clone()), format!("{field}: {message}"))
}

/// A JSON body. Needs `Content-Type: application/json`, at most the
/// gateway's body limit, and no unknown fields.
pub(crate) struct JsonBody<T>(pub T);

fn is_json(parts: &axum::http::HeaderMap) -> bool {
    let Some(value) = parts.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: DeserializeOwned> FromRequest<Gateway> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, gateway: &Gateway) -> Result<Self, HttpError> {
        if !is_json(request.headers()) {
            return Err(HttpError::with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::InvalidArgument,
                "content-type: the body must be JSON, sent with Content-Type: application/json",
                Some("content-type".into()),
            ));
        }
        let bytes = Bytes::from_request(request, gateway)
            .await
            .map_err(|rejection| body_error(rejection, gateway))?;
        decode_json(&bytes).map(JsonBody)
    }
}

fn body_error(rejection: BytesRejection, gateway: &Gateway) -> HttpError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return super::limits::body_too_large(gateway.max_body_bytes);
    }
    invalid(Some("body".into()), format!("body: could not be read: {}", rejection.body_text()))
}

/// Decodes JSON, naming the field at fault (`records[2].value`).
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().clone();
        let inner = error.into_inner();
        if inner.is_data() {
            at_path(&path, "body", inner)
        } else {
            invalid(Some("body".into()), format!("body: is not valid JSON: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|error| invalid(Some("body".into()), format!("body: is not valid JSON: {error}")))?;
    Ok(value)
}

/// Query parameters, with unknown ones refused (a misspelt `limt` would
/// otherwise be ignored silently).
pub(crate) struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(QueryParams).map_err(|error| {
            let path = error.path().clone();
            at_path(&path, "query", error.into_inner())
        })
    }
}

/// Path parameters, percent-decoded.
pub(crate) struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParams(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                use axum::extract::path::ErrorKind;
                let field = match error.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::DeserializeError { key, .. } => Some(key.clone()),
                    _ => None,
                };
                let message = match &field {
                    Some(key) => format!("{key}: {}", error.body_text()),
                    None => error.body_text(),
                };
                Err(invalid(field, message))
            }
            Err(other) => Err(invalid(None, other.body_text())),
        }
    }
}

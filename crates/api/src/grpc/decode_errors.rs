//! Bad gRPC input answered as bad input, as the gateway answers it.
//!
//! tonic decodes a request before any handler sees it and answers what
//! does not decode itself: a message that is not valid protobuf (or has a
//! `string` field that is not UTF-8) with `INTERNAL`, one over the size
//! limit with `OUT_OF_RANGE`. Neither is the server's fault, and neither
//! names the field. This layer rewrites those answers: `INVALID_ARGUMENT`
//! with the field path prost reports (in the message and the field
//! trailer), and `RESOURCE_EXHAUSTED` for size.

use consensusdb_types::ErrorCode;
use tonic::{Code, Status};

use crate::grpc::status::from_service;
use crate::records_api::ServiceError;

/// What tonic's prost codec prefixes its decode errors with.
const DECODE_ERROR: &str = "failed to decode Protobuf message: ";
/// What tonic's decoder says of a message over the size limit.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// Rewrites a response whose status says the request did not decode.
pub fn rewrite<B>(response: http::Response<B>) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else { return response };
    let Some(better) = better_status(&status) else { return response };
    let (mut parts, body) = response.into_parts();
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        parts.headers.remove(name);
    }
    let (better_parts, _) = better.into_http::<()>().into_parts();
    parts.headers.extend(better_parts.headers);
    http::Response::from_parts(parts, body)
}

/// The status a decode failure deserves, if `status` is one.
fn better_status(status: &Status) -> Option<Status> {
    match status.code() {
        Code::Internal => {
            let detail = status.message().strip_prefix(DECODE_ERROR)?;
            let (field, reason) = field_and_reason(detail);
            let field = field.unwrap_or_else(|| "request".to_string());
            Some(from_service(ServiceError {
                code: ErrorCode::InvalidArgument,
                message: format!("{field}: does not decode: {reason}"),
                field: Some(field),
            }))
        }
        Code::OutOfRange if status.message().starts_with(TOO_LARGE) => Some(from_service(ServiceError {
            code: ErrorCode::ResourceExhausted,
            message: format!("request: {}", status.message().trim_start_matches("Error, ")),
            field: Some("request".into()),
        })),
        _ => None,
    }
}

/// Splits prost's `Inner.field: Outer.field: description` into the field
/// path from the request down (`outer_field.inner_field`) and the
/// description.
fn field_and_reason(detail: &str) -> (Option<String>, &str) {
    let mut fields = Vec::new();
    let mut rest = detail;
    while let Some((segment, after)) = rest.split_once(": ") {
        let Some((message, field)) = segment.split_once('.') else { break };
        let is_name = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name(message) || !is_name(field) {
            break;
        }
        fields.push(field);
        rest = after;
    }
    fields.reverse();
    ((!fields.is_empty()).then(|| fields.join(".")), rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::FIELD_METADATA;

    #[test]
    fn prost_field_stacks_become_request_paths() {
        let detail = "Key.major_key: PutRequest.key: invalid string value: data is not UTF-8 encoded";
        assert_eq!(
            field_and_reason(detail),
            (Some("key.major_key".into()), "invalid string value: data is not UTF-8 encoded")
        );
        assert_eq!(field_and_reason("buffer underflow"), (None, "buffer underflow"));
    }

    #[test]
    fn decode_errors_become_invalid_argument_with_the_field() {
        let status = Status::internal(format!("{DECODE_ERROR}Key.region: PutRequest.key: invalid wire type"));
        let better = better_status(&status).expect("rewritten");
        assert_eq!(better.code(), Code::InvalidArgument);
        assert_eq!(better.message(), "key.region: does not decode: invalid wire type");
        assert_eq!(better.metadata().get(FIELD_METADATA).and_then(|v| v.to_str().ok()), Some("key.region"));
        let garbage = Status::internal(format!("{DECODE_ERROR}buffer underflow"));
        assert_eq!(
            better_status(&garbage).expect("rewritten").message(),
            "request: does not decode: buffer underflow"
        );
    }

    #[test]
    fn oversized_messages_become_resource_exhausted_and_other_errors_stay() {
        let status =
            Status::out_of_range(format!("{TOO_LARGE}: found 5000000 bytes, the limit is: 4194304 bytes"));
        assert_eq!(better_status(&status).expect("rewritten").code(), Code::ResourceExhausted);
        assert!(better_status(&Status::internal("stored data is damaged")).is_none());
        assert!(better_status(&Status::out_of_range("purged")).is_none());
    }

    #[test]
    fn a_rewritten_response_carries_only_the_new_status() {
        let response =
            Status::internal(format!("{DECODE_ERROR}PutRequest.key: invalid wire type")).into_http::<()>();
        let rewritten = rewrite(response);
        let status = Status::from_header_map(rewritten.headers()).expect("a status");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(rewritten.headers().get_all("grpc-status").iter().count(), 1);
    }
}

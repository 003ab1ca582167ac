//! The one mapping between shared error codes and gRPC status codes, used by
//! the server to answer and by the SDK to read answers back.

use consensusdb_types::{ErrorCode, Refusal};
use tonic::{Code, Status};

/// Trailer naming the request field at fault, for clients that want it
/// without parsing the message.
pub const FIELD_METADATA: &str = "x-consensusdb-field";

/// Trailer (binary) of a scan that was cut short: the page token that
/// continues right after the last record sent.
pub const PAGE_TOKEN_METADATA: &str = "x-consensusdb-page-token-bin";

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
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::Internal => Code::Internal,
        ErrorCode::DataLoss => Code::DataLoss,
        // ErrorCode is non-exhaustive for the SDK's users; every code it
        // has is listed above (the round-trip test below checks each one).
        _ => Code::Internal,
    }
}

/// The status of a caller refused: `UNAUTHENTICATED` without a credential,
/// `PERMISSION_DENIED` for a known caller not allowed.
pub fn refusal_status(refusal: &Refusal) -> Status {
    match refusal {
        Refusal::Unauthenticated(message) => Status::unauthenticated(message.clone()),
        Refusal::PermissionDenied(message) => Status::permission_denied(message.clone()),
    }
}

/// The shared error code of a gRPC status code.
///
/// The server only sends codes of [`grpc_code`], which this inverts. Codes
/// that come from the transport or a proxy map to their nearest meaning:
/// a cancelled or aborted call to `Unavailable` (worth retrying
/// elsewhere), anything else to `Internal`.
pub fn error_code(code: Code) -> ErrorCode {
    match code {
        Code::InvalidArgument => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::NotFound,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
        Code::Unavailable | Code::Cancelled | Code::Aborted => ErrorCode::Unavailable,
        Code::ResourceExhausted => ErrorCode::ResourceExhausted,
        Code::OutOfRange => ErrorCode::OutOfRange,
        Code::FailedPrecondition => ErrorCode::FailedPrecondition,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::DataLoss => ErrorCode::DataLoss,
        Code::Ok | Code::Unknown | Code::Unimplemented | Code::Internal => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Unavailable,
        ErrorCode::OutOfRange,
        ErrorCode::FailedPrecondition,
        ErrorCode::ResourceExhausted,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::Internal,
        ErrorCode::DataLoss,
    ];

    #[test]
    fn every_shared_code_survives_the_round_trip_through_grpc() {
        for code in ALL {
            assert_eq!(error_code(grpc_code(code)), code, "{code}");
        }
    }

    #[test]
    fn transport_codes_map_to_their_nearest_meaning() {
        assert_eq!(error_code(Code::Cancelled), ErrorCode::Unavailable);
        assert_eq!(error_code(Code::Unimplemented), ErrorCode::Internal);
    }
}

//! Storage and input errors as gRPC statuses, with the field trailer. (The
//! code mapping itself lives in `consensusdb-proto`, shared with the SDK.)

pub use consensusdb_proto::status::{FIELD_METADATA, PAGE_TOKEN_METADATA, grpc_code};
use consensusdb_storage::StorageError;
use consensusdb_types::FieldError;
use tonic::Status;

use crate::records_api::ServiceError;

/// The status for a failed operation of the shared layer.
pub fn from_service(error: ServiceError) -> Status {
    with_field(Status::new(grpc_code(error.code), error.message), error.field.as_deref())
}

/// The status for a storage error (logged once if internal).
pub fn from_storage(error: StorageError) -> Status {
    from_service(error.into())
}

/// The status that ends a scan: for a scan cut short, with the page token
/// that resumes after the last record sent, in [`PAGE_TOKEN_METADATA`].
pub fn scan_error(error: StorageError) -> Status {
    let token = match &error {
        StorageError::ScanCutShort { resume_token, .. } => resume_token.clone(),
        _ => None,
    };
    let mut status = from_storage(error);
    if let Some(token) = token {
        status
            .metadata_mut()
            .insert_bin(PAGE_TOKEN_METADATA, tonic::metadata::MetadataValue::from_bytes(&token));
    }
    status
}

/// The status for bad input.
pub fn from_field(error: FieldError) -> Status {
    from_service(error.into())
}

fn with_field(mut status: Status, field: Option<&str>) -> Status {
    if let Some(value) = field.and_then(|f| f.parse().ok()) {
        status.metadata_mut().insert(FIELD_METADATA, value);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn storage_errors_map_to_their_grpc_codes_with_the_field() {
        let status = from_storage(StorageError::AlreadyExists { field: "records[1].key".into() });
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(
            status.metadata().get(FIELD_METADATA).and_then(|v| v.to_str().ok()),
            Some("records[1].key")
        );
        assert_eq!(from_storage(StorageError::ShuttingDown).code(), Code::Unavailable);
        assert_eq!(from_storage(StorageError::Busy { what: "scans".into() }).code(), Code::Unavailable);
        assert_eq!(from_storage(StorageError::DeadlineExceeded).code(), Code::DeadlineExceeded);
        let status = from_field(FieldError::new("limit", "must be between 1 and 10000, got 0"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "limit: must be between 1 and 10000, got 0");
    }
}

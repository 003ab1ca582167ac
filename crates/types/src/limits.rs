//! Size and count limits on client input.
//!
//! Every limit stays well under the 4 MiB gRPC message limit, so a request
//! that passes validation always fits in one message, and a response chunk
//! never has to be truncated.

use crate::FieldError;

/// gRPC's default maximum decoded message size.
pub const GRPC_MESSAGE_LIMIT: usize = 4 * 1024 * 1024;

/// Room kept for keys, heads and framing inside one message.
const MESSAGE_OVERHEAD: usize = 256 * 1024;

/// The most payload bytes any limit may allow: a request or response chunk
/// within it always fits in one gRPC message. Also the hard cap on
/// decompressed values, so lowering `max_value_bytes` later never makes
/// older, larger values unreadable.
pub const MAX_PAYLOAD_BYTES: usize = GRPC_MESSAGE_LIMIT - MESSAGE_OVERHEAD;

/// The latest expiry a record may have: the last millisecond of the year
/// 9999, in Unix milliseconds. Far below 2^53, so an expiry is exact in
/// every JSON reader (JavaScript numbers lose integers above 2^53).
pub const MAX_EXPIRY_MS: u64 = 253_402_300_799_999;

/// The configurable limits on client requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields, default)
)]
pub struct Limits {
    /// Maximum bytes of one key component (major, region or minor).
    pub max_component_bytes: usize,
    /// Maximum bytes of one value, before compression.
    pub max_value_bytes: usize,
    /// Maximum records in one batch put.
    pub max_batch_records: usize,
    /// Maximum bytes of all keys and values in one batch put.
    pub max_batch_bytes: usize,
    /// Maximum `limit` of a range read or scan page.
    pub max_read_limit: u32,
    /// Most bytes of one range page or streamed scan chunk. A page is cut
    /// before the record that would pass it, so it holds at least one record
    /// and never more than `max(page_bytes, one record)`.
    pub page_bytes: usize,
    /// How far in the future a client TimeUUID may be, in milliseconds.
    pub max_future_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_component_bytes: 1024,
            max_value_bytes: 1024 * 1024,
            max_batch_records: 1000,
            max_batch_bytes: 3 * 1024 * 1024,
            max_read_limit: 10_000,
            page_bytes: 1024 * 1024,
            max_future_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl Limits {
    /// Checks that every limit is positive and that requests and response
    /// chunks within them fit in one gRPC message. `field_prefix` names the
    /// configuration section in errors.
    pub fn validate(&self, field_prefix: &str) -> Result<(), FieldError> {
        let max_payload = MAX_PAYLOAD_BYTES;
        let field = |name: &str| format!("{field_prefix}.{name}");
        let positive = [
            ("max_component_bytes", self.max_component_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_batch_records", self.max_batch_records),
            ("max_batch_bytes", self.max_batch_bytes),
            ("max_read_limit", self.max_read_limit as usize),
            ("page_bytes", self.page_bytes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(FieldError::new(field(name), "must be greater than 0"));
            }
        }
        if self.max_component_bytes > 64 * 1024 {
            return Err(FieldError::new(field("max_component_bytes"), "must be at most 65536"));
        }
        let bounded = [
            ("max_value_bytes", self.max_value_bytes),
            ("max_batch_bytes", self.max_batch_bytes),
            ("page_bytes", self.page_bytes),
        ];
        for (name, value) in bounded {
            if value > max_payload {
                return Err(FieldError::new(
                    field(name),
                    format!("must be at most {max_payload} bytes to fit in one gRPC message"),
                ));
            }
        }
        if self.max_value_bytes > self.max_batch_bytes {
            return Err(FieldError::new(field("max_value_bytes"), "must not exceed max_batch_bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Limits::default().validate("limits").expect("defaults valid");
    }

    #[test]
    fn oversized_value_limit_is_rejected_by_name() {
        let limits = Limits { max_value_bytes: GRPC_MESSAGE_LIMIT, ..Limits::default() };
        let err = limits.validate("limits").unwrap_err();
        assert_eq!(err.field, "limits.max_value_bytes");
    }

    #[test]
    fn zero_limit_is_rejected_by_name() {
        let limits = Limits { max_read_limit: 0, ..Limits::default() };
        assert_eq!(limits.validate("limits").unwrap_err().field, "limits.max_read_limit");
    }
}

//! Checks of client input against the configured [`Limits`]. Every error
//! names the request field, as spelled in the wire messages.

use std::collections::HashMap;

use consensusdb_types::error::field_path;
use consensusdb_types::limits::MAX_EXPIRY_MS;
use consensusdb_types::{Compression, FieldError, Limits, RecordKey};

use crate::PutRecord;

/// Checks one key; `prefix` names the message holding it (`key`, `records[2].key`).
pub(crate) fn key(key: &RecordKey, limits: &Limits, prefix: &str) -> Result<(), FieldError> {
    key.validate(limits).map_err(|e| e.within(prefix))
}

/// Checks that a client TimeUUID is not beyond the future bound.
pub(crate) fn not_in_future(
    key: &RecordKey,
    limits: &Limits,
    now_ms: u64,
    prefix: &str,
) -> Result<(), FieldError> {
    let Some(time) = key.time else { return Ok(()) };
    let ahead = time.unix_ms().saturating_sub(i64::try_from(now_ms).unwrap_or(i64::MAX));
    if ahead > 0 && ahead.unsigned_abs() > limits.max_future_ms {
        return Err(FieldError::new(
            field_path(prefix, "time_uuid"),
            format!("is {ahead} ms in the future, beyond the limit of {} ms", limits.max_future_ms),
        ));
    }
    Ok(())
}

/// Checks one record of a put; `prefix` is empty for a single put.
/// Returns the record's absolute expiry.
pub(crate) fn put_record(
    record: &PutRecord,
    limits: &Limits,
    now_ms: u64,
    prefix: &str,
) -> Result<Option<u64>, FieldError> {
    key(&record.key, limits, &field_path(prefix, "key"))?;
    if record.value.len() > limits.max_value_bytes {
        return Err(FieldError::new(
            field_path(prefix, "value"),
            format!("is {} bytes, over the limit of {} bytes", record.value.len(), limits.max_value_bytes),
        ));
    }
    if record.client_key.is_some() && record.compression != Compression::None {
        return Err(FieldError::new(
            field_path(prefix, "compression"),
            "must be NONE for a client-encrypted value: the client compresses before it encrypts, and \
             ciphertext does not compress",
        ));
    }
    expiry(record.ttl_ms, now_ms, prefix)
}

/// The absolute expiry of a TTL. `Some(0)` would write a record that is
/// born expired, so it is refused (`None` means no expiry), as are TTLs that
/// overflow.
pub(crate) fn expiry(ttl_ms: Option<u64>, now_ms: u64, prefix: &str) -> Result<Option<u64>, FieldError> {
    let name = field_path(prefix, "ttl_ms");
    match ttl_ms {
        None => Ok(None),
        Some(0) => Err(FieldError::new(name, "must be positive; leave it unset for no expiry")),
        Some(ttl) => match now_ms.checked_add(ttl) {
            Some(expiry) if expiry <= MAX_EXPIRY_MS => Ok(Some(expiry)),
            _ => Err(FieldError::new(
                name,
                format!(
                    "{ttl} would expire after the year 9999; at most {} now",
                    MAX_EXPIRY_MS.saturating_sub(now_ms)
                ),
            )),
        },
    }
}

/// Bytes a record takes in a batch: its key components, their framing and its value.
fn record_bytes(record: &PutRecord) -> usize {
    let row = &record.key.row;
    row.major.len() + row.region.len() + row.minor.len() + 32 + record.value.len()
}

/// Checks the shape of a batch: size, count and duplicate keys.
pub(crate) fn batch(records: &[PutRecord], limits: &Limits) -> Result<(), FieldError> {
    if records.is_empty() {
        return Err(FieldError::new("records", "must not be empty"));
    }
    if records.len() > limits.max_batch_records {
        return Err(FieldError::new(
            "records",
            format!("has {} records, over the limit of {}", records.len(), limits.max_batch_records),
        ));
    }
    let total: usize = records.iter().map(record_bytes).sum();
    if total > limits.max_batch_bytes {
        return Err(FieldError::new(
            "records",
            format!(
                "keys and values total {total} bytes, over the limit of {} bytes",
                limits.max_batch_bytes
            ),
        ));
    }
    let mut seen = HashMap::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        if let Some(first) = seen.insert(&record.key, index) {
            return Err(FieldError::new(
                format!("records[{index}].key"),
                format!("is the same key as records[{first}]; a batch writes each key once"),
            ));
        }
    }
    Ok(())
}

/// Checks a read `limit`.
pub(crate) fn read_limit(limit: u32, limits: &Limits) -> Result<usize, FieldError> {
    if limit == 0 || limit > limits.max_read_limit {
        return Err(FieldError::new(
            "limit",
            format!("must be between 1 and {}, got {limit}", limits.max_read_limit),
        ));
    }
    Ok(limit as usize)
}

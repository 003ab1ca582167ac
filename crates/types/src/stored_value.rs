//! The entry of the `values` column family: a record's stored value bytes,
//! prefixed with its expiry so a compaction filter can drop expired values
//! without looking up the head.
//!
//! Format 1: `format:u8 expires_at_ms:u64 (0 = never) value...`

use crate::wire::{DecodeError, Reader};

/// The current stored-value format byte.
pub const STORED_VALUE_FORMAT: u8 = 1;

/// Encodes a stored value.
pub fn encode(expires_at_ms: Option<u64>, stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + stored.len());
    encode_into(&mut out, expires_at_ms, stored);
    out
}

/// [`encode`] into `out`, replacing what it held: a writer staging many
/// values reuses one buffer instead of allocating one per value.
pub fn encode_into(out: &mut Vec<u8>, expires_at_ms: Option<u64>, stored: &[u8]) {
    out.clear();
    out.push(STORED_VALUE_FORMAT);
    out.extend_from_slice(&expires_at_ms.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(stored);
}

/// The stored bytes of an entry, after checking its format.
pub fn decode(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let mut reader = Reader::new(bytes, "stored value");
    let format = reader.u8()?;
    if format != STORED_VALUE_FORMAT {
        return Err(reader.error(format!("unknown stored value format {format}")));
    }
    reader.u64()?;
    Ok(reader.rest())
}

/// Whether an entry has expired at `now_ms`. Entries that cannot be decoded
/// are reported as not expired: a compaction filter must never delete what
/// it does not understand.
pub fn is_expired(bytes: &[u8], now_ms: u64) -> bool {
    let mut reader = Reader::new(bytes, "stored value");
    match (reader.u8(), reader.u64()) {
        (Ok(STORED_VALUE_FORMAT), Ok(at)) => at != 0 && at <= now_ms,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_bytes_round_trip() {
        let entry = encode(Some(100), b"v");
        assert_eq!(decode(&entry).unwrap(), b"v");
        assert!(is_expired(&entry, 100));
        assert!(!is_expired(&entry, 99));
        assert!(!is_expired(&encode(None, b"v"), u64::MAX));
        assert!(!is_expired(&[2, 0, 0, 0, 0, 0, 0, 0, 1], u64::MAX));
        assert!(decode(&[2]).is_err());
    }
}

//! Records going in (the [`Record`] builder) and coming out
//! ([`StoredRecord`]).

use std::time::Duration;

use consensusdb_proto::{convert, v1};
use consensusdb_types::{Compression, ErrorCode, FieldError, RecordKey};

use crate::error::{Error, Result};
use crate::head::Head;
use crate::keychain::{Keychain, Keychains};
use crate::retry::Replay;

/// A record to write: a key, a value and how to store it.
///
/// ```
/// use std::time::Duration;
/// use consensusdb_client::{Compression, Record, RecordKey, TimeUuid};
///
/// let key = RecordKey::builder().major("acme").region("ACCOUNT").minor("balance").timestamp(TimeUuid::now()).build();
/// let record = Record::new(key, "100.00")
///     .compression(Compression::Lz4)
///     .only_if_absent()
///     .ttl(Duration::from_secs(86_400))
///     .timeout(Duration::from_secs(2));
/// assert!(record.is_only_if_absent());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    key: RecordKey,
    value: Vec<u8>,
    compression: Compression,
    if_absent: bool,
    ttl: Option<Duration>,
    timeout: Option<Duration>,
    write_concern: u32,
    encrypt_with: Option<Keychain>,
}

impl Record {
    /// A record with no compression, no expiry, overwriting any version.
    pub fn new(key: RecordKey, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key,
            value: value.into(),
            compression: Compression::None,
            if_absent: false,
            ttl: None,
            timeout: None,
            write_concern: 0,
            encrypt_with: None,
        }
    }

    /// Encrypt the value on the client with `keychain` (which must be the
    /// record's tenant's): it is compressed with [`Record::compression`]
    /// first, then sealed with AES-256-GCM, and the node only ever sees
    /// the ciphertext. Reads open it with [`crate::Client::with_keychain`].
    pub fn encrypt(mut self, keychain: &Keychain) -> Self {
        self.encrypt_with = Some(keychain.clone());
        self
    }

    /// Compress the value with this codec on the node (kept raw when that
    /// would not make it smaller; the head says which was used). An
    /// encrypted record is compressed on the client, before encryption.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Fail with `ALREADY_EXISTS` if a live record is at the key.
    pub fn only_if_absent(mut self) -> Self {
        self.if_absent = true;
        self
    }

    /// Expire the record this long after it is written (at least 1 ms).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Give up after this long, retries included (instead of the client's
    /// default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Acknowledge only once `peers` other nodes have applied the write,
    /// within the timeout; otherwise the error (`DEADLINE_EXCEEDED`) says how
    /// many confirmed. The default, 0, acknowledges after the node's own
    /// synced commit: that survives a crash of the node's process, but not
    /// the loss of its disk before a peer has pulled the write.
    pub fn write_concern(mut self, peers: u32) -> Self {
        self.write_concern = peers;
        self
    }

    /// The key.
    pub fn key(&self) -> &RecordKey {
        &self.key
    }

    /// The value, uncompressed.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// Whether the write fails when a live record is at the key.
    pub fn is_only_if_absent(&self) -> bool {
        self.if_absent
    }

    pub(crate) fn request_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// A timed record is the same write however often it is sent; the
    /// untimed record of a row is not (see [`Replay`]).
    pub(crate) fn replay(&self) -> Replay {
        if self.key.time.is_some() { Replay::Safe } else { Replay::OnlyIfUnsent }
    }

    /// The wire request. `field` prefixes errors (`records[2]` in a batch).
    pub(crate) fn to_request(&self, field: &str) -> Result<v1::PutRequest> {
        let (value, compression, client_key_fingerprint) = match &self.encrypt_with {
            Some(keychain) => {
                let key_field = consensusdb_types::error::field_path(field, "key.major_key");
                let envelope = keychain.seal(&self.key, self.compression, &self.value, &key_field)?;
                (envelope, Compression::None, keychain.fingerprint().0.to_vec())
            }
            None => (self.value.clone(), self.compression, Vec::new()),
        };
        Ok(v1::PutRequest {
            key: Some(v1::Key::from(&self.key)),
            value,
            compression: v1::Compression::from(compression).into(),
            if_absent: self.if_absent,
            ttl_ms: ttl_ms(self.ttl, &consensusdb_types::error::field_path(field, "ttl"))?,
            write_concern: self.write_concern,
            client_key_fingerprint,
        })
    }
}

/// A TTL in whole milliseconds for the wire (0 = none), rounding up so a
/// short TTL never becomes "forever".
pub(crate) fn ttl_ms(ttl: Option<Duration>, field: &str) -> Result<i64> {
    let Some(ttl) = ttl else { return Ok(0) };
    if ttl.is_zero() {
        return Err(FieldError::new(field, "must be at least 1 ms (leave it unset for no expiry)").into());
    }
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    i64::try_from(ms).map_err(|_| FieldError::new(field, format!("{ttl:?} is too long")).into())
}

/// One stored version as a read returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredRecord {
    /// The full key.
    pub key: RecordKey,
    /// Stamp, seq, write time, expiry, stored size and codec.
    pub head: Head,
    /// The value: empty for head-only reads, as stored for raw reads
    /// (for a client-encrypted value, its envelope), otherwise
    /// decompressed and, if it was encrypted on the client, decrypted.
    pub value: Vec<u8>,
}

impl StoredRecord {
    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// A record from a read's answer, its value opened with `keychains`
    /// (`None` for a read of heads only or raw values, which opens none).
    pub(crate) fn from_wire(record: v1::Record, keychains: Option<&Keychains>) -> Result<Self> {
        let key = convert::record_key(record.key.as_ref(), "record.key").map_err(malformed)?;
        let head = convert::required(record.head.as_ref(), "record.head").map_err(malformed)?;
        let head = Head::try_from(head).map_err(malformed)?;
        let value = match keychains {
            Some(keychains) => keychains.open(&key, head.client_key, record.value)?,
            None => record.value,
        };
        Ok(Self { key, head, value })
    }
}

/// The answer to a batch put.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchAck {
    /// The seq of the batch's single log entry.
    pub seq: u64,
    /// One head per record, in request order.
    pub heads: Vec<Head>,
}

/// A response the SDK cannot read: a server bug or a version mismatch,
/// never the caller's fault.
pub(crate) fn malformed(error: FieldError) -> Error {
    Error::local(ErrorCode::Internal, format!("malformed response from the server: {error}"))
}

pub(crate) fn head_from_wire(head: Option<&v1::Head>) -> Result<Head> {
    Head::try_from(convert::required(head, "head").map_err(malformed)?).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_types::TimeUuid;

    fn key(time: Option<TimeUuid>) -> RecordKey {
        consensusdb_types::RowKey::new("t", "r", "m").at(time)
    }

    #[test]
    fn only_timed_records_are_replayed() {
        assert_eq!(Record::new(key(Some(TimeUuid::now())), "v").replay(), Replay::Safe);
        assert_eq!(Record::new(key(None), "v").replay(), Replay::OnlyIfUnsent);
    }

    #[test]
    fn ttl_rounds_up_to_whole_milliseconds_and_refuses_zero() {
        assert_eq!(ttl_ms(None, "ttl").unwrap(), 0);
        assert_eq!(ttl_ms(Some(Duration::from_micros(1)), "ttl").unwrap(), 1);
        assert_eq!(ttl_ms(Some(Duration::from_millis(1500)), "ttl").unwrap(), 1500);
        let error = Record::new(key(None), "v").ttl(Duration::ZERO).to_request("records[3]").unwrap_err();
        assert_eq!(error.field(), Some("records[3].ttl"));
        assert!(ttl_ms(Some(Duration::MAX), "ttl").is_err());
    }

    #[test]
    fn the_request_carries_every_setting() {
        let request = Record::new(key(None), "v")
            .compression(Compression::Snappy)
            .only_if_absent()
            .ttl(Duration::from_secs(2))
            .to_request("")
            .unwrap();
        assert_eq!(request.compression, v1::Compression::Snappy as i32);
        assert!(request.if_absent);
        assert_eq!(request.ttl_ms, 2000);
        assert_eq!(request.key.unwrap().major_key, "t");
    }
}

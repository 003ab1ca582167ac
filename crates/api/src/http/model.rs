//! The gateway's JSON shapes and their conversion to and from the domain
//! types of the records layer. The CLI prints records, heads and writes in
//! these same shapes (`RecordJson::from_parts`, `WriteJson`), so a record
//! looks the same from `curl` and from `consensusdb get`.
//!
//! - Key components are UTF-8 strings; with `key_encoding=base64` they are
//!   given as URL-safe base64 of their UTF-8 bytes instead (for components
//!   holding `/`, control characters or anything awkward in a URL).
//! - A TimeUUID is its canonical hyphenated string.
//! - A value is text or base64, as its `encoding` field says.
//! - A head's `hlc` is a decimal string: it exceeds 2^53, which JSON
//!   numbers do not carry exactly in most languages.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use consensusdb_storage::{PutRecord, Record};
use consensusdb_types::{Compression, FieldError, Head, KeyFingerprint, RecordKey, RowKey, Stamp, TimeUuid};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a value is written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueEncoding {
    /// UTF-8 text, as is.
    #[default]
    Utf8,
    /// Standard base64 (RFC 4648 section 4, with padding) of the bytes.
    Base64,
}

/// How values are returned: `auto` gives text when the value is valid
/// UTF-8 and base64 otherwise; `base64` always gives base64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueOutput {
    /// Text when possible.
    #[default]
    Auto,
    /// Always base64.
    Base64,
}

/// How key components are written in paths and bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyEncoding {
    /// UTF-8 text (percent-encoded in paths, as URLs require).
    #[default]
    Utf8,
    /// URL-safe base64 without padding (RFC 4648 section 5) of the UTF-8
    /// bytes.
    Base64,
}

/// Decodes one key component written with `encoding`; `field` names it in
/// errors.
pub(crate) fn key_component(text: String, encoding: KeyEncoding, field: &str) -> Result<String, FieldError> {
    match encoding {
        KeyEncoding::Utf8 => Ok(text),
        KeyEncoding::Base64 => {
            let bytes = URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|error| FieldError::new(field, format!("is not URL-safe base64: {error}")))?;
            String::from_utf8(bytes).map_err(|_| {
                FieldError::new(field, "must decode to UTF-8 text: key components are UTF-8 strings")
            })
        }
    }
}

/// Parses a canonical TimeUUID string; `field` names it in errors.
pub(crate) fn time_uuid(text: &str, field: &str) -> Result<TimeUuid, FieldError> {
    TimeUuid::parse(text, field)
}

/// Decodes a value written with `encoding`.
pub(crate) fn value_bytes(
    value: String,
    encoding: ValueEncoding,
    field: &str,
) -> Result<Vec<u8>, FieldError> {
    match encoding {
        ValueEncoding::Utf8 => Ok(value.into_bytes()),
        ValueEncoding::Base64 => {
            STANDARD.decode(value).map_err(|error| FieldError::new(field, format!("is not base64: {error}")))
        }
    }
}

/// A TTL as the gRPC API takes it (an `int64`), so both interfaces accept
/// the same range; `field` names it in errors.
pub(crate) fn ttl_ms(value: Option<u64>, field: &str) -> Result<Option<u64>, FieldError> {
    match value {
        Some(ttl) if i64::try_from(ttl).is_err() => {
            Err(FieldError::new(field, format!("must be at most {}, got {ttl}", i64::MAX)))
        }
        other => Ok(other),
    }
}

/// A page token as the gateway hands it out: URL-safe base64, opaque.
pub(crate) fn page_token_text(token: Option<Vec<u8>>) -> Option<String> {
    token.map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
}

/// A page token given back by a client.
pub(crate) fn page_token_bytes(token: Option<&str>) -> Result<Option<Vec<u8>>, FieldError> {
    token
        .filter(|text| !text.is_empty())
        .map(|text| {
            URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| FieldError::new("page_token", "is not a token this API handed out"))
        })
        .transpose()
}

/// The full key of a record in a body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// The tenant.
    #[schema(min_length = 1)]
    pub major_key: String,
    /// The region (table).
    #[schema(min_length = 1)]
    pub region: String,
    /// The entity.
    #[schema(min_length = 1)]
    pub minor_key: String,
    /// A TimeUUID (version 1 or 7); absent or null for the row's untimed
    /// record.
    #[serde(default)]
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[17][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
    )]
    pub time_uuid: Option<String>,
}

impl KeyBody {
    pub(crate) fn into_key(self, encoding: KeyEncoding, prefix: &str) -> Result<RecordKey, FieldError> {
        let field = |name: &str| format!("{prefix}.{name}");
        let row = RowKey::new(
            key_component(self.major_key, encoding, &field("major_key"))?,
            key_component(self.region, encoding, &field("region"))?,
            key_component(self.minor_key, encoding, &field("minor_key"))?,
        );
        let time = self.time_uuid.as_deref().map(|t| time_uuid(t, &field("time_uuid"))).transpose()?;
        Ok(row.at(time))
    }
}

/// A record to write.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    /// The value, written as `encoding` says.
    pub value: String,
    /// How `value` is written.
    #[serde(default)]
    pub encoding: ValueEncoding,
    /// The codec to store the value with; used only if it makes it smaller.
    #[serde(default)]
    pub compression: Compression,
    /// Fail with 409 if a live record is at the key (on this node).
    #[serde(default)]
    pub if_absent: bool,
    /// Time to live in milliseconds, at least 1; absent or null never
    /// expires.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub ttl_ms: Option<u64>,
    /// Answer only once this many peers have applied the write (within
    /// `timeout_ms`); 0 answers after the local synced commit.
    #[serde(default)]
    pub write_concern: u32,
    /// Set (16 hex digits) when `value` is ciphertext the client made with
    /// its own key: the key's fingerprint, kept in the head. `compression`
    /// must then be `none`.
    #[serde(default)]
    pub client_key_fingerprint: Option<String>,
}

impl PutBody {
    /// The record to write at `key`; errors name fields under `prefix`
    /// (empty for a top-level body).
    pub(crate) fn into_record(self, key: RecordKey, prefix: &str) -> Result<PutRecord, FieldError> {
        let field =
            |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        Ok(PutRecord {
            key,
            value: value_bytes(self.value, self.encoding, &field("value"))?,
            compression: self.compression,
            ttl_ms: ttl_ms(self.ttl_ms, &field("ttl_ms"))?,
            if_absent: self.if_absent,
            client_key: self
                .client_key_fingerprint
                .map(|hex| KeyFingerprint::from_hex(&hex, &field("client_key_fingerprint")))
                .transpose()?,
        })
    }
}

/// One record of a batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRecord {
    /// Where to write.
    pub key: KeyBody,
    /// The value, written as `encoding` says.
    pub value: String,
    /// How `value` is written.
    #[serde(default)]
    pub encoding: ValueEncoding,
    /// The codec to store the value with; used only if it makes it smaller.
    #[serde(default)]
    pub compression: Compression,
    /// Fail the whole batch with 409 if a live record is at this key.
    #[serde(default)]
    pub if_absent: bool,
    /// Time to live in milliseconds, at least 1; absent or null never
    /// expires.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub ttl_ms: Option<u64>,
    /// As for a single put.
    #[serde(default)]
    pub client_key_fingerprint: Option<String>,
}

/// Records written all or nothing, as one log entry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The records; each key at most once.
    pub records: Vec<BatchRecord>,
    /// As for a single put, for the whole batch.
    #[serde(default)]
    pub write_concern: u32,
    /// How the keys' components are written.
    #[serde(default)]
    pub key_encoding: KeyEncoding,
}

impl BatchBody {
    pub(crate) fn into_records(self) -> Result<(Vec<PutRecord>, u32), FieldError> {
        let encoding = self.key_encoding;
        let records = self
            .records
            .into_iter()
            .enumerate()
            .map(|(index, record)| {
                let prefix = format!("records[{index}]");
                let key = record.key.into_key(encoding, &format!("{prefix}.key"))?;
                let put = PutBody {
                    value: record.value,
                    encoding: record.encoding,
                    compression: record.compression,
                    if_absent: record.if_absent,
                    ttl_ms: record.ttl_ms,
                    write_concern: 0,
                    client_key_fingerprint: record.client_key_fingerprint,
                };
                put.into_record(key, &prefix)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, self.write_concern))
    }
}

/// A new expiry for a live record.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TouchBody {
    /// Time to live in milliseconds from now, at least 1; absent or null
    /// never expires.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    pub ttl_ms: Option<u64>,
}

/// The full key of a record in an answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KeyJson {
    /// The tenant.
    pub major_key: String,
    /// The region (table).
    pub region: String,
    /// The entity.
    pub minor_key: String,
    /// The TimeUUID, or null for the row's untimed record.
    #[schema(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[17][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
    )]
    pub time_uuid: Option<String>,
}

impl From<&RecordKey> for KeyJson {
    fn from(key: &RecordKey) -> Self {
        Self {
            major_key: key.row.major.clone(),
            region: key.row.region.clone(),
            minor_key: key.row.minor.clone(),
            time_uuid: key.time.map(|t| t.to_string()),
        }
    }
}

/// Where a version was accepted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OriginJson {
    /// The node's id, 32 hex digits.
    pub node_id: String,
    /// Which life of the node's data directory.
    pub incarnation: u32,
}

/// Everything about a version except its value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HeadJson {
    /// Hybrid logical clock of the version (milliseconds << 16 | counter),
    /// as a decimal string; the greatest (hlc, origin) wins a conflict.
    #[schema(example = "115405603094659072")]
    pub hlc: String,
    /// Where the version was accepted.
    pub origin: OriginJson,
    /// Sequence number within the origin.
    pub seq: u64,
    /// Unix milliseconds when the version was written.
    pub write_time_ms: u64,
    /// Unix milliseconds when it expires; null for never.
    pub expires_at_ms: Option<u64>,
    /// Bytes of the value as stored (after compression).
    pub stored_size: u32,
    /// The codec of the stored value.
    pub compression: Compression,
    /// True for the head of a removal.
    pub tombstone: bool,
    /// Present when the client encrypted the value itself: the fingerprint
    /// (16 hex digits) of its client-side key. The value is then ciphertext
    /// that only a client holding that key can read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "3f9a04c1d2e5b6a7")]
    pub client_key_fingerprint: Option<String>,
}

impl HeadJson {
    /// A head from its parts: the gateway's come from storage's heads, the
    /// CLI's from the SDK's, and both print through here. The write time is
    /// the stamp's milliseconds.
    pub fn new(
        stamp: &Stamp,
        seq: u64,
        expires_at_ms: Option<u64>,
        stored_size: u32,
        compression: Compression,
        tombstone: bool,
        client_key: Option<KeyFingerprint>,
    ) -> Self {
        Self {
            hlc: stamp.hlc.to_string(),
            origin: OriginJson {
                node_id: stamp.origin.node.to_string(),
                incarnation: stamp.origin.incarnation,
            },
            seq,
            write_time_ms: stamp.physical_ms(),
            expires_at_ms,
            stored_size,
            compression,
            tombstone,
            client_key_fingerprint: client_key.map(|key| key.to_string()),
        }
    }
}

impl From<&Head> for HeadJson {
    fn from(head: &Head) -> Self {
        Self::new(
            &head.stamp,
            head.seq,
            head.expires_at_ms,
            head.stored_size,
            head.compression,
            head.tombstone,
            head.client_key,
        )
    }
}

/// One live record.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordJson {
    /// Its key.
    pub key: KeyJson,
    /// Its newest version.
    pub head: HeadJson,
    /// The value (decompressed unless `raw` was asked); null when
    /// `head_only` was asked.
    pub value: Option<String>,
    /// How `value` is written; null with `value`.
    pub encoding: Option<ValueEncoding>,
}

impl RecordJson {
    pub(crate) fn new(record: Record, output: ValueOutput) -> Self {
        Self::from_parts(&record.key, HeadJson::from(&record.head), record.value, output)
    }

    /// A record from its parts: `value` is `None` for a head-only read.
    /// The gateway and the CLI both print records through this, so a
    /// record has one JSON shape whichever tool shows it.
    pub fn from_parts(key: &RecordKey, head: HeadJson, value: Option<Vec<u8>>, output: ValueOutput) -> Self {
        let (value, encoding) = match value {
            None => (None, None),
            Some(bytes) => match output {
                ValueOutput::Base64 => (Some(STANDARD.encode(bytes)), Some(ValueEncoding::Base64)),
                ValueOutput::Auto => match String::from_utf8(bytes) {
                    Ok(text) => (Some(text), Some(ValueEncoding::Utf8)),
                    Err(error) => (Some(STANDARD.encode(error.into_bytes())), Some(ValueEncoding::Base64)),
                },
            },
        };
        Self { key: KeyJson::from(key), head, value, encoding }
    }
}

/// What a write left at a key.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WriteJson {
    /// The key written (with the TimeUUID the gateway chose, for a POST).
    pub key: KeyJson,
    /// The version written (a tombstone for a removal).
    pub head: HeadJson,
}

/// What a batch wrote.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchJson {
    /// The seq of the batch's single log entry.
    pub seq: u64,
    /// One head per record, in request order.
    pub heads: Vec<HeadJson>,
}

/// A page of records.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PageJson {
    /// The records, at most `limit`; fewer when the page reached the
    /// server's page size (about 1 MiB).
    pub records: Vec<RecordJson>,
    /// Set when more records may follow: pass it back as `page_token`.
    pub next_page_token: Option<String>,
}

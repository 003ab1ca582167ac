//! Conversions between wire messages and domain types.
//!
//! Wire-to-domain conversions validate and name the offending field, using
//! the proto field names (`key.time_uuid`, `row.major_key`, ...).

use consensusdb_types::error::field_path;
use consensusdb_types::{
    Compression, FieldError, Head, KeyFingerprint, NodeId, Origin, RecordKey, RowKey, TimeUuid,
};

use crate::v1;

/// A required message field, or an error naming it.
pub fn required<'a, T>(message: Option<&'a T>, name: &str) -> Result<&'a T, FieldError> {
    message.ok_or_else(|| FieldError::new(name, "is required"))
}

/// An optional TimeUUID: empty bytes are `None`.
pub fn optional_time(bytes: &[u8], name: &str) -> Result<Option<TimeUuid>, FieldError> {
    if bytes.is_empty() { Ok(None) } else { TimeUuid::from_slice(bytes, name).map(Some) }
}

/// The record key of a `Key` message named `name`.
pub fn record_key(key: Option<&v1::Key>, name: &str) -> Result<RecordKey, FieldError> {
    let key = required(key, name)?;
    Ok(RecordKey {
        row: RowKey::new(&key.major_key, &key.region, &key.minor_key),
        time: optional_time(&key.time_uuid, &field_path(name, "time_uuid"))?,
    })
}

/// The row key of a `RowKey` message named `name`.
pub fn row_key(row: Option<&v1::RowKey>, name: &str) -> Result<RowKey, FieldError> {
    let row = required(row, name)?;
    Ok(RowKey::new(&row.major_key, &row.region, &row.minor_key))
}

/// A node id: exactly 16 bytes.
pub fn node_id(bytes: &[u8], name: &str) -> Result<NodeId, FieldError> {
    NodeId::from_bytes(bytes)
        .ok_or_else(|| FieldError::new(name, format!("a node id is 16 bytes, got {}", bytes.len())))
}

/// The origin of an `Origin` message named `name`. The one conversion for
/// both packages: the mesh protocol uses `consensusdb.v1.Origin` too.
pub fn origin(origin: Option<&v1::Origin>, name: &str) -> Result<Origin, FieldError> {
    let origin = required(origin, name)?;
    Ok(Origin {
        node: node_id(&origin.node_id, &field_path(name, "node_id"))?,
        incarnation: origin.incarnation,
    })
}

/// An origin as `node-id/incarnation`, for people reading it (the CLI's
/// cluster status); empty when absent or malformed.
pub fn origin_label(origin: Option<&v1::Origin>) -> String {
    self::origin(origin, "origin").map(|origin| origin.to_string()).unwrap_or_default()
}

/// The codec of a wire enum value.
pub fn compression(value: i32, name: &str) -> Result<Compression, FieldError> {
    match v1::Compression::try_from(value) {
        Ok(v1::Compression::None) => Ok(Compression::None),
        Ok(v1::Compression::Lz4) => Ok(Compression::Lz4),
        Ok(v1::Compression::Snappy) => Ok(Compression::Snappy),
        Err(_) => Err(FieldError::new(name, format!("unknown compression {value}"))),
    }
}

/// A TTL in milliseconds: 0 means none, negative is refused.
pub fn ttl_ms(value: i64, name: &str) -> Result<Option<u64>, FieldError> {
    match u64::try_from(value) {
        Ok(0) => Ok(None),
        Ok(ttl) => Ok(Some(ttl)),
        Err(_) => Err(FieldError::new(name, format!("must not be negative, got {value}"))),
    }
}

impl From<Compression> for v1::Compression {
    fn from(value: Compression) -> Self {
        match value {
            Compression::None => v1::Compression::None,
            Compression::Lz4 => v1::Compression::Lz4,
            Compression::Snappy => v1::Compression::Snappy,
        }
    }
}

impl From<&Origin> for v1::Origin {
    fn from(origin: &Origin) -> Self {
        v1::Origin { node_id: origin.node.to_bytes().to_vec(), incarnation: origin.incarnation }
    }
}

impl From<&RecordKey> for v1::Key {
    fn from(key: &RecordKey) -> Self {
        v1::Key {
            major_key: key.row.major.clone(),
            region: key.row.region.clone(),
            minor_key: key.row.minor.clone(),
            time_uuid: key.time.map(|t| t.as_bytes().to_vec()).unwrap_or_default(),
        }
    }
}

impl From<&RowKey> for v1::RowKey {
    fn from(row: &RowKey) -> Self {
        v1::RowKey { major_key: row.major.clone(), region: row.region.clone(), minor_key: row.minor.clone() }
    }
}

impl From<&Head> for v1::Head {
    fn from(head: &Head) -> Self {
        v1::Head {
            stamp: Some(v1::Stamp { hlc: head.stamp.hlc, origin: Some((&head.stamp.origin).into()) }),
            seq: head.seq,
            write_time_ms: head.stamp.physical_ms(),
            expires_at_ms: head.expires_at_ms.unwrap_or(0),
            stored_size: head.stored_size,
            compression: v1::Compression::from(head.compression).into(),
            tombstone: head.tombstone,
            client_key_fingerprint: head.client_key.map(|key| key.0.to_vec()).unwrap_or_default(),
        }
    }
}

/// The client key fingerprint of a request or response: empty is none,
/// otherwise exactly 8 bytes.
pub fn client_key(bytes: &[u8], field: &str) -> Result<Option<KeyFingerprint>, FieldError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    KeyFingerprint::from_slice(bytes, field).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_types::Stamp;

    #[test]
    fn a_head_goes_on_the_wire_whole() {
        let head = Head {
            stamp: Stamp { hlc: 77 << 16, origin: Origin { node: NodeId(5), incarnation: 2 } },
            seq: 9,
            expires_at_ms: Some(1234),
            stored_size: 10,
            compression: Compression::Snappy,
            tombstone: true,
            seal: None,
            client_key: Some(KeyFingerprint([1, 2, 3, 4, 5, 6, 7, 8])),
        };
        let wire = v1::Head::from(&head);
        let stamp = wire.stamp.as_ref().unwrap();
        assert_eq!((stamp.hlc, origin(stamp.origin.as_ref(), "origin")), (77 << 16, Ok(head.stamp.origin)));
        assert_eq!((wire.seq, wire.write_time_ms, wire.expires_at_ms, wire.stored_size), (9, 77, 1234, 10));
        assert_eq!(compression(wire.compression, "compression"), Ok(Compression::Snappy));
        assert!(wire.tombstone);
        assert_eq!(client_key(&wire.client_key_fingerprint, "f"), Ok(head.client_key));
        assert_eq!(v1::Head::from(&Head { client_key: None, ..head }).client_key_fingerprint, b"");
        assert_eq!(client_key(b"", "f"), Ok(None));
        assert_eq!(
            client_key(b"abc", "put.client_key_fingerprint").unwrap_err().field,
            "put.client_key_fingerprint"
        );
        assert_eq!(v1::Head::from(&Head { expires_at_ms: None, ..head }).expires_at_ms, 0, "0 is never");
    }

    #[test]
    fn bad_wire_values_name_their_field() {
        assert_eq!(ttl_ms(-1, "ttl_ms").unwrap_err().field, "ttl_ms");
        assert_eq!(ttl_ms(0, "ttl_ms").unwrap(), None);
        assert_eq!(compression(9, "compression").unwrap_err().field, "compression");
        let key = v1::Key {
            major_key: "t".into(),
            region: "r".into(),
            minor_key: "m".into(),
            time_uuid: vec![1; 3],
        };
        assert_eq!(record_key(Some(&key), "key").unwrap_err().field, "key.time_uuid");
        assert_eq!(record_key(None, "key").unwrap_err().field, "key");
        assert_eq!(origin(None, "hello.origin").unwrap_err().to_string(), "hello.origin: is required");
        let short = v1::Origin { node_id: vec![1; 15], incarnation: 1 };
        assert_eq!(
            origin(Some(&short), "entries.origin").unwrap_err().to_string(),
            "entries.origin.node_id: a node id is 16 bytes, got 15"
        );
    }

    #[test]
    fn origins_round_trip_through_the_wire() {
        let domain = Origin { node: NodeId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10), incarnation: 3 };
        let wire = v1::Origin::from(&domain);
        assert_eq!(wire.node_id, domain.node.to_bytes());
        assert_eq!(origin(Some(&wire), "origin"), Ok(domain));
    }
}

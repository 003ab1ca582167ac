//! The SDK's head: what a read or a write tells about one version of a
//! record, read from the wire.
//!
//! It is the SDK's own type, not the storage crate's `Head`: storage's
//! carries its byte encoding and encryption-at-rest fields, which are not
//! the SDK's business and will change with sealed storage. This one is
//! `#[non_exhaustive]`, so fields can be added without breaking a caller's
//! code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use consensusdb_proto::{convert, v1};
use consensusdb_types::{Compression, FieldError, KeyFingerprint, Stamp};

/// Everything about a version except its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Head {
    /// Who wins a conflict: the greatest `(hlc, origin)`.
    pub stamp: Stamp,
    /// The dense sequence number within the stamp's origin.
    pub seq: u64,
    /// Unix milliseconds when the version was written (the milliseconds of
    /// its stamp's HLC).
    pub write_time_ms: u64,
    /// Absolute expiry, Unix milliseconds; `None` never expires.
    pub expires_at_ms: Option<u64>,
    /// Bytes of the value as stored (after compression).
    pub stored_size: u32,
    /// The codec the value is stored with.
    pub compression: Compression,
    /// This version removes the key (the head a remove returns).
    pub tombstone: bool,
    /// Set when the value was encrypted on the client (see
    /// [`crate::Keychain`]): the fingerprint of the key that encrypted it.
    pub client_key: Option<KeyFingerprint>,
}

impl Head {
    /// When the version was written.
    pub fn write_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.write_time_ms)
    }

    /// When it expires, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
    }
}

impl TryFrom<&v1::Head> for Head {
    type Error = FieldError;

    /// Reads a head from a response; errors name the field (`head.…`).
    fn try_from(head: &v1::Head) -> Result<Self, FieldError> {
        let stamp = convert::required(head.stamp.as_ref(), "head.stamp")?;
        Ok(Head {
            stamp: Stamp {
                hlc: stamp.hlc,
                origin: convert::origin(stamp.origin.as_ref(), "head.stamp.origin")?,
            },
            seq: head.seq,
            write_time_ms: head.write_time_ms,
            expires_at_ms: (head.expires_at_ms != 0).then_some(head.expires_at_ms),
            stored_size: head.stored_size,
            compression: convert::compression(head.compression, "head.compression")?,
            tombstone: head.tombstone,
            client_key: convert::client_key(&head.client_key_fingerprint, "head.client_key_fingerprint")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_types::{NodeId, Origin};

    #[test]
    fn a_stored_head_reads_back_whole_from_the_wire() {
        let stored = consensusdb_types::Head {
            stamp: Stamp {
                hlc: (1_700_000_000_000 << 16) | 5,
                origin: Origin { node: NodeId(5), incarnation: 2 },
            },
            seq: 9,
            expires_at_ms: Some(1_700_000_060_000),
            stored_size: 10,
            compression: Compression::Snappy,
            tombstone: true,
            seal: None,
            client_key: Some(KeyFingerprint([9; 8])),
        };
        let head = Head::try_from(&v1::Head::from(&stored)).unwrap();
        assert_eq!(head.stamp, stored.stamp);
        assert_eq!(head.seq, 9);
        assert_eq!(head.write_time_ms, 1_700_000_000_000);
        assert_eq!(head.write_time(), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(head.expires_at_ms, Some(1_700_000_060_000));
        assert_eq!(head.expires_at(), Some(UNIX_EPOCH + Duration::from_secs(1_700_000_060)));
        assert_eq!((head.stored_size, head.compression, head.tombstone), (10, Compression::Snappy, true));
        assert_eq!(head.client_key, Some(KeyFingerprint([9; 8])));
        let never = consensusdb_types::Head { expires_at_ms: None, ..stored };
        assert_eq!(Head::try_from(&v1::Head::from(&never)).unwrap().expires_at_ms, None);
    }

    #[test]
    fn a_malformed_head_names_its_field() {
        let mut wire = v1::Head::default();
        assert_eq!(Head::try_from(&wire).unwrap_err().field, "head.stamp");
        wire.stamp = Some(v1::Stamp { hlc: 1, origin: None });
        assert_eq!(Head::try_from(&wire).unwrap_err().field, "head.stamp.origin");
        wire.stamp =
            Some(v1::Stamp { hlc: 1, origin: Some(v1::Origin { node_id: vec![0; 3], incarnation: 1 }) });
        assert_eq!(Head::try_from(&wire).unwrap_err().field, "head.stamp.origin.node_id");
        wire.stamp =
            Some(v1::Stamp { hlc: 1, origin: Some(v1::Origin { node_id: vec![0; 16], incarnation: 1 }) });
        wire.compression = 9;
        assert_eq!(Head::try_from(&wire).unwrap_err().field, "head.compression");
    }
}

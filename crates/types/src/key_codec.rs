//! The order-preserving, prefix-free key encoding (after FoundationDB's
//! tuple layer).
//!
//! ```text
//! key        = component(major) component(region) component(minor) time
//! component  = bytes with 0x00 escaped as 0x00 0xFF, then the terminator 0x00 0x01
//! time       = 0x01                                  (untimed record)
//!            | 0x02 ticks:u64be version:u8 uuid[6..16] (timed record)
//! ```
//!
//! Why it is order-preserving: the terminator 0x00 0x01 sorts below an
//! escaped zero byte 0x00 0xFF and below every other byte, so a component
//! sorts before every longer component it is a prefix of.
//! Why prefixes are contiguous and exact: inside a component 0x00 is always
//! followed by 0xFF, so the first 0x00 0x01 ends it. The encoding of a
//! tenant, region or row is therefore a byte prefix of exactly the keys
//! inside it: tenant `x` (`x 00 01`) is not a prefix of tenant `x\0`
//! (`x 00 FF 00 01`). A one-byte terminator would fail exactly there and let
//! a tenant scan read another tenant's rows. Components are escaped, never
//! length-prefixed (that would sort by length first) and never truncated.
//!
//! The time part stores the normalized time first, so v1 and v7 ids sort by
//! real time; the version and bytes 6..16 of the UUID follow, from which the
//! whole UUID is rebuilt exactly. Bytes 0..6 are implied by the time.
//!
//! ```
//! use consensusdb_types::key_codec::{decode_key, encode_key, row_prefix, tenant_prefix};
//! use consensusdb_types::{RowKey, TimeUuid};
//!
//! let row = RowKey::new("acme", "ACCOUNT", "balance");
//! let event = row.clone().at(Some(TimeUuid::now()));
//! let encoded = encode_key(&event);
//! // A row, and the tenant holding it, are byte prefixes of the key...
//! assert!(encoded.starts_with(&row_prefix(&row)) && encoded.starts_with(&tenant_prefix("acme")));
//! // ...but tenant "ac" is not, although "ac" is a string prefix of "acme".
//! assert!(!encoded.starts_with(&tenant_prefix("ac")));
//! // The row's untimed record sorts before its events, and decoding is exact.
//! assert!(encode_key(&row.clone().at(None)) < encoded);
//! assert_eq!(decode_key(&encoded).unwrap(), event);
//! ```

use crate::time_uuid::TimeUuid;
use crate::wire::{DecodeError, Reader};
use crate::{RecordKey, RowKey};

/// Ends every component.
const TERMINATOR: [u8; 2] = [0x00, 0x01];
/// Follows 0x00 when the 0x00 is part of the component.
const ESCAPED_ZERO: u8 = 0xFF;

/// Tag of a row's untimed record; sorts before every timed record.
const UNTIMED: u8 = 0x01;
/// Tag of a timed record.
const TIMED: u8 = 0x02;

/// Appends one escaped and terminated component.
fn put_component(out: &mut Vec<u8>, component: &str) {
    for &byte in component.as_bytes() {
        out.push(byte);
        if byte == 0 {
            out.push(ESCAPED_ZERO);
        }
    }
    out.extend_from_slice(&TERMINATOR);
}

/// The prefix shared by every key of a tenant.
pub fn tenant_prefix(major: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(major.len() + 1);
    put_component(&mut out, major);
    out
}

/// The prefix shared by every key of a region (table) of a tenant.
pub fn region_prefix(major: &str, region: &str) -> Vec<u8> {
    let mut out = tenant_prefix(major);
    put_component(&mut out, region);
    out
}

/// The prefix shared by every key of a row.
pub fn row_prefix(row: &RowKey) -> Vec<u8> {
    let mut out = region_prefix(&row.major, &row.region);
    put_component(&mut out, &row.minor);
    out
}

/// The prefix shared by the timed keys of a row (its untimed key sorts just before).
pub fn timed_prefix(row: &RowKey) -> Vec<u8> {
    let mut out = row_prefix(row);
    out.push(TIMED);
    out
}

/// Encodes a full record key.
pub fn encode_key(key: &RecordKey) -> Vec<u8> {
    let mut out = row_prefix(&key.row);
    match &key.time {
        None => out.push(UNTIMED),
        Some(time) => put_time(&mut out, time),
    }
    out
}

/// Encodes the key of `row` at `time`; used for range bounds.
pub fn encode_timed(row: &RowKey, time: &TimeUuid) -> Vec<u8> {
    let mut out = row_prefix(row);
    put_time(&mut out, time);
    out
}

fn put_time(out: &mut Vec<u8>, time: &TimeUuid) {
    out.push(TIMED);
    out.extend_from_slice(&time.ticks().to_be_bytes());
    out.push(time.version() as u8);
    out.extend_from_slice(&time.as_bytes()[6..]);
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` if there is none (all 0xFF). Used as an exclusive
/// upper bound for prefix scans.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < 0xFF {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// Decodes a key written by [`encode_key`].
pub fn decode_key(bytes: &[u8]) -> Result<RecordKey, DecodeError> {
    let mut reader = Reader::new(bytes, "key");
    let major = take_component(&mut reader)?;
    let region = take_component(&mut reader)?;
    let minor = take_component(&mut reader)?;
    let row = RowKey { major, region, minor };
    let time = match reader.u8()? {
        UNTIMED => None,
        TIMED => {
            let ticks = reader.u64()?;
            let version = reader.u8()?;
            let tail = reader.array::<10>()?;
            Some(
                TimeUuid::from_parts(ticks, version, tail)
                    .ok_or_else(|| reader.error("time part is not a valid v1 or v7 TimeUUID"))?,
            )
        }
        tag => return Err(reader.error(format!("unknown time tag {tag:#04x}"))),
    };
    reader.finish()?;
    Ok(RecordKey { row, time })
}

/// The region prefix (tenant and region components) an encoded key starts
/// with, found without decoding the key: digests are kept per region, and
/// the writer asks this of every key it stores. `None` if the bytes do not
/// start with two terminated components.
pub fn region_prefix_of(encoded: &[u8]) -> Option<&[u8]> {
    let mut terminators = 0;
    let mut i = 0;
    while i + 1 < encoded.len() {
        if encoded[i] == 0 {
            match encoded[i + 1] {
                ESCAPED_ZERO => {}
                0x01 => {
                    terminators += 1;
                    if terminators == 2 {
                        return Some(&encoded[..i + 2]);
                    }
                }
                _ => return None,
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// The first component of an encoded key as stored (escaped, without its
/// terminator), found without decoding: two keys of one tenant share it.
/// The whole key if it has no terminator.
pub fn tenant_component(encoded: &[u8]) -> &[u8] {
    let mut i = 0;
    while i + 1 < encoded.len() {
        if encoded[i] == 0 {
            if encoded[i + 1] == 0x01 {
                return &encoded[..i];
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    encoded
}

/// The tenant (first component) of an encoded key, decoding nothing else:
/// the writer asks it of every value it seals, to pick the tenant's key.
pub fn decode_tenant(encoded: &[u8]) -> Result<String, DecodeError> {
    take_component(&mut Reader::new(encoded, "key"))
}

/// Decodes a region prefix written by [`region_prefix`] into its tenant and
/// region.
pub fn decode_region_prefix(bytes: &[u8]) -> Result<(String, String), DecodeError> {
    let mut reader = Reader::new(bytes, "region prefix");
    let major = take_component(&mut reader)?;
    let region = take_component(&mut reader)?;
    reader.finish()?;
    Ok((major, region))
}

fn take_component(reader: &mut Reader<'_>) -> Result<String, DecodeError> {
    let mut raw = Vec::new();
    loop {
        match reader.u8()? {
            0 => match reader.u8()? {
                ESCAPED_ZERO => raw.push(0),
                0x01 => break,
                other => return Err(reader.error(format!("0x00 followed by {other:#04x}"))),
            },
            byte => raw.push(byte),
        }
    }
    String::from_utf8(raw).map_err(|_| reader.error("component is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    #[test]
    fn the_tenant_component_is_found_without_decoding_and_sets_tenants_apart() {
        let key = encode_key(&RowKey::new("acme", "R", "m").at(None));
        assert_eq!(tenant_component(&key), b"acme");
        let zero = encode_key(&RowKey::new("ac\0me", "R", "m").at(None));
        assert_eq!(
            tenant_component(&zero),
            b"ac\0\xffme",
            "kept escaped, so it never equals another tenant's"
        );
        assert_eq!(decode_tenant(&zero).unwrap(), "ac\0me");
        assert_eq!(tenant_component(b"no terminator"), b"no terminator");
    }

    #[test]
    fn region_prefix_is_found_without_decoding() {
        let row = RowKey::new("a\0b", "r\0", "m");
        let key = encode_key(&row.clone().at(Some(TimeUuid::now())));
        let prefix = region_prefix_of(&key).expect("a full key has a region prefix");
        assert_eq!(prefix, region_prefix("a\0b", "r\0").as_slice());
        assert_eq!(decode_region_prefix(prefix).unwrap(), ("a\0b".to_string(), "r\0".to_string()));
        assert_eq!(region_prefix_of(&tenant_prefix("a")), None);
        assert_eq!(region_prefix_of(&[0, 7, 0, 1]), None);
    }

    fn component() -> impl Strategy<Value = String> {
        // Small alphabets with NUL and multi-byte characters make prefix and
        // escape collisions likely.
        proptest::string::string_regex("[a\\x00b\u{e9}\u{10FFFF}]{1,4}").expect("valid regex")
    }

    fn time() -> impl Strategy<Value = Option<TimeUuid>> {
        let v7 = (0u64..4, any::<[u8; 10]>()).prop_map(|(ms, bits)| {
            let mut b = [0u8; 16];
            b[5] = ms as u8;
            b[6..].copy_from_slice(&bits);
            b[6] = (b[6] & 0x0F) | 0x70;
            b[8] = (b[8] & 0x3F) | 0x80;
            TimeUuid::from_uuid(Uuid::from_bytes(b), "t").expect("valid v7")
        });
        let v1 = (0u64..4, any::<[u8; 6]>()).prop_map(|(ms, node)| {
            let ticks = crate::time_uuid::UNIX_EPOCH_TICKS + ms * 10_000 + (node[0] as u64 % 3);
            let ts = uuid::Timestamp::from_gregorian_time(ticks, node[1] as u16);
            TimeUuid::from_uuid(Uuid::new_v1(ts, &node), "t").expect("valid v1")
        });
        prop_oneof![Just(None), v7.prop_map(Some), v1.prop_map(Some)]
    }

    fn record_key() -> impl Strategy<Value = RecordKey> {
        (component(), component(), component(), time())
            .prop_map(|(a, b, c, t)| RecordKey { row: RowKey::new(a, b, c), time: t })
    }

    /// The logical order the encoding must reproduce.
    fn logical(key: &RecordKey) -> impl Ord + use<> {
        let time = key.time.map(|t| (t.ticks(), t.version() as u8, t.as_bytes()[6..].to_vec()));
        (
            key.row.major.as_bytes().to_vec(),
            key.row.region.as_bytes().to_vec(),
            key.row.minor.as_bytes().to_vec(),
            time,
        )
    }

    proptest! {
        #[test]
        fn round_trip_is_exact(key in record_key()) {
            let decoded = decode_key(&encode_key(&key)).expect("decodes");
            prop_assert_eq!(decoded, key);
        }

        #[test]
        fn byte_order_equals_logical_order(a in record_key(), b in record_key()) {
            prop_assert_eq!(encode_key(&a).cmp(&encode_key(&b)), logical(&a).cmp(&logical(&b)));
        }

        #[test]
        fn prefixes_are_exactly_their_members(a in record_key(), b in record_key()) {
            let kb = encode_key(&b);
            let pairs = [
                (tenant_prefix(&a.row.major), a.row.major == b.row.major),
                (region_prefix(&a.row.major, &a.row.region), a.row.major == b.row.major && a.row.region == b.row.region),
                (row_prefix(&a.row), a.row == b.row),
            ];
            for (prefix, member) in pairs {
                prop_assert_eq!(kb.starts_with(&prefix), member);
                // Contiguity: a member lies in [prefix, successor(prefix)), a non-member outside.
                let end = prefix_successor(&prefix).expect("prefix ends in the terminator");
                let inside = kb.as_slice() >= prefix.as_slice() && kb.as_slice() < end.as_slice();
                prop_assert_eq!(inside, member);
            }
        }

        #[test]
        fn no_key_is_a_prefix_of_another(a in record_key(), b in record_key()) {
            let (ka, kb) = (encode_key(&a), encode_key(&b));
            if ka != kb {
                prop_assert!(!kb.starts_with(&ka));
            }
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_key(&bytes);
        }
    }

    #[test]
    fn untimed_sorts_before_timed_in_its_row() {
        let row = RowKey::new("t", "ACCOUNT", "balance");
        let untimed = encode_key(&row.clone().at(None));
        let timed = encode_key(&row.at(Some(TimeUuid::min_for_ticks(0))));
        assert!(untimed < timed);
    }

    #[test]
    fn corrupt_keys_are_errors() {
        let mut key = encode_key(&RowKey::new("t", "r", "m").at(Some(TimeUuid::now())));
        let last = key.len() - 1;
        key.truncate(last);
        assert!(decode_key(&key).is_err());
        assert!(decode_key(b"t\0\x01r\0\x01m\0\x01\x07").is_err());
        assert!(decode_key(b"t\0\x05").is_err());
    }
}

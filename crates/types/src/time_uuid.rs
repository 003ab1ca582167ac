//! TimeUUIDs: v1 (Cassandra's `timeuuid`) and v7 ids with one normalized time.
//!
//! The normalized time is a count of 100 ns ticks since 1582-10-15, the
//! UUID v1 epoch. It is the native unit of v1, a v7 millisecond maps to it
//! exactly, and no representable time of either version is negative. Keys
//! sort by this time first, so v1 and v7 ids interleave by real time.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use consensusdb_types::TimeUuid;
//!
//! let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
//! // The same event content at the same time always gets the same id, so
//! // writing it twice (say from two data centers) stores it once.
//! assert_eq!(TimeUuid::from_content(at, b"deposit 10"), TimeUuid::from_content(at, b"deposit 10"));
//! // Bounds for "everything at this time", for range queries.
//! let id = TimeUuid::random_at(at);
//! assert!(TimeUuid::min_for(at).ticks() <= id.ticks() && id.ticks() <= TimeUuid::max_for(at).ticks());
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::FieldError;

/// Ticks (100 ns) between 1582-10-15 and 1970-01-01.
pub const UNIX_EPOCH_TICKS: u64 = 0x01B2_1DD2_1381_4000;
/// Ticks in one millisecond.
pub const TICKS_PER_MS: u64 = 10_000;
/// The largest millisecond a v7 id can hold (48 bits).
const MAX_V7_MS: u64 = (1 << 48) - 1;
/// The largest tick a v1 id can hold (60 bits).
const MAX_V1_TICKS: u64 = (1 << 60) - 1;

/// A UUID of version 1 or 7, which carries a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeUuid(Uuid);

/// The UUID versions a [`TimeUuid`] may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeVersion {
    /// Gregorian time, 100 ns resolution (RFC 9562 section 5.1).
    V1 = 1,
    /// Unix time in milliseconds (RFC 9562 section 5.7).
    V7 = 7,
}

impl TimeUuid {
    /// Accepts 16 bytes holding an RFC 9562 UUID of version 1 or 7.
    /// `field` names the request field in the error.
    pub fn from_slice(bytes: &[u8], field: &str) -> Result<Self, FieldError> {
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| FieldError::new(field, format!("a TimeUUID is 16 bytes, got {}", bytes.len())))?;
        Self::from_uuid(Uuid::from_bytes(bytes), field)
    }

    /// Accepts a UUID of version 1 or 7 with the RFC variant.
    pub fn from_uuid(uuid: Uuid, field: &str) -> Result<Self, FieldError> {
        if uuid.get_variant() != uuid::Variant::RFC4122 {
            return Err(FieldError::new(field, "not an RFC 9562 UUID (wrong variant bits)"));
        }
        match uuid.get_version_num() {
            1 | 7 => Ok(Self(uuid)),
            v => Err(FieldError::new(field, format!("a TimeUUID must be version 1 or 7, got version {v}"))),
        }
    }

    /// Parses the canonical text form (`0190b3c4-...`): 36 characters,
    /// lowercase hex in 8-4-4-4-12 groups, as [`TimeUuid`]'s `Display`
    /// writes it. Other spellings a UUID parser would take (upper case,
    /// no hyphens, braces, a `urn:uuid:` prefix) are refused, so one id has
    /// one spelling; the error shows the canonical one. `field` names the
    /// input in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, FieldError> {
        let uuid = Uuid::parse_str(text)
            .map_err(|e| FieldError::new(field, format!("not a UUID ({e}): {text:?}")))?;
        let canonical = uuid.hyphenated().to_string();
        if text != canonical {
            return Err(FieldError::new(
                field,
                format!(
                    "{text:?} is not in canonical form; write it as {canonical:?} (lowercase, hyphenated)"
                ),
            ));
        }
        Self::from_uuid(uuid, field)
    }

    /// A v7 id for the current time, monotonic within this process.
    pub fn now() -> Self {
        Self(Uuid::now_v7())
    }

    /// A v7 id for the given time, with random bits.
    pub fn random_at(time: SystemTime) -> Self {
        Self::v7_with_bits(unix_ms(time), rand::random())
    }

    /// A v7 id whose random bits are a hash of `content`: the same content at
    /// the same millisecond always gives the same id. Writing one event from
    /// two data centers with such an id stores it once.
    pub fn from_content(time: SystemTime, content: &[u8]) -> Self {
        let digest = Sha256::digest(content);
        let mut bits = [0u8; 10];
        bits.copy_from_slice(&digest[..10]);
        Self::v7_with_bits(unix_ms(time), bits)
    }

    fn v7_with_bits(ms: u64, bits: [u8; 10]) -> Self {
        let ms = ms.min(MAX_V7_MS);
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&bits);
        bytes[6] = (bytes[6] & 0x0F) | 0x70;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        Self(Uuid::from_bytes(bytes))
    }

    /// The smallest id whose time is `ticks`: every id at that time sorts at
    /// or after it. Times past the v1 range saturate.
    pub fn min_for_ticks(ticks: u64) -> Self {
        if ticks > MAX_V1_TICKS {
            // Only v7 ids exist past the v1 range (year 5236); saturate within v7.
            let ms = ticks.saturating_sub(UNIX_EPOCH_TICKS).div_ceil(TICKS_PER_MS);
            return Self::v7_with_bits(ms, [0; 10]);
        }
        let mut bytes = v1_time_bytes(ticks);
        bytes[8] = 0x80;
        Self(Uuid::from_bytes(bytes))
    }

    /// The largest id whose time is `ticks`: every id at that time sorts at
    /// or before it.
    pub fn max_for_ticks(ticks: u64) -> Self {
        if let Some(ms) = v7_ms_of_ticks(ticks) {
            // At a whole millisecond a v7 id can exist, and v7 sorts after v1.
            return Self::v7_with_bits(ms, [0xFF; 10]).with_max_variant();
        }
        if ticks <= MAX_V1_TICKS {
            let mut bytes = v1_time_bytes(ticks);
            bytes[8] = 0xBF;
            bytes[9..].fill(0xFF);
            return Self(Uuid::from_bytes(bytes));
        }
        // Past the v1 range (year 5236) only v7 ids exist: the newest one at
        // or before `ticks` is the last whole millisecond, saturating at v7's end.
        let ms = ((ticks - UNIX_EPOCH_TICKS) / TICKS_PER_MS).min(MAX_V7_MS);
        Self::v7_with_bits(ms, [0xFF; 10]).with_max_variant()
    }

    fn with_max_variant(self) -> Self {
        let mut bytes = *self.0.as_bytes();
        bytes[8] = 0xBF;
        Self(Uuid::from_bytes(bytes))
    }

    /// The smallest id at `time`.
    pub fn min_for(time: SystemTime) -> Self {
        Self::min_for_ticks(ticks_of(time))
    }

    /// The largest id at `time`.
    pub fn max_for(time: SystemTime) -> Self {
        Self::max_for_ticks(ticks_of(time))
    }

    /// The normalized time: 100 ns ticks since 1582-10-15.
    pub fn ticks(&self) -> u64 {
        let b = self.0.as_bytes();
        match self.version() {
            TimeVersion::V1 => {
                let low = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let mid = u64::from(u16::from_be_bytes([b[4], b[5]]));
                let high = u64::from(u16::from_be_bytes([b[6], b[7]]) & 0x0FFF);
                (high << 48) | (mid << 32) | low
            }
            TimeVersion::V7 => {
                let ms = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
                UNIX_EPOCH_TICKS + ms * TICKS_PER_MS
            }
        }
    }

    /// Milliseconds since the Unix epoch (negative before 1970).
    pub fn unix_ms(&self) -> i64 {
        // ticks < 2^60, so the difference divided by 10_000 always fits an i64.
        (self.ticks() as i64 - UNIX_EPOCH_TICKS as i64).div_euclid(TICKS_PER_MS as i64)
    }

    /// The UUID version.
    pub fn version(&self) -> TimeVersion {
        if self.0.get_version_num() == 1 { TimeVersion::V1 } else { TimeVersion::V7 }
    }

    /// The 16 bytes of the UUID.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Rebuilds an id from its normalized time, version and bytes 6..16, the
    /// parts the key encoding stores. Returns `None` if they disagree.
    pub(crate) fn from_parts(ticks: u64, version: u8, tail: [u8; 10]) -> Option<Self> {
        let mut bytes = match version {
            1 if ticks <= MAX_V1_TICKS => v1_time_bytes(ticks),
            7 => Self::v7_with_bits(v7_ms_of_ticks(ticks)?, [0; 10]).0.into_bytes(),
            _ => return None,
        };
        bytes[6..].copy_from_slice(&tail);
        // The tail also holds the version nibble (and for v1 the top time
        // bits); a tail that contradicts `version` or `ticks` is corrupt.
        let id = Self::from_uuid(Uuid::from_bytes(bytes), "key").ok()?;
        (id.version() as u8 == version && id.ticks() == ticks).then_some(id)
    }
}

impl std::fmt::Display for TimeUuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The normalized time of a wall-clock time (saturating before 1582).
pub fn ticks_of(time: SystemTime) -> u64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => UNIX_EPOCH_TICKS.saturating_add(duration_ticks(after)),
        Err(before) => UNIX_EPOCH_TICKS.saturating_sub(duration_ticks(before.duration())),
    }
}

fn duration_ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos() / 100).unwrap_or(u64::MAX)
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// The v7 millisecond of `ticks`, if `ticks` is a whole millisecond in the v7 range.
fn v7_ms_of_ticks(ticks: u64) -> Option<u64> {
    let since_unix = ticks.checked_sub(UNIX_EPOCH_TICKS)?;
    let ms = since_unix / TICKS_PER_MS;
    (since_unix % TICKS_PER_MS == 0 && ms <= MAX_V7_MS).then_some(ms)
}

/// A v1 id with the given time, version bits set, and zero clock and node.
fn v1_time_bytes(ticks: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&((ticks & 0xFFFF_FFFF) as u32).to_be_bytes());
    bytes[4..6].copy_from_slice(&(((ticks >> 32) & 0xFFFF) as u16).to_be_bytes());
    bytes[6..8].copy_from_slice(&((((ticks >> 48) & 0x0FFF) as u16) | 0x1000).to_be_bytes());
    bytes[8] = 0x80;
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn v7_and_v1_agree_on_time() {
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let v7 = TimeUuid::random_at(time);
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 123_000_000);
        let v1 = TimeUuid::from_uuid(Uuid::new_v1(ts, &[1, 2, 3, 4, 5, 6]), "t").unwrap();
        assert_eq!(v7.ticks(), v1.ticks());
        assert_eq!(v7.unix_ms(), 1_700_000_000_123);
        assert_eq!(v1.unix_ms(), 1_700_000_000_123);
    }

    #[test]
    fn text_form_round_trips_and_bad_text_names_the_field() {
        let id = TimeUuid::now();
        assert_eq!(TimeUuid::parse(&id.to_string(), "time").unwrap(), id);
        assert_eq!(TimeUuid::parse("not-a-uuid", "time").unwrap_err().field, "time");
        let upper = id.to_string().to_uppercase();
        let refused = TimeUuid::parse(&upper, "time").unwrap_err();
        assert!(
            refused.message.contains(&id.to_string()),
            "the canonical spelling is shown: {}",
            refused.message
        );
        let simple = id.to_string().replace('-', "");
        assert!(TimeUuid::parse(&simple, "time").is_err());
        assert!(TimeUuid::parse(&format!("urn:uuid:{id}"), "time").is_err());
        assert!(TimeUuid::parse(&format!(" {id}"), "time").is_err());
        let v4 = Uuid::new_v4().to_string();
        assert!(TimeUuid::parse(&v4, "time").unwrap_err().message.contains("version 1 or 7"));
    }

    #[test]
    fn content_derived_ids_are_stable_and_distinct() {
        let time = UNIX_EPOCH + Duration::from_millis(42);
        assert_eq!(TimeUuid::from_content(time, b"deposit 10"), TimeUuid::from_content(time, b"deposit 10"));
        assert_ne!(TimeUuid::from_content(time, b"deposit 10"), TimeUuid::from_content(time, b"deposit 11"));
    }

    #[test]
    fn rejects_wrong_length_version_and_variant() {
        assert!(TimeUuid::from_slice(&[0; 15], "f").unwrap_err().message.contains("16 bytes"));
        let v4 = Uuid::new_v4();
        let err = TimeUuid::from_uuid(v4, "key.time_uuid").unwrap_err();
        assert_eq!(err.field, "key.time_uuid");
        assert!(err.message.contains("version 4"));
        let mut bytes = *TimeUuid::now().as_bytes();
        bytes[8] &= 0x3F;
        assert!(TimeUuid::from_slice(&bytes, "f").is_err());
    }

    #[test]
    fn bounds_past_the_v1_range_are_v7() {
        let ticks = UNIX_EPOCH_TICKS + MAX_V7_MS * TICKS_PER_MS;
        assert_eq!(TimeUuid::min_for_ticks(ticks).ticks(), ticks);
        assert_eq!(TimeUuid::max_for_ticks(ticks).ticks(), ticks);
        // Between whole milliseconds past the v1 range, the bound is the
        // millisecond before, not a v1 id centuries earlier.
        let between = MAX_V1_TICKS + 12_345;
        let bound = TimeUuid::max_for_ticks(between);
        assert_eq!(bound.version(), TimeVersion::V7);
        assert!(bound.ticks() <= between && between - bound.ticks() < TICKS_PER_MS);
        assert_eq!(TimeUuid::max_for_ticks(u64::MAX).ticks(), UNIX_EPOCH_TICKS + MAX_V7_MS * TICKS_PER_MS);
    }

    #[test]
    fn now_is_monotonic() {
        let ids: Vec<_> = (0..1000).map(|_| TimeUuid::now()).collect();
        assert!(ids.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()));
    }

    proptest! {
        #[test]
        fn bounds_bracket_every_id_at_their_time(ms in 0u64..(MAX_V1_TICKS - UNIX_EPOCH_TICKS) / TICKS_PER_MS - 1, bits in any::<[u8; 10]>(), node in any::<[u8; 6]>(), sub in 0u64..TICKS_PER_MS) {
            let v7 = TimeUuid::v7_with_bits(ms, bits);
            let t = v7.ticks();
            let lo = TimeUuid::min_for_ticks(t);
            let hi = TimeUuid::max_for_ticks(t);
            let order = |a: &TimeUuid| (a.ticks(), a.version(), a.as_bytes()[6..].to_vec());
            prop_assert!(order(&lo) <= order(&v7) && order(&v7) <= order(&hi));
            let ticks = t + sub;
            let ts = uuid::Timestamp::from_gregorian_time(ticks, u16::from_be_bytes([node[0], node[1]]) & 0x3FFF);
            let v1 = TimeUuid::from_uuid(Uuid::new_v1(ts, &node), "t").unwrap();
            prop_assert_eq!(v1.ticks(), ticks);
            let (lo, hi) = (TimeUuid::min_for_ticks(ticks), TimeUuid::max_for_ticks(ticks));
            prop_assert!(order(&lo) <= order(&v1) && order(&v1) <= order(&hi));
            prop_assert_eq!(lo.ticks(), ticks);
            prop_assert_eq!(hi.ticks(), ticks);
        }
    }
}

//! The wall clock, in the one unit the storage layer uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall clock stamps follow: [`now_ms`] moved by the development
/// clock skew.
pub(crate) fn skewed_now_ms(skew_ms: i64) -> u64 {
    now_ms().saturating_add_signed(skew_ms)
}

//! Times and durations as typed on the command line.

use std::time::{Duration, SystemTime};

use consensusdb_client::TimeUuid;

use crate::cli::failure::CliError;

/// A point in time given as `now`, an RFC 3339 time, or a TimeUUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// A wall-clock time (`now` or `2026-11-21T10:00:00Z`).
    Time(SystemTime),
    /// An exact TimeUUID.
    Id(TimeUuid),
}

impl When {
    /// Parses `text`; `flag` names the argument in errors.
    pub fn parse(text: &str, flag: &str) -> Result<Self, CliError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("now") {
            return Ok(When::Time(SystemTime::now()));
        }
        if let Ok(time) = humantime::parse_rfc3339_weak(text) {
            return Ok(When::Time(time));
        }
        if text.len() == 36 && text.chars().filter(|c| *c == '-').count() == 4 {
            return TimeUuid::parse(text, flag)
                .map(When::Id)
                .map_err(|e| CliError::argument(flag, e.message));
        }
        Err(CliError::argument(
            flag,
            format!("expected `now`, a time like 2026-11-21T10:00:00Z, or a TimeUUID; got {text:?}"),
        ))
    }

    /// The newest id at this point: the bound for "at or before".
    pub fn upper_bound(self) -> TimeUuid {
        match self {
            When::Time(time) => TimeUuid::max_for(time),
            When::Id(id) => id,
        }
    }

    /// The oldest id at this point: the bound for "from".
    pub fn lower_bound(self) -> TimeUuid {
        match self {
            When::Time(time) => TimeUuid::min_for(time),
            When::Id(id) => id,
        }
    }
}

/// An exact TimeUUID argument.
pub fn time_uuid(text: &str, flag: &str) -> Result<TimeUuid, CliError> {
    TimeUuid::parse(text, flag).map_err(|e| CliError::argument(flag, e.message))
}

/// A duration such as `90s`, `15m` or `1h 30m`.
pub fn duration(text: &str, flag: &str) -> Result<Duration, CliError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        CliError::argument(flag, format!("expected a duration like 30s, 15m or 1h ({e}); got {text:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn accepts_now_rfc3339_and_time_uuids() {
        let when = When::parse("2023-11-14T22:13:20Z", "--at").unwrap();
        assert_eq!(when, When::Time(UNIX_EPOCH + Duration::from_secs(1_700_000_000)));
        let id = TimeUuid::now();
        assert_eq!(When::parse(&id.to_string(), "--at").unwrap(), When::Id(id));
        assert!(matches!(When::parse("now", "--at").unwrap(), When::Time(_)));
    }

    #[test]
    fn errors_name_the_flag() {
        let error = When::parse("yesterday-ish", "--at").unwrap_err();
        assert!(error.to_string().starts_with("--at: expected `now`"), "{error}");
        let error = When::parse("6ba7b810-9dad-41d1-80b4-00c04fd430c8", "--time").unwrap_err();
        assert!(error.to_string().contains("version 1 or 7"), "{error}");
        assert!(duration("soon", "--ttl").unwrap_err().to_string().starts_with("--ttl:"));
        assert_eq!(duration("1h 30m", "--ttl").unwrap(), Duration::from_secs(5400));
    }
}

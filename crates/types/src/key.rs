//! Record keys: `majorKey / regionName / minorKey / TimeUUID`.

use crate::{FieldError, Limits, TimeUuid};

/// A row: one entity (`minorKey`) in one table (`regionName`) of one tenant
/// (`majorKey`). A row holds at most one untimed record and any number of
/// timed ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    /// The tenant.
    pub major: String,
    /// The table, such as `ACCOUNT` or `CHAT`.
    pub region: String,
    /// The entity or event type, such as `balance`.
    pub minor: String,
}

/// The full key of one record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    /// The row the record belongs to.
    pub row: RowKey,
    /// `None` for the row's untimed record.
    pub time: Option<TimeUuid>,
}

impl RowKey {
    /// A row key; call [`RowKey::validate`] before using client input.
    pub fn new(major: impl Into<String>, region: impl Into<String>, minor: impl Into<String>) -> Self {
        Self { major: major.into(), region: region.into(), minor: minor.into() }
    }

    /// Checks each component against `limits`. Field names are relative to
    /// the message holding them (`major_key`, `region`, `minor_key`).
    pub fn validate(&self, limits: &Limits) -> Result<(), FieldError> {
        validate_component("major_key", &self.major, limits)?;
        validate_component("region", &self.region, limits)?;
        validate_component("minor_key", &self.minor, limits)
    }

    /// The record key of this row at `time`.
    pub fn at(self, time: Option<TimeUuid>) -> RecordKey {
        RecordKey { row: self, time }
    }
}

impl RecordKey {
    /// Starts a key from its parts:
    ///
    /// ```
    /// use consensusdb_types::{RecordKey, TimeUuid};
    ///
    /// let key = RecordKey::builder().major("acme").region("ACCOUNT").minor("balance").timestamp(TimeUuid::now()).build();
    /// assert_eq!(key.row.region, "ACCOUNT");
    /// assert!(key.time.is_some());
    /// ```
    pub fn builder() -> KeyBuilder {
        KeyBuilder::default()
    }

    /// Checks the row components against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<(), FieldError> {
        self.row.validate(limits)
    }
}

/// Builds a [`RecordKey`] part by part. A part left out stays empty, and the
/// server names it when it refuses the key; leaving out the timestamp means
/// the row's untimed record.
#[derive(Debug, Clone, Default)]
pub struct KeyBuilder {
    row: RowKey,
    time: Option<TimeUuid>,
}

impl KeyBuilder {
    /// The tenant (`majorKey`).
    pub fn major(mut self, major: impl Into<String>) -> Self {
        self.row.major = major.into();
        self
    }

    /// The table (`regionName`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.row.region = region.into();
        self
    }

    /// The entity (`minorKey`).
    pub fn minor(mut self, minor: impl Into<String>) -> Self {
        self.row.minor = minor.into();
        self
    }

    /// The record's TimeUUID, which makes it a timed record.
    pub fn timestamp(mut self, time: TimeUuid) -> Self {
        self.time = Some(time);
        self
    }

    /// The finished key.
    pub fn build(self) -> RecordKey {
        RecordKey { row: self.row, time: self.time }
    }
}

/// A key component must be non-empty and within the limit; it is never
/// shortened to fit.
pub fn validate_component(field: &str, value: &str, limits: &Limits) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > limits.max_component_bytes {
        return Err(FieldError::new(
            field,
            format!("is {} bytes, over the limit of {} bytes", value.len(), limits.max_component_bytes),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_oversized_components_are_named() {
        let limits = Limits::default();
        let err = RowKey::new("", "ACCOUNT", "balance").validate(&limits).unwrap_err();
        assert_eq!(err.field, "major_key");
        let long = "x".repeat(limits.max_component_bytes + 1);
        let err = RowKey::new("t", "ACCOUNT", long).validate(&limits).unwrap_err();
        assert_eq!(err.field, "minor_key");
        assert!(err.message.contains("over the limit"));
        RowKey::new("t", "ACCOUNT", "balance").validate(&limits).unwrap();
    }
}

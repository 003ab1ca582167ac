//! The model: per key, every acknowledged write's stamp reduced to the
//! winner (the greatest stamp), and every write whose outcome is unknown
//! (the value attempted, or a removal). Writes refused with a status that
//! means "not written" leave no trace but a count by code.

use std::collections::{BTreeMap, HashMap};

use consensusdb_proto::v1;

/// A record's full key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId {
    /// Tenant.
    pub major: String,
    /// Region.
    pub region: String,
    /// Entity.
    pub minor: String,
    /// 16 bytes, or empty for the row's untimed record.
    pub time: Vec<u8>,
}

impl KeyId {
    /// The key on the wire.
    pub fn to_proto(&self) -> v1::Key {
        v1::Key {
            major_key: self.major.clone(),
            region: self.region.clone(),
            minor_key: self.minor.clone(),
            time_uuid: self.time.clone(),
        }
    }

    /// The key of a record read back.
    pub fn from_proto(key: &v1::Key) -> Self {
        Self {
            major: key.major_key.clone(),
            region: key.region.clone(),
            minor: key.minor_key.clone(),
            time: key.time_uuid.clone(),
        }
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/", self.major, self.region, self.minor)?;
        if self.time.is_empty() {
            write!(f, "(untimed)")
        } else {
            self.time.iter().try_for_each(|b| write!(f, "{b:02x}"))
        }
    }
}

/// A version stamp, ordered as the conflict rule orders them: hlc, then
/// node id bytes, then incarnation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StampId {
    /// Hybrid logical clock.
    pub hlc: u64,
    /// 16-byte node id of the origin.
    pub node_id: Vec<u8>,
    /// Incarnation of the origin.
    pub incarnation: u32,
}

impl StampId {
    /// The stamp of a head, if it has one.
    pub fn of(head: Option<&v1::Head>) -> Option<Self> {
        let stamp = head?.stamp.as_ref()?;
        let origin = stamp.origin.as_ref()?;
        Some(Self { hlc: stamp.hlc, node_id: origin.node_id.clone(), incarnation: origin.incarnation })
    }
}

impl std::fmt::Display for StampId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.hlc >> 16;
        let counter = self.hlc & 0xffff;
        let node: String = self.node_id.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "{ms}.{counter}@{node}…/{}", self.incarnation)
    }
}

/// An acknowledged version.
#[derive(Debug, Clone)]
pub struct Version {
    /// Its stamp, as the node answered it.
    pub stamp: StampId,
    /// The value put, or `None` for a removal.
    pub value: Option<Vec<u8>>,
}

/// What happened to one key.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    /// The acknowledged version with the greatest stamp.
    pub winner: Option<Version>,
    /// Acknowledged writes.
    pub acked: u64,
    /// Writes of unknown outcome: the value attempted, `None` for a removal.
    pub unknown: Vec<Option<Vec<u8>>>,
}

impl KeyHistory {
    /// Whether an unknown-outcome put of `value` was attempted.
    pub fn unknown_put(&self, value: &[u8]) -> bool {
        self.unknown.iter().any(|v| v.as_deref() == Some(value))
    }

    /// Whether an unknown-outcome removal was attempted.
    pub fn unknown_remove(&self) -> bool {
        self.unknown.iter().any(Option::is_none)
    }
}

/// Everything the writers saw.
#[derive(Debug, Default)]
pub struct Model {
    /// Per key.
    pub keys: HashMap<KeyId, KeyHistory>,
    /// Acknowledged writes (a batch counts once per record).
    pub acknowledged: u64,
    /// Writes of unknown outcome (per record).
    pub unknown: u64,
    /// Requests answered "not written", by gRPC code.
    pub refused: BTreeMap<String, u64>,
    /// Requests of unknown outcome, by gRPC code.
    pub unknown_codes: BTreeMap<String, u64>,
    /// The first message seen per error code, so an unexpected code can
    /// be told apart (a server's INTERNAL from a client-side transport
    /// error, say).
    pub first_messages: BTreeMap<String, String>,
    /// Answers that contradict themselves (a head without a stamp, a put
    /// answered with a tombstone head, two writes with one stamp).
    pub anomalies: Vec<String>,
}

impl Model {
    /// An acknowledged write of `value` (`None`: a removal) at `key`.
    pub fn acked(&mut self, key: &KeyId, head: Option<&v1::Head>, value: Option<Vec<u8>>) {
        self.acknowledged += 1;
        let Some(stamp) = StampId::of(head) else {
            self.anomalies.push(format!("{key}: acknowledged without a stamp"));
            return;
        };
        let tombstone = head.is_some_and(|h| h.tombstone);
        if tombstone != value.is_none() {
            self.anomalies.push(format!("{key}: a {} answered with tombstone={tombstone}", kind(&value)));
        }
        let history = self.keys.entry(key.clone()).or_default();
        history.acked += 1;
        match &history.winner {
            Some(winner) if winner.stamp == stamp => {
                self.anomalies.push(format!("{key}: two acknowledged writes share the stamp {stamp}"));
            }
            Some(winner) if winner.stamp > stamp => {}
            _ => history.winner = Some(Version { stamp, value }),
        }
    }

    /// A write of `value` at `key` whose outcome is unknown.
    pub fn unknown(&mut self, key: &KeyId, value: Option<Vec<u8>>) {
        self.unknown += 1;
        self.keys.entry(key.clone()).or_default().unknown.push(value);
    }

    /// A request answered with an error: `may_be_written` tells whether
    /// it may have been applied.
    pub fn error(&mut self, status: &tonic::Status, may_be_written: bool) {
        let counts = if may_be_written { &mut self.unknown_codes } else { &mut self.refused };
        let code = format!("{:?}", status.code());
        *counts.entry(code.clone()).or_default() += 1;
        self.first_messages.entry(code).or_insert_with(|| status.message().to_string());
    }
}

fn kind(value: &Option<Vec<u8>>) -> &'static str {
    if value.is_some() { "put" } else { "removal" }
}

/// Whether a write answered with `code` may have been applied. Only the
/// codes that mean "refused before anything was written" say no:
/// INVALID_ARGUMENT, FAILED_PRECONDITION (including a write that could
/// never become current), ALREADY_EXISTS (put-if-absent) and NOT_FOUND.
/// Everything else (UNAVAILABLE, DEADLINE_EXCEEDED, a broken connection,
/// a timeout) may or may not have been applied.
pub fn may_be_written(code: tonic::Code) -> bool {
    !matches!(
        code,
        tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::AlreadyExists
            | tonic::Code::NotFound
    )
}

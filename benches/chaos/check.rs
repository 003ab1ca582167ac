//! The verdict, Jepsen-style: every node's whole tenants, scanned page by
//! page, against the model. Per key, the acknowledged write with the
//! greatest stamp is the winner, and the node must hold exactly it (value
//! and stamp), or nothing if it is a removal. A write of unknown outcome
//! may have won instead: then the stored version's stamp must be above
//! the winner's and its value one attempted on that key, or the key may be
//! absent if a removal's outcome is unknown.
//!
//! - lost: an acknowledged winning put missing or replaced by something no
//!   write explains;
//! - resurrected: a key whose winner is a removal holds a version no
//!   unknown-outcome put explains;
//! - duplicated: a key that appears twice in a scan, or a record no write
//!   to its key explains (a key never written, a value never attempted).
//!
//! Counts are per node: a key lost on all three nodes counts three times.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use consensusdb_proto::v1;

use crate::grpc;
use crate::model::{KeyHistory, KeyId, Model, StampId};
use crate::topology::Topology;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Offending keys printed at most, per node.
const DETAILS: usize = 20;
/// Attempts at scanning a tenant before giving up.
const SCAN_ATTEMPTS: u32 = 3;

/// What the check found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Keys checked per node.
    pub keys: usize,
    /// See the module documentation.
    pub lost: u64,
    pub duplicated: u64,
    pub resurrected: u64,
    /// Key states explained only by a write of unknown outcome.
    pub won_by_unknown: u64,
    /// Whether the three nodes' scans (keys and stamps) are identical.
    pub views_identical: bool,
    /// The offending keys, described.
    pub details: Vec<String>,
}

/// A version as a node stores it.
struct Stored {
    stamp: Option<StampId>,
    value: Vec<u8>,
}

enum Judgement {
    Holds,
    HoldsByUnknown,
    Lost(&'static str),
    Resurrected(&'static str),
    Phantom(&'static str),
}

fn judge(history: &KeyHistory, stored: Option<&Stored>) -> Judgement {
    match (&history.winner, stored) {
        (None, None) => Judgement::Holds,
        (Some(winner), None) => {
            if winner.value.is_none() {
                Judgement::Holds
            } else if history.unknown_remove() {
                Judgement::HoldsByUnknown
            } else {
                Judgement::Lost("the winning put is missing")
            }
        }
        (None, Some(stored)) => {
            if history.unknown_put(&stored.value) {
                Judgement::HoldsByUnknown
            } else {
                Judgement::Phantom("a value no write to this key attempted")
            }
        }
        (Some(winner), Some(stored)) => {
            let stamp = stored.stamp.as_ref();
            if stamp == Some(&winner.stamp) {
                match &winner.value {
                    Some(value) if *value == stored.value => Judgement::Holds,
                    Some(_) => Judgement::Lost("another value at the winner's stamp"),
                    None => Judgement::Resurrected("a value at the removal's stamp"),
                }
            } else if stamp.is_some_and(|s| *s > winner.stamp) && history.unknown_put(&stored.value) {
                Judgement::HoldsByUnknown
            } else if winner.value.is_some() {
                Judgement::Lost("another version than the winning put")
            } else {
                Judgement::Resurrected("a version where the winner is a removal")
            }
        }
    }
}

fn show_value(value: &[u8]) -> String {
    let end = value.iter().position(|&b| b == b':').unwrap_or(value.len()).min(32);
    String::from_utf8_lossy(&value[..end]).into_owned()
}

fn describe(
    node: usize,
    key: &KeyId,
    what: &str,
    history: Option<&KeyHistory>,
    stored: Option<&Stored>,
) -> String {
    let winner = match history.and_then(|h| h.winner.as_ref()) {
        Some(w) => {
            format!("{} at {}", w.value.as_deref().map_or_else(|| "removal".to_string(), show_value), w.stamp)
        }
        None => "none".into(),
    };
    let stored = match stored {
        Some(s) => format!(
            "{} at {}",
            show_value(&s.value),
            s.stamp.as_ref().map_or_else(|| "no stamp".to_string(), ToString::to_string)
        ),
        None => "absent".into(),
    };
    let (acked, unknown) = history.map_or((0, 0), |h| (h.acked, h.unknown.len()));
    format!(
        "node {node}: {key}: {what}: stored {stored}; acknowledged winner {winner} ({acked} acknowledged, \
         {unknown} of unknown outcome)"
    )
}

/// Scans every record of `tenant` on node `addr`, retrying a failed scan.
async fn scan(addr: std::net::SocketAddr, tenant: &str) -> Result<Vec<v1::Record>, Error> {
    let mut last = None;
    for _ in 0..SCAN_ATTEMPTS {
        let attempt = async {
            let mut client = grpc::scanner(addr).await?;
            Ok::<_, Error>(grpc::scan_all(&mut client, tenant).await?)
        };
        match attempt.await {
            Ok(records) => return Ok(records),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Err(format!("scanning {tenant} on {addr}: {}", last.map(|e| e.to_string()).unwrap_or_default()).into())
}

/// Checks every node against `model`.
pub async fn check(topology: &Topology, model: &Model) -> Result<Verdict, Error> {
    let mut tenants: BTreeSet<String> = model.keys.keys().map(|k| k.major.clone()).collect();
    // Any other tenant a node holds is scanned too: its records are
    // phantoms. The system tenant (the cluster's data keys, tokens and
    // grants) is not the workload's, and no client may scan it; the
    // digests still cover it, so convergence checks it.
    for node in &topology.nodes {
        let held = grpc::digest(node.grpc).await?.regions.into_iter().map(|r| r.major_key);
        tenants.extend(held.filter(|tenant| tenant != consensusdb_types::SYSTEM_TENANT));
    }
    let mut verdict = Verdict { keys: model.keys.len(), views_identical: true, ..Verdict::default() };
    let mut first_view: Option<BTreeMap<KeyId, Option<StampId>>> = None;
    for (i, node) in topology.nodes.iter().enumerate() {
        let mut view: HashMap<KeyId, Stored> = HashMap::new();
        let mut details = Vec::new();
        for tenant in &tenants {
            for record in scan(node.grpc, tenant).await? {
                let key = KeyId::from_proto(&record.key.unwrap_or_default());
                let stored = Stored { stamp: StampId::of(record.head.as_ref()), value: record.value };
                if view.contains_key(&key) {
                    verdict.duplicated += 1;
                    details.push(describe(i, &key, "appears twice", model.keys.get(&key), Some(&stored)));
                }
                view.insert(key, stored);
            }
        }
        for (key, history) in &model.keys {
            let stored = view.get(key);
            let what = match judge(history, stored) {
                Judgement::Holds => continue,
                Judgement::HoldsByUnknown => {
                    verdict.won_by_unknown += 1;
                    continue;
                }
                Judgement::Lost(what) => {
                    verdict.lost += 1;
                    format!("LOST ({what})")
                }
                Judgement::Resurrected(what) => {
                    verdict.resurrected += 1;
                    format!("RESURRECTED ({what})")
                }
                Judgement::Phantom(what) => {
                    verdict.duplicated += 1;
                    format!("DUPLICATED ({what})")
                }
            };
            details.push(describe(i, key, &what, Some(history), stored));
        }
        for (key, stored) in &view {
            if !model.keys.contains_key(key) {
                verdict.duplicated += 1;
                details.push(describe(i, key, "DUPLICATED (a key never written)", None, Some(stored)));
            }
        }
        details.sort();
        let shown = details.len().min(DETAILS);
        verdict.details.extend(details.iter().take(shown).cloned());
        if details.len() > shown {
            verdict.details.push(format!("node {i}: … and {} more", details.len() - shown));
        }
        let keys: BTreeMap<KeyId, Option<StampId>> = view.into_iter().map(|(k, s)| (k, s.stamp)).collect();
        match &first_view {
            None => first_view = Some(keys),
            Some(first) => verdict.views_identical &= *first == keys,
        }
    }
    Ok(verdict)
}

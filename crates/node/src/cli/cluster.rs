//! The cluster commands (`status`, `digest`, `remove-peer`): what one node
//! sees of the replication mesh, over the internal replication service.

use std::io::Write;

use consensusdb_client::AuthorizedChannel;
use consensusdb_proto::convert::origin_label;
use consensusdb_proto::mesh::v1 as pb;
use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use consensusdb_types::{Digest, HybridClock, NodeId};
use serde_json::{Map, Value, json};

use crate::cli::failure::CliError;
use crate::cli::render::{Format, Output, rfc3339_ms};

/// A cluster command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClusterCommand {
    /// Show this node's state, its peers with their state, lag per origin
    /// and clock offset, conflicts, clock-bound hits and purge watermarks.
    Status,
    /// Show the convergence digest per region, with the frontier it was
    /// taken at; two nodes hold the same data when both match.
    Digest {
        /// Only this tenant (majorKey).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a node from the cluster: peers stop replicating with it.
    /// Give its node id (hex, from `status`) or its address.
    RemovePeer {
        /// Node id (32 hex digits) or host:port.
        peer: String,
    },
}

impl ClusterCommand {
    /// Runs the command over `channel` (to the first `--server`).
    pub async fn run<W: Write>(
        &self,
        channel: AuthorizedChannel,
        out: &mut Output<W>,
    ) -> Result<(), CliError> {
        let mut client = ReplicationClient::new(channel);
        match self {
            ClusterCommand::Status => {
                let status =
                    client.cluster_status(pb::ClusterStatusRequest {}).await.map_err(CliError::from)?;
                status_output(&status.into_inner(), out)
            }
            ClusterCommand::Digest { tenant } => {
                let request = pb::DigestRequest { major_key: tenant.clone().unwrap_or_default() };
                let digest = client.digest(request).await.map_err(CliError::from)?.into_inner();
                digest_output(&digest, out)
            }
            ClusterCommand::RemovePeer { peer } => {
                let request = match u128::from_str_radix(peer, 16) {
                    Ok(id) if peer.len() == 32 => pb::RemovePeerRequest {
                        node_id: NodeId(id).to_bytes().to_vec(),
                        address: String::new(),
                    },
                    _ if peer.contains(':') => {
                        pb::RemovePeerRequest { node_id: Vec::new(), address: peer.clone() }
                    }
                    _ => return Err(CliError::argument("PEER", "give a 32-digit hex node id or host:port")),
                };
                let removed = client.remove_peer(request).await.map_err(CliError::from)?.into_inner().removed;
                Ok(out.object(object(json!({ "peer": peer, "removed": removed })))?)
            }
        }
    }
}

pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn node_text(bytes: &[u8]) -> String {
    NodeId::from_bytes(bytes).map(|node| node.to_string()).unwrap_or_default()
}

fn frontier_json(marks: &[pb::OriginMark]) -> Value {
    marks
        .iter()
        .map(|m| json!({ "origin": origin_label(m.origin.as_ref()), "seq": m.seq, "hlc_ms": m.hlc >> HybridClock::LOGICAL_BITS }))
        .collect()
}

/// An HLC's wall-clock part as RFC 3339 text ("" for 0: nothing yet).
fn hlc_text(hlc: u64) -> String {
    if hlc == 0 { String::new() } else { rfc3339_ms(hlc >> HybridClock::LOGICAL_BITS) }
}

/// What this node is doing, in a word or a reason.
fn node_state(status: &pb::ClusterStatusResponse) -> String {
    match (status.bootstrapping.as_str(), status.clock_refusal.as_str()) {
        ("", "") => "serving".into(),
        (bootstrap, "") => format!("bootstrapping: {bootstrap}"),
        (_, clock) => format!("refusing writes: {clock}"),
    }
}

fn status_output<W: Write>(status: &pb::ClusterStatusResponse, out: &mut Output<W>) -> Result<(), CliError> {
    let peers = status.peers.iter().map(|peer| {
        let lag_entries: u64 = peer.lag.iter().map(|l| l.entries).sum();
        let lag_seconds = peer.lag.iter().map(|l| l.seconds).fold(0.0, f64::max);
        json!({
            "address": peer.address,
            "node": node_text(&peer.node_id),
            "state": peer.state,
            "lag_entries": lag_entries,
            "lag_seconds": lag_seconds,
            "clock_offset_ms": peer.clock_offset_ms,
            "received": peer.entries_received,
            "applied": peer.entries_applied,
            "refused": peer.entries_refused,
            "acked_own_seq": peer.acked_own_seq,
            "needs_bootstrap": peer.needs_bootstrap,
            "last_error": peer.last_error,
            "lag": peer.lag.iter().map(|l| json!({
                "origin": origin_label(l.origin.as_ref()), "entries": l.entries, "seconds": l.seconds,
            })).collect::<Vec<_>>(),
        })
    });
    let purge = json!({
        "stable_hlc": status.stable_hlc,
        "stable_time": hlc_text(status.stable_hlc),
        "log_purged_through": status.log_purged_through.iter()
            .map(|m| json!({ "origin": origin_label(m.origin.as_ref()), "seq": m.seq }))
            .collect::<Vec<_>>(),
        "versions_purged": status.versions_purged,
    });
    if out.format() == Format::Table {
        // One table about this node (so a node without peers prints
        // something), then one row per peer.
        let facts = [
            ("node", json!(origin_label(status.origin.as_ref()))),
            ("cluster", json!(status.cluster_id)),
            ("advertise", json!(status.advertise_address)),
            ("state", json!(node_state(status))),
            ("members", json!(status.members.len())),
            ("origins", json!(status.frontier.len())),
            ("entries_applied", json!(status.entries_applied)),
            ("conflicts", json!(status.conflicts)),
            ("hlc_drift_clipped", json!(status.hlc_drift_clipped)),
            ("max_clock_offset_ms", json!(status.max_clock_offset_ms)),
            ("stable_time", json!(hlc_text(status.stable_hlc))),
            ("versions_purged", json!(status.versions_purged)),
            ("bootstraps", json!(status.bootstraps)),
            ("entries_refused", json!(status.entries_refused)),
        ];
        for (field, value) in facts {
            out.object(object(json!({ "field": field, "value": value })))?;
        }
        for mark in &status.log_purged_through {
            let text = format!("{} to seq {}", origin_label(mark.origin.as_ref()), mark.seq);
            out.object(object(json!({ "field": "log_purged_through", "value": text })))?;
        }
        out.finish()?;
        for peer in peers {
            let mut row = object(peer);
            row.remove("lag");
            out.object(row)?;
        }
        return Ok(());
    }
    let summary = json!({
        "origin": origin_label(status.origin.as_ref()),
        "cluster_id": status.cluster_id,
        "advertise": status.advertise_address,
        "state": node_state(status),
        "bootstrapping": status.bootstrapping,
        "clock_refusal": status.clock_refusal,
        "max_clock_offset_ms": status.max_clock_offset_ms,
        "members": status.members.iter().map(|m| node_text(m)).collect::<Vec<_>>(),
        "conflicts": status.conflicts,
        "hlc_drift_clipped": status.hlc_drift_clipped,
        "entries_applied": status.entries_applied,
        "entries_refused": status.entries_refused,
        "bootstraps": status.bootstraps,
        "frontier": frontier_json(&status.frontier),
        "purge": purge,
        "peers": peers.collect::<Vec<_>>(),
    });
    Ok(out.object(object(summary))?)
}

fn digest_output<W: Write>(digest: &pb::DigestResponse, out: &mut Output<W>) -> Result<(), CliError> {
    let hex = |bytes: &[u8]| Digest::from_slice(bytes).map(|d| d.to_string()).unwrap_or_default();
    let regions = digest
        .regions
        .iter()
        .map(|r| json!({ "tenant": r.major_key, "region": r.region, "digest": hex(&r.digest) }));
    if out.format() == Format::Table {
        for region in regions {
            out.object(object(region))?;
        }
        return Ok(
            out.object(object(json!({ "tenant": "(total)", "region": "", "digest": hex(&digest.total) })))?
        );
    }
    let summary = json!({
        "total": hex(&digest.total),
        "frontier": frontier_json(&digest.frontier),
        "regions": regions.collect::<Vec<_>>(),
    });
    Ok(out.object(object(summary))?)
}

//! Convergence: the nodes hold the same data when their digests of every
//! tenant match at equal frontiers. Polled until they do, or a limit.

use std::time::{Duration, Instant};

use consensusdb_proto::mesh::v1::DigestResponse;

use crate::grpc;
use crate::topology::Topology;

const POLL: Duration = Duration::from_millis(250);

/// A frontier, comparable: (node id, incarnation, seq) per origin, sorted.
fn frontier(digest: &DigestResponse) -> Vec<(Vec<u8>, u32, u64)> {
    let mut marks: Vec<_> = digest
        .frontier
        .iter()
        .map(|mark| {
            let origin = mark.origin.clone().unwrap_or_default();
            (origin.node_id, origin.incarnation, mark.seq)
        })
        .collect();
    marks.sort();
    marks
}

/// Waits until every node reports the same digest total at the same
/// frontier; returns how long that took, or what still differed.
pub async fn wait(topology: &Topology, limit: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut last = String::from("no digest yet");
    while started.elapsed() < limit {
        let mut digests = Vec::new();
        for (i, node) in topology.nodes.iter().enumerate() {
            match grpc::digest(node.grpc).await {
                Ok(digest) => digests.push(digest),
                Err(error) => {
                    last = format!("node {i}: {error}");
                    break;
                }
            }
        }
        if digests.len() == topology.nodes.len() {
            let first = (frontier(&digests[0]), &digests[0].total);
            if digests.iter().all(|d| (frontier(d), &d.total) == first) {
                return Ok(started.elapsed());
            }
            last = digests
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let seqs: Vec<String> =
                        frontier(d).iter().map(|(_, inc, seq)| format!("{inc}:{seq}")).collect();
                    let total: String = d.total.iter().take(6).map(|b| format!("{b:02x}")).collect();
                    format!("node {i}: frontier [{}] total {total}…", seqs.join(" "))
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!("the nodes did not converge within {limit:?}: {last}"))
}

//! Serving a bootstrap snapshot to a peer: storage's snapshot parts as
//! `SnapshotChunk` messages.

use consensusdb_proto::mesh::v1::{self as pb, snapshot_chunk};
use consensusdb_storage::SnapshotPart;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::Inner;
use crate::peer_table::LogHold;
use crate::wire::{frontier_from_pb, frontier_to_pb, origin_from_pb};

/// Records per chunk are bounded by bytes, well under the message limit.
const CHUNK_BYTES: usize = 1024 * 1024;

pub(crate) type SnapshotStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::SnapshotChunk, Status>> + Send + 'static>>;

/// Checks the request and streams a snapshot of this node.
pub(crate) fn serve(inner: &Inner, request: &pb::SnapshotRequest) -> Result<SnapshotStream, Status> {
    if request.cluster_id != inner.config.cluster_id {
        return Err(Status::failed_precondition(format!(
            "cluster_id: this node belongs to cluster {:?}, the caller to {:?}; two clusters never merge",
            inner.config.cluster_id, request.cluster_id
        )));
    }
    if inner.store.is_installing() {
        // Mid-install, this node's records are incomplete. (A new node
        // still waiting to bootstrap may serve its empty store: new nodes
        // of a new cluster bootstrap from each other.)
        return Err(Status::unavailable("this node is installing a snapshot itself; ask another peer"));
    }
    let caller = origin_from_pb(request.origin.as_ref(), "origin")?;
    let caller_applied = frontier_from_pb(&request.applied, "applied")?;
    if inner.peers().removed.contains(&caller.node) {
        return Err(Status::permission_denied(format!("node {} was removed from the cluster", caller.node)));
    }
    // The snapshot's frontier will be at least this one.
    let frontier = inner.store.frontier();
    for (origin, theirs) in caller_applied.iter().filter(|(origin, _)| origin.node != caller.node) {
        let ours = frontier.get(origin).map_or(0, |mark| mark.seq);
        if ours < theirs.seq {
            return Err(Status::failed_precondition(format!(
                "applied: this node holds {origin} only to seq {ours}, the caller to {}; ask a peer further ahead",
                theirs.seq
            )));
        }
    }
    // Once installed, the caller resumes by log from the snapshot's
    // frontier: from now on the log is kept from there, here and (through
    // heartbeats) on every node, so no purge removes the entries it will
    // ask for next. A hold, not a member view: the caller has installed
    // nothing yet, and may never.
    let now_ms = inner.store.wall_clock_ms();
    let hold = LogHold { from: frontier, since_ms: now_ms };
    inner.peers().hold_log_for(caller.node, &hold, now_ms, inner.config.retention_max_lag_ms);
    tracing::info!(peer = %caller, "serving a bootstrap snapshot");
    let parts: mpsc::Receiver<_> = inner.store.export_snapshot(CHUNK_BYTES);
    // A long snapshot must not hold up the node's graceful shutdown: it is
    // cut when the node stops (the receiver then tries another peer).
    let mut stop = inner.stop.subscribe();
    let stopping = async move { crate::stopped(&mut stop).await };
    Ok(Box::pin(ReceiverStream::new(parts).take_until(stopping).map(|part| {
        let kind = match part.map_err(|e| Status::internal(format!("reading the snapshot: {e}")))? {
            SnapshotPart::Frontier(frontier) => snapshot_chunk::Kind::Frontier(snapshot_chunk::Frontier {
                frontier: frontier_to_pb(&frontier),
            }),
            SnapshotPart::Records(records) => snapshot_chunk::Kind::Records(snapshot_chunk::Records {
                records: records
                    .into_iter()
                    .map(|r| pb::SnapshotRecord {
                        key: r.key,
                        head: r.head,
                        has_value: r.value.is_some(),
                        value: r.value.unwrap_or_default(),
                    })
                    .collect(),
            }),
            SnapshotPart::Digests(digests) => snapshot_chunk::Kind::Digests(snapshot_chunk::Digests {
                digests: digests
                    .into_iter()
                    .map(|(region, digest)| pb::RegionDigestBytes {
                        region_prefix: region,
                        digest: digest.to_bytes().to_vec(),
                    })
                    .collect(),
            }),
        };
        Ok(pb::SnapshotChunk { kind: Some(kind) })
    })))
}

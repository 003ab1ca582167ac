//! Bootstrapping: replacing this node's records with a peer's consistent
//! snapshot, then resuming replication from the snapshot's frontier.
//!
//! Triggers (docs/replication.md): a brand-new node with peers; an install cut
//! short by a crash; every connected source answering `OUT_OF_RANGE` for an
//! origin (its entries were purged); and a peer refusing this node because
//! it holds this node's own origin beyond its log (the data directory is
//! older than the cluster's; the install then makes it a new incarnation).
//! Client writes are refused from the start of a bootstrap to its end, and
//! this node's own writes the snapshot lacks are re-applied on top of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use consensusdb_proto::mesh::v1::{self as pb, snapshot_chunk};
use consensusdb_storage::{InstallOutcome, SnapshotRecord, WriteHold};
use consensusdb_types::Digest;

use crate::Inner;
use crate::backoff::Backoff;
use crate::error::MeshError;
use crate::wire::{frontier_from_pb, frontier_to_pb, origin_to_pb};

/// How often progress is logged while records are copied.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Largest snapshot message accepted (chunks are about 1 MiB).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Bootstraps from the first peer that serves a snapshot, trying them in
/// turn with backoff until one does or the node stops. Pullers wait while
/// it runs; client writes are refused until it is done. Started only by
/// [`Inner::start_bootstrap`], which raises the flag pullers wait on first.
pub(crate) async fn run(inner: Arc<Inner>, reason: String) {
    tracing::warn!(%reason, "bootstrapping from a peer; client writes are refused until done");
    inner.store.hold_writes(WriteHold::Bootstrap, format!("bootstrapping from a peer ({reason})"));
    let mut backoff = Backoff::new(inner.config.min_backoff, inner.config.max_backoff);
    let mut stop = inner.stop.subscribe();
    'attempts: loop {
        for address in inner.bootstrap_candidates() {
            let attempt = tokio::select! {
                attempt = from_peer(&inner, &address) => attempt,
                () = crate::stopped(&mut stop) => break 'attempts,
            };
            match attempt {
                Ok(outcome) => {
                    tracing::info!(peer = %address, ?outcome, "bootstrap complete; accepting writes");
                    if outcome.new_origin.is_some() {
                        // Acknowledgements of the old origin's seqs say
                        // nothing of the new one's, which start again at 1.
                        inner.acks.forget_all();
                    }
                    if let Err(error) = inner.refresh_log_starts().await {
                        tracing::warn!(%error, "reading where the log starts failed");
                    }
                    inner.store.release_writes(WriteHold::Bootstrap);
                    break 'attempts;
                }
                Err(error) => {
                    tracing::warn!(peer = %address, %error, "bootstrap attempt failed");
                    inner.record_peer_error(&address, format!("bootstrap: {error}"));
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = crate::stopped(&mut stop) => break,
        }
    }
    inner.bootstrapping.send_replace(false);
    inner.topology.send_modify(|n| *n += 1);
}

/// Copies one peer's snapshot into the store.
async fn from_peer(inner: &Inner, address: &str) -> Result<InstallOutcome, MeshError> {
    let channel = inner.connector.connect(address, inner.config.connect_timeout).await?;
    let mut client = ReplicationClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let request = pb::SnapshotRequest {
        cluster_id: inner.config.cluster_id.clone(),
        origin: Some(origin_to_pb(&inner.store.origin())),
        applied: frontier_to_pb(&inner.store.frontier()),
    };
    let mut chunks = client.snapshot(request).await?.into_inner();
    let store = &inner.store;
    // The frontier comes first: a snapshot behind this node on any origin
    // would move the frontier back (and what it lacks may be purged).
    let first = chunks.message().await?.and_then(|chunk| chunk.kind);
    let Some(snapshot_chunk::Kind::Frontier(f)) = first else {
        return Err(MeshError::OutOfOrder("the snapshot did not start with its frontier"));
    };
    let snapshot_frontier = frontier_from_pb(&f.frontier, "frontier").map_err(MeshError::malformed)?;
    let own = store.origin();
    for (origin, mark) in store.frontier().iter().filter(|(origin, _)| **origin != own) {
        let theirs = snapshot_frontier.get(origin).map_or(0, |m| m.seq);
        if theirs < mark.seq {
            return Err(MeshError::SnapshotBehind { origin: *origin, theirs, ours: mark.seq });
        }
    }
    store.install_begin().await.map_err(MeshError::Install)?;
    let started = Instant::now();
    let mut last_report = started;
    let mut frontier = Some(snapshot_frontier);
    let mut copied = 0u64;
    while let Some(chunk) = chunks.message().await? {
        match chunk.kind {
            Some(snapshot_chunk::Kind::Frontier(f)) => {
                frontier = Some(frontier_from_pb(&f.frontier, "frontier").map_err(MeshError::malformed)?);
            }
            Some(snapshot_chunk::Kind::Records(records)) => {
                copied += records.records.len() as u64;
                let records = records
                    .records
                    .into_iter()
                    .map(|r| SnapshotRecord {
                        key: r.key,
                        head: r.head,
                        value: r.has_value.then_some(r.value),
                    })
                    .collect();
                store.install_records(records).await.map_err(MeshError::Install)?;
                if last_report.elapsed() >= PROGRESS_EVERY {
                    last_report = Instant::now();
                    tracing::info!(peer = %address, records = copied, elapsed = ?started.elapsed(), "bootstrap copying");
                }
            }
            Some(snapshot_chunk::Kind::Digests(d)) => {
                let frontier = frontier
                    .take()
                    .ok_or(MeshError::OutOfOrder("the snapshot sent digests before its frontier"))?;
                let digests = d
                    .digests
                    .into_iter()
                    .map(|d| Digest::from_slice(&d.digest).map(|digest| (d.region_prefix, digest)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        MeshError::Malformed("the snapshot sent a digest that is not 32 bytes".into())
                    })?;
                let outcome = store.install_end(frontier, digests).await.map_err(MeshError::Install)?;
                tracing::info!(peer = %address, records = copied, elapsed = ?started.elapsed(), "bootstrap installed");
                return Ok(outcome);
            }
            None => return Err(MeshError::OutOfOrder("an empty snapshot message")),
        }
    }
    Err(MeshError::OutOfOrder("the snapshot ended before its digests"))
}

//! The source side of a Pull stream: ships every entry beyond the puller's
//! frontier, for every origin it has not excluded, catch-up first, then
//! live, with heartbeats in between.
//!
//! Memory per stream is bounded: the log is read in chunks of
//! `chunk_bytes`, and at most `chunks_in_flight` chunks wait in the
//! outgoing queue; when the puller is slow, sending waits (and HTTP/2 flow
//! control pushes back further).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use consensusdb_proto::mesh::v1::{self as pb, pull_request, pull_response};
use consensusdb_storage::LogChunk;
use consensusdb_types::{NodeId, Origin};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::Inner;
use crate::wire::{
    PROTOCOL_VERSION, frontier_from_pb, frontier_to_pb, known_peer_to_pb, log_hold_to_pb, member_to_pb,
    node_to_bytes, origin_from_pb, origin_to_pb,
};

/// Most entries in one `Entries` message.
const MAX_ENTRIES_PER_CHUNK: usize = 4096;

pub(crate) type Outgoing = mpsc::Sender<Result<pb::PullResponse, Status>>;

/// Checks the handshake. Returns the puller's origin and its hello.
pub(crate) fn check_hello(
    inner: &Inner,
    request: Option<pb::PullRequest>,
) -> Result<(Origin, pb::Hello), Status> {
    let Some(pb::PullRequest { kind: Some(pull_request::Kind::Hello(hello)) }) = request else {
        return Err(Status::invalid_argument("kind: a Pull stream must start with hello"));
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "hello.protocol_version: this node speaks {PROTOCOL_VERSION}, the caller {}",
            hello.protocol_version
        )));
    }
    if hello.cluster_id != inner.config.cluster_id {
        return Err(Status::failed_precondition(format!(
            "hello.cluster_id: this node belongs to cluster {:?}, the caller to {:?}; two clusters never merge",
            inner.config.cluster_id, hello.cluster_id
        )));
    }
    let origin = origin_from_pb(hello.origin.as_ref(), "hello.origin")?;
    if !hello.advertise_address.is_empty() {
        crate::address::check_peer_address(&hello.advertise_address)
            .map_err(|why| Status::invalid_argument(format!("hello.advertise_address: {why}")))?;
    }
    if inner.peers().removed.contains(&origin.node) {
        return Err(Status::permission_denied(format!(
            "node {} was removed from the cluster; wipe its data directory to join again",
            origin.node
        )));
    }
    Ok((origin, hello))
}

/// One stream's shipping state.
struct Stream {
    inner: Arc<Inner>,
    /// The puller's own origin: never shipped back to it.
    puller: Origin,
    out: Outgoing,
    /// The last seq of each origin the puller has, or has been sent.
    cursors: HashMap<Origin, u64>,
    excluded: HashSet<Origin>,
    /// Origins whose next entry the puller needs was purged here, with the
    /// seq from which this node can serve it again: once the puller has
    /// everything before that seq (from another source), shipping resumes.
    out_of_range: HashMap<Origin, u64>,
}

/// Runs the stream until the puller goes away or the node stops.
pub(crate) async fn run(
    inner: Arc<Inner>,
    puller: Origin,
    hello: pb::Hello,
    mut requests: Streaming<pb::PullRequest>,
    out: Outgoing,
) {
    let mut stream = Stream {
        inner: inner.clone(),
        puller,
        out,
        cursors: HashMap::new(),
        excluded: HashSet::new(),
        out_of_range: HashMap::new(),
    };
    if let Some(progress) = &hello.progress
        && let Err(status) = stream.take_progress(progress)
    {
        let _ = stream.out.send(Err(status)).await;
        return;
    }
    // Requests are read by their own task into a channel, so waiting for
    // one can be abandoned at any time without losing a half-read message.
    let (progress_tx, mut progress_rx) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        while let Ok(Some(request)) = requests.message().await {
            if progress_tx.send(request).await.is_err() {
                break;
            }
        }
    });
    let mut commits = inner.store.commits();
    let mut heartbeat = tokio::time::interval(inner.config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let serve = async {
        loop {
            let shipped = match stream.ship_due().await {
                Ok(shipped) => shipped,
                Err(Gone) => break,
            };
            tokio::select! {
                biased;
                request = progress_rx.recv() => {
                    let Some(request) = request else { break };
                    let result = match request.kind {
                        Some(pull_request::Kind::Progress(progress)) => stream.take_progress(&progress),
                        _ => Err(Status::invalid_argument("kind: only progress may follow hello")),
                    };
                    if let Err(status) = result {
                        let _ = stream.out.send(Err(status)).await;
                        break;
                    }
                }
                _ = heartbeat.tick() => {
                    // Fails only while the store is closing.
                    let Ok(beat) = inner.heartbeat(puller.node).await else { break };
                    if stream.send(pull_response::Kind::Heartbeat(beat)).await.is_err() {
                        break;
                    }
                }
                // Nothing was due: wait for the next commit. Something was
                // shipped: go round again at once, after a look at the requests.
                changed = commits.changed(), if !shipped => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = std::future::ready(()), if shipped => {}
            }
        }
    };
    // Stopping ends the stream wherever it waits, even on a send to a peer
    // that stopped reading: the server's graceful shutdown waits for it.
    let mut stop = inner.stop.subscribe();
    tokio::select! {
        () = serve => {}
        () = crate::stopped(&mut stop) => {}
    }
    reader.abort();
}

/// The puller hung up.
struct Gone;

impl Stream {
    async fn send(&self, kind: pull_response::Kind) -> Result<(), Gone> {
        self.out.send(Ok(pb::PullResponse { kind: Some(kind) })).await.map_err(|_| Gone)
    }

    /// Records the puller's acknowledgements and exclusions.
    fn take_progress(&mut self, progress: &pb::Progress) -> Result<(), Status> {
        let applied = frontier_from_pb(&progress.applied, "progress.applied")?;
        for (origin, mark) in &applied {
            let cursor = self.cursors.entry(*origin).or_default();
            *cursor = (*cursor).max(mark.seq);
            // The puller got past a purged stretch from elsewhere: resume.
            if self.out_of_range.get(origin).is_some_and(|resume_at| mark.seq.saturating_add(1) >= *resume_at)
            {
                self.out_of_range.remove(origin);
            }
        }
        self.excluded = progress
            .excluded
            .iter()
            .enumerate()
            .map(|(i, o)| origin_from_pb(Some(o), &format!("progress.excluded[{i}]")))
            .collect::<Result<_, _>>()?;
        self.inner.record_acks(self.puller, applied);
        Ok(())
    }

    /// Sends one chunk of every origin that has entries due. Returns whether
    /// anything was sent.
    async fn ship_due(&mut self) -> Result<bool, Gone> {
        let mut shipped = false;
        for (origin, mark) in self.inner.store.frontier() {
            if origin == self.puller
                || self.excluded.contains(&origin)
                || self.out_of_range.contains_key(&origin)
            {
                continue;
            }
            let cursor = self.cursors.get(&origin).copied().unwrap_or(0);
            if mark.seq <= cursor {
                continue;
            }
            let chunk = self
                .inner
                .store
                .log_since(origin, cursor, MAX_ENTRIES_PER_CHUNK, self.inner.config.chunk_bytes)
                .await;
            match chunk {
                Ok(LogChunk::Entries(entries)) if !entries.is_empty() => {
                    let first_seq = entries[0].seq;
                    let last_seq = first_seq + entries.len() as u64 - 1;
                    let values = entries.into_iter().map(|e| e.value).collect();
                    let message = pb::Entries { origin: Some(origin_to_pb(&origin)), first_seq, values };
                    self.send(pull_response::Kind::Entries(message)).await?;
                    self.cursors.insert(origin, last_seq);
                    shipped = true;
                }
                Ok(LogChunk::Entries(_)) => {}
                Ok(LogChunk::OutOfRange { first_available }) => {
                    // Holding nothing after the gap, the next entry held
                    // will be the next this node commits.
                    let resume_at = first_available.unwrap_or(mark.seq + 1);
                    tracing::warn!(%origin, wanted = cursor + 1, resume_at, "entries a peer needs were purged");
                    let message = pb::OutOfRange {
                        origin: Some(origin_to_pb(&origin)),
                        wanted_seq: cursor + 1,
                        first_available: resume_at,
                    };
                    self.send(pull_response::Kind::OutOfRange(message)).await?;
                    self.out_of_range.insert(origin, resume_at);
                }
                Err(error) => {
                    tracing::error!(%origin, %error, "reading the log for a peer failed");
                    let _ = self
                        .out
                        .send(Err(Status::internal(format!("reading the log of {origin}: {error}"))))
                        .await;
                    return Err(Gone);
                }
            }
        }
        Ok(shipped)
    }
}

/// The first response of a stream to the puller of origin `puller`.
pub(crate) fn welcome(inner: &Inner, puller: &Origin) -> pb::PullResponse {
    pb::PullResponse {
        kind: Some(pull_response::Kind::Welcome(pb::Welcome {
            protocol_version: PROTOCOL_VERSION,
            origin: Some(origin_to_pb(&inner.store.origin())),
            advertise_address: inner.config.advertise_address.clone().unwrap_or_default(),
            holds_your_origin_to: inner.store.frontier().get(puller).map_or(0, |mark| mark.seq),
        })),
    }
}

impl Inner {
    /// What a heartbeat to the puller `to` carries: the committed frontier,
    /// the clock (logical and wall), the peers and the removed nodes this
    /// node knows, and how far `to`'s clock is ahead of this one's.
    pub(crate) async fn heartbeat(
        &self,
        to: NodeId,
    ) -> Result<pb::Heartbeat, consensusdb_storage::StorageError> {
        // The promise first: the frontier read after it covers every entry
        // stamped at or below it.
        let hlc = self.store.clock_promise().await?;
        let frontier = self.store.frontier();
        let caller_ahead_ms = self.clocks().bound_of(to, std::time::Instant::now());
        let peers = self.peers();
        Ok(pb::Heartbeat {
            frontier: frontier_to_pb(&frontier),
            hlc,
            peers: peers
                .shareable()
                .into_iter()
                .map(|(address, node)| known_peer_to_pb(address, node))
                .collect(),
            removed: peers.removed.iter().map(node_to_bytes).collect(),
            members: peers.members.iter().map(|(node, view)| member_to_pb(*node, view)).collect(),
            wall_ms: self.store.wall_clock_ms(),
            caller_ahead_ms,
            log_starts: frontier_to_pb(&self.log_starts()),
            log_holds: peers.log_holds.iter().map(|(node, hold)| log_hold_to_pb(*node, hold)).collect(),
        })
    }
}

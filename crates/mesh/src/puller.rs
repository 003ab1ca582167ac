//! The puller side: one task per peer keeps a Pull stream open, applies
//! what arrives, acknowledges it, and reconnects with backoff when the
//! stream fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use consensusdb_proto::mesh::v1::{self as pb, pull_request, pull_response};
use consensusdb_storage::{ApplyAck, Queued, RawEntry, StorageError};
use consensusdb_types::NodeId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::Inner;
use crate::address::{MAX_KNOWN_PEERS, MAX_MEMBERS, check_peer_address};
use crate::assignment::excluded_for;
use crate::backoff::Backoff;
use crate::error::MeshError;
use crate::peer_events::Heartbeat;
use crate::peer_table::PeerState;
use crate::wire::{
    PROTOCOL_VERSION, frontier_from_pb, frontier_to_pb, known_peer_from_pb, log_hold_from_pb, member_from_pb,
    node_from_bytes, origin_from_pb, origin_to_pb,
};

/// Largest message a puller accepts: a chunk of `chunk_bytes` plus framing.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Messages read ahead of the one being applied. With sources' chunks of
/// at most 1 MiB this bounds a stream's read-ahead to about 16 MiB.
const RECEIVED_MESSAGES: usize = 16;
/// Most bytes of entries applied in one commit.
const APPLY_BYTES: usize = 8 * 1024 * 1024;
/// A stream that stayed up this long counts as healthy: the next failure
/// starts again from the shortest backoff.
const HEALTHY_STREAM: Duration = Duration::from_secs(5);

/// How a stream ended without an error.
enum Ended {
    /// The peer closed it, or this node is stopping.
    Closed,
    /// The address is this node's, another address of a connected node, or
    /// a removed node: stop pulling from it for good.
    Retired(PeerState),
}

/// Pulls from `address` until the node stops or the peer is retired.
pub(crate) async fn run(inner: Arc<Inner>, address: String) {
    let mut backoff = Backoff::new(inner.config.min_backoff, inner.config.max_backoff);
    let mut stop = inner.stop.subscribe();
    let mut bootstrapping = inner.bootstrapping.subscribe();
    loop {
        if *stop.borrow() || inner.peer_state(&address) == Some(PeerState::Removed) {
            return;
        }
        // Entries applied during a snapshot install would be refused.
        tokio::select! {
            _ = bootstrapping.wait_for(|running| !*running) => {}
            () = crate::stopped(&mut stop) => return,
        }
        inner.set_peer_state(&address, PeerState::Connecting, None);
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = pull_once(&inner, &address) => outcome,
            () = crate::stopped(&mut stop) => return,
        };
        inner.peer_disconnected(&address);
        let error = match outcome {
            Ok(Ended::Retired(state)) => {
                inner.set_peer_state(&address, state, None);
                return;
            }
            Ok(Ended::Closed) => "the peer closed the stream".to_string(),
            Err(error) => error.to_string(),
        };
        if started.elapsed() >= HEALTHY_STREAM {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::debug!(peer = %address, %error, ?delay, "replication stream ended; reconnecting");
        inner.set_peer_state(&address, PeerState::BackingOff, Some(error));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = crate::stopped(&mut stop) => return,
        }
    }
}

/// One stream's life: handshake, then apply and acknowledge until it ends.
async fn pull_once(inner: &Arc<Inner>, address: &str) -> Result<Ended, MeshError> {
    let (requests, mut responses) = open_stream(inner, address).await?;
    let source = match admit_source(inner, address, &mut responses).await? {
        Admission::Admitted(source) => source,
        Admission::Retired(state) => return Ok(Ended::Retired(state)),
    };
    tracing::info!(peer = %address, node = %source, "replicating from peer");
    let mut session =
        Session { inner: inner.clone(), address: address.to_string(), source, requests, in_flight: None };
    session.send_progress().await?;
    let (reader, received) = read_ahead(responses);
    let ended = session.run(received).await;
    reader.abort();
    ended
}

/// Connects to `address` and opens a Pull stream with a hello saying what
/// this node has applied.
async fn open_stream(
    inner: &Inner,
    address: &str,
) -> Result<(mpsc::Sender<pb::PullRequest>, Streaming<pb::PullResponse>), MeshError> {
    let channel = inner.connector.connect(address, inner.config.connect_timeout).await?;
    let mut client = ReplicationClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let (requests, outgoing) = mpsc::channel(8);
    let hello = pb::Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: inner.config.cluster_id.clone(),
        origin: Some(origin_to_pb(&inner.store.origin())),
        advertise_address: inner.config.advertise_address.clone().unwrap_or_default(),
        // Nothing excluded before the source is known: it starts by
        // sending every origin, and the first progress narrows that.
        progress: Some(pb::Progress {
            applied: frontier_to_pb(&inner.store.frontier()),
            excluded: Vec::new(),
        }),
    };
    requests
        .send(pb::PullRequest { kind: Some(pull_request::Kind::Hello(hello)) })
        .await
        .map_err(|_| MeshError::StreamClosed)?;
    let responses = client.pull(ReceiverStream::new(outgoing)).await?.into_inner();
    Ok((requests, responses))
}

/// What the source's welcome decides.
enum Admission {
    /// Replicate from this node.
    Admitted(NodeId),
    /// Never pull from this address again.
    Retired(PeerState),
}

/// Reads the source's welcome and decides whether to replicate from it:
/// not from this node itself, a removed node, or a second address of a
/// node already connected. A source holding this node's own origin beyond
/// its log starts a bootstrap.
async fn admit_source(
    inner: &Arc<Inner>,
    address: &str,
    responses: &mut Streaming<pb::PullResponse>,
) -> Result<Admission, MeshError> {
    let Some(pb::PullResponse { kind: Some(pull_response::Kind::Welcome(welcome)) }) =
        responses.message().await?
    else {
        return Err(MeshError::OutOfOrder("the peer did not start with welcome"));
    };
    let source_origin =
        origin_from_pb(welcome.origin.as_ref(), "welcome.origin").map_err(MeshError::malformed)?;
    let source = source_origin.node;
    let own = inner.store.origin();
    if source == own.node {
        return Ok(Admission::Retired(PeerState::Itself));
    }
    // The source read its mark of this origin after this node's seq was at
    // least that high, unless this data directory is older than what the
    // cluster saw.
    let local = inner.store.frontier().get(&own).map_or(0, |mark| mark.seq);
    if welcome.holds_your_origin_to > local {
        let error = MeshError::OwnOriginBeyondLog {
            address: address.to_string(),
            origin: own,
            theirs: welcome.holds_your_origin_to,
            local,
        };
        inner.start_bootstrap(error.to_string());
        return Err(error);
    }
    if !inner.source_connected(address, source_origin) {
        let state = if inner.is_removed(source) { PeerState::Removed } else { PeerState::Alias };
        return Ok(Admission::Retired(state));
    }
    Ok(Admission::Admitted(source))
}

/// One message read from the source: a response, the stream's end, or its error.
type Received = Result<Option<pb::PullResponse>, tonic::Status>;

/// Reads responses on a task of their own into a channel, so the session's
/// select never abandons a half-read message.
fn read_ahead(mut responses: Streaming<pb::PullResponse>) -> (JoinHandle<()>, mpsc::Receiver<Received>) {
    let (incoming, received) = mpsc::channel(RECEIVED_MESSAGES);
    let reader = tokio::spawn(async move {
        loop {
            let message = responses.message().await;
            let end = !matches!(message, Ok(Some(_)));
            if incoming.send(message).await.is_err() || end {
                break;
            }
        }
    });
    (reader, received)
}

/// Takes `first` and every message already received after it, up to
/// [`APPLY_BYTES`] of entries, so entries that arrived while the last chunk
/// was being synced are applied in one commit: a replica keeps up with a
/// source that commits small groups faster than one fsync each. Says how
/// the stream ended, when it did.
fn take_ready(
    first: Option<Received>,
    received: &mut mpsc::Receiver<Received>,
) -> (Vec<pb::PullResponse>, Option<Result<Ended, MeshError>>) {
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut next = first;
    loop {
        match next {
            Some(Ok(Some(response))) => {
                bytes += response_bytes(&response);
                batch.push(response);
            }
            Some(Ok(None)) | None => return (batch, Some(Ok(Ended::Closed))),
            Some(Err(status)) => return (batch, Some(Err(status.into()))),
        }
        if bytes >= APPLY_BYTES {
            return (batch, None);
        }
        match received.try_recv() {
            Ok(message) => next = Some(message),
            Err(_) => return (batch, None),
        }
    }
}

/// Decodes and bounds a heartbeat before anything in it changes state: a
/// peer may not grow this node's tables past their limits, nor hand it an
/// address that is not `host:port`.
fn decode_heartbeat(beat: pb::Heartbeat) -> Result<Heartbeat, tonic::Status> {
    let too_many = |field: &str, count: usize, max: usize| {
        tonic::Status::invalid_argument(format!("{field}: {count} entries, more than the {max} a node keeps"))
    };
    if beat.peers.len() > MAX_KNOWN_PEERS {
        return Err(too_many("heartbeat.peers", beat.peers.len(), MAX_KNOWN_PEERS));
    }
    for (field, count) in [
        ("heartbeat.members", beat.members.len()),
        ("heartbeat.log_holds", beat.log_holds.len()),
        ("heartbeat.removed", beat.removed.len()),
    ] {
        if count > MAX_MEMBERS {
            return Err(too_many(field, count, MAX_MEMBERS));
        }
    }
    let peers = beat
        .peers
        .into_iter()
        .enumerate()
        .map(|(i, peer)| {
            let field = format!("heartbeat.peers[{i}]");
            let (address, node) = known_peer_from_pb(peer, &field)?;
            check_peer_address(&address)
                .map_err(|why| tonic::Status::invalid_argument(format!("{field}.address: {why}")))?;
            Ok((address, node))
        })
        .collect::<Result<_, tonic::Status>>()?;
    Ok(Heartbeat {
        advertised: frontier_from_pb(&beat.frontier, "heartbeat.frontier")?,
        promise: beat.hlc,
        removed: beat
            .removed
            .iter()
            .map(|bytes| node_from_bytes(bytes, "heartbeat.removed"))
            .collect::<Result<_, _>>()?,
        members: beat
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| member_from_pb(m, &format!("heartbeat.members[{i}]")))
            .collect::<Result<_, _>>()?,
        peers,
        wall_ms: beat.wall_ms,
        caller_ahead_ms: beat.caller_ahead_ms,
        log_starts: frontier_from_pb(&beat.log_starts, "heartbeat.log_starts")?,
        log_holds: beat
            .log_holds
            .iter()
            .enumerate()
            .map(|(i, hold)| log_hold_from_pb(hold, &format!("heartbeat.log_holds[{i}]")))
            .collect::<Result<_, _>>()?,
    })
}

/// The entries of one `Entries` message.
fn raw_entries(chunk: pb::Entries) -> Result<Vec<RawEntry>, MeshError> {
    let origin = origin_from_pb(chunk.origin.as_ref(), "entries.origin").map_err(MeshError::malformed)?;
    let count = u64::try_from(chunk.values.len()).unwrap_or(u64::MAX);
    if chunk.first_seq == 0 || chunk.first_seq.checked_add(count).is_none() {
        return Err(MeshError::Malformed(format!(
            "entries.first_seq: {} cannot start {count} entries",
            chunk.first_seq
        )));
    }
    Ok(chunk
        .values
        .into_iter()
        .zip(chunk.first_seq..)
        .map(|(value, seq)| RawEntry { origin, seq, value })
        .collect())
}

/// Logs and counts what applying a peer's entries refused, and ends the
/// stream with it.
fn apply_error(inner: &Inner, peer: &str, error: StorageError) -> MeshError {
    match &error {
        StorageError::OwnOriginAhead { .. } => {
            tracing::error!(%peer, %error, "refusing entries of this node's own origin");
        }
        StorageError::BadEntry { .. } => {
            // Never stored; the stream stops here and restarts at the
            // frontier, so the origin waits until a source sends it whole.
            tracing::error!(%peer, %error, "refused a malformed entry");
            inner.record_refused(peer);
        }
        _ => {}
    }
    MeshError::Apply(error)
}

/// Bytes of entry values a message carries.
fn response_bytes(response: &pb::PullResponse) -> usize {
    match &response.kind {
        Some(pull_response::Kind::Entries(chunk)) => chunk.values.iter().map(Vec::len).sum(),
        _ => 0,
    }
}

/// A connected stream.
struct Session {
    inner: Arc<Inner>,
    address: String,
    source: NodeId,
    requests: mpsc::Sender<pb::PullRequest>,
    /// The last chunk queued for applying and not yet answered, with its
    /// bytes.
    in_flight: Option<(Queued<ApplyAck>, u64)>,
}

impl Session {
    /// Applies and acknowledges what the source sends, and re-sends
    /// progress when the topology changes, until the stream ends.
    async fn run(&mut self, mut received: mpsc::Receiver<Received>) -> Result<Ended, MeshError> {
        let mut topology = self.inner.topology.subscribe();
        loop {
            tokio::select! {
                message = received.recv() => {
                    let (batch, ending) = take_ready(message, &mut received);
                    self.handle(batch).await?;
                    // With more already received, the chunk just queued
                    // commits while the next is staged; otherwise
                    // acknowledge it now.
                    if received.is_empty() {
                        self.settle().await?;
                    }
                    if let Some(ending) = ending {
                        return ending;
                    }
                }
                changed = topology.changed() => {
                    if changed.is_err() {
                        return Ok(Ended::Closed);
                    }
                    if self.inner.is_removed(self.source) {
                        return Ok(Ended::Retired(PeerState::Removed));
                    }
                    self.send_progress().await?;
                }
            }
        }
    }

    /// Handles messages in order; runs of entries are applied together.
    async fn handle(&mut self, messages: Vec<pb::PullResponse>) -> Result<(), MeshError> {
        let mut entries = Vec::new();
        for message in messages {
            match message.kind {
                Some(pull_response::Kind::Entries(chunk)) => entries.extend(raw_entries(chunk)?),
                other => {
                    // Heartbeats and gaps speak of the stream up to here.
                    self.apply(std::mem::take(&mut entries)).await?;
                    self.settle().await?;
                    self.handle_other(other)?;
                }
            }
        }
        self.apply(entries).await
    }

    fn handle_other(&self, message: Option<pull_response::Kind>) -> Result<(), MeshError> {
        match message {
            Some(pull_response::Kind::Heartbeat(beat)) => {
                let heartbeat = decode_heartbeat(beat).map_err(MeshError::malformed)?;
                self.inner.take_heartbeat(&self.address, heartbeat);
                Ok(())
            }
            Some(pull_response::Kind::OutOfRange(gone)) => {
                let origin = origin_from_pb(gone.origin.as_ref(), "out_of_range.origin")
                    .map_err(MeshError::malformed)?;
                tracing::error!(
                    peer = %self.address, %origin, wanted = gone.wanted_seq, first_available = gone.first_available,
                    "a peer purged entries this node still needs; another source or a bootstrap must supply them"
                );
                self.inner.record_out_of_range(
                    &self.address,
                    self.source,
                    origin,
                    gone.wanted_seq,
                    gone.first_available,
                );
                Ok(())
            }
            Some(pull_response::Kind::Entries(_) | pull_response::Kind::Welcome(_)) | None => {
                Err(MeshError::OutOfOrder("unexpected message from the peer"))
            }
        }
    }

    /// Queues entries to be applied in one commit, then settles the chunk
    /// queued before them: the writer stages this chunk while that one is
    /// written.
    async fn apply(&mut self, entries: Vec<RawEntry>) -> Result<(), MeshError> {
        if entries.is_empty() {
            return Ok(());
        }
        let bytes: usize = entries.iter().map(|e| e.value.len()).sum();
        let queued = self
            .inner
            .store
            .queue_apply(entries)
            .await
            .map_err(|error| apply_error(&self.inner, &self.address, error))?;
        self.settle().await?;
        self.in_flight = Some((queued, bytes as u64));
        Ok(())
    }

    /// Waits for the chunk in flight, if any, to commit, then acknowledges it.
    async fn settle(&mut self) -> Result<(), MeshError> {
        let Some((queued, bytes)) = self.in_flight.take() else { return Ok(()) };
        let ack = queued.answer().await.map_err(|error| apply_error(&self.inner, &self.address, error))?;
        self.inner.record_applied(&self.address, ack, bytes);
        self.send_progress().await
    }

    /// Acknowledges the frontier and says which origins to leave out.
    async fn send_progress(&self) -> Result<(), MeshError> {
        let excluded: Vec<_> = {
            let peers = self.inner.peers();
            excluded_for(self.source, &peers.sources(), self.inner.store.origin(), &peers.purged_sources())
                .iter()
                .map(origin_to_pb)
                .collect()
        };
        let progress = pb::Progress { applied: frontier_to_pb(&self.inner.store.frontier()), excluded };
        self.requests
            .send(pb::PullRequest { kind: Some(pull_request::Kind::Progress(progress)) })
            .await
            .map_err(|_| MeshError::StreamClosed)
    }
}

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
use tokio_stream::wrappers::ReceiverStream;

use crate::address::{MAX_KNOWN_PEERS, MAX_MEMBERS, check_peer_address};
use crate::assignment::excluded_for;
use crate::backoff::Backoff;
use crate::membership::PeerState;
use crate::wire::{
    PROTOCOL_VERSION, frontier_from_pb, frontier_to_pb, known_peer_from_pb, log_hold_from_pb, member_from_pb,
    node_from_bytes, origin_from_pb, origin_to_pb,
};
use crate::{Heartbeat, Inner};
use consensusdb_types::error::error_chain;

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
            Err(error) => error,
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
async fn pull_once(inner: &Arc<Inner>, address: &str) -> Result<Ended, String> {
    let channel =
        inner.connector.connect(address, inner.config.connect_timeout).await.map_err(|e| e.to_string())?;
    let mut client = ReplicationClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let (requests, outgoing) = mpsc::channel(8);
    let own = inner.store.origin();
    let hello = pb::Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: inner.config.cluster_id.clone(),
        origin: Some(origin_to_pb(&own)),
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
        .map_err(|_| "closed")?;
    let mut responses = client
        .pull(ReceiverStream::new(outgoing))
        .await
        .map_err(|status| format!("{}: {}", status.code(), status.message()))?
        .into_inner();
    let welcome = match responses.message().await {
        Ok(Some(pb::PullResponse { kind: Some(pull_response::Kind::Welcome(welcome)) })) => welcome,
        Ok(_) => return Err("the peer did not start with welcome".into()),
        Err(status) => return Err(format!("{}: {}", status.code(), status.message())),
    };
    let source_origin =
        origin_from_pb(welcome.origin.as_ref(), "welcome.origin").map_err(|s| s.message().to_string())?;
    let source = source_origin.node;
    if source == own.node {
        return Ok(Ended::Retired(PeerState::Itself));
    }
    // The source read its mark of this origin after this node's seq was at
    // least that high, unless this data directory is older than what the
    // cluster saw: then its next seqs would collide with replicated ones.
    let local = inner.store.frontier().get(&own).map_or(0, |mark| mark.seq);
    if welcome.holds_your_origin_to > local {
        let reason = format!(
            "peer {address} holds this node's origin {own} up to seq {}, beyond its log at {local}",
            welcome.holds_your_origin_to
        );
        inner.start_bootstrap(reason.clone());
        return Err(reason);
    }
    if !inner.source_connected(address, source_origin) {
        return Ok(Ended::Retired(if inner.is_removed(source) {
            PeerState::Removed
        } else {
            PeerState::Alias
        }));
    }
    tracing::info!(peer = %address, node = %source, "replicating from peer");
    let mut session =
        Session { inner: inner.clone(), address: address.to_string(), source, requests, in_flight: None };
    session.send_progress().await?;
    let mut topology = inner.topology.subscribe();
    // Responses are read by their own task into a channel, so the select
    // below never abandons a half-read message.
    let (incoming, mut received) = mpsc::channel(RECEIVED_MESSAGES);
    let reader = tokio::spawn(async move {
        loop {
            let message = responses.message().await;
            let end = !matches!(message, Ok(Some(_)));
            if incoming.send(message).await.is_err() || end {
                break;
            }
        }
    });
    let result = loop {
        tokio::select! {
            message = received.recv() => {
                // Take every message already here, so entries that arrived
                // while the last chunk was being synced are applied in one
                // commit: a replica keeps up with a source that commits
                // small groups faster than one fsync each.
                let mut batch = Vec::new();
                let mut bytes = 0;
                let mut next = message;
                let ending = loop {
                    match next {
                        Some(Ok(Some(response))) => {
                            bytes += response_bytes(&response);
                            batch.push(response);
                        }
                        Some(Ok(None)) | None => break Some(Ok(Ended::Closed)),
                        Some(Err(status)) => break Some(Err(format!("{}: {}", status.code(), status.message()))),
                    }
                    if bytes >= APPLY_BYTES {
                        break None;
                    }
                    match received.try_recv() {
                        Ok(message) => next = Some(message),
                        Err(_) => break None,
                    }
                };
                if let Err(error) = session.handle(batch).await {
                    break Err(error);
                }
                // With more already received, the chunk just queued commits
                // while the next is staged; otherwise acknowledge it now.
                if received.is_empty()
                    && let Err(error) = session.settle().await
                {
                    break Err(error);
                }
                if let Some(ending) = ending {
                    break ending;
                }
            }
            changed = topology.changed() => {
                if changed.is_err() {
                    break Ok(Ended::Closed);
                }
                if inner.is_removed(source) {
                    break Ok(Ended::Retired(PeerState::Removed));
                }
                if let Err(error) = session.send_progress().await {
                    break Err(error);
                }
            }
        }
    };
    reader.abort();
    result
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
fn raw_entries(chunk: pb::Entries) -> Result<Vec<RawEntry>, String> {
    let origin =
        origin_from_pb(chunk.origin.as_ref(), "entries.origin").map_err(|s| s.message().to_string())?;
    let count = u64::try_from(chunk.values.len()).unwrap_or(u64::MAX);
    if chunk.first_seq == 0 || chunk.first_seq.checked_add(count).is_none() {
        return Err(format!("entries.first_seq: {} cannot start {count} entries", chunk.first_seq));
    }
    Ok(chunk
        .values
        .into_iter()
        .zip(chunk.first_seq..)
        .map(|(value, seq)| RawEntry { origin, seq, value })
        .collect())
}

/// Why applying a peer's entries failed, for the stream's error.
fn apply_error(inner: &Inner, peer: &str, error: StorageError) -> String {
    match error {
        StorageError::OwnOriginAhead { .. } => {
            tracing::error!(%peer, %error, "refusing entries of this node's own origin");
            error.to_string()
        }
        StorageError::BadEntry { .. } => {
            // Never stored; the stream stops here and restarts at the
            // frontier, so the origin waits until a source sends it whole.
            tracing::error!(%peer, %error, "refused a malformed entry");
            inner.record_refused(peer);
            error.to_string()
        }
        error => format!("applying entries: {}", error_chain(&error)),
    }
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
    /// Handles messages in order; runs of entries are applied together.
    async fn handle(&mut self, messages: Vec<pb::PullResponse>) -> Result<(), String> {
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

    fn handle_other(&self, message: Option<pull_response::Kind>) -> Result<(), String> {
        match message {
            Some(pull_response::Kind::Heartbeat(beat)) => {
                let heartbeat = decode_heartbeat(beat).map_err(|status| status.message().to_string())?;
                self.inner.take_heartbeat(&self.address, heartbeat);
                Ok(())
            }
            Some(pull_response::Kind::OutOfRange(gone)) => {
                let origin = origin_from_pb(gone.origin.as_ref(), "out_of_range.origin")
                    .map_err(|s| s.message().to_string())?;
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
                Err("unexpected message from the peer".into())
            }
        }
    }

    /// Queues entries to be applied in one commit, then settles the chunk
    /// queued before them: the writer stages this chunk while that one is
    /// written.
    async fn apply(&mut self, entries: Vec<RawEntry>) -> Result<(), String> {
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
    async fn settle(&mut self) -> Result<(), String> {
        let Some((queued, bytes)) = self.in_flight.take() else { return Ok(()) };
        let ack = queued.answer().await.map_err(|error| apply_error(&self.inner, &self.address, error))?;
        self.inner.record_applied(&self.address, ack, bytes);
        self.send_progress().await
    }

    /// Acknowledges the frontier and says which origins to leave out.
    async fn send_progress(&self) -> Result<(), String> {
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
            .map_err(|_| "the stream closed".to_string())
    }
}

//! Layer 4b of ConsensusDB: the leaderless replication mesh.
//!
//! Every node accepts writes into its own log. Each node pulls every other
//! node's entries over one bidirectional stream per peer
//! (`consensusdb.mesh.v1.Replication/Pull`), keyed by its stored frontier,
//! so any node converges to a full copy with no leader and no minimum
//! cluster size:
//!
//! - [`puller`](crate::puller): one task per peer; handshake, apply, acknowledge,
//!   reconnect with backoff.
//! - [`source`](crate::source): serves a peer's stream: catch-up, then live,
//!   for *every* origin it holds, so entries are forwarded along any
//!   connected topology (a chain of data centers converges).
//! - [`assignment`](crate::assignment): each origin is pulled from one preferred
//!   source, so a full mesh does not ship each entry N−1 times.
//! - [`membership`](crate::membership): peers start from seeds and spread in
//!   heartbeats; removal is one admin call.
//! - [`connector`]: the transport seam, where TLS and fault injection plug in.
//!
//! Applying is storage's job (`Store::apply`): idempotent against the
//! frontier, in seq order per origin, under the conflict rule, in the same
//! group commit as the frontier advance and the digest.

pub mod address;
mod assignment;
mod backoff;
mod bootstrap;
mod clock;
pub mod config;
pub mod connector;
mod members;
mod membership;
mod membership_store;
mod puller;
mod purge;
mod service;
mod snapshot;
mod source;
mod status;
mod wire;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use consensusdb_proto::mesh::v1::replication_server::ReplicationServer;
use consensusdb_storage::{ApplyAck, Frontier, Store, WriteHold};
use consensusdb_types::{NodeId, Origin};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use address::check_peer_address;
pub use config::MeshConfig;
pub use connector::{ConnectError, Connecting, Connector, PlainConnector};
pub use service::ReplicationService;
pub use wire::PROTOCOL_VERSION;

use members::MemberView;
use membership::{PeerState, PeerTable};

/// Shared by the pullers, the sources and the service.
///
/// Locks: `peers` and `clocks` are never held at once (each is taken,
/// used and released), so no order between them can deadlock.
pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) config: MeshConfig,
    pub(crate) connector: Arc<dyn Connector>,
    peers: Mutex<PeerTable>,
    /// Bumped when sources connect, disconnect or advertise new origins, and
    /// when nodes are removed: pullers then re-send their exclusions.
    pub(crate) topology: watch::Sender<u64>,
    /// Set once when the node stops; every task watches it.
    pub(crate) stop: watch::Sender<bool>,
    /// Set while a bootstrap runs; pullers wait for it to end.
    pub(crate) bootstrapping: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Versions purged since start, and the last purge's plan.
    versions_purged: std::sync::atomic::AtomicU64,
    last_purge: Mutex<purge::LastPurge>,
    /// What heartbeats tell of each peer's clock.
    clocks: Mutex<clock::ClockOffsets>,
    /// Bootstraps started since the node started.
    bootstraps: std::sync::atomic::AtomicU64,
    /// Per origin, the first seq this node's log holds or will (what it
    /// can supply), as heartbeats tell; refreshed after purges and installs.
    log_starts: Mutex<Frontier>,
}

/// A node's place in the mesh: cheap to clone.
#[derive(Clone)]
pub struct Mesh {
    inner: Arc<Inner>,
}

impl Mesh {
    /// A mesh over `store`, with what the store remembers of the cluster
    /// (members that are down still count until removed); nothing runs
    /// until [`Mesh::start`].
    pub async fn open(
        store: Store,
        config: MeshConfig,
        connector: Arc<dyn Connector>,
    ) -> Result<Self, consensusdb_storage::StorageError> {
        let mut peers = PeerTable::default();
        if let Some(bytes) = store.load_membership().await? {
            match membership_store::decode(&bytes) {
                Ok(remembered) => remembered.restore_into(&mut peers),
                Err(error) if config.forget_damaged_membership => {
                    tracing::warn!(
                        %error,
                        "the stored membership is damaged and forgotten (cluster.forget_damaged_membership): \
                         starting from the seeds; purges wait until a peer lists the members it knows"
                    );
                    peers.forget_members();
                }
                Err(error) => return Err(membership_store::damaged(error)),
            }
        }
        for seed in &config.seeds {
            if Some(seed) != config.advertise_address.as_ref() {
                peers.learn(seed, None);
            }
        }
        let clocks = clock::ClockOffsets::new(config.clock_window(), config.max_clock_offset_ms);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                config,
                connector,
                peers: Mutex::new(peers),
                topology: watch::Sender::new(0),
                stop: watch::Sender::new(false),
                bootstrapping: watch::Sender::new(false),
                tasks: Mutex::new(Vec::new()),
                versions_purged: std::sync::atomic::AtomicU64::new(0),
                last_purge: Mutex::default(),
                clocks: Mutex::new(clocks),
                bootstraps: std::sync::atomic::AtomicU64::new(0),
                log_starts: Mutex::default(),
            }),
        })
    }

    /// Starts pulling from every known peer, and purging. A node that
    /// must bootstrap first (new with peers, or an install cut short)
    /// starts that too; its pullers wait for it.
    pub fn start(&self) {
        let store = &self.inner.store;
        let reason = if store.write_hold(WriteHold::Bootstrap).is_some() {
            Some("a bootstrap was cut short")
        } else if store.is_new() && !self.inner.peers().peers.is_empty() {
            Some("a new node joining through its peers")
        } else {
            None
        };
        if let Some(reason) = reason {
            // Refuse writes before serving starts, and hold pullers back
            // before they start, not once the task runs.
            store.hold_writes(WriteHold::Bootstrap, format!("bootstrapping from a peer ({reason})"));
            self.inner.start_bootstrap(reason.to_string());
        }
        let addresses: Vec<String> = self.inner.peers().peers.keys().cloned().collect();
        for address in addresses {
            self.inner.spawn_puller(address);
        }
        self.inner.spawn(purge::run(self.inner.clone()));
        self.inner.spawn(clock_watch(self.inner.clone()));
    }

    /// Runs one purge round now (tests and admin use; a task also runs one
    /// every `purge_interval`).
    pub async fn purge_now(&self) -> Result<(), consensusdb_storage::StorageError> {
        purge::round(&self.inner).await
    }

    /// The gRPC service other nodes pull from.
    pub fn service(&self) -> ReplicationServer<ReplicationService> {
        ReplicationServer::new(ReplicationService::new(self.inner.clone()))
            .max_decoding_message_size(16 << 20)
    }

    /// Tells every puller and source stream to end. Source streams must end
    /// before the gRPC server can finish a graceful shutdown.
    pub fn begin_stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Stops and waits, five seconds at most in all, for every task; the
    /// ones still running then are aborted.
    pub async fn stop(&self) {
        self.begin_stop();
        let tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!("a replication task did not stop within 5 s; aborting it");
                task.abort();
            }
        }
    }

    /// This node's view of the cluster (what `ClusterStatus` returns).
    pub fn status(&self) -> consensusdb_proto::mesh::v1::ClusterStatusResponse {
        status::build(&self.inner)
    }
}

/// A source's heartbeat, decoded.
#[derive(Default)]
pub(crate) struct Heartbeat {
    pub(crate) advertised: Frontier,
    pub(crate) promise: u64,
    pub(crate) peers: Vec<(String, Option<NodeId>)>,
    pub(crate) removed: Vec<NodeId>,
    pub(crate) members: Vec<(NodeId, MemberView)>,
    /// The source's wall clock when it sent the heartbeat.
    pub(crate) wall_ms: u64,
    /// The source's bound of how far this node's clock is ahead of its own.
    pub(crate) caller_ahead_ms: Option<i64>,
    /// Per origin, the first seq the source can supply.
    pub(crate) log_starts: Frontier,
    /// The log holds the source knows.
    pub(crate) log_holds: Vec<(NodeId, membership::LogHold)>,
}

/// Compares this node's clock with its peers' every heartbeat interval,
/// and holds client writes closed while it is off from most of them.
async fn clock_watch(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut ticks = tokio::time::interval(inner.config.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = ticks.tick() => inner.check_clock(),
        }
    }
}

/// Completes once `stop` is set. The guard `wait_for` returns is dropped
/// here, so callers may hold this future across awaits in `Send` tasks.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

impl Inner {
    pub(crate) fn peers(&self) -> MutexGuard<'_, PeerTable> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump_topology(&self) {
        self.topology.send_modify(|n| *n += 1);
    }

    fn spawn_puller(self: &Arc<Self>, address: String) {
        self.spawn(puller::run(self.clone(), address));
    }

    /// Spawns a task the node waits for when it stops.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if *self.stop.borrow() {
            return;
        }
        let task = tokio::spawn(task);
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    /// Learns a peer address (from a handshake or a heartbeat), with the
    /// node behind it when the teller knows it, and starts pulling from it
    /// if it is new. The address must have been checked
    /// ([`address::check_peer_address`]).
    pub(crate) fn learn(self: &Arc<Self>, address: &str, node: Option<NodeId>) {
        if Some(address) == self.config.advertise_address.as_deref() {
            return;
        }
        if self.peers().learn(address, node) {
            tracing::info!(peer = %address, "learned of a peer");
            self.spawn_puller(address.to_string());
        }
    }

    pub(crate) fn peer_state(&self, address: &str) -> Option<PeerState> {
        self.peers().peers.get(address).map(|p| p.state)
    }

    pub(crate) fn record_peer_error(&self, address: &str, error: String) {
        if let Some(peer) = self.peers().peers.get_mut(address) {
            peer.last_error = error;
        }
    }

    pub(crate) fn set_peer_state(&self, address: &str, state: PeerState, error: Option<String>) {
        if let Some(peer) = self.peers().peers.get_mut(address) {
            // A removal wins over whatever the puller was doing.
            if peer.state != PeerState::Removed {
                peer.state = state;
            }
            if let Some(error) = error {
                peer.last_error = error;
            }
        }
    }

    /// Registers a stream's source after the handshake. Refuses (returns
    /// false) a removed node or one already streaming under another address.
    pub(crate) fn source_connected(&self, address: &str, origin: Origin) -> bool {
        let node = origin.node;
        let mut peers = self.peers();
        if peers.removed.contains(&node) || peers.connected_elsewhere(node, address) {
            return false;
        }
        peers.learn_member(node, &MemberView { origin: Some(origin), ..MemberView::default() });
        if let Some(peer) = peers.peers.get_mut(address) {
            peer.node = Some(node);
            peer.origin = Some(origin);
            peer.state = PeerState::Connected;
            peer.last_error.clear();
        }
        drop(peers);
        self.bump_topology();
        true
    }

    pub(crate) fn peer_disconnected(&self, address: &str) {
        let was_connected = {
            let mut peers = self.peers();
            peers.peers.get_mut(address).is_some_and(|peer| {
                let was = peer.state == PeerState::Connected;
                peer.advertised.clear();
                peer.log_starts.clear();
                peer.heard_at = None;
                was
            })
        };
        if was_connected {
            self.bump_topology();
        }
    }

    /// Peers to bootstrap from: connected ones first, then the rest.
    pub(crate) fn bootstrap_candidates(&self) -> Vec<String> {
        let peers = self.peers();
        let mut candidates: Vec<(bool, String)> = peers
            .peers
            .iter()
            .filter(|(_, p)| p.state.is_pulled())
            .map(|(address, p)| (p.state != PeerState::Connected, address.clone()))
            .collect();
        candidates.sort();
        candidates.into_iter().map(|(_, address)| address).collect()
    }

    /// Whether the next entry of `origin` this node needs is gone from
    /// every source that could supply it ([`PeerTable::purged_everywhere`]).
    /// Peers not reached yet are waited for up to twice the longest
    /// reconnect backoff.
    fn purged_everywhere(&self, peers: &PeerTable, origin: Origin) -> bool {
        let applied = self.store.frontier().get(&origin).map_or(0, |mark| mark.seq);
        peers.purged_everywhere(origin, applied, std::time::Instant::now(), self.config.max_backoff * 2)
    }

    /// Starts a bootstrap unless one is running.
    pub(crate) fn start_bootstrap(self: &Arc<Self>, reason: String) {
        // Raised here, before the task runs, so no puller starts a stream
        // in between.
        if !self.bootstrapping.send_replace(true) {
            self.bootstraps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.spawn(bootstrap::run(self.clone(), reason));
        }
    }

    pub(crate) fn is_removed(&self, node: NodeId) -> bool {
        self.peers().removed.contains(&node)
    }

    /// What a source's heartbeat says: its frontier and clock promise, its
    /// wall clock (for the clock check), the peers, members, removals and
    /// log holds it knows, and where its log starts. Also re-checks
    /// whether entries reported out of range are gone everywhere.
    pub(crate) fn take_heartbeat(self: &Arc<Self>, address: &str, beat: Heartbeat) {
        let Heartbeat {
            advertised,
            promise,
            peers,
            removed,
            members,
            wall_ms,
            caller_ahead_ms,
            log_starts,
            log_holds,
        } = beat;
        // The `peers` lock is released at the end of this statement: the
        // clocks are never touched under it (see `Inner`).
        let source = self.peers().peers.get(address).and_then(|peer| peer.node);
        if let Some(source) = source {
            let own_wall = self.store.wall_clock_ms();
            self.clocks().heartbeat(source, wall_ms, own_wall, caller_ahead_ms, std::time::Instant::now());
        }
        let new_origins = {
            let mut table = self.peers();
            let now_ms = self.store.wall_clock_ms();
            for (node, hold) in &log_holds {
                table.hold_log_for(*node, hold, now_ms, self.config.retention_max_lag_ms);
            }
            let own = self.store.origin();
            table.members_heard();
            for (node, view) in &members {
                table.learn_member(*node, view);
                // What a member applied of this node's origin, as others
                // saw it, counts toward write concerns too: in a chain
                // A–B–C, C's acknowledgement reaches A only this way.
                // Only members this node tracks count (never a removed
                // node, nor one past the member cap).
                if *node != own.node
                    && table.members.contains_key(node)
                    && let Some(mark) = view.applied.get(&own)
                {
                    self.store.record_peer_ack(*node, mark.seq);
                }
            }
            let source = table.peers.get(address).and_then(|peer| peer.origin);
            if let Some(source) = source {
                // The source's own view: what it applied, and its promise.
                let promise_seq = advertised.get(&source).map_or(0, |mark| mark.seq);
                let view =
                    MemberView { origin: Some(source), applied: advertised.clone(), promise, promise_seq };
                table.learn_member(source.node, &view);
            }
            let new = table.peers.get_mut(address).is_some_and(|peer| {
                let new = advertised.keys().any(|origin| !peer.advertised.contains_key(origin));
                peer.advertised = advertised;
                peer.log_starts = log_starts.into_iter().map(|(origin, mark)| (origin, mark.seq)).collect();
                peer.heard_at = Some(std::time::Instant::now());
                new
            });
            // What this source holds may complete the evidence for an
            // origin reported out of range before its holders were known.
            let purged = table
                .out_of_range_origins()
                .into_iter()
                .find(|origin| self.purged_everywhere(&table, *origin));
            if let Some(origin) = purged {
                table.clear_out_of_range();
                drop(table);
                self.start_bootstrap(format!("every source purged entries of {origin} this node needs"));
            }
            new
        };
        let mut changed = new_origins;
        for node in removed {
            changed |= self.remove_node(node);
        }
        if changed {
            self.bump_topology();
        }
        for (address, node) in &peers {
            self.learn(address, *node);
        }
    }

    /// Holds client writes closed while this node's clock is off from most
    /// of its peers' ([`clock`]), and opens them once it agrees again.
    fn check_clock(&self) {
        let names: std::collections::HashMap<NodeId, String> = self
            .peers()
            .peers
            .iter()
            .filter_map(|(address, peer)| Some((peer.node?, format!("{address} ({})", peer.node?))))
            .collect();
        let verdict = self.clocks().verdict(std::time::Instant::now(), |node| {
            names.get(&node).cloned().unwrap_or_else(|| node.to_string())
        });
        let held = self.store.write_hold(WriteHold::ClockOffset);
        match verdict {
            clock::Verdict::Off(reason) => {
                if held.is_none() {
                    tracing::error!(%reason, "refusing client writes");
                }
                self.store.hold_writes(WriteHold::ClockOffset, reason);
            }
            clock::Verdict::Healthy if held.is_some() => {
                tracing::warn!("this node's clock agrees with its peers' again: accepting client writes");
                self.store.release_writes(WriteHold::ClockOffset);
            }
            clock::Verdict::Healthy => {}
        }
    }

    /// Reads again where this node's log of each origin starts (after a
    /// purge or an install, the only changes), for heartbeats.
    pub(crate) async fn refresh_log_starts(&self) -> Result<(), consensusdb_storage::StorageError> {
        let frontier = self.store.frontier();
        let origins: Vec<(Origin, u64)> = frontier.keys().map(|origin| (*origin, 0)).collect();
        let held = self.store.first_held_entries(origins.clone()).await?;
        let starts = origins
            .into_iter()
            .zip(held)
            .map(|((origin, _), held)| {
                let seq = held
                    .map_or_else(|| frontier.get(&origin).map_or(1, |mark| mark.seq + 1), |mark| mark.seq);
                (origin, consensusdb_types::FrontierMark { seq, hlc: 0 })
            })
            .collect();
        *self.log_starts.lock().unwrap_or_else(PoisonError::into_inner) = starts;
        Ok(())
    }

    /// Where this node's log of each origin starts, as last read.
    pub(crate) fn log_starts(&self) -> Frontier {
        self.log_starts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn clocks(&self) -> MutexGuard<'_, clock::ClockOffsets> {
        self.clocks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a node removed. Returns whether that is news.
    pub(crate) fn remove_node(&self, node: NodeId) -> bool {
        let mut peers = self.peers();
        if peers.removed.contains(&node) {
            return false;
        }
        let stopped = peers.remove_node(node);
        drop(peers);
        self.clocks().forget(node);
        self.store.forget_peer(node);
        tracing::warn!(%node, addresses = ?stopped, "node removed from the cluster");
        true
    }

    /// A puller's progress: what it has durably applied.
    pub(crate) fn record_acks(&self, puller: Origin, applied: Frontier) {
        if let Some(own) = applied.get(&self.store.origin()) {
            self.store.record_peer_ack(puller.node, own.seq);
        }
        let view = MemberView { origin: Some(puller), applied, ..MemberView::default() };
        self.peers().learn_member(puller.node, &view);
    }

    /// A peer sent an entry that does not decode (refused, never stored).
    pub(crate) fn record_refused(&self, address: &str) {
        if let Some(peer) = self.peers().peers.get_mut(address) {
            peer.entries_refused += 1;
        }
    }

    pub(crate) fn record_applied(&self, address: &str, ack: ApplyAck, bytes: u64) {
        let mut peers = self.peers();
        if let Some(peer) = peers.peers.get_mut(address) {
            peer.entries_applied += ack.applied;
            peer.entries_received += ack.applied + ack.skipped;
            peer.bytes_received += bytes;
        }
        // Past a source's gap, that source is chosen again: every stream
        // gets a fresh choice of origins.
        if ack.applied > 0 && peers.forget_stale_out_of_range(&self.store.frontier()) {
            drop(peers);
            self.bump_topology();
        }
    }

    /// `source` cannot supply entry `wanted` of `origin`; it can again from
    /// `resume_at` on (an answer of an earlier version without it: never).
    pub(crate) fn record_out_of_range(
        self: &Arc<Self>,
        address: &str,
        source: NodeId,
        origin: Origin,
        wanted: u64,
        resume_at: u64,
    ) {
        let resume_at = if resume_at == 0 { u64::MAX } else { resume_at };
        let everywhere = {
            let mut peers = self.peers();
            if let Some(peer) = peers.peers.get_mut(address) {
                peer.last_error = format!("purged entries of {origin} from seq {wanted} on");
            }
            // A stale report (another source supplied past the gap since)
            // proves nothing.
            peers.report_out_of_range(origin, source, resume_at, std::time::Instant::now());
            peers.forget_stale_out_of_range(&self.store.frontier());
            self.purged_everywhere(&peers, origin)
        };
        // Other sources are asked next (the assignment passes this one over).
        self.bump_topology();
        if everywhere {
            self.peers().clear_out_of_range();
            self.start_bootstrap(format!("every source purged entries of {origin} from seq {wanted} on"));
        }
    }
}

#[cfg(test)]
mod open_tests;

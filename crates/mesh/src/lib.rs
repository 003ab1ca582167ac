//! Layer 3 of ConsensusDB: the leaderless replication mesh, below the
//! client interfaces (api), which ask it for write concerns and its view
//! of the cluster.
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
//! - [`peer_table`](crate::peer_table): what this node knows of each peer
//!   and member; peers start from seeds and spread in heartbeats, removal
//!   is one admin call. [`peer_table_store`](crate::peer_table_store) keeps
//!   it across restarts, and [`peer_events`](crate::peer_events) holds the
//!   reactions to what peers say.
//! - [`purge_plan`](crate::purge_plan): what every member has applied, and
//!   what no member can need any more; [`purge`](crate::purge) runs it.
//! - [`clock_guard`](crate::clock_guard): refuses client writes while this
//!   node's clock is off from most of its peers' ([`clock`](crate::clock)).
//! - [`write_concern`](crate::write_concern): peers' acknowledgements of this
//!   node's writes, which a client write may wait for.
//! - [`cluster_view`]: what this node knows of the cluster, in domain types.
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
mod clock_guard;
pub mod cluster_view;
pub mod config;
pub mod connector;
mod error;
mod peer_events;
mod peer_table;
mod peer_table_store;
mod puller;
mod purge;
mod purge_plan;
mod service;
mod snapshot;
mod source;
mod wire;
mod write_concern;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use consensusdb_proto::mesh::v1::replication_server::ReplicationServer;
use consensusdb_storage::{Frontier, Store, WriteHold};
use consensusdb_types::Origin;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use address::check_peer_address;
pub use cluster_view::{ClusterView, OriginLag, PeerState, PeerView};
pub use config::MeshConfig;
pub use connector::{ConnectError, Connecting, Connector, PlainConnector, TlsConnector};
pub use error::MeshError;
pub use service::ReplicationService;
pub use wire::PROTOCOL_VERSION;
pub use write_concern::{DEFAULT_WRITE_CONCERN_WAIT, WriteConcernError};

use peer_table::PeerTable;

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
    /// What peers acknowledged of this node's own origin: write concerns
    /// wait on it.
    pub(crate) acks: write_concern::PeerAcks,
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
            match peer_table_store::decode(&bytes) {
                Ok(remembered) => remembered.restore_into(&mut peers),
                Err(error) if config.forget_damaged_membership => {
                    tracing::warn!(
                        %error,
                        "the stored membership is damaged and forgotten (cluster.forget_damaged_membership): \
                         starting from the seeds; purges wait until a peer lists the members it knows"
                    );
                    peers.forget_members();
                }
                Err(error) => return Err(peer_table_store::damaged(&error)),
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
                acks: write_concern::PeerAcks::default(),
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
        self.inner.spawn(clock_guard::run(self.inner.clone()));
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

    /// Refuses, before anything is written, a write concern asking more
    /// peers than this node knows. Peers are the other members: nodes
    /// reached or learned of through others, removed ones excepted, never
    /// this node itself or an address no node reached. Members that are
    /// down still count: the wait then ends at the deadline, saying how
    /// many confirmed.
    pub fn check_write_concern(&self, wanted: u32) -> Result<(), WriteConcernError> {
        if wanted == 0 {
            return Ok(());
        }
        let known = self.inner.peers().other_members(self.inner.store.origin().node).count();
        if u32::try_from(known).unwrap_or(u32::MAX) >= wanted {
            return Ok(());
        }
        Err(WriteConcernError::MorePeersThanKnown { wanted, known })
    }

    /// Waits until `wanted` peers have applied this node's committed entry
    /// `seq`, or `deadline` passes ([`DEFAULT_WRITE_CONCERN_WAIT`] if
    /// none). Either way the write stays committed and keeps replicating.
    pub async fn await_write_concern(
        &self,
        seq: u64,
        wanted: u32,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), WriteConcernError> {
        if wanted == 0 {
            return Ok(());
        }
        self.inner.acks.wait(seq, wanted, deadline).await
    }

    /// This node's view of the cluster, as of now (in memory, cheap).
    pub fn view(&self) -> ClusterView {
        cluster_view::build(&self.inner)
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
}

#[cfg(test)]
mod open_tests;

//! The node's Prometheus metrics: requests per operation and code (counted
//! once, in the shared records layer, whichever interface served them),
//! the storage writer's group commits, RocksDB's size and compactions, and
//! replication lag per peer and origin.
//!
//! Figures owned by other layers (storage counters, RocksDB properties,
//! the mesh's view) are copied into the registry when it is scraped, so
//! those layers never depend on this one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use consensusdb_mesh::ClusterView;
use consensusdb_storage::{Counters, StorageStats};
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::connections::Connections;

/// Whether an operation reads or writes, for the status page's rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
}

/// The metrics of one node. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    reads: AtomicU64,
    writes: AtomicU64,
    storage: StorageGauges,
    replication: ReplicationGauges,
    connections: ConnectionGauges,
    security: SecurityCounters,
    /// Serialises scrapes, so counters copied from other layers advance by
    /// their difference once.
    scrape: Mutex<()>,
}

/// Copies of the storage layer's figures.
struct StorageGauges {
    data_bytes: IntGauge,
    sst_bytes: IntGauge,
    memtable_bytes: IntGauge,
    pending_compaction_bytes: IntGauge,
    running_compactions: IntGauge,
    records_estimate: IntGauge,
    writes_committed: IntCounter,
    groups_committed: IntCounter,
    entries_applied: IntCounter,
    conflicts_lost: IntCounter,
    writes_superseded: IntCounter,
    damaged_records_skipped: IntCounter,
    sealed_values_refused: IntCounter,
    values_resealed: IntCounter,
}

/// The mesh's view, refilled on each scrape so removed peers disappear.
struct ReplicationGauges {
    peers: IntGaugeVec,
    lag_entries: IntGaugeVec,
    lag_seconds: GaugeVec,
    peer_entries_applied: IntGaugeVec,
    peer_bytes_received: IntGaugeVec,
    clock_offset_seconds: GaugeVec,
    clock_refusing: IntGauge,
    entries_refused: IntCounter,
    bootstraps: IntCounter,
    uptime_seconds: Gauge,
}

/// The client connections of both servers.
struct ConnectionGauges {
    open: IntGauge,
    refused: IntCounter,
}

/// Callers refused, the node's TLS and its master keys.
struct SecurityCounters {
    /// Requests refused for want of a credential or a permission, by
    /// interface and code.
    requests_refused: IntCounterVec,
    handshakes_refused: IntCounter,
    certificate_reloads: IntCounter,
    certificate_reloads_refused: IntCounter,
    master_key_reloads: IntCounter,
    master_key_reloads_refused: IntCounter,
}

/// What the TLS layer and the master key reloads counted, copied at each
/// scrape.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecurityFigures {
    /// TLS handshakes refused, both ports.
    pub handshakes_refused: u64,
    /// New certificates taken into use without a restart.
    pub certificate_reloads: u64,
    /// Reloads refused (the current certificate kept).
    pub certificate_reloads_refused: u64,
    /// New master key files taken into use without a restart.
    pub master_key_reloads: u64,
    /// Master key reloads refused (the keys in use kept).
    pub master_key_reloads_refused: u64,
}

/// What one registration failure means: a duplicate or malformed metric,
/// a bug.
pub type MetricsError = prometheus::Error;

fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> Result<T, MetricsError> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    register(registry, IntGauge::new(name, help)?)
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    register(registry, IntCounter::new(name, help)?)
}

impl Metrics {
    /// A registry with every metric, including the storage writer's
    /// histograms from `counters`.
    pub fn new(counters: &Counters) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        register(&registry, counters.group_size.clone())?;
        register(&registry, counters.commit_seconds.clone())?;
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "consensusdb_requests_total",
                    "Records requests answered, by interface, operation and code.",
                ),
                &["interface", "operation", "code"],
            )?,
        )?;
        let request_seconds = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "consensusdb_request_duration_seconds",
                    "Seconds to answer a records request (for scans, to open the stream).",
                )
                .buckets(prometheus::exponential_buckets(0.000_1, 2.0, 16)?),
                &["interface", "operation"],
            )?,
        )?;
        let r = &registry;
        let storage = StorageGauges {
            data_bytes: int_gauge(
                r,
                "consensusdb_data_bytes",
                "Bytes of data held: live SST files plus memtables.",
            )?,
            sst_bytes: int_gauge(r, "consensusdb_sst_bytes", "Bytes in live SST files.")?,
            memtable_bytes: int_gauge(r, "consensusdb_memtable_bytes", "Bytes held in memtables.")?,
            pending_compaction_bytes: int_gauge(
                r,
                "consensusdb_pending_compaction_bytes",
                "Bytes RocksDB estimates compaction still has to rewrite.",
            )?,
            running_compactions: int_gauge(r, "consensusdb_running_compactions", "Compactions running now.")?,
            records_estimate: int_gauge(
                r,
                "consensusdb_records_estimate",
                "Records held, including tombstones not yet purged (RocksDB's estimate).",
            )?,
            writes_committed: counter(r, "consensusdb_writes_committed_total", "Client writes committed.")?,
            groups_committed: counter(
                r,
                "consensusdb_group_commits_total",
                "Group commits written and synced.",
            )?,
            entries_applied: counter(
                r,
                "consensusdb_replication_entries_applied_total",
                "Log entries of other nodes applied.",
            )?,
            conflicts_lost: counter(
                r,
                "consensusdb_conflicts_lost_total",
                "Incoming versions that lost to a stored version with a greater stamp.",
            )?,
            writes_superseded: counter(
                r,
                "consensusdb_writes_superseded_total",
                "Client writes refused because a version with a later stamp (from a clock ahead) held their key.",
            )?,
            damaged_records_skipped: counter(
                r,
                "consensusdb_damaged_records_skipped_total",
                "Damaged records (a head, key or value that does not decode) scans skipped.",
            )?,
            sealed_values_refused: counter(
                r,
                "consensusdb_sealed_values_refused_total",
                "Sealed values reads refused: altered on disk, or their data key missing or damaged (DATA_LOSS).",
            )?,
            values_resealed: counter(
                r,
                "consensusdb_values_resealed_total",
                "Values this node sealed again under a newer data key (keys reencrypt).",
            )?,
        };
        let replication = ReplicationGauges {
            peers: register(
                r,
                IntGaugeVec::new(
                    Opts::new("consensusdb_replication_peer", "1 for each known peer, by address and state."),
                    &["peer", "state"],
                )?,
            )?,
            lag_entries: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "consensusdb_replication_lag_entries",
                        "Entries a peer holds of an origin that this node has not applied.",
                    ),
                    &["peer", "origin"],
                )?,
            )?,
            lag_seconds: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "consensusdb_replication_lag_seconds",
                        "How far this node's newest applied entry of an origin trails the peer's.",
                    ),
                    &["peer", "origin"],
                )?,
            )?,
            peer_entries_applied: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "consensusdb_replication_peer_entries_applied",
                        "Entries applied from a peer since this node started.",
                    ),
                    &["peer", "peer_node"],
                )?,
            )?,
            peer_bytes_received: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "consensusdb_replication_peer_bytes_received",
                        "Bytes received from a peer since this node started.",
                    ),
                    &["peer", "peer_node"],
                )?,
            )?,
            clock_offset_seconds: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "consensusdb_clock_offset_seconds",
                        "How far a peer's clock is ahead of this node's (negative: behind), as heartbeats show.",
                    ),
                    &["peer"],
                )?,
            )?,
            clock_refusing: int_gauge(
                r,
                "consensusdb_clock_offset_refusing_writes",
                "1 while this node refuses client writes because its clock is off from most peers' clocks.",
            )?,
            entries_refused: counter(
                r,
                "consensusdb_replication_entries_refused_total",
                "Replicated entries refused (never stored) because they did not decode.",
            )?,
            bootstraps: counter(
                r,
                "consensusdb_bootstraps_total",
                "Bootstraps from a peer's snapshot started.",
            )?,
            uptime_seconds: register(
                r,
                Gauge::new("consensusdb_uptime_seconds", "Seconds since the node started.")?,
            )?,
        };
        let connections = ConnectionGauges {
            open: int_gauge(
                r,
                "consensusdb_connections_open",
                "Client connections open, gRPC and HTTP together.",
            )?,
            refused: counter(
                r,
                "consensusdb_connections_refused_total",
                "Connections closed at once because server.max_connections were open.",
            )?,
        };
        let security = SecurityCounters {
            requests_refused: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "consensusdb_requests_refused_total",
                        "Requests refused before any operation: UNAUTHENTICATED (no credential) or \
                         PERMISSION_DENIED, by interface.",
                    ),
                    &["interface", "code"],
                )?,
            )?,
            handshakes_refused: counter(
                r,
                "consensusdb_tls_handshakes_refused_total",
                "TLS handshakes refused on either port (an unknown CA, no usable identity, a timeout, plaintext).",
            )?,
            certificate_reloads: counter(
                r,
                "consensusdb_tls_certificate_reloads_total",
                "New node certificates taken into use without a restart.",
            )?,
            certificate_reloads_refused: counter(
                r,
                "consensusdb_tls_certificate_reloads_refused_total",
                "Certificate reloads refused: the certificate in use was kept.",
            )?,
            master_key_reloads: counter(
                r,
                "consensusdb_master_key_reloads_total",
                "New master key files taken into use without a restart.",
            )?,
            master_key_reloads_refused: counter(
                r,
                "consensusdb_master_key_reloads_refused_total",
                "Master key reloads refused (unreadable, another cluster's, or losing a key in use): \
                 the keys in use were kept.",
            )?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_seconds,
                reads: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                storage,
                replication,
                connections,
                security,
                scrape: Mutex::new(()),
            }),
        })
    }

    /// Counts one answered request.
    pub(crate) fn observe(&self, interface: &str, operation: &str, kind: Kind, code: &str, started: Instant) {
        let inner = &self.inner;
        inner.requests.with_label_values(&[interface, operation, code]).inc();
        inner
            .request_seconds
            .with_label_values(&[interface, operation])
            .observe(started.elapsed().as_secs_f64());
        match kind {
            Kind::Read => inner.reads.fetch_add(1, Ordering::Relaxed),
            Kind::Write => inner.writes.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Counts a request refused for want of a credential or permission.
    pub(crate) fn refused(&self, interface: &str, code: consensusdb_types::ErrorCode) {
        self.inner.security.requests_refused.with_label_values(&[interface, code.as_str()]).inc();
    }

    /// Read and write requests answered so far, every interface and code.
    pub fn totals(&self) -> RequestTotals {
        RequestTotals {
            reads: self.inner.reads.load(Ordering::Relaxed),
            writes: self.inner.writes.load(Ordering::Relaxed),
        }
    }

    /// The text exposition, with the other layers' figures as of now.
    pub fn render(
        &self,
        counters: &Counters,
        stats: &StorageStats,
        cluster: Option<&ClusterView>,
        connections: Option<&Connections>,
        security_figures: SecurityFigures,
        uptime_seconds: f64,
    ) -> String {
        let _scrape = self.inner.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.copy_storage(counters, stats);
        self.copy_cluster(cluster);
        if let Some(connections) = connections {
            let gauges = &self.inner.connections;
            gauges.open.set(i64::try_from(connections.open()).unwrap_or(i64::MAX));
            advance(&gauges.refused, connections.refused());
        }
        let security = &self.inner.security;
        let figures = security_figures;
        advance(&security.handshakes_refused, figures.handshakes_refused);
        advance(&security.certificate_reloads, figures.certificate_reloads);
        advance(&security.certificate_reloads_refused, figures.certificate_reloads_refused);
        advance(&security.master_key_reloads, figures.master_key_reloads);
        advance(&security.master_key_reloads_refused, figures.master_key_reloads_refused);
        self.inner.replication.uptime_seconds.set(uptime_seconds);
        let mut text = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.inner.registry.gather(), &mut text);
        String::from_utf8_lossy(&text).into_owned()
    }

    fn copy_storage(&self, counters: &Counters, stats: &StorageStats) {
        let gauges = &self.inner.storage;
        let set = |gauge: &IntGauge, value: u64| gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        set(&gauges.data_bytes, stats.data_bytes());
        set(&gauges.sst_bytes, stats.sst_bytes);
        set(&gauges.memtable_bytes, stats.memtable_bytes);
        set(&gauges.pending_compaction_bytes, stats.pending_compaction_bytes);
        set(&gauges.running_compactions, stats.running_compactions);
        set(&gauges.records_estimate, stats.records_estimate);
        let copy =
            |counter: &IntCounter, source: &AtomicU64| advance(counter, source.load(Ordering::Relaxed));
        copy(&gauges.writes_committed, &counters.writes_committed);
        copy(&gauges.groups_committed, &counters.groups_committed);
        copy(&gauges.entries_applied, &counters.entries_applied);
        copy(&gauges.conflicts_lost, &counters.conflicts_lost);
        copy(&gauges.writes_superseded, &counters.writes_superseded);
        copy(&gauges.damaged_records_skipped, &counters.damaged_records_skipped);
        copy(&gauges.sealed_values_refused, &counters.sealed_values_refused);
        copy(&gauges.values_resealed, &counters.values_resealed);
    }

    fn copy_cluster(&self, cluster: Option<&ClusterView>) {
        let gauges = &self.inner.replication;
        gauges.peers.reset();
        gauges.lag_entries.reset();
        gauges.lag_seconds.reset();
        gauges.peer_entries_applied.reset();
        gauges.peer_bytes_received.reset();
        gauges.clock_offset_seconds.reset();
        let Some(cluster) = cluster else { return };
        gauges.clock_refusing.set(i64::from(cluster.clock_refusal.is_some()));
        advance(&gauges.entries_refused, cluster.entries_refused);
        advance(&gauges.bootstraps, cluster.bootstraps);
        for peer in &cluster.peers {
            if let Some(offset_ms) = peer.clock_offset_ms {
                gauges
                    .clock_offset_seconds
                    .with_label_values(&[peer.address.as_str()])
                    .set(offset_ms as f64 / 1000.0);
            }
            // Empty before the peer's first handshake.
            let node = peer.node.map(|node| node.to_string()).unwrap_or_default();
            gauges.peers.with_label_values(&[peer.address.as_str(), peer.state.as_str()]).set(1);
            let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
            gauges
                .peer_entries_applied
                .with_label_values(&[peer.address.as_str(), node.as_str()])
                .set(clamp(peer.entries_applied));
            gauges
                .peer_bytes_received
                .with_label_values(&[peer.address.as_str(), node.as_str()])
                .set(clamp(peer.bytes_received));
            for lag in &peer.lag {
                let origin = lag.origin.to_string();
                gauges
                    .lag_entries
                    .with_label_values(&[peer.address.as_str(), origin.as_str()])
                    .set(clamp(lag.entries));
                gauges
                    .lag_seconds
                    .with_label_values(&[peer.address.as_str(), origin.as_str()])
                    .set(lag.seconds);
            }
        }
    }
}

/// Moves a counter copied from another layer up to that layer's total.
fn advance(counter: &IntCounter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// Requests answered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTotals {
    /// Reads: get, get-recent, get-range, scans.
    pub reads: u64,
    /// Writes: put, batch put, touch, remove.
    pub writes: u64,
}

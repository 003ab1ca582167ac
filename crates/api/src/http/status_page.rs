//! The status page at `/` (one self-contained HTML file, no external
//! assets, refreshing itself) and the JSON it reads, `/v1/status`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use consensusdb_storage::RegionCounts;
use serde::Serialize;
use utoipa::ToSchema;

use super::Gateway;
use super::error::HttpError;
use super::responses::ListErrors;
use crate::metrics::RequestTotals;
use crate::records_api::ServiceError;

const PAGE: &str = include_str!("status_page.html");

/// Regions the page lists, and records counted exactly in each before
/// estimating: bounds the work of one refresh.
const MAX_REGIONS: usize = 50;
const EXACT_UP_TO: u64 = 10_000;
/// How long region counts are reused: several open pages cost one count.
const REGION_COUNTS_TTL: Duration = Duration::from_secs(10);

/// The window rates are averaged over.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(10);
/// How often request totals are sampled for the rates.
pub(crate) const RATE_SAMPLE: Duration = Duration::from_secs(1);

/// Request totals sampled once a second, for rates over the last
/// [`RATE_WINDOW`].
#[derive(Default)]
pub(crate) struct Rates {
    samples: Mutex<VecDeque<(Instant, RequestTotals)>>,
}

impl Rates {
    pub(crate) fn sample(&self, now: Instant, totals: RequestTotals) {
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.push_back((now, totals));
        while samples.len() > 2
            && samples.front().is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            samples.pop_front();
        }
    }

    /// Writes and reads per second, and the seconds they span.
    fn per_second(&self, now: Instant, totals: RequestTotals) -> RatesJson {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((since, first)) = samples.front().copied() else { return RatesJson::default() };
        let seconds = now.duration_since(since).as_secs_f64();
        if seconds <= 0.0 {
            return RatesJson::default();
        }
        RatesJson {
            writes_per_second: totals.writes.saturating_sub(first.writes) as f64 / seconds,
            reads_per_second: totals.reads.saturating_sub(first.reads) as f64 / seconds,
            window_seconds: seconds,
        }
    }
}

/// The region counts last computed, reused for [`REGION_COUNTS_TTL`].
#[derive(Default)]
pub(crate) struct RegionCache {
    last: tokio::sync::Mutex<Option<(Instant, RegionCounts)>>,
}

impl RegionCache {
    async fn get(&self, gateway: &Gateway) -> Result<RegionCounts, ServiceError> {
        let mut last = self.last.lock().await;
        if let Some((at, counts)) = &*last
            && at.elapsed() < REGION_COUNTS_TTL
        {
            return Ok(counts.clone());
        }
        let counts = gateway.store.region_counts(MAX_REGIONS, EXACT_UP_TO).await?;
        *last = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }
}

/// The node's status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusJson {
    /// This node's id, 32 hex digits.
    node_id: String,
    /// Which life of its data directory.
    incarnation: u32,
    /// The server's version.
    version: &'static str,
    /// Unix milliseconds when the node started.
    started_at_ms: u64,
    /// Seconds since then.
    uptime_seconds: f64,
    /// Whether writes are taken (what `/readyz` says).
    ready: bool,
    /// Why not, when not.
    not_ready_reason: Option<String>,
    /// RocksDB's figures.
    storage: StorageJson,
    /// Request rates, every interface.
    rates: RatesJson,
    /// Requests answered since the start, every interface.
    totals: TotalsJson,
    /// Records by tenant and region, the first regions in key order.
    regions: Vec<RegionJson>,
    /// More regions exist than are listed.
    regions_truncated: bool,
    /// The replication mesh, when the node runs one.
    replication: Option<ReplicationJson>,
    /// How the node's ports are secured.
    security: SecurityJson,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecurityJson {
    /// `mtls`, or `plaintext` (`--insecure-plaintext`: development only,
    /// nobody authenticated).
    transport: &'static str,
    /// `sealed` (values encrypted at rest), or `unsealed`
    /// (`--insecure-unsealed`: development only, values in the clear).
    at_rest: &'static str,
    /// Sealed values reads refused (DATA_LOSS): altered on disk, or their
    /// key missing.
    sealed_values_refused: u64,
    /// TLS handshakes refused since the start (an unknown CA, a
    /// certificate without an identity, a timeout), both ports.
    handshakes_refused: u64,
    /// Why the last one was refused.
    last_handshake_refusal: Option<String>,
    /// The node's identity; null in plaintext.
    identity: Option<String>,
    /// When its certificate expires; null in plaintext.
    certificate_not_after: Option<String>,
    /// New certificates taken into use without a restart.
    certificate_reloads: u64,
    /// Reloads refused (the current certificate was kept), and why the
    /// last one was.
    certificate_reloads_refused: u64,
    last_reload_refusal: Option<String>,
    /// The master keys held, by id (never their bytes); null unsealed.
    master_keys: Option<MasterKeysJson>,
    /// New master key files taken into use without a restart.
    master_key_reloads: u64,
    /// Master key reloads refused (the keys in use were kept), and why
    /// the last one was.
    master_key_reloads_refused: u64,
    last_master_key_reload_refusal: Option<String>,
    /// Values this node sealed again under a newer data key.
    values_resealed: u64,
    /// The re-encryptions this node ran since it started, the latest of
    /// each tenant (`consensusdb keys reencrypt`).
    reencryptions: Vec<ReencryptionJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReencryptionJson {
    tenant: String,
    /// `running`, `done`, or `stopped` (on `error`; it resumes when the
    /// node restarts).
    state: &'static str,
    error: Option<String>,
    /// When it started, Unix milliseconds.
    started_at_ms: u64,
    /// Which walk over the tenant's records (another starts if its keys
    /// are rotated meanwhile); the counts are that walk's.
    pass: u32,
    /// The rotation it moves values off (Unix milliseconds); null: never
    /// rotated, only values stored in the clear are sealed.
    rotated_at_ms: Option<u64>,
    /// The tenant's live records when the walk began.
    total: u64,
    /// Records looked at so far.
    scanned: u64,
    /// Values sealed again under this node's current key.
    resealed: u64,
    /// Values under a key made after the last rotation already.
    already: u64,
    /// Records overwritten, removed, expired or shredded meanwhile.
    changed: u64,
    /// Values that could not be opened (left under their old keys), and
    /// the first few of them with why.
    refused: u64,
    refusals: Vec<String>,
}

impl From<consensusdb_storage::ReencryptionProgress> for ReencryptionJson {
    fn from(progress: consensusdb_storage::ReencryptionProgress) -> Self {
        let ms = |hlc: u64| hlc >> consensusdb_types::HybridClock::LOGICAL_BITS;
        Self {
            state: progress.state.as_str(),
            error: progress.state.error().map(str::to_string),
            started_at_ms: ms(progress.started_at.hlc),
            pass: progress.pass,
            rotated_at_ms: progress.rotated_at.map(ms),
            total: progress.total,
            scanned: progress.scanned,
            resealed: progress.resealed,
            already: progress.already,
            changed: progress.changed,
            refused: progress.refused,
            refusals: progress.refusals,
            tenant: progress.tenant,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MasterKeysJson {
    /// Every master key id held, oldest first.
    held: Vec<u32>,
    /// Those staged: they unwrap data keys, but wrap none yet.
    staged: Vec<u32>,
    /// The one that wraps new data keys.
    current: u32,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct StorageJson {
    /// Bytes held in SST files and memtables.
    data_bytes: u64,
    /// Bytes compaction still has to rewrite (estimate).
    pending_compaction_bytes: u64,
    /// Records held, including tombstones not yet purged (estimate).
    records_estimate: u64,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct RatesJson {
    writes_per_second: f64,
    reads_per_second: f64,
    /// The seconds the rates are averaged over.
    window_seconds: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotalsJson {
    writes: u64,
    reads: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RegionJson {
    tenant: String,
    region: String,
    /// Exact up to 10,000, estimated above; includes tombstones not yet
    /// purged.
    records_estimate: u64,
    /// Whether `records_estimate` is an estimate.
    estimated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplicationJson {
    cluster_id: String,
    /// The address peers reach this node at; empty when not advertised.
    advertise_address: String,
    peers: Vec<PeerJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PeerJson {
    address: String,
    /// Null before the first handshake.
    node_id: Option<String>,
    /// connecting, connected, backing_off or removed.
    state: String,
    last_error: String,
    /// Entries the peer holds that this node has not applied, all origins.
    lag_entries: u64,
    /// The largest lag in seconds over the origins.
    lag_seconds: f64,
    entries_applied: u64,
    bytes_received: u64,
    /// The peer fell behind the retention cap and must bootstrap again.
    needs_bootstrap: bool,
    origins: Vec<OriginLagJson>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OriginLagJson {
    /// `node-id/incarnation`.
    origin: String,
    entries: u64,
    seconds: f64,
}

fn security(gateway: &Gateway) -> SecurityJson {
    let current = gateway.tls.as_ref().map(consensusdb_pki::LiveTls::current);
    let reloads = gateway.tls.as_ref().map(consensusdb_pki::LiveTls::reload_stats).unwrap_or_default();
    let master_key_reloads = gateway.master_key_reload_stats();
    SecurityJson {
        transport: if current.is_some() { "mtls" } else { "plaintext" },
        at_rest: if gateway.store.is_sealing() { "sealed" } else { "unsealed" },
        sealed_values_refused: gateway.store.counters().sealed_values_refused.load(Ordering::Relaxed),
        handshakes_refused: gateway.handshake_refusals.count(),
        last_handshake_refusal: gateway.handshake_refusals.last(),
        identity: current.as_ref().map(|tls| tls.identity.to_string()),
        certificate_not_after: current.as_ref().map(|tls| tls.not_after.clone()),
        certificate_reloads: reloads.reloaded,
        certificate_reloads_refused: reloads.refused,
        last_reload_refusal: reloads.last_refusal,
        master_keys: gateway.store.master_keys_in_force().map(|keys| MasterKeysJson {
            held: keys.held,
            staged: keys.staged,
            current: keys.current,
        }),
        master_key_reloads: master_key_reloads.reloaded,
        master_key_reloads_refused: master_key_reloads.refused,
        last_master_key_reload_refusal: master_key_reloads.last_refusal,
        values_resealed: gateway.store.counters().values_resealed.load(Ordering::Relaxed),
        reencryptions: gateway.store.reencryptions().into_iter().map(ReencryptionJson::from).collect(),
    }
}

fn replication(gateway: &Gateway) -> Option<ReplicationJson> {
    let view = gateway.mesh.as_ref()?.view();
    let peers = view
        .peers
        .into_iter()
        .map(|peer| PeerJson {
            node_id: peer.node.map(|node| node.to_string()),
            state: peer.state.as_str().to_string(),
            lag_entries: peer.lag_entries(),
            lag_seconds: peer.lag_seconds(),
            entries_applied: peer.entries_applied,
            bytes_received: peer.bytes_received,
            needs_bootstrap: peer.needs_bootstrap,
            origins: peer
                .lag
                .iter()
                .map(|lag| OriginLagJson {
                    origin: lag.origin.to_string(),
                    entries: lag.entries,
                    seconds: lag.seconds,
                })
                .collect(),
            last_error: peer.last_error,
            address: peer.address,
        })
        .collect();
    Some(ReplicationJson {
        cluster_id: view.cluster_id,
        advertise_address: view.advertise_address.unwrap_or_default(),
        peers,
    })
}

/// The status page.
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// What the status page shows, as JSON.
#[utoipa::path(
    get, path = "/v1/status", tag = "operations",
    responses((status = 200, description = "The node's status.", body = StatusJson), ListErrors)
)]
pub(crate) async fn status(State(gateway): State<Gateway>) -> Result<Json<StatusJson>, HttpError> {
    let stats = gateway.store.stats().await.map_err(ServiceError::from)?;
    let regions = gateway.regions.get(&gateway).await?;
    let now = Instant::now();
    let totals = gateway.metrics.totals();
    let origin = gateway.store.origin();
    let not_ready_reason = gateway.readiness.not_ready_because();
    Ok(Json(StatusJson {
        node_id: origin.node.to_string(),
        incarnation: origin.incarnation,
        version: env!("CARGO_PKG_VERSION"),
        started_at_ms: gateway.started_at_ms,
        uptime_seconds: gateway.started.elapsed().as_secs_f64(),
        ready: not_ready_reason.is_none(),
        not_ready_reason,
        storage: StorageJson {
            data_bytes: stats.data_bytes(),
            pending_compaction_bytes: stats.pending_compaction_bytes,
            records_estimate: stats.records_estimate,
        },
        rates: gateway.rates.per_second(now, totals),
        totals: TotalsJson { writes: totals.writes, reads: totals.reads },
        regions: regions
            .regions
            .into_iter()
            .map(|r| RegionJson {
                tenant: r.major,
                region: r.region,
                records_estimate: r.records,
                estimated: r.estimated,
            })
            .collect(),
        regions_truncated: regions.truncated,
        replication: replication(&gateway),
        security: security(&gateway),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_growth_over_the_sampled_window() {
        let rates = Rates::default();
        let start = Instant::now();
        rates.sample(start, RequestTotals { reads: 10, writes: 100 });
        let later = start + Duration::from_secs(2);
        let measured = rates.per_second(later, RequestTotals { reads: 30, writes: 300 });
        assert_eq!(measured.window_seconds, 2.0);
        assert_eq!(measured.writes_per_second, 100.0);
        assert_eq!(measured.reads_per_second, 10.0);
    }

    #[test]
    fn samples_older_than_the_window_are_dropped() {
        let rates = Rates::default();
        let start = Instant::now();
        for second in 0..30 {
            rates.sample(start + Duration::from_secs(second), RequestTotals { reads: 0, writes: second * 5 });
        }
        let now = start + Duration::from_secs(30);
        let measured = rates.per_second(now, RequestTotals { reads: 0, writes: 150 });
        assert!(measured.window_seconds <= RATE_WINDOW.as_secs_f64() + 1.0, "{measured:?}");
        assert!((measured.writes_per_second - 5.0).abs() < 1e-9, "{measured:?}");
    }
}

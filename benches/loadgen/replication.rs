//! The replication phases.
//!
//! - `catchup`: a follower joins the single load's node before the load,
//!   is stopped while all the events are written, then started again: it
//!   catches up by log from its stored frontier. Events per second until
//!   its frontier equals the source's; the reference is the single load's
//!   own write rate, measured in the same run. Then a brand-new node joins
//!   the same node and bootstraps from a snapshot (`bootstrap` record).
//! - `lag`: a 3-node loopback cluster; one node takes a paced load of
//!   `--lag-rate` events/s while the other two replicate it. The lag of an
//!   event is the time from its acknowledgement on the writing node to the
//!   first moment a replica's reported frontier covers its seq; replicas
//!   are polled every `POLL` (the measurement's resolution). The same phase
//!   reports the bytes and entries each replica received per event, which
//!   show whether a full mesh ships each entry once or N−1 times.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use consensusdb_proto::mesh::v1::{ClusterStatusRequest, ClusterStatusResponse};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::grpc::{self, Client};
use crate::node::NodeProcess;
use crate::report::{Latencies, Tally};
use crate::resources::{self, Server, Snapshot};
use crate::workload::Workload;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How often replicas' frontiers are read during the lag phase.
const POLL: Duration = Duration::from_millis(2);
/// How long a replica may take to catch up before the phase fails.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);

async fn admin(addr: SocketAddr) -> Result<ReplicationClient<Channel>, Error> {
    Ok(ReplicationClient::new(crate::security::get().endpoint(addr).connect().await?))
}

async fn status(client: &mut ReplicationClient<Channel>) -> Result<ClusterStatusResponse, Error> {
    Ok(client.cluster_status(ClusterStatusRequest {}).await?.into_inner())
}

/// The seq `status`'s node has applied of the origin of node `writer`.
fn applied_of(status: &ClusterStatusResponse, writer: &[u8]) -> u64 {
    status
        .frontier
        .iter()
        .find(|mark| mark.origin.as_ref().is_some_and(|o| o.node_id == writer))
        .map_or(0, |mark| mark.seq)
}

fn node_id(status: &ClusterStatusResponse) -> Vec<u8> {
    status.origin.as_ref().map(|o| o.node_id.clone()).unwrap_or_default()
}

/// What a catch-up or bootstrap measured.
pub struct CatchUp {
    pub events: u64,
    pub entries: u64,
    pub wall_s: f64,
    pub resources: Value,
}

/// A node that replicates from the node under test, stopped while the
/// load runs and started again after it, so it catches up by log.
pub struct Follower {
    binary: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    log: std::path::PathBuf,
    source: SocketAddr,
}

impl Follower {
    /// Starts a node seeded with `source`, waits until it has joined
    /// (bootstrapped and streaming), then stops it.
    pub async fn join_and_stop(binary: &Path, source: SocketAddr, scratch: &Path) -> Result<Self, Error> {
        let follower = Self {
            binary: binary.to_path_buf(),
            data_dir: scratch.join("follower-data"),
            log: scratch.join("follower.log"),
            source,
        };
        let node =
            NodeProcess::start_with_peers(binary, &follower.data_dir, &follower.log, &[source]).await?;
        let mut client = admin(node.target().addr).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = status(&mut client).await?;
            if s.bootstrapping.is_empty() && s.peers.iter().any(|p| p.state == "connected") {
                break;
            }
            if Instant::now() > deadline {
                return Err("the follower did not join the node under test".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.stop().await?;
        Ok(follower)
    }

    /// Starts the follower again and times until it has applied every
    /// entry of the source's origin: a catch-up by log from its stored
    /// frontier.
    pub async fn catch_up(&self, events: u64) -> Result<CatchUp, Error> {
        let (measured, node) =
            until_caught_up(&self.binary, self.source, events, &self.data_dir, &self.log).await?;
        node.stop().await?;
        Ok(measured)
    }
}

/// Starts a node on `data_dir` seeded with `source` (which holds `events`
/// events of its own origin) and times until it has applied all of them.
async fn until_caught_up(
    binary: &Path,
    source: SocketAddr,
    events: u64,
    data_dir: &Path,
    log: &Path,
) -> Result<(CatchUp, NodeProcess), Error> {
    let mut source_admin = admin(source).await?;
    let source_status = status(&mut source_admin).await?;
    let writer = node_id(&source_status);
    let entries = applied_of(&source_status, &writer);
    let started = Instant::now();
    let node = NodeProcess::start_with_peers(binary, data_dir, log, &[source]).await?;
    let server = Server::Process(node.target().pid);
    let before = Snapshot::take(server, None);
    let mut client = admin(node.target().addr).await?;
    loop {
        if applied_of(&status(&mut client).await?, &writer) >= entries {
            break;
        }
        if started.elapsed() > CATCH_UP_LIMIT {
            return Err(format!("the node did not catch up within {CATCH_UP_LIMIT:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let after = Snapshot::take(server, None);
    let resources = resources::usage(&before, &after, wall_s, server);
    Ok((CatchUp { events, entries, wall_s, resources }, node))
}

/// A brand-new node joins `source` (one `--peer`): it bootstraps from a
/// snapshot. Times until it holds every entry of the source's origin.
pub async fn bootstrap(
    binary: &Path,
    source: SocketAddr,
    events: u64,
    scratch: &Path,
) -> Result<CatchUp, Error> {
    let (measured, node) = until_caught_up(
        binary,
        source,
        events,
        &scratch.join("bootstrap-data"),
        &scratch.join("bootstrap-node.log"),
    )
    .await?;
    node.stop().await?;
    Ok(measured)
}

/// The record of a catch-up or bootstrap phase; `write_events_per_s` is the
/// rate the source was loaded at in the same run.
pub fn catch_up_record(c: &CatchUp, write_events_per_s: Option<f64>) -> Value {
    let rate = c.events as f64 / c.wall_s;
    let server_cpu_pct = c.resources["server_cpu_pct"].as_f64().unwrap_or(0.0);
    json!({
        "events": c.events,
        "entries": c.entries,
        "errors": 0,
        "wall_s": c.wall_s,
        "events_per_s": rate,
        "node_cpu_us_per_event": server_cpu_pct / 100.0 * c.wall_s * 1e6 / c.events.max(1) as f64,
        "source_write_events_per_s": write_events_per_s,
        "ratio_vs_source_writes": write_events_per_s.map(|w| rate / w),
        "target_events_per_s": 200_000,
        "resources": c.resources,
    })
}

/// Runs the lag phase on a fresh 3-node cluster; returns its record.
pub async fn lag(
    binary: &Path,
    workload: Arc<Workload>,
    rate: f64,
    seconds: f64,
    concurrency: usize,
    scratch: &Path,
) -> Result<Value, Error> {
    let start_node = |name: &str, peers: Vec<SocketAddr>| {
        let (data, log) = (scratch.join(format!("lag-{name}-data")), scratch.join(format!("lag-{name}.log")));
        async move { NodeProcess::start_with_peers(binary, &data, &log, &peers).await }
    };
    let a = start_node("a", Vec::new()).await?;
    let b = start_node("b", vec![a.target().addr]).await?;
    let c = start_node("c", vec![a.target().addr]).await?;
    let replicas = [b.target().addr, c.target().addr];
    // Wait for the full mesh: every node streaming from both others.
    for addr in [a.target().addr, replicas[0], replicas[1]] {
        let mut client = admin(addr).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while status(&mut client).await?.peers.iter().filter(|p| p.state == "connected").count() < 2 {
            if Instant::now() > deadline {
                return Err(format!("node {addr} did not connect to both peers").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let writer = node_id(&status(&mut admin(a.target().addr).await?).await?);
    let events = ((rate * seconds) as usize).min(workload.events.len());
    let acks: Arc<Mutex<Acks>> = Arc::default();
    let clients = grpc::connect(a.target().addr, 4).await?;
    let before = [
        Snapshot::take(Server::Process(b.target().pid), None),
        Snapshot::take(Server::Process(c.target().pid), None),
    ];
    let started = Instant::now();
    let writing = Arc::new(AtomicBool::new(true));
    let watchers: Vec<_> = replicas
        .iter()
        .map(|&addr| tokio::spawn(watch_replica(addr, writer.clone(), acks.clone(), writing.clone())))
        .collect();
    let (tally, errors) = paced_writes(&clients, &workload, events, rate, concurrency, &acks, started).await;
    writing.store(false, Ordering::Release);
    let write_s = started.elapsed().as_secs_f64();
    let mut lag = Latencies::new();
    let mut per_replica = Vec::new();
    for watcher in watchers {
        let replica_lag = watcher.await??;
        lag.merge(&replica_lag);
        per_replica.push(replica_lag.to_json());
    }
    let wall_s = started.elapsed().as_secs_f64();
    let after = [
        Snapshot::take(Server::Process(b.target().pid), None),
        Snapshot::take(Server::Process(c.target().pid), None),
    ];
    let mut shipped = Vec::new();
    for (i, (addr, name)) in replicas.iter().zip(["b", "c"]).enumerate() {
        let s = status(&mut admin(*addr).await?).await?;
        let bytes: u64 = s.peers.iter().map(|p| p.bytes_received).sum();
        let entries: u64 = s.peers.iter().map(|p| p.entries_received).sum();
        let usage = resources::usage(
            &before[i],
            &after[i],
            wall_s,
            Server::Process(if i == 0 { b.target().pid } else { c.target().pid }),
        );
        shipped.push(json!({
            "replica": name,
            "bytes_received_per_event": bytes as f64 / events.max(1) as f64,
            "entries_received_per_event": entries as f64 / events.max(1) as f64,
            "cpu_us_per_event": usage["server_cpu_pct"].as_f64().unwrap_or(0.0) / 100.0 * wall_s * 1e6 / events.max(1) as f64,
        }));
    }
    for node in [a, b, c] {
        node.stop().await?;
    }
    Ok(json!({
        "events": events,
        "acked_events": tally.events,
        "errors": errors,
        "target_rate": rate,
        "achieved_rate": tally.events as f64 / write_s,
        "write_latency": tally.latency.to_json(),
        "lag": lag.to_json(),
        "lag_per_replica": per_replica,
        "poll_interval_us": POLL.as_micros() as u64,
        "target_lag_p99_us": 50_000,
        "shipped": shipped,
    }))
}

/// When each acknowledged write was acknowledged, by the seq the node gave
/// it. Seqs are not event numbers: the node's log also holds entries no
/// client wrote (the data key it makes before a tenant's first write).
#[derive(Default)]
struct Acks {
    at: std::collections::HashMap<u64, Instant>,
    /// The highest seq acknowledged.
    last: u64,
}

/// Writes `events` single events at `rate` per second from `concurrency`
/// writers; event `i` is sent no earlier than `i / rate` seconds after
/// `started`. Records each ack's time by the seq the node gave it.
async fn paced_writes(
    clients: &[Client],
    workload: &Arc<Workload>,
    events: usize,
    rate: f64,
    concurrency: usize,
    acks: &Arc<Mutex<Acks>>,
    started: Instant,
) -> (Tally, u64) {
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (mut client, workload, acks, errors) =
                (clients[w % clients.len()].clone(), workload.clone(), acks.clone(), errors.clone());
            tokio::spawn(async move {
                let mut tally = Tally::new();
                for i in (w..events).step_by(concurrency) {
                    tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / rate)).into())
                        .await;
                    let sent = Instant::now();
                    let outcome = client.put(grpc::put_request(&workload, i)).await.map(|response| {
                        let seq = response.into_inner().head.map_or(0, |h| h.seq);
                        let mut acks = acks.lock().expect("no writer panicked");
                        acks.at.insert(seq, Instant::now());
                        acks.last = acks.last.max(seq);
                        1
                    });
                    tally.record(outcome, sent, &errors, "lag write");
                }
                tally
            })
        })
        .collect();
    let mut tally = Tally::new();
    for writer in writers {
        if let Ok(t) = writer.await {
            tally.merge(&t);
        }
    }
    (tally, errors.load(std::sync::atomic::Ordering::Relaxed))
}

/// Polls one replica until, after the writers are done, it has applied
/// every acknowledged entry of `writer`; returns the lag of each.
async fn watch_replica(
    addr: SocketAddr,
    writer: Vec<u8>,
    acks: Arc<Mutex<Acks>>,
    writing: Arc<AtomicBool>,
) -> Result<Latencies, Error> {
    let mut client = admin(addr).await?;
    let mut lag = Latencies::new();
    let mut seen = 0u64;
    let mut pending: Vec<(u64, Instant)> = Vec::new();
    let deadline = Instant::now() + CATCH_UP_LIMIT;
    loop {
        let done_writing = !writing.load(Ordering::Acquire);
        let applied = applied_of(&status(&mut client).await?, &writer);
        let now = Instant::now();
        // Seqs applied since the last poll arrived now; their acks may not
        // have been seen yet (the replica can apply before the writer reads
        // its ack), so they wait in `pending` until it is.
        pending.extend((seen + 1..=applied).map(|seq| (seq, now)));
        seen = seen.max(applied);
        let last_acked = {
            let acks = acks.lock().expect("no writer panicked");
            pending.retain(|&(seq, arrived)| match acks.at.get(&seq) {
                Some(acked) => {
                    lag.record(arrived.saturating_duration_since(*acked));
                    false
                }
                None => true,
            });
            acks.last
        };
        if done_writing && seen >= last_acked {
            // What is still pending was applied but never acknowledged (a
            // failed write, or an entry no client wrote): it has no lag to
            // measure.
            return Ok(lag);
        }
        if Instant::now() > deadline {
            return Err(format!("replica {addr} applied only {seen} of {last_acked} entries in time").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

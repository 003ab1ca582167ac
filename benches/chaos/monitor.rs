//! The status monitor: polls every node's `ClusterStatus` every second
//! and keeps, per node and process lifetime (generation), the highest
//! `bootstraps` the process reported, the origins it reported and how
//! often it refused client writes for its clock. A node's first process
//! bootstraps once if it joined with peers; any other bootstrap is
//! needless.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Cluster;
use crate::grpc::{self, Admin};
use crate::topology::NODES;

/// How often each node is polled.
const POLL: Duration = Duration::from_secs(1);

/// What the polls saw of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeSeen {
    /// Per generation, the highest `bootstraps` reported.
    pub bootstraps: BTreeMap<u64, u64>,
    /// Every origin (node id, incarnation) it reported.
    pub origins: BTreeSet<(Vec<u8>, u32)>,
    /// Polls that found it refusing client writes for its clock, and the
    /// last reason.
    pub clock_refusals: u64,
    pub last_clock_refusal: String,
    /// Polls answered.
    pub polls: u64,
}

/// What the polls saw, per node.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Indexed by node.
    pub nodes: Vec<NodeSeen>,
}

impl Seen {
    /// Bootstraps beyond the expected ones: one for the first process of
    /// each node that joined with peers (every node but 0), none else.
    pub fn needless_bootstraps(&self) -> u64 {
        let mut needless = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            for (&generation, &bootstraps) in &node.bootstraps {
                let expected = u64::from(i != 0 && generation == 1);
                needless += bootstraps.saturating_sub(expected);
            }
        }
        needless
    }

    /// The bootstraps each node reported, summed over its lifetimes.
    pub fn bootstraps_per_node(&self) -> Vec<u64> {
        self.nodes.iter().map(|node| node.bootstraps.values().sum()).collect()
    }
}

/// The running monitor.
pub struct Monitor {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

/// Polls node `i` once; records what it says under the generation that
/// was current both before and after the call.
async fn poll(cluster: &Cluster, i: usize, client: &mut Option<Admin>, seen: &Mutex<Seen>) {
    let before = cluster.generation(i);
    if client.is_none() {
        *client = grpc::admin(cluster.topology.nodes[i].grpc).await.ok();
    }
    let Some(admin) = client.as_mut() else { return };
    let status = match admin.cluster_status(consensusdb_proto::mesh::v1::ClusterStatusRequest {}).await {
        Ok(answer) => answer.into_inner(),
        Err(_) => {
            *client = None;
            return;
        }
    };
    if cluster.generation(i) != before {
        return;
    }
    let mut seen = seen.lock().expect("the monitor lock is never poisoned");
    let node = &mut seen.nodes[i];
    node.polls += 1;
    let max = node.bootstraps.entry(before).or_default();
    *max = (*max).max(status.bootstraps);
    if let Some(origin) = status.origin {
        node.origins.insert((origin.node_id, origin.incarnation));
    }
    if !status.clock_refusal.is_empty() {
        node.clock_refusals += 1;
        node.last_clock_refusal = status.clock_refusal;
    }
}

impl Monitor {
    /// Starts polling every node every second until `stop`.
    pub fn spawn(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) -> Self {
        let seen = Arc::new(Mutex::new(Seen { nodes: vec![NodeSeen::default(); NODES] }));
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            let mut clients: Vec<Option<Admin>> = vec![None; NODES];
            while !*stop.borrow() {
                for (i, client) in clients.iter_mut().enumerate() {
                    poll(&cluster, i, client, &shared).await;
                }
                let _ = tokio::time::timeout(POLL, stop.changed()).await;
            }
            // One last round, after everything has settled.
            for (i, client) in clients.iter_mut().enumerate() {
                poll(&cluster, i, client, &shared).await;
            }
        });
        Self { seen, task }
    }

    /// Waits for the monitor's last round (after `stop`) and returns what
    /// it saw.
    pub async fn finish(self) -> Seen {
        let _ = self.task.await;
        self.seen.lock().expect("the monitor lock is never poisoned").clone()
    }
}

//! Replication across real in-process nodes, every link through a
//! fault-injecting proxy. Each test is bounded in time.
//!
//! Besides the tests here: [`access`] (tokens and grants on every node), [`clock`] (skewed clocks), [`purges`] (purges
//! that must not misfire: short partitions, snapshot joiners, chains),
//! [`hostile`] (peers that send what must be refused), [`sealing`]
//! (no value in the clear in any node's files) and [`client_encryption`]
//! (values the SDK encrypted, read by another SDK on every node).

mod access;
mod client_encryption;
mod clock;
mod hostile;
mod purges;
mod sealing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use consensusdb_client::{Client, Head, Record, RowKey, Stamp};
use consensusdb_proto::mesh::v1 as pb;
use consensusdb_testkit::{TestCluster, eventually};
use futures::TryStreamExt;

const CONVERGE: Duration = Duration::from_secs(30);
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

fn key(minor: &str) -> consensusdb_client::RecordKey {
    RowKey::new("acme", "ACCOUNT", minor).at(None)
}

/// Every live record of the tenant on one node: key → (value, stamp).
async fn everything(client: &Client) -> BTreeMap<String, (Vec<u8>, Stamp)> {
    let records: Vec<_> = client.scan_tenant("acme").stream().try_collect().await.expect("scan");
    let mut out = BTreeMap::new();
    for record in records {
        let minor = record.key.row.minor.clone();
        assert!(
            out.insert(minor.clone(), (record.value, record.head.stamp)).is_none(),
            "{minor} scanned twice"
        );
    }
    out
}

/// Runs `body` with a time bound, so a hang fails the test instead of CI.
async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_written_concurrently_converge_to_identical_state() {
    bounded(async {
        const WRITES_PER_NODE: usize = 60;
        let cluster = TestCluster::start(3).await;
        // A slow link and, half-way, every connection of another dropped:
        // streams must reconnect and resume from the frontier.
        cluster.link(0, 1).delay(Duration::from_millis(20));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..3)
            .map(|n| {
                let client = cluster.client(n);
                let acknowledged = acknowledged.clone();
                tokio::spawn(async move {
                    for i in 0..WRITES_PER_NODE {
                        // Keys 0..20 are written on every node: same-key conflicts.
                        let minor = format!("k{}", i % 20);
                        let value = format!("node{n}-{i}");
                        if i % 10 == 9 {
                            let batch =
                                (0..5).map(|b| Record::new(key(&format!("b{n}-{i}-{b}")), value.clone()));
                            client.put_batch(batch).await.expect("batch");
                        } else if i % 7 == 6 {
                            client.remove(key(&minor)).await.expect("remove");
                        } else {
                            client.put(Record::new(key(&minor), value)).await.expect("put");
                        }
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        eventually(CONVERGE, "half the writes are acknowledged", async || {
            match acknowledged.load(Ordering::Relaxed) {
                done if done >= 3 * WRITES_PER_NODE / 2 => Ok(()),
                done => Err(done),
            }
        })
        .await;
        cluster.link(2, 0).drop_connections();
        for writer in writers {
            writer.await.expect("writer");
        }
        let digest = cluster.converge(CONVERGE).await;
        assert_eq!(digest.frontier.len(), 3, "one origin per node");
        let views = [
            everything(&cluster.client(0)).await,
            everything(&cluster.client(1)).await,
            everything(&cluster.client(2)).await,
        ];
        assert!(!views[0].is_empty());
        assert_eq!(views[0], views[1]);
        assert_eq!(views[1], views[2]);
        cluster.shutdown().await;
    })
    .await;
}

/// One acknowledged write and what it left on its key.
#[derive(Clone)]
struct Acked {
    head: Head,
    value: Option<String>,
}

/// Keeps, per key, the acknowledged version with the greatest stamp: what
/// every node must end up showing.
#[derive(Default)]
struct Model {
    winners: BTreeMap<String, Acked>,
    acknowledged: usize,
}

impl Model {
    fn record(&mut self, minor: &str, head: Head, value: Option<String>) {
        self.acknowledged += 1;
        let entry = self.winners.entry(minor.to_string()).or_insert(Acked { head, value: value.clone() });
        if head.stamp > entry.head.stamp {
            *entry = Acked { head, value };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_and_heal_loses_duplicates_and_resurrects_nothing() {
    bounded(async {
        // Node 2's clock runs 5 s ahead: its stamps win ties it should not,
        // and the others' clocks are dragged only within the drift bound.
        // The skew is within the maximum offset, so node 2 keeps writing.
        let cluster = TestCluster::start_with(3, |i, config| {
            config.cluster.max_clock_offset_ms = 10_000;
            if i == 2 {
                config.dev.clock_skew_ms = 5_000;
            }
        })
        .await;
        let mut model = Model::default();
        for i in 0..10 {
            let minor = format!("k{i}");
            let value = format!("before-{i}");
            let head = cluster.client(0).put(Record::new(key(&minor), value.clone())).await.expect("put");
            model.record(&minor, head, Some(value));
        }
        cluster.converge(CONVERGE).await;
        cluster.partition(&[0, 1], &[2]);
        for i in 0..10 {
            let minor = format!("k{i}");
            // Both sides write the same keys: removes on one side, re-puts
            // and new values on the other.
            let (left, right) = (cluster.client(i % 2), cluster.client(2));
            if i % 3 == 0 {
                let head = left.remove(key(&minor)).await.expect("remove");
                model.record(&minor, head, None);
                let value = format!("right-{i}");
                let head = right.put(Record::new(key(&minor), value.clone())).await.expect("put");
                model.record(&minor, head, Some(value));
            } else {
                let value = format!("left-{i}");
                let head = left.put(Record::new(key(&minor), value.clone())).await.expect("put");
                model.record(&minor, head, Some(value));
                let head = right.remove(key(&minor)).await.expect("remove");
                model.record(&minor, head, None);
            }
            let fresh = format!("p{i}");
            let head = right.put(Record::new(key(&fresh), "island".to_string())).await.expect("put");
            model.record(&fresh, head, Some("island".into()));
        }
        // The sides really are apart.
        assert!(everything(&cluster.client(0)).await.keys().all(|k| !k.starts_with('p')));
        cluster.heal();
        cluster.converge(CONVERGE).await;
        let (mut lost, mut resurrected, mut duplicated) = (0, 0, 0);
        for node in 0..3 {
            let view = everything(&cluster.client(node)).await;
            for (minor, winner) in &model.winners {
                match (&winner.value, view.get(minor)) {
                    (Some(value), Some((seen, stamp)))
                        if seen == value.as_bytes() && *stamp == winner.head.stamp => {}
                    (Some(_), _) => lost += 1,
                    (None, Some(_)) => resurrected += 1,
                    (None, None) => {}
                }
            }
            duplicated += view.keys().filter(|k| !model.winners.contains_key(*k)).count();
        }
        println!(
            "{} acknowledged, {lost} lost, {duplicated} duplicated, {resurrected} resurrected",
            model.acknowledged
        );
        assert_eq!((lost, duplicated, resurrected), (0, 0, 0));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chain_converges_through_its_middle_node() {
    bounded(async {
        let cluster = TestCluster::start(3).await;
        // 0 and 2 never reach each other: two data centers linked through 1.
        cluster.partition(&[0], &[2]);
        cluster.client(0).put(Record::new(key("from-a"), "a")).await.expect("put");
        cluster.client(2).put(Record::new(key("from-c"), "c")).await.expect("put");
        let digest = cluster.converge(CONVERGE).await;
        assert_eq!(digest.frontier.len(), 2, "the two writers' origins, everywhere");
        let seen = everything(&cluster.client(0)).await;
        assert!(seen.contains_key("from-c"), "c's write reached a through b");
        assert!(everything(&cluster.client(2)).await.contains_key("from-a"));
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_resumes_from_its_frontier_and_a_wiped_one_is_a_new_origin() {
    bounded(async {
        let mut cluster = TestCluster::start(3).await;
        for i in 0..20 {
            cluster
                .client(i % 3)
                .put(Record::new(key(&format!("k{i}")), format!("v{i}")))
                .await
                .expect("put");
        }
        cluster.converge(CONVERGE).await;
        let old_origin = status(&cluster, 1).await.origin;
        // Down while the others write; back, it catches up from its frontier.
        cluster.stop(1).await;
        for i in 20..40 {
            cluster
                .client(i % 2 * 2)
                .put(Record::new(key(&format!("k{i}")), format!("v{i}")))
                .await
                .expect("put");
        }
        cluster.restart(1).await;
        let digest = cluster.converge(CONVERGE).await;
        assert_eq!(digest.frontier.len(), 3);
        assert_eq!(status(&cluster, 1).await.origin, old_origin, "a restart keeps the origin");
        // Wiped: a new node id, so its new writes (seq 1, 2, ...) are not
        // taken for the old origin's, which everyone already holds. Its
        // seq 1 is the tenant's data key it makes first; the put is 2.
        cluster.wipe(1).await;
        let new_origin = status(&cluster, 1).await.origin;
        assert_ne!(new_origin, old_origin);
        let head = cluster.client(1).put(Record::new(key("after-wipe"), "new")).await.expect("put");
        assert_eq!(head.seq, 2);
        let digest = cluster.converge(CONVERGE).await;
        assert_eq!(digest.frontier.len(), 4, "old and new origin of node 1 are both kept");
        let everywhere = everything(&cluster.client(0)).await;
        assert_eq!(everywhere.len(), 41);
        assert_eq!(everything(&cluster.client(1)).await, everywhere, "the wiped node got everything back");
        cluster.shutdown().await;
    })
    .await;
}

async fn status(cluster: &TestCluster, i: usize) -> pb::ClusterStatusResponse {
    cluster.status(i).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_joins_a_loaded_cluster_from_one_seed() {
    bounded(async {
        let mut cluster = TestCluster::start(3).await;
        let load: Vec<_> = (0..3)
            .map(|n| {
                let client = cluster.client(n);
                tokio::spawn(async move {
                    for i in 0..100 {
                        client.put(Record::new(key(&format!("n{n}-{i}")), "v")).await.expect("put");
                    }
                })
            })
            .collect();
        let joined = cluster.join(0).await;
        for writer in load {
            writer.await.expect("writer");
        }
        cluster.converge(CONVERGE).await;
        assert_eq!(everything(&cluster.client(joined)).await.len(), 300);
        // It found every peer from the one seed, and every peer found it.
        for node in 0..4 {
            wait_for_status(&cluster, node, "connect to the 3 others", |s| {
                s.peers.iter().filter(|p| p.state == "connected").count() == 3
            })
            .await;
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_mesh_ships_each_entry_about_once_per_node() {
    bounded(async {
        let cluster = TestCluster::start(3).await;
        cluster.converge(CONVERGE).await;
        // Each origin is pulled from its own node once that node is
        // connected; until then other sources may ship it too.
        for node in 0..3 {
            wait_for_status(&cluster, node, "connect to the 2 others", |s| {
                s.peers.iter().filter(|p| p.state == "connected").count() == 2
            })
            .await;
        }
        let client = cluster.client(0);
        for i in 0..200 {
            client.put(Record::new(key(&format!("k{i}")), "v")).await.expect("put");
        }
        cluster.converge(CONVERGE).await;
        // 200 puts, after the entry holding the tenant's data key that
        // node 0 makes before its first write to the tenant.
        let entries = 201;
        for node in [1, 2] {
            let applied: u64 = status(&cluster, node).await.entries_applied;
            assert_eq!(applied, entries, "node {node} applied each entry once");
            let received: u64 = status(&cluster, node).await.peers.iter().map(|p| p.entries_received).sum();
            assert_eq!(received, entries, "node {node} received each entry once, not once per peer");
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_of_different_clusters_never_merge() {
    bounded(async {
        // Another cluster has its own CA: the handshake refuses its nodes
        // before any hello (whose cluster id check stays as a second line).
        let other = consensusdb_testkit::TestPki::for_cluster("other");
        let other_node = other.node("n1");
        let cluster = TestCluster::start_unready(2, move |i, config| {
            if i == 1 {
                config.cluster.id = "other".into();
                config.tls = other_node.clone();
            }
        })
        .await;
        let refused_peer = |s: &pb::ClusterStatusResponse| {
            s.peers.first().is_some_and(|peer| peer.last_error.contains("invalid peer certificate"))
        };
        let status = wait_for_status(&cluster, 0, "refuse the peer of another cluster", refused_peer).await;
        // A new node whose only peer is in another cluster never gets a
        // snapshot, so it never takes writes.
        assert!(status.bootstrapping.contains("bootstrapping"), "{status:?}");
        // Node 1 answers only to its own cluster's credentials.
        let status = eventually(CONVERGE, "node 1: refuse the peer of another cluster", async || {
            let mut admin = other.replication(cluster.nodes[1].addr).await;
            let status =
                admin.cluster_status(pb::ClusterStatusRequest {}).await.expect("status").into_inner();
            if refused_peer(&status) { Ok(status) } else { Err(status) }
        })
        .await;
        assert!(status.bootstrapping.contains("bootstrapping"), "{status:?}");
        let refused = cluster.client(0).put(Record::new(key("k"), "v")).await.unwrap_err();
        assert_eq!(refused.code(), consensusdb_client::ErrorCode::Unavailable, "{refused}");
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_node_is_dropped_by_every_peer() {
    bounded(async {
        let cluster = TestCluster::start(3).await;
        cluster.converge(CONVERGE).await;
        let victim = status(&cluster, 2).await.origin.expect("origin").node_id;
        let removed = cluster
            .admin(0)
            .await
            .remove_peer(pb::RemovePeerRequest { node_id: victim.clone(), address: String::new() })
            .await
            .expect("remove")
            .into_inner();
        assert!(removed.removed);
        // Node 1 hears of it through node 0's heartbeats.
        wait_for_status(&cluster, 1, "drop the removed node", |s| {
            s.peers.iter().any(|p| p.node_id == victim && p.state == "removed")
        })
        .await;
        cluster.shutdown().await;
    })
    .await;
}

/// Waits until `check` holds for node `i`'s status.
async fn wait_for_status(
    cluster: &TestCluster,
    i: usize,
    what: &str,
    check: impl Fn(&pb::ClusterStatusResponse) -> bool,
) -> pb::ClusterStatusResponse {
    eventually(CONVERGE, &format!("node {i}: {what}"), async || {
        let status = status(cluster, i).await;
        if check(&status) { Ok(status) } else { Err(status) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tombstone_is_purged_only_once_stable_and_no_key_comes_back() {
    bounded(async {
        // Node 0's clock runs 5 s behind (within the maximum offset): its
        // put, made after the remove, is stamped before it (a late, older
        // write).
        let cluster = TestCluster::start_with(3, |i, config| {
            config.cluster.max_clock_offset_ms = 10_000;
            if i == 0 {
                config.dev.clock_skew_ms = -5_000;
            }
        })
        .await;
        cluster.client(1).put(Record::new(key("k"), "first")).await.expect("put");
        cluster.converge(CONVERGE).await;
        cluster.partition(&[0], &[1, 2]);
        let removed = cluster.client(1).remove(key("k")).await.expect("remove");
        let older = cluster.client(0).put(Record::new(key("k"), "older")).await.expect("put");
        assert!(older.stamp < removed.stamp, "the put on the skewed node is the older version");
        // Purges run every 100 ms; node 0 has not seen the tombstone, so
        // nodes 1 and 2 must keep it. A fixed wait: what is checked is that
        // nothing happens, so ten rounds get the chance to misfire.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        for node in [1, 2] {
            let status = status(&cluster, node).await;
            assert_eq!(status.versions_purged, 0, "node {node} purged while a member lacked the tombstone");
            assert!(status.stable_hlc < removed.stamp.hlc);
        }
        cluster.heal();
        cluster.converge(CONVERGE).await;
        for node in 0..3 {
            wait_for_status(&cluster, node, "purge the tombstone", |s| s.versions_purged >= 1).await;
        }
        let digest = cluster.converge(CONVERGE).await;
        for node in 0..3 {
            let seen = everything(&cluster.client(node)).await;
            assert!(!seen.contains_key("k"), "node {node} brought the removed key back: {seen:?}");
        }
        let conflicts: u64 = {
            let mut total = 0;
            for node in 0..3 {
                total += status(&cluster, node).await.conflicts;
            }
            total
        };
        println!(
            "tombstone purged on 3 of 3 nodes after the heal; older put lost {conflicts} conflicts; digests equal at {} origins",
            digest.frontier.len()
        );
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_back_after_the_log_was_purged_bootstraps_and_keeps_its_own_writes() {
    bounded(async {
        const RETENTION_MAX_LAG_MS: u64 = 300;
        let mut cluster = TestCluster::start_with(3, |_, config| {
            config.cluster.retention_max_lag_ms = RETENTION_MAX_LAG_MS;
        })
        .await;
        for i in 0..20 {
            cluster.client(0).put(Record::new(key(&format!("a{i}")), "v")).await.expect("put");
        }
        cluster.converge(CONVERGE).await;
        // Node 2 writes something no one pulls, then goes down.
        cluster.partition(&[2], &[0, 1]);
        cluster.client(2).put(Record::new(key("only-on-2"), "mine")).await.expect("put");
        cluster.stop(2).await;
        cluster.heal();
        let mut first_missed_ms = 0;
        for i in 20..120 {
            let head = cluster.client(0).put(Record::new(key(&format!("a{i}")), "v")).await.expect("put");
            if i == 20 {
                first_missed_ms = head.stamp.physical_ms();
            }
            if i == 60 {
                // Spread the writes over more than the retention cap: the
                // later ones are stamped further past the first entry node 2
                // lacks than a lagging member is waited for.
                eventually(CONVERGE, "the clock passes the retention cap", async || {
                    let now_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .expect("after 1970")
                        .as_millis() as u64;
                    if now_ms > first_missed_ms + RETENTION_MAX_LAG_MS { Ok(()) } else { Err(now_ms) }
                })
                .await;
            }
        }
        let origin0 = status(&cluster, 0).await.origin.expect("origin");
        // Nodes 0 and 1 no longer wait for node 2: the log node 2 needs goes.
        for node in [0, 1] {
            wait_for_status(&cluster, node, "purge past the down node", |s| {
                s.log_purged_through.iter().any(|m| m.origin.as_ref() == Some(&origin0) && m.seq > 20)
            })
            .await;
        }
        cluster.restart(2).await;
        cluster.converge(CONVERGE).await;
        let everywhere = everything(&cluster.client(0)).await;
        assert_eq!(everywhere.len(), 121, "every write of node 0 and node 2's own");
        assert_eq!(everything(&cluster.client(2)).await, everywhere);
        assert_eq!(everywhere["only-on-2"].0, b"mine");
        cluster.shutdown().await;
    })
    .await;
}

/// Copies a directory tree.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("creates");
    for entry in std::fs::read_dir(from).expect("reads") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copies");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_restored_from_an_old_copy_becomes_a_new_incarnation() {
    bounded(async {
        let mut cluster = TestCluster::start(3).await;
        for i in 0..5 {
            cluster.client(1).put(Record::new(key(&format!("k{i}")), "v")).await.expect("put");
        }
        cluster.converge(CONVERGE).await;
        let backup = tempfile::tempdir().expect("temp dir");
        cluster.stop(1).await;
        copy_dir(cluster.data_dir(1), backup.path());
        cluster.restart(1).await;
        for i in 5..10 {
            cluster.client(1).put(Record::new(key(&format!("k{i}")), "v")).await.expect("put");
        }
        cluster.converge(CONVERGE).await;
        let old = status(&cluster, 1).await.origin.expect("origin");
        // Restore the old copy: its log ends at seq 5, the cluster has 10.
        cluster.stop(1).await;
        std::fs::remove_dir_all(cluster.data_dir(1)).expect("removes");
        copy_dir(backup.path(), cluster.data_dir(1));
        cluster.restart(1).await;
        let restored = wait_for_status(&cluster, 1, "take a new incarnation", |s| {
            s.origin.as_ref().is_some_and(|o| o.incarnation == old.incarnation + 1)
                && s.bootstrapping.is_empty()
        })
        .await;
        assert_eq!(restored.origin.as_ref().map(|o| &o.node_id), Some(&old.node_id), "same node id");
        let head = cluster.client(1).put(Record::new(key("after"), "v")).await.expect("put");
        // Seq 1 of the new incarnation is the data key it makes for the
        // tenant before its first write there.
        assert_eq!(head.seq, 2, "the new incarnation starts its own seqs");
        let digest = cluster.converge(CONVERGE).await;
        assert_eq!(digest.frontier.len(), 2, "the old incarnation's entries are kept as their own origin");
        assert_eq!(everything(&cluster.client(1)).await.len(), 11);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_concern_waits_for_peers_and_says_how_many_confirmed() {
    bounded(async {
        let cluster = TestCluster::start(3).await;
        let client = cluster.client(0);
        client.put(Record::new(key("two"), "v").write_concern(2)).await.expect("2 peers confirm");
        // Both peers have it the moment the put returns.
        for node in [1, 2] {
            assert!(everything(&cluster.client(node)).await.contains_key("two"));
        }
        cluster.partition(&[0], &[1, 2]);
        let record = Record::new(key("alone"), "v").write_concern(1).timeout(Duration::from_millis(800));
        let error = client.put(record).await.unwrap_err();
        assert_eq!(error.code(), consensusdb_client::ErrorCode::DeadlineExceeded, "{error}");
        assert!(error.to_string().contains("only 0 of the 1 peers"), "{error}");
        // Committed locally all the same, and it replicates after the heal.
        assert!(everything(&client).await.contains_key("alone"));
        cluster.heal();
        cluster.converge(CONVERGE).await;
        assert!(everything(&cluster.client(2)).await.contains_key("alone"));
        cluster.shutdown().await;
    })
    .await;
}

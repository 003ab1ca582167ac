//! Purges that must not misfire: a short partition while a node writes its
//! first entry, a node that joins from a snapshot while the others purge,
//! and a chain whose ends never reach each other.

use std::time::{Duration, Instant};

use consensusdb_client::Record;
use consensusdb_testkit::TestCluster;

use crate::{CONVERGE, bounded, key, wait_for_status};

/// Bootstraps each node started, as its status counts them.
async fn bootstraps(cluster: &TestCluster) -> Vec<u64> {
    let mut counts = Vec::new();
    for i in 0..cluster.nodes.len() {
        counts.push(cluster.status(i).await.bootstraps);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_partition_while_a_node_writes_its_first_entry_costs_no_bootstrap() {
    bounded(async {
        // Default retention (24 h): nothing here comes close to it.
        let cluster = TestCluster::start(3).await;
        for writer in 0..2 {
            cluster.client(writer).put(Record::new(key(&format!("w{writer}")), "v")).await.expect("put");
        }
        cluster.converge(CONVERGE).await;
        let before = bootstraps(&cluster).await;
        // Node 0 is cut off for a few seconds; meanwhile node 2 writes its
        // first entry ever and node 1 goes on writing.
        cluster.partition(&[0], &[1, 2]);
        cluster.client(2).put(Record::new(key("first-of-2"), "v")).await.expect("put");
        for i in 0..20 {
            cluster.client(1).put(Record::new(key(&format!("during-{i}")), "v")).await.expect("put");
        }
        // Purges run every 100 ms: plenty of rounds while node 0 is away.
        // A fixed wait: the partition's length is the stimulus, and what is
        // checked is that none of those rounds misfires.
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.heal();
        let healed = Instant::now();
        cluster.converge(CONVERGE).await;
        let took = healed.elapsed();
        assert_eq!(bootstraps(&cluster).await, before, "a blip cost a bootstrap");
        cluster.client(0).put(Record::new(key("after"), "v")).await.expect("node 0 takes writes");
        println!(
            "partition while a node wrote its first entry: no bootstrap; heal to equal digests in {took:.2?}"
        );
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joining_from_a_snapshot_keeps_its_log_while_the_others_purge() {
    bounded(async {
        let mut cluster = TestCluster::start(2).await;
        let value = vec![b'x'; 1024];
        for i in 0..2_000 {
            cluster
                .client(i % 2)
                .put(Record::new(key(&format!("before-{i:04}")), value.clone()))
                .await
                .expect("put");
        }
        cluster.converge(CONVERGE).await;
        // The joiner's snapshot comes slowly; the others write and purge
        // all the while.
        let joiner = cluster.join_unready(0).await;
        cluster.link(0, joiner).delay(Duration::from_millis(20));
        cluster.link(joiner, 0).delay(Duration::from_millis(20));
        let writing = {
            let (a, b) = (cluster.client(0), cluster.client(1));
            tokio::spawn(async move {
                for i in 0..200 {
                    let client = if i % 2 == 0 { &a } else { &b };
                    client.put(Record::new(key(&format!("during-{i:03}")), "v")).await.expect("put");
                    // Paced, not awaited: the writes are meant to span the
                    // joiner's slow snapshot.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        cluster.ready(joiner).await;
        writing.await.expect("writer");
        cluster.heal();
        cluster.converge(CONVERGE).await;
        assert_eq!(
            cluster.status(joiner).await.bootstraps,
            1,
            "the joiner bootstrapped once, then caught up by log"
        );
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_a_chain_the_ends_purge_too_and_every_digest_agrees_after_removes() {
    bounded(async {
        // 0 and 2 never reach each other: two data centers linked through 1.
        // Each is seeded with the other's address, so each knows it only
        // as an address it cannot reach, and learns the node behind it
        // from 1.
        let cluster = TestCluster::start_cut(3, &[(0, 2)], |_, _| {}).await;
        for node in 0..3 {
            cluster.ready(node).await;
        }
        for end in [0, 2] {
            for i in 0..5 {
                cluster.client(end).put(Record::new(key(&format!("n{end}-{i}")), "v")).await.expect("put");
            }
        }
        cluster.converge(CONVERGE).await;
        for end in [0, 2] {
            for i in 0..5 {
                cluster.client(end).remove(key(&format!("n{end}-{i}"))).await.expect("remove");
            }
        }
        let removed = Instant::now();
        // Every node purges all ten tombstones, the ends included, so the
        // digests, which count tombstones, agree again.
        for node in 0..3 {
            wait_for_status(&cluster, node, "purge the ten tombstones", |s| s.versions_purged >= 10).await;
        }
        let digest = cluster.converge(CONVERGE).await;
        let took = removed.elapsed();
        assert_eq!(digest.frontier.len(), 2, "the two writers' origins, everywhere");
        println!("chain: ten removes on the ends, purged on all three, equal digests {took:.2?} after the last remove");
        cluster.shutdown().await;
    })
    .await;
}

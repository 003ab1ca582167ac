//! Client-side encryption across nodes: what an SDK encrypted on one node
//! is read in the clear by another SDK, on another node and on a node
//! that bootstrapped from a snapshot, with the same password; the
//! fingerprint travels with the value through replication, touches and
//! snapshots. Two clients that make a tenant's keychain at once, on two
//! sides of a partition, both keep their values readable.

use std::time::Duration;

use consensusdb_client::{Client, ErrorCode, KdfParams, Keychain, Record, RecordKey, RowKey};
use consensusdb_testkit::{TestCluster, eventually};

use crate::{CONVERGE, TEST_TIMEOUT};

const PASSWORD: &str = "a long and shared passphrase";

/// A cheap derivation: these tests are about where keys and values go,
/// not about Argon2id's cost.
const QUICK: KdfParams = KdfParams { memory_kib: 1024, iterations: 1, parallelism: 1 };

fn key(minor: &str) -> RecordKey {
    RowKey::new("acme", "PRIVATE", minor).at(None)
}

fn plaintext(minor: &str) -> String {
    format!("what only the tenant may read: {minor}")
}

/// Waits until `client` reads every one of `minors` in the clear.
async fn reads_all(client: &Client, node: usize, minors: &[&str]) {
    for minor in minors {
        eventually(CONVERGE, &format!("node {node} reads {minor}"), async || {
            match client.get(key(minor)).await {
                Ok(Some(got)) if got.value == plaintext(minor).as_bytes() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_one_sdk_encrypted_on_one_node_another_reads_on_every_node() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = TestCluster::start(3).await;
        let writer = cluster.client(0);
        let keychain = Keychain::from_password_with(&writer, "acme", PASSWORD, QUICK).await.expect("made");
        let encrypted = |minor: &str| Record::new(key(minor), plaintext(minor)).encrypt(&keychain);
        writer.put(encrypted("single")).await.expect("put");
        writer.put_batch([encrypted("batch-0"), encrypted("batch-1")]).await.expect("batch");
        writer.put(encrypted("touched")).await.expect("put");
        // Node 1 touches it: the new version, of node 1's origin, keeps
        // the client's envelope and fingerprint.
        let touching = cluster.client(1);
        let touched = eventually(CONVERGE, "node 1 touches what node 0 wrote", async || {
            touching.touch(key("touched"), Some(Duration::from_secs(3600))).await
        })
        .await;
        assert_eq!(touched.client_key, Some(keychain.fingerprint()));
        cluster.converge(CONVERGE).await;
        let joiner = cluster.join(0).await;
        cluster.converge(CONVERGE).await;

        let minors = ["single", "batch-0", "batch-1", "touched"];
        for node in 1..=joiner {
            let client = cluster.client(node);
            let same = Keychain::from_password(&client, "acme", PASSWORD).await.expect("opens");
            assert_eq!(same.fingerprints(), vec![keychain.fingerprint()], "node {node}: the stored keychain");
            reads_all(&client.with_keychain(same), node, &minors).await;
            let refused = client.get(key("single")).await.expect_err("no keychain");
            assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "node {node}");
        }
        cluster.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keychains_made_at_once_on_both_sides_of_a_partition_both_stay_readable() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = TestCluster::start(3).await;
        cluster.partition(&[0], &[1, 2]);
        let (left, right) = (cluster.client(0), cluster.client(1));
        let on_left = Keychain::from_password_with(&left, "acme", PASSWORD, QUICK).await.expect("made on 0");
        let on_right =
            Keychain::from_password_with(&right, "acme", PASSWORD, QUICK).await.expect("made on 1");
        assert_ne!(on_left.fingerprint(), on_right.fingerprint(), "two salts, two keys");
        left.put(Record::new(key("left"), plaintext("left")).encrypt(&on_left)).await.expect("put");
        right.put(Record::new(key("right"), plaintext("right")).encrypt(&on_right)).await.expect("put");
        cluster.heal();
        cluster.converge(CONVERGE).await;

        // Any client now derives both keys, opens values under either and
        // encrypts with the older keychain, whichever side made it.
        let mut chosen = Vec::new();
        for node in 0..3 {
            let client = cluster.client(node);
            let both = Keychain::from_password(&client, "acme", PASSWORD).await.expect("opens");
            let mut fingerprints = both.fingerprints();
            fingerprints.sort();
            let mut made = vec![on_left.fingerprint(), on_right.fingerprint()];
            made.sort();
            assert_eq!(fingerprints, made, "node {node} holds both keychains");
            chosen.push(both.fingerprint());
            reads_all(&client.with_keychain(both), node, &["left", "right"]).await;
        }
        assert!(chosen.windows(2).all(|w| w[0] == w[1]), "every node encrypts with the same key: {chosen:?}");
        cluster.shutdown().await;
    })
    .await
    .expect("bounded");
}

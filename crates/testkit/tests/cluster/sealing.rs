//! Values are sealed at rest on every node: whatever path a value takes
//! (a put, a batch, a touch, replication, a bootstrap snapshot), no data
//! directory of the cluster holds it in the clear. The same run with
//! sealing off finds the values, so the search can fail. A tenant
//! shredded on one node is unreadable on every node, then gone. A
//! re-encryption on one node moves every node's copy of the old values
//! to its new key.

use std::path::Path;
use std::time::Duration;

use consensusdb_client::{Compression, ErrorCode, Record, RowKey};
use consensusdb_proto::v1;
use consensusdb_proto::v1::keys_client::KeysClient;
use consensusdb_testkit::{TestCluster, eventually};
use futures::TryStreamExt;

use crate::{CONVERGE, TEST_TIMEOUT};

const MARKER: &str = "cluster-plaintext-marker-b81d";

fn record(minor: &str) -> Record {
    // Uncompressed, so a value stored in the clear shows the marker.
    Record::new(RowKey::new("acme", "SEALED", minor).at(None), format!("{MARKER}-{minor}"))
        .compression(Compression::None)
}

/// Files under `dir` whose bytes hold the marker.
fn files_holding_marker(dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return hits };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_holding_marker(&path));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

/// Writes on two nodes every way, lets a fourth node bootstrap, checks
/// every node reads every value, stops the cluster (flushing every
/// node's memtables) and returns the files holding the marker.
async fn files_in_the_clear(sealed: bool) -> Vec<String> {
    let mut cluster =
        TestCluster::start_with(3, move |_, config| config.dev.insecure_unsealed = !sealed).await;
    let (first, second) = (cluster.client(0), cluster.client(1));
    first.put(record("single")).await.expect("put");
    first.put_batch([record("batch-0"), record("batch-1")]).await.expect("batch");
    first.put(record("touched")).await.expect("put");
    // Node 1 touches a value node 0 sealed: it opens it with node 0's key
    // and seals the new version under its own.
    let touched = RowKey::new("acme", "SEALED", "touched").at(None);
    eventually(CONVERGE, "node 1 touches what node 0 wrote", async || {
        second.touch(touched.clone(), Some(Duration::from_secs(3600))).await
    })
    .await;
    second.put(record("on-second")).await.expect("put on another origin");
    cluster.converge(CONVERGE).await;
    let joiner = cluster.join(0).await;
    cluster.converge(CONVERGE).await;
    for node in 0..=joiner {
        let client = cluster.client(node);
        for minor in ["single", "batch-0", "batch-1", "touched", "on-second"] {
            let key = RowKey::new("acme", "SEALED", minor).at(None);
            eventually(CONVERGE, &format!("node {node} reads {minor}"), async || {
                match client.get(key.clone()).await {
                    Ok(Some(got)) if got.value == format!("{MARKER}-{minor}").as_bytes() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
    }
    let dirs: Vec<_> = (0..=joiner).map(|node| cluster.data_dir(node).to_path_buf()).collect();
    for node in 0..=joiner {
        cluster.stop(node).await;
    }
    let hits = dirs.iter().flat_map(|dir| files_holding_marker(dir)).collect();
    cluster.shutdown().await;
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_node_holds_a_value_in_the_clear_and_without_sealing_the_search_finds_them() {
    tokio::time::timeout(2 * TEST_TIMEOUT, async {
        let sealed = files_in_the_clear(true).await;
        assert!(sealed.is_empty(), "plaintext on disk: {sealed:?}");
        let unsealed = files_in_the_clear(false).await;
        assert!(unsealed.len() >= 4, "every node's directory holds the values: {unsealed:?}");
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_shredded_on_one_node_is_unreadable_on_every_node_and_its_records_go() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = TestCluster::start(3).await;
        let (first, third) = (cluster.client(0), cluster.client(2));
        for i in 0..20 {
            first.put(record(&format!("a-{i}"))).await.expect("put");
        }
        // Node 2 writes to the tenant too: its own data key goes as well.
        third.put(record("from-third")).await.expect("put");
        let other = Record::new(RowKey::new("other", "SEALED", "kept").at(None), "kept");
        first.put(other.clone()).await.expect("put");
        cluster.converge(CONVERGE).await;

        let mut keys = KeysClient::new(cluster.admin_channel(1).await);
        let listed = keys.list_keys(v1::ListKeysRequest { tenant: "acme".into() }).await.expect("lists");
        assert_eq!(listed.into_inner().keys.len(), 2, "one data key per node that wrote");
        let shredded = keys
            .shred_tenant(v1::ShredTenantRequest { tenant: "acme".into() })
            .await
            .expect("a cluster admin shreds")
            .into_inner();
        assert_eq!(shredded.keys_destroyed, 2);

        // Every node refuses the tenant's values (until its records are
        // removed, then they are simply gone); the other tenant reads.
        let probe = RowKey::new("acme", "SEALED", "a-7").at(None);
        for node in 0..3 {
            let client = cluster.client(node);
            eventually(CONVERGE, &format!("node {node} refuses or has removed acme"), async || match client
                .get(probe.clone())
                .await
            {
                Err(error) if error.code() == ErrorCode::FailedPrecondition => Ok(()),
                Ok(None) => Ok(()),
                other => Err(format!("{other:?}")),
            })
            .await;
            let kept = client.get(other.key().clone()).await.expect("other tenant reads").expect("present");
            assert_eq!(kept.value, b"kept");
        }
        // The destruction itself reached every node (the removal of the
        // records would hide a key that was not destroyed from the reads
        // above): every node lists both keys as destroyed.
        for node in 0..3 {
            let mut keys = KeysClient::new(cluster.admin_channel(node).await);
            eventually(CONVERGE, &format!("node {node} holds acme's keys destroyed"), async || {
                let listed = keys
                    .list_keys(v1::ListKeysRequest { tenant: "acme".into() })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .keys;
                let destroyed = listed.iter().filter(|key| key.destroyed && key.master_key_id == 0).count();
                if destroyed == 2 && listed.len() == 2 { Ok(()) } else { Err(format!("{listed:?}")) }
            })
            .await;
        }
        // The records go, everywhere.
        for node in 0..3 {
            let client = cluster.client(node);
            eventually(CONVERGE, &format!("node {node} holds no acme record"), async || {
                let left: Vec<_> =
                    client.scan_tenant("acme").stream().try_collect().await.map_err(|e| e.to_string())?;
                if left.is_empty() { Ok(()) } else { Err(format!("{} records left", left.len())) }
            })
            .await;
        }
        cluster.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reencryption_on_one_node_moves_every_nodes_copy_of_the_old_values_to_its_new_key() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut cluster = TestCluster::start(3).await;
        let minors: Vec<String> = (0..10).map(|i| format!("old-{i}")).chain(["from-third".into()]).collect();
        for minor in &minors[..10] {
            cluster.client(0).put(record(minor)).await.expect("put");
        }
        cluster.client(2).put(record("from-third")).await.expect("put");
        cluster.converge(CONVERGE).await;

        let mut keys = KeysClient::new(cluster.admin_channel(1).await);
        keys.rotate_tenant_key(v1::RotateTenantKeyRequest { tenant: "acme".into() }).await.expect("rotates");
        let started = keys.reencrypt(v1::ReencryptRequest { tenant: "acme".into() }).await.expect("starts");
        assert_eq!(started.into_inner().tenant, "acme");
        let progress = eventually(CONVERGE, "the re-encryption ends", async || {
            let progress = keys
                .get_reencryption(v1::GetReencryptionRequest { tenant: "acme".into() })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            match progress.state() {
                v1::ReencryptionState::ReencryptionRunning => Err(format!("{progress:?}")),
                _ => Ok(progress),
            }
        })
        .await;
        assert_eq!(progress.state(), v1::ReencryptionState::ReencryptionDone, "{progress:?}");
        assert_eq!((progress.resealed, progress.refused), (11, 0), "{progress:?}");
        cluster.converge(CONVERGE).await;
        for node in 0..3 {
            let client = cluster.client(node);
            for minor in &minors {
                let got = client.get(RowKey::new("acme", "SEALED", minor).at(None)).await.expect("reads");
                assert_eq!(got.expect("present").value, format!("{MARKER}-{minor}").as_bytes(), "{minor}");
            }
        }

        // On disk, every node holds every value sealed by node 1, whoever
        // wrote it.
        let dirs: Vec<_> = (0..3).map(|node| cluster.data_dir(node).to_path_buf()).collect();
        for node in 0..3 {
            cluster.stop(node).await;
        }
        let master_key_file = cluster.pki().ca_file().with_file_name("master.key");
        let (masters, _) = consensusdb_pki::master_key_file::load(&master_key_file).expect("loads");
        let masters = std::sync::Arc::new(masters);
        let mut sealers = std::collections::HashSet::new();
        for dir in &dirs {
            let options = consensusdb_storage::StoreOptions {
                master_keys: Some(masters.clone()),
                ..consensusdb_storage::StoreOptions::new(dir)
            };
            let store = consensusdb_storage::Store::open(options).expect("opens");
            let query = consensusdb_storage::ScanQuery {
                scope: consensusdb_storage::ScanScope::Tenant { major: "acme".into() },
                limit: 1_000,
                page_token: None,
                read: consensusdb_storage::ReadOptions::default(),
            };
            let mut pages = store.scan(query).expect("scans");
            let mut seen = 0;
            while let Some(page) = pages.recv().await {
                for record in page.expect("a page").records {
                    let seal = record.head.seal.expect("sealed");
                    let resealed = seal.resealed.expect("sealed again");
                    assert_ne!(resealed.by, record.head.stamp.origin, "not by its writer");
                    sealers.insert(resealed.by);
                    assert!(record.value.expect("a value").starts_with(MARKER.as_bytes()));
                    seen += 1;
                }
            }
            assert_eq!(seen, minors.len(), "{}", dir.display());
            store.close().await.expect("closes");
        }
        assert_eq!(sealers.len(), 1, "one node sealed them all again: {sealers:?}");
        cluster.shutdown().await;
    })
    .await
    .expect("bounded");
}

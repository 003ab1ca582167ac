//! Re-encryption, end to end in one process: values under keys a rotation
//! retired are sealed again under the running node's current key, the
//! reseals replicate and every node keeps the same ciphertext, after which
//! the retired keys can be destroyed with no value lost; a reseal never
//! brings back a version removed or replaced meanwhile; a re-encryption
//! cut short resumes at the next start; values stored in the clear get
//! sealed.

use std::sync::Arc;

use consensusdb_seal::{KeyId, MasterKeys};
use consensusdb_types::{Head, RecordKey};

use crate::sealing::key_records::{KeyRef, reencryption_key};
use crate::sealing_tests::{
    MARKER, key, put, reopen, replicate, sealed, stored_bytes, unsealed, value, value_of,
};
use crate::*;

/// Starts re-encrypting `tenant` on `store` and waits until it ends.
pub(crate) async fn reencrypt(store: &Store, tenant: &str) -> ReencryptionProgress {
    store.start_reencryption(tenant).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let progress = store.reencryption(tenant).expect("started");
        if progress.state != ReencryptionState::Running {
            return progress;
        }
        assert!(std::time::Instant::now() < deadline, "not done within 10 s: {progress:?}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

async fn head(store: &Store, record: RecordKey) -> Option<Head> {
    let read = ReadOptions { head_only: true, raw: false };
    store.get(record, read).await.unwrap().map(|record| record.head)
}

/// The data key that seals `minor`'s value on `store`.
async fn sealing_key(store: &Store, minor: &str) -> KeyRef {
    let head = head(store, key(minor)).await.expect("present");
    let seal = head.seal.expect("sealed");
    KeyRef { tenant: "acme".into(), origin: seal.key_origin(&head.stamp), id: KeyId(seal.key_id) }
}

/// The counts of a finished re-encryption: (total, scanned, resealed,
/// already, changed, refused).
fn counts(progress: &ReencryptionProgress) -> (u64, u64, u64, u64, u64, u64) {
    assert_eq!(progress.state, ReencryptionState::Done, "{progress:?}");
    (
        progress.total,
        progress.scanned,
        progress.resealed,
        progress.already,
        progress.changed,
        progress.refused,
    )
}

#[tokio::test]
async fn a_reencryption_moves_every_retired_value_to_a_new_key_on_every_node_so_retired_keys_can_go() {
    let keys = Arc::new(MasterKeys::generate());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    let old: Vec<String> = (0..10).map(|i| format!("first-{i}")).collect();
    for minor in &old {
        first.put(put(minor), None).await.unwrap();
    }
    second.put(put("second-0"), None).await.unwrap();
    replicate(&first, &second).await;
    replicate(&second, &first).await;
    first.rotate_tenant_key("acme").await.unwrap();
    first.put(put("after"), None).await.unwrap();
    replicate(&first, &second).await;
    let before = stored_bytes(&second, &key("first-0"));

    // The second node re-encrypts: every value under a key the rotation
    // retired (both nodes' first keys) is sealed under its new key.
    let progress = reencrypt(&second, "acme").await;
    assert_eq!(counts(&progress), (12, 12, 11, 1, 0, 0), "{progress:?}");
    let new_key = KeyRef { tenant: "acme".into(), origin: second.origin(), id: KeyId(2) };
    for minor in old.iter().map(String::as_str).chain(["second-0"]) {
        assert_eq!(sealing_key(&second, minor).await, new_key, "{minor}");
        assert_eq!(value(&second, minor).await.unwrap(), value_of(minor), "{minor}");
    }
    assert_eq!(sealing_key(&second, "after").await.origin, first.origin(), "sealed after the rotation: kept");
    assert_ne!(stored_bytes(&second, &key("first-0")), before, "new ciphertext");
    let resealed = second.counters().values_resealed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(resealed, 11);

    // The reseals replicate: the first node ends with the same versions,
    // stamps and ciphertext, and reads them all.
    replicate(&second, &first).await;
    for minor in old.iter().map(String::as_str).chain(["second-0", "after"]) {
        assert_eq!(head(&first, key(minor)).await, head(&second, key(minor)).await, "{minor}");
        assert_eq!(stored_bytes(&first, &key(minor)), stored_bytes(&second, &key(minor)), "{minor}");
        assert_eq!(value(&first, minor).await.unwrap(), value_of(minor), "{minor}");
    }

    // Nothing needs the retired keys any more: destroyed, every value
    // still reads on both nodes.
    let retired = [
        KeyRef { tenant: "acme".into(), origin: first.origin(), id: KeyId(1) },
        KeyRef { tenant: "acme".into(), origin: second.origin(), id: KeyId(1) },
    ];
    for retired in &retired {
        first.remove(retired.record_key(), None).await.unwrap();
    }
    replicate(&first, &second).await;
    for store in [&first, &second] {
        for minor in old.iter().map(String::as_str).chain(["second-0", "after"]) {
            assert_eq!(value(store, minor).await.unwrap(), value_of(minor), "{minor}");
        }
    }
    // Run again, it finds everything under a current key.
    let again = reencrypt(&first, "acme").await;
    assert_eq!(counts(&again), (12, 12, 0, 12, 0, 0), "{again:?}");
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test]
async fn a_reseal_never_brings_back_a_version_removed_or_replaced_meanwhile_and_concurrent_ones_agree() {
    let keys = Arc::new(MasterKeys::generate());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    for minor in ["removed", "replaced", "both"] {
        first.put(put(minor), None).await.unwrap();
    }
    first.rotate_tenant_key("acme").await.unwrap();
    replicate(&first, &second).await;

    // The second node re-encrypts all three; meanwhile, before its reseals
    // arrive, the first removes one and writes another again.
    assert_eq!(counts(&reencrypt(&second, "acme").await), (3, 3, 3, 0, 0, 0));
    first.remove(key("removed"), None).await.unwrap();
    let mut replacement = put("replaced");
    replacement.value = b"the newer value".to_vec();
    first.put(replacement, None).await.unwrap();
    // And the first re-encrypts too, at the same time as the second.
    assert_eq!(counts(&reencrypt(&first, "acme").await), (2, 2, 1, 1, 0, 0), "'replaced' is new already");

    // Which of the two reseals of "both" every node must keep: the later.
    let (on_first, on_second) = (head(&first, key("both")).await, head(&second, key("both")).await);
    let resealed = |head: Option<Head>| head.and_then(|head| head.seal).and_then(|seal| seal.resealed);
    let later = if resealed(on_first) > resealed(on_second) { on_first } else { on_second };

    replicate(&second, &first).await;
    replicate(&first, &second).await;
    for store in [&first, &second] {
        assert!(store.get(key("removed"), ReadOptions::default()).await.unwrap().is_none(), "stays removed");
        assert_eq!(value(store, "replaced").await.unwrap(), b"the newer value", "the newer write stays");
        assert_eq!(value(store, "both").await.unwrap(), value_of("both"));
    }
    // Both nodes resealed "both": each kept the same one, the later.
    assert_eq!(head(&first, key("both")).await, later);
    assert_eq!(head(&second, key("both")).await, later);
    assert_eq!(stored_bytes(&first, &key("both")), stored_bytes(&second, &key("both")));
    first.close().await.unwrap();
    second.close().await.unwrap();
}

/// Each origin's log is pulled on its own, often from different peers: a
/// node may get a reseal before the version it seals again. The reseal
/// is then that version, and the version, when it comes, changes nothing.
#[tokio::test]
async fn a_reseal_that_arrives_before_its_version_brings_the_version_and_every_node_agrees() {
    let keys = Arc::new(MasterKeys::generate());
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let [writer, resealer, late] = [0, 1, 2].map(|i| sealed(dirs[i].path(), &keys));
    writer.put(put("v"), None).await.unwrap();
    replicate(&writer, &resealer).await;
    resealer.rotate_tenant_key("acme").await.unwrap();
    assert_eq!(counts(&reencrypt(&resealer, "acme").await), (1, 1, 1, 0, 0, 0));

    // The late node gets the resealer's log first, then the writer's.
    replicate(&resealer, &late).await;
    assert_eq!(
        head(&late, key("v")).await,
        head(&resealer, key("v")).await,
        "the reseal brought the version"
    );
    replicate(&writer, &late).await;
    let conflicts = late.counters().conflicts_lost.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(conflicts, 0, "the version met again is no conflict");
    // The writer gets the reseal after its own version: replaced.
    replicate(&resealer, &writer).await;
    for store in [&writer, &late] {
        assert_eq!(head(store, key("v")).await, head(&resealer, key("v")).await);
        assert_eq!(stored_bytes(store, &key("v")), stored_bytes(&resealer, &key("v")));
        assert_eq!(value(store, "v").await.unwrap(), value_of("v"));
    }
    for store in [writer, resealer, late] {
        store.close().await.unwrap();
    }
}

/// A node that installs a snapshot re-applies its own entries the
/// snapshot lacks. A reseal among them whose version the snapshot had,
/// then removed and purged, must not bring the version back.
#[tokio::test]
async fn a_bootstrap_reapplying_an_own_reseal_does_not_bring_back_a_version_removed_and_purged() {
    let keys = Arc::new(MasterKeys::generate());
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let [node, source, remover] = [0, 1, 2].map(|i| sealed(dirs[i].path(), &keys));
    node.put(put("v"), None).await.unwrap();
    replicate(&node, &source).await;
    replicate(&node, &remover).await;
    remover.remove(key("v"), None).await.unwrap();
    replicate(&remover, &source).await;
    // The node reseals v before the removal reaches it; the source never
    // gets the reseal, and purges the removal once it is stable.
    node.rotate_tenant_key("acme").await.unwrap();
    assert_eq!(counts(&reencrypt(&node, "acme").await), (1, 1, 1, 0, 0, 0));
    crate::sealing_tests::purge_everything_and_compact(&source).await;
    assert!(head(&source, key("v")).await.is_none(), "purged at the source");

    let outcome = crate::replication_tests::install(&source, &node).await;
    assert!(outcome.reapplied_own > 0, "{outcome:?}");
    assert!(node.get(key("v"), ReadOptions::default()).await.unwrap().is_none(), "v stays removed");
    for store in [node, source, remover] {
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_reencryption_cut_short_is_taken_up_when_its_node_starts_again() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let store = sealed(dir.path(), &keys);
    for minor in ["a", "b", "c"] {
        store.put(put(minor), None).await.unwrap();
    }
    store.rotate_tenant_key("acme").await.unwrap();
    // Its start was written, then the node stopped before it did anything.
    let start = PutRecord { value: b"started".to_vec(), ..put("x") };
    store.put(PutRecord { key: reencryption_key("acme"), ..start }, None).await.unwrap();
    let store = reopen(store, dir.path(), &keys).await;
    assert!(store.reencryption("acme").is_none(), "nothing runs before it is taken up");
    assert_eq!(store.resume_reencryptions().await.unwrap(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.reencryption("acme").expect("resumed").state == ReencryptionState::Running {
        assert!(std::time::Instant::now() < deadline, "the resumed re-encryption did not end");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let progress = store.reencryption("acme").unwrap();
    assert_eq!(counts(&progress), (3, 3, 3, 0, 0, 0));
    assert_eq!(sealing_key(&store, "a").await.id, KeyId(2));
    assert_eq!(store.resume_reencryptions().await.unwrap(), 0, "a finished one is not taken up again");
    store.close().await.unwrap();
}

#[tokio::test]
async fn values_stored_in_the_clear_get_sealed_and_an_unsealed_node_or_the_system_tenant_is_refused() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let store = unsealed(dir.path());
    store.put(put("clear"), None).await.unwrap();
    let refused = store.start_reencryption("acme").await.unwrap_err();
    assert!(refused.to_string().contains("master key"), "{refused}");
    store.close().await.unwrap();
    drop(store);

    // Started with a master key, the node seals what it stored in the clear.
    let store = sealed(dir.path(), &keys);
    assert!(head(&store, key("clear")).await.unwrap().seal.is_none());
    assert_eq!(counts(&reencrypt(&store, "acme").await), (1, 1, 1, 0, 0, 0));
    assert!(head(&store, key("clear")).await.unwrap().seal.is_some());
    assert_eq!(value(&store, "clear").await.unwrap(), value_of("clear"));
    assert!(!stored_bytes(&store, &key("clear")).windows(MARKER.len()).any(|w| w == MARKER));
    let system = store.start_reencryption(consensusdb_types::SYSTEM_TENANT).await.unwrap_err();
    assert!(system.to_string().contains("tenant"), "{system}");
    store.close().await.unwrap();
}

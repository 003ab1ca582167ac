//! Sealed storage, end to end in one process: values sealed by the writer
//! read back on this store, on a replica and after a snapshot install;
//! no plaintext in any file; a flipped byte is refused; rotations of
//! tenant and master keys keep every value readable, and so does retiring
//! a master key after a re-wrap, with or without a restart; a shred
//! destroys a
//! tenant's keys on every node, then its records.

use std::path::Path;
use std::sync::Arc;

use consensusdb_seal::MasterKeys;
use consensusdb_types::key_codec::encode_key;
use consensusdb_types::{
    Compression, ErrorCode, NodeId, Origin, RecordKey, RowKey, SYSTEM_TENANT as SYSTEM_TENANT_NAME,
    stored_value,
};

use crate::columns::{self, VALUES};
use crate::replication_tests::install;
use crate::sealing::key_records::KeyRef;
use crate::writer::WriteCommand;
use crate::*;

pub(crate) const MARKER: &[u8] = b"plaintext-marker-5f1c9e";

pub(crate) fn sealed(dir: &Path, keys: &Arc<MasterKeys>) -> Store {
    Store::open(StoreOptions { master_keys: Some(keys.clone()), ..StoreOptions::new(dir) }).expect("opens")
}

pub(crate) fn unsealed(dir: &Path) -> Store {
    Store::open(StoreOptions::new(dir)).expect("opens")
}

pub(crate) fn key(minor: &str) -> RecordKey {
    RowKey::new("acme", "EVENTS", minor).at(None)
}

/// The value written at `minor`: the marker, then the minor key.
pub(crate) fn value_of(minor: &str) -> Vec<u8> {
    let mut value = MARKER.to_vec();
    value.extend_from_slice(minor.as_bytes());
    value
}

pub(crate) fn put(minor: &str) -> PutRecord {
    // Uncompressed, so a value stored in the clear shows the marker.
    let value = value_of(minor);
    PutRecord {
        key: key(minor),
        value,
        compression: Compression::None,
        ttl_ms: None,
        if_absent: false,
        client_key: None,
    }
}

pub(crate) async fn value(store: &Store, minor: &str) -> Result<Vec<u8>, StorageError> {
    Ok(store.get(key(minor), ReadOptions::default()).await?.expect("present").value.expect("a value"))
}

/// Writes through every client path: a put, a batch, a touch.
async fn write_every_way(store: &Store) {
    store.put(put("single"), None).await.unwrap();
    store.put_batch(vec![put("batch-0"), put("batch-1"), put("batch-2")], None).await.unwrap();
    store.put(put("touched"), None).await.unwrap();
    store.touch(key("touched"), Some(3_600_000), None).await.unwrap();
}

const MINORS: [&str; 5] = ["single", "batch-0", "batch-1", "batch-2", "touched"];

async fn assert_reads_back(store: &Store) {
    for minor in MINORS {
        assert_eq!(value(store, minor).await.unwrap(), value_of(minor), "{minor}");
    }
}

/// Copies `from`'s own log into `to`, as a pulling peer does.
pub(crate) async fn replicate(from: &Store, to: &Store) {
    let LogChunk::Entries(entries) = from.log_since(from.origin(), 0, 10_000, 64 << 20).await.unwrap() else {
        panic!("nothing purged");
    };
    to.apply(entries).await.unwrap();
}

/// Files under `dir` whose bytes hold `needle`.
pub(crate) fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_holding(&path, needle));
        } else if std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

/// Writes every way on one store, replicates to a second, installs a
/// snapshot of the first on a third, reads everything back on all three,
/// closes them (flushing memtables into table files) and compacts; then
/// returns the files of the three directories that hold the marker.
async fn files_with_plaintext(seal: bool) -> Vec<String> {
    let keys = Arc::new(MasterKeys::generate());
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let open = |dir: &Path| if seal { sealed(dir, &keys) } else { unsealed(dir) };
    let stores = [open(dirs[0].path()), open(dirs[1].path()), open(dirs[2].path())];
    write_every_way(&stores[0]).await;
    replicate(&stores[0], &stores[1]).await;
    install(&stores[0], &stores[2]).await;
    for store in &stores {
        assert_reads_back(store).await;
        store.shared.engine.db.compact_range_cf(
            columns::handle(&store.shared.engine.db, VALUES),
            None::<&[u8]>,
            None::<&[u8]>,
        );
        store.close().await.unwrap();
    }
    drop(stores);
    dirs.iter().flat_map(|dir| files_holding(dir.path(), MARKER)).collect()
}

#[tokio::test]
async fn no_value_reaches_any_file_in_the_clear_and_the_check_can_fail() {
    let sealed_hits = files_with_plaintext(true).await;
    assert!(sealed_hits.is_empty(), "plaintext on disk: {sealed_hits:?}");
    // The control: unsealed, the same search finds the marker (in the
    // WAL, the log and the table files), so the search does look.
    let unsealed_hits = files_with_plaintext(false).await;
    assert!(unsealed_hits.len() >= 3, "the control found too little: {unsealed_hits:?}");
}

#[tokio::test]
async fn keys_survive_a_restart_and_a_node_without_them_refuses_clearly() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let store = sealed(dir.path(), &keys);
    write_every_way(&store).await;
    store.close().await.unwrap();
    drop(store);
    // The same master keys: every value reads, and new writes reuse the key.
    let store = sealed(dir.path(), &keys);
    assert_reads_back(&store).await;
    store.put(put("after-restart"), None).await.unwrap();
    let own = store.shared.vault.own_keys(&store.shared.engine.db, store.origin()).unwrap();
    assert_eq!((own.newest.len(), own.highest_id), (1, 1), "one data key for the tenant, made once");
    store.close().await.unwrap();
    drop(store);
    // Without master keys (development mode): sealed values are refused,
    // never returned as ciphertext.
    let store = unsealed(dir.path());
    let error = value(&store, "single").await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::DataLoss, "{error}");
    assert!(
        error.to_string().contains("acme/EVENTS/single") && error.to_string().contains("master key"),
        "{error}"
    );
    store.close().await.unwrap();
    drop(store);
    // Other master keys: the node's own data key does not unwrap, so it
    // refuses to start rather than fail at the first write.
    let error = Store::open(StoreOptions {
        master_keys: Some(Arc::new(MasterKeys::generate())),
        ..StoreOptions::new(dir.path())
    })
    .err()
    .expect("refused");
    assert!(error.to_string().contains("cannot be unwrapped"), "{error}");
}

#[tokio::test]
async fn a_flipped_byte_on_disk_is_data_loss_naming_the_key_and_is_counted() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let store = sealed(dir.path(), &keys);
    write_every_way(&store).await;
    // Flip one byte of a stored ciphertext, under the store's feet.
    let db = &store.shared.engine.db;
    let values = columns::handle(db, VALUES);
    let encoded = encode_key(&key("batch-1"));
    let mut entry = db.get_cf(values, &encoded).unwrap().expect("stored");
    let at = entry.len() - stored_value::decode(&entry).unwrap().len() + 3;
    entry[at] ^= 0x40;
    db.put_cf(values, &encoded, &entry).unwrap();
    let error = value(&store, "batch-1").await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::DataLoss, "{error}");
    assert!(error.to_string().contains("acme/EVENTS/batch-1"), "names the key: {error}");
    assert!(error.to_string().contains("altered on disk"), "{error}");
    assert_eq!(store.counters().sealed_values_refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    // Its neighbours still read; a scan over it fails rather than skip it.
    assert!(value(&store, "batch-0").await.is_ok());
    let query = ScanQuery {
        scope: ScanScope::Tenant { major: "acme".into() },
        limit: 100,
        page_token: None,
        read: ReadOptions::default(),
    };
    let mut chunks = store.scan(query).unwrap();
    let mut failed = None;
    while let Some(chunk) = chunks.recv().await {
        if let Err(error) = chunk {
            failed = Some(error);
        }
    }
    let failed = failed.expect("the scan ends in an error");
    assert!(failed.to_string().contains("acme/EVENTS/batch-1"), "{failed}");
    // Head-only reads need no value, so they still answer.
    let head = store.get(key("batch-1"), ReadOptions { head_only: true, raw: false }).await.unwrap();
    assert!(head.expect("present").head.seal.is_some());
}

/// The key id the head of `minor` names.
async fn key_id_of(store: &Store, minor: &str) -> u32 {
    let record = store.get(key(minor), ReadOptions { head_only: true, raw: false }).await.unwrap();
    record.expect("present").head.seal.expect("sealed").key_id
}

#[tokio::test]
async fn a_rotation_gives_new_values_a_new_key_on_every_node_and_old_values_still_read() {
    let keys = Arc::new(MasterKeys::generate());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    first.put(put("before"), None).await.unwrap();
    second.put(put("second-before"), None).await.unwrap();
    assert_eq!(key_id_of(&first, "before").await, 1);
    first.rotate_tenant_key("acme").await.unwrap();
    first.put(put("after"), None).await.unwrap();
    assert_eq!(key_id_of(&first, "after").await, 2, "a new key after the rotation");
    // The rotation reaches the second node, whose next value gets a new
    // key of its own too.
    replicate(&first, &second).await;
    second.put(put("second-after"), None).await.unwrap();
    assert_eq!(key_id_of(&second, "second-after").await, 2);
    replicate(&second, &first).await;
    for minor in ["before", "after", "second-before", "second-after"] {
        assert_eq!(value(&first, minor).await.unwrap(), value_of(minor), "{minor}");
    }
    // After a restart the rotated key stays retired.
    first.close().await.unwrap();
    drop(first);
    let first = sealed(d1.path(), &keys);
    first.put(put("after-restart"), None).await.unwrap();
    assert_eq!(key_id_of(&first, "after-restart").await, 2);
    let listed = first.data_keys(Some("acme".into())).await.unwrap();
    assert_eq!(listed.len(), 4, "keys 1 and 2 of each node: {listed:?}");
    assert!(listed.iter().all(|key| key.master_key_id == Some(1) && !key.destroyed));
}

#[tokio::test]
async fn after_a_master_key_rotation_old_keys_unwrap_and_new_ones_use_the_new_master_key() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let store = sealed(dir.path(), &keys);
    write_every_way(&store).await;
    store.close().await.unwrap();
    drop(store);
    let rotated = Arc::new(keys.rotated());
    let store = sealed(dir.path(), &rotated);
    assert_reads_back(&store).await;
    store.rotate_tenant_key("acme").await.unwrap();
    store.put(put("under-master-2"), None).await.unwrap();
    let masters: Vec<_> = store.data_keys(None).await.unwrap().iter().map(|key| key.master_key_id).collect();
    assert_eq!(masters, vec![Some(1), Some(2)], "the old key stays wrapped under 1, the new one under 2");
    assert!(value(&store, "under-master-2").await.is_ok());
}

/// Closes `store` and opens its directory again with `keys`.
pub(crate) async fn reopen(store: Store, dir: &Path, keys: &Arc<MasterKeys>) -> Store {
    store.close().await.unwrap();
    drop(store);
    sealed(dir, keys)
}

#[tokio::test]
async fn after_a_rewrap_an_old_master_key_retires_and_every_value_still_reads_on_every_node() {
    let keys = Arc::new(MasterKeys::generate());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    write_every_way(&first).await;
    second.put(put("from-second"), None).await.unwrap();
    replicate(&first, &second).await;
    replicate(&second, &first).await;
    // The master key rotates: both nodes restart with keys 1 and 2.
    let rotated = Arc::new(keys.rotated());
    let (first, second) =
        (reopen(first, d1.path(), &rotated).await, reopen(second, d2.path(), &rotated).await);
    first.rotate_tenant_key("acme").await.unwrap();
    first.put(put("under-master-2"), None).await.unwrap();

    // One node re-wraps every live key: its own, and the second node's.
    let outcome = first.rewrap_data_keys().await.unwrap();
    assert_eq!(
        (outcome.master_key_id, outcome.rewrapped, outcome.already, outcome.failed.len()),
        (2, 2, 1, 0),
        "the two keys made under master key 1 are re-wrapped; the one made under 2 is left"
    );
    let again = first.rewrap_data_keys().await.unwrap();
    assert_eq!((again.rewrapped, again.already), (0, 3), "a second run finds nothing to do");
    let listed: Vec<_> = first.data_keys(None).await.unwrap().iter().map(|key| key.master_key_id).collect();
    assert_eq!(listed, vec![Some(2); 3], "every key is wrapped under master key 2 now");

    // Master key 1 retires. The control: a node that has not received the
    // re-wrapped keys cannot unwrap its own key, and refuses to start.
    let retired = Arc::new(rotated.retired(consensusdb_seal::KeyId(1)).unwrap());
    second.close().await.unwrap();
    drop(second);
    let refused =
        Store::open(StoreOptions { master_keys: Some(retired.clone()), ..StoreOptions::new(d2.path()) })
            .err()
            .expect("refused without the re-wrapped keys");
    assert!(refused.to_string().contains("master key 1"), "{refused}");
    let second = sealed(d2.path(), &rotated);
    replicate(&first, &second).await;
    let (first, second) =
        (reopen(first, d1.path(), &retired).await, reopen(second, d2.path(), &retired).await);
    for store in [&first, &second] {
        assert_reads_back(store).await;
        assert_eq!(value(store, "from-second").await.unwrap(), value_of("from-second"));
        assert_eq!(value(store, "under-master-2").await.unwrap(), value_of("under-master-2"));
    }
    second.put(put("after-retiring"), None).await.unwrap();
    assert!(value(&second, "after-retiring").await.is_ok(), "and writes on, with master key 2 alone");

    // A shred destroys the re-wrapped forms with the keys.
    assert_eq!(first.rewrapped_records("acme").await.unwrap().len(), 2);
    first.shred_tenant("acme").await.unwrap();
    assert!(first.rewrapped_records("acme").await.unwrap().is_empty(), "no wrapped copy of a shredded key");
    let refused = value(&first, "from-second").await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
    first.close().await.unwrap();
    second.close().await.unwrap();
}

/// The master key wrapping the newest data key of `store`'s tenant.
async fn newest_key_wrapped_under(store: &Store) -> Option<u32> {
    store
        .data_keys(Some("acme".into()))
        .await
        .unwrap()
        .iter()
        .max_by_key(|key| key.stamp.hlc)
        .unwrap()
        .master_key_id
}

/// Asserts that `store` refused `keys`, saying `why`, and kept `held`.
async fn assert_refused(store: &Store, keys: MasterKeys, why: &str, held: &[u32]) {
    let refused = store.replace_master_keys(keys).await.unwrap_err();
    assert!(matches!(refused, StorageError::MasterKeysRefused { .. }), "{refused:?}");
    assert!(refused.to_string().contains(why), "{refused}");
    assert_eq!(store.master_keys_in_force().unwrap().held, held, "a refusal changes nothing");
}

#[tokio::test]
async fn a_running_node_takes_new_master_keys_in_two_steps_and_refuses_a_file_that_loses_a_key() {
    let keys = MasterKeys::generate();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let shared = Arc::new(MasterKeys::from_text(&keys.to_text()).unwrap());
    let (first, second) = (sealed(d1.path(), &shared), sealed(d2.path(), &shared));
    write_every_way(&first).await;
    second.put(put("from-second"), None).await.unwrap();
    replicate(&first, &second).await;
    replicate(&second, &first).await;

    // Step one: key 2 staged, on both nodes. It wraps nothing yet.
    let staged = keys.with_staged_key();
    for store in [&first, &second] {
        let replaced = store.replace_master_keys(MasterKeys::from_text(&staged.to_text()).unwrap()).await;
        assert_eq!(replaced.unwrap().data_keys_checked, 2, "the key of each node");
    }
    let in_force = first.master_keys_in_force().unwrap();
    assert_eq!((in_force.held, in_force.staged, in_force.current), (vec![1, 2], vec![2], 1));
    first.rotate_tenant_key("acme").await.unwrap();
    first.put(put("staged"), None).await.unwrap();
    assert_eq!(newest_key_wrapped_under(&first).await, Some(1), "a staged key wraps nothing");

    // Step two: promoted on the first node only. What it wraps under key
    // 2, the second node unwraps with key 2 staged: no node refuses a
    // value during the rotation.
    let promoted = staged.promoted().unwrap();
    first.replace_master_keys(MasterKeys::from_text(&promoted.to_text()).unwrap()).await.unwrap();
    first.rotate_tenant_key("acme").await.unwrap();
    first.put(put("under-master-2"), None).await.unwrap();
    assert_eq!(newest_key_wrapped_under(&first).await, Some(2));
    replicate(&first, &second).await;
    assert_eq!(value(&second, "under-master-2").await.unwrap(), value_of("under-master-2"));

    // Files that would lose a key are refused, and the keys in use stay.
    let retired = promoted.retired(consensusdb_seal::KeyId(1)).unwrap();
    let copy = |keys: &MasterKeys| MasterKeys::from_text(&keys.to_text()).unwrap();
    assert_refused(&first, copy(&retired), "would no longer unwrap", &[1, 2]).await;
    assert_refused(&first, MasterKeys::generate(), "another cluster", &[1, 2]).await;
    assert_refused(&first, copy(&staged), "older than the current one", &[1, 2]).await;
    assert_eq!(first.master_keys_in_force().unwrap().current, 2, "a stale copy does not demote the key");
    // The second node still wraps under key 1: it takes the promotion
    // before the retirement.
    assert_refused(&second, copy(&retired), "lacks master key 1", &[1, 2]).await;
    assert_reads_back(&first).await;

    // Once re-wrapped, and the re-wrapped keys replicated, key 1 retires
    // on both, with no restart.
    first.rewrap_data_keys().await.unwrap();
    replicate(&first, &second).await;
    second.replace_master_keys(copy(&promoted)).await.unwrap();
    for store in [&first, &second] {
        let replaced = store.replace_master_keys(copy(&retired)).await.unwrap();
        assert_eq!((replaced.now.held, replaced.now.current), (vec![2], 2));
        // Keys opened before are forgotten here, so every value below is
        // opened through a key unwrapped under master key 2 alone.
        store.shared.vault.forget_all();
        assert_reads_back(store).await;
        for minor in ["from-second", "staged", "under-master-2"] {
            assert_eq!(value(store, minor).await.unwrap(), value_of(minor), "{minor}");
        }
    }
    second.put(put("after-retiring"), None).await.unwrap();
    assert!(value(&second, "after-retiring").await.is_ok());
    first.close().await.unwrap();
    second.close().await.unwrap();

    let plain_dir = tempfile::tempdir().unwrap();
    let plain = unsealed(plain_dir.path());
    let refused = plain.replace_master_keys(MasterKeys::generate()).await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
    plain.close().await.unwrap();
}

#[tokio::test]
async fn a_rewrap_names_each_key_it_cannot_unwrap_and_an_unsealed_node_refuses_it() {
    let (d1, d2, d3) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = sealed(d1.path(), &Arc::new(MasterKeys::generate().rotated()));
    // A node with another master key file (a misconfiguration): its key,
    // wrapped under its own master key 1, replicates, and does not unwrap
    // under this node's key 1.
    let stranger = sealed(d2.path(), &Arc::new(MasterKeys::generate()));
    stranger.put(put("foreign"), None).await.unwrap();
    replicate(&stranger, &first).await;
    first.put(put("own"), None).await.unwrap();
    let outcome = first.rewrap_data_keys().await.unwrap();
    assert_eq!((outcome.rewrapped, outcome.already, outcome.failed.len()), (0, 1, 1), "{outcome:?}");
    assert!(
        outcome.failed[0].contains(&stranger.origin().to_string())
            && outcome.failed[0].contains("cannot be unwrapped"),
        "{outcome:?}"
    );
    let unsealed = unsealed(d3.path());
    let refused = unsealed.rewrap_data_keys().await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
    for store in [first, stranger, unsealed] {
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_shred_destroys_the_tenants_keys_on_every_node_then_its_records_go() {
    let keys = Arc::new(MasterKeys::generate());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    write_every_way(&first).await;
    let other = PutRecord { key: RowKey::new("other", "EVENTS", "kept").at(None), ..put("kept") };
    first.put(other.clone(), None).await.unwrap();
    replicate(&first, &second).await;
    assert_reads_back(&second).await;
    // The bytes a shred must get off the disks: the tenant's ciphertexts
    // and its wrapped data key. The other tenant's are the control.
    let shredded: Vec<Vec<u8>> = MINORS
        .iter()
        .map(|minor| stored_bytes(&first, &key(minor)))
        .chain(data_key_records(&first, "acme").await)
        .collect();
    let control: Vec<Vec<u8>> = [stored_bytes(&first, &other.key)]
        .into_iter()
        .chain(data_key_records(&first, "other").await)
        .collect();

    let outcome = first.shred_tenant("acme").await.unwrap();
    assert_eq!(outcome.keys_destroyed, 1);
    let refused = value(&first, "single").await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
    assert!(refused.to_string().contains("shredded"), "{refused}");
    assert_eq!(first.counters().sealed_values_refused.load(std::sync::atomic::Ordering::Relaxed), 0);
    // The destruction replicates: the second node refuses the tenant too.
    replicate(&first, &second).await;
    let refused = value(&second, "batch-1").await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
    // Other tenants are untouched.
    let kept = second.get(other.key.clone(), ReadOptions::default()).await.unwrap();
    assert!(kept.expect("kept").value.unwrap().starts_with(MARKER));
    assert!(first.shred_tenant(SYSTEM_TENANT_NAME).await.is_err(), "the system tenant cannot be shredded");

    // Removing the records: everything stamped before the shred goes, on
    // every node once replicated; new writes get a new key and read.
    first.put(put("after-shred"), None).await.unwrap();
    assert_eq!(first.remove_shredded("acme", outcome.shredded_at).await.unwrap(), MINORS.len() as u64);
    replicate(&first, &second).await;
    for store in [&first, &second] {
        for minor in MINORS {
            assert!(store.get(key(minor), ReadOptions::default()).await.unwrap().is_none(), "{minor}");
        }
        assert!(value(store, "after-shred").await.is_ok(), "written after the shred, under a new key");
    }
    assert_eq!(
        first.remove_shredded("acme", outcome.shredded_at).await.unwrap(),
        0,
        "nothing left to remove"
    );

    // Once the removals are stable everywhere and the log acknowledged,
    // a purge and a compaction leave none of those bytes in any file.
    for store in [&first, &second] {
        purge_everything_and_compact(store).await;
    }
    first.close().await.unwrap();
    second.close().await.unwrap();
    drop((first, second));
    for (i, bytes) in shredded.iter().enumerate() {
        let hits: Vec<_> =
            [&d1, &d2].iter().flat_map(|dir| files_holding(dir.path(), tag_of(bytes))).collect();
        assert!(hits.is_empty(), "shredded value {i} is still on disk: {hits:?}");
    }
    for bytes in &control {
        assert!(
            !files_holding(d1.path(), tag_of(bytes)).is_empty(),
            "the control: the other tenant's bytes are found"
        );
    }
}

/// A touch opens its value and seals it again under a new key. In the
/// group that destroys the value's key (a shred), before RocksDB holds the
/// destruction, it must be refused as the writer sees it, or the value
/// would outlive the shred under a key of its own.
#[tokio::test]
async fn a_touch_staged_after_its_keys_destruction_is_refused_before_the_destruction_is_written() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let store = sealed(dir.path(), &keys);
    store.put(put("control"), None).await.unwrap();
    let written = store.put(put("single"), None).await.unwrap();
    // Another origin, so the hand-built writer numbers its own entries and
    // keys (never a nonce of the store's).
    let origin = Origin { node: NodeId::random(), incarnation: 1 };
    let mut writer =
        crate::tests::hand_built_writer_with(store.shared.engine.clone(), origin, store.shared.vault.clone());
    // Its clock starts above what the store wrote, or within the same
    // millisecond its touches would be older than the versions they touch.
    writer.clock.raise_to(written.heads[0].stamp.hlc);
    let touch = |minor: &str| WriteCommand::Touch {
        key: encode_key(&key(minor)),
        field: "key".into(),
        expires_at_ms: None,
    };
    // The control: a touch alone opens the value and seals it again.
    let touched = crate::tests::commit_group(&mut writer, vec![touch("control")]);
    assert!(touched[0].is_ok(), "{:?}", touched[0]);
    // The store's key for the tenant is destroyed, then the touch comes,
    // in the same group: the vault still holds the key, live in RocksDB.
    let data_key = KeyRef { tenant: "acme".into(), origin: store.origin(), id: consensusdb_seal::KeyId(1) };
    let answers = crate::tests::commit_group(
        &mut writer,
        vec![WriteCommand::Remove { key: encode_key(&data_key.record_key()) }, touch("single")],
    );
    assert!(answers[0].is_ok(), "{:?}", answers[0]);
    let refused = answers[1].as_ref().expect_err("the touch must be refused");
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
    assert!(refused.to_string().contains("shredded"), "{refused}");
    // And once written, reads refuse the value too.
    let refused = value(&store, "single").await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
    drop(writer);
    store.close().await.unwrap();
}

/// A node that installs a snapshot holding the destruction of its own
/// current key (a shred it missed while away) must not seal its next
/// values under that key: they would never open.
#[tokio::test]
async fn after_installing_a_shred_it_missed_a_node_seals_new_values_under_a_new_key() {
    let keys = Arc::new(MasterKeys::generate());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    first.put(put("before"), None).await.unwrap();
    replicate(&first, &second).await;
    second.shred_tenant("acme").await.unwrap();
    let outcome = install(&second, &first).await;
    assert_eq!(outcome.new_origin, None, "the same origin writes on");
    first.put(put("after"), None).await.unwrap();
    assert_eq!(value(&first, "after").await.unwrap(), value_of("after"), "sealed under a new key");
    let own = first.shared.vault.own_keys(&first.shared.engine.db, first.origin()).unwrap();
    assert_eq!((own.newest["acme"].0, own.highest_id), (consensusdb_seal::KeyId(2), 2));
    for store in [first, second] {
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_rewrap_that_crossed_a_shred_leaves_no_wrapped_copy_of_a_destroyed_key_once_swept() {
    let keys = Arc::new(MasterKeys::generate().rotated());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    first.put(put("single"), None).await.unwrap();
    replicate(&first, &second).await;
    // At once, on two nodes cut off from each other: a re-wrap of the
    // tenant's key on one, a shred of the tenant on the other.
    let keys_again = Arc::new(MasterKeys::from_text(&keys.to_text()).unwrap().rotated());
    let second = reopen(second, d2.path(), &keys_again).await;
    assert_eq!(second.rewrap_data_keys().await.unwrap().rewrapped, 1);
    first.shred_tenant("acme").await.unwrap();
    replicate(&second, &first).await;
    replicate(&first, &second).await;
    for store in [&first, &second] {
        assert_eq!(store.rewrapped_records("acme").await.unwrap().len(), 1, "the race leaves a copy behind");
    }

    assert_eq!(first.remove_rewraps_of_destroyed_keys().await.unwrap(), 1);
    replicate(&first, &second).await;
    for store in [&first, &second] {
        assert!(
            store.rewrapped_records("acme").await.unwrap().is_empty(),
            "no wrapped copy of a destroyed key"
        );
    }
    assert_eq!(second.remove_rewraps_of_destroyed_keys().await.unwrap(), 0, "nothing left");
    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test]
async fn a_value_left_after_a_shred_is_refused_as_shredded_even_after_every_tombstone_is_purged() {
    let keys = Arc::new(MasterKeys::generate());
    let dir = tempfile::tempdir().unwrap();
    let store = sealed(dir.path(), &keys);
    write_every_way(&store).await;
    store.shred_tenant("acme").await.unwrap();
    store.rotate_tenant_key("other").await.unwrap();
    store.remove(key("single"), None).await.unwrap();
    // Not removed yet (the shred's removal runs later, or a node cut off
    // during the shred wrote it), and every tombstone stable everywhere.
    // A purge takes what is stamped before its wall-clock millisecond.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    purge_everything_and_compact(&store).await;
    let db = &store.shared.engine.db;
    let purged = db.get_cf(columns::handle(db, columns::RECORDS), encode_key(&key("single"))).unwrap();
    assert!(purged.is_none(), "other tombstones are purged");
    let refused = value(&store, "batch-0").await.unwrap_err();
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "not data loss: {refused}");
    assert!(refused.to_string().contains("shredded"), "{refused}");
    assert_eq!(store.counters().sealed_values_refused.load(std::sync::atomic::Ordering::Relaxed), 0);
    let listed = store.data_keys(Some("acme".into())).await.unwrap();
    assert!(listed.len() == 1 && listed[0].destroyed, "{listed:?}");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_shred_whose_removal_stopped_is_taken_up_at_the_next_start_by_the_node_that_made_it() {
    let keys = Arc::new(MasterKeys::generate());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (first, second) = (sealed(d1.path(), &keys), sealed(d2.path(), &keys));
    write_every_way(&first).await;
    // The keys are destroyed, but the node stops before removing a record.
    let outcome = first.shred_tenant("acme").await.unwrap();
    replicate(&first, &second).await;
    let pending = vec![("acme".to_string(), outcome.shredded_at)];
    assert_eq!(first.pending_shred_removals().await.unwrap(), pending);
    assert!(second.pending_shred_removals().await.unwrap().is_empty(), "another node's shred is not its own");

    let first = reopen(first, d1.path(), &keys).await;
    assert_eq!(first.resume_shred_removals().await.unwrap(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !first.pending_shred_removals().await.unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the resumed removal did not finish within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for minor in MINORS {
        assert!(first.get(key(minor), ReadOptions::default()).await.unwrap().is_none(), "{minor}");
    }
    assert_eq!(first.resume_shred_removals().await.unwrap(), 0, "a finished removal is not taken up again");

    // A newer shred of the same tenant is pending again.
    first.put(put("after-shred"), None).await.unwrap();
    let again = first.shred_tenant("acme").await.unwrap();
    let pending = vec![("acme".to_string(), again.shredded_at)];
    assert_eq!(first.pending_shred_removals().await.unwrap(), pending);
    // The older shred's removal, finishing after the newer shred, does not
    // count for the newer one.
    first.remove_shredded("acme", outcome.shredded_at).await.unwrap();
    assert_eq!(first.pending_shred_removals().await.unwrap(), pending);
    first.remove_shredded("acme", again.shredded_at).await.unwrap();
    assert!(first.pending_shred_removals().await.unwrap().is_empty());
    first.close().await.unwrap();
    second.close().await.unwrap();
}

/// The bytes stored in `values` for `key` (a sealed value's ciphertext),
/// without the stored value's framing.
pub(crate) fn stored_bytes(store: &Store, key: &RecordKey) -> Vec<u8> {
    let db = &store.shared.engine.db;
    let stored = db.get_cf(columns::handle(db, VALUES), encode_key(key)).unwrap().expect("stored");
    stored_value::decode(&stored).unwrap().to_vec()
}

/// What to search the files for: the AES-GCM tag that ends a sealed
/// value or a wrapped key, 16 random bytes. (A prefix would not do:
/// wrapped keys start alike, so RocksDB's LZ4 blocks may store the start
/// of one as a back-reference to another.)
fn tag_of(sealed: &[u8]) -> &[u8] {
    &sealed[sealed.len() - 16..]
}

/// The stored (wrapped) data keys of `tenant`.
async fn data_key_records(store: &Store, tenant: &str) -> Vec<Vec<u8>> {
    let db = &store.shared.engine.db;
    let keys = store.data_keys(Some(tenant.to_string())).await.unwrap();
    assert!(!keys.is_empty(), "{tenant} has a data key");
    keys.into_iter()
        .map(|info| {
            let key =
                KeyRef { tenant: info.tenant, origin: info.origin, id: consensusdb_seal::KeyId(info.id) };
            let stored =
                db.get_cf(columns::handle(db, VALUES), key.encoded_record_key()).unwrap().expect("stored");
            stored_value::decode(&stored).unwrap().to_vec()
        })
        .collect()
}

/// Purges all that is purgeable, as if every member had applied every
/// entry, then flushes and compacts every column family.
pub(crate) async fn purge_everything_and_compact(store: &Store) {
    let log_upto: Vec<_> = store.frontier().into_iter().map(|(origin, mark)| (origin, mark.seq)).collect();
    while store.purge(PurgePlan { stable_hlc: u64::MAX, log_upto: log_upto.clone() }).await.unwrap().more {}
    let db = &store.shared.engine.db;
    for family in columns::ALL {
        let handle = columns::handle(db, family);
        db.flush_cf(handle).unwrap();
        db.compact_range_cf(handle, None::<&[u8]>, None::<&[u8]>);
    }
}

mod interleavings {
    use proptest::prelude::*;

    use super::*;

    /// The live data keys of acme made at or before its last rotation.
    async fn retired_keys(store: &Store) -> Vec<KeyRef> {
        let rotation = crate::sealing::key_records::rotation_key("acme");
        let read = ReadOptions { head_only: true, raw: false };
        let Some(rotated) = store.get(rotation, read).await.unwrap() else { return Vec::new() };
        let keys = store.data_keys(Some("acme".into())).await.unwrap();
        keys.into_iter()
            .filter(|key| !key.destroyed && key.stamp.hlc <= rotated.head.stamp.hlc)
            .map(|key| KeyRef { tenant: key.tenant, origin: key.origin, id: consensusdb_seal::KeyId(key.id) })
            .collect()
    }

    #[derive(Debug, Clone)]
    enum Step {
        Write,
        RotateTenant,
        RotateMaster,
        /// Re-wrap every key under the current master key, then restart
        /// with that key alone.
        RewrapAndRetire,
        /// Re-encrypt the tenant, then destroy every data key the last
        /// rotation retired: no value needs one any more.
        ReencryptAndDestroyRetired,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        proptest::collection::vec(
            prop_oneof![
                4 => Just(Step::Write),
                1 => Just(Step::RotateTenant),
                1 => Just(Step::RotateMaster),
                1 => Just(Step::RewrapAndRetire),
                1 => Just(Step::ReencryptAndDestroyRetired),
            ],
            1..14,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

        /// Whatever the order of writes, tenant-key rotations, master
        /// key rotations (a restart with one more master key), re-wraps
        /// that retire every older master key, and re-encryptions that
        /// destroy every data key the last rotation retired, every value
        /// written reads back.
        #[test]
        fn every_value_reads_back_after_any_interleaving_of_writes_and_rotations(steps in steps()) {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let mut keys = Arc::new(MasterKeys::generate());
                let mut store = sealed(dir.path(), &keys);
                let mut written = Vec::new();
                for (i, step) in steps.iter().enumerate() {
                    match step {
                        Step::Write => {
                            let minor = format!("w{i}");
                            store.put(put(&minor), None).await.unwrap();
                            written.push(minor);
                        }
                        Step::RotateTenant => drop(store.rotate_tenant_key("acme").await.unwrap()),
                        Step::RotateMaster => {
                            keys = Arc::new(keys.rotated());
                            store = reopen(store, dir.path(), &keys).await;
                        }
                        Step::RewrapAndRetire => {
                            assert!(store.rewrap_data_keys().await.unwrap().failed.is_empty());
                            let current = keys.current().id();
                            for id in keys.ids().into_iter().filter(|&id| id != current) {
                                keys = Arc::new(keys.retired(id).unwrap());
                            }
                            store = reopen(store, dir.path(), &keys).await;
                        }
                        Step::ReencryptAndDestroyRetired => {
                            let progress = crate::reencrypt_tests::reencrypt(&store, "acme").await;
                            assert_eq!((progress.state, progress.refused), (ReencryptionState::Done, 0));
                            for retired in retired_keys(&store).await {
                                store.remove(retired.record_key(), None).await.unwrap();
                            }
                        }
                    }
                    for minor in &written {
                        let read = value(&store, minor).await.unwrap();
                        assert_eq!(read, value_of(minor), "{minor} after {steps:?}");
                    }
                }
                store.close().await.unwrap();
            });
        }
    }
}

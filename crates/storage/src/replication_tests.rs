//! Tests of applying replicated entries, reading the log for peers, and the
//! convergence digest.

use std::collections::BTreeMap;

use consensusdb_types::key_codec::encode_key;
use consensusdb_types::{
    Compression, Digest, HybridClock, LogEntry, Mutation, MutationKind, NodeId, Origin, RowKey, Stamp,
};

use crate::snapshot::{InstallOutcome, SnapshotPart};
use proptest::prelude::*;

use crate::*;

fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreOptions::new(dir)).expect("store opens")
}

fn origin(node: u128) -> Origin {
    Origin { node: NodeId(node), incarnation: 1 }
}

fn encoded(minor: &str) -> Vec<u8> {
    encode_key(&RowKey::new("tenant", "ACCOUNT", minor).at(None))
}

fn put(minor: &str, value: &[u8]) -> Mutation {
    Mutation {
        key: encoded(minor),
        kind: MutationKind::Put {
            value: value.to_vec(),
            compression: Compression::None,
            expires_at_ms: None,
            seal: None,
            client_key: None,
        },
    }
}

fn tombstone(minor: &str) -> Mutation {
    Mutation { key: encoded(minor), kind: MutationKind::Tombstone }
}

fn entry(origin: Origin, seq: u64, hlc: u64, mutations: Vec<Mutation>) -> RawEntry {
    let entry = LogEntry { origin, seq, hlc, mutations };
    RawEntry { origin, seq, value: entry.encode_value() }
}

/// Every live record's key and value.
async fn live(store: &Store) -> BTreeMap<String, Vec<u8>> {
    let query = ScanQuery {
        scope: ScanScope::Tenant { major: "tenant".into() },
        limit: 10_000,
        page_token: None,
        read: ReadOptions::default(),
    };
    let mut chunks = store.scan(query).expect("scan starts");
    let mut out = BTreeMap::new();
    while let Some(page) = chunks.recv().await {
        for record in page.expect("scan chunk").records {
            out.insert(record.key.row.minor.clone(), record.value.unwrap_or_default());
        }
    }
    out
}

#[tokio::test]
async fn apply_is_idempotent_in_order_and_refuses_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = origin(7);
    let first =
        vec![entry(a, 1, 10 << 16, vec![put("x", b"1")]), entry(a, 2, 11 << 16, vec![put("y", b"2")])];
    assert_eq!(store.apply(first.clone()).await.unwrap(), ApplyAck { applied: 2, skipped: 0 });
    // The same entries again, from a second source: nothing changes.
    assert_eq!(store.apply(first).await.unwrap(), ApplyAck { applied: 0, skipped: 2 });
    // Seq 4 before 3: the whole chunk is refused, nothing of it applied.
    let gap = vec![entry(a, 3, 12 << 16, vec![put("z", b"3")]), entry(a, 5, 13 << 16, vec![put("w", b"5")])];
    assert!(matches!(store.apply(gap).await, Err(StorageError::Gap { expected: 4, got: 5, .. })));
    assert_eq!(store.frontier()[&a].seq, 2);
    assert!(!live(&store).await.contains_key("z"), "a refused chunk applies nothing");
    // The log keeps replicated entries verbatim, for forwarding.
    let LogChunk::Entries(logged) = store.log_since(a, 0, 10, 1 << 20).await.unwrap() else {
        panic!("entries")
    };
    assert_eq!(logged.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(logged[0], entry(a, 1, 10 << 16, vec![put("x", b"1")]));
    // Local writes still use the node's own origin, with seq 1.
    let ack = store
        .put(
            PutRecord {
                key: RowKey::new("tenant", "ACCOUNT", "local").at(None),
                value: b"v".to_vec(),
                compression: Compression::None,
                ttl_ms: None,
                if_absent: false,
                client_key: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(ack.seq, 1);
    assert!(ack.heads[0].stamp.hlc > 11 << 16, "applying advanced the local clock");
}

#[tokio::test]
async fn the_greatest_stamp_wins_and_tombstones_are_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let (a, b) = (origin(1), origin(2));
    // b's remove is newer than a's put: whichever arrives first, the key is gone.
    store.apply(vec![entry(b, 1, 20 << 16, vec![tombstone("k")])]).await.unwrap();
    store.apply(vec![entry(a, 1, 10 << 16, vec![put("k", b"old")])]).await.unwrap();
    assert!(live(&store).await.is_empty());
    assert_eq!(store.counters().conflicts_lost.load(std::sync::atomic::Ordering::Relaxed), 1);
    // A later re-put wins over the tombstone.
    store.apply(vec![entry(a, 2, 30 << 16, vec![put("k", b"new")])]).await.unwrap();
    assert_eq!(live(&store).await["k"], b"new");
}

#[tokio::test]
async fn an_entry_of_the_own_origin_beyond_the_local_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let own = store.origin();
    let result = store.apply(vec![entry(own, 1, 1 << 16, vec![put("k", b"v")])]).await;
    assert!(matches!(result, Err(StorageError::OwnOriginAhead { seq: 1, local: 0 })), "{result:?}");
}

#[tokio::test]
async fn stamps_far_ahead_are_applied_but_clip_the_clock_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let far = (crate::clock::now_ms() + 3_600_000) << HybridClock::LOGICAL_BITS;
    store.apply(vec![entry(origin(3), 1, far, vec![put("k", b"v")])]).await.unwrap();
    assert_eq!(store.counters().hlc_drift_clipped.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(live(&store).await["k"], b"v", "a replicated entry is never refused");
    let ack = store.remove(RowKey::new("tenant", "ACCOUNT", "other").at(None), None).await.unwrap();
    assert!(ack.stamp.hlc < far, "the clock stayed within the drift bound");
}

#[tokio::test]
async fn purged_entries_are_out_of_range_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = origin(9);
    let entries: Vec<_> = (1..=3).map(|seq| entry(a, seq, seq << 16, vec![put("k", b"v")])).collect();
    store.apply(entries).await.unwrap();
    {
        let db = &store.shared.engine.db;
        let log = db.cf_handle(crate::columns::LOG).unwrap();
        db.delete_cf(log, consensusdb_types::log_entry::log_key(&a, 1)).unwrap();
    }
    assert_eq!(
        store.log_since(a, 0, 10, 1 << 20).await.unwrap(),
        LogChunk::OutOfRange { first_available: Some(2) }
    );
    let LogChunk::Entries(rest) = store.log_since(a, 1, 10, 1 << 20).await.unwrap() else {
        panic!("entries")
    };
    assert_eq!(rest.len(), 2);
    assert_eq!(store.log_since(a, 3, 10, 1 << 20).await.unwrap(), LogChunk::Entries(Vec::new()));
}

#[tokio::test]
async fn digests_track_every_kept_version_and_survive_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = origin(4);
    store.apply(vec![entry(a, 1, 1 << 16, vec![put("x", b"1"), put("y", b"1")])]).await.unwrap();
    store.apply(vec![entry(a, 2, 2 << 16, vec![tombstone("x")])]).await.unwrap();
    let report = store.digests(Some("tenant".into())).await.unwrap();
    let expected = Digest::of_version(&encoded("x"), &Stamp { hlc: 2 << 16, origin: a }, true)
        .wrapping_add(Digest::of_version(&encoded("y"), &Stamp { hlc: 1 << 16, origin: a }, false));
    assert_eq!(report.tenant("tenant"), expected);
    assert_eq!(report.frontier[&a].seq, 2);
    assert_eq!(store.digests(Some("other".into())).await.unwrap().regions, vec![]);
    // Recomputing from the records gives the same digests.
    crate::digests::rebuild(&store.shared.engine.db).unwrap();
    assert_eq!(store.digests(None).await.unwrap().total(), expected);
}

/// A mutation of one origin for the property test.
#[derive(Debug, Clone)]
enum Op {
    Put { key: u8, value: u8, ttl: bool },
    Remove { key: u8 },
    Batch { keys: Vec<u8>, value: u8 },
}

fn ops() -> impl Strategy<Value = Vec<Vec<Op>>> {
    let op = prop_oneof![
        (0u8..6, any::<u8>(), any::<bool>()).prop_map(|(key, value, ttl)| Op::Put { key, value, ttl }),
        (0u8..6).prop_map(|key| Op::Remove { key }),
        (proptest::collection::vec(0u8..6, 1..4), any::<u8>())
            .prop_map(|(keys, value)| Op::Batch { keys, value }),
    ];
    proptest::collection::vec(proptest::collection::vec(op, 1..8), 3)
}

fn to_mutations(op: &Op) -> Vec<Mutation> {
    let key = |k: u8| format!("k{k}");
    match op {
        Op::Put { key: k, value, ttl } => {
            let mut m = put(&key(*k), &[*value]);
            if *ttl && let MutationKind::Put { expires_at_ms, .. } = &mut m.kind {
                // Already expired: the stub still takes part in conflicts.
                *expires_at_ms = Some(1);
            }
            vec![m]
        }
        Op::Remove { key: k } => vec![tombstone(&key(*k))],
        Op::Batch { keys, value } => keys.iter().map(|k| put(&key(*k), &[*value])).collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any arrival order of the same entries (each origin's in seq order,
    /// as replication guarantees) leaves the same records and digest.
    #[test]
    fn any_arrival_order_gives_the_same_state_and_digest(origins in ops(), seed in any::<u64>(), hlcs in proptest::collection::vec(1u64..40, 24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            // Stamps collide across origins on purpose (small HLC range).
            let mut streams: Vec<Vec<RawEntry>> = Vec::new();
            let mut next_hlc = hlcs.iter().cycle();
            for (i, ops) in origins.iter().enumerate() {
                let o = origin(i as u128 + 1);
                let mut hlc = 0;
                streams.push(ops.iter().enumerate().map(|(s, op)| {
                    hlc += next_hlc.next().copied().unwrap_or(1);
                    entry(o, s as u64 + 1, hlc << 16, to_mutations(op))
                }).collect());
            }
            let in_order: Vec<RawEntry> = streams.iter().flatten().cloned().collect();
            let shuffled = interleave(&streams, seed);
            let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let (s1, s2) = (open(d1.path()), open(d2.path()));
            for e in in_order { s1.apply(vec![e]).await.unwrap(); }
            // The second store gets chunks of two, some entries twice.
            for pair in shuffled.chunks(2) {
                s2.apply(pair.to_vec()).await.unwrap();
                s2.apply(pair[..1].to_vec()).await.unwrap();
            }
            let (r1, r2) = (s1.digests(None).await.unwrap(), s2.digests(None).await.unwrap());
            prop_assert_eq!(&r1.frontier, &r2.frontier);
            prop_assert_eq!(r1.total(), r2.total());
            prop_assert_eq!(live(&s1).await, live(&s2).await);
            Ok(())
        })?;
    }
}

/// A random interleaving of the streams that keeps each stream's order.
fn interleave(streams: &[Vec<RawEntry>], mut seed: u64) -> Vec<RawEntry> {
    let mut cursors = vec![0usize; streams.len()];
    let mut out = Vec::new();
    loop {
        let open: Vec<usize> = (0..streams.len()).filter(|&i| cursors[i] < streams[i].len()).collect();
        if open.is_empty() {
            return out;
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let pick = open[(seed >> 33) as usize % open.len()];
        out.push(streams[pick][cursors[pick]].clone());
        cursors[pick] += 1;
    }
}

fn ttl_put(minor: &str, expires_at_ms: u64) -> Mutation {
    Mutation {
        key: encoded(minor),
        kind: MutationKind::Put {
            value: b"v".to_vec(),
            compression: Compression::None,
            expires_at_ms: Some(expires_at_ms),
            seal: None,
            client_key: None,
        },
    }
}

#[tokio::test]
async fn purge_removes_only_stable_tombstones_and_expired_versions_and_acknowledged_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = origin(5);
    store
        .apply(vec![
            entry(a, 1, 10 << 16, vec![put("kept", b"v"), tombstone("old-gone")]),
            entry(a, 2, 20 << 16, vec![ttl_put("expired", 1)]),
            entry(a, 3, 30 << 16, vec![tombstone("recent-gone")]),
            entry(a, 4, 40 << 16, vec![ttl_put("far-future", u64::MAX >> 20)]),
        ])
        .await
        .unwrap();
    let before = store.digests(None).await.unwrap().total();
    // Stable up to 25: the tombstone at 10 and the expired version at 20 go;
    // the tombstone at 30 and the unexpired version stay.
    let plan = PurgePlan { stable_hlc: 25 << 16, log_upto: vec![(a, 2)] };
    let outcome = store.purge(plan).await.unwrap();
    assert_eq!(outcome, PurgeOutcome { versions: 2, more: false });
    let heads = |minor: &str| {
        let db = &store.shared.engine.db;
        db.get_cf(db.cf_handle(crate::columns::RECORDS).unwrap(), encoded(minor)).unwrap().is_some()
    };
    assert!(!heads("old-gone") && !heads("expired"));
    assert!(heads("recent-gone") && heads("kept") && heads("far-future"));
    let removed = Digest::of_version(&encoded("old-gone"), &Stamp { hlc: 10 << 16, origin: a }, true)
        .wrapping_add(Digest::of_version(&encoded("expired"), &Stamp { hlc: 20 << 16, origin: a }, false));
    let after = store.digests(None).await.unwrap().total();
    assert_eq!(after, before.wrapping_sub(removed), "purged versions leave the digest too");
    crate::digests::rebuild(&store.shared.engine.db).unwrap();
    assert_eq!(store.digests(None).await.unwrap().total(), after, "the kept digest matches the records");
    // The acknowledged log is gone: a peer asking for it must bootstrap.
    assert_eq!(
        store.log_since(a, 0, 10, 1 << 20).await.unwrap(),
        LogChunk::OutOfRange { first_available: Some(3) }
    );
    // A second round finds nothing new.
    assert_eq!(store.purge(PurgePlan { stable_hlc: 25 << 16, log_upto: vec![] }).await.unwrap().versions, 0);
}

#[tokio::test]
async fn a_damaged_purge_queue_key_is_a_corruption_error_naming_it_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a = origin(5);
    store.apply(vec![entry(a, 1, 10 << 16, vec![tombstone("gone")])]).await.unwrap();
    let db = &store.shared.engine.db;
    db.put_cf(db.cf_handle(crate::columns::PURGE_QUEUE).unwrap(), [0, 0, 0], []).unwrap();
    let error = store.purge(PurgePlan { stable_hlc: 25 << 16, log_upto: vec![] }).await.unwrap_err();
    assert!(matches!(error, StorageError::Corrupt(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("purge_queue") && message.contains("key \"000000\": 3 bytes"), "{message}");
    // Nothing of the round was written: the tombstone is still there.
    let head = db.get_cf(db.cf_handle(crate::columns::RECORDS).unwrap(), encoded("gone")).unwrap();
    assert!(head.is_some(), "a failed round purges nothing");
}

/// Copies `from`'s snapshot into `to`, as a bootstrap does.
/// Installs a snapshot of `from` on `to`, as a joining node does.
pub(crate) async fn install(from: &Store, to: &Store) -> InstallOutcome {
    let mut parts = from.export_snapshot(256);
    to.hold_writes(WriteHold::Bootstrap, "test bootstrap");
    to.install_begin().await.unwrap();
    let mut frontier = None;
    let mut outcome = None;
    while let Some(part) = parts.recv().await {
        match part.unwrap() {
            SnapshotPart::Frontier(f) => frontier = Some(f),
            SnapshotPart::Records(records) => to.install_records(records).await.unwrap(),
            SnapshotPart::Digests(digests) => {
                outcome =
                    Some(to.install_end(frontier.take().expect("frontier first"), digests).await.unwrap());
            }
        }
    }
    to.release_writes(WriteHold::Bootstrap);
    outcome.expect("the snapshot ends with digests")
}

fn local_put(minor: &str, value: &[u8]) -> PutRecord {
    PutRecord {
        key: RowKey::new("tenant", "ACCOUNT", minor).at(None),
        value: value.to_vec(),
        compression: Compression::None,
        ttl_ms: None,
        if_absent: false,
        client_key: None,
    }
}

#[tokio::test]
async fn a_snapshot_install_keeps_the_nodes_own_unreplicated_writes() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, joiner) = (open(d1.path()), open(d2.path()));
    let a = origin(8);
    let many: Vec<_> =
        (0..50).map(|i| entry(a, i + 1, (i + 1) << 16, vec![put(&format!("s{i}"), b"x")])).collect();
    source.apply(many).await.unwrap();
    // The joiner wrote something no one has pulled yet, and holds a stale
    // record the snapshot replaces.
    joiner.put(local_put("mine", b"unreplicated"), None).await.unwrap();
    joiner.apply(vec![entry(origin(9), 1, 1 << 16, vec![put("stale", b"old")])]).await.unwrap();
    let outcome = install(&source, &joiner).await;
    assert_eq!(outcome, InstallOutcome { new_origin: None, reapplied_own: 1 });
    let records = live(&joiner).await;
    assert_eq!(records.len(), 51, "50 from the snapshot and the node's own write");
    assert_eq!(records["mine"], b"unreplicated");
    assert!(!records.contains_key("stale"), "the snapshot replaced the old records");
    let frontier = joiner.frontier();
    assert_eq!(frontier[&a].seq, 50);
    assert_eq!(frontier[&joiner.origin()].seq, 1);
    assert!(!frontier.contains_key(&origin(9)), "origins the snapshot lacks restart from zero");
    let installed = joiner.digests(None).await.unwrap().total();
    crate::digests::rebuild(&joiner.shared.engine.db).unwrap();
    assert_eq!(joiner.digests(None).await.unwrap().total(), installed, "digests match the installed records");
    // Applies work again afterwards, from the snapshot's frontier on.
    assert_eq!(
        joiner.apply(vec![entry(a, 51, 60 << 16, vec![put("after", b"y")])]).await.unwrap().applied,
        1
    );
}

#[tokio::test]
async fn a_directory_older_than_the_cluster_becomes_a_new_incarnation() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stale = open(d2.path());
    let own = stale.origin();
    let cluster = open(d1.path());
    // The cluster holds 3 entries of the stale node's origin; its log has 1.
    let entries: Vec<_> =
        (1..=3).map(|seq| entry(own, seq, seq << 16, vec![put(&format!("k{seq}"), b"v")])).collect();
    cluster.apply(entries).await.unwrap();
    stale.put(local_put("k1", b"v"), None).await.unwrap();
    let outcome = install(&cluster, &stale).await;
    let new = Origin { node: own.node, incarnation: own.incarnation + 1 };
    assert_eq!(outcome.new_origin, Some(new));
    assert_eq!(stale.origin(), new);
    assert_eq!(stale.frontier()[&own].seq, 3, "the old origin is kept as the cluster's");
    let ack = stale.put(local_put("fresh", b"v"), None).await.unwrap();
    assert_eq!((ack.seq, ack.heads[0].stamp.origin), (1, new), "new writes start over as the new origin");
    drop(stale);
    // The new incarnation survives a restart.
    let reopened = open(d2.path());
    assert_eq!(reopened.origin(), new);
}

#[tokio::test]
async fn closed_writes_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.hold_writes(WriteHold::Bootstrap, "joining: bootstrapping from peers");
    let refused = store.put(local_put("k", b"v"), None).await.unwrap_err();
    assert!(refused.to_string().contains("bootstrapping from peers"), "{refused}");
    store.release_writes(WriteHold::Bootstrap);
    store.put(local_put("k", b"v"), None).await.unwrap();
}

#[tokio::test]
async fn a_client_write_that_could_never_become_current_is_refused_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A peer whose clock runs an hour ahead wrote "k"; the drift bound keeps
    // this node's clock from following it.
    let hour_ahead = (crate::clock::now_ms() + 3_600_000) << HybridClock::LOGICAL_BITS;
    store.apply(vec![entry(origin(7), 1, hour_ahead, vec![put("k", b"from the future")])]).await.unwrap();
    let client_put = |minor: &str| PutRecord {
        key: RowKey::new("tenant", "ACCOUNT", minor).at(None),
        value: b"now".to_vec(),
        compression: Compression::None,
        ttl_ms: None,
        if_absent: false,
        client_key: None,
    };
    let refused = store.put(client_put("k"), None).await.expect_err("the put would lose");
    assert!(matches!(refused, StorageError::Superseded { .. }), "{refused}");
    assert_eq!(refused.field(), Some("key"));
    assert_eq!(refused.code(), consensusdb_types::ErrorCode::FailedPrecondition);
    assert!(refused.to_string().contains("clock"), "{refused}");
    let batch = store.put_batch(vec![client_put("other"), client_put("k")], None).await.expect_err("refused");
    assert_eq!(batch.field(), Some("records[1].key"), "{batch}");
    let key = RowKey::new("tenant", "ACCOUNT", "k").at(None);
    assert!(matches!(store.remove(key.clone(), None).await, Err(StorageError::Superseded { .. })));
    assert!(matches!(store.touch(key.clone(), None, None).await, Err(StorageError::Superseded { .. })));
    let kept = store.get(key, ReadOptions::default()).await.unwrap().expect("still there");
    assert_eq!(kept.value.as_deref(), Some(&b"from the future"[..]));
    assert_eq!(store.frontier().get(&store.origin()).map_or(0, |m| m.seq), 0, "no refused write took a seq");
    assert_eq!(store.counters().writes_superseded.load(std::sync::atomic::Ordering::Relaxed), 4);
    // Other keys are written as usual.
    assert_eq!(store.put(client_put("fresh"), None).await.unwrap().seq, 1);
}

#[tokio::test]
async fn a_damaged_record_in_a_snapshot_is_skipped_and_the_rest_installed() {
    let (source_dir, joiner_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, joiner) = (open(source_dir.path()), open(joiner_dir.path()));
    for minor in ["a", "b", "c"] {
        source.put(local_put(minor, b"v"), None).await.unwrap();
    }
    // The source holds one damaged head, as a bad disk would leave it.
    let db = &source.shared.engine.db;
    db.put_cf(crate::columns::handle(db, crate::columns::RECORDS), encoded("b"), [0xEE]).unwrap();
    install(&source, &joiner).await;
    let minors: Vec<String> = live(&joiner).await.into_keys().collect();
    assert_eq!(minors, ["a", "c"], "every record but the damaged one");
    assert_eq!(joiner.counters().damaged_records_skipped.load(std::sync::atomic::Ordering::Relaxed), 1);
}

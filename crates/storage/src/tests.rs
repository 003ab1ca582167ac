//! Storage tests that need the crate's insides: the writer, the column
//! families and the on-disk format.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use consensusdb_types::key_codec::encode_key;
use consensusdb_types::stored_value;
use consensusdb_types::{Compression, FrontierMark, HybridClock, LogEntry, RecordKey, RowKey, TimeUuid};
use tokio::sync::oneshot;

use crate::columns::{self, FRONTIER, LOG, META, RECORDS, VALUES};
use crate::data_dir;
use crate::writer::{StagedPut, WriteCommand, Writer};
use crate::*;

fn key(minor: &str) -> RecordKey {
    RowKey::new("tenant", "ACCOUNT", minor).at(None)
}

fn put(minor: &str, value: &[u8]) -> PutRecord {
    PutRecord {
        key: key(minor),
        value: value.to_vec(),
        compression: Compression::None,
        ttl_ms: None,
        if_absent: false,
        client_key: None,
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreOptions::new(dir)).expect("store opens")
}

/// Checks `holds` until it is true; fails the test, naming `what` it
/// waited for, if that takes more than ten seconds. Tests wait for
/// conditions rather than for a fixed time, which is too long on an idle
/// machine and too short on a busy one.
pub(crate) async fn eventually(what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !holds() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every seq in the log of `store`'s origin, in order.
fn logged_seqs(store: &Store) -> Vec<u64> {
    let db = &store.shared.engine.db;
    let log = db.cf_handle(LOG).expect("log cf");
    db.iterator_cf(log, rocksdb::IteratorMode::Start)
        .map(|item| {
            let (k, v) = item.expect("iterates");
            LogEntry::decode(&k, &v).expect("decodes").seq
        })
        .collect()
}

#[tokio::test]
async fn rejected_writes_never_consume_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.put(put("a", b"1"), None).await.unwrap().seq, 1);
    let absent = PutRecord { if_absent: true, ..put("a", b"2") };
    assert!(matches!(store.put(absent, None).await, Err(StorageError::AlreadyExists { .. })));
    let past = Instant::now() - Duration::from_millis(1);
    assert!(matches!(store.put(put("b", b"3"), Some(past)).await, Err(StorageError::DeadlineExceeded)));
    assert!(matches!(store.touch(key("missing"), None, None).await, Err(StorageError::NotFound { .. })));
    assert_eq!(store.put(put("c", b"4"), None).await.unwrap().seq, 2);
    assert_eq!(logged_seqs(&store), vec![1, 2]);
    let db = &store.shared.engine.db;
    let mark = db.get_cf(db.cf_handle(FRONTIER).unwrap(), store.origin().to_bytes()).unwrap().unwrap();
    assert_eq!(FrontierMark::decode(&mark).unwrap().seq, 2);
}

#[tokio::test]
async fn concurrent_writes_all_commit_with_dense_unique_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.put(put(&format!("k{i}"), b"v"), None).await.unwrap().seq })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(logged_seqs(&store), seqs);
}

/// A writer built by hand over `engine`, so tests control its groups.
fn hand_built_writer(engine: Arc<crate::data_dir::Engine>, origin: consensusdb_types::Origin) -> Writer {
    hand_built_writer_with(engine, origin, Arc::new(crate::sealing::Vault::new(None)))
}

/// [`hand_built_writer`] with the keys of `vault` (sealing, if it has
/// master keys).
pub(crate) fn hand_built_writer_with(
    engine: Arc<crate::data_dir::Engine>,
    origin: consensusdb_types::Origin,
    vault: Arc<crate::sealing::Vault>,
) -> Writer {
    let view = Arc::new(crate::frontier_view::FrontierView::new(Default::default()));
    let counters = Arc::new(Counters::default());
    let health: Arc<crate::writer_health::WriterHealth> = Arc::default();
    let committer = crate::writer::Committer::start(
        engine.clone(),
        vault.clone(),
        view.clone(),
        counters.clone(),
        health.clone(),
        SyncPolicy::Always,
    )
    .unwrap();
    Writer {
        origin,
        clock: HybridClock::default(),
        next_seq: 1,
        frontier: Default::default(),
        view,
        max_clock_drift_ms: 60_000,
        clock_skew_ms: 0,
        shared_incarnation: Arc::default(),
        installing: false,
        shared_installing: Arc::default(),
        sync: SyncPolicy::Always,
        max_group: 16,
        counters,
        health,
        keys: crate::writer::WriterKeys::load(vault, &engine.db, origin).unwrap(),
        engine,
        committer,
        in_flight: Default::default(),
    }
}

/// Runs one group through `writer` and collects the answers.
pub(crate) fn commit_group(
    writer: &mut Writer,
    commands: Vec<WriteCommand>,
) -> Vec<Result<WriteAck, StorageError>> {
    let answers = hand_over(writer, commands);
    // Once drained, the committer has answered every write.
    writer.drain();
    answers.into_iter().map(|mut a| a.try_recv().expect("writer replied")).collect()
}

fn staged(minor: &str, if_absent: bool) -> StagedPut {
    StagedPut {
        key: encode_key(&key(minor)),
        field: "key".into(),
        value: b"v".to_vec(),
        compression: Compression::None,
        expires_at_ms: None,
        if_absent,
        client_key: None,
    }
}

#[test]
fn put_if_absent_sees_writes_pending_in_the_same_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut writer = hand_built_writer(store.shared.engine.clone(), store.origin());
    let results = commit_group(
        &mut writer,
        vec![
            WriteCommand::Put(vec![staged("x", true)]),
            WriteCommand::Put(vec![staged("x", true)]),
            WriteCommand::Put(vec![staged("y", true)]),
            // Touch sees the value staged by the first command.
            WriteCommand::Touch { key: encode_key(&key("x")), field: "key".into(), expires_at_ms: None },
        ],
    );
    assert_eq!(results[0].as_ref().unwrap().seq, 1);
    assert!(matches!(results[1], Err(StorageError::AlreadyExists { .. })));
    assert_eq!(results[2].as_ref().unwrap().seq, 2, "the rejected write left no gap");
    assert_eq!(results[3].as_ref().unwrap().seq, 3);
}

/// Hands `commands` to the writer as one group without waiting for the
/// committer; the answers come once it has written the group.
fn hand_over(writer: &mut Writer, commands: Vec<WriteCommand>) -> Vec<Answer> {
    let (writes, answers): (Vec<_>, Vec<_>) = commands
        .into_iter()
        .map(|command| {
            let (reply, answer) = oneshot::channel();
            (crate::writer::Pending::Write(command, None, reply), answer)
        })
        .unzip();
    writer.commit_group(writes);
    answers
}

type Answer = oneshot::Receiver<Result<WriteAck, StorageError>>;

#[test]
fn a_group_staged_while_the_one_before_is_written_sees_its_versions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut writer = hand_built_writer(store.shared.engine.clone(), store.origin());
    let x = encode_key(&key("x"));
    let first = hand_over(&mut writer, vec![WriteCommand::Put(vec![staged("x", false)])]);
    // RocksDB may not hold the first group yet: the writer keeps its
    // versions until the next group is handed over.
    let in_flight = writer.in_flight.get(&x).cloned().flatten().expect("x is in flight");
    let second = hand_over(
        &mut writer,
        vec![
            WriteCommand::Put(vec![staged("x", true)]),
            WriteCommand::Touch { key: x.clone(), field: "key".into(), expires_at_ms: Some(u64::MAX / 2) },
        ],
    );
    writer.drain();
    assert!(writer.in_flight.is_empty(), "drained: RocksDB holds everything");
    let answers: Vec<_> =
        first.into_iter().chain(second).map(|mut a| a.try_recv().expect("answered")).collect();
    assert_eq!(answers[0].as_ref().unwrap().seq, 1);
    assert_eq!(answers[0].as_ref().unwrap().heads[0].stamp, in_flight.head.stamp);
    assert!(matches!(answers[1], Err(StorageError::AlreadyExists { .. })), "{:?}", answers[1]);
    // The touch found the value staged by the group in flight.
    assert_eq!(answers[2].as_ref().unwrap().seq, 2);
    let db = &store.shared.engine.db;
    let stored = db.get_cf(db.cf_handle(VALUES).unwrap(), &x).unwrap().expect("value stored");
    assert_eq!(stored_value::decode(&stored).unwrap(), b"v");
    assert!(
        consensusdb_types::Head::decode(&db.get_cf(db.cf_handle(RECORDS).unwrap(), &x).unwrap().unwrap())
            .unwrap()
            .expires_at_ms
            .is_some()
    );
}

#[tokio::test]
async fn expired_values_are_hidden_and_compaction_keeps_the_head_stub() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ack = store.put(PutRecord { ttl_ms: Some(1), ..put("ttl", b"gone soon") }, None).await.unwrap();
    let expires_at_ms = ack.heads[0].expires_at_ms.expect("a TTL sets an expiry");
    store.put(put("keep", b"stays"), None).await.unwrap();
    eventually("the clock passes the expiry", || crate::clock::now_ms() >= expires_at_ms).await;
    assert!(store.get(key("ttl"), ReadOptions::default()).await.unwrap().is_none());
    let db = &store.shared.engine.db;
    let values = db.cf_handle(VALUES).unwrap();
    let records = db.cf_handle(RECORDS).unwrap();
    let ttl_key = encode_key(&key("ttl"));
    assert!(db.get_cf(values, &ttl_key).unwrap().is_some(), "not compacted yet");
    db.flush_cf(values).unwrap();
    db.compact_range_cf(values, None::<&[u8]>, None::<&[u8]>);
    assert!(db.get_cf(values, &ttl_key).unwrap().is_none(), "compaction dropped the expired value");
    assert!(db.get_cf(records, &ttl_key).unwrap().is_some(), "the head stays as a stub");
    let kept = store.get(key("keep"), ReadOptions::default()).await.unwrap().unwrap();
    assert_eq!(kept.value.as_deref(), Some(&b"stays"[..]));
}

#[tokio::test]
async fn remove_hides_and_later_writes_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = store.put(put("r", b"1"), None).await.unwrap().heads[0];
    let tomb = store.remove(key("r"), None).await.unwrap();
    assert!(tomb.tombstone && tomb.stamp > first.stamp);
    assert!(store.get(key("r"), ReadOptions::default()).await.unwrap().is_none());
    let again = store.put(PutRecord { if_absent: true, ..put("r", b"2") }, None).await.unwrap().heads[0];
    assert!(again.stamp > tomb.stamp);
    let read = store.get(key("r"), ReadOptions::default()).await.unwrap().unwrap();
    assert_eq!(read.value.as_deref(), Some(&b"2"[..]));
}

#[tokio::test]
async fn touch_rewrites_the_value_with_a_new_expiry_and_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let value = b"compress me ".repeat(50);
    let original =
        store.put(PutRecord { compression: Compression::Lz4, ..put("t", &value) }, None).await.unwrap().heads
            [0];
    let touched = store.touch(key("t"), Some(60_000), None).await.unwrap();
    assert!(touched.stamp > original.stamp);
    assert_eq!(touched.compression, Compression::Lz4);
    assert!(touched.expires_at_ms.is_some());
    let read = store.get(key("t"), ReadOptions::default()).await.unwrap().unwrap();
    assert_eq!(read.value.as_deref(), Some(value.as_slice()));
    assert_eq!(read.head, touched);
}

#[tokio::test]
async fn reopen_keeps_records_identity_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let origin = store.origin();
    store.put(put("a", b"1"), None).await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.put(put("b", b"2"), None).await, Err(StorageError::ShuttingDown)));
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.origin(), origin);
    assert_eq!(store.put(put("b", b"2"), None).await.unwrap().seq, 2);
    assert!(store.get(key("a"), ReadOptions::default()).await.unwrap().is_some());
}

#[tokio::test]
async fn a_second_opener_gets_already_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let err = Store::open(StoreOptions::new(dir.path())).err().expect("second open fails");
    assert!(matches!(err, StorageError::DataDirInUse { .. }));
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[tokio::test]
async fn unknown_formats_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = &store.shared.engine.db;
    db.put_cf(db.cf_handle(META).unwrap(), b"format.data_dir", 99u32.to_be_bytes()).unwrap();
    store.close().await.unwrap();
    drop(store);
    let err = Store::open(StoreOptions::new(dir.path())).err().expect("refused");
    assert!(err.to_string().contains("format.data_dir is 99"), "{err}");

    let newer = tempfile::tempdir().unwrap();
    drop(open(newer.path()));
    let mut options = rocksdb::Options::default();
    options.create_missing_column_families(true);
    let mut names: Vec<&str> = crate::columns::ALL.to_vec();
    names.push("from_the_future");
    drop(rocksdb::DB::open_cf(&options, data_dir::rocksdb_path(newer.path()), names).unwrap());
    let err = Store::open(StoreOptions::new(newer.path())).err().expect("refused");
    assert!(err.to_string().contains("from_the_future"), "{err}");
}

#[tokio::test]
async fn scans_are_chunked_by_bytes_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let limits = consensusdb_types::Limits { page_bytes: 2048, ..Default::default() };
    let store = Store::open(StoreOptions { limits, ..StoreOptions::new(dir.path()) }).unwrap();
    let records: Vec<_> = (0..50).map(|i| put(&format!("m{i:02}"), &[b'x'; 500])).collect();
    store.put_batch(records, None).await.unwrap();
    let query = |token| ScanQuery {
        scope: ScanScope::Tenant { major: "tenant".into() },
        limit: 30,
        page_token: token,
        read: ReadOptions::default(),
    };
    let mut chunks = store.scan(query(None)).unwrap();
    let mut first = Vec::new();
    let mut token = None;
    let mut chunk_count = 0;
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk.unwrap();
        chunk_count += 1;
        first.extend(chunk.records);
        token = chunk.next_page_token.or(token);
    }
    assert_eq!(first.len(), 30);
    assert!(chunk_count >= 30 * 500 / 2048, "chunks bounded by bytes: got {chunk_count}");
    let mut rest = Vec::new();
    let mut chunks = store.scan(query(token)).unwrap();
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk.unwrap();
        assert!(chunk.next_page_token.is_none());
        rest.extend(chunk.records);
    }
    assert_eq!(rest.len(), 20);
    let minors: Vec<_> = first.iter().chain(&rest).map(|r| r.key.row.minor.clone()).collect();
    assert_eq!(minors, (0..50).map(|i| format!("m{i:02}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn future_time_uuids_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let future = TimeUuid::random_at(SystemTime::now() + Duration::from_secs(48 * 3600));
    let record = PutRecord { key: RowKey::new("t", "r", "m").at(Some(future)), ..put("x", b"v") };
    let err = store.put(record, None).await.unwrap_err();
    assert_eq!(err.field(), Some("key.time_uuid"));
    assert_eq!(store.counters().future_time_rejected.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn range_pages_are_cut_by_bytes_and_resume_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let limits = consensusdb_types::Limits { page_bytes: 4096, ..Default::default() };
    let store = Store::open(StoreOptions { limits, ..StoreOptions::new(dir.path()) }).unwrap();
    let row = RowKey::new("tenant", "EVENTS", "big");
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let records: Vec<_> = (0..20u64)
        .map(|i| PutRecord {
            key: row
                .clone()
                .at(Some(TimeUuid::from_content(base + Duration::from_millis(i), &i.to_be_bytes()))),
            ..put("unused", &[b'x'; 1500])
        })
        .collect();
    store.put_batch(records, None).await.unwrap();
    let mut token = None;
    let mut pages = Vec::new();
    loop {
        let query = RangeQuery {
            row: row.clone(),
            window: RangeWindow::NewestFirst { at_or_before: None },
            limit: 1000,
            page_token: token.take(),
            read: ReadOptions::default(),
        };
        let page = store.get_range(query).await.unwrap();
        pages.push(page.records.len());
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    // 1500-byte values under a 4096-byte budget: two per page.
    assert!(pages.iter().all(|&n| n <= 2), "pages {pages:?}");
    assert_eq!(pages.iter().sum::<usize>(), 20);
}

#[tokio::test]
async fn a_failed_commit_is_outcome_unknown_and_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let origin = store.origin();
    store.put(put("before", b"1"), None).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    // A read-only database fails every write with a real RocksDB error.
    let mut writer = hand_built_writer(Arc::new(data_dir::open_read_only(dir.path())), origin);
    writer.next_seq = 2;
    let first = commit_group(&mut writer, vec![WriteCommand::Put(vec![staged("x", false)])]);
    assert!(matches!(first[0], Err(StorageError::OutcomeUnknown { .. })), "{:?}", first[0]);
    assert_eq!(writer.next_seq, 3, "a seq that may be on disk is never handed out again");
    // Servers read this to report the node not ready.
    assert!(writer.health.is_stopped(), "health reports the stop");
    assert!(writer.health.stop_reason().is_some(), "with the reason");
    let later = commit_group(&mut writer, vec![WriteCommand::Remove { key: encode_key(&key("y")) }]);
    assert!(matches!(later[0], Err(StorageError::WriterStopped { .. })), "{:?}", later[0]);
    assert_eq!(later[0].as_ref().unwrap_err().code(), consensusdb_types::ErrorCode::Unavailable);
}

#[tokio::test]
async fn concurrent_scans_are_capped_and_a_dropped_scan_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let limits = consensusdb_types::Limits { page_bytes: 1024, ..Default::default() };
    let options = StoreOptions { limits, max_concurrent_scans: 1, ..StoreOptions::new(dir.path()) };
    let store = Store::open(options).unwrap();
    store.put_batch((0..50).map(|i| put(&format!("m{i:02}"), &[b'x'; 500])).collect(), None).await.unwrap();
    let query = ScanQuery {
        scope: ScanScope::Region { major: "tenant".into(), region: "ACCOUNT".into() },
        limit: 100,
        page_token: None,
        read: ReadOptions::default(),
    };
    let stalled = store.scan(query.clone()).unwrap();
    let err = store.scan(query.clone()).expect_err("second scan refused");
    assert!(matches!(err, StorageError::Busy { .. }), "{err}");
    drop(stalled);
    eventually("the dropped scan frees its slot", || match store.scan(query.clone()) {
        Ok(_) => true,
        Err(StorageError::Busy { .. }) => false,
        Err(other) => panic!("slot never freed: {other}"),
    })
    .await;
}

#[tokio::test]
async fn bad_ttls_and_future_keys_on_every_write_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = store.put(PutRecord { ttl_ms: Some(0), ..put("z", b"v") }, None).await.unwrap_err();
    assert_eq!(err.field(), Some("ttl_ms"));
    let future = TimeUuid::random_at(SystemTime::now() + Duration::from_secs(48 * 3600));
    let far = RowKey::new("t", "r", "m").at(Some(future));
    assert_eq!(store.remove(far.clone(), None).await.unwrap_err().field(), Some("key.time_uuid"));
    assert_eq!(store.touch(far, Some(10), None).await.unwrap_err().field(), Some("key.time_uuid"));
    assert_eq!(store.counters().future_time_rejected.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_directory_with_data_but_no_node_id_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.put(put("a", b"1"), None).await.unwrap();
    let db = &store.shared.engine.db;
    db.delete_cf(columns::handle(db, META), b"node_id").unwrap();
    store.close().await.unwrap();
    drop(store);
    let err = Store::open(StoreOptions::new(dir.path())).err().expect("refused");
    assert!(err.to_string().contains("no node_id"), "{err}");
}

#[tokio::test]
async fn ranges_pair_each_head_with_its_own_value_across_gaps_in_both_directions() {
    // Values are read by an iterator moving with the heads; tombstones have
    // no value, so gaps of every length (one, and longer than the cursor
    // steps before it seeks) must not shift values onto the wrong head.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let row = RowKey::new("tenant", "EVENTS", "gaps");
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let key_of = |i: u64| row.clone().at(Some(TimeUuid::from_content(base + Duration::from_millis(i), &[0])));
    let records: Vec<_> =
        (0..40u64).map(|i| PutRecord { key: key_of(i), ..put("unused", i.to_string().as_bytes()) }).collect();
    store.put_batch(records, None).await.unwrap();
    let removed = |i: u64| i.is_multiple_of(3) || (10..=25).contains(&i);
    for i in (0..40).filter(|&i| removed(i)) {
        store.remove(key_of(i), None).await.unwrap();
    }
    let survivors: Vec<String> = (0..40u64).filter(|&i| !removed(i)).map(|i| i.to_string()).collect();
    let read = |window, limit, page_token| RangeQuery {
        row: row.clone(),
        window,
        limit,
        page_token,
        read: ReadOptions::default(),
    };
    let values = |page: &Page| -> Vec<String> {
        page.records.iter().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap()).collect()
    };
    let forward = RangeWindow::Forward { from: None, until: None };
    assert_eq!(values(&store.get_range(read(forward, 1000, None)).await.unwrap()), survivors);
    let newest_first = RangeWindow::NewestFirst { at_or_before: None };
    let mut reversed = survivors.clone();
    reversed.reverse();
    assert_eq!(values(&store.get_range(read(newest_first, 1000, None)).await.unwrap()), reversed);
    // Small pages start new walks mid-row.
    let mut paged = Vec::new();
    let mut token = None;
    loop {
        let page = store.get_range(read(newest_first, 3, token.take())).await.unwrap();
        paged.extend(values(&page));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, reversed);
}

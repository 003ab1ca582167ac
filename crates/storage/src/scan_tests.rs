//! Scans that stop before their end: a client that stops reading, a store
//! that closes. Either way the stream ends in an error with a token to
//! continue from, never as if the scan were complete.

use std::time::Duration;

use consensusdb_types::{Compression, RowKey};

use crate::tests::eventually;
use crate::*;

fn put(minor: &str) -> PutRecord {
    PutRecord {
        key: RowKey::new("tenant", "ACCOUNT", minor).at(None),
        value: vec![b'x'; 500],
        compression: Compression::None,
        ttl_ms: None,
        if_absent: false,
        client_key: None,
    }
}

/// A store holding 200 records of about 500 bytes, scanned 1 KiB a chunk,
/// so a scan is far more chunks than its channel holds.
async fn loaded(dir: &std::path::Path, stall_timeout: Duration) -> Store {
    let options = StoreOptions {
        limits: consensusdb_types::Limits { page_bytes: 1024, ..Default::default() },
        scan_stall_timeout: stall_timeout,
        ..StoreOptions::new(dir)
    };
    let store = Store::open(options).expect("store opens");
    let records = (0..200).map(|i| put(&format!("m{i:03}"))).collect();
    store.put_batch(records, None).await.expect("batch");
    store
}

fn tenant_scan(page_token: Option<Vec<u8>>) -> ScanQuery {
    ScanQuery {
        scope: ScanScope::Tenant { major: "tenant".into() },
        limit: 10_000,
        page_token,
        read: ReadOptions::default(),
    }
}

/// Reads a scan to its end: the minors, and the error it ended with.
async fn drain(mut stream: ScanStream) -> (Vec<String>, Option<StorageError>) {
    let mut minors = Vec::new();
    while let Some(chunk) = stream.recv().await {
        match chunk {
            Ok(page) => minors.extend(page.records.into_iter().map(|r| r.key.row.minor)),
            Err(error) => return (minors, Some(error)),
        }
    }
    (minors, None)
}

fn all_minors() -> Vec<String> {
    (0..200).map(|i| format!("m{i:03}")).collect()
}

#[tokio::test]
async fn a_client_that_stalls_gets_an_error_and_a_token_never_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = loaded(dir.path(), Duration::from_millis(100)).await;
    let stream = store.scan(tenant_scan(None)).expect("scan starts");
    // Take nothing until the scan gives up, at the stall timeout.
    eventually("the scan gives up on its stalled reader", || stream.given_up()).await;
    let (first, error) = drain(stream).await;
    let Some(StorageError::ScanCutShort { reason, resume_token }) = error else {
        panic!("a stalled scan must end in ScanCutShort, not {error:?} after {} records", first.len());
    };
    assert!(reason.contains("took nothing"), "{reason}");
    assert!(first.len() < 200, "the scan was cut before its end ({} records)", first.len());
    assert!(!first.is_empty(), "the chunks already queued are delivered");
    let token = resume_token.expect("records were sent, so the error says where to continue");
    let (rest, error) = drain(store.scan(tenant_scan(Some(token))).expect("resumes")).await;
    assert!(error.is_none(), "{error:?}");
    let seen: Vec<String> = first.into_iter().chain(rest).collect();
    assert_eq!(seen, all_minors(), "resuming gives every record once, in order");
}

#[tokio::test]
async fn a_client_that_keeps_reading_gets_everything_and_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = loaded(dir.path(), Duration::from_millis(100)).await;
    let (minors, error) = drain(store.scan(tenant_scan(None)).expect("scan starts")).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(minors, all_minors());
}

#[tokio::test]
async fn closing_the_store_cuts_running_scans_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = loaded(dir.path(), Duration::from_secs(600)).await;
    let stream = store.scan(tenant_scan(None)).expect("scan starts");
    let closed = tokio::time::timeout(Duration::from_secs(10), store.close()).await;
    closed.expect("close does not wait for the scan").expect("closes");
    let (minors, error) = tokio::time::timeout(Duration::from_secs(10), drain(stream))
        .await
        .expect("the scan stops when the store closes, long before its stall timeout");
    match error {
        Some(StorageError::ScanCutShort { reason, .. }) => {
            assert!(reason.contains("shutting down"), "{reason}")
        }
        other => panic!("expected ScanCutShort after {} records, got {other:?}", minors.len()),
    }
}

#[tokio::test]
async fn a_damaged_record_is_skipped_by_scans_and_named_by_narrow_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = loaded(dir.path(), Duration::from_secs(60)).await;
    // Damage one record's head on disk, as a bad disk or a bug would.
    let damaged =
        consensusdb_types::key_codec::encode_key(&RowKey::new("tenant", "ACCOUNT", "m100").at(None));
    let db = &store.shared.engine.db;
    db.put_cf(crate::columns::handle(db, crate::columns::RECORDS), &damaged, [0xEE, 0x01]).unwrap();
    let (minors, error) = drain(store.scan(tenant_scan(None)).expect("scan starts")).await;
    assert!(error.is_none(), "one damaged record does not fail the tenant's scan: {error:?}");
    let expected: Vec<String> = all_minors().into_iter().filter(|m| m != "m100").collect();
    assert_eq!(minors, expected);
    assert_eq!(store.counters().damaged_records_skipped.load(std::sync::atomic::Ordering::Relaxed), 1);
    // A read of that key says it is damaged, naming it.
    let key = RowKey::new("tenant", "ACCOUNT", "m100").at(None);
    let error = store.get(key, ReadOptions::default()).await.expect_err("damaged");
    assert_eq!(error.code(), consensusdb_types::ErrorCode::Internal);
    let hex = crate::error::hex(&damaged);
    assert!(error.to_string().contains(&hex), "the error names the key: {error}");
}

//! Client-side encryption end to end: a password keychain in one SDK
//! instance encrypts, another instance with the same password reads, the
//! node stores and returns only ciphertext, and the wrong password, no
//! keychain or a keychain of another tenant each get their documented
//! error.

use std::path::Path;

use consensusdb_client::{
    Compression, ErrorCode, KEYCHAIN_REGION, KEYCHAIN_ROW, KdfParams, Keychain, Record, RecordKey, RowKey,
};
use futures::TryStreamExt;

use crate::support::*;

const SECRET: &str = "client-side-secret-7c1e";
const CLEAR: &str = "sent-in-the-clear-40d2";
const PASSWORD: &str = "correct horse battery staple";

fn key(minor: &str, ms: Option<u64>) -> RecordKey {
    RowKey::new("acme", "NOTES", minor).at(ms.map(at_ms))
}

/// Files under `dir` holding `marker`.
fn files_holding(dir: &Path, marker: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_holding(&path, marker));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(marker.len()).any(|w| w == marker.as_bytes()))
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test]
async fn a_second_sdk_with_the_same_password_reads_what_the_first_encrypted_and_the_node_never_sees_it() {
    // At-rest sealing off, so only the client's encryption stands between
    // the values and the disk, and the control below can find its marker.
    let node = TestNode::start_with(|config| config.dev.insecure_unsealed = true).await;
    let writer = node.sdk().await;
    let keychain = Keychain::from_password(&writer, "acme", PASSWORD).await.expect("made");
    assert_eq!(keychain.tenant(), "acme");

    let secret = |i: u32| format!("{SECRET} number {i} ").repeat(20);
    let head = writer
        .put(Record::new(key("n", Some(1)), secret(1)).compression(Compression::Lz4).encrypt(&keychain))
        .await
        .expect("put");
    assert_eq!(head.client_key, Some(keychain.fingerprint()), "the head carries the key's fingerprint");
    assert_eq!(head.compression, Compression::None, "the node compresses nothing: the client did");
    assert!((head.stored_size as usize) < secret(1).len(), "compressed on the client before encryption");
    writer
        .put_batch((2..5).map(|i| Record::new(key("n", Some(i.into())), secret(i)).encrypt(&keychain)))
        .await
        .expect("batch");
    writer.put(Record::new(key("untimed", None), secret(9)).encrypt(&keychain)).await.expect("untimed");
    writer.put(Record::new(key("clear", None), CLEAR)).await.expect("a value in the clear");

    // Another SDK instance: the same password derives the same key from
    // the salt stored in the tenant.
    let other = node.sdk().await;
    let same = Keychain::from_password(&other, "acme", PASSWORD).await.expect("opens");
    assert_eq!(same.fingerprints(), vec![keychain.fingerprint()]);
    let reader = other.with_keychain(same);
    let got = reader.get(key("n", Some(1))).await.expect("get").expect("present");
    assert_eq!(got.value, secret(1).as_bytes());
    assert_eq!(reader.get(key("untimed", None)).await.unwrap().unwrap().value, secret(9).as_bytes());
    let recent = reader.get_recent(RowKey::new("acme", "NOTES", "n")).await.unwrap().unwrap();
    assert_eq!(recent.value, secret(4).as_bytes());
    let range = reader.get_range(RowKey::new("acme", "NOTES", "n")).limit(10).await.expect("range");
    let values: Vec<_> = range.records.iter().map(|r| String::from_utf8(r.value.clone()).unwrap()).collect();
    assert_eq!(values, [secret(4), secret(3), secret(2), secret(1)]);
    let scanned: Vec<_> = reader.scan_region("acme", "NOTES").stream().try_collect().await.expect("scan");
    assert_eq!(scanned.len(), 6, "4 timed, the untimed and the clear one");
    assert!(scanned.iter().any(|r| r.value == CLEAR.as_bytes() && r.head.client_key.is_none()));

    // A touch keeps the value encrypted under the same key.
    let touched =
        writer.touch(key("n", Some(2)), Some(std::time::Duration::from_secs(3600))).await.expect("touch");
    assert_eq!(touched.client_key, Some(keychain.fingerprint()));
    assert_eq!(reader.get(key("n", Some(2))).await.unwrap().unwrap().value, secret(2).as_bytes());

    // What the node holds and returns: the envelope, never the plaintext.
    let raw = other.get(key("n", Some(1))).raw().await.expect("raw").expect("present");
    assert!(!raw.value.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    let head_only = other.get(key("n", Some(1))).head_only().await.expect("head only").expect("present");
    assert_eq!(head_only.head.client_key, Some(keychain.fingerprint()));

    // Without the keychain: a clear refusal, not ciphertext as the value.
    let refused = other.get(key("n", Some(1))).await.expect_err("no keychain");
    assert_eq!(refused.code(), ErrorCode::FailedPrecondition);
    assert!(refused.message().contains("encrypted on the client"), "{refused}");
    let scan_refused: Result<Vec<_>, _> = other.scan_region("acme", "NOTES").stream().try_collect().await;
    assert_eq!(scan_refused.unwrap_err().code(), ErrorCode::FailedPrecondition);

    // The wrong password is told apart from damage, before any value.
    let wrong = Keychain::from_password(&other, "acme", "Tr0ub4dor&3").await.expect_err("wrong password");
    assert_eq!(wrong.code(), ErrorCode::Unauthenticated);
    assert!(wrong.message().contains("does not open tenant \"acme\"'s keychain"), "{wrong}");
    assert!(!wrong.message().contains("Tr0ub4dor"), "the password is never in a message");

    // A keychain is its tenant's: it neither writes another tenant nor
    // opens another tenant's values.
    let globex = Keychain::from_password_with(
        &writer,
        "globex",
        PASSWORD,
        KdfParams { memory_kib: 8 * 1024, iterations: 1, parallelism: 1 },
    )
    .await
    .expect("made");
    assert_ne!(globex.fingerprint(), keychain.fingerprint(), "a salt of its own");
    let misplaced =
        writer.put(Record::new(key("x", None), "v").encrypt(&globex)).await.expect_err("other tenant");
    assert_eq!((misplaced.code(), misplaced.field()), (ErrorCode::InvalidArgument, Some("key.major_key")));
    let globex_reader = other.with_keychain(globex);
    assert_eq!(globex_reader.get(key("n", Some(1))).await.unwrap_err().code(), ErrorCode::FailedPrecondition);

    // Looking for a keychain never makes one.
    assert!(Keychain::find(&other, "initech", PASSWORD).await.expect("find").is_none());
    let keychain_row = RowKey::new("initech", KEYCHAIN_REGION, KEYCHAIN_ROW);
    assert!(other.get_recent(keychain_row).await.expect("read").is_none(), "nothing was written");

    let data = node.stop().await.expect("temp dir");
    assert_eq!(files_holding(data.path(), SECRET), Vec::<String>::new(), "no plaintext on the node's disk");
    assert!(!files_holding(data.path(), CLEAR).is_empty(), "the control: a value in the clear is found");
}

#[tokio::test]
async fn a_client_encrypted_value_must_not_ask_the_node_to_compress_it() {
    let node = TestNode::start().await;
    let mut client = node.client.clone();
    let mut request = put_request(crate::support::key("acme", "NOTES", "n", None), b"ciphertext");
    request.client_key_fingerprint = vec![1; 8];
    request.compression = consensusdb_proto::v1::Compression::Lz4.into();
    let status = client.put(request.clone()).await.expect_err("compression with client encryption");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().starts_with("compression: must be NONE"), "{}", status.message());
    request.compression = consensusdb_proto::v1::Compression::None.into();
    request.client_key_fingerprint = vec![1; 3];
    let status = client.put(request.clone()).await.expect_err("a short fingerprint");
    assert!(status.message().starts_with("client_key_fingerprint:"), "{}", status.message());
    request.client_key_fingerprint = vec![1; 8];
    let head = client.put(request).await.expect("put").into_inner().head.expect("head");
    assert_eq!(head.client_key_fingerprint, vec![1; 8]);
    node.stop().await;
}

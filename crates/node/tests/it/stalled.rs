//! Clients that stop reading a scan: the node gives up on the scan after
//! `storage.scan_stall_timeout_ms`, and the client, once it reads again,
//! gets an error with a page token to continue from, never the marker of
//! a complete scan (HTTP's `end` line, gRPC's OK status). The SDK resumes
//! such a scan by itself, so its caller sees every record once.

use std::time::Duration;

use consensusdb_client::Client;
use consensusdb_proto::status::PAGE_TOKEN_METADATA;
use consensusdb_proto::v1;
use futures::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

/// Records of 4 KiB: 16 MiB in all, far beyond what socket buffers and
/// HTTP/2 windows hold, so a client that stops reading stalls the scan.
const RECORDS: usize = 4000;
const VALUE_BYTES: usize = 4096;
/// How long the node waits for a stalled client, and how long it stalls.
/// The stall is the stimulus, so a fixed wait: the scan's end is not
/// observable from outside until the client reads again.
const STALL_TIMEOUT_MS: u64 = 300;
const STALL: Duration = Duration::from_secs(2);

async fn loaded_node() -> TestNode {
    let mut node = TestNode::start_with(|c| c.storage.scan_stall_timeout_ms = STALL_TIMEOUT_MS).await;
    let value = vec![b'v'; VALUE_BYTES];
    for batch in (0..RECORDS).collect::<Vec<_>>().chunks(500) {
        let records = batch
            .iter()
            .map(|i| put_request(key("stall", "EVENTS", &format!("e{i:05}"), None), &value))
            .collect();
        node.client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await.expect("batch");
    }
    node
}

/// The body of an HTTP/1.1 chunked response, de-chunked.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).expect("ascii").trim(), 16)
            .expect("a hex chunk size");
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

#[tokio::test]
async fn an_http_scan_whose_reader_stalls_ends_with_an_error_line_and_a_token() {
    let node = loaded_node().await;
    let mut stream = node.http_stream().await;
    let request = "GET /v1/scan/stall?limit=10000 HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("request sent");
    // The client stops reading: the stimulus, a fixed wait (see STALL).
    tokio::time::sleep(STALL).await;
    let mut raw = Vec::new();
    tokio::time::timeout(CALL_TIMEOUT, stream.read_to_end(&mut raw)).await.expect("bounded").expect("reads");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end") + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let body = String::from_utf8(dechunk(&raw[split..])).expect("utf-8");
    let lines: Vec<serde_json::Value> =
        body.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect();
    let last = lines.last().expect("some lines");
    let records = lines.iter().filter(|line| line.get("record").is_some()).count();
    assert!(last.get("end").is_none(), "a cut-short scan never ends with `end` ({records} records): {last}");
    let error = &last["error"];
    assert_eq!(error["code"], "UNAVAILABLE", "{last}");
    assert!(error["message"].as_str().unwrap_or_default().contains("cut short"), "{last}");
    assert!(records < RECORDS, "the scan was cut ({records} records)");
    // The token continues right after the last record sent.
    let token = error["next_page_token"].as_str().expect("a token to continue from");
    let mut rest = node.http_stream().await;
    let request = format!(
        "GET /v1/scan/stall?limit=10000&head_only=true&page_token={token} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    );
    rest.write_all(request.as_bytes()).await.expect("request sent");
    let mut raw = Vec::new();
    tokio::time::timeout(CALL_TIMEOUT, rest.read_to_end(&mut raw)).await.expect("bounded").expect("reads");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end") + 4;
    let body = String::from_utf8(dechunk(&raw[split..])).expect("utf-8");
    let more = body.lines().filter(|line| line.starts_with("{\"record\"")).count();
    assert!(body.trim_end().ends_with(r#"{"end":{"next_page_token":null}}"#), "the rest ends cleanly");
    assert_eq!(records + more, RECORDS, "resuming gives exactly the records not yet sent");
    node.stop().await;
}

#[tokio::test]
async fn a_grpc_scan_whose_reader_stalls_ends_with_unavailable_and_a_token() {
    let mut node = loaded_node().await;
    let request = v1::ScanTenantRequest {
        major_key: "stall".into(),
        options: Some(v1::ScanOptions { limit: 10_000, page_token: Vec::new(), read: None }),
    };
    let mut chunks = node.client.scan_tenant(request).await.expect("scan starts").into_inner();
    // The client stops reading: the stimulus, a fixed wait (see STALL).
    tokio::time::sleep(STALL).await;
    let mut records = 0;
    let status = loop {
        match chunks.message().await {
            Ok(Some(chunk)) => records += chunk.records.len(),
            Ok(None) => panic!("a cut-short scan ended with status OK after {records} of {RECORDS} records"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(records < RECORDS, "the scan was cut ({records} records)");
    let token = status.metadata().get_bin(PAGE_TOKEN_METADATA).expect("a token").to_bytes().expect("bytes");
    let rest = node
        .client
        .scan_tenant(v1::ScanTenantRequest {
            major_key: "stall".into(),
            options: Some(v1::ScanOptions {
                limit: 10_000,
                page_token: token.to_vec(),
                read: Some(v1::ReadOptions { head_only: true, raw: false }),
            }),
        })
        .await;
    let (more, next, _) = must_collect(rest).await;
    assert!(next.is_empty());
    assert_eq!(records + more.len(), RECORDS, "resuming gives exactly the records not yet sent");
    node.stop().await;
}

#[tokio::test]
async fn the_sdk_resumes_a_scan_its_caller_stalled_and_delivers_each_record_once() {
    let node = loaded_node().await;
    let client = Client::builder()
        .endpoint(node.grpc_url())
        .credentials(shared_credentials())
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .expect("connects");
    let mut stream = client.scan_tenant("stall").page_size(10_000).stream();
    let first = stream.try_next().await.expect("first record").expect("some");
    // The client stops reading: the stimulus, a fixed wait (see STALL).
    tokio::time::sleep(STALL).await;
    let rest: Vec<_> = stream.try_collect().await.expect("the SDK resumes after the node gave up");
    let minors: Vec<String> =
        std::iter::once(first).chain(rest).map(|record| record.key.row.minor.clone()).collect();
    assert_eq!(minors, (0..RECORDS).map(|i| format!("e{i:05}")).collect::<Vec<_>>());
    node.stop().await;
}

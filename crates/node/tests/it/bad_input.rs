//! Bad input gets INVALID_ARGUMENT (or the right code) naming the field;
//! the server never panics and keeps serving.

use std::time::{Duration, SystemTime};

use consensusdb_proto::v1;
use consensusdb_types::TimeUuid;
use tonic::Code;

use crate::support::*;

/// Asserts `status` is INVALID_ARGUMENT about `field`, in both the message
/// and the field trailer.
fn assert_invalid(status: tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(
        status.message().starts_with(&format!("{field}:")),
        "expected field {field}, got {:?}",
        status.message()
    );
    let trailer =
        status.metadata().get(consensusdb_api::grpc::status::FIELD_METADATA).and_then(|v| v.to_str().ok());
    assert_eq!(trailer, Some(field));
}

#[tokio::test]
async fn bad_puts_name_the_field() {
    let mut node = TestNode::start_with(|c| {
        c.limits.max_component_bytes = 64;
        c.limits.max_value_bytes = 1024;
        c.limits.max_batch_records = 5;
        c.limits.max_batch_bytes = 2048;
    })
    .await;
    let ok = || key("acme", "ACCOUNT", "balance", None);
    let c = &mut node.client;

    assert_invalid(
        c.put(put_request(key("", "ACCOUNT", "balance", None), b"v")).await.unwrap_err(),
        "key.major_key",
    );
    assert_invalid(
        c.put(put_request(key("acme", "", "balance", None), b"v")).await.unwrap_err(),
        "key.region",
    );
    let long = "x".repeat(65);
    let status = c.put(put_request(key("acme", "ACCOUNT", &long, None), b"v")).await.unwrap_err();
    assert!(status.message().contains("over the limit of 64 bytes"), "{}", status.message());
    assert_invalid(status, "key.minor_key");
    assert_invalid(c.put(put_request(ok(), &[0; 1025])).await.unwrap_err(), "value");
    assert_invalid(
        c.put(v1::PutRequest { ttl_ms: -5, ..put_request(ok(), b"v") }).await.unwrap_err(),
        "ttl_ms",
    );
    assert_invalid(
        c.put(v1::PutRequest { compression: 7, ..put_request(ok(), b"v") }).await.unwrap_err(),
        "compression",
    );
    assert_invalid(c.put(v1::PutRequest { key: None, ..put_request(ok(), b"v") }).await.unwrap_err(), "key");

    let mut bad_time = ok();
    bad_time.time_uuid = vec![1; 15];
    assert_invalid(c.put(put_request(bad_time.clone(), b"v")).await.unwrap_err(), "key.time_uuid");
    bad_time.time_uuid = uuid::Uuid::new_v4().as_bytes().to_vec();
    let status = c.put(put_request(bad_time, b"v")).await.unwrap_err();
    assert!(status.message().contains("version 1 or 7"), "{}", status.message());
    assert_invalid(status, "key.time_uuid");
    let future = TimeUuid::random_at(SystemTime::now() + Duration::from_secs(7 * 24 * 3600));
    let status = c.put(put_request(key("acme", "ACCOUNT", "balance", Some(future)), b"v")).await.unwrap_err();
    assert!(status.message().contains("in the future"), "{}", status.message());
    assert_invalid(status, "key.time_uuid");

    let batch = |n: usize, size: usize| v1::PutBatchRequest {
        records: (0..n)
            .map(|i| put_request(key("acme", "CHAT", &format!("m{i}"), None), &vec![1; size]))
            .collect(),
        write_concern: 0,
    };
    assert_invalid(c.put_batch(batch(0, 1)).await.unwrap_err(), "records");
    assert_invalid(c.put_batch(batch(6, 1)).await.unwrap_err(), "records");
    assert_invalid(c.put_batch(batch(3, 1000)).await.unwrap_err(), "records");
    let mut dup = batch(2, 1);
    dup.records[1].key = dup.records[0].key.clone();
    assert_invalid(c.put_batch(dup).await.unwrap_err(), "records[1].key");
    let mut nested = batch(3, 1);
    nested.records[2].ttl_ms = -1;
    assert_invalid(c.put_batch(nested).await.unwrap_err(), "records[2].ttl_ms");
    let mut nested = batch(3, 1);
    nested.records[1].key.as_mut().unwrap().major_key.clear();
    assert_invalid(c.put_batch(nested).await.unwrap_err(), "records[1].key.major_key");

    // Still serving after all of that.
    must_put(c, ok(), b"fine").await;
    node.stop().await;
}

#[tokio::test]
async fn bad_reads_name_the_field() {
    let mut node = TestNode::start_with(|c| c.limits.max_read_limit = 100).await;
    let c = &mut node.client;
    let range = |limit, token: Vec<u8>| v1::GetRangeRequest {
        row: Some(row("acme", "CHAT", "room")),
        limit,
        page_token: token,
        read: None,
        window: None,
    };
    assert_invalid(c.get_range(range(0, vec![])).await.unwrap_err(), "limit");
    assert_invalid(c.get_range(range(101, vec![])).await.unwrap_err(), "limit");
    assert_invalid(c.get_range(range(10, vec![1, 2, 3])).await.unwrap_err(), "page_token");
    assert_invalid(c.get_range(range(10, vec![42])).await.unwrap_err(), "page_token");
    assert_invalid(
        c.get_range(v1::GetRangeRequest { row: None, ..range(1, vec![]) }).await.unwrap_err(),
        "row",
    );
    let forward = v1::GetRangeRequest {
        window: Some(v1::get_range_request::Window::Forward(v1::Forward {
            from: at_ms(10).as_bytes().to_vec(),
            until: at_ms(5).as_bytes().to_vec(),
        })),
        ..range(10, vec![])
    };
    assert_invalid(c.get_range(forward).await.unwrap_err(), "forward.until");
    let recent = v1::GetRecentRequest { row: Some(row("acme", "", "m")), at_or_before: vec![], read: None };
    assert_invalid(c.get_recent(recent).await.unwrap_err(), "row.region");
    let recent =
        v1::GetRecentRequest { row: Some(row("acme", "CHAT", "m")), at_or_before: vec![0; 16], read: None };
    assert_invalid(c.get_recent(recent).await.unwrap_err(), "at_or_before");
    assert_invalid(
        c.get(v1::GetRequest { key: Some(key("acme", "CHAT", "", None)), read: None }).await.unwrap_err(),
        "key.minor_key",
    );
    assert_invalid(
        c.scan_tenant(v1::ScanTenantRequest {
            major_key: String::new(),
            options: Some(v1::ScanOptions { limit: 1, ..Default::default() }),
        })
        .await
        .unwrap_err(),
        "major_key",
    );
    assert_invalid(
        c.scan_tenant(v1::ScanTenantRequest { major_key: "acme".into(), options: None }).await.unwrap_err(),
        "options",
    );
    assert_invalid(
        c.scan_region(v1::ScanRegionRequest {
            major_key: "acme".into(),
            region: "CHAT".into(),
            options: Some(v1::ScanOptions { limit: 0, ..Default::default() }),
        })
        .await
        .unwrap_err(),
        "options.limit",
    );
    assert_invalid(
        c.touch(v1::TouchRequest { key: Some(key("acme", "CHAT", "m", None)), ttl_ms: -1 })
            .await
            .unwrap_err(),
        "ttl_ms",
    );
    assert_invalid(c.remove(v1::RemoveRequest { key: None }).await.unwrap_err(), "key");
    node.stop().await;
}

/// A `PutRequest` as a client with a broken encoder might send it: the key
/// components as raw bytes, where the API has UTF-8 strings.
#[derive(Clone, PartialEq, prost::Message)]
struct RawPutRequest {
    #[prost(message, optional, tag = "1")]
    key: Option<RawKey>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawKey {
    #[prost(bytes = "vec", tag = "1")]
    major_key: Vec<u8>,
}

#[tokio::test]
async fn requests_that_do_not_decode_are_bad_input_naming_the_field() {
    let mut node = TestNode::start().await;
    let channel = consensusdb_client::endpoint_for(&node.grpc_url(), node.credentials.as_ref(), "addr")
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/consensusdb.v1.Records/Put");
    let request = RawPutRequest { key: Some(RawKey { major_key: vec![0xff, 0xfe] }) };
    let status = raw
        .unary::<_, v1::PutResponse, _>(
            tonic::Request::new(request),
            path.clone(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("refused");
    assert_invalid(status, "key.major_key");
    // A message over the size limit is too large, not out of range.
    let big = put_request(key("acme", "ACCOUNT", "big", None), &vec![b'x'; 5 << 20]);
    let status = node.client.put(big).await.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // And the node still serves.
    must_put(&mut node.client, key("acme", "ACCOUNT", "after", None), b"v").await;
    node.stop().await;
}

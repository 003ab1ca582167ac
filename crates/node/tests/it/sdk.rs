//! The Rust SDK against in-process nodes: every operation, paging,
//! errors with their fields, and failover between nodes.

use std::time::Duration;

use consensusdb_client::{Client, Compression, ErrorCode, Record, RecordKey, RetryPolicy, RowKey, TimeUuid};
use futures::TryStreamExt;

use crate::support::*;

fn timed(minor: &str, ms: u64) -> RecordKey {
    RecordKey::builder().major("acme").region("ACCOUNT").minor(minor).timestamp(at_ms(ms)).build()
}

#[tokio::test]
async fn every_operation_round_trips_through_the_sdk() {
    let node = TestNode::start().await;
    let client = node.sdk().await;
    let row = RowKey::new("acme", "ACCOUNT", "balance");

    for (i, balance) in ["100", "120", "95"].into_iter().enumerate() {
        let head = client
            .put(Record::new(timed("balance", 1_000 + i as u64), balance).compression(Compression::Lz4))
            .await
            .expect("put");
        assert!(!head.tombstone);
    }
    let latest = client.get_recent(row.clone()).await.expect("recent").expect("present");
    assert_eq!(latest.value_str(), Some("95"));
    let before =
        client.get_recent(row.clone()).at_or_before(at_ms(1_001)).await.expect("recent").expect("present");
    assert_eq!(before.value, b"120");
    assert!(client.get_recent(row.clone()).at_or_before(at_ms(999)).await.expect("recent").is_none());

    let head_only = client.get(timed("balance", 1_000)).head_only().await.expect("get").expect("present");
    assert!(head_only.value.is_empty());
    assert_eq!(head_only.head.stored_size, 3);
    assert!(client.get(timed("balance", 5)).await.expect("get").is_none(), "absent is None, not an error");

    let newest = client.get_range(row.clone()).limit(2).await.expect("range");
    let values: Vec<&[u8]> = newest.records.iter().map(|r| r.value.as_slice()).collect();
    assert_eq!(values, [b"95".as_slice(), b"120"]);
    let token = newest.next_page_token.expect("more to read");
    let rest = client.get_range(row.clone()).limit(2).page_token(token).await.expect("next page");
    assert_eq!(rest.records.len(), 1);
    let all: Vec<_> = client.get_range(row.clone()).limit(1).stream().try_collect().await.expect("stream");
    assert_eq!(all.len(), 3, "the stream follows every page");

    let ttl = client.touch(timed("balance", 1_000), Some(Duration::from_secs(3600))).await.expect("touch");
    assert!(ttl.expires_at_ms.is_some());
    let tombstone = client.remove(timed("balance", 1_000)).await.expect("remove");
    assert!(tombstone.tombstone);
    assert!(client.get(timed("balance", 1_000)).await.expect("get").is_none());
    let missing = client.touch(timed("balance", 1_000), None).await.expect_err("touching a removed record");
    assert_eq!(missing.code(), ErrorCode::NotFound);

    let batch = client
        .put_batch((0..5).map(|i| Record::new(timed("events", 2_000 + i), format!("e{i}"))))
        .timeout(Duration::from_secs(5))
        .await
        .expect("batch");
    assert_eq!(batch.heads.len(), 5);
    assert!(batch.heads.iter().all(|h| h.seq == batch.seq), "one log entry");
    node.stop().await;
}

#[tokio::test]
async fn scans_stream_every_record_in_key_order_across_pages() {
    let node = TestNode::start().await;
    let client = node.sdk().await;
    for region in ["A", "B"] {
        for ms in 0..7 {
            let key = RecordKey::builder().major("t").region(region).minor("m").timestamp(at_ms(ms)).build();
            client.put(Record::new(key, vec![b'x'; 10])).await.expect("put");
        }
    }
    client.put(Record::new(RowKey::new("u", "A", "m").at(None), "other tenant")).await.expect("put");

    let tenant: Vec<_> = client.scan_tenant("t").page_size(3).stream().try_collect().await.expect("scan");
    assert_eq!(tenant.len(), 14);
    let keys: Vec<_> =
        tenant.iter().map(|r| (r.key.row.region.clone(), r.key.time.map(|t| t.ticks()))).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "key order, no duplicates across pages");
    sorted.dedup();
    assert_eq!(sorted.len(), 14);

    let region: Vec<_> = client.scan_region("t", "B").head_only().stream().try_collect().await.expect("scan");
    assert_eq!(region.len(), 7);
    assert!(region.iter().all(|r| r.value.is_empty() && r.key.row.region == "B"));
    let limited: Vec<_> =
        client.scan_tenant("t").page_size(4).limit(9).stream().try_collect().await.expect("scan");
    assert_eq!(limited.len(), 9);
    let row: Vec<_> = client.scan_row(RowKey::new("t", "A", "m")).stream().try_collect().await.expect("scan");
    assert_eq!(row.len(), 7);
    node.stop().await;
}

#[tokio::test]
async fn errors_carry_the_servers_code_and_field() {
    let node = TestNode::start().await;
    let client = node.sdk().await;
    let error =
        client.put(Record::new(RowKey::new("", "r", "m").at(None), "v")).await.expect_err("empty tenant");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
    assert_eq!(error.field(), Some("key.major_key"));
    assert_eq!(error.attempts(), 1, "bad input is not retried");

    let batch =
        vec![Record::new(timed("b", 1), "ok"), Record::new(RowKey::new("t", "", "m").at(None), "bad")];
    let error = client.put_batch(batch).await.expect_err("bad second record");
    assert_eq!(error.field(), Some("records[1].key.region"));

    let key = RowKey::new("t", "r", "once").at(None);
    client.put(Record::new(key.clone(), "first").only_if_absent()).await.expect("first put");
    let error = client.put(Record::new(key, "second").only_if_absent()).await.expect_err("present");
    assert_eq!(error.code(), ErrorCode::AlreadyExists);

    let error = client.get_range(RowKey::new("t", "r", "m")).limit(0).await.expect_err("limit 0");
    assert_eq!(error.field(), Some("limit"));
    node.stop().await;
}

#[tokio::test]
async fn content_derived_ids_make_a_repeated_event_one_record() {
    let node = TestNode::start().await;
    let client = node.sdk().await;
    let at = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let row = RowKey::new("acme", "ACCOUNT", "events");
    for _ in 0..3 {
        let key = row.clone().at(Some(TimeUuid::from_content(at, b"deposit 40")));
        client.put(Record::new(key, "deposit 40")).await.expect("put");
    }
    let stored: Vec<_> = client.scan_row(row).stream().try_collect().await.expect("scan");
    assert_eq!(stored.len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn the_client_fails_over_to_the_next_node() {
    // Nothing listens on a bound-then-dropped port, so the first node is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let first = TestNode::start().await;
    let second = TestNode::start().await;
    let client = Client::builder()
        .endpoints([format!("https://{dead}"), first.grpc_url(), second.grpc_url()])
        .credentials(shared_credentials())
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .retry_policy(RetryPolicy { max_attempts: 5, ..RetryPolicy::default() })
        .connect()
        .await
        .expect("one node is up");

    let key = timed("failover", 1);
    client
        .put(Record::new(key.clone(), "on the first live node"))
        .await
        .expect("put fails over past the dead node");
    assert!(client.get(key.clone()).await.expect("get").is_some(), "reads go to the node that answered");

    // Take that node down: the next call moves on to the last node, which
    // (without replication) does not have the record.
    first.stop().await;
    let answer = client.get(key.clone()).await.expect("the second live node answers");
    assert!(answer.is_none());
    client
        .put(Record::new(key.clone(), "retried with the same TimeUUID"))
        .await
        .expect("put on the last node");
    assert!(client.get(key).await.expect("get").is_some());

    let unreachable = Client::builder()
        .endpoint(format!("https://{dead}"))
        .credentials(shared_credentials())
        .retry_policy(RetryPolicy::never())
        .connect()
        .await
        .expect_err("nothing is listening");
    assert_eq!(unreachable.code(), ErrorCode::Unavailable);
    assert!(unreachable.to_string().contains(&dead.to_string()), "{unreachable}");
    second.stop().await;
}

#[tokio::test]
async fn bad_endpoints_are_refused_before_any_io() {
    let error = Client::builder().endpoint("not a url").build_lazy().expect_err("bad url");
    assert_eq!(error.field(), Some("endpoints[0]"));
    let error = Client::builder().build_lazy().expect_err("no endpoints");
    assert_eq!(error.code(), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn a_scan_resumes_on_another_node_when_its_connection_breaks_mid_stream() {
    // Two nodes with the same records (the same keys, as replication would
    // leave them), and small scan chunks so the stream is many messages.
    let small_chunks = |c: &mut consensusdb_node::config::NodeConfig| c.limits.page_bytes = 4096;
    let first = TestNode::start_with(small_chunks).await;
    let second = TestNode::start_with(small_chunks).await;
    // 16 MiB: far more than the HTTP/2 stream window (hyper's client
    // default is 2 MiB) and the loopback socket buffers together, so the
    // stream cannot have arrived whole before the cut.
    const RECORDS: u64 = 16_000;
    let mut origins = Vec::new();
    for node in [&first, &second] {
        let client = node.sdk().await;
        let mut origin = None;
        for batch in 0..RECORDS / 1000 {
            let records =
                (batch * 1000..(batch + 1) * 1000).map(|ms| Record::new(timed("scan", ms), vec![b'v'; 1024]));
            let ack = client.put_batch(records).await.expect("batch");
            origin = Some(ack.heads[0].stamp.origin);
        }
        origins.push(origin.expect("written"));
    }
    let proxy = CuttableProxy::start(first.addr).await;
    let client = Client::builder()
        .endpoints([format!("https://{}", proxy.addr), second.grpc_url()])
        .credentials(shared_credentials())
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .expect("connects through the proxy");
    let mut stream = client.scan_tenant("acme").page_size(10_000).stream();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(stream.try_next().await.expect("record").expect("more"));
    }
    proxy.cut().await;
    while let Some(record) = stream.try_next().await.expect("the scan carries on at the second node") {
        seen.push(record);
    }
    let times: Vec<_> = seen.iter().map(|r| r.key.time.expect("timed")).collect();
    let expected: Vec<_> = (0..RECORDS).map(at_ms).collect();
    assert!(times == expected, "every record once, in order, across the break");
    assert_eq!(seen[0].head.stamp.origin, origins[0], "the scan began on the first node");
    assert_eq!(seen[seen.len() - 1].head.stamp.origin, origins[1], "and finished on the second");
    first.stop().await;
    second.stop().await;
}

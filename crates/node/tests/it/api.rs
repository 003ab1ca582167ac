//! Every RPC of consensusdb.v1.Records, plus reflection and health.

use consensusdb_proto::v1::{self, Compression, get_range_request::Window};
use consensusdb_types::{Compression as Codec, TimeUuid};
use tonic::Code;

use crate::support::*;

#[tokio::test]
async fn put_and_get_round_trip_with_each_codec_and_raw_reads() {
    let mut node = TestNode::start().await;
    let value = b"{\"balance\": 100, \"currency\": \"EUR\"} ".repeat(40);
    for (minor, codec) in
        [("none", Compression::None), ("lz4", Compression::Lz4), ("snappy", Compression::Snappy)]
    {
        let k = key("acme", "ACCOUNT", minor, None);
        let request = v1::PutRequest { compression: codec.into(), ..put_request(k.clone(), &value) };
        let head = node.client.put(request).await.unwrap().into_inner().head.unwrap();
        assert_eq!(head.compression, i32::from(codec));
        assert!(head.seq > 0 && head.write_time_ms > 0);
        let record = must_get(&mut node.client, k.clone()).await;
        assert_eq!(record.value, value, "{minor}: decompressed transparently");
        assert_eq!(record.key.unwrap(), k);
        let raw = node
            .client
            .get(v1::GetRequest { key: Some(k), read: Some(v1::ReadOptions { raw: true, head_only: false }) })
            .await
            .unwrap()
            .into_inner()
            .record
            .unwrap();
        assert_eq!(raw.value.len() as u32, raw.head.as_ref().unwrap().stored_size);
        let codec = consensusdb_proto::convert::compression(raw.head.unwrap().compression, "c").unwrap();
        assert_eq!(codec.decompress(&raw.value, value.len()).unwrap(), value);
        if codec != Codec::None {
            assert!(raw.value.len() < value.len(), "{minor}: stored compressed");
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn a_write_concern_no_known_peer_set_can_meet_is_refused_before_writing() {
    let mut node = TestNode::start().await;
    let record = v1::PutRequest { write_concern: 1, ..put_request(key("acme", "CHAT", "alone", None), b"x") };
    let status = node.client.put(record).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().starts_with("write_concern: asks 1 peers"), "{}", status.message());
    let missing =
        node.client.get(v1::GetRequest { key: Some(key("acme", "CHAT", "alone", None)), read: None });
    assert_eq!(missing.await.unwrap_err().code(), Code::NotFound, "nothing was written");
    node.stop().await;
}

#[tokio::test]
async fn head_only_reads_return_heads_without_values() {
    let mut node = TestNode::start().await;
    let k = key("acme", "ACCOUNT", "balance", None);
    must_put(&mut node.client, k.clone(), &[7; 1000]).await;
    let record = node
        .client
        .get(v1::GetRequest { key: Some(k), read: Some(v1::ReadOptions { head_only: true, raw: false }) })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert!(record.value.is_empty());
    assert_eq!(record.head.unwrap().stored_size, 1000);
    node.stop().await;
}

#[tokio::test]
async fn put_if_absent_conflicts_until_removed_and_missing_keys_are_not_found() {
    let mut node = TestNode::start().await;
    let k = key("acme", "AUTH", "login", None);
    let absent = v1::PutRequest { if_absent: true, ..put_request(k.clone(), b"first") };
    node.client.put(absent.clone()).await.unwrap();
    let status = node.client.put(absent.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().starts_with("key:"), "{}", status.message());
    let tomb = node
        .client
        .remove(v1::RemoveRequest { key: Some(k.clone()) })
        .await
        .unwrap()
        .into_inner()
        .head
        .unwrap();
    assert!(tomb.tombstone);
    let status = node.client.get(v1::GetRequest { key: Some(k.clone()), read: None }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    node.client.put(absent).await.expect("absent again after remove");
    let status = node
        .client
        .touch(v1::TouchRequest { key: Some(key("acme", "AUTH", "nobody", None)), ttl_ms: 10 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    node.stop().await;
}

#[tokio::test]
async fn put_batch_is_one_entry_and_all_or_nothing() {
    let mut node = TestNode::start().await;
    let records: Vec<_> =
        (0..10).map(|i| put_request(key("acme", "CHAT", &format!("m{i}"), Some(at_ms(i))), b"hi")).collect();
    let response =
        node.client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await.unwrap().into_inner();
    assert_eq!(response.heads.len(), 10);
    assert!(response.heads.iter().all(|h| h.seq == response.seq), "one log entry");

    // One conflicting record rejects the whole batch.
    let mut records: Vec<_> =
        (10..15).map(|i| put_request(key("acme", "CHAT", &format!("m{i}"), None), b"x")).collect();
    records.push(v1::PutRequest {
        if_absent: true,
        ..put_request(key("acme", "CHAT", "m3", Some(at_ms(3))), b"dup")
    });
    let status = node.client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().starts_with("records[5].key"), "{}", status.message());
    let missing =
        node.client.get(v1::GetRequest { key: Some(key("acme", "CHAT", "m10", None)), read: None }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound, "nothing of the rejected batch was written");

    // The next write takes the very next seq: rejections leave no gap.
    let head = must_put(&mut node.client, key("acme", "CHAT", "after", None), b"x").await;
    assert_eq!(head.seq, response.seq + 1);
    node.stop().await;
}

#[tokio::test]
async fn get_recent_finds_the_newest_at_or_before_across_v1_and_v7() {
    let mut node = TestNode::start().await;
    let r = row("acme", "ACCOUNT", "balance");
    let times = [at_ms(100), at_ms(200), at_ms(300)];
    for (i, t) in times.iter().enumerate() {
        must_put(&mut node.client, key("acme", "ACCOUNT", "balance", Some(*t)), format!("{i}").as_bytes())
            .await;
    }
    // An untimed record in the row is not an event: get-recent ignores it.
    must_put(&mut node.client, key("acme", "ACCOUNT", "balance", None), b"profile").await;
    let recent = |at: Option<TimeUuid>| v1::GetRecentRequest {
        row: Some(r.clone()),
        at_or_before: at.map(|t| t.as_bytes().to_vec()).unwrap_or_default(),
        read: None,
    };
    let newest = node.client.get_recent(recent(None)).await.unwrap().into_inner().record.unwrap();
    assert_eq!(newest.value, b"2");
    // Exactly at a record's id includes it.
    let exact = node.client.get_recent(recent(Some(times[1]))).await.unwrap().into_inner().record.unwrap();
    assert_eq!(exact.value, b"1");
    // A v1 id between the second and third records, at 250 ms.
    let v1_ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 250_000_000);
    let v1_id = TimeUuid::from_uuid(uuid::Uuid::new_v1(v1_ts, &[1, 2, 3, 4, 5, 6]), "t").unwrap();
    let between = node.client.get_recent(recent(Some(v1_id))).await.unwrap().into_inner().record.unwrap();
    assert_eq!(between.value, b"1");
    let status = node
        .client
        .get_recent(recent(Some(TimeUuid::max_for_ticks(times[0].ticks() - 1))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    node.stop().await;
}

#[tokio::test]
async fn get_range_pages_newest_first_and_forward() {
    let mut node = TestNode::start().await;
    let times: Vec<_> = (0..25).map(|i| at_ms(i * 10)).collect();
    let records = times
        .iter()
        .enumerate()
        .map(|(i, t)| put_request(key("acme", "CHAT", "room", Some(*t)), format!("{i}").as_bytes()))
        .collect();
    node.client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await.unwrap();

    let mut seen = Vec::new();
    let mut token = Vec::new();
    loop {
        let request = v1::GetRangeRequest {
            row: Some(row("acme", "CHAT", "room")),
            limit: 10,
            page_token: token.clone(),
            read: None,
            window: Some(Window::NewestFirst(v1::NewestFirst {
                at_or_before: times[20].as_bytes().to_vec(),
            })),
        };
        let page = node.client.get_range(request).await.unwrap().into_inner();
        seen.extend(page.records.iter().map(|r| String::from_utf8(r.value.clone()).unwrap()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..=20).rev().map(|i| i.to_string()).collect();
    assert_eq!(seen, expected, "newest first from the bound, inclusive, across pages");

    let forward = v1::GetRangeRequest {
        row: Some(row("acme", "CHAT", "room")),
        limit: 100,
        page_token: Vec::new(),
        read: Some(v1::ReadOptions { head_only: true, raw: false }),
        window: Some(Window::Forward(v1::Forward {
            from: times[5].as_bytes().to_vec(),
            until: times[8].as_bytes().to_vec(),
        })),
    };
    let page = node.client.get_range(forward).await.unwrap().into_inner();
    let got: Vec<_> = page.records.iter().map(|r| r.key.as_ref().unwrap().time_uuid.clone()).collect();
    let want: Vec<_> = times[5..8].iter().map(|t| t.as_bytes().to_vec()).collect();
    assert_eq!(got, want, "forward over [from, until)");
    assert!(page.records.iter().all(|r| r.value.is_empty()));
    assert!(page.next_page_token.is_empty());
    node.stop().await;
}

#[tokio::test]
async fn scans_cover_exactly_their_row_region_or_tenant() {
    let mut node = TestNode::start_with(|c| c.limits.page_bytes = 1024).await;
    // "ab" and "a\0" share byte prefixes with "a"; neither may leak into a scan of "a".
    for major in ["a", "ab", "a\0"] {
        for region in ["ACCOUNT", "CHAT"] {
            let records = (0..20)
                .map(|i| {
                    put_request(key(major, region, &format!("m{}", i % 4), Some(at_ms(i))), &[b'v'; 200])
                })
                .collect();
            node.client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await.unwrap();
        }
    }
    let options = |limit| Some(v1::ScanOptions { limit, page_token: Vec::new(), read: None });
    let (tenant, _, chunks) = must_collect(
        node.client
            .scan_tenant(v1::ScanTenantRequest { major_key: "a".into(), options: options(1000) })
            .await,
    )
    .await;
    assert_eq!(tenant.len(), 40);
    assert!(tenant.iter().all(|r| r.key.as_ref().unwrap().major_key == "a"));
    assert!(chunks > 1, "chunked by bytes");
    let (region, _, _) = must_collect(
        node.client
            .scan_region(v1::ScanRegionRequest {
                major_key: "a".into(),
                region: "CHAT".into(),
                options: options(1000),
            })
            .await,
    )
    .await;
    assert_eq!(region.len(), 20);
    assert!(region.iter().all(|r| r.key.as_ref().unwrap().region == "CHAT"));
    let (row_records, _, _) = must_collect(
        node.client
            .scan_row(v1::ScanRowRequest { row: Some(row("a", "CHAT", "m1")), options: options(1000) })
            .await,
    )
    .await;
    assert_eq!(row_records.len(), 5);

    // Paging: 15 now, the rest with the token.
    let (first, token, _) = must_collect(
        node.client.scan_tenant(v1::ScanTenantRequest { major_key: "a".into(), options: options(15) }).await,
    )
    .await;
    assert_eq!(first.len(), 15);
    assert!(!token.is_empty());
    let rest_options = Some(v1::ScanOptions { limit: 1000, page_token: token, read: None });
    let (rest, token, _) = must_collect(
        node.client
            .scan_tenant(v1::ScanTenantRequest { major_key: "a".into(), options: rest_options.clone() })
            .await,
    )
    .await;
    assert_eq!(rest.len(), 25);
    assert!(token.is_empty());
    assert_eq!([first, rest].concat(), tenant);

    // A token from tenant "a" cannot read tenant "ab".
    let status = node
        .client
        .scan_tenant(v1::ScanTenantRequest { major_key: "ab".into(), options: rest_options })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("options.page_token"), "{}", status.message());
    node.stop().await;
}

#[tokio::test]
async fn touch_sets_a_new_expiry_and_expired_records_disappear() {
    let mut node = TestNode::start().await;
    let k = key("acme", "AUTH", "session", None);
    let put = v1::PutRequest { ttl_ms: 600_000, ..put_request(k.clone(), b"token") };
    let first = node.client.put(put).await.unwrap().into_inner().head.unwrap();
    let touched = node
        .client
        .touch(v1::TouchRequest { key: Some(k.clone()), ttl_ms: 3000 })
        .await
        .unwrap()
        .into_inner()
        .head
        .unwrap();
    assert!(touched.seq > first.seq);
    assert!(touched.expires_at_ms < first.expires_at_ms);
    assert_eq!(must_get(&mut node.client, k.clone()).await.value, b"token");
    // Touched again to expire in a millisecond, it is gone once the wall
    // clock the server stamped that expiry with has passed it.
    let expiring = node
        .client
        .touch(v1::TouchRequest { key: Some(k.clone()), ttl_ms: 1 })
        .await
        .unwrap()
        .into_inner()
        .head
        .unwrap();
    eventually(TEST_TIMEOUT, "the clock passes the expiry", async || {
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        if now_ms >= expiring.expires_at_ms { Ok(()) } else { Err(now_ms) }
    })
    .await;
    let status = node.client.get(v1::GetRequest { key: Some(k.clone()), read: None }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "expired records are hidden");
    let status = node.client.touch(v1::TouchRequest { key: Some(k), ttl_ms: 0 }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "an expired record cannot be revived by touch");
    node.stop().await;
}

#[tokio::test]
async fn reflection_and_health_work_out_of_the_box() {
    use futures::StreamExt;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse,
    };

    let node = TestNode::start().await;
    let channel = consensusdb_client::endpoint_for(&node.grpc_url(), node.credentials.as_ref(), "addr")
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: "consensusdb.v1.Records".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
    let whole = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"consensusdb.v1.Records".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
    // The replication service too: grpcurl can call ClusterStatus and Digest.
    assert!(names.contains(&"consensusdb.mesh.v1.Replication".to_string()), "{names:?}");
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("consensusdb.mesh.v1.Replication".into())),
    };
    let mut responses =
        reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(mesh)) = response.message_response else {
        panic!("its descriptor is served: {response:?}")
    };
    // The mesh messages use consensusdb.v1.Origin: its file names the import,
    // and reflection serves that file, so a client can resolve every field.
    let imports = |needle: &[u8]| {
        mesh.file_descriptor_proto.iter().any(|f| f.windows(needle.len()).any(|w| w == needle))
    };
    assert!(imports(b"consensusdb/v1/records.proto"), "the mesh file imports records.proto");
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileByFilename("consensusdb/v1/records.proto".into())),
    };
    let mut responses =
        reflection.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        matches!(response.message_response, Some(MessageResponse::FileDescriptorResponse(_))),
        "the imported file is served: {response:?}"
    );

    // The older v1alpha protocol, which most tools still use, answers too.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1AlphaClient;
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest as AlphaReflectionRequest,
        server_reflection_request::MessageRequest as AlphaRequest,
    };
    let mut alpha = V1AlphaClient::new(channel);
    let request = AlphaReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut responses =
        alpha.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    assert!(responses.next().await.unwrap().unwrap().message_response.is_some());
    node.stop().await;
}

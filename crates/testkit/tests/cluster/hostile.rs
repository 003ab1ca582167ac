//! Peers that send what must be refused before it changes a node's state:
//! strangers on the replication port (no certificate, a client's, another
//! CA's), entries that do not decode, oversized gossip; and write concerns
//! that count only what can confirm them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consensusdb_client::{Client, ErrorCode, Record};
use consensusdb_node::Node;
use consensusdb_node::config::NodeConfig;
use consensusdb_proto::mesh::v1::{self as pb, pull_request, pull_response};
use consensusdb_proto::v1;
use consensusdb_testkit::{HostilePeer, TestPki, channel, eventually};
use consensusdb_types::{Compression, HybridClock, LogEntry, Mutation, MutationKind, NodeId, Origin};
use tokio::sync::oneshot;

use crate::{bounded, key};

/// A node in `dir` with `peers`, whose data directory already exists (so
/// it starts at once rather than bootstrap from its peers). Returns its
/// address and what stops it.
async fn node_with_peers(
    pki: &TestPki,
    dir: &std::path::Path,
    peers: Vec<String>,
) -> (SocketAddr, oneshot::Sender<()>) {
    let mut config = NodeConfig { data_dir: dir.to_path_buf(), ..NodeConfig::default() };
    pki.configure(&mut config, "n1");
    config.grpc.listen = "127.0.0.1:0".parse().expect("addr");
    config.cluster.heartbeat_ms = 100;
    let created = consensusdb_storage::Store::open(config.store_options(-1)).expect("creates");
    created.close().await.expect("closes");
    drop(created);
    config.cluster.peers = peers;
    let listener = consensusdb_node::bind(&config).await.expect("binds");
    let addr = listener.local_addr().expect("bound");
    let node = Node::open(&config, listener).await.expect("opens");
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(node.serve(async { drop(stopped.await) }));
    (addr, stop)
}

async fn status(pki: &TestPki, addr: SocketAddr) -> pb::ClusterStatusResponse {
    let mut admin = pki.replication(addr).await;
    admin.cluster_status(pb::ClusterStatusRequest {}).await.expect("status").into_inner()
}

/// Waits until `check` holds for the node at `addr`.
async fn wait_until(
    pki: &TestPki,
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&pb::ClusterStatusResponse) -> bool,
) -> pb::ClusterStatusResponse {
    eventually(Duration::from_secs(20), what, async || {
        let status = status(pki, addr).await;
        if check(&status) { Ok(status) } else { Err(status) }
    })
    .await
}

fn client(pki: &TestPki, addr: SocketAddr) -> Client {
    Client::builder()
        .endpoint(format!("https://{addr}"))
        .credentials(pki.admin())
        .build_lazy()
        .expect("valid endpoint")
}

fn entries(node: u128, first_seq: u64, values: Vec<Vec<u8>>) -> pb::PullResponse {
    let origin = v1::Origin { node_id: node.to_be_bytes().to_vec(), incarnation: 1 };
    pb::PullResponse {
        kind: Some(pull_response::Kind::Entries(pb::Entries { origin: Some(origin), first_seq, values })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_whose_key_does_not_decode_is_refused_and_the_tenant_stays_scannable() {
    bounded(async {
        const HOSTILE: u128 = 0xbad;
        let origin = Origin { node: NodeId(HOSTILE), incarnation: 1 };
        let hlc = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64)
            << HybridClock::LOGICAL_BITS;
        let damaged = LogEntry {
            origin,
            seq: 1,
            hlc,
            mutations: vec![Mutation {
                // "acme" then garbage where the region and the rest belong.
                key: b"acme\x00\x01\xff\xfe".to_vec(),
                kind: MutationKind::Put {
                    value: b"x".to_vec(),
                    compression: Compression::None,
                    expires_at_ms: None,
                    seal: None,
                    client_key: None,
                },
            }],
        };
        let pki = TestPki::new();
        let peer =
            HostilePeer::start(&pki, HOSTILE, vec![entries(HOSTILE, 1, vec![damaged.encode_value()])]).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, stop) = node_with_peers(&pki, dir.path(), vec![peer.addr.to_string()]).await;
        client(&pki, addr).put(Record::new(key("mine"), "kept")).await.expect("put");
        let status = wait_until(&pki, addr, "refuse the entry", |s| s.entries_refused >= 1).await;
        let from =
            status.peers.iter().find(|p| p.address == peer.addr.to_string()).expect("the hostile peer");
        assert!(from.last_error.contains("refused malformed entry"), "{}", from.last_error);
        assert!(from.entries_refused >= 1);
        assert!(
            status.frontier.iter().all(|mark| mark.origin.as_ref() != Some(&peer.origin)),
            "nothing of the hostile origin was stored"
        );
        let scanned: Vec<_> =
            futures::TryStreamExt::try_collect(client(&pki, addr).scan_tenant("acme").stream())
                .await
                .expect("the tenant scans");
        assert_eq!(scanned.len(), 1);
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_gossip_is_refused_and_never_learned() {
    bounded(async {
        const HOSTILE: u128 = 0xb16;
        let huge: Vec<pb::KnownPeer> = (0..10)
            .map(|i| pb::KnownPeer {
                address: format!("{}{i}:4482", "a".repeat(1 << 20)),
                node_id: Vec::new(),
            })
            .collect();
        let beat = pb::Heartbeat { peers: huge, wall_ms: 0, ..pb::Heartbeat::default() };
        let pki = TestPki::new();
        let peer = HostilePeer::start(
            &pki,
            HOSTILE,
            vec![pb::PullResponse { kind: Some(pull_response::Kind::Heartbeat(beat)) }],
        )
        .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, stop) = node_with_peers(&pki, dir.path(), vec![peer.addr.to_string()]).await;
        let refused_beat = wait_until(&pki, addr, "refuse the heartbeat", |s| {
            s.peers.iter().any(|p| p.last_error.contains("heartbeat.peers[0].address"))
        })
        .await;
        assert_eq!(refused_beat.peers.len(), 1, "no gossiped address was learned");
        // A handshake that advertises a megabyte of address is refused too,
        // even from a node of the cluster.
        let mut pull =
            pb::replication_client::ReplicationClient::new(channel(addr, &pki.node_credentials("n2")).await);
        let hello = pb::Hello {
            protocol_version: consensusdb_mesh::PROTOCOL_VERSION,
            cluster_id: "consensusdb".into(),
            origin: Some(v1::Origin { node_id: 7u128.to_be_bytes().to_vec(), incarnation: 1 }),
            advertise_address: format!("{}:4482", "b".repeat(1 << 20)),
            progress: None,
        };
        let request = tokio_stream::once(pb::PullRequest { kind: Some(pull_request::Kind::Hello(hello)) });
        let refused = pull.pull(request).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().starts_with("hello.advertise_address"), "{}", refused.message());
        assert_eq!(status(&pki, addr).await.peers.len(), 1, "nor was the advertised one");
        let _ = stop.send(());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_concern_counts_only_other_members_and_is_refused_up_front() {
    bounded(async {
        // Seeds that are not other members: this node itself under another
        // spelling, and an address where nothing answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let unreachable = listener.local_addr().expect("bound").to_string();
        drop(listener);
        let dir = tempfile::tempdir().expect("temp dir");
        let port_probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let own = port_probe.local_addr().expect("bound");
        drop(port_probe);
        let pki = TestPki::new();
        let mut config = NodeConfig { data_dir: dir.path().to_path_buf(), ..NodeConfig::default() };
        pki.configure(&mut config, "n1");
        config.grpc.listen = own;
        config.cluster.peers = vec![format!("localhost:{}", own.port()), unreachable];
        let created = consensusdb_storage::Store::open(config.store_options(-1)).expect("creates");
        created.close().await.expect("closes");
        drop(created);
        let listener = consensusdb_node::bind(&config).await.expect("binds");
        let node = Node::open(&config, listener).await.expect("opens");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(node.serve(async { drop(stopped.await) }));
        let started = Instant::now();
        let refused = client(&pki, own)
            .put(Record::new(key("k"), "v").write_concern(1))
            .await
            .expect_err("no other member can confirm");
        assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
        assert!(refused.to_string().contains("knows 0"), "{refused}");
        assert!(started.elapsed() < Duration::from_secs(5), "refused up front, not after the wait");
        let _ = stop.send(());
    })
    .await;
}

/// A Pull from `credentials`: its hello advertises `advertise`, and acks
/// seq 1 of the node's origin (what a forged acknowledgement would be).
async fn pull_as(
    addr: SocketAddr,
    credentials: &consensusdb_client::Credentials,
    advertise: &str,
) -> tonic::Status {
    let mut pull = pb::replication_client::ReplicationClient::new(channel(addr, credentials).await);
    let hello = pb::Hello {
        protocol_version: consensusdb_mesh::PROTOCOL_VERSION,
        cluster_id: "consensusdb".into(),
        origin: Some(v1::Origin { node_id: 9u128.to_be_bytes().to_vec(), incarnation: 1 }),
        advertise_address: advertise.into(),
        progress: None,
    };
    let request = tokio_stream::once(pb::PullRequest { kind: Some(pull_request::Kind::Hello(hello)) });
    pull.pull(request).await.expect_err("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_replication_port_is_closed_to_clients_strangers_and_other_cas() {
    bounded(async {
        let pki = TestPki::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, stop) = node_with_peers(&pki, dir.path(), Vec::new()).await;

        // A client certificate of the cluster: known, but not a node.
        let refused = pull_as(addr, &pki.client("app"), "127.0.0.1:1").await;
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        assert!(refused.message().contains("cdb://consensusdb/client/app"), "{}", refused.message());
        let mut as_client =
            pb::replication_client::ReplicationClient::new(channel(addr, &pki.client("app")).await);
        let snapshot = as_client.snapshot(pb::SnapshotRequest::default()).await.expect_err("refused");
        assert_eq!(snapshot.code(), tonic::Code::PermissionDenied, "a client never gets a snapshot");

        // No certificate at all: the handshake passes, every call is refused.
        let anonymous = consensusdb_client::Credentials::new(
            std::fs::read_to_string(pki.ca_file()).expect("reads the CA"),
        );
        let refused = pull_as(addr, &anonymous, "127.0.0.1:2").await;
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
        let mut stranger = pb::replication_client::ReplicationClient::new(channel(addr, &anonymous).await);
        let refused = stranger.cluster_status(pb::ClusterStatusRequest {}).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "cluster status needs a caller");

        // A node certificate of another CA (same cluster id): refused at the
        // handshake (or, under TLS 1.3, at the first call).
        let foreign = TestPki::new();
        let foreign_trusting_ours = consensusdb_client::Credentials::new(
            std::fs::read_to_string(pki.ca_file()).expect("reads the CA"),
        )
        .with_certificate(
            std::fs::read_to_string(foreign.node("n1").cert_file.expect("set")).expect("reads"),
            std::fs::read_to_string(foreign.node("n1").key_file.expect("set")).expect("reads"),
        );
        let endpoint = consensusdb_client::endpoint_for(
            &format!("https://{addr}"),
            Some(&foreign_trusting_ours),
            "addr",
        )
        .expect("endpoint");
        if let Ok(channel) = endpoint.connect().await {
            let mut pull = pb::replication_client::ReplicationClient::new(channel);
            let answer = pull.cluster_status(pb::ClusterStatusRequest {}).await;
            assert!(answer.is_err(), "a node of another CA got an answer");
        }

        // Nothing any of them advertised was learned, and no write concern
        // can be met by them.
        let seen = status(&pki, addr).await;
        assert!(seen.peers.is_empty(), "no peer learned from a refused caller: {:?}", seen.peers);
        let concern = client(&pki, addr)
            .put(Record::new(key("k"), "v").write_concern(1))
            .await
            .expect_err("no member can confirm");
        assert_eq!(concern.code(), ErrorCode::FailedPrecondition, "{concern}");
        let _ = stop.send(());
    })
    .await;
}

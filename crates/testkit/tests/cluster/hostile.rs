//! Peers that send what must be refused before it changes a node's state:
//! entries that do not decode, oversized gossip; and write concerns that
//! count only what can confirm them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consensusdb_client::{Client, ErrorCode, Record};
use consensusdb_node::Node;
use consensusdb_node::config::NodeConfig;
use consensusdb_proto::mesh::v1::{self as pb, pull_request, pull_response};
use consensusdb_proto::v1;
use consensusdb_testkit::{HostilePeer, eventually};
use consensusdb_types::{Compression, HybridClock, LogEntry, Mutation, MutationKind, NodeId, Origin};
use tokio::sync::oneshot;

use crate::{bounded, key};

/// A node in `dir` with `peers`, whose data directory already exists (so
/// it starts at once rather than bootstrap from its peers). Returns its
/// address and what stops it.
async fn node_with_peers(dir: &std::path::Path, peers: Vec<String>) -> (SocketAddr, oneshot::Sender<()>) {
    let mut config = NodeConfig { data_dir: dir.to_path_buf(), ..NodeConfig::default() };
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

async fn status(addr: SocketAddr) -> pb::ClusterStatusResponse {
    let mut admin =
        pb::replication_client::ReplicationClient::connect(format!("http://{addr}")).await.expect("connects");
    admin.cluster_status(pb::ClusterStatusRequest {}).await.expect("status").into_inner()
}

/// Waits until `check` holds for the node at `addr`.
async fn wait_until(
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&pb::ClusterStatusResponse) -> bool,
) -> pb::ClusterStatusResponse {
    eventually(Duration::from_secs(20), what, async || {
        let status = status(addr).await;
        if check(&status) { Ok(status) } else { Err(status) }
    })
    .await
}

fn client(addr: SocketAddr) -> Client {
    Client::builder().endpoint(format!("http://{addr}")).build_lazy().expect("valid endpoint")
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
                },
            }],
        };
        let peer = HostilePeer::start(HOSTILE, vec![entries(HOSTILE, 1, vec![damaged.encode_value()])]).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, stop) = node_with_peers(dir.path(), vec![peer.addr.to_string()]).await;
        client(addr).put(Record::new(key("mine"), "kept")).await.expect("put");
        let status = wait_until(addr, "refuse the entry", |s| s.entries_refused >= 1).await;
        let from =
            status.peers.iter().find(|p| p.address == peer.addr.to_string()).expect("the hostile peer");
        assert!(from.last_error.contains("refused malformed entry"), "{}", from.last_error);
        assert!(from.entries_refused >= 1);
        assert!(
            status.frontier.iter().all(|mark| mark.origin.as_ref() != Some(&peer.origin)),
            "nothing of the hostile origin was stored"
        );
        let scanned: Vec<_> = futures::TryStreamExt::try_collect(client(addr).scan_tenant("acme").stream())
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
        let peer = HostilePeer::start(
            HOSTILE,
            vec![pb::PullResponse { kind: Some(pull_response::Kind::Heartbeat(beat)) }],
        )
        .await;
        let dir = tempfile::tempdir().expect("temp dir");
        let (addr, stop) = node_with_peers(dir.path(), vec![peer.addr.to_string()]).await;
        let refused_beat = wait_until(addr, "refuse the heartbeat", |s| {
            s.peers.iter().any(|p| p.last_error.contains("heartbeat.peers[0].address"))
        })
        .await;
        assert_eq!(refused_beat.peers.len(), 1, "no gossiped address was learned");
        // A handshake that advertises a megabyte of address is refused too.
        let mut pull = pb::replication_client::ReplicationClient::connect(format!("http://{addr}"))
            .await
            .expect("connects");
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
        assert_eq!(status(addr).await.peers.len(), 1, "nor was the advertised one");
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
        let mut config = NodeConfig { data_dir: dir.path().to_path_buf(), ..NodeConfig::default() };
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
        let refused = client(own)
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

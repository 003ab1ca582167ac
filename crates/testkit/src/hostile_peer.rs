//! A scripted peer that speaks the replication protocol but sends what a
//! test tells it to: malformed entries, oversized gossip. It holds a node
//! certificate of the cluster (a compromised node, the worst case TLS
//! cannot keep out): nodes must still refuse what does not decode or is
//! out of bounds before it changes their state, and keep working.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use consensusdb_mesh::PROTOCOL_VERSION;
use consensusdb_proto::mesh::v1::replication_server::{Replication, ReplicationServer};
use consensusdb_proto::mesh::v1::{self as pb, pull_response};
use consensusdb_proto::v1;
use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::TestPki;

/// What the peer answers every `Pull` with, after its `Welcome`.
type Script = Arc<Mutex<Vec<pb::PullResponse>>>;

/// A peer on an ephemeral port that replays a script to every puller.
pub struct HostilePeer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The origin it claims.
    pub origin: v1::Origin,
    script: Script,
    server: JoinHandle<()>,
}

struct Service {
    origin: v1::Origin,
    script: Script,
}

type PullStream = Pin<Box<dyn Stream<Item = Result<pb::PullResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Replication for Service {
    type PullStream = PullStream;

    async fn pull(
        &self,
        request: Request<Streaming<pb::PullRequest>>,
    ) -> Result<Response<PullStream>, Status> {
        let mut requests = request.into_inner();
        let _hello = requests.message().await?;
        let (out, stream) = mpsc::channel(64);
        let welcome = pb::Welcome {
            protocol_version: PROTOCOL_VERSION,
            origin: Some(self.origin.clone()),
            advertise_address: String::new(),
            holds_your_origin_to: 0,
        };
        let mut messages = vec![pb::PullResponse { kind: Some(pull_response::Kind::Welcome(welcome)) }];
        messages.extend(self.script.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned());
        tokio::spawn(async move {
            for message in messages {
                if out.send(Ok(message)).await.is_err() {
                    return;
                }
            }
            // Keep the stream open, reading whatever the puller sends.
            while let Ok(Some(_)) = requests.message().await {}
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(stream))))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

    async fn snapshot(
        &self,
        _: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unavailable("a hostile peer serves no snapshot"))
    }

    async fn digest(&self, _: Request<pb::DigestRequest>) -> Result<Response<pb::DigestResponse>, Status> {
        Err(Status::unimplemented("digest"))
    }

    async fn cluster_status(
        &self,
        _: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        Err(Status::unimplemented("cluster status"))
    }

    async fn remove_peer(
        &self,
        _: Request<pb::RemovePeerRequest>,
    ) -> Result<Response<pb::RemovePeerResponse>, Status> {
        Err(Status::unimplemented("remove peer"))
    }
}

impl HostilePeer {
    /// Starts a peer with a node certificate from `pki`, claiming to be
    /// node `node` (incarnation 1), which sends `script` to every puller
    /// after welcoming it.
    pub async fn start(pki: &TestPki, node: u128, script: Vec<pb::PullResponse>) -> Self {
        let files = pki.node(&format!("hostile-{node:x}"));
        let read =
            |path: Option<std::path::PathBuf>| std::fs::read_to_string(path.expect("set")).expect("reads");
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(files.cert_file), read(files.key_file)))
            .client_ca_root(Certificate::from_pem(read(files.ca_file)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound");
        let origin = v1::Origin { node_id: node.to_be_bytes().to_vec(), incarnation: 1 };
        let script: Script = Arc::new(Mutex::new(script));
        let service = Service { origin: origin.clone(), script: script.clone() };
        let server = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .tls_config(tls)
                .expect("TLS settings")
                .add_service(ReplicationServer::new(service).max_decoding_message_size(64 << 20))
                .serve_with_incoming(incoming)
                .await;
        });
        Self { addr, origin, script, server }
    }

    /// Replaces what later pullers are sent.
    pub fn set_script(&self, script: Vec<pb::PullResponse>) {
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = script;
    }
}

impl Drop for HostilePeer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

//! The `consensusdb.mesh.v1.Replication` gRPC service.
//!
//! Who may call what is checked first, before any state changes: the
//! replication stream (`Pull`, which also carries acknowledgements and the
//! caller's advertised address) and `Snapshot` only from a node of the
//! cluster, so membership is learned only from authenticated nodes and a
//! forged acknowledgement cannot exist; `ClusterStatus` from a monitor,
//! `Digest` from a reader of its tenant (of everything: a cluster admin),
//! `RemovePeer` from a cluster admin. The caller is the [`Principal`] the
//! server's authenticating interceptor attached to the request.

use std::sync::Arc;

use consensusdb_proto::mesh::v1::{self as pb, replication_server::Replication};
use consensusdb_proto::status::refusal_status;
use consensusdb_types::{ClusterRole, Permission, Principal, Refusal};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::wire::{cluster_view_to_pb, frontier_to_pb, node_from_bytes};
use crate::{Inner, source};

/// Serves peers' pulls and the cluster's admin calls.
pub struct ReplicationService {
    inner: Arc<Inner>,
}

impl ReplicationService {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

/// Refuses `request` unless `check` admits its principal.
#[allow(clippy::result_large_err)] // tonic's Status
fn require<T>(
    request: &Request<T>,
    check: impl FnOnce(&Principal) -> Result<(), Refusal>,
) -> Result<(), Status> {
    check(&Principal::of(request.extensions().get::<Principal>())).map_err(|refusal| refusal_status(&refusal))
}

fn storage_status(error: &consensusdb_storage::StorageError) -> Status {
    Status::new(consensusdb_proto::status::grpc_code(error.code()), error.to_string())
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    type PullStream = ReceiverStream<Result<pb::PullResponse, Status>>;

    async fn pull(
        &self,
        request: Request<Streaming<pb::PullRequest>>,
    ) -> Result<Response<Self::PullStream>, Status> {
        require(&request, |p| p.require_node("the replication stream (Pull)"))?;
        let mut requests = request.into_inner();
        let first = requests.message().await?;
        let (puller, hello) = source::check_hello(&self.inner, first)?;
        if !hello.advertise_address.is_empty() {
            self.inner.learn(&hello.advertise_address, Some(puller.node));
        }
        let (out, stream) = mpsc::channel(self.inner.config.chunks_in_flight.max(1));
        out.send(Ok(source::welcome(&self.inner, &puller)))
            .await
            .map_err(|_| Status::cancelled("the caller went away"))?;
        tokio::spawn(source::run(self.inner.clone(), puller, hello, requests, out));
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    type SnapshotStream = crate::snapshot::SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        require(&request, |p| p.require_node("a snapshot"))?;
        crate::snapshot::serve(&self.inner, request.get_ref()).map(Response::new)
    }

    async fn digest(
        &self,
        request: Request<pb::DigestRequest>,
    ) -> Result<Response<pb::DigestResponse>, Status> {
        let major = Some(request.get_ref().major_key.clone()).filter(|m| !m.is_empty());
        require(&request, |p| match &major {
            Some(major) => p.allows(major, Permission::Read),
            None => p.require_role(ClusterRole::Admin, "a digest of every tenant"),
        })?;
        let report = self.inner.store.digests(major).await.map_err(|e| storage_status(&e))?;
        let total = report.total();
        Ok(Response::new(pb::DigestResponse {
            frontier: frontier_to_pb(&report.frontier),
            regions: report
                .regions
                .into_iter()
                .map(|r| pb::RegionDigest {
                    major_key: r.major,
                    region: r.region,
                    digest: r.digest.to_bytes().to_vec(),
                })
                .collect(),
            total: total.to_bytes().to_vec(),
        }))
    }

    async fn cluster_status(
        &self,
        request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        require(&request, |p| p.require_role(ClusterRole::Monitor, "the cluster status"))?;
        Ok(Response::new(cluster_view_to_pb(crate::cluster_view::build(&self.inner))))
    }

    async fn remove_peer(
        &self,
        request: Request<pb::RemovePeerRequest>,
    ) -> Result<Response<pb::RemovePeerResponse>, Status> {
        require(&request, |p| p.require_role(ClusterRole::Admin, "removing a peer"))?;
        let request = request.into_inner();
        let node = if request.node_id.is_empty() {
            if request.address.is_empty() {
                return Err(Status::invalid_argument("node_id: give a node id or an address"));
            }
            let mut peers = self.inner.peers();
            let peer = peers
                .peers
                .get_mut(&request.address)
                .ok_or_else(|| Status::not_found(format!("address: no known peer at {}", request.address)))?;
            match peer.node {
                Some(node) => node,
                None => {
                    // Never reached: nothing to tell the cluster, but its
                    // puller stops and it no longer holds purges back.
                    peer.state = crate::peer_table::PeerState::Removed;
                    return Ok(Response::new(pb::RemovePeerResponse { removed: true }));
                }
            }
        } else {
            node_from_bytes(&request.node_id, "node_id")?
        };
        if node == self.inner.store.origin().node {
            return Err(Status::invalid_argument("node_id: a node cannot remove itself; ask another node"));
        }
        let removed = self.inner.remove_node(node);
        if removed {
            self.inner.topology.send_modify(|n| *n += 1);
        }
        Ok(Response::new(pb::RemovePeerResponse { removed }))
    }
}

//! The gRPC server: the `consensusdb.v1.Records` service ([`records`]),
//! gRPC status mapping ([`status`]), requests that do not decode answered
//! as bad input ([`decode_errors`]), deadlines ([`deadline`]), plus server
//! reflection and the standard health service following readiness.

mod access;
pub mod authenticate;
mod deadline;
mod decode_errors;
mod keys;
mod records;
pub mod status;

use std::future::Future;

use consensusdb_access::Access;
use consensusdb_mesh::ReplicationService;
use consensusdb_proto::mesh::v1::replication_server::ReplicationServer;
use consensusdb_proto::v1::access_server::AccessServer;
use consensusdb_proto::v1::keys_server::KeysServer;
use consensusdb_proto::v1::records_server::RecordsServer;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::tls::ServerTransport;
use tonic_health::ServingStatus;

pub use access::AccessService;
pub use keys::KeysService;
pub use records::RecordsService;

use crate::connections::Connections;
use crate::readiness::Readiness;
use crate::records_api::RecordsApi;

/// The fully qualified name of the records service, as health checks use it.
pub const RECORDS_SERVICE_NAME: &str = "consensusdb.v1.Records";

/// How often gRPC health looks at readiness. A bootstrap or a storage
/// failure is reported within this; shutdown at once.
pub const READINESS_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Sets the records service and the whole server (`""`, what
/// `grpc_health_probe` and Kubernetes' gRPC probes ask about) to one status.
async fn set_health(health: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
    health.set_service_status(RECORDS_SERVICE_NAME, status).await;
    health.set_service_status("", status).await;
}

/// Why the gRPC server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not load the descriptor set.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How long the gRPC server waits between HTTP/2 pings on a connection,
/// and for the answer: a peer or client that vanished (or froze) without
/// closing is found and its connection closed.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(20);

/// Serves the gRPC API (over `api`) on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight calls finish and returns. Health follows
/// `readiness` (within [`READINESS_POLL`]): `NOT_SERVING` while a bootstrap
/// closes writes, after a storage failure stops the writer, and from the
/// moment shutdown starts. `replication` is the mesh's service, served on
/// the same port; streams it holds open must end when `shutdown`
/// completes, or the graceful shutdown waits for them until `connections`
/// are closed. Connections are admitted by `connections` (cap, idle
/// timeout) and secured by `transport`; every call to records, access and
/// replication acts for the principal [`authenticate`] resolves through
/// `access`, refusals are counted, and requests that do not decode are
/// answered as bad input.
#[allow(clippy::too_many_arguments)] // one server, wired once by the node
pub async fn serve_grpc(
    api: RecordsApi,
    access: Access,
    readiness: Readiness,
    listener: TcpListener,
    transport: ServerTransport,
    connections: Connections,
    replication: Option<ReplicationServer<ReplicationService>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, true).await;
    // Both reflection versions: grpcurl speaks v1, while grpcui, older
    // grpcurl and most other tools still speak only v1alpha. The
    // replication service is listed too, so `ClusterStatus` and `Digest`
    // can be called from grpcurl.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(consensusdb_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(consensusdb_proto::mesh::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    // A node that is not ready (bootstrapping, writer stopped by a storage
    // failure, clock off from its peers') says so, and clients and
    // orchestrators go elsewhere until it is ready again.
    let readiness_watch = {
        let (health, readiness) = (health.clone(), readiness.clone());
        tokio::spawn(async move {
            let mut serving = true;
            let mut poll = tokio::time::interval(READINESS_POLL);
            loop {
                poll.tick().await;
                let reason = readiness.not_ready_because();
                if reason.is_none() != serving {
                    serving = reason.is_none();
                    match &reason {
                        Some(reason) => tracing::warn!(%reason, "not ready: reporting NOT_SERVING"),
                        None => tracing::info!("ready again: reporting SERVING"),
                    }
                    set_health(&health, serving).await;
                }
            }
        })
    };
    let shutdown = async move {
        shutdown.await;
        readiness.begin_shutdown();
        set_health(&health, false).await;
    };
    let metrics = api.metrics().clone();
    let store = api.store().clone();
    let records = RecordsServer::with_interceptor(
        RecordsService::new(api),
        authenticate::authenticate(access.clone(), true),
    );
    let admin = AccessServer::with_interceptor(
        AccessService::new(access.clone()),
        authenticate::authenticate(access.clone(), false),
    );
    let keys = KeysServer::with_interceptor(
        KeysService::new(store),
        authenticate::authenticate(access.clone(), false),
    );
    let replication = replication
        .map(|service| InterceptedService::new(service, authenticate::authenticate(access, false)));
    let served = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE))
        .layer(tower::util::MapResponseLayer::new(decode_errors::rewrite::<tonic::body::Body>))
        .layer(tower::util::MapResponseLayer::new(authenticate::count_refusals(metrics)))
        .add_optional_service(replication)
        .add_service(admin)
        .add_service(keys)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(records)
        .serve_with_incoming_shutdown(crate::tls::secure(connections.accept(listener), transport), shutdown)
        .await;
    readiness_watch.abort();
    served?;
    Ok(())
}

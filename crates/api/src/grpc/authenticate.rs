//! Who may call the records service at all: an identified caller (a
//! certificate from the cluster CA), or anyone on a node running with
//! `--insecure-plaintext`. Health and reflection stay open: they say
//! nothing about data. The replication service checks its own callers
//! (nodes only), in the mesh.

use consensusdb_proto::status::refusal_status;
use consensusdb_types::Connection;
use tonic::{Request, Status};

use crate::metrics::Metrics;

/// The interceptor of the records service: refusals are counted in
/// `metrics`.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub(crate) fn require_caller(
    metrics: Metrics,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        if let Err(refusal) =
            Connection::caller_of(request.extensions().get::<Connection>()).require_identified()
        {
            metrics.refused("grpc", refusal.code());
            return Err(refusal_status(&refusal));
        }
        Ok(request)
    }
}

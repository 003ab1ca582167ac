//! Who may call the records service at all: an identified caller (a
//! certificate from the cluster CA), or anyone on a node running with
//! `--insecure-plaintext`. Health and reflection stay open: they say
//! nothing about data. The replication service checks its own callers
//! (nodes only), in the mesh.

use consensusdb_proto::status::refusal_status;
use consensusdb_types::Connection;
use tonic::{Request, Status};

/// The interceptor of the records service.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub(crate) fn require_caller(request: Request<()>) -> Result<Request<()>, Status> {
    Connection::caller_of(request.extensions().get::<Connection>())
        .require_identified()
        .map_err(|refusal| refusal_status(&refusal))?;
    Ok(request)
}

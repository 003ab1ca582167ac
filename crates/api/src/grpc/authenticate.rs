//! Who a gRPC request acts for. The interceptor in front of every data
//! and cluster service (records, access, replication) resolves the
//! connection's certificate, or a bearer token in the `authorization`
//! metadata, against the node's tokens and grants, and attaches the
//! resulting [`Principal`] to the request; the services check it and read
//! nothing else. Health and reflection stay open: they say nothing about
//! data.

use consensusdb_access::Access;
use consensusdb_proto::status::refusal_status;
use consensusdb_types::{Connection, Principal, Refusal};
use tonic::{Code, Request, Status};

use crate::metrics::Metrics;

/// Resolves the request's principal, refusing a malformed or unknown
/// token (`UNAUTHENTICATED`), and an anonymous caller too when
/// `require_credential` (the records service: nothing in it is open).
fn resolve(access: &Access, request: &Request<()>, require_credential: bool) -> Result<Principal, Refusal> {
    let caller = Connection::caller_of(request.extensions().get::<Connection>());
    let authorization = request.metadata().get("authorization").map(|value| value.as_bytes());
    let principal = access.authenticate_request(&caller, authorization)?;
    if require_credential {
        principal.require_identified("this call")?;
    }
    Ok(principal)
}

/// The interceptor of a service: `require_credential` refuses anonymous
/// callers before the service runs.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
pub fn authenticate(
    access: Access,
    require_credential: bool,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let principal = resolve(&access, &request, require_credential).map_err(|r| refusal_status(&r))?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// Counts every refusal the server answers, whichever service refused
/// (the interceptor, the records layer, the access or replication
/// service): refusals come before any streaming, so their status is in
/// the response headers.
/// The caller of `request`, once it is known to be a cluster admin: what
/// every administration method (access, keys) checks first.
#[allow(clippy::result_large_err)] // tonic's Status
pub(crate) fn cluster_admin<T>(request: &Request<T>, what: &str) -> Result<Principal, Status> {
    let principal = Principal::of(request.extensions().get::<Principal>());
    principal
        .require_role(consensusdb_types::ClusterRole::Admin, what)
        .map_err(|refusal| refusal_status(&refusal))?;
    Ok(principal)
}

pub(crate) fn count_refusals<B>(metrics: Metrics) -> impl Fn(http::Response<B>) -> http::Response<B> + Clone {
    move |response| {
        let code = response.headers().get("grpc-status").and_then(|value| value.to_str().ok());
        match code.and_then(|code| code.parse::<i32>().ok()).map(Code::from) {
            Some(Code::Unauthenticated) => {
                metrics.refused("grpc", consensusdb_types::ErrorCode::Unauthenticated)
            }
            Some(Code::PermissionDenied) => {
                metrics.refused("grpc", consensusdb_types::ErrorCode::PermissionDenied)
            }
            _ => {}
        }
        response
    }
}

//! Who may use the gateway: an identified caller (a client certificate
//! from the cluster CA), or anyone on a node running with
//! `--insecure-plaintext`. The health probes, the OpenAPI document and
//! Swagger UI stay open: they say nothing about data. Everything else,
//! records, scans, the status page and `/metrics` (which name tenants),
//! answers 401 to an anonymous caller.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use consensusdb_types::{Connection, Refusal};

use super::Gateway;
use super::error::HttpError;

/// Paths served to anyone.
fn is_open(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/openapi.json" | "/docs") || path.starts_with("/docs/")
}

/// Refuses an anonymous caller everything but the open paths, counting
/// the refusal.
pub(super) async fn check(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    if !is_open(request.uri().path())
        && let Err(refusal) =
            Connection::caller_of(request.extensions().get::<Connection>()).require_identified()
    {
        gateway.metrics.refused("http", refusal.code());
        return refused(&refusal).into_response();
    }
    next.run(request).await
}

/// 401 without a credential, 403 for a caller not allowed.
fn refused(refusal: &Refusal) -> HttpError {
    HttpError::new(refusal.code(), refusal.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::is_open;

    #[test]
    fn only_probes_and_the_api_description_are_open() {
        for open in ["/healthz", "/readyz", "/openapi.json", "/docs", "/docs/index.html"] {
            assert!(is_open(open), "{open}");
        }
        for closed in ["/", "/metrics", "/v1/status", "/v1/records/a/b/c", "/docsx", "/healthz/x"] {
            assert!(!is_open(closed), "{closed}");
        }
    }
}

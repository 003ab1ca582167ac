//! Who a gateway request acts for, resolved once: the connection's client
//! certificate, or a bearer token in `Authorization: Bearer <token>`,
//! against the node's tokens and grants. The [`Principal`] rides on the
//! request for the records layer to check against each tenant; the
//! gateway never acts as itself.
//!
//! - The health probes, the OpenAPI document and Swagger UI are open:
//!   they say nothing about data.
//! - The status page, `/v1/status` and `/metrics` name tenants and
//!   regions, so they need the `monitor` role (or `cluster-admin`).
//! - Everything else needs a credential, then a grant on the tenant.
//!
//! Every 401 and 403 the gateway answers is counted here, whoever refused.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use consensusdb_types::{ClusterRole, Connection, ErrorCode, Principal, Refusal};

use super::Gateway;
use super::error::HttpError;

/// What a path needs before its handler runs.
#[derive(Debug, PartialEq, Eq)]
enum Needs {
    Nothing,
    Monitor,
    Credential,
}

fn needs(path: &str) -> Needs {
    match path {
        "/healthz" | "/readyz" | "/openapi.json" | "/docs" => Needs::Nothing,
        _ if path.starts_with("/docs/") => Needs::Nothing,
        "/" | "/v1/status" | "/metrics" => Needs::Monitor,
        _ => Needs::Credential,
    }
}

fn resolve(gateway: &Gateway, request: &Request) -> Result<Principal, Refusal> {
    let caller = Connection::caller_of(request.extensions().get::<Connection>());
    let authorization = request.headers().get(header::AUTHORIZATION).map(|value| value.as_bytes());
    let principal = gateway.access.authenticate_request(&caller, authorization)?;
    if needs(request.uri().path()) == Needs::Monitor {
        principal.require_role(ClusterRole::Monitor, "the node's status and metrics")?;
    } else {
        principal.require_identified("this route")?;
    }
    Ok(principal)
}

/// Attaches the principal, or refuses; counts every refusal answered.
/// Open paths are served as they are: they need no principal, so not
/// even a bad token is looked at.
pub(super) async fn check(State(gateway): State<Gateway>, mut request: Request, next: Next) -> Response {
    if needs(request.uri().path()) == Needs::Nothing {
        return next.run(request).await;
    }
    let response = match resolve(&gateway, &request) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(refusal) => refused(&refusal).into_response(),
    };
    match response.status() {
        StatusCode::UNAUTHORIZED => gateway.metrics.refused("http", ErrorCode::Unauthenticated),
        StatusCode::FORBIDDEN => gateway.metrics.refused("http", ErrorCode::PermissionDenied),
        _ => {}
    }
    response
}

/// 401 without a credential, 403 for a caller not allowed.
fn refused(refusal: &Refusal) -> HttpError {
    HttpError::new(refusal.code(), refusal.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::{Needs, needs};

    #[test]
    fn only_probes_and_the_api_description_are_open_and_status_needs_monitoring() {
        for open in ["/healthz", "/readyz", "/openapi.json", "/docs", "/docs/index.html"] {
            assert_eq!(needs(open), Needs::Nothing, "{open}");
        }
        for monitored in ["/", "/metrics", "/v1/status"] {
            assert_eq!(needs(monitored), Needs::Monitor, "{monitored}");
        }
        for closed in ["/v1/records/a/b/c", "/docsx", "/healthz/x", "/v1/status/x", "/metricsx"] {
            assert_eq!(needs(closed), Needs::Credential, "{closed}");
        }
    }
}

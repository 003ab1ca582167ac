//! The JSON gateway over HTTP (port 4481 by default), next to gRPC.
//!
//! Every records operation of the gRPC API, through the same shared
//! [`RecordsApi`] (so semantics, validation and error codes cannot differ);
//! the OpenAPI document at `/openapi.json`, generated from the handlers, and
//! Swagger UI at `/docs`; the status page at `/`; `/metrics`, `/healthz`
//! and `/readyz`. The layout is in `docs/http-api.md`.
//!
//! Every error, including an unknown path, a wrong method, malformed JSON
//! or an oversized body, is answered with the JSON body of [`HttpError`],
//! never plain text.
//!
//! The gateway speaks HTTP/1.1 over TLS (plaintext only with
//! `--insecure-plaintext`); anonymous callers reach only the open paths
//! ([`authenticate`]).

mod authenticate;
mod batch;
mod error;
mod extract;
mod health;
pub mod hosts;
mod limits;
pub mod model;
mod openapi;
mod records;
mod responses;
mod rows;
mod scan;
mod server;
mod status_page;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use consensusdb_storage::Store;
use consensusdb_types::{ErrorCode, FieldError};

use consensusdb_access::Access;
use consensusdb_mesh::Mesh;

use crate::connections::Connections;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::records_api::{RecordsApi, ServiceError};
pub use error::{ErrorBody, HttpError};
pub use openapi::openapi_document;
pub use server::serve_http;

/// The default limit on a request body: a batch at the default storage
/// limits (3 MiB of keys and values) fits under it even with every value
/// in base64 (4/3 the size) and JSON's quoting and field names.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// Everything the gateway's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    api: RecordsApi,
    access: Access,
    store: Store,
    readiness: Readiness,
    metrics: Metrics,
    mesh: Option<Mesh>,
    connections: Option<Connections>,
    started: Instant,
    started_at_ms: u64,
    max_body_bytes: usize,
    allowed_hosts: hosts::AllowedHosts,
    tls: Option<consensusdb_pki::LiveTls>,
    handshake_refusals: crate::tls::HandshakeRefusals,
    /// The master key file's reloads; `None` when unsealed.
    master_key_reloads: Option<consensusdb_pki::ReloadTally>,
    rates: Arc<status_page::Rates>,
    regions: Arc<status_page::RegionCache>,
}

impl Gateway {
    /// A gateway over `store`, acting for callers as `access` resolves
    /// them, counting requests in `metrics`.
    pub fn new(store: Store, access: Access, readiness: Readiness, metrics: Metrics) -> Self {
        let started_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        Self {
            api: RecordsApi::new(store.clone(), metrics.clone(), "http"),
            access,
            store,
            readiness,
            metrics,
            mesh: None,
            connections: None,
            started: Instant::now(),
            started_at_ms,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_hosts: hosts::AllowedHosts::default(),
            tls: None,
            handshake_refusals: crate::tls::HandshakeRefusals::default(),
            master_key_reloads: None,
            rates: Arc::default(),
            regions: Arc::default(),
        }
    }

    /// Shows how the node's ports are secured (`tls`, or `None` in
    /// plaintext), its certificate reloads and refused TLS handshakes, on
    /// the status page.
    #[must_use]
    pub fn with_security(
        mut self,
        tls: Option<consensusdb_pki::LiveTls>,
        refusals: crate::tls::HandshakeRefusals,
    ) -> Self {
        self.tls = tls;
        self.handshake_refusals = refusals;
        self
    }

    /// Shows the master key file's reloads on the status page and in the
    /// metrics (`None`: the node runs unsealed).
    #[must_use]
    pub fn with_master_key_reloads(mut self, reloads: Option<consensusdb_pki::ReloadTally>) -> Self {
        self.master_key_reloads = reloads;
        self
    }

    /// What the TLS layer and the master key reloads counted, for the
    /// metrics.
    fn security_figures(&self) -> crate::metrics::SecurityFigures {
        let reloads = self.tls.as_ref().map(consensusdb_pki::LiveTls::reload_stats).unwrap_or_default();
        let master_keys = self.master_key_reload_stats();
        crate::metrics::SecurityFigures {
            handshakes_refused: self.handshake_refusals.count(),
            certificate_reloads: reloads.reloaded,
            certificate_reloads_refused: reloads.refused,
            master_key_reloads: master_keys.reloaded,
            master_key_reloads_refused: master_keys.refused,
        }
    }

    fn master_key_reload_stats(&self) -> consensusdb_pki::ReloadStats {
        self.master_key_reloads.as_ref().map(consensusdb_pki::ReloadTally::stats).unwrap_or_default()
    }

    /// Shows the mesh's view on the status page and in the metrics, and
    /// checks write concerns against it.
    #[must_use]
    pub fn with_mesh(mut self, mesh: Mesh) -> Self {
        self.api = self.api.with_mesh(mesh.clone());
        self.mesh = Some(mesh);
        self
    }

    /// Shows the node's client connections in the metrics.
    #[must_use]
    pub fn with_connections(mut self, connections: Connections) -> Self {
        self.connections = Some(connections);
        self
    }

    /// Answers to these DNS names too, besides IP addresses and
    /// `localhost` ([`hosts`]).
    #[must_use]
    pub fn with_allowed_hosts(mut self, hosts: hosts::AllowedHosts) -> Self {
        self.allowed_hosts = hosts;
        self
    }

    /// Refuses request bodies over `bytes` with 413.
    #[must_use]
    pub fn with_max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }
}

/// The answer to a records-layer error on a route whose key is in the
/// path: fields are named as the gateway lays them out (the key's and the
/// row's components are path segments, `key.time_uuid` is `time_uuid`; a
/// forward window's bounds are query parameters).
pub(crate) fn path_error(error: ServiceError) -> HttpError {
    error
        .renamed(|field| {
            ["key.", "row.", "forward.", "newest_first."]
                .iter()
                .find_map(|prefix| field.strip_prefix(prefix))
                .map(str::to_string)
        })
        .into()
}

/// The longest `timeout_ms` taken: a day.
pub(crate) const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// The deadline `timeout_ms` sets.
pub(crate) fn deadline(timeout_ms: Option<u64>) -> Result<Option<Instant>, FieldError> {
    match timeout_ms {
        None => Ok(None),
        Some(ms @ 1..=MAX_TIMEOUT_MS) => Ok(Some(Instant::now() + Duration::from_millis(ms))),
        Some(ms) => Err(FieldError::new(
            "timeout_ms",
            format!("must be between 1 and {MAX_TIMEOUT_MS} (a day), got {ms}"),
        )),
    }
}

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    let body_limit = gateway.max_body_bytes;
    openapi::routes()
        .route("/", axum::routing::get(status_page::page))
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), limits::check))
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), authenticate::check))
        // Outermost: a request for a name this gateway does not answer to
        // is refused before anything else looks at it.
        .layer(axum::middleware::from_fn_with_state(gateway.clone(), hosts::check))
        .with_state(gateway)
}

async fn unknown_path(uri: axum::http::Uri) -> HttpError {
    match empty_component(uri.path()) {
        Some(component) => ServiceError::from(FieldError::new(
            component,
            "must not be empty (a path segment between slashes is missing, or a slash is left over)",
        ))
        .into(),
        None => HttpError::with_status(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such path", None),
    }
}

/// The key component a records, rows or scan path leaves empty (`//`, or a
/// trailing slash), which routing alone would answer as an unknown path.
fn empty_component(path: &str) -> Option<&'static str> {
    const KEY: [&str; 4] = ["major_key", "region", "minor_key", "time_uuid"];
    let (names, rest): (&[&str], &str) = if let Some(rest) = path.strip_prefix("/v1/records/") {
        (&KEY, rest)
    } else if let Some(rest) = path.strip_prefix("/v1/rows/") {
        (&KEY[..3], rest)
    } else if let Some(rest) = path.strip_prefix("/v1/scan/") {
        (&KEY[..3], rest)
    } else {
        return None;
    };
    rest.split('/').zip(names).find(|(segment, _)| segment.is_empty()).map(|(_, name)| *name)
}

async fn wrong_method() -> HttpError {
    HttpError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidArgument,
        "this path does not take that method",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_key_component_is_named_and_other_paths_are_not_found() {
        assert_eq!(empty_component("/v1/records/acme/ACCOUNT/"), Some("minor_key"));
        assert_eq!(empty_component("/v1/records/acme//balance"), Some("region"));
        assert_eq!(empty_component("/v1/records/acme/ACCOUNT/balance/"), Some("time_uuid"));
        assert_eq!(empty_component("/v1/rows/acme/ACCOUNT//recent"), Some("minor_key"));
        assert_eq!(empty_component("/v1/scan/"), Some("major_key"));
        assert_eq!(empty_component("/v1/scan/acme/ACCOUNT/"), Some("minor_key"));
        assert_eq!(empty_component("/v1/records/acme/ACCOUNT/balance"), None);
        assert_eq!(empty_component("/v2/records//"), None);
    }
}

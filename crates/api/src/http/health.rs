//! `/healthz`, `/readyz` and `/metrics`, for load balancers, orchestrators
//! and Prometheus.
//!
//! - `/healthz` answers 200 while the process serves HTTP at all: restart
//!   the node if it stops answering.
//! - `/readyz` answers 200 only while the node is [ready](crate::Readiness),
//!   and 503 with the reason otherwise, so traffic goes to other nodes
//!   until this one is ready again.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::Gateway;
use super::error::HttpError;
use super::responses::ListErrors;
use crate::records_api::ServiceError;

/// The body of both health answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthBody {
    /// `ok`, `ready` or `not_ready`.
    status: &'static str,
    /// Why the node is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Whether the process serves.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves.", body = HealthBody)))]
pub(crate) async fn healthz() -> Json<HealthBody> {
    Json(HealthBody { status: "ok", reason: None })
}

/// Whether the node takes writes: storage open, no bootstrap under way,
/// not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready.", body = HealthBody),
              (status = 503, description = "Not ready, with the reason.", body = HealthBody)))]
pub(crate) async fn readyz(State(gateway): State<Gateway>) -> Response {
    match gateway.readiness.not_ready_because() {
        None => Json(HealthBody { status: "ready", reason: None }).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(HealthBody { status: "not_ready", reason: Some(reason) }))
                .into_response()
        }
    }
}

/// The Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics in Prometheus' text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String),
              ListErrors))]
pub(crate) async fn metrics(State(gateway): State<Gateway>) -> Result<Response, HttpError> {
    let stats = gateway.store.stats().await.map_err(ServiceError::from)?;
    let cluster = gateway.mesh.as_ref().map(consensusdb_mesh::Mesh::view);
    let text = gateway.metrics.render(
        gateway.store.counters(),
        &stats,
        cluster.as_ref(),
        gateway.connections.as_ref(),
        gateway.security_figures(),
        gateway.started.elapsed().as_secs_f64(),
    );
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response())
}

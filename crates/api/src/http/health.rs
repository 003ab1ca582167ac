//! `/healthz` and `/readyz`, for load balancers and orchestrators.
//!
//! - `/healthz` answers 200 while the process serves HTTP at all: restart
//!   the node if it stops answering.
//! - `/readyz` answers 200 only while the node is [ready](Readiness), and
//!   503 with the reason otherwise, so traffic goes to other nodes until
//!   this one is ready again.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::readiness::Readiness;

/// The body of both answers.
#[derive(Debug, Serialize)]
pub(super) struct HealthBody {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `GET /healthz`.
pub(super) async fn healthz() -> Json<HealthBody> {
    Json(HealthBody { status: "ok", reason: None })
}

/// `GET /readyz`.
pub(super) async fn readyz(State(readiness): State<Readiness>) -> Response {
    match readiness.not_ready_because() {
        None => Json(HealthBody { status: "ready", reason: None }).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(HealthBody { status: "not_ready", reason: Some(reason) }))
                .into_response()
        }
    }
}

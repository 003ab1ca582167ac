//! The JSON gateway over HTTP (port 4481 by default), next to gRPC.
//!
//! So far it serves `/healthz` and `/readyz`; the records routes will call
//! the shared [`crate::RecordsApi`], as the gRPC service does, so that
//! semantics, validation and error codes cannot differ. Every error,
//! including an unknown path or a wrong method, is answered with the JSON
//! body of [`HttpError`], never plain text.
//!
//! The gateway speaks plain HTTP; like the gRPC server it takes its
//! listener as an argument, so TLS plugs in where the listener is made.

mod error;
mod health;

use std::future::Future;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use consensusdb_types::ErrorCode;
use tokio::net::TcpListener;

use crate::readiness::Readiness;
pub use error::{ErrorBody, HttpError};

/// The gateway's routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(readiness)
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
}

async fn unknown_path() -> HttpError {
    HttpError::with_status(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such path", None)
}

async fn wrong_method() -> HttpError {
    HttpError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidArgument,
        "this path does not take that method",
        None,
    )
}

/// Serves the gateway on `listener` until `shutdown` completes: from then
/// on `/readyz` answers 503, no new connection is accepted, and requests
/// in flight finish before this returns.
pub async fn serve_http(
    readiness: Readiness,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(readiness.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            readiness.begin_shutdown();
        })
        .await
}

//! `POST /v1/batch`: records written all or nothing, as one log entry and
//! one durable commit.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use consensusdb_types::Principal;
use serde::Deserialize;
use utoipa::IntoParams;

use super::Gateway;
use super::error::HttpError;
use super::extract::{JsonBody, QueryParams};
use super::model::{BatchBody, BatchJson, HeadJson};
use super::responses::WriteErrors;
use crate::records_api::ServiceError;

/// Parameters of a batch.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct BatchParams {
    /// Give up after this many milliseconds (504).
    #[param(minimum = 1, maximum = 86_400_000)]
    timeout_ms: Option<u64>,
}

/// Writes records all or nothing.
#[utoipa::path(
    post, path = "/v1/batch", tag = "records",
    params(BatchParams), request_body = BatchBody,
    responses((status = 200, description = "Written and synced, as one log entry.", body = BatchJson), WriteErrors)
)]
pub(crate) async fn put_batch(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    QueryParams(params): QueryParams<BatchParams>,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<Json<BatchJson>, HttpError> {
    let deadline = super::deadline(params.timeout_ms).map_err(ServiceError::from)?;
    let (records, write_concern) = body.into_records().map_err(ServiceError::from)?;
    let ack = gateway.api.put_batch(&principal, records, write_concern, deadline).await?;
    Ok(Json(BatchJson { seq: ack.seq, heads: ack.heads.iter().map(HeadJson::from).collect() }))
}

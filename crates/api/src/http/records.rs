//! One record at a time: `/v1/records/{major_key}/{region}/{minor_key}`
//! for a row's untimed record, with `/{time_uuid}` for a timed one.
//! GET reads, PUT writes, POST writes at a new TimeUUID, PATCH changes the
//! expiry (touch), DELETE removes.

use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use consensusdb_storage::ReadOptions;
use consensusdb_types::{FieldError, Principal, RecordKey, RowKey, TimeUuid};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::HttpError;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::model::{
    KeyEncoding, KeyJson, PutBody, RecordJson, TouchBody, ValueOutput, WriteJson, key_component, time_uuid,
    ttl_ms,
};
use super::responses::{ReadErrors, RemoveErrors, TouchErrors, WriteErrors};
use super::{Gateway, path_error};
use crate::records_api::ServiceError;

/// A row in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RowPath {
    /// The tenant (percent-encoded; or base64 with `key_encoding=base64`).
    #[param(min_length = 1, max_length = 1024)]
    major_key: String,
    /// The region (table).
    #[param(min_length = 1, max_length = 1024)]
    region: String,
    /// The entity.
    #[param(min_length = 1, max_length = 1024)]
    minor_key: String,
}

/// A timed record in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TimedPath {
    /// The tenant (percent-encoded; or base64 with `key_encoding=base64`).
    #[param(min_length = 1, max_length = 1024)]
    major_key: String,
    /// The region (table).
    #[param(min_length = 1, max_length = 1024)]
    region: String,
    /// The entity.
    #[param(min_length = 1, max_length = 1024)]
    minor_key: String,
    /// The TimeUUID (version 1 or 7), canonical form.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[17][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
    )]
    time_uuid: String,
}

impl RowPath {
    pub(crate) fn row(self, encoding: KeyEncoding) -> Result<RowKey, FieldError> {
        Ok(RowKey::new(
            key_component(self.major_key, encoding, "major_key")?,
            key_component(self.region, encoding, "region")?,
            key_component(self.minor_key, encoding, "minor_key")?,
        ))
    }
}

impl TimedPath {
    fn key(self, encoding: KeyEncoding) -> Result<RecordKey, FieldError> {
        let time = time_uuid(&self.time_uuid, "time_uuid")?;
        let row = RowPath { major_key: self.major_key, region: self.region, minor_key: self.minor_key };
        Ok(row.row(encoding)?.at(Some(time)))
    }
}

/// Parameters of a read.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadParams {
    /// Return the head only; the value is not read.
    #[serde(default)]
    head_only: bool,
    /// Return the value as stored (still compressed).
    #[serde(default)]
    raw: bool,
    /// How values are returned.
    #[serde(default)]
    #[param(inline)]
    value_encoding: ValueOutput,
    /// How the key components in the path are written.
    #[serde(default)]
    #[param(inline)]
    key_encoding: KeyEncoding,
}

impl ReadParams {
    pub(crate) fn read_options(&self) -> ReadOptions {
        ReadOptions { head_only: self.head_only, raw: self.raw }
    }
}

/// Parameters of a write.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct WriteParams {
    /// How the key components in the path are written.
    #[serde(default)]
    #[param(inline)]
    key_encoding: KeyEncoding,
    /// Give up after this many milliseconds (504); with a write concern,
    /// the answer then says how many peers confirmed.
    #[serde(default)]
    #[param(minimum = 1, maximum = 86_400_000)]
    timeout_ms: Option<u64>,
}

impl WriteParams {
    fn deadline(&self) -> Result<Option<Instant>, FieldError> {
        super::deadline(self.timeout_ms)
    }
}

fn invalid(error: FieldError) -> HttpError {
    ServiceError::from(error).into()
}

async fn get(
    gateway: Gateway,
    principal: &Principal,
    key: RecordKey,
    params: &ReadParams,
) -> Result<Json<RecordJson>, HttpError> {
    let record = gateway.api.get(principal, key, params.read_options(), "key").await.map_err(path_error)?;
    Ok(Json(RecordJson::new(record, params.value_encoding)))
}

async fn put(
    gateway: Gateway,
    principal: &Principal,
    key: RecordKey,
    params: &WriteParams,
    body: PutBody,
) -> Result<Json<WriteJson>, HttpError> {
    let deadline = params.deadline().map_err(invalid)?;
    let write_concern = body.write_concern;
    let key_json = KeyJson::from(&key);
    let record = body.into_record(key, "").map_err(invalid)?;
    let head = gateway.api.put(principal, record, write_concern, deadline).await.map_err(path_error)?;
    Ok(Json(WriteJson { key: key_json, head: (&head).into() }))
}

async fn touch(
    gateway: Gateway,
    principal: &Principal,
    key: RecordKey,
    params: &WriteParams,
    body: TouchBody,
) -> Result<Json<WriteJson>, HttpError> {
    let deadline = params.deadline().map_err(invalid)?;
    let key_json = KeyJson::from(&key);
    let ttl = ttl_ms(body.ttl_ms, "ttl_ms").map_err(invalid)?;
    let head = gateway.api.touch(principal, key, ttl, deadline).await.map_err(path_error)?;
    Ok(Json(WriteJson { key: key_json, head: (&head).into() }))
}

async fn remove(
    gateway: Gateway,
    principal: &Principal,
    key: RecordKey,
    params: &WriteParams,
) -> Result<Json<WriteJson>, HttpError> {
    let deadline = params.deadline().map_err(invalid)?;
    let key_json = KeyJson::from(&key);
    let head = gateway.api.remove(principal, key, deadline).await.map_err(path_error)?;
    Ok(Json(WriteJson { key: key_json, head: (&head).into() }))
}

/// Reads a row's untimed record.
#[utoipa::path(
    get, path = "/v1/records/{major_key}/{region}/{minor_key}", tag = "records",
    params(RowPath, ReadParams),
    responses((status = 200, description = "The record.", body = RecordJson), ReadErrors)
)]
pub(crate) async fn get_untimed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<ReadParams>,
) -> Result<Json<RecordJson>, HttpError> {
    let key = path.row(params.key_encoding).map_err(invalid)?.at(None);
    get(gateway, &principal, key, &params).await
}

/// Reads a timed record.
#[utoipa::path(
    get, path = "/v1/records/{major_key}/{region}/{minor_key}/{time_uuid}", tag = "records",
    params(TimedPath, ReadParams),
    responses((status = 200, description = "The record.", body = RecordJson), ReadErrors)
)]
pub(crate) async fn get_timed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<TimedPath>,
    QueryParams(params): QueryParams<ReadParams>,
) -> Result<Json<RecordJson>, HttpError> {
    let key = path.key(params.key_encoding).map_err(invalid)?;
    get(gateway, &principal, key, &params).await
}

/// Writes a row's untimed record.
#[utoipa::path(
    put, path = "/v1/records/{major_key}/{region}/{minor_key}", tag = "records",
    params(RowPath, WriteParams), request_body = PutBody,
    responses((status = 200, description = "Written and synced.", body = WriteJson), WriteErrors)
)]
pub(crate) async fn put_untimed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<WriteParams>,
    JsonBody(body): JsonBody<PutBody>,
) -> Result<Json<WriteJson>, HttpError> {
    let key = path.row(params.key_encoding).map_err(invalid)?.at(None);
    put(gateway, &principal, key, &params, body).await
}

/// Writes a timed record.
#[utoipa::path(
    put, path = "/v1/records/{major_key}/{region}/{minor_key}/{time_uuid}", tag = "records",
    params(TimedPath, WriteParams), request_body = PutBody,
    responses((status = 200, description = "Written and synced.", body = WriteJson), WriteErrors)
)]
pub(crate) async fn put_timed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<TimedPath>,
    QueryParams(params): QueryParams<WriteParams>,
    JsonBody(body): JsonBody<PutBody>,
) -> Result<Json<WriteJson>, HttpError> {
    let key = path.key(params.key_encoding).map_err(invalid)?;
    put(gateway, &principal, key, &params, body).await
}

/// Writes an event at a new TimeUUID (version 7, now), which the answer
/// gives.
#[utoipa::path(
    post, path = "/v1/records/{major_key}/{region}/{minor_key}", tag = "records",
    params(RowPath, WriteParams), request_body = PutBody,
    responses((status = 200, description = "Written and synced.", body = WriteJson), WriteErrors)
)]
pub(crate) async fn post_event(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<WriteParams>,
    JsonBody(body): JsonBody<PutBody>,
) -> Result<Json<WriteJson>, HttpError> {
    let key = path.row(params.key_encoding).map_err(invalid)?.at(Some(TimeUuid::now()));
    put(gateway, &principal, key, &params, body).await
}

/// Gives a row's live untimed record a new expiry.
#[utoipa::path(
    patch, path = "/v1/records/{major_key}/{region}/{minor_key}", tag = "records",
    params(RowPath, WriteParams), request_body = TouchBody,
    responses((status = 200, description = "The new version.", body = WriteJson), TouchErrors)
)]
pub(crate) async fn touch_untimed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<WriteParams>,
    JsonBody(body): JsonBody<TouchBody>,
) -> Result<Json<WriteJson>, HttpError> {
    let key = path.row(params.key_encoding).map_err(invalid)?.at(None);
    touch(gateway, &principal, key, &params, body).await
}

/// Gives a live timed record a new expiry.
#[utoipa::path(
    patch, path = "/v1/records/{major_key}/{region}/{minor_key}/{time_uuid}", tag = "records",
    params(TimedPath, WriteParams), request_body = TouchBody,
    responses((status = 200, description = "The new version.", body = WriteJson), TouchErrors)
)]
pub(crate) async fn touch_timed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<TimedPath>,
    QueryParams(params): QueryParams<WriteParams>,
    JsonBody(body): JsonBody<TouchBody>,
) -> Result<Json<WriteJson>, HttpError> {
    let key = path.key(params.key_encoding).map_err(invalid)?;
    touch(gateway, &principal, key, &params, body).await
}

/// Removes a row's untimed record (writes a tombstone, even where there is
/// no record, so the removal wins over older versions arriving later).
#[utoipa::path(
    delete, path = "/v1/records/{major_key}/{region}/{minor_key}", tag = "records",
    params(RowPath, WriteParams),
    responses((status = 200, description = "The tombstone.", body = WriteJson), RemoveErrors)
)]
pub(crate) async fn remove_untimed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<WriteParams>,
) -> Result<Json<WriteJson>, HttpError> {
    let key = path.row(params.key_encoding).map_err(invalid)?.at(None);
    remove(gateway, &principal, key, &params).await
}

/// Removes a timed record (a tombstone).
#[utoipa::path(
    delete, path = "/v1/records/{major_key}/{region}/{minor_key}/{time_uuid}", tag = "records",
    params(TimedPath, WriteParams),
    responses((status = 200, description = "The tombstone.", body = WriteJson), RemoveErrors)
)]
pub(crate) async fn remove_timed(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<TimedPath>,
    QueryParams(params): QueryParams<WriteParams>,
) -> Result<Json<WriteJson>, HttpError> {
    let key = path.key(params.key_encoding).map_err(invalid)?;
    remove(gateway, &principal, key, &params).await
}

//! Scans as NDJSON streams: `/v1/scan/{major_key}` (a tenant),
//! `/{region}` (a region), `/{minor_key}` (a row), in key order.
//!
//! Each line is one JSON object with one member: `record` for a record,
//! then exactly one `end` (with the page token to continue, when the limit
//! stopped the scan) or `error` (the scan failed part way; the records
//! before it are good, and when the node gave up on a scan whose client
//! stopped reading, the error carries the page token to continue from).
//! A stream that stops without either was cut off.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use consensusdb_storage::{ReadOptions, ScanQuery, ScanScope, StorageError};
use consensusdb_types::{FieldError, Principal};
use futures::{Stream, StreamExt, stream};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ErrorBody, HttpError};
use super::extract::{PathParams, QueryParams};
use super::model::{KeyEncoding, RecordJson, ValueOutput, key_component, page_token_bytes, page_token_text};
use super::records::RowPath;
use super::responses::ListErrors;
use super::rows::DEFAULT_LIMIT;
use super::{Gateway, path_error};
use crate::records_api::{ScanPages, ServiceError};

/// The media type of a scan.
pub(crate) const NDJSON: &str = "application/x-ndjson";

/// One line of a scan.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ScanLine {
    /// A record.
    Record(RecordJson),
    /// The scan finished.
    End(ScanEnd),
    /// The scan failed part way.
    Error(ErrorBody),
}

/// How a scan finished.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ScanEnd {
    /// Set when the limit stopped the scan: pass it as `page_token` to
    /// continue.
    next_page_token: Option<String>,
}

/// Parameters of a scan.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ScanParams {
    /// Records in total, from 1 to the server's `max_read_limit`; 100 if
    /// absent.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// From the `end` line of a previous scan, to continue.
    page_token: Option<String>,
    /// Return heads only.
    #[serde(default)]
    head_only: bool,
    /// Return values as stored (still compressed).
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

/// A tenant in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TenantPath {
    /// The tenant.
    #[param(min_length = 1, max_length = 1024)]
    major_key: String,
}

/// A region in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RegionPath {
    /// The tenant.
    #[param(min_length = 1, max_length = 1024)]
    major_key: String,
    /// The region (table).
    #[param(min_length = 1, max_length = 1024)]
    region: String,
}

fn line(line: &ScanLine) -> Bytes {
    let mut bytes = serde_json::to_vec(line).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// The lines of a scan, ending with `end` or `error`. `end` comes only
/// when the scan is complete (or its limit reached); a scan the node gives
/// up on ends with `error`, carrying the page token to continue from.
fn lines(pages: ScanPages, output: ValueOutput) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    struct State {
        pages: ScanPages,
        token: Option<Vec<u8>>,
        done: bool,
    }
    stream::unfold(State { pages, token: None, done: false }, move |mut state| async move {
        if state.done {
            return None;
        }
        let chunk = match state.pages.recv().await {
            Some(Ok(page)) => {
                if page.next_page_token.is_some() {
                    state.token = page.next_page_token;
                }
                let mut chunk = Vec::new();
                for record in page.records {
                    chunk.extend_from_slice(&line(&ScanLine::Record(RecordJson::new(record, output))));
                }
                Bytes::from(chunk)
            }
            Some(Err(error)) => {
                state.done = true;
                let resume = match &error {
                    StorageError::ScanCutShort { resume_token, .. } => resume_token.clone(),
                    _ => None,
                };
                let error = path_error(ServiceError::from(error));
                let body = error.body().clone().resumable_at(page_token_text(resume));
                line(&ScanLine::Error(body))
            }
            None => {
                state.done = true;
                line(&ScanLine::End(ScanEnd { next_page_token: page_token_text(state.token.take()) }))
            }
        };
        Some((Ok(chunk), state))
    })
}

fn scan(
    gateway: &Gateway,
    principal: &Principal,
    scope: ScanScope,
    params: &ScanParams,
) -> Result<Response, HttpError> {
    let query = ScanQuery {
        scope,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        page_token: page_token_bytes(params.page_token.as_deref()).map_err(ServiceError::from)?,
        read: ReadOptions { head_only: params.head_only, raw: params.raw },
    };
    let pages = gateway.api.scan(principal, query).map_err(path_error)?;
    let body = Body::from_stream(lines(pages, params.value_encoding).boxed());
    Ok(([(header::CONTENT_TYPE, NDJSON)], body).into_response())
}

fn component(text: String, encoding: KeyEncoding, field: &str) -> Result<String, HttpError> {
    key_component(text, encoding, field).map_err(|e: FieldError| ServiceError::from(e).into())
}

/// Streams every record of a tenant, in key order.
#[utoipa::path(
    get, path = "/v1/scan/{major_key}", tag = "scans",
    params(TenantPath, ScanParams),
    responses((status = 200, description = "NDJSON: `record` lines, then `end` or `error`.",
               content_type = "application/x-ndjson", body = ScanLine), ListErrors)
)]
pub(crate) async fn scan_tenant(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<TenantPath>,
    QueryParams(params): QueryParams<ScanParams>,
) -> Result<Response, HttpError> {
    let major = component(path.major_key, params.key_encoding, "major_key")?;
    scan(&gateway, &principal, ScanScope::Tenant { major }, &params)
}

/// Streams every record of a region, in key order.
#[utoipa::path(
    get, path = "/v1/scan/{major_key}/{region}", tag = "scans",
    params(RegionPath, ScanParams),
    responses((status = 200, description = "NDJSON: `record` lines, then `end` or `error`.",
               content_type = "application/x-ndjson", body = ScanLine), ListErrors)
)]
pub(crate) async fn scan_region(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RegionPath>,
    QueryParams(params): QueryParams<ScanParams>,
) -> Result<Response, HttpError> {
    let major = component(path.major_key, params.key_encoding, "major_key")?;
    let region = component(path.region, params.key_encoding, "region")?;
    scan(&gateway, &principal, ScanScope::Region { major, region }, &params)
}

/// Streams every record of a row: the untimed record first, then by time.
#[utoipa::path(
    get, path = "/v1/scan/{major_key}/{region}/{minor_key}", tag = "scans",
    params(RowPath, ScanParams),
    responses((status = 200, description = "NDJSON: `record` lines, then `end` or `error`.",
               content_type = "application/x-ndjson", body = ScanLine), ListErrors)
)]
pub(crate) async fn scan_row(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<ScanParams>,
) -> Result<Response, HttpError> {
    let row = path.row(params.key_encoding).map_err(ServiceError::from)?;
    scan(&gateway, &principal, ScanScope::Row(row), &params)
}

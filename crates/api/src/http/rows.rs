//! Reads over a row's timed records: `/v1/rows/{major_key}/{region}/{minor_key}/recent`
//! (the newest at or before a time) and `/range` (a page, newest first or
//! forward over a time range).

use axum::Extension;
use axum::Json;
use axum::extract::State;
use consensusdb_storage::{RangeQuery, RangeWindow, ReadOptions};
use consensusdb_types::{FieldError, Principal, TimeUuid};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::HttpError;
use super::extract::{PathParams, QueryParams};
use super::model::{
    KeyEncoding, PageJson, RecordJson, ValueOutput, page_token_bytes, page_token_text, time_uuid,
};
use super::records::RowPath;
use super::responses::{ListErrors, ReadErrors};
use super::{Gateway, path_error};
use crate::records_api::ServiceError;

/// Records a page holds unless `limit` says otherwise.
pub(crate) const DEFAULT_LIMIT: u32 = 100;

fn optional_time(text: Option<&str>, field: &str) -> Result<Option<TimeUuid>, FieldError> {
    text.map(|t| time_uuid(t, field)).transpose()
}

/// Parameters of get-recent.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RecentParams {
    /// A TimeUUID: the newest record at or before it; absent for the newest.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[17][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
    )]
    at_or_before: Option<String>,
    /// Return the head only.
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

/// Reads the newest timed record of a row at or before a TimeUUID.
#[utoipa::path(
    get, path = "/v1/rows/{major_key}/{region}/{minor_key}/recent", tag = "rows",
    params(RowPath, RecentParams),
    responses((status = 200, description = "The record.", body = RecordJson), ReadErrors)
)]
pub(crate) async fn recent(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<RecentParams>,
) -> Result<Json<RecordJson>, HttpError> {
    let row = path.row(params.key_encoding).map_err(ServiceError::from)?;
    let at = optional_time(params.at_or_before.as_deref(), "at_or_before").map_err(ServiceError::from)?;
    let read = ReadOptions { head_only: params.head_only, raw: params.raw };
    let record =
        gateway.api.get_recent(&principal, row, at, read, "row", "at_or_before").await.map_err(path_error)?;
    Ok(Json(RecordJson::new(record, params.value_encoding)))
}

/// The direction of a range read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Order {
    /// Newest first, from `at_or_before` (inclusive).
    #[default]
    NewestFirst,
    /// Oldest first, over `[from, until)`.
    Forward,
}

/// Parameters of get-range.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeParams {
    /// Records in the page, from 1 to the server's `max_read_limit`
    /// (10,000 by default); 100 if absent.
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
    /// Newest first (the default) or forward.
    #[serde(default)]
    #[param(inline)]
    order: Order,
    /// With `newest_first`: start at this TimeUUID (inclusive).
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[17][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
    )]
    at_or_before: Option<String>,
    /// With `forward`: the first TimeUUID (inclusive).
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[17][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
    )]
    from: Option<String>,
    /// With `forward`: the TimeUUID to stop before.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[17][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
    )]
    until: Option<String>,
    /// From the previous page, to continue.
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

impl RangeParams {
    fn window(&self) -> Result<RangeWindow, FieldError> {
        let misplaced =
            |field: &str, order: &str| FieldError::new(field, format!("applies only with order={order}"));
        match self.order {
            Order::NewestFirst => {
                if self.from.is_some() {
                    return Err(misplaced("from", "forward"));
                }
                if self.until.is_some() {
                    return Err(misplaced("until", "forward"));
                }
                Ok(RangeWindow::NewestFirst {
                    at_or_before: optional_time(self.at_or_before.as_deref(), "at_or_before")?,
                })
            }
            Order::Forward => {
                if self.at_or_before.is_some() {
                    return Err(misplaced("at_or_before", "newest_first"));
                }
                Ok(RangeWindow::Forward {
                    from: optional_time(self.from.as_deref(), "from")?,
                    until: optional_time(self.until.as_deref(), "until")?,
                })
            }
        }
    }
}

/// Reads a page of a row's timed records.
#[utoipa::path(
    get, path = "/v1/rows/{major_key}/{region}/{minor_key}/range", tag = "rows",
    params(RowPath, RangeParams),
    responses((status = 200, description = "A page; empty when nothing matches.", body = PageJson), ListErrors)
)]
pub(crate) async fn range(
    State(gateway): State<Gateway>,
    Extension(principal): Extension<Principal>,
    PathParams(path): PathParams<RowPath>,
    QueryParams(params): QueryParams<RangeParams>,
) -> Result<Json<PageJson>, HttpError> {
    let query = RangeQuery {
        row: path.row(params.key_encoding).map_err(ServiceError::from)?,
        window: params.window().map_err(ServiceError::from)?,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        page_token: page_token_bytes(params.page_token.as_deref()).map_err(ServiceError::from)?,
        read: ReadOptions { head_only: params.head_only, raw: params.raw },
    };
    let page = gateway.api.get_range(&principal, query).await.map_err(path_error)?;
    Ok(Json(PageJson {
        records: page.records.into_iter().map(|r| RecordJson::new(r, params.value_encoding)).collect(),
        next_page_token: page_token_text(page.next_page_token),
    }))
}

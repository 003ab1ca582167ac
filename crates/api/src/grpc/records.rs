//! The `consensusdb.v1.Records` service: converts requests to domain types
//! at the edge, calls the shared [`RecordsApi`], converts results back.

use std::pin::Pin;

use consensusdb_proto::convert::{self, optional_time, record_key, required, row_key};
use consensusdb_proto::v1::records_server::Records;
use consensusdb_proto::v1::{self, get_range_request::Window};
use consensusdb_storage::{
    Page, PutRecord, RangeQuery, RangeWindow, ReadOptions, Record, ScanQuery, ScanScope,
};
use consensusdb_types::error::field_path;
use consensusdb_types::{FieldError, Principal};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::grpc::deadline::deadline;
use crate::grpc::status::{from_field, from_service, scan_error};
use crate::records_api::{RecordsApi, ServiceError};

/// Serves records through the shared records layer.
#[derive(Clone)]
pub struct RecordsService {
    api: RecordsApi,
}

impl RecordsService {
    /// A service over `api`.
    pub fn new(api: RecordsApi) -> Self {
        Self { api }
    }
}

type ScanStream = Pin<Box<dyn Stream<Item = Result<v1::ScanChunk, Status>> + Send + 'static>>;

fn put_record(request: v1::PutRequest, prefix: &str) -> Result<PutRecord, FieldError> {
    Ok(PutRecord {
        key: record_key(request.key.as_ref(), &field_path(prefix, "key"))?,
        compression: convert::compression(request.compression, &field_path(prefix, "compression"))?,
        ttl_ms: convert::ttl_ms(request.ttl_ms, &field_path(prefix, "ttl_ms"))?,
        if_absent: request.if_absent,
        client_key: convert::client_key(
            &request.client_key_fingerprint,
            &field_path(prefix, "client_key_fingerprint"),
        )?,
        value: request.value,
    })
}

fn read_options(read: Option<&v1::ReadOptions>) -> ReadOptions {
    read.map_or_else(ReadOptions::default, |r| ReadOptions { head_only: r.head_only, raw: r.raw })
}

fn record(record: Record) -> v1::Record {
    v1::Record {
        key: Some(v1::Key::from(&record.key)),
        head: Some(v1::Head::from(&record.head)),
        value: record.value.unwrap_or_default(),
    }
}

fn records(page: Page) -> (Vec<v1::Record>, Vec<u8>) {
    (page.records.into_iter().map(record).collect(), page.next_page_token.unwrap_or_default())
}

fn get_response(found: Record) -> Response<v1::GetResponse> {
    Response::new(v1::GetResponse { record: Some(record(found)) })
}

/// Who the request acts for, as the authenticating interceptor resolved it.
fn principal<T>(request: &Request<T>) -> Principal {
    Principal::of(request.extensions().get::<Principal>())
}

fn page_token(token: Vec<u8>) -> Option<Vec<u8>> {
    (!token.is_empty()).then_some(token)
}

impl RecordsService {
    fn scan(
        &self,
        principal: &Principal,
        scope: ScanScope,
        options: Option<v1::ScanOptions>,
    ) -> Result<Response<ScanStream>, Status> {
        let options = required(options.as_ref(), "options").map_err(from_field)?;
        let query = ScanQuery {
            scope,
            limit: options.limit,
            page_token: page_token(options.page_token.clone()),
            read: read_options(options.read.as_ref()),
        };
        let mut chunks = self.api.scan(principal, query).map_err(|e| from_service(prefix_options(e)))?;
        let stream = futures::stream::poll_fn(move |cx| chunks.poll_recv(cx)).map(|chunk| {
            chunk
                .map(|page| {
                    let (records, next_page_token) = records(page);
                    v1::ScanChunk { records, next_page_token }
                })
                .map_err(scan_error)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Scan limits and tokens live under `options` on the wire.
fn prefix_options(error: ServiceError) -> ServiceError {
    match error.field.as_deref() {
        Some("limit" | "page_token") => error.within("options"),
        _ => error,
    }
}

#[tonic::async_trait]
impl Records for RecordsService {
    async fn put(&self, request: Request<v1::PutRequest>) -> Result<Response<v1::PutResponse>, Status> {
        let (principal, deadline) = (principal(&request), deadline(request.metadata()));
        let request = request.into_inner();
        let write_concern = request.write_concern;
        let record = put_record(request, "").map_err(from_field)?;
        let head = self.api.put(&principal, record, write_concern, deadline).await.map_err(from_service)?;
        Ok(Response::new(v1::PutResponse { head: Some(v1::Head::from(&head)) }))
    }

    async fn put_batch(
        &self,
        request: Request<v1::PutBatchRequest>,
    ) -> Result<Response<v1::PutBatchResponse>, Status> {
        let (principal, deadline) = (principal(&request), deadline(request.metadata()));
        let request = request.into_inner();
        let write_concern = request.write_concern;
        let records = request
            .records
            .into_iter()
            .enumerate()
            .map(|(index, record)| put_record(record, &format!("records[{index}]")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(from_field)?;
        let ack =
            self.api.put_batch(&principal, records, write_concern, deadline).await.map_err(from_service)?;
        Ok(Response::new(v1::PutBatchResponse {
            seq: ack.seq,
            heads: ack.heads.iter().map(v1::Head::from).collect(),
        }))
    }

    async fn get(&self, request: Request<v1::GetRequest>) -> Result<Response<v1::GetResponse>, Status> {
        let principal = principal(&request);
        let request = request.into_inner();
        let key = record_key(request.key.as_ref(), "key").map_err(from_field)?;
        let found = self
            .api
            .get(&principal, key, read_options(request.read.as_ref()), "key")
            .await
            .map_err(from_service)?;
        Ok(get_response(found))
    }

    async fn get_recent(
        &self,
        request: Request<v1::GetRecentRequest>,
    ) -> Result<Response<v1::GetResponse>, Status> {
        let principal = principal(&request);
        let request = request.into_inner();
        let row = row_key(request.row.as_ref(), "row").map_err(from_field)?;
        let at = optional_time(&request.at_or_before, "at_or_before").map_err(from_field)?;
        let found = self
            .api
            .get_recent(&principal, row, at, read_options(request.read.as_ref()), "row", "at_or_before")
            .await
            .map_err(from_service)?;
        Ok(get_response(found))
    }

    async fn get_range(
        &self,
        request: Request<v1::GetRangeRequest>,
    ) -> Result<Response<v1::GetRangeResponse>, Status> {
        let principal = principal(&request);
        let request = request.into_inner();
        let row = row_key(request.row.as_ref(), "row").map_err(from_field)?;
        let window = match &request.window {
            None => RangeWindow::NewestFirst { at_or_before: None },
            Some(Window::NewestFirst(w)) => RangeWindow::NewestFirst {
                at_or_before: optional_time(&w.at_or_before, "newest_first.at_or_before")
                    .map_err(from_field)?,
            },
            Some(Window::Forward(w)) => RangeWindow::Forward {
                from: optional_time(&w.from, "forward.from").map_err(from_field)?,
                until: optional_time(&w.until, "forward.until").map_err(from_field)?,
            },
        };
        let query = RangeQuery {
            row,
            window,
            limit: request.limit,
            page_token: page_token(request.page_token),
            read: read_options(request.read.as_ref()),
        };
        let (records, next_page_token) =
            records(self.api.get_range(&principal, query).await.map_err(from_service)?);
        Ok(Response::new(v1::GetRangeResponse { records, next_page_token }))
    }

    type ScanRowStream = ScanStream;

    async fn scan_row(&self, request: Request<v1::ScanRowRequest>) -> Result<Response<ScanStream>, Status> {
        let principal = principal(&request);
        let request = request.into_inner();
        let row = row_key(request.row.as_ref(), "row").map_err(from_field)?;
        self.scan(&principal, ScanScope::Row(row), request.options)
    }

    type ScanRegionStream = ScanStream;

    async fn scan_region(
        &self,
        request: Request<v1::ScanRegionRequest>,
    ) -> Result<Response<ScanStream>, Status> {
        let principal = principal(&request);
        let request = request.into_inner();
        self.scan(
            &principal,
            ScanScope::Region { major: request.major_key, region: request.region },
            request.options,
        )
    }

    type ScanTenantStream = ScanStream;

    async fn scan_tenant(
        &self,
        request: Request<v1::ScanTenantRequest>,
    ) -> Result<Response<ScanStream>, Status> {
        let principal = principal(&request);
        let request = request.into_inner();
        self.scan(&principal, ScanScope::Tenant { major: request.major_key }, request.options)
    }

    async fn touch(&self, request: Request<v1::TouchRequest>) -> Result<Response<v1::TouchResponse>, Status> {
        let (principal, deadline) = (principal(&request), deadline(request.metadata()));
        let request = request.into_inner();
        let key = record_key(request.key.as_ref(), "key").map_err(from_field)?;
        let ttl = convert::ttl_ms(request.ttl_ms, "ttl_ms").map_err(from_field)?;
        let head = self.api.touch(&principal, key, ttl, deadline).await.map_err(from_service)?;
        Ok(Response::new(v1::TouchResponse { head: Some(v1::Head::from(&head)) }))
    }

    async fn remove(
        &self,
        request: Request<v1::RemoveRequest>,
    ) -> Result<Response<v1::RemoveResponse>, Status> {
        let (principal, deadline) = (principal(&request), deadline(request.metadata()));
        let key = record_key(request.get_ref().key.as_ref(), "key").map_err(from_field)?;
        let head = self.api.remove(&principal, key, deadline).await.map_err(from_service)?;
        Ok(Response::new(v1::RemoveResponse { head: Some(v1::Head::from(&head)) }))
    }
}

//! Scans of a row, a region or a tenant, as a stream that survives a node
//! failing mid-way.
//!
//! The stream asks for pages of `page_size` records. Each page is one
//! server-side scan; its chunks arrive as they are read. If the connection
//! breaks mid-page, the page is asked again from its start (on the next
//! node, if this one is down) and the records already delivered are
//! skipped: keys arrive in key order, so "already delivered" is "not after
//! the last key delivered". Page tokens are node-independent, so this works
//! across the cluster.

use std::collections::VecDeque;
use std::time::Duration;

use consensusdb_proto::v1;
use consensusdb_types::{ErrorCode, RowKey, key_codec};
use tonic::Streaming;

use crate::Client;
use crate::error::{Error, Result};
use crate::reads::{PageToken, ReadFlags, RecordStream, read_options};
use crate::record::StoredRecord;
use crate::retry::{Replay, is_retryable};

/// Records per server-side scan when the caller does not say.
const DEFAULT_PAGE_SIZE: u32 = 1000;

/// What to scan.
#[derive(Debug, Clone)]
pub(crate) enum ScanScope {
    Row(RowKey),
    Region { major: String, region: String },
    Tenant { major: String },
}

/// Streams records in key order. Built by [`Client::scan_row`],
/// [`Client::scan_region`] and [`Client::scan_tenant`]; read it with
/// [`ScanCall::stream`].
#[must_use = "a scan does nothing until streamed"]
pub struct ScanCall {
    client: Client,
    scope: ScanScope,
    limit: Option<u64>,
    page_size: u32,
    page_token: Option<PageToken>,
    flags: ReadFlags,
    timeout: Option<Duration>,
}

impl ScanCall {
    pub(crate) fn new(client: Client, scope: ScanScope) -> Self {
        Self {
            client,
            scope,
            limit: None,
            page_size: DEFAULT_PAGE_SIZE,
            page_token: None,
            flags: ReadFlags::default(),
            timeout: None,
        }
    }

    /// Stop after this many records (by default the scan reads everything).
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Records per server-side page (1 to the node's `max_read_limit`).
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Start where an earlier scan of the same scope stopped.
    pub fn page_token(mut self, token: PageToken) -> Self {
        self.page_token = Some(token);
        self
    }

    read_options!();

    /// The records, fetched as the stream is read. `timeout` bounds the
    /// wait for each chunk, not the whole scan.
    pub fn stream(mut self) -> RecordStream {
        if self.page_size == 0 {
            let error = consensusdb_types::FieldError::new("page_size", "must be at least 1");
            return Box::pin(futures::stream::once(async move { Err(error.into()) }));
        }
        let state = ScanState {
            remaining: self.limit,
            page_start: self.page_token.take().map(|t| t.as_bytes().to_vec()).unwrap_or_default(),
            call: self,
            next_page: None,
            chunks: None,
            buffered: VecDeque::new(),
            last_key: None,
            failures: 0,
            finished: false,
        };
        Box::pin(futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            if item.is_err() {
                state.finished = true;
            }
            Some((item, state))
        }))
    }
}

struct ScanState {
    call: ScanCall,
    /// Records still wanted, if limited.
    remaining: Option<u64>,
    /// Token of the page being read (empty for the first).
    page_start: Vec<u8>,
    /// Token of the page after it, once the server has sent it.
    next_page: Option<Vec<u8>>,
    chunks: Option<Streaming<v1::ScanChunk>>,
    buffered: VecDeque<v1::Record>,
    /// Encoded key of the last record delivered.
    last_key: Option<Vec<u8>>,
    /// Consecutive failed attempts at the current page.
    failures: u32,
    finished: bool,
}

impl ScanState {
    async fn next(&mut self) -> Option<Result<StoredRecord>> {
        loop {
            if self.finished || self.remaining == Some(0) {
                return None;
            }
            if let Some(record) = self.buffered.pop_front() {
                match self.deliver(record) {
                    Ok(Some(record)) => return Some(Ok(record)),
                    Ok(None) => continue,
                    Err(error) => return Some(Err(error)),
                }
            }
            let Some(chunks) = self.chunks.as_mut() else {
                if let Err(error) = self.open_page().await {
                    return Some(Err(error));
                }
                continue;
            };
            let idle = self.call.timeout.unwrap_or(self.call.client.transport().default_timeout());
            match tokio::time::timeout(idle, chunks.message()).await {
                Ok(Ok(Some(chunk))) => {
                    self.failures = 0;
                    self.buffered.extend(chunk.records);
                    if !chunk.next_page_token.is_empty() {
                        self.next_page = Some(chunk.next_page_token);
                    }
                }
                Ok(Ok(None)) => {
                    self.chunks = None;
                    match self.next_page.take() {
                        Some(token) => self.page_start = token,
                        None => self.finished = true,
                    }
                }
                Ok(Err(status)) => {
                    let error = Error::from_status(&status, self.call.client.transport().current_endpoint());
                    if !is_retryable(status.code(), Replay::Safe) {
                        return Some(Err(error));
                    }
                    if let Err(error) = self.retry_page(error).await {
                        return Some(Err(error));
                    }
                }
                Err(_) => {
                    let error =
                        Error::local(ErrorCode::DeadlineExceeded, format!("no scan data for {idle:?}"));
                    if let Err(error) = self.retry_page(error).await {
                        return Some(Err(error));
                    }
                }
            }
        }
    }

    /// Converts a received record, or skips it if an earlier attempt at
    /// this page already delivered it.
    fn deliver(&mut self, record: v1::Record) -> Result<Option<StoredRecord>> {
        let record = StoredRecord::from_wire(record, self.call.flags.opener(&self.call.client))?;
        let key = key_codec::encode_key(&record.key);
        if self.last_key.as_ref().is_some_and(|last| key <= *last) {
            return Ok(None);
        }
        self.last_key = Some(key);
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining -= 1;
        }
        Ok(Some(record))
    }

    /// Starts reading the current page (through the retrying transport).
    async fn open_page(&mut self) -> Result<()> {
        let wanted =
            self.remaining.map_or(u64::from(self.call.page_size), |r| r.min(u64::from(self.call.page_size)));
        let options = v1::ScanOptions {
            limit: u32::try_from(wanted).unwrap_or(u32::MAX),
            page_token: self.page_start.clone(),
            read: Some(self.call.flags.into()),
        };
        let scope = self.call.scope.clone();
        let stream = self
            .call
            .client
            .transport()
            .call(Replay::Safe, self.call.timeout, |mut c, _| {
                let (scope, options) = (scope.clone(), options.clone());
                async move {
                    let response = match scope {
                        ScanScope::Row(row) => {
                            c.scan_row(v1::ScanRowRequest {
                                row: Some((&row).into()),
                                options: Some(options),
                            })
                            .await
                        }
                        ScanScope::Region { major, region } => {
                            c.scan_region(v1::ScanRegionRequest {
                                major_key: major,
                                region,
                                options: Some(options),
                            })
                            .await
                        }
                        ScanScope::Tenant { major } => {
                            c.scan_tenant(v1::ScanTenantRequest { major_key: major, options: Some(options) })
                                .await
                        }
                    };
                    response.map(tonic::Response::into_inner)
                }
            })
            .await?;
        self.chunks = Some(stream);
        self.next_page = None;
        Ok(())
    }

    /// Drops the broken page stream so the next turn reopens it, unless
    /// the page has failed too often in a row.
    async fn retry_page(&mut self, error: Error) -> Result<()> {
        self.chunks = None;
        self.failures += 1;
        let policy = self.call.client.retry_policy();
        if self.failures >= policy.max_attempts {
            return Err(error.with_attempts(self.failures));
        }
        tracing::debug!(%error, "scan page broke off; asking again");
        tokio::time::sleep(policy.backoff(self.failures)).await;
        Ok(())
    }
}

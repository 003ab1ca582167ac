//! Point and range reads: builders that run when awaited.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use consensusdb_proto::v1;
use consensusdb_types::{RecordKey, RowKey, TimeUuid};
use futures::{Stream, TryStreamExt};
use tonic::Code;

use crate::Client;
use crate::error::{Error, Result};
use crate::keychain::Keychains;
use crate::record::StoredRecord;
use crate::retry::Replay;
use crate::transport::within;

/// A boxed future, so builders can be awaited directly.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A stream of records read page by page.
pub type RecordStream = Pin<Box<dyn Stream<Item = Result<StoredRecord>> + Send + 'static>>;

/// Where to continue a paged read. Opaque; it stays valid on any node of
/// the cluster, and only for the query that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken(Vec<u8>);

impl PageToken {
    /// The token's bytes, to store or print (for example as base64).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A token from bytes saved earlier; the server checks it.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub(crate) fn from_wire(bytes: Vec<u8>) -> Option<Self> {
        (!bytes.is_empty()).then_some(Self(bytes))
    }
}

/// What a read returns besides heads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadFlags {
    pub head_only: bool,
    pub raw: bool,
}

impl ReadFlags {
    /// The keychains to open values with: `client`'s, unless the read
    /// returns no values, or returns them as stored.
    pub(crate) fn opener(self, client: &Client) -> Option<&Keychains> {
        (!self.head_only && !self.raw).then(|| client.keychains())
    }
}

impl From<ReadFlags> for v1::ReadOptions {
    fn from(flags: ReadFlags) -> Self {
        v1::ReadOptions { head_only: flags.head_only, raw: flags.raw }
    }
}

/// Builder methods shared by every read.
macro_rules! read_options {
    () => {
        /// Return heads only; the node does not read values from disk.
        pub fn head_only(mut self) -> Self {
            self.flags.head_only = true;
            self
        }

        /// Return values as stored (still compressed with the codec in the head).
        pub fn raw(mut self) -> Self {
            self.flags.raw = true;
            self
        }

        /// Give up after this long, retries included.
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.timeout = Some(timeout);
            self
        }
    };
}
pub(crate) use read_options;

/// Reads one record; `None` if there is no live record at the key.
/// Built by [`Client::get`].
#[must_use = "a read does nothing until awaited"]
pub struct GetCall {
    client: Client,
    key: RecordKey,
    flags: ReadFlags,
    timeout: Option<Duration>,
}

impl GetCall {
    pub(crate) fn new(client: Client, key: RecordKey) -> Self {
        Self { client, key, flags: ReadFlags::default(), timeout: None }
    }

    read_options!();
}

impl IntoFuture for GetCall {
    type Output = Result<Option<StoredRecord>>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let request = v1::GetRequest { key: Some(v1::Key::from(&self.key)), read: Some(self.flags.into()) };
        Box::pin(async move {
            read_one(&self.client, self.flags, self.timeout, request, |mut c, request| async move {
                c.get(request).await
            })
            .await
        })
    }
}

/// Reads the newest timed record of a row at or before a time; `None` if
/// there is none. Built by [`Client::get_recent`].
#[must_use = "a read does nothing until awaited"]
pub struct RecentCall {
    client: Client,
    row: RowKey,
    at_or_before: Option<TimeUuid>,
    flags: ReadFlags,
    timeout: Option<Duration>,
}

impl RecentCall {
    pub(crate) fn new(client: Client, row: RowKey) -> Self {
        Self { client, row, at_or_before: None, flags: ReadFlags::default(), timeout: None }
    }

    /// The newest record at or before this TimeUUID (inclusive); by default
    /// the newest of all.
    pub fn at_or_before(mut self, time: TimeUuid) -> Self {
        self.at_or_before = Some(time);
        self
    }

    /// The newest record written for a time at or before `time`.
    pub fn at(self, time: SystemTime) -> Self {
        self.at_or_before(TimeUuid::max_for(time))
    }

    read_options!();
}

impl IntoFuture for RecentCall {
    type Output = Result<Option<StoredRecord>>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let request = v1::GetRecentRequest {
            row: Some(v1::RowKey::from(&self.row)),
            at_or_before: time_bytes(self.at_or_before),
            read: Some(self.flags.into()),
        };
        Box::pin(async move {
            read_one(&self.client, self.flags, self.timeout, request, |mut c, request| async move {
                c.get_recent(request).await
            })
            .await
        })
    }
}

/// One page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// At most the requested limit of records (fewer when the page reached
    /// the node's page size in bytes).
    pub records: Vec<StoredRecord>,
    /// Set when more records may follow.
    pub next_page_token: Option<PageToken>,
}

/// Reads a row's timed records: newest first at or before a time (the
/// default, from the newest), or oldest first over a time range. Await it
/// for one page, or call [`RangeCall::stream`] for every record.
/// Built by [`Client::get_range`].
#[must_use = "a read does nothing until awaited or streamed"]
#[derive(Clone)]
pub struct RangeCall {
    client: Client,
    row: RowKey,
    limit: u32,
    window: Option<v1::get_range_request::Window>,
    page_token: Option<PageToken>,
    flags: ReadFlags,
    timeout: Option<Duration>,
}

/// Records per page when the caller does not say.
const DEFAULT_PAGE: u32 = 100;

impl RangeCall {
    pub(crate) fn new(client: Client, row: RowKey) -> Self {
        Self {
            client,
            row,
            limit: DEFAULT_PAGE,
            window: None,
            page_token: None,
            flags: ReadFlags::default(),
            timeout: None,
        }
    }

    /// Records per page (1 to the node's `max_read_limit`, 10,000 by default).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Newest first, starting at this TimeUUID (inclusive).
    pub fn at_or_before(mut self, time: TimeUuid) -> Self {
        self.window = Some(v1::get_range_request::Window::NewestFirst(v1::NewestFirst {
            at_or_before: time.as_bytes().to_vec(),
        }));
        self
    }

    /// Newest first, starting at the newest record for a time at or before `time`.
    pub fn at(self, time: SystemTime) -> Self {
        self.at_or_before(TimeUuid::max_for(time))
    }

    /// Oldest first over `[from, until)`; `None` leaves that end open.
    pub fn forward(mut self, from: Option<TimeUuid>, until: Option<TimeUuid>) -> Self {
        self.window = Some(v1::get_range_request::Window::Forward(v1::Forward {
            from: time_bytes(from),
            until: time_bytes(until),
        }));
        self
    }

    /// Continue where an earlier page of the same query stopped.
    pub fn page_token(mut self, token: PageToken) -> Self {
        self.page_token = Some(token);
        self
    }

    read_options!();

    /// Every record of the range, fetching page after page as the stream is
    /// read. Each page is retried on its own, so a node failing mid-way
    /// costs one page, not the whole read.
    pub fn stream(self) -> RecordStream {
        let pages = futures::stream::try_unfold(Some(self), |call| async move {
            let Some(call) = call else { return Ok::<_, Error>(None) };
            let page = call.clone().await?;
            let next = page.next_page_token.map(|token| call.page_token(token));
            Ok(Some((page.records, next)))
        });
        Box::pin(pages.map_ok(|records| futures::stream::iter(records.into_iter().map(Ok))).try_flatten())
    }
}

impl IntoFuture for RangeCall {
    type Output = Result<Page>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let request = v1::GetRangeRequest {
            row: Some(v1::RowKey::from(&self.row)),
            limit: self.limit,
            page_token: self.page_token.map(|t| t.0).unwrap_or_default(),
            read: Some(self.flags.into()),
            window: self.window,
        };
        Box::pin(async move {
            let response = self
                .client
                .transport()
                .call(Replay::Safe, self.timeout, |mut c, left| {
                    let request = within(request.clone(), left);
                    async move { c.get_range(request).await.map(tonic::Response::into_inner) }
                })
                .await?;
            Ok(Page {
                records: response
                    .records
                    .into_iter()
                    .map(|record| StoredRecord::from_wire(record, self.flags.opener(&self.client)))
                    .collect::<Result<_>>()?,
                next_page_token: PageToken::from_wire(response.next_page_token),
            })
        })
    }
}

/// Runs a single-record read (`Get`, `GetRecent`) with retries. NOT_FOUND
/// is an answer ("no such record"), not a failure, so it is `Ok(None)`.
async fn read_one<Request, Rpc, Answer>(
    client: &Client,
    flags: ReadFlags,
    timeout: Option<Duration>,
    request: Request,
    rpc: Rpc,
) -> Result<Option<StoredRecord>>
where
    Request: Clone,
    Rpc: Fn(crate::transport::Records, Request) -> Answer,
    Answer: Future<Output = Result<tonic::Response<v1::GetResponse>, tonic::Status>>,
{
    let response = client
        .transport()
        .call(Replay::Safe, timeout, |c, _| {
            let answer = rpc(c, request.clone());
            async move {
                match answer.await {
                    Ok(response) => Ok(response.into_inner().record),
                    Err(status) if status.code() == Code::NotFound => Ok(None),
                    Err(status) => Err(status),
                }
            }
        })
        .await?;
    response.map(|record| StoredRecord::from_wire(record, flags.opener(client))).transpose()
}

pub(crate) fn time_bytes(time: Option<TimeUuid>) -> Vec<u8> {
    time.map(|t| t.as_bytes().to_vec()).unwrap_or_default()
}

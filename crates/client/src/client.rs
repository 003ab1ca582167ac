//! The client: its builder, and one method per operation.

use std::sync::Arc;
use std::time::Duration;

use consensusdb_proto::v1;
use consensusdb_types::{ErrorCode, RecordKey, RowKey};

use crate::bearer::{BearerToken, TokenText};
use crate::credentials::Credentials;
use crate::error::{Error, Result};
use crate::head::Head;
use crate::keychain::{Keychain, Keychains};
use crate::reads::{BoxFuture, GetCall, RangeCall, RecentCall};
use crate::record::{BatchAck, Record, head_from_wire, ttl_ms};
use crate::retry::{Replay, RetryPolicy};
use crate::scan::{ScanCall, ScanScope};
use crate::transport::{Transport, TransportOptions, within};

/// The default node address (`consensusdb serve` with no configuration).
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:4482";

/// A connection to a ConsensusDB cluster: one or more node addresses,
/// with failover between them. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Arc<Transport>,
    retry: RetryPolicy,
    keychains: Keychains,
}

/// Settings for a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    connect_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    credentials: Option<Credentials>,
    token: Option<TokenText>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            credentials: None,
            token: None,
        }
    }
}

impl ClientBuilder {
    /// Adds a node address such as `https://10.0.0.7:4482` (`host:port`
    /// alone means `https://`; `http://` only for a node started with
    /// `--insecure-plaintext`). Calls go to one
    /// node and move to the next when it fails.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints.push(url.into());
        self
    }

    /// Adds several node addresses.
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(urls.into_iter().map(Into::into));
        self
    }

    /// How long opening a connection to one node may take (3 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a request may take, retries included, unless the request
    /// sets its own (10 s by default). For scans it bounds each chunk.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The CA to trust and the client certificate to present, for
    /// `https://` endpoints (every node unless it runs with
    /// `--insecure-plaintext`).
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// A bearer token (from `consensusdb token create`) sent with every
    /// call, which then acts with the token's grants rather than the
    /// certificate's. Needs `https://` endpoints and a CA to trust
    /// ([`Credentials::new`]); a client certificate is not needed.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenText(token.into()));
        self
    }

    /// How failed requests are retried.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A client that connects on first use. Fails only on bad addresses.
    pub fn build_lazy(self) -> Result<Client> {
        let options = TransportOptions {
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            retry: self.retry,
            credentials: self.credentials,
            token: BearerToken::new(self.token.as_ref().map(|token| token.0.as_str()))?,
        };
        Ok(Client {
            transport: Arc::new(Transport::new(self.endpoints, options)?),
            retry: self.retry,
            keychains: Keychains::default(),
        })
    }

    /// A client connected to the first reachable node; fails with
    /// `UNAVAILABLE` if none is.
    pub async fn connect(self) -> Result<Client> {
        let client = self.build_lazy()?;
        client.transport.connect_any().await?;
        Ok(client)
    }
}

impl Client {
    /// Starts building a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to one node with default settings.
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self> {
        Self::builder().endpoint(endpoint).connect().await
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// This client (sharing its connections) with `keychain` too: its
    /// reads then open the tenant's client-encrypted values, which without
    /// it fail with `FAILED_PRECONDITION`. One keychain per tenant; a
    /// second for the same tenant replaces the first.
    pub fn with_keychain(&self, keychain: Keychain) -> Self {
        Self { keychains: self.keychains.with(keychain), ..self.clone() }
    }

    pub(crate) fn keychains(&self) -> &Keychains {
        &self.keychains
    }

    /// Writes one record and returns its head.
    ///
    /// A record with a TimeUUID is retried with that same id when a node
    /// fails, so a retry that lands after a lost acknowledgement writes the
    /// same version again instead of a second one. If such a retry of an
    /// [`Record::only_if_absent`] write finds the record present *with the
    /// same value*, it was this write: the stored head is returned.
    pub async fn put(&self, record: Record) -> Result<Head> {
        let request = record.to_request("")?;
        let result = self
            .transport
            .call(record.replay(), record.request_timeout(), |mut c, left| {
                let request = within(request.clone(), left);
                async move { c.put(request).await.map(tonic::Response::into_inner) }
            })
            .await;
        match result {
            Ok(response) => head_from_wire(response.head.as_ref()),
            Err(error) if error.code() == ErrorCode::AlreadyExists && error.attempts() > 1 => {
                // An encrypted value is compared as the envelope sent: the
                // same bytes only if this very request wrote them.
                let (read, sent) = if request.client_key_fingerprint.is_empty() {
                    (self.get(record.key().clone()), record.value())
                } else {
                    (self.get(record.key().clone()).raw(), request.value.as_slice())
                };
                match read.await? {
                    Some(stored) if stored.value == sent => Ok(stored.head),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Writes records as one durable commit and one log entry: all or
    /// nothing. Await the returned call; it can take a `.timeout(..)`.
    ///
    /// Retried like [`Client::put`] when every record is timed. A retried
    /// batch holding only-if-absent records may find its own first attempt
    /// and fail with `ALREADY_EXISTS`; [`Error::attempts`] then says it was
    /// retried, and reading the keys back tells whether the values are yours.
    pub fn put_batch(&self, records: impl IntoIterator<Item = Record>) -> BatchCall {
        BatchCall {
            client: self.clone(),
            records: records.into_iter().collect(),
            timeout: None,
            write_concern: 0,
        }
    }

    /// Reads one record: `Ok(None)` if there is no live record at the key.
    pub fn get(&self, key: RecordKey) -> GetCall {
        GetCall::new(self.clone(), key)
    }

    /// Reads the newest timed record of a row (at or before a time, if
    /// given): `Ok(None)` if there is none.
    pub fn get_recent(&self, row: RowKey) -> RecentCall {
        RecentCall::new(self.clone(), row)
    }

    /// Reads a row's timed records, a page at a time or as a stream.
    pub fn get_range(&self, row: RowKey) -> RangeCall {
        RangeCall::new(self.clone(), row)
    }

    /// Streams one row's records: the untimed one first, then by time.
    pub fn scan_row(&self, row: RowKey) -> ScanCall {
        ScanCall::new(self.clone(), ScanScope::Row(row))
    }

    /// Streams one region (table) of a tenant in key order.
    pub fn scan_region(&self, major: impl Into<String>, region: impl Into<String>) -> ScanCall {
        ScanCall::new(self.clone(), ScanScope::Region { major: major.into(), region: region.into() })
    }

    /// Streams a whole tenant in key order.
    pub fn scan_tenant(&self, major: impl Into<String>) -> ScanCall {
        ScanCall::new(self.clone(), ScanScope::Tenant { major: major.into() })
    }

    /// Gives a live record a new expiry, `ttl` from now (`None`: never).
    /// Fails with `NOT_FOUND` if there is no live record.
    pub async fn touch(&self, key: RecordKey, ttl: Option<Duration>) -> Result<Head> {
        let request = v1::TouchRequest { key: Some(v1::Key::from(&key)), ttl_ms: ttl_ms(ttl, "ttl")? };
        // Touching twice leaves the same value with (almost) the same expiry.
        let response = self
            .transport
            .call(Replay::Safe, None, |mut c, left| {
                let request = within(request.clone(), left);
                async move { c.touch(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
        head_from_wire(response.head.as_ref())
    }

    /// Removes the record at a key (writes a tombstone) and returns the
    /// tombstone's head.
    pub async fn remove(&self, key: RecordKey) -> Result<Head> {
        let request = v1::RemoveRequest { key: Some(v1::Key::from(&key)) };
        // A second tombstone for the same key changes nothing a read can see.
        let response = self
            .transport
            .call(Replay::Safe, None, |mut c, left| {
                let request = within(request.clone(), left);
                async move { c.remove(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
        head_from_wire(response.head.as_ref())
    }
}

/// A batch put; await it. Built by [`Client::put_batch`].
#[must_use = "a batch does nothing until awaited"]
pub struct BatchCall {
    client: Client,
    records: Vec<Record>,
    timeout: Option<Duration>,
    write_concern: u32,
}

impl BatchCall {
    /// Give up after this long, retries included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Acknowledge only once `peers` other nodes have applied the batch
    /// (see [`Record::write_concern`]).
    pub fn write_concern(mut self, peers: u32) -> Self {
        self.write_concern = peers;
        self
    }
}

impl std::future::IntoFuture for BatchCall {
    type Output = Result<BatchAck>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let records = self
                .records
                .iter()
                .enumerate()
                .map(|(i, record)| record.to_request(&format!("records[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            // The batch is one log entry: replaying it is safe only if every
            // record in it would be.
            let replay = if self.records.iter().all(|r| r.replay() == Replay::Safe) {
                Replay::Safe
            } else {
                Replay::OnlyIfUnsent
            };
            let request = v1::PutBatchRequest { records, write_concern: self.write_concern };
            let response = self
                .client
                .transport
                .call(replay, self.timeout, |mut c, left| {
                    let request = within(request.clone(), left);
                    async move { c.put_batch(request).await.map(tonic::Response::into_inner) }
                })
                .await?;
            let heads = response.heads.iter().map(|h| head_from_wire(Some(h))).collect::<Result<Vec<_>>>()?;
            if heads.len() != self.records.len() {
                return Err(Error::local(
                    ErrorCode::Internal,
                    format!("the server acknowledged {} of {} records", heads.len(), self.records.len()),
                ));
            }
            Ok(BatchAck { seq: response.seq, heads })
        })
    }
}

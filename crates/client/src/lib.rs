//! The ConsensusDB Rust SDK: an async client for the `consensusdb.v1`
//! gRPC API.
//!
//! - **Keys** are `majorKey` (tenant) / `regionName` (table) / `minorKey`
//!   (entity) / TimeUUID, built with [`RecordKey::builder`]; [`TimeUuid`] makes
//!   ids for now, for a given time, or from content (the same event gets
//!   the same id, so writing it twice stores it once).
//! - **Writes** are [`Record`]s with compression, put-if-absent, a TTL and
//!   a timeout; batches are all or nothing.
//! - **Reads** are builders you await: [`Client::get`] (optionally
//!   head-only), [`Client::get_recent`], [`Client::get_range`] (a page, or a
//!   stream of every page) and the scans, which stream.
//! - **Heads.** Writes return, and reads carry, a [`Head`]: the version's
//!   stamp, seq, write time, expiry, stored size, codec and whether it is a
//!   removal. The answers ([`Head`], [`StoredRecord`], [`Page`],
//!   [`BatchAck`]) and [`ErrorCode`] are `#[non_exhaustive]`, so a later
//!   field or code does not break code written against this version.
//! - **Failures.** A client knows several nodes and moves to the next when
//!   one fails. It retries only what is safe to send twice: reads, removes,
//!   touches and puts whose key carries a TimeUUID, which are resent with
//!   the same id and so stay idempotent. Errors carry the server's
//!   [`ErrorCode`], message and the request field at fault.
//! - **Client-side encryption.** A [`Keychain`] made from a password
//!   encrypts values on the client ([`Record::encrypt`]), so the nodes
//!   store, replicate and back up only ciphertext; a client given the
//!   keychain ([`Client::with_keychain`]) reads them back in the clear.
//! - **Security.** Nodes serve TLS with client certificates from the
//!   cluster's CA: give the client [`Credentials`] (the CA, and a client
//!   certificate and key). A connection that fails on TLS says what is
//!   wrong (unknown CA, wrong name, expired).
//!
//! ```no_run
//! use std::time::Duration;
//! use consensusdb_client::{Client, Compression, Credentials, Record, RecordKey, RowKey, TimeUuid};
//! use futures::TryStreamExt;
//!
//! # async fn run() -> Result<(), consensusdb_client::Error> {
//! let client = Client::builder()
//!     .endpoints(["https://10.0.0.1:4482", "https://10.0.0.2:4482"])
//!     .credentials(Credentials::from_files("ca.pem".as_ref(), "client-app.pem".as_ref(), "client-app.key".as_ref())?)
//!     .timeout(Duration::from_secs(5))
//!     .connect()
//!     .await?;
//!
//! let key = RecordKey::builder().major("acme").region("ACCOUNT").minor("balance").timestamp(TimeUuid::now()).build();
//! let head = client.put(Record::new(key.clone(), "100.00").compression(Compression::Lz4)).await?;
//! println!("written as seq {}", head.seq);
//!
//! let row = RowKey::new("acme", "ACCOUNT", "balance");
//! if let Some(latest) = client.get_recent(row.clone()).await? {
//!     println!("balance {}", latest.value_str().unwrap_or("?"));
//! }
//! let newest = client.get_range(row.clone()).limit(100).await?;
//! println!("{} newest", newest.records.len());
//!
//! let mut tenant = client.scan_tenant("acme").head_only().stream();
//! while let Some(record) = tenant.try_next().await? {
//!     println!("{:?}", record.key);
//! }
//! # Ok(())
//! # }
//! ```

mod bearer;
mod client;
mod credentials;
mod error;
mod head;
mod keychain;
mod password;
mod reads;
mod record;
mod retry;
mod scan;
mod transport;

pub use bearer::{AuthorizedChannel, BearerToken};
pub use client::{BatchCall, Client, ClientBuilder, DEFAULT_ENDPOINT};
pub use credentials::{AdminPaths, Credentials, NODE_TLS_DIR, endpoint_for};
pub use error::{Error, Result};
pub use head::Head;
pub use keychain::{ENVELOPE_OVERHEAD, KEYCHAIN_REGION, KEYCHAIN_ROW, KdfParams, Keychain};
pub use reads::{BoxFuture, GetCall, Page, PageToken, RangeCall, RecentCall, RecordStream};
pub use record::{BatchAck, Record, StoredRecord};
pub use retry::RetryPolicy;
pub use scan::ScanCall;
pub use transport::endpoint_url;

pub use consensusdb_types::{
    Compression, ErrorCode, KeyBuilder, KeyFingerprint, NodeId, Origin, RecordKey, RowKey, Stamp, TimeUuid,
};

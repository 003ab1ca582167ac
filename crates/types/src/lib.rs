//! Layer 1 of ConsensusDB: the data model and its byte formats, with no I/O.
//!
//! Everything that is written to disk or sent between nodes is defined here,
//! so that storage, replication, the API servers and the SDK agree on one
//! encoding:
//!
//! - [`time_uuid`]: the TimeUUID (v1 or v7) and its normalized time.
//! - [`key`]: the record key `majorKey / regionName / minorKey / TimeUUID`
//!   and its validation.
//! - [`key_codec`]: the order-preserving, prefix-free key encoding. Byte order
//!   of encoded keys equals `(major, region, minor, time)` order, and every
//!   tenant, region and row is one contiguous byte range.
//! - [`stamp`]: origins, hybrid-logical-clock stamps and the clock itself.
//! - [`conflict`]: the one rule that decides which version of a key wins.
//! - [`digest`]: the 256-bit additive convergence digest.
//! - [`head`], [`stored_value`], [`log_entry`], [`frontier`]: the versioned
//!   on-disk formats.
//! - [`compression`]: per-record LZ4 / Snappy value codecs.
//! - [`identity`]: who a certificate speaks for (`cdb://cluster/node/name`),
//!   and [`caller`]: who is at the other end of a connection, as every
//!   layer that decides what a caller may do reads it; [`grant`]: what a
//!   caller is allowed (tenant grants, cluster roles) and the reserved
//!   system tenant.
//! - [`limits`]: size limits, all well under the 4 MiB gRPC message limit.
//! - [`error`]: the shared error codes, each mapping to one HTTP status
//!   (the gRPC mapping lives in the proto crate, which links tonic).
//!
//! Invariants kept here: nothing is truncated silently, every decoder
//! rejects unknown format bytes, and every format starts with a format byte.

pub mod caller;
pub mod client_key;
pub mod compression;
pub mod conflict;
pub mod digest;
pub mod error;
pub mod frontier;
pub mod grant;
pub mod head;
pub mod identity;
pub mod key;
pub mod key_codec;
pub mod limits;
pub mod log_entry;
pub mod stamp;
pub mod stored_value;
pub mod time_uuid;
mod wire;

pub use caller::{Caller, Connection, Principal, Refusal};
pub use client_key::KeyFingerprint;
pub use compression::Compression;
pub use digest::Digest;
pub use error::{ErrorCode, FieldError};
pub use frontier::FrontierMark;
pub use grant::{ClusterRole, Grant, Permission, SYSTEM_TENANT, TenantPattern};
pub use head::{Head, Resealed, Seal};
pub use identity::{Identity, Role};
pub use key::{KeyBuilder, RecordKey, RowKey};
pub use limits::Limits;
pub use log_entry::{LogEntry, Mutation, MutationKind};
pub use stamp::{HybridClock, NodeId, Origin, Stamp};
pub use time_uuid::TimeUuid;
pub use wire::DecodeError;

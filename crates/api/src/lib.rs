//! Layer 4 of ConsensusDB: the network-facing servers of a node, one
//! folder per protocol over one shared records layer.
//!
//! - [`records_api`]: the records operations both protocols call (limits,
//!   deadlines, scans as pages), so neither re-implements the other;
//! - [`grpc`]: the `consensusdb.v1.Records` service, gRPC status mapping,
//!   server reflection and the standard health service, so `grpcurl` and
//!   `grpcui` work out of the box;
//! - [`http`]: the JSON gateway, its OpenAPI document, the status page and
//!   health routes;
//! - shared by both servers: [`connections`] (cap, idle timeout, forced
//!   close), [`readiness`] and [`metrics`].
//!
//! - [`tls`]: each accepted connection's TLS handshake (or none, in
//!   development), and who is calling, attached to every request.
//!
//! Servers take their listener and a shutdown future as arguments, so the
//! same code runs in production, in in-process tests on ephemeral ports, and
//! behind a fault-injecting transport.

pub mod connections;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod readiness;
pub mod records_api;
pub mod tls;

pub use connections::{ConnectionLimits, Connections};
pub use grpc::{READINESS_POLL, RECORDS_SERVICE_NAME, RecordsService, ServeError, serve_grpc};
pub use http::{Gateway, serve_http};
pub use metrics::Metrics;
pub use readiness::Readiness;
pub use records_api::{RecordsApi, ServiceError};
pub use tls::{HandshakeRefusals, Port, ServerTransport};

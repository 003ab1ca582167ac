//! Why a replication stream or a bootstrap ended in failure. The message
//! becomes the peer's `last_error` in the cluster view, so each variant
//! says what happened in the words an operator reads.

use consensusdb_storage::StorageError;
use consensusdb_types::Origin;
use consensusdb_types::error::error_chain;

use crate::connector::ConnectError;

/// A failure talking to one peer.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The peer could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The peer refused a call, or ended a stream, with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Refused(#[from] tonic::Status),
    /// The peer sent a message at a point where the protocol allows none
    /// of its kind.
    #[error("{0}")]
    OutOfOrder(&'static str),
    /// A field the peer sent does not decode or is out of bounds.
    #[error("{0}")]
    Malformed(String),
    /// The request stream to the peer closed: the stream is over.
    #[error("the stream closed")]
    StreamClosed,
    /// Storage failed, or refused what the peer sent, while applying it.
    #[error("applying entries: {}", error_chain(.0))]
    Apply(StorageError),
    /// Storage failed while installing the peer's snapshot.
    #[error("installing the snapshot: {}", error_chain(.0))]
    Install(StorageError),
    /// The peer's snapshot lacks entries this node has applied: installing
    /// it would move the frontier back.
    #[error("the snapshot holds {origin} only to seq {theirs}, this node to {ours}")]
    SnapshotBehind {
        /// The origin the snapshot is behind on.
        origin: Origin,
        /// How far the snapshot holds it.
        theirs: u64,
        /// How far this node has applied it.
        ours: u64,
    },
    /// The peer holds this node's own origin beyond its log: the data
    /// directory is older than what the cluster saw, so its next seqs would
    /// collide with replicated ones. A bootstrap gives it a new origin.
    #[error("peer {address} holds this node's origin {origin} up to seq {theirs}, beyond its log at {local}")]
    OwnOriginBeyondLog {
        /// The peer.
        address: String,
        /// This node's origin.
        origin: Origin,
        /// How far the peer holds it.
        theirs: u64,
        /// How far this node's log goes.
        local: u64,
    },
}

impl MeshError {
    /// A field that failed to decode; the wire decoders say which as a
    /// status, the form the serving side answers a peer with.
    pub(crate) fn malformed(status: tonic::Status) -> Self {
        Self::Malformed(status.message().to_string())
    }
}

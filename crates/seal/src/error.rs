//! Why a value or a key could not be opened.

/// Why opening failed. None of these ever yields bytes: a value that
/// does not open is refused, never returned as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The bytes are not a sealed value or wrapped key of a known format.
    #[error("not a sealed value: {0}")]
    Malformed(String),
    /// A master key file that does not read: which line, and why (never
    /// its key bytes).
    #[error("{0}")]
    BadKeyFile(String),
    /// The value or wrapped key names another key than the one given.
    #[error("sealed under key {sealed}, not key {given}")]
    WrongKey {
        /// The key id in the envelope.
        sealed: u32,
        /// The key id of the key given.
        given: u32,
    },
    /// Authentication failed: the bytes were changed, moved to another
    /// record or tenant, or the key is not the one they were sealed with.
    #[error("the sealed bytes do not authenticate (changed, moved, or another key)")]
    Tampered,
    /// A data key was wrapped under a master key this node does not hold.
    #[error("wrapped under master key {id}, which this node does not hold: add it to the master key file")]
    UnknownMasterKey {
        /// The master key's id.
        id: u32,
    },
    /// Retiring a master key the file does not hold.
    #[error("the file holds no master key {id}")]
    NoSuchMasterKey {
        /// The master key's id.
        id: u32,
    },
    /// Promoting a staged master key in a file that has none newer than
    /// the current key.
    #[error("the file holds no staged master key newer than the current one: add one first")]
    NoStagedMasterKey,
    /// Two sets of master keys hold different keys under one id.
    #[error("master key {id} differs from the one in use: is this another cluster's file, or damaged?")]
    DifferentMasterKey {
        /// The master key's id.
        id: u32,
    },
    /// Retiring the current master key, which wraps new data keys.
    #[error(
        "master key {id} is the current one, which wraps new data keys: add and promote a newer key first"
    )]
    CurrentMasterKey {
        /// The master key's id.
        id: u32,
    },
}

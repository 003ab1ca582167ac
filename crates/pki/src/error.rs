//! What can go wrong making or reading certificates.

use std::path::PathBuf;

/// A certificate could not be made, saved, loaded or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A name, address or identity given is not valid.
    #[error("{0}")]
    Invalid(String),
    /// rcgen refused to build or sign a certificate.
    #[error("making a certificate: {0}")]
    Make(#[from] rcgen::Error),
    /// A certificate does not parse, or does not carry exactly one
    /// identity of the expected kind.
    #[error("reading a certificate: {0}")]
    Read(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<consensusdb_types::FieldError> for PkiError {
    fn from(error: consensusdb_types::FieldError) -> Self {
        Self::Invalid(error.to_string())
    }
}

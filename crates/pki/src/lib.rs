//! The cluster's certificates: one CA per cluster, and certificates it
//! issues to nodes and clients, each carrying exactly one identity
//! (`cdb://<cluster>/node/<name>` or `cdb://<cluster>/client/<name>`, see
//! [`consensusdb_types::identity`]) as a URI subject alternative name.
//!
//! - [`authority`]: create a CA, or load a saved one to issue more.
//! - [`issue`]: node certificates (server and client authentication, with
//!   the DNS names and addresses peers dial) and client certificates
//!   (client authentication only).
//! - [`inspect`]: read the identity back from a certificate, the one way
//!   the servers learn who is calling.
//! - [`files`]: the directory `consensusdb init` writes, private keys
//!   readable by their owner only.
//! - [`cluster_dir`]: the directory `init` (or a node's first start)
//!   makes: a CA, a node's credential, the admin client's, and the
//!   master key file ([`master_key_file`]) that seals values at rest.
//! - [`tls`]: rustls configurations from a credential, for the servers
//!   (client certificates verified when presented) and for dialing.
//! - [`live`]: a node's TLS replaced while it serves (certificate reload),
//!   and the file stamps that tell when its files changed.
//!
//! Nothing here is hand-rolled cryptography: rcgen builds and signs the
//! certificates (ring underneath), x509-parser reads them, and rustls
//! (ring provider) speaks TLS.

pub mod authority;
pub mod cluster_dir;
pub mod error;
pub mod files;
pub mod inspect;
pub mod issue;
pub mod live;
pub mod master_key_file;
pub mod tls;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

pub use authority::Authority;
pub use error::PkiError;
pub use files::{CredentialFiles, credential_paths, write_credential};
pub use inspect::{check_valid_now, identity_of, identity_of_pem};
pub use issue::{Credential, NodeNames};
pub use live::{LiveTls, ReloadStats, ReloadTally};
pub use tls::{NodeTls, TlsFiles};

//! Where a node's master keys come from, decided once at start:
//!
//! - `dev.insecure_unsealed`: none; new values are stored in the clear
//!   (development only, said loudly at start and on the status page);
//! - `seal.master_key_file`: that file;
//! - a `master.key` beside the configured CA (`tls.ca_file`), as
//!   `consensusdb init` writes it: nodes get it the way they get their
//!   certificates;
//! - none of these on a node that makes its own credentials (no TLS
//!   files, no peers): `<data_dir>/tls/master.key`, made on first start;
//! - otherwise refused, saying what to run.

use std::path::PathBuf;
use std::sync::Arc;

use consensusdb_pki::PkiError;
use consensusdb_pki::master_key_file::{self, MASTER_KEY_FILE};
use consensusdb_seal::MasterKeys;

use crate::config::NodeConfig;

/// Why a node has no master keys.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// A node of a cluster with no master key file found.
    #[error(
        "values are sealed at rest, and this node has no master key file: {looked}. `consensusdb init` \
         writes one (master.key) beside the CA; copy the cluster's file to every node (mode 0600) and give \
         it with --master-key FILE (or [seal] master_key_file). Every node of a cluster needs the same file. \
         Storing values in the clear, for development only: --insecure-unsealed"
    )]
    Missing {
        /// Where the node looked.
        looked: String,
    },
    /// The file could not be read, written or understood.
    #[error(transparent)]
    File(#[from] PkiError),
}

/// The master keys the node seals with and the file they came from;
/// `None` in the unsealed development mode. Reads and may write files:
/// call it off the reactor.
pub fn resolve(config: &NodeConfig) -> Result<Option<(Arc<MasterKeys>, PathBuf)>, MasterKeyError> {
    if config.dev.insecure_unsealed {
        return Ok(None);
    }
    let beside_ca = config.tls.ca_file.as_deref().map(|ca| ca.with_file_name(MASTER_KEY_FILE));
    let path = if let Some(path) = &config.seal.master_key_file {
        path.clone()
    } else if let Some(path) = beside_ca.as_ref().filter(|path| path.exists()) {
        path.clone()
    } else if config.tls.files().is_none() && config.cluster.peers.is_empty() {
        master_key_file::ensure(&config.data_dir.join(consensusdb_client::NODE_TLS_DIR))?
    } else {
        let looked = match beside_ca {
            Some(path) => format!("no seal.master_key_file, and no {} beside the CA", path.display()),
            None => "no seal.master_key_file".into(),
        };
        return Err(MasterKeyError::Missing { looked });
    };
    let (keys, shared) = master_key_file::load(&path)?;
    if shared {
        tracing::warn!(file = %path.display(),
            "the master key file is readable by others than its owner: make it mode 0600");
    }
    Ok(Some((Arc::new(keys), path)))
}

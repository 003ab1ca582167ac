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
//!
//! Once the node runs, [`MasterKeyReload`] reads that file again when it
//! changes (and on SIGHUP), so a master-key rotation needs no restart;
//! storage takes the new keys only if they lose none in use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use consensusdb_pki::master_key_file::{self, MASTER_KEY_FILE};
use consensusdb_pki::{PkiError, ReloadTally};
use consensusdb_seal::MasterKeys;
use consensusdb_storage::Store;
use tokio::sync::Notify;

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

/// Watches the master key file of a sealed node and puts a changed file
/// in force (see `consensusdb_storage::Store::replace_master_keys`).
pub struct MasterKeyReload {
    file: PathBuf,
    store: Store,
    /// Time between looks at the file; zero turns polling off.
    interval: Duration,
    trigger: Arc<Notify>,
    tally: ReloadTally,
}

impl MasterKeyReload {
    /// Reloads `file` into `store`'s master keys, looking at it every
    /// `interval`.
    pub fn new(file: PathBuf, store: Store, interval: Duration) -> Self {
        Self { file, store, interval, trigger: Arc::new(Notify::new()), tally: ReloadTally::default() }
    }

    /// What makes it reload now, whether the file changed or not.
    pub fn trigger(&self) -> Arc<Notify> {
        self.trigger.clone()
    }

    /// What it counts, for the status page and the metrics.
    pub fn tally(&self) -> ReloadTally {
        self.tally.clone()
    }

    /// Reloads on the trigger and when the file changes, until aborted.
    pub async fn run(self) {
        let files = vec![self.file.clone()];
        crate::reload::on_change(self.trigger.clone(), self.interval, files, || self.reload()).await;
    }

    async fn reload(&self) {
        let file = self.file.clone();
        let loaded = match tokio::task::spawn_blocking(move || master_key_file::load(&file)).await {
            Ok(Ok((keys, shared))) => {
                if shared {
                    tracing::warn!(file = %self.file.display(),
                        "the master key file is readable by others than its owner: make it mode 0600");
                }
                keys
            }
            Ok(Err(error)) => return self.refused(error.to_string()),
            Err(error) => return self.refused(format!("the reload task failed: {error}")),
        };
        match self.store.replace_master_keys(loaded).await {
            Ok(replaced) => {
                self.tally.reloaded();
                tracing::info!(
                    file = %self.file.display(),
                    held = ?replaced.now.held,
                    staged = ?replaced.now.staged,
                    current = replaced.now.current,
                    data_keys_checked = replaced.data_keys_checked,
                    "reloaded the master keys: new data keys are wrapped under the current one"
                );
            }
            Err(error) => self.refused(error.to_string()),
        }
    }

    fn refused(&self, why: String) {
        tracing::warn!(file = %self.file.display(), %why, "master key reload refused: the keys in use stay");
        self.tally.refused(why);
    }
}

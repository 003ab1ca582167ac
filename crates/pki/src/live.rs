//! A node's TLS that can be replaced while it serves: the servers take the
//! configuration in force when a connection arrives, and the peer
//! connector when it dials, so a reloaded certificate is used for every
//! new connection while established ones carry on. Failed reloads keep
//! the current one and are counted, with their reason, for the status.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use crate::tls::{NodeTls, TlsFiles};

/// The current [`NodeTls`], shared. Cheap to clone.
#[derive(Clone)]
pub struct LiveTls {
    current: Arc<RwLock<Arc<NodeTls>>>,
    reloads: ReloadTally,
}

/// What reloading has done since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStats {
    /// New certificates taken into use.
    pub reloaded: u64,
    /// Reloads refused (the current certificate was kept).
    pub refused: u64,
    /// Why the last refused one was refused.
    pub last_refusal: Option<String>,
}

/// The count of one kind of file's reloads, shared by the task that
/// reloads and the pages that show it. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct ReloadTally(Arc<Mutex<ReloadStats>>);

impl ReloadTally {
    /// Counts a reload that put new files in force.
    pub fn reloaded(&self) {
        self.lock().reloaded += 1;
    }

    /// Counts a refused reload, and why (the reason is shown as it is:
    /// it never holds a secret).
    pub fn refused(&self, why: String) {
        let mut stats = self.lock();
        stats.refused += 1;
        stats.last_refusal = Some(why);
    }

    /// What was counted so far.
    pub fn stats(&self) -> ReloadStats {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadStats> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LiveTls {
    /// Starts with `tls`.
    pub fn new(tls: NodeTls) -> Self {
        Self { current: Arc::new(RwLock::new(Arc::new(tls))), reloads: ReloadTally::default() }
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<NodeTls> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What reloading has done since start.
    pub fn reload_stats(&self) -> ReloadStats {
        self.reloads.stats()
    }

    /// Loads `files` and, if they hold a valid node certificate of the
    /// same cluster, puts it in force; otherwise keeps the current one and
    /// counts why. Reads files: call it off the reactor.
    pub fn reload(&self, files: &TlsFiles) -> Result<Arc<NodeTls>, String> {
        let outcome = NodeTls::load(files).map_err(|error| error.to_string()).and_then(|tls| {
            let cluster = self.current().identity.cluster().to_string();
            if tls.identity.cluster() == cluster {
                Ok(Arc::new(tls))
            } else {
                Err(format!("{} is not a node of cluster {cluster}", tls.identity))
            }
        });
        match outcome {
            Ok(tls) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = tls.clone();
                self.reloads.reloaded();
                Ok(tls)
            }
            Err(why) => {
                self.reloads.refused(why.clone());
                Err(why)
            }
        }
    }
}

/// What identifies a version of a file: its modification time, inode and
/// size, read through symbolic links (so Kubernetes' `..data` link swap
/// is seen too). `None` when the file cannot be read.
pub type FileStamp = Option<(SystemTime, u64, u64)>;

/// The stamp of the file at `path`: when it differs from an earlier
/// reading, the file changed.
pub fn stamp(path: &Path) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.ino(), metadata.len()))
}

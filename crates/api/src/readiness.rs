//! Whether the node is ready: it takes client writes. One answer for every
//! interface: `/readyz` on the gateway and the standard gRPC health
//! service report the same thing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use consensusdb_storage::Store;

/// What decides readiness: storage open, the writer running, no bootstrap
/// pending or under way, and no shutdown begun.
#[derive(Clone)]
pub struct Readiness {
    store: Store,
    shutting_down: Arc<AtomicBool>,
}

impl Readiness {
    /// Readiness of the node serving `store`.
    pub fn new(store: Store) -> Self {
        Self { store, shutting_down: Arc::new(AtomicBool::new(false)) }
    }

    /// From now on the node is not ready: it is stopping.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Why the node takes no client writes now, if it does not.
    pub fn not_ready_because(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Some("the node is shutting down".into());
        }
        if !self.store.is_writable() {
            return Some("the writer stopped after a storage failure; restart the node".into());
        }
        self.store.writes_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_storage::StoreOptions;

    #[tokio::test]
    async fn ready_only_while_writes_are_taken_and_not_once_shutdown_begins() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(StoreOptions::new(dir.path())).expect("store opens");
        let readiness = Readiness::new(store.clone());
        assert_eq!(readiness.not_ready_because(), None);
        store.hold_writes(consensusdb_storage::WriteHold::Bootstrap, "a bootstrap is under way");
        assert_eq!(readiness.not_ready_because().as_deref(), Some("a bootstrap is under way"));
        store.release_writes(consensusdb_storage::WriteHold::Bootstrap);
        assert_eq!(readiness.not_ready_because(), None);
        readiness.begin_shutdown();
        assert_eq!(readiness.not_ready_because().as_deref(), Some("the node is shutting down"));
        store.close().await.expect("store closes");
    }
}

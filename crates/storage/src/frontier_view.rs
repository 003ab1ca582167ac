//! The frontier as committed: what the replication layer reads to decide
//! what to ship and what to ask for, and the signal that wakes it.
//!
//! The writer thread owns the authoritative frontier and publishes a copy
//! here after every durable group commit, never before: a peer must never
//! be told an entry is applied before it would survive a crash.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use consensusdb_types::{FrontierMark, Origin};
use tokio::sync::watch;

/// The applied frontier of every origin this node knows.
pub type Frontier = BTreeMap<Origin, FrontierMark>;

/// Shared between the writer thread and readers.
#[derive(Debug)]
pub(crate) struct FrontierView {
    marks: RwLock<Frontier>,
    /// Counts group commits; replication sources wait on it for new entries.
    commits: watch::Sender<u64>,
}

impl FrontierView {
    pub(crate) fn new(initial: Frontier) -> Self {
        Self { marks: RwLock::new(initial), commits: watch::Sender::new(0) }
    }

    /// A copy of the committed frontier.
    pub(crate) fn snapshot(&self) -> Frontier {
        self.marks.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The committed mark of one origin.
    pub(crate) fn mark(&self, origin: &Origin) -> FrontierMark {
        self.marks.read().unwrap_or_else(PoisonError::into_inner).get(origin).copied().unwrap_or_default()
    }

    /// Called by the writer after a durable commit (sync code: `watch` needs
    /// no runtime).
    pub(crate) fn publish(&self, changed: impl IntoIterator<Item = (Origin, FrontierMark)>) {
        {
            let mut marks = self.marks.write().unwrap_or_else(PoisonError::into_inner);
            marks.extend(changed);
        }
        self.commits.send_modify(|count| *count += 1);
    }

    /// Replaces the whole frontier (a snapshot install), and wakes readers.
    pub(crate) fn replace(&self, frontier: Frontier) {
        *self.marks.write().unwrap_or_else(PoisonError::into_inner) = frontier;
        self.commits.send_modify(|count| *count += 1);
    }

    /// A receiver that changes after every group commit.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }
}

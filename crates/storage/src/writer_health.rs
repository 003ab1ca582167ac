//! Whether the writer still accepts writes, and why not.
//!
//! The writer thread marks itself stopped after a failed group commit
//! (fail-stop); servers read that to report the node not ready, so
//! orchestrators route clients elsewhere until it is restarted.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared between the writer thread and the store.
#[derive(Debug, Default)]
pub(crate) struct WriterHealth {
    stopped: AtomicBool,
    /// Why, once stopped.
    reason: Mutex<Option<String>>,
}

impl WriterHealth {
    /// Called by the writer's threads. The first reason given is kept.
    pub(crate) fn mark_stopped(&self, reason: &str) {
        self.reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(|| reason.to_string());
        self.stopped.store(true, Ordering::Release);
    }

    /// Why the writer stopped, if it has.
    pub(crate) fn stop_reason(&self) -> Option<String> {
        if !self.is_stopped() {
            return None;
        }
        self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

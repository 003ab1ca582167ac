//! Why client writes are refused right now. Several holders can each keep
//! writes closed for a reason of their own (a bootstrap from a peer, a
//! clock too far from its peers' clocks); each lifts only its own hold, so
//! one ending never reopens writes another still needs closed.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

/// Who holds client writes closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteHold {
    /// A bootstrap from a peer's snapshot is needed or under way.
    Bootstrap,
    /// This node's clock is too far from its peers' to stamp writes.
    ClockOffset,
}

/// The holds in force, each with its reason.
#[derive(Debug, Default)]
pub(crate) struct WriteGate {
    holds: Mutex<BTreeMap<WriteHold, String>>,
}

impl WriteGate {
    /// A gate with `hold` in force from the start.
    pub(crate) fn held(hold: WriteHold, reason: String) -> Self {
        Self { holds: Mutex::new(BTreeMap::from([(hold, reason)])) }
    }

    /// Puts `hold` in force (or changes its reason).
    pub(crate) fn hold(&self, hold: WriteHold, reason: String) {
        self.lock().insert(hold, reason);
    }

    /// Lifts `hold`; the others stay.
    pub(crate) fn release(&self, hold: WriteHold) {
        self.lock().remove(&hold);
    }

    /// The reason of `hold`, if it is in force.
    pub(crate) fn reason_of(&self, hold: WriteHold) -> Option<String> {
        self.lock().get(&hold).cloned()
    }

    /// Every reason in force, joined; `None` when writes are open.
    pub(crate) fn reason(&self) -> Option<String> {
        let holds = self.lock();
        (!holds.is_empty()).then(|| holds.values().cloned().collect::<Vec<_>>().join("; "))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<WriteHold, String>> {
        self.holds.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holder_lifts_only_its_own_hold() {
        let gate = WriteGate::default();
        assert_eq!(gate.reason(), None);
        gate.hold(WriteHold::Bootstrap, "bootstrapping".into());
        gate.hold(WriteHold::ClockOffset, "clock".into());
        assert_eq!(gate.reason().as_deref(), Some("bootstrapping; clock"));
        gate.release(WriteHold::Bootstrap);
        assert_eq!(gate.reason().as_deref(), Some("clock"), "the clock hold stays");
        assert_eq!(gate.reason_of(WriteHold::Bootstrap), None);
        gate.release(WriteHold::ClockOffset);
        assert_eq!(gate.reason(), None);
    }
}

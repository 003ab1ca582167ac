//! The clock guard: every heartbeat interval, compares this node's clock
//! with its peers' ([`crate::clock`]) and holds client writes closed while
//! it is off from most of them.

use std::sync::Arc;

use consensusdb_storage::WriteHold;
use consensusdb_types::NodeId;

use crate::{Inner, clock, stopped};

/// Compares this node's clock with its peers' every heartbeat interval,
/// and holds client writes closed while it is off from most of them.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut ticks = tokio::time::interval(inner.config.heartbeat);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = ticks.tick() => inner.check_clock(),
        }
    }
}

impl Inner {
    /// Holds client writes closed while this node's clock is off from most
    /// of its peers' ([`clock`]), and opens them once it agrees again.
    fn check_clock(&self) {
        let names: std::collections::HashMap<NodeId, String> = self
            .peers()
            .peers
            .iter()
            .filter_map(|(address, peer)| Some((peer.node?, format!("{address} ({})", peer.node?))))
            .collect();
        let verdict = self.clocks().verdict(std::time::Instant::now(), |node| {
            names.get(&node).cloned().unwrap_or_else(|| node.to_string())
        });
        let held = self.store.write_hold(WriteHold::ClockOffset);
        match verdict {
            clock::Verdict::Off(reason) => {
                if held.is_none() {
                    tracing::error!(%reason, "refusing client writes");
                }
                self.store.hold_writes(WriteHold::ClockOffset, reason);
            }
            clock::Verdict::Healthy if held.is_some() => {
                tracing::warn!("this node's clock agrees with its peers' again: accepting client writes");
                self.store.release_writes(WriteHold::ClockOffset);
            }
            clock::Verdict::Healthy => {}
        }
    }
}

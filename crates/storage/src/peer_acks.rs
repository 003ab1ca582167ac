//! What peers have durably applied of this node's own origin: the
//! replication layer records their acknowledgements here, and a write with
//! a write concern waits here for enough of them.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use consensusdb_types::NodeId;
use tokio::sync::watch;

use crate::{StorageError, Store};

/// How long a write concern waits when the caller set no deadline.
pub const DEFAULT_WRITE_CONCERN_WAIT: Duration = Duration::from_secs(10);

/// Peer acknowledgements of the own origin.
#[derive(Debug)]
pub(crate) struct PeerAcks {
    acked: Mutex<HashMap<NodeId, u64>>,
    changed: watch::Sender<u64>,
}

impl Default for PeerAcks {
    fn default() -> Self {
        Self { acked: Mutex::default(), changed: watch::Sender::new(0) }
    }
}

impl PeerAcks {
    fn confirmed(&self, seq: u64) -> u32 {
        let acked = self.acked.lock().unwrap_or_else(PoisonError::into_inner);
        u32::try_from(acked.values().filter(|&&acked| acked >= seq).count()).unwrap_or(u32::MAX)
    }
}

impl Store {
    /// Records that `peer` has durably applied this node's own origin up to
    /// `seq` (acknowledgements only move forward).
    pub fn record_peer_ack(&self, peer: NodeId, seq: u64) {
        let acks = &self.shared.peer_acks;
        let advanced = {
            let mut acked = acks.acked.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = acked.entry(peer).or_default();
            let advanced = seq > *slot;
            *slot = (*slot).max(seq);
            advanced
        };
        if advanced {
            acks.changed.send_modify(|n| *n += 1);
        }
    }

    /// Stops counting a removed peer's acknowledgements.
    pub fn forget_peer(&self, peer: NodeId) {
        self.shared.peer_acks.acked.lock().unwrap_or_else(PoisonError::into_inner).remove(&peer);
    }

    pub(crate) fn forget_all_peer_acks(&self) {
        self.shared.peer_acks.acked.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Waits until `peers` peers have applied this node's entry `seq`, or
    /// the deadline passes ([`DEFAULT_WRITE_CONCERN_WAIT`] if none): then
    /// the error says how many confirmed. The write itself is committed
    /// locally either way and keeps replicating.
    pub async fn wait_for_peers(
        &self,
        seq: u64,
        peers: u32,
        deadline: Option<Instant>,
    ) -> Result<(), StorageError> {
        let acks = &self.shared.peer_acks;
        let deadline = deadline.unwrap_or_else(|| Instant::now() + DEFAULT_WRITE_CONCERN_WAIT);
        let mut changed = acks.changed.subscribe();
        loop {
            let confirmed = acks.confirmed(seq);
            if confirmed >= peers {
                return Ok(());
            }
            let wait = tokio::time::timeout_at(deadline.into(), changed.changed()).await;
            if !matches!(wait, Ok(Ok(()))) {
                return Err(StorageError::WriteConcern {
                    seq,
                    confirmed: acks.confirmed(seq),
                    wanted: peers,
                });
            }
        }
    }
}

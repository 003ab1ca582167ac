//! Write concern: what peers have durably applied of this node's own
//! origin, and a client write waiting until enough of them have. The
//! write itself is committed locally first, by storage; only replication
//! knows who the peers are and what they acknowledged, so the wait lives
//! here.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use consensusdb_types::NodeId;
use tokio::sync::watch;

/// How long a write concern waits when the caller set no deadline.
pub const DEFAULT_WRITE_CONCERN_WAIT: Duration = Duration::from_secs(10);

/// Why a write concern was not met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteConcernError {
    /// More peers were asked for than this node knows: refused before
    /// anything is written (as Cassandra refuses a consistency level its
    /// replicas cannot reach).
    #[error(
        "write_concern: asks {wanted} peers to confirm, but this node knows {known} (nothing was written)"
    )]
    MorePeersThanKnown {
        /// Peers asked for.
        wanted: u32,
        /// The other members this node knows.
        known: usize,
    },
    /// The write committed locally, but not enough peers confirmed
    /// applying it before the deadline.
    #[error(
        "the write is committed on this node (seq {seq}) and keeps replicating, but only {confirmed} of \
         the {wanted} peers asked for confirmed it before the deadline"
    )]
    NotConfirmedInTime {
        /// The write's seq in this node's origin.
        seq: u64,
        /// Peers that had applied it.
        confirmed: u32,
        /// Peers asked for.
        wanted: u32,
    },
}

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
    /// Records that `peer` has durably applied this node's own origin up
    /// to `seq` (acknowledgements only move forward).
    pub(crate) fn record(&self, peer: NodeId, seq: u64) {
        let advanced = {
            let mut acked = self.lock();
            let slot = acked.entry(peer).or_default();
            let advanced = seq > *slot;
            *slot = (*slot).max(seq);
            advanced
        };
        if advanced {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Stops counting a removed peer's acknowledgements.
    pub(crate) fn forget(&self, peer: NodeId) {
        self.lock().remove(&peer);
    }

    /// Forgets every acknowledgement: they counted seqs of an origin this
    /// node no longer writes under (a bootstrap gave it a new incarnation,
    /// whose seqs start again at 1).
    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }

    fn confirmed(&self, seq: u64) -> u32 {
        u32::try_from(self.lock().values().filter(|&&acked| acked >= seq).count()).unwrap_or(u32::MAX)
    }

    /// Waits until `wanted` peers have applied this node's entry `seq`, or
    /// the deadline passes ([`DEFAULT_WRITE_CONCERN_WAIT`] if none).
    pub(crate) async fn wait(
        &self,
        seq: u64,
        wanted: u32,
        deadline: Option<Instant>,
    ) -> Result<(), WriteConcernError> {
        let deadline = deadline.unwrap_or_else(|| Instant::now() + DEFAULT_WRITE_CONCERN_WAIT);
        let mut changed = self.changed.subscribe();
        loop {
            if self.confirmed(seq) >= wanted {
                return Ok(());
            }
            let wait = tokio::time::timeout_at(deadline.into(), changed.changed()).await;
            if !matches!(wait, Ok(Ok(()))) {
                return Err(WriteConcernError::NotConfirmedInTime {
                    seq,
                    confirmed: self.confirmed(seq),
                    wanted,
                });
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, u64>> {
        self.acked.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wait_ends_once_enough_peers_acknowledge_or_says_how_many_did() {
        let acks = std::sync::Arc::new(PeerAcks::default());
        let (a, b) = (NodeId(1), NodeId(2));
        acks.record(a, 7);
        let deadline = Some(Instant::now() + Duration::from_millis(20));
        let error = acks.wait(7, 2, deadline).await.unwrap_err();
        assert_eq!(error, WriteConcernError::NotConfirmedInTime { seq: 7, confirmed: 1, wanted: 2 });

        let waiting = tokio::spawn({
            let acks = acks.clone();
            async move { acks.wait(7, 2, Some(Instant::now() + Duration::from_secs(60))).await }
        });
        // The waiter is parked on the change signal before the acks come.
        tokio::task::yield_now().await;
        acks.record(b, 6);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one peer short");
        acks.record(b, 9);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        acks.record(b, 3);
        assert_eq!(acks.confirmed(9), 1, "acknowledgements never move back");
        acks.forget(a);
        assert_eq!(acks.confirmed(7), 1);
        acks.forget_all();
        assert_eq!(acks.confirmed(1), 0);
    }
}

//! The purge task: from what every member has applied, decide what no one
//! can need any more ([`crate::purge_plan`]), and have storage remove it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use consensusdb_storage::{PurgePlan, StorageError, WriteHold};
use consensusdb_types::{FrontierMark, NodeId, Origin};

use crate::Inner;
use crate::purge_plan::{self, Lagging, LogHolds, MemberView, Members};

/// The members whose views decide a purge, this node included, and the
/// log holds of nodes resuming from a snapshot. `None` while a peer is
/// known by address only, or a member view was dropped for lack of room:
/// what it holds is unknown.
fn members_now(inner: &Inner, own: MemberView) -> Option<(Members, LogHolds)> {
    let mut peers = inner.peers();
    if peers.has_unresolved_peer() || peers.members_incomplete() {
        return None;
    }
    peers.release_log_holds(inner.store.wall_clock_ms(), inner.config.retention_max_lag_ms);
    let mut members = peers.members.clone();
    let holds = peers.log_holds();
    drop(peers);
    members.insert(inner.store.origin().node, own);
    Some((members, holds))
}

/// The members lagging past the retention cap, per origin
/// ([`purge_plan::lags_past`]), judged from this node's log.
async fn lagging(inner: &Inner, members: &Members, own: &MemberView) -> Result<Lagging, StorageError> {
    let own_node = inner.store.origin().node;
    // (member, origin, first seq it lacks, the origin's newest entry here)
    let behind: Vec<(NodeId, Origin, u64, FrontierMark)> = members
        .iter()
        .filter(|(node, _)| **node != own_node)
        .flat_map(|(node, view)| {
            own.applied.iter().filter_map(move |(origin, newest)| {
                let theirs = view.applied.get(origin).map_or(0, |mark| mark.seq);
                (theirs < newest.seq).then_some((*node, *origin, theirs + 1, *newest))
            })
        })
        .collect();
    let queries = behind.iter().map(|(_, origin, wanted, _)| (*origin, *wanted)).collect();
    let held = inner.store.first_held_entries(queries).await?;
    let max_lag_ms = inner.config.retention_max_lag_ms;
    Ok(behind
        .into_iter()
        .zip(held)
        .filter(|((.., wanted, newest), held)| purge_plan::lags_past(*newest, *wanted, *held, max_lag_ms))
        .map(|((node, origin, ..), _)| (node, origin))
        .collect())
}

/// One purge: plan, then purge until storage has nothing more the plan
/// allows.
pub(crate) async fn round(inner: &Arc<Inner>) -> Result<(), StorageError> {
    if inner.store.write_hold(WriteHold::Bootstrap).is_some() {
        // Bootstrapping: the frontier is about to change under us.
        return Ok(());
    }
    let promise = inner.store.clock_promise().await?;
    let applied = inner.store.frontier();
    let own = inner.store.origin();
    let promise_seq = applied.get(&own).map_or(0, |mark| mark.seq);
    let view = MemberView { origin: Some(own), applied, promise, promise_seq };
    // Remember the cluster first: a restart must still count every member.
    let membership = crate::peer_table_store::encode(&inner.peers());
    inner.store.save_membership(membership).await?;
    let Some((members, holds)) = members_now(inner, view.clone()) else { return Ok(()) };
    let log_views = purge_plan::log_views(&members, &holds);
    let lagging = lagging(inner, &log_views, &view).await?;
    let plan = purge_plan::plan(&members, &log_views, &lagging, own.node);
    loop {
        let outcome = match inner.store.purge(plan.clone()).await {
            Ok(outcome) => outcome,
            // A bootstrap began since the check above: the next round replans.
            Err(StorageError::Bootstrapping) => return Ok(()),
            Err(error) => return Err(error),
        };
        inner.versions_purged.fetch_add(outcome.versions, Ordering::Relaxed);
        if !outcome.more {
            break;
        }
    }
    *inner.last_purge.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (plan, lagging);
    Ok(())
}

/// Runs a purge round every `purge_interval` until the node stops.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut ticks = tokio::time::interval(inner.config.purge_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = crate::stopped(&mut stop) => return,
            _ = ticks.tick() => {
                if let Err(error) = round(&inner).await {
                    tracing::warn!(%error, "purge round failed; retrying at the next interval");
                }
                // What the log holds changes only by purges and installs.
                if let Err(error) = inner.refresh_log_starts().await {
                    tracing::warn!(%error, "reading where the log starts failed");
                }
            }
        }
    }
}

/// The plan of the last round, for status.
pub(crate) type LastPurge = (PurgePlan, Lagging);

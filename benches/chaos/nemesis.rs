//! The nemesis: one fault at a time, chosen at random, until the targets
//! of kills and partitions are reached:
//!
//! - kill: SIGKILL a random node, wait 0.5–3 s, restart it on the same
//!   data directory and addresses;
//! - partition: cut a random set of directed links (isolate one node, cut
//!   one pair both ways, or any non-empty subset) for 1–5 s, then heal;
//! - skew: restart a random node (SIGTERM, wait for its exit) with a
//!   random clock skew within `--max-skew-ms`; the next skew step restarts
//!   the skewed node with skew 0 again;
//! - stall: a stalled reader on a random node (see `stalled`).
//!
//! Between two faults it waits 0.5–1.5 s. Kills and partitions weigh more
//! while their targets are not reached.

use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::cluster::Cluster;
use crate::proxy::Links;
use crate::stalled::{self, Stalled};
use crate::topology::NODES;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long a stalled reader stops reading: beyond the nodes' 2 s stall
/// timeout.
const STALL: Duration = Duration::from_secs(3);

/// What the nemesis did and saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Kill cycles.
    pub kills: u32,
    /// Partition cycles.
    pub partitions: u32,
    /// Restarts with a non-zero skew, and back to zero.
    pub skewed_restarts: u32,
    pub unskewed_restarts: u32,
    /// Stalled readers whose scan was cut (and resumed whole).
    pub stalled_cut: u32,
    /// Stalled readers whose scan had been sent whole before the stall.
    pub stalled_complete: u32,
    /// Stalled readers that failed for another reason (not a verdict).
    pub stalled_failed: u32,
    /// What went wrong that is a finding: a stalled scan that ended as if
    /// complete with records missing, a cut scan that did not resume
    /// whole, a node that did not stop cleanly on SIGTERM.
    pub findings: Vec<String>,
    /// Other notes (stalled readers that failed, and why).
    pub notes: Vec<String>,
}

/// The faults.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Partition,
    Skew,
    Stall,
}

/// Runs faults until `kills` and `partitions` cycles are done.
pub async fn run(
    cluster: &Cluster,
    links: &Links,
    rng: &mut StdRng,
    kills: u32,
    partitions: u32,
    max_skew_ms: i64,
    bulk_records: usize,
) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    while tally.kills < kills || tally.partitions < partitions {
        let weights = [
            (Fault::Kill, if tally.kills < kills { 4 } else { 0 }),
            (Fault::Partition, if tally.partitions < partitions { 2 } else { 0 }),
            (Fault::Skew, 1),
            (Fault::Stall, 1),
        ];
        let (fault, _) = *weights.choose_weighted(rng, |(_, w)| *w).expect("some fault weighs more than 0");
        let line = match fault {
            Fault::Kill => {
                let i = rng.random_range(0..NODES);
                let down = Duration::from_secs_f64(rng.random_range(0.5..3.0));
                cluster.kill(i).await?;
                tokio::time::sleep(down).await;
                cluster.start(i).await?;
                tally.kills += 1;
                format!(
                    "kill {}: node {i} SIGKILLed, restarted after {:.1} s",
                    tally.kills,
                    down.as_secs_f64()
                )
            }
            Fault::Partition => {
                let (cut, shape) = partition(rng);
                let lasting = Duration::from_secs_f64(rng.random_range(1.0..5.0));
                links.cut(&cut);
                tokio::time::sleep(lasting).await;
                links.heal_all();
                tally.partitions += 1;
                format!("partition {}: {shape} for {:.1} s, healed", tally.partitions, lasting.as_secs_f64())
            }
            Fault::Skew => {
                let mut skewed = None;
                for i in 0..NODES {
                    if cluster.skew(i).await != 0 {
                        skewed = Some(i);
                    }
                }
                let (i, skew) = match skewed {
                    Some(i) => (i, 0),
                    None => {
                        let magnitude = rng.random_range(50..=max_skew_ms);
                        (
                            rng.random_range(0..NODES),
                            if rng.random_bool(0.5) { magnitude } else { -magnitude },
                        )
                    }
                };
                if let Err(error) = cluster.terminate(i).await {
                    tally.findings.push(format!("at {:.1} s: {error}", cluster.elapsed_s()));
                }
                cluster.set_skew(i, skew).await;
                cluster.start(i).await?;
                if skew == 0 {
                    tally.unskewed_restarts += 1;
                } else {
                    tally.skewed_restarts += 1;
                }
                format!("skew: node {i} restarted (SIGTERM) with clock skew {skew} ms")
            }
            Fault::Stall => {
                let i = rng.random_range(0..NODES);
                let outcome = stalled::read(cluster.topology.nodes[i].grpc, bulk_records, STALL).await;
                let line = format!("stall: a reader on node {i} stopped for {STALL:?}: {outcome}");
                match outcome {
                    Stalled::Cut { complete: Ok(()), .. } => tally.stalled_cut += 1,
                    Stalled::Cut { complete: Err(why), .. } => {
                        tally.stalled_cut += 1;
                        tally.findings.push(format!("at {:.1} s, node {i}: {why}", cluster.elapsed_s()));
                    }
                    Stalled::Complete { .. } => tally.stalled_complete += 1,
                    Stalled::Truncated { received } => tally.findings.push(format!(
                        "at {:.1} s, node {i}: a stalled scan ended cleanly with {received} of {bulk_records} records",
                        cluster.elapsed_s()
                    )),
                    Stalled::Failed(why) => {
                        tally.stalled_failed += 1;
                        tally.notes.push(format!("stalled reader on node {i} failed: {why}"));
                    }
                }
                line
            }
        };
        eprintln!("chaos: [{:6.1} s] {line}", cluster.elapsed_s());
        tokio::time::sleep(Duration::from_secs_f64(rng.random_range(0.5..1.5))).await;
    }
    Ok(tally)
}

/// A random set of directed links to cut, and its description.
fn partition(rng: &mut StdRng) -> (Vec<(usize, usize)>, String) {
    let all: Vec<(usize, usize)> = (0..NODES)
        .flat_map(|from| (0..NODES).filter(move |&to| to != from).map(move |to| (from, to)))
        .collect();
    match rng.random_range(0..3) {
        0 => {
            let i = rng.random_range(0..NODES);
            let cut = all.iter().copied().filter(|&(from, to)| from == i || to == i).collect();
            (cut, format!("node {i} isolated"))
        }
        1 => {
            let i = rng.random_range(0..NODES);
            let j = (i + rng.random_range(1..NODES)) % NODES;
            (vec![(i, j), (j, i)], format!("{i}<->{j} cut"))
        }
        _ => loop {
            let cut: Vec<(usize, usize)> = all.iter().copied().filter(|_| rng.random_bool(0.5)).collect();
            if !cut.is_empty() {
                let shape =
                    cut.iter().map(|(from, to)| format!("{from}->{to}")).collect::<Vec<_>>().join(" ");
                break (cut, format!("links {shape} cut"));
            }
        },
    }
}

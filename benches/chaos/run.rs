//! The order of a run:
//!
//! 1. node 0 starts alone and takes the bulk tenant;
//! 2. nodes 1 and 2 join (each bootstraps once), and the three converge;
//! 3. the status monitor and the writers start;
//! 4. the nemesis runs until its targets are reached;
//! 5. the writers stop, every link heals, every node runs with skew 0;
//! 6. the nodes must converge (equal digests at equal frontiers);
//! 7. every node is checked against the model, and the summary printed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::args::Args;
use crate::cluster::Cluster;
use crate::model::Model;
use crate::monitor::Monitor;
use crate::node::{KillOnDrop, Pids};
use crate::proxy::{self, Links};
use crate::topology::{NODES, Topology};
use crate::workload::{self, KeySpace};
use crate::{check, converge, grpc, logs, nemesis, writer};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long the nodes may take to converge once the faults stop.
const CONVERGE_LIMIT: Duration = Duration::from_secs(120);
/// How long a joining node may take to bootstrap.
const JOIN_LIMIT: Duration = Duration::from_secs(120);
/// Writes before the first fault.
const WARM_UP: Duration = Duration::from_secs(2);

/// Writes the bulk tenant into node `addr`, in batches; records it in the
/// model.
async fn write_bulk(addr: std::net::SocketAddr, model: &Mutex<Model>, rng: &mut StdRng) -> Result<(), Error> {
    let mut client = grpc::records(addr).await?;
    for first in (0..workload::BULK_RECORDS).step_by(workload::BULK_BATCH) {
        let last = (first + workload::BULK_BATCH).min(workload::BULK_RECORDS);
        let writes: Vec<_> =
            (first..last).map(|i| (workload::bulk_key(i), workload::bulk_value(i, rng))).collect();
        let records = writes
            .iter()
            .map(|(key, value)| consensusdb_proto::v1::PutRequest {
                key: Some(key.to_proto()),
                value: value.clone(),
                compression: consensusdb_proto::v1::Compression::None.into(),
                if_absent: false,
                ttl_ms: 0,
                write_concern: 0,
                client_key_fingerprint: Vec::new(),
            })
            .collect();
        let heads = client
            .put_batch(consensusdb_proto::v1::PutBatchRequest { records, write_concern: 0 })
            .await?
            .into_inner()
            .heads;
        let mut model = model.lock().expect("the model lock is never poisoned");
        for ((key, value), head) in writes.into_iter().zip(heads) {
            model.acked(&key, Some(&head), Some(value));
        }
    }
    Ok(())
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter().map(|(code, n)| format!("{code} {n}")).collect::<Vec<_>>().join(", ")
}

/// Runs the soak; returns whether it passed.
pub async fn run(args: &Args) -> Result<bool, Error> {
    let run_started = Instant::now();
    let binary = args.node_binary()?;
    if !binary.is_file() {
        return Err(format!(
            "no node binary at {} (build it with `cargo build --release --workspace --bins`, or pass --binary)",
            binary.display()
        )
        .into());
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_dir).map_err(|e| format!("creating {}: {e}", work_dir.display()))?;
    // With --keep the directory stays whatever happens (an error too).
    let scratch = tempfile::Builder::new()
        .prefix("consensusdb-chaos-")
        .disable_cleanup(args.keep)
        .tempdir_in(&work_dir)
        .map_err(|e| format!("creating a directory in {}: {e}", work_dir.display()))?;
    // Dropped before `scratch`: every node is gone before its directory is.
    let pids = Pids::default();
    let _kill_nodes = KillOnDrop(pids.clone());
    eprintln!("chaos: seed {seed}, scratch {}, node {}", scratch.path().display(), binary.display());

    let topology = Topology::pick()?;
    // One node certificate names every address a node is dialed at: its
    // own and its proxy's (what it advertises).
    let node_ips: Vec<_> = topology.nodes.iter().flat_map(|node| [node.grpc.ip(), node.proxy.ip()]).collect();
    crate::security::init(scratch.path(), false, false, &node_ips)?;
    eprintln!("chaos: nodes serve and dial over {}", crate::security::get().label());
    let links = Links::new();
    let proxies = proxy::start(&topology, &links).await?;
    let cluster = Arc::new(Cluster::new(&binary, scratch.path(), topology.clone(), pids.clone()));
    let model = Arc::new(Mutex::new(Model::default()));

    // 1–2: the cluster forms.
    cluster.start(0).await?;
    cluster.wait_serving(0, JOIN_LIMIT).await?;
    write_bulk(topology.nodes[0].grpc, &model, &mut rng).await?;
    tokio::try_join!(cluster.start(1), cluster.start(2))?;
    for i in 0..NODES {
        cluster.wait_serving(i, JOIN_LIMIT).await?;
    }
    let formed = converge::wait(&topology, CONVERGE_LIMIT).await?;
    eprintln!(
        "chaos: [{:6.1} s] cluster formed ({} bulk records on every node, converged in {:.1} s)",
        cluster.elapsed_s(),
        workload::BULK_RECORDS,
        formed.as_secs_f64()
    );

    // 3: monitor and writers.
    let (stop_monitor, monitor_stop) = watch::channel(false);
    let monitor = Monitor::spawn(cluster.clone(), monitor_stop);
    let (stop_writers, writers_stop) = watch::channel(false);
    let keys = Arc::new(KeySpace::new());
    let mut writers = Vec::new();
    for i in 0..NODES {
        for w in 0..args.writers {
            let writer = writer::Writer {
                label: format!("n{i}w{w}"),
                addr: topology.nodes[i].grpc,
                pause: Duration::from_millis(args.pause_ms),
                seed: rng.random(),
            };
            writers.push(writer::spawn(writer, keys.clone(), model.clone(), writers_stop.clone()));
        }
    }
    tokio::time::sleep(WARM_UP).await;

    // 4: the nemesis.
    let mut tally = nemesis::run(
        &cluster,
        &links,
        &mut rng,
        args.kills,
        args.partitions,
        args.max_skew_ms,
        workload::BULK_RECORDS,
    )
    .await?;

    // 5: quiet.
    stop_writers.send_replace(true);
    for writer in writers {
        writer.await.map_err(|e| format!("a writer failed: {e}"))?;
    }
    links.heal_all();
    for i in 0..NODES {
        if !cluster.is_running(i).await {
            cluster.start(i).await?;
        }
        if cluster.skew(i).await != 0 {
            if let Err(error) = cluster.terminate(i).await {
                tally.findings.push(format!("at {:.1} s: {error}", cluster.elapsed_s()));
            }
            cluster.set_skew(i, 0).await;
            cluster.start(i).await?;
            tally.unskewed_restarts += 1;
            eprintln!("chaos: [{:6.1} s] node {i} restarted with clock skew 0", cluster.elapsed_s());
        }
    }
    for i in 0..NODES {
        cluster.wait_serving(i, JOIN_LIMIT).await?;
    }
    eprintln!(
        "chaos: [{:6.1} s] writers stopped, links healed, waiting for convergence",
        cluster.elapsed_s()
    );

    // 6: convergence.
    let converged = converge::wait(&topology, CONVERGE_LIMIT).await;
    if let Err(why) = &converged {
        eprintln!("chaos: {why}");
    }
    stop_monitor.send_replace(true);
    let seen = monitor.finish().await;

    // 7: the verdict.
    let model = std::mem::take(&mut *model.lock().expect("the model lock is never poisoned"));
    let verdict = check::check(&topology, &model).await?;
    let summaries: Vec<logs::LogSummary> = (0..NODES).map(|i| logs::summarize(cluster.log(i), 6)).collect();
    // A process killed within a second of starting a bootstrap escapes the
    // status polls, never its log: the larger count is taken.
    let needless_in_logs: u64 = summaries
        .iter()
        .enumerate()
        .map(|(i, s)| (s.bootstraps as u64).saturating_sub(u64::from(i != 0)))
        .sum();
    let needless = seen.needless_bootstraps().max(needless_in_logs);
    for line in &verdict.details {
        eprintln!("chaos: {line}");
    }
    for anomaly in model.anomalies.iter().take(20) {
        eprintln!("chaos: anomaly: {anomaly}");
    }
    for finding in &tally.findings {
        eprintln!("chaos: finding: {finding}");
    }
    for note in tally.notes.iter().take(10) {
        eprintln!("chaos: note: {note}");
    }
    let proxy_counts = &proxies.counts;
    let ordering = std::sync::atomic::Ordering::Relaxed;
    eprintln!(
        "chaos: writes not written (refused): {}; of unknown outcome: {}",
        counts(&model.refused),
        counts(&model.unknown_codes)
    );
    for (code, message) in &model.first_messages {
        eprintln!("chaos:     first {code}: {message}");
    }
    eprintln!(
        "chaos: proxies: {} connections forwarded, {} refused, {} cut, {} from an unknown source",
        proxy_counts.forwarded.load(ordering),
        proxy_counts.refused.load(ordering),
        proxy_counts.cut.load(ordering),
        proxy_counts.unknown_source.load(ordering)
    );
    eprintln!(
        "chaos: bootstraps reported per node (all lifetimes): {:?}; keys checked per node: {}; scans identical on \
         every node: {}",
        seen.bootstraps_per_node(),
        verdict.keys,
        verdict.views_identical
    );
    let mut origin_changes = 0;
    for (i, (node, summary)) in seen.nodes.iter().zip(&summaries).enumerate() {
        eprintln!(
            "chaos: node {i}: {} starts, {} status polls, {} origin(s), {} polls refusing writes for the clock{}; \
             log: {} bootstraps, {} panics, {} errors, {} warnings",
            cluster.generation(i),
            node.polls,
            node.origins.len(),
            node.clock_refusals,
            if node.last_clock_refusal.is_empty() {
                String::new()
            } else {
                format!(" ({})", node.last_clock_refusal)
            },
            summary.bootstraps,
            summary.panics,
            summary.errors,
            summary.warnings
        );
        for (n, shape) in &summary.top {
            eprintln!("chaos:     {n:6} × {shape}");
        }
        origin_changes += node.origins.len().saturating_sub(1);
    }

    let converged_text = match &converged {
        Ok(took) => format!("converged in {:.1} s", took.as_secs_f64()),
        Err(_) => format!("did not converge within {} s", CONVERGE_LIMIT.as_secs()),
    };
    println!(
        "{} acknowledged, {} lost, {} duplicated, {} resurrected; {} kills, {} partitions; {converged_text}",
        model.acknowledged,
        verdict.lost,
        verdict.duplicated,
        verdict.resurrected,
        tally.kills,
        tally.partitions
    );
    println!(
        "{} clock-skew restarts (+{} back to 0), {} stalled readers cut ({} whole before the stall, {} failed), \
         {} needless bootstraps, {} unknown-outcome writes ({} keys won by one); {} findings; run took {:.0} s, \
         seed {seed}",
        tally.skewed_restarts,
        tally.unskewed_restarts,
        tally.stalled_cut,
        tally.stalled_complete,
        tally.stalled_failed,
        needless,
        model.unknown,
        verdict.won_by_unknown,
        tally.findings.len() + model.anomalies.len() + origin_changes,
        run_started.elapsed().as_secs_f64()
    );
    let passed = verdict.lost == 0
        && verdict.duplicated == 0
        && verdict.resurrected == 0
        && needless == 0
        && converged.is_ok()
        && tally.findings.is_empty()
        && model.anomalies.is_empty()
        && origin_changes == 0
        && verdict.views_identical
        && summaries.iter().all(|s| s.panics == 0);
    drop(proxies);
    if args.keep {
        eprintln!("chaos: kept {}", scratch.path().display());
    }
    Ok(passed)
}

//! `chaos`: a chaos soak of a three-node ConsensusDB cluster. It runs three
//! real `consensusdb serve` processes on loopback, sends every node-to-node
//! connection through a fault proxy, keeps writers busy on every node, and
//! has a nemesis kill nodes with SIGKILL, partition links, restart nodes
//! with a skewed clock and stall scans, until the targets are reached.
//! Then it heals everything, waits for the nodes to converge and checks,
//! Jepsen-style, every node against a model of what was acknowledged.
//!
//! ```text
//! chaos                                  # 50 kills, 20 partitions (a few minutes)
//! chaos --kills 5 --partitions 3         # a smoke run
//! chaos --keep                           # keep the data dirs and node logs
//! ```
//!
//! It prints one summary line and a line of extra figures:
//!
//! ```text
//! N acknowledged, L lost, D duplicated, R resurrected; K kills, P partitions; converged in X s
//! ```
//!
//! and exits non-zero if anything was lost, duplicated or resurrected, a
//! node bootstrapped needlessly, a stalled scan ended as if complete, a
//! node answered a write inconsistently, changed its origin or panicked,
//! the nodes did not converge, or their scans differ.
//!
//! Modules, one job each: `args` (the command line), `topology` (addresses
//! and ports), `proxy` (the link-aware fault proxies), `node` (one node
//! process), `cluster` (the three nodes across restarts), `workload` (keys,
//! values and operations), `model` (what was acknowledged or attempted),
//! `writer` (the writers), `grpc` (connections and scans), `monitor`
//! (cluster status polls: bootstraps), `stalled` (the stalled reader),
//! `nemesis` (the faults), `converge` (digests), `check` (the verdict),
//! `logs` (what the node logs say) and `run` (their order and the summary).

mod args;
mod check;
mod cluster;
mod converge;
mod grpc;
mod logs;
mod model;
mod monitor;
mod nemesis;
mod node;
mod proxy;
mod run;
#[path = "../common/security.rs"]
mod security;
mod stalled;
mod topology;
mod workload;
mod writer;

use std::process::ExitCode;

use clap::Parser;

use args::Args;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = args.check() {
        eprintln!("chaos: {message}");
        return ExitCode::from(2);
    }
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            eprintln!("chaos: cannot watch SIGTERM: {error}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C or SIGTERM the run is dropped; when main returns the
    // runtime drops every task, so every node process is killed and the
    // scratch directory removed (unless --keep).
    let outcome = tokio::select! {
        outcome = run::run(&args) => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
        _ = terminate.recv() => Err("terminated".into()),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("chaos: FAILED (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("chaos: {error}");
            ExitCode::FAILURE
        }
    }
}

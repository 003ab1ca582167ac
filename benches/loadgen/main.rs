//! `loadgen`: the end-to-end load generator. It measures a ConsensusDB node
//! over gRPC (fsync before every acknowledgement) with the workload of the
//! peer harness in `shared/bench/peers`, next to a raw-RocksDB reference
//! measured in the same run, and writes one JSON record per phase in the
//! harness's `results.jsonl` shape, so its `summarize.py` puts ConsensusDB
//! in the same tables as Redis, PostgreSQL, NATS and etcd.
//!
//! ```text
//! loadgen --quick                      # a smoke run in well under a minute
//! loadgen                              # the full run: 500,000 events, 10 s reads
//! loadgen --phases raw,batch           # only the batch load and its reference
//! loadgen --server 127.0.0.1:4482 --server-pid PID --data-dir DIR   # a running node
//! ```
//!
//! Modules, one job each: `args` (the command line), `workload` (the
//! events), `node` (starting and stopping the node), `grpc` (the
//! requests), `load`, `reads`, `count`, `raw_reference` and
//! `replication` (the phases), `resources` and `disk_usage` (what a phase cost),
//! `report` (the records) and `run` (their order).

mod args;
mod count;
mod disk_usage;
mod grpc;
mod load;
mod node;
mod raw_reference;
mod reads;
mod replication;
mod report;
mod resources;
mod run;
#[path = "../common/security.rs"]
mod security;
mod workload;

use std::process::ExitCode;

use args::Args;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::parse_checked() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("loadgen: {message}");
            return ExitCode::from(2);
        }
    };
    let outcome = match run::Run::prepare(&args) {
        Ok(run) => {
            // On Ctrl-C the run is dropped: a node it started is killed and
            // the scratch directory removed.
            tokio::select! {
                outcome = run.execute() => outcome,
                _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            }
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("loadgen: {errors} errors (see the records in {})", args.out.display());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}

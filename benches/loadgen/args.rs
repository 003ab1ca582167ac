//! Command-line arguments and the phases a run may include.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::reads::ReadKind;

/// Measures a ConsensusDB node over gRPC with the peer harness's workload
/// (`shared/bench/peers`), next to a raw-RocksDB reference run on the same
/// events. Prints one JSON record per phase and appends it to `--out`.
///
/// By default it starts its own node (`consensusdb serve`, fsync on) on a
/// fresh data directory. With `--server` it measures a running node
/// instead; then it cannot give the batch load a fresh node, so the batch
/// load writes into the same node as the single load (skip it with
/// `--phases`, or point it at a fresh node).
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    /// Events per load.
    #[arg(long, default_value_t = 500_000)]
    pub events: usize,
    /// Concurrent writers and readers (each waits for its answer).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// HTTP/2 connections the workers share.
    #[arg(long, default_value_t = 4)]
    pub conns: usize,
    /// Events per request in the batch load.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Seconds per read phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Phases to run, comma-separated. Each load is followed by `count` and
    /// `du` records; reads run on the data of the single load.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values_t = [
            Phase::Raw, Phase::Single, Phase::R1, Phase::R2, Phase::R3, Phase::Catchup, Phase::Batch, Phase::Lag
        ]
    )]
    pub phases: Vec<Phase>,
    /// Events per second written to one node of three in the `lag` phase,
    /// for `--duration` seconds.
    #[arg(long, default_value_t = 10_000.0)]
    pub lag_rate: f64,
    /// Before each measured phase, wait up to this many seconds for the
    /// machine to be idle (busy below 15% of 2 cores), as the peer harness
    /// does; this also lets the node finish compacting the previous load.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub idle_wait: f64,
    /// A short run for smoke tests: 20,000 events, 1 s reads and no idle
    /// wait, unless `--events`, `--duration` or `--idle-wait` are given too.
    #[arg(long)]
    pub quick: bool,
    /// File the JSON records are appended to (created with its directory).
    #[arg(long, default_value = "target/loadgen/results.jsonl")]
    pub out: PathBuf,
    /// The `label` of ConsensusDB's records (the peer harness's setting name).
    #[arg(long, default_value = "consensusdb-sync")]
    pub label: String,
    /// The `consensusdb` binary to start [default: next to this executable].
    #[arg(long, value_name = "FILE")]
    pub node_bin: Option<PathBuf>,
    /// Where fresh data directories go [default: the system temp dir]. Use
    /// a directory on the disk under test, not a tmpfs.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Measure the node at this gRPC address instead of starting one.
    #[arg(long, value_name = "ADDR", requires = "server_pid")]
    pub server: Option<SocketAddr>,
    /// With `--server`: the node's process id, for its CPU figures.
    #[arg(long, value_name = "PID", requires = "server")]
    pub server_pid: Option<u32>,
    /// With `--server`: the node's data directory, for the `du` records.
    #[arg(long, value_name = "DIR", requires = "server")]
    pub data_dir: Option<PathBuf>,
    /// Start nodes with `--insecure-plaintext` and dial them without TLS,
    /// to measure what mTLS costs (mTLS is the default).
    #[arg(long)]
    pub plaintext: bool,
    /// Start nodes with `--insecure-unsealed` (values in the clear), to
    /// measure what sealing costs (sealed is the default).
    #[arg(long)]
    pub unsealed: bool,
    /// Restart the single load's node before the read phases. A clean stop
    /// flushes its memtables, so the reads start from table files alone
    /// instead of from whatever the load's last flush happened to leave in
    /// memory (which differs between two configurations writing different
    /// bytes, and moves R1 more than what is compared). Needs a node this
    /// run starts.
    #[arg(long)]
    pub restart_before_reads: bool,
}

/// One step of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// The raw-RocksDB reference, in each write mode that is run.
    Raw,
    /// W1 single: one event per `Put`.
    Single,
    /// R1: the latest event of a random key at or before a random time.
    R1,
    /// R2: the 100 newest events of a random hot key.
    R2,
    /// R3: a full scan of a random tenant.
    R3,
    /// W1 batch: `--batch-size` events per `PutBatch`, into a fresh node.
    Batch,
    /// A follower of the single load's node, down during the load, catches
    /// up by log; then a new node bootstraps from a snapshot.
    Catchup,
    /// Replication lag in a 3-node cluster under a paced load.
    Lag,
}

impl Phase {
    /// The read this phase is, if it reads the single load's data.
    pub fn read(self) -> Option<ReadKind> {
        match self {
            Phase::R1 => Some(ReadKind::R1),
            Phase::R2 => Some(ReadKind::R2),
            Phase::R3 => Some(ReadKind::R3),
            Phase::Raw | Phase::Single | Phase::Batch | Phase::Catchup | Phase::Lag => None,
        }
    }
}

/// Events and read seconds of `--quick`.
const QUICK_EVENTS: usize = 20_000;
const QUICK_DURATION_S: f64 = 1.0;

impl Args {
    /// Parses the command line, applies `--quick` and checks the result.
    pub fn parse_checked() -> Result<Self, String> {
        let matches = <Self as clap::CommandFactory>::command().get_matches();
        let mut args =
            <Self as clap::FromArgMatches>::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        let given = |name: &str| matches.value_source(name) == Some(clap::parser::ValueSource::CommandLine);
        if args.quick {
            if !given("events") {
                args.events = QUICK_EVENTS;
            }
            if !given("duration") {
                args.duration = QUICK_DURATION_S;
            }
            if !given("idle_wait") {
                args.idle_wait = 0.0;
            }
        }
        args.check()?;
        Ok(args)
    }

    fn check(&self) -> Result<(), String> {
        if self.events == 0 {
            return Err("--events must be at least 1".into());
        }
        if self.concurrency == 0 || self.conns == 0 || self.batch_size == 0 {
            return Err("--concurrency, --conns and --batch-size must be at least 1".into());
        }
        if !(self.duration > 0.0 && self.duration.is_finite()) {
            return Err("--duration must be a positive number of seconds".into());
        }
        if !(self.idle_wait >= 0.0 && self.idle_wait.is_finite()) {
            return Err("--idle-wait must be zero or a positive number of seconds".into());
        }
        if !(self.lag_rate > 0.0 && self.lag_rate.is_finite()) {
            return Err("--lag-rate must be a positive number of events per second".into());
        }
        if self.restart_before_reads && self.server.is_some() {
            return Err(
                "--restart-before-reads restarts a node this run starts; it cannot restart --server".into()
            );
        }
        if self.restart_before_reads && !self.phases.iter().any(|p| p.read().is_some()) {
            return Err(
                "--restart-before-reads restarts the node before the reads: add r1, r2 or r3 to --phases"
                    .into(),
            );
        }
        let reads = self.phases.iter().any(|p| p.read().is_some()) || self.runs(Phase::Catchup);
        if reads && self.server.is_none() && !self.runs(Phase::Single) {
            return Err("the read and catchup phases use the single load's data: add `single` to --phases, \
                        or measure a loaded node with --server"
                .into());
        }
        Ok(())
    }

    /// Whether `phase` was asked for.
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

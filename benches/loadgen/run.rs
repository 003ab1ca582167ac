//! The order of a run, as the peer harness runs each system:
//!
//! 1. raw reference, single events (if asked);
//! 2. W1 single into a fresh node, then `count` and `du`, then R1, R2 and
//!    R3 on that node's warm data (restarted first with
//!    `--restart-before-reads`);
//! 3. raw reference, batches;
//! 4. W1 batch into another fresh node, then `count` and `du`;
//! 5. `lag` on a fresh 3-node cluster.
//!
//! `catchup` runs at the end of step 2: a fresh node joins the single
//! load's node and pulls all of its events.
//!
//! Each reference runs just before the load it is compared with, so both
//! meet the disk in the same state. Every record is written as soon as its
//! phase ends; a summary comparing ours with raw closes the run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use consensusdb_types::Limits;
use tempfile::TempDir;

use crate::args::{Args, Phase};
use crate::node::{self, NodeProcess, Target};
use crate::reads::{ReadKind, ReadSetup};
use crate::report::{self, Recorder, Subject, WriteMeasurement, WriteMode};
use crate::resources::{self, DiskDevice};
use crate::workload::Workload;
use crate::{count, disk_usage, grpc, load, raw_reference, reads, replication};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// ConsensusDB's figure against the reference's, for one write mode.
struct Comparison {
    mode: WriteMode,
    ours_events_per_s: f64,
    ours_cpu_us_per_event: f64,
    raw: Option<(f64, f64)>,
}

/// Everything a run's phases share.
pub struct Run<'a> {
    args: &'a Args,
    workload: Arc<Workload>,
    scratch: TempDir,
    disk: Option<DiskDevice>,
    recorder: Recorder,
    comparisons: Vec<Comparison>,
    /// The catch-up rate, compared in the summary with the raw reference's
    /// durable batch ingest, which runs after it.
    catch_up_events_per_s: Option<f64>,
}

/// What the node under test is, for one series of phases.
struct Session {
    /// Set when this run started the node (and so stops it).
    process: Option<NodeProcess>,
    target: Target,
    clients: Vec<grpc::Client>,
}

/// The most records one scan page may ask for (the server's default
/// `max_read_limit`).
fn scan_limit() -> u32 {
    Limits::default().max_read_limit
}

impl<'a> Run<'a> {
    /// Generates the workload and prepares the scratch directory and the
    /// results file.
    pub fn prepare(args: &'a Args) -> Result<Self, Error> {
        eprintln!("loadgen: generating {} events", args.events);
        let workload = Arc::new(Workload::generate(args.events));
        let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&work_dir).map_err(|e| format!("creating {}: {e}", work_dir.display()))?;
        let scratch = tempfile::Builder::new()
            .prefix("consensusdb-loadgen-")
            .tempdir_in(&work_dir)
            .map_err(|e| format!("creating a directory in {}: {e}", work_dir.display()))?;
        crate::security::init(scratch.path(), args.plaintext, args.unsealed, &[])?;
        eprintln!("loadgen: nodes serve and clients dial over {}", crate::security::get().label());
        let measured = args.data_dir.as_deref().unwrap_or(scratch.path());
        let disk = DiskDevice::holding(measured);
        match &disk {
            Some(device) => eprintln!("loadgen: disk figures are for device {}", device.name()),
            None => eprintln!(
                "loadgen: {} is not on a device in /proc/diskstats (tmpfs or overlay?); disk figures are 0",
                measured.display()
            ),
        }
        let recorder = Recorder::open(&args.out, args.concurrency)
            .map_err(|e| format!("opening {}: {e}", args.out.display()))?;
        Ok(Self {
            args,
            workload,
            scratch,
            disk,
            recorder,
            comparisons: Vec::new(),
            catch_up_events_per_s: None,
        })
    }

    /// Runs the phases asked for. Returns the errors of all records.
    pub async fn execute(mut self) -> Result<u64, Error> {
        let args = self.args;
        let reads: Vec<ReadKind> = args.phases.iter().filter_map(|p| p.read()).collect();
        // `raw` alone measures the reference in both modes.
        let raw_alone = args.runs(Phase::Raw) && !args.runs(Phase::Single) && !args.runs(Phase::Batch);
        let on_single_data = !reads.is_empty() || args.runs(Phase::Catchup);
        if args.runs(Phase::Single) || on_single_data || raw_alone {
            let raw = self.raw_load_if_asked(WriteMode::Single).await?;
            if args.runs(Phase::Single) || on_single_data {
                self.single_series(raw.as_ref(), &reads).await?;
            }
        }
        if args.runs(Phase::Batch) || raw_alone {
            let batch = WriteMode::Batch(args.batch_size);
            let raw = self.raw_load_if_asked(batch).await?;
            if args.runs(Phase::Batch) {
                let mut session = self.session("batch").await?;
                self.load(&session, batch, raw.as_ref(), &format!("{}-batch", args.label)).await?;
                session.finish().await?;
            }
        }
        if args.runs(Phase::Lag) {
            self.lag().await?;
        }
        self.print_summary();
        Ok(self.recorder.errors())
    }

    /// W1 single into a fresh node (if asked), then the reads on its data.
    async fn single_series(
        &mut self,
        raw: Option<&WriteMeasurement>,
        reads: &[ReadKind],
    ) -> Result<(), Error> {
        let mut session = self.session("single").await?;
        let scratch = self.scratch_path("catchup");
        let follower = if self.args.runs(Phase::Catchup) {
            std::fs::create_dir_all(&scratch)?;
            Some(replication::Follower::join_and_stop(&self.binary()?, session.target.addr, &scratch).await?)
        } else {
            None
        };
        if self.args.runs(Phase::Single) {
            self.load(&session, WriteMode::Single, raw, &self.args.label).await?;
        }
        if self.args.restart_before_reads && !reads.is_empty() {
            self.restart(&mut session).await?;
        }
        for &kind in reads {
            self.read(&session, kind).await?;
        }
        if let Some(follower) = follower {
            self.catch_up(&session, &follower, &scratch).await?;
            remove_dir(&scratch).await;
        }
        session.finish().await
    }

    /// The follower catches up by log, then a new node bootstraps.
    async fn catch_up(
        &mut self,
        session: &Session,
        follower: &replication::Follower,
        scratch: &Path,
    ) -> Result<(), Error> {
        let events = self.workload.events.len() as u64;
        let written =
            self.comparisons.iter().find(|c| c.mode == WriteMode::Single).map(|c| c.ours_events_per_s);
        let label = self.args.label.clone();
        resources::wait_for_idle(self.idle_wait()).await;
        let measured = follower.catch_up(events).await?;
        self.catch_up_events_per_s = Some(measured.events as f64 / measured.wall_s);
        self.recorder.emit(
            &self.ours(&label),
            "catchup",
            replication::catch_up_record(&measured, written),
        )?;
        resources::wait_for_idle(self.idle_wait()).await;
        let measured = replication::bootstrap(&self.binary()?, session.target.addr, events, scratch).await?;
        self.recorder.emit(
            &self.ours(&label),
            "bootstrap",
            replication::catch_up_record(&measured, written),
        )?;
        Ok(())
    }

    /// The 3-node lag phase.
    async fn lag(&mut self) -> Result<(), Error> {
        resources::wait_for_idle(self.idle_wait()).await;
        let binary = self.binary()?;
        let scratch = self.scratch_path("lag");
        std::fs::create_dir_all(&scratch)?;
        let args = self.args;
        let record = replication::lag(
            &binary,
            self.workload.clone(),
            args.lag_rate,
            args.duration,
            args.concurrency,
            &scratch,
        )
        .await?;
        self.recorder.emit(&self.ours(&args.label), "lag", record)?;
        remove_dir(&scratch).await;
        Ok(())
    }

    fn binary(&self) -> Result<PathBuf, Error> {
        match &self.args.node_bin {
            Some(binary) => Ok(binary.clone()),
            None => node::default_binary(),
        }
    }

    /// Restarts the session's node on its data directory and address, and
    /// connects to it again (`--restart-before-reads`).
    async fn restart(&self, session: &mut Session) -> Result<(), Error> {
        let process = session.process.take().ok_or("--restart-before-reads needs a node this run started")?;
        let process = process.restart(&self.binary()?).await?;
        session.target = process.target().clone();
        session.process = Some(process);
        session.clients = grpc::connect(session.target.addr, self.args.conns)
            .await
            .map_err(|e| format!("connecting again to {}: {e}", session.target.addr))?;
        eprintln!("loadgen: restarted the node (pid {}) before the reads", session.target.pid);
        Ok(())
    }

    /// One read phase on the session's node.
    async fn read(&mut self, session: &Session, kind: ReadKind) -> Result<(), Error> {
        let args = self.args;
        resources::wait_for_idle(self.idle_wait()).await;
        let setup = ReadSetup { kind, events: args.events, scan_limit: scan_limit() };
        let measured = reads::run(
            setup,
            &session.clients,
            args.concurrency,
            Duration::from_secs_f64(args.duration),
            session.target.pid,
            self.disk.as_ref(),
        )
        .await;
        self.recorder.emit(&self.ours(&args.label), kind.name(), report::read_record(&measured))?;
        Ok(())
    }

    fn idle_wait(&self) -> Duration {
        Duration::from_secs_f64(self.args.idle_wait)
    }

    fn ours(&self, label: &str) -> Subject {
        Subject { system: "consensusdb", label: label.to_string() }
    }

    /// The node for a series of phases: a fresh one, or the one given.
    async fn session(&self, name: &str) -> Result<Session, Error> {
        let (process, target) = match (self.args.server, self.args.server_pid) {
            (Some(addr), Some(pid)) => (None, Target { addr, pid, data_dir: self.args.data_dir.clone() }),
            _ => {
                let binary = self.binary()?;
                let data_dir = self.scratch_path(&format!("{name}-data"));
                let log = self.scratch_path(&format!("{name}-node.log"));
                let process = NodeProcess::start(&binary, &data_dir, &log).await?;
                let target = process.target().clone();
                eprintln!(
                    "loadgen: node pid {} serving on {} with data in {}",
                    target.pid,
                    target.addr,
                    data_dir.display()
                );
                (Some(process), target)
            }
        };
        let clients = grpc::connect(target.addr, self.args.conns)
            .await
            .map_err(|e| format!("connecting to {}: {e}", target.addr))?;
        Ok(Session { process, target, clients })
    }

    fn scratch_path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// A load into the session's node, then its `count` and `du` records
    /// (under `count_label`, as the harness labels them).
    async fn load(
        &mut self,
        session: &Session,
        mode: WriteMode,
        raw: Option<&WriteMeasurement>,
        count_label: &str,
    ) -> Result<(), Error> {
        let args = self.args;
        resources::wait_for_idle(self.idle_wait()).await;
        let measured = load::run(
            self.workload.clone(),
            &session.clients,
            args.concurrency,
            mode,
            session.target.pid,
            self.disk.as_ref(),
        )
        .await;
        self.recorder.emit(&self.ours(&args.label), "load", report::load_record(&measured, raw))?;
        self.comparisons.push(Comparison {
            mode,
            ours_events_per_s: measured.events_per_s(),
            ours_cpu_us_per_event: measured.server_cpu_us_per_event(),
            raw: raw.map(|r| (r.events_per_s(), r.server_cpu_us_per_event())),
        });
        let expected = self.workload.events.len() as u64;
        let counted = count::run(&session.clients, args.concurrency, scan_limit(), expected).await;
        self.recorder.emit(&self.ours(count_label), "count", report::count_record(&counted))?;
        match &session.target.data_dir {
            Some(dir) => self.record_du(&self.ours(count_label), dir).await?,
            None => eprintln!("loadgen: no --data-dir given, so no du record"),
        }
        Ok(())
    }

    /// The raw reference in `mode`, and its `du`, if `raw` was asked for.
    async fn raw_load_if_asked(&mut self, mode: WriteMode) -> Result<Option<WriteMeasurement>, Error> {
        if !self.args.runs(Phase::Raw) {
            return Ok(None);
        }
        resources::wait_for_idle(self.idle_wait()).await;
        let dir = self.scratch_path(&format!("raw-{}", mode.name()));
        let (workload, concurrency, disk) = (self.workload.clone(), self.args.concurrency, self.disk.clone());
        let outcome = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                raw_reference::run(&workload, &dir, concurrency, mode, disk.as_ref())
            })
            .await??
        };
        let subject = Subject { system: "rocksdb-raw", label: "rocksdb-raw-sync".into() };
        self.recorder.emit(&subject, "load", report::load_record(&outcome.load, None))?;
        let du_label = match mode {
            WriteMode::Single => subject.label.clone(),
            WriteMode::Batch(_) => format!("{}-batch", subject.label),
        };
        let du = report::du_record(&outcome.disk_usage, self.workload.events.len());
        self.recorder.emit(&Subject { label: du_label, ..subject }, "du", du)?;
        remove_dir(&dir).await;
        Ok(Some(outcome.load))
    }

    async fn record_du(&mut self, subject: &Subject, dir: &Path) -> Result<(), Error> {
        let dir = dir.to_path_buf();
        let usage = tokio::task::spawn_blocking(move || disk_usage::measure(&dir)).await??;
        self.recorder.emit(subject, "du", report::du_record(&usage, self.workload.events.len()))?;
        Ok(())
    }

    /// One line per write mode on stderr: ours, raw and the ratio.
    fn print_summary(&self) {
        for c in &self.comparisons {
            let ours = format!(
                "consensusdb {} ev/s ({:.1} µs server CPU/event)",
                report::thousands(c.ours_events_per_s),
                c.ours_cpu_us_per_event
            );
            let line = match c.raw {
                Some((raw_events_per_s, raw_cpu)) => {
                    let target = match c.mode {
                        WriteMode::Batch(_) => " (target >= 0.70)",
                        WriteMode::Single => "",
                    };
                    format!(
                        "{ours}, raw {} ev/s ({raw_cpu:.1} µs CPU/event), ratio {:.2}{target}",
                        report::thousands(raw_events_per_s),
                        c.ours_events_per_s / raw_events_per_s
                    )
                }
                None => ours,
            };
            eprintln!("W1 {}: {line}", c.mode.name());
        }
        if let Some(rate) = self.catch_up_events_per_s {
            // Applying a peer's log writes each event through the WAL and
            // the memtables as a durable batch does, so RocksDB's own batch
            // ingest of the same events on this machine is its reference.
            let raw_batch = self
                .comparisons
                .iter()
                .find(|c| matches!(c.mode, WriteMode::Batch(_)))
                .and_then(|c| c.raw.map(|(raw_events_per_s, _)| raw_events_per_s));
            let reference = match raw_batch {
                Some(raw) => format!(
                    ", {:.2}x raw RocksDB's durable batch ingest of the same events ({} ev/s)",
                    rate / raw,
                    report::thousands(raw)
                ),
                None => String::new(),
            };
            eprintln!("catch-up: {} ev/s{reference} (target 200k ev/s)", report::thousands(rate));
        }
    }
}

impl Session {
    /// Stops the node if this run started it, and frees its data directory.
    async fn finish(&mut self) -> Result<(), Error> {
        if let Some(process) = self.process.take() {
            process.stop().await?;
            if let Some(dir) = &self.target.data_dir {
                remove_dir(dir).await;
            }
        }
        Ok(())
    }
}

/// Frees the disk space of a finished phase; a leftover only costs space
/// until the scratch directory is removed at the end.
async fn remove_dir(dir: &Path) {
    if let Err(error) = tokio::fs::remove_dir_all(dir).await {
        eprintln!("loadgen: could not remove {}: {error}", dir.display());
    }
}

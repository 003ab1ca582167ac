//! The raw-RocksDB reference load: the same events, payloads and writer
//! partition as the gRPC load, committed straight into RocksDB by
//! [`RawReference`] (the bytes our writer stages per event, one synced
//! `WriteBatch` per request) from `concurrency` OS threads, since RocksDB
//! calls block. See `consensusdb_storage::reference` for what it omits.
//!
//! It runs inside this process, so its CPU is reported as the server's and
//! the client's as zero. Its directory is measured while the database is
//! still open, as a node's is: RocksDB preallocates the live WAL file, and
//! closing the database would trim it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use consensusdb_storage::reference::RawReference;

use crate::disk_usage;
use crate::report::{DiskUsage, Tally, WriteMeasurement, WriteMode};
use crate::resources::{self, DiskDevice, Server, Snapshot};
use crate::workload::Workload;

/// What the reference load measured, and its directory afterwards.
pub struct RawOutcome {
    /// The load.
    pub load: WriteMeasurement,
    /// `du` of the reference's directory.
    pub disk_usage: DiskUsage,
}

/// Writes every event of `workload` into a new reference database in `dir`.
/// Blocking: call it off the async reactor.
pub fn run(
    workload: &Workload,
    dir: &Path,
    concurrency: usize,
    mode: WriteMode,
    disk: Option<&DiskDevice>,
) -> Result<RawOutcome, Box<dyn std::error::Error + Send + Sync>> {
    let reference = RawReference::open(dir)?;
    let partition = workload.partition(concurrency);
    let errors = AtomicU64::new(0);
    let before = Snapshot::take(Server::ThisProcess, disk);
    let start = Instant::now();
    let (shared_reference, shared_errors) = (&reference, &errors);
    let per_writer: Vec<Tally> = std::thread::scope(|scope| {
        let writers: Vec<_> = partition
            .iter()
            .map(|events| {
                scope.spawn(move || write_in_order(shared_reference, workload, events, mode, shared_errors))
            })
            .collect();
        writers
            .into_iter()
            .filter_map(|writer| match writer.join() {
                Ok(result) => Some(result),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    None
                }
            })
            .collect()
    });
    let wall_s = start.elapsed().as_secs_f64();
    let after = Snapshot::take(Server::ThisProcess, disk);
    let mut tally = Tally::new();
    for writer_tally in &per_writer {
        tally.merge(writer_tally);
    }
    let load = WriteMeasurement {
        mode,
        events: workload.events.len(),
        acked: tally.events,
        errors: errors.load(Ordering::Relaxed),
        wall_s,
        latency: tally.latency,
        resources: resources::usage(&before, &after, wall_s, Server::ThisProcess),
    };
    let disk_usage = disk_usage::measure(dir)?;
    drop(reference);
    Ok(RawOutcome { load, disk_usage })
}

/// One writer thread: its events, one commit per request.
fn write_in_order(
    reference: &RawReference,
    workload: &Workload,
    events: &[usize],
    mode: WriteMode,
    errors: &AtomicU64,
) -> Tally {
    let mut tally = Tally::new();
    for request in events.chunks(mode.events_per_request()) {
        let started = Instant::now();
        let batch: Vec<_> = request.iter().map(|&i| (workload.record_key(i), workload.payload(i))).collect();
        let outcome = reference.commit(&batch).map(|()| request.len() as u64);
        tally.record(outcome, started, errors, "raw reference write");
    }
    tally
}

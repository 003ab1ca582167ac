//! W1: the load over gRPC. Each writer sends its events in order, one
//! request at a time, and waits for the acknowledgement (fsynced by the
//! node) before sending the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use consensusdb_proto::v1;

use crate::grpc::{self, Client};
use crate::report::{Tally, WriteMeasurement, WriteMode};
use crate::resources::{self, DiskDevice, Server, Snapshot};
use crate::workload::Workload;

/// Writes every event of `workload` through `clients` with `concurrency`
/// writers, grouped by `mode`.
pub async fn run(
    workload: Arc<Workload>,
    clients: &[Client],
    concurrency: usize,
    mode: WriteMode,
    server_pid: u32,
    disk: Option<&DiskDevice>,
) -> WriteMeasurement {
    let errors = Arc::new(AtomicU64::new(0));
    let server = Server::Process(server_pid);
    let before = Snapshot::take(server, disk);
    let start = Instant::now();
    let writers: Vec<_> = workload
        .partition(concurrency)
        .into_iter()
        .enumerate()
        .map(|(w, events)| {
            let client = clients[w % clients.len()].clone();
            tokio::spawn(write_in_order(client, workload.clone(), events, mode, errors.clone()))
        })
        .collect();
    let mut tally = Tally::new();
    for writer in writers {
        match writer.await {
            Ok(writer_tally) => tally.merge(&writer_tally),
            Err(panicked) => {
                eprintln!("a writer task failed: {panicked}");
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let after = Snapshot::take(server, disk);
    WriteMeasurement {
        mode,
        events: workload.events.len(),
        acked: tally.events,
        errors: errors.load(Ordering::Relaxed),
        wall_s,
        latency: tally.latency,
        resources: resources::usage(&before, &after, wall_s, server),
    }
}

/// One writer: its events, a request at a time. Returns the latencies of
/// its acknowledged requests and the events they carried.
async fn write_in_order(
    mut client: Client,
    workload: Arc<Workload>,
    events: Vec<usize>,
    mode: WriteMode,
    errors: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::new();
    for request in events.chunks(mode.events_per_request()) {
        let sent = Instant::now();
        let outcome = match mode {
            WriteMode::Single => client.put(grpc::put_request(&workload, request[0])).await.map(drop),
            WriteMode::Batch(_) => {
                let records = request.iter().map(|&i| grpc::put_request(&workload, i)).collect();
                client.put_batch(v1::PutBatchRequest { records, write_concern: 0 }).await.map(drop)
            }
        };
        tally.record(outcome.map(|()| request.len() as u64), sent, &errors, "write");
    }
    tally
}

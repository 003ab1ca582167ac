//! W1: the load over gRPC. Each writer sends its events in order, one
//! request at a time, and waits for the acknowledgement (fsynced by the
//! node) before sending the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use consensusdb_proto::v1;

use crate::grpc::{self, Client};
use crate::report::{Latencies, WriteMeasurement, WriteMode};
use crate::resources::{self, DiskDevice, Server, Snapshot};
use crate::workload::Workload;

/// Errors printed in full; later ones are only counted.
const PRINTED_ERRORS: u64 = 5;

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
    let mut latency = Latencies::new();
    let mut acked = 0;
    for writer in writers {
        match writer.await {
            Ok((writer_latency, writer_acked)) => {
                latency.merge(&writer_latency);
                acked += writer_acked;
            }
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
        acked,
        errors: errors.load(Ordering::Relaxed),
        wall_s,
        latency,
        resources: resources::usage(&before, &after, wall_s, server),
    }
}

/// One writer: its events, a request at a time. Returns its latencies and
/// the events acknowledged.
async fn write_in_order(
    mut client: Client,
    workload: Arc<Workload>,
    events: Vec<usize>,
    mode: WriteMode,
    errors: Arc<AtomicU64>,
) -> (Latencies, u64) {
    let mut latency = Latencies::new();
    let mut acked = 0u64;
    for request in events.chunks(mode.events_per_request()) {
        let sent = Instant::now();
        let outcome = match mode {
            WriteMode::Single => client.put(grpc::put_request(&workload, request[0])).await.map(drop),
            WriteMode::Batch(_) => {
                let records = request.iter().map(|&i| grpc::put_request(&workload, i)).collect();
                client.put_batch(v1::PutBatchRequest { records }).await.map(drop)
            }
        };
        match outcome {
            Ok(()) => {
                latency.record(sent.elapsed());
                acked += request.len() as u64;
            }
            Err(status) => {
                if errors.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
                    eprintln!("write error: {status}");
                }
            }
        }
    }
    (latency, acked)
}

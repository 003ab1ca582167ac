//! R1, R2 and R3: `concurrency` readers, each sending one request at a time
//! for a fixed duration, on the data of the single load.
//!
//! - R1: the latest event of a uniformly random key at or before a random
//!   time T of the loaded range (`GetRecent` at `TimeUuid::max_for(T)`;
//!   ids carry milliseconds, so events later in T's millisecond count as
//!   at or before it);
//! - R2: the 100 newest events of a random hot key (`GetRange`);
//! - R3: every event of a random tenant (`ScanTenant`, values included).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use consensusdb_types::TimeUuid;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::grpc::{self, Client};
use crate::report::{ReadMeasurement, Tally};
use crate::resources::{self, DiskDevice, Server, Snapshot};
use crate::workload::{self, HOT_KEYS, KEYS, TENANTS};

/// R2's page: the 100 newest.
const NEWEST: u32 = 100;

/// The read phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// The latest event of a key at or before a time.
    R1,
    /// The 100 newest events of a hot key.
    R2,
    /// A whole tenant.
    R3,
}

impl ReadKind {
    /// The harness's `phase` value.
    pub fn name(self) -> &'static str {
        match self {
            ReadKind::R1 => "r1",
            ReadKind::R2 => "r2",
            ReadKind::R3 => "r3",
        }
    }
}

/// What the readers need to draw their requests.
#[derive(Debug, Clone, Copy)]
pub struct ReadSetup {
    /// Which read.
    pub kind: ReadKind,
    /// Events in the loaded data (the time range R1 draws from).
    pub events: usize,
    /// Records per scan page for R3 (the server's `max_read_limit`).
    pub scan_limit: u32,
}

/// Runs `setup.kind` for `duration` with `concurrency` readers.
pub async fn run(
    setup: ReadSetup,
    clients: &[Client],
    concurrency: usize,
    duration: Duration,
    server_pid: u32,
    disk: Option<&DiskDevice>,
) -> ReadMeasurement {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let server = Server::Process(server_pid);
    let before = Snapshot::take(server, disk);
    let start = Instant::now();
    let readers: Vec<_> = (0..concurrency)
        .map(|w| {
            let client = clients[w % clients.len()].clone();
            // The harness's seeds, so each reader draws its own sequence.
            let rng = SmallRng::seed_from_u64(1000 + w as u64);
            tokio::spawn(read_until_stopped(client, setup, rng, stop.clone(), errors.clone()))
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::new();
    let mut ops = 0;
    for reader in readers {
        match reader.await {
            Ok(reader) => {
                ops += reader.latency.count();
                tally.merge(&reader);
            }
            Err(panicked) => {
                eprintln!("a reader task failed: {panicked}");
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let wall_s = start.elapsed().as_secs_f64();
    let after = Snapshot::take(server, disk);
    ReadMeasurement {
        ops,
        events_returned: tally.events,
        errors: errors.load(Ordering::Relaxed),
        wall_s,
        latency: tally.latency,
        resources: resources::usage(&before, &after, wall_s, server),
    }
}

/// One reader. Returns the latencies of its answered requests and the
/// events they returned.
async fn read_until_stopped(
    mut client: Client,
    setup: ReadSetup,
    mut rng: SmallRng,
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
) -> Tally {
    let mut tally = Tally::new();
    let newest_ts_us = workload::event_ts_us(setup.events);
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let outcome = match setup.kind {
            ReadKind::R1 => {
                let row = workload::row_of(rng.random_range(0..KEYS));
                let at = workload::time_of_us(rng.random_range(workload::BASE_TS_US..newest_ts_us));
                grpc::latest_at_or_before(&mut client, &row, TimeUuid::max_for(at)).await
            }
            ReadKind::R2 => {
                let row = workload::row_of(workload::hot_key(rng.random_range(0..HOT_KEYS)));
                grpc::newest(&mut client, &row, NEWEST).await
            }
            ReadKind::R3 => {
                let tenant = workload::tenant_name(rng.random_range(0..TENANTS));
                grpc::scan_tenant(&mut client, &tenant, setup.scan_limit, false).await
            }
        };
        tally.record(outcome, sent, &errors, "read");
    }
    tally
}

//! End-to-end benchmark of the durable write path: 32 concurrent writers
//! put 256-byte random values through [`Store`], every write synced before
//! it is acknowledged.
//!
//! The reference, measured in the same run, is the same store with group
//! commit turned off (`max_group_commit = 1`: one synced `WriteBatch` per
//! write), so the ratio is what group commit buys. A batch-of-100 variant
//! shows the PutBatch path.
//!
//! Run with `cargo bench --workspace --bench storage` (`--workspace` keeps
//! the dependency features, and so the RocksDB build, shared with the tests).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use consensusdb_storage::{PutRecord, Store, StoreOptions};
use consensusdb_types::{Compression, RowKey, TimeUuid};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::RngCore;

const WRITERS: u64 = 32;

fn record(writer: u64) -> PutRecord {
    let mut value = vec![0u8; 256];
    rand::rng().fill_bytes(&mut value);
    PutRecord {
        key: RowKey::new(format!("t{writer:04}"), "EVENTS", "m").at(Some(TimeUuid::now())),
        value,
        compression: Compression::None,
        ttl_ms: None,
        if_absent: false,
    }
}

/// Runs `records` puts (in requests of `batch`) spread over the writers and
/// returns the elapsed time.
async fn write(store: &Arc<Store>, records: u64, batch: u64) -> Duration {
    let requests = records.div_ceil(batch);
    let start = Instant::now();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let mine = requests / WRITERS + u64::from(w < requests % WRITERS);
            tokio::spawn(async move {
                for _ in 0..mine {
                    if batch == 1 {
                        store.put(record(w), None).await.expect("put");
                    } else {
                        store.put_batch((0..batch).map(|_| record(w)).collect(), None).await.expect("batch");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    start.elapsed()
}

fn durable_puts(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("storage_durable_puts_32_writers");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for (name, max_group_commit, batch) in [
        ("reference_one_sync_per_write", 1, 1),
        ("group_commit", 1024, 1),
        ("group_commit_batch_100", 1024, 100),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = StoreOptions { max_group_commit, ..StoreOptions::new(dir.path()) };
        let store = Arc::new(Store::open(options).expect("store opens"));
        group.bench_function(name, |b| b.iter_custom(|iters| runtime.block_on(write(&store, iters, batch))));
        drop(store);
    }
    group.finish();
}

criterion_group!(benches, durable_puts);
criterion_main!(benches);

//! End-to-end benchmark of the durable write path: 32 concurrent writers
//! put 256-byte random values through [`Store`], every write synced before
//! it is acknowledged.
//!
//! The reference, measured in the same run, is the same store with group
//! commit turned off (`max_group_commit = 1`: one synced `WriteBatch` per
//! write), so the ratio is what group commit buys. A batch-of-100 variant
//! shows the PutBatch path.
//!
//! `storage_apply_catch_up` measures what bounds a replica catching up by
//! log: a fresh store applies another store's log of single-event entries
//! (the loadgen workload's shape: 40,000 rows in 4,000 regions, 256-byte
//! random values) in 8 MiB chunks, the puller's `APPLY_BYTES`. The
//! reference is raw RocksDB ([`RawReference`]) committing the same events
//! in the same chunks: the records, values and log bytes with no conflict
//! check, digests or frontier bookkeeping.
//!
//! `authorization` measures what every request pays to learn who it acts
//! for and whether it may touch its tenant ([`Access::authenticate`] then
//! [`Principal::allows`]), by client certificate (with 100 identities
//! granted) and by bearer token (with 100 tokens), against the cheapest
//! read it guards: a get of one 256-byte record from the same store.
//!
//! `scan_tenant_200_values` is R3 inside the store: a scan of one
//! tenant's 200 records with their 256-byte values, sealed, against the
//! same scan of an unsealed store (the reference), both flushed to table
//! files: what opening sealed values costs a scan, with no network or
//! client around it. `get_recent_1_value` does the same for one value:
//! the newest record of a row (rows taken in turn, not loadgen's random
//! time), with its value, on the same two stores.
//!
//! `reencrypt_1024_values` is a re-encryption after a rotation
//! (`Store::start_reencryption`, to its end): 1,024 values of 256 bytes,
//! under the retired key, opened and sealed again in batches of 256,
//! against writing the same 1,024 values as four batches of 256 (the
//! reference: the same number of synced commits and bytes).
//!
//! Run with `cargo bench --workspace --bench storage` (`--workspace` keeps
//! the dependency features, and so the RocksDB build, shared with the tests).

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use consensusdb_access::Access;
use consensusdb_storage::reference::RawReference;
use consensusdb_storage::{
    ApplyAck, LogChunk, PutRecord, Queued, RawEntry, ReadOptions, ScanQuery, ScanScope, Store, StoreOptions,
};
use consensusdb_types::{Caller, Compression, Identity, Permission, RecordKey, RowKey, TimeUuid};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

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
        client_key: None,
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

/// Entries a catching-up replica applies per measured iteration.
const CATCH_UP_ENTRIES: usize = 200_000;
/// Bytes of entry values per apply call: the puller's `APPLY_BYTES`.
const APPLY_BYTES: usize = 8 * 1024 * 1024;

/// `count` events of the loadgen workload's shape: a random row of 40,000
/// (1,000 tenants × 4 regions × 10 minor keys), a fresh TimeUUID and a
/// 256-byte random value.
fn catch_up_events(count: usize) -> Vec<(RecordKey, Vec<u8>)> {
    let mut rng = SmallRng::seed_from_u64(42);
    (0..count)
        .map(|_| {
            let row = rng.random_range(0..40_000);
            let key = RowKey::new(
                format!("t{:04}", row / 40),
                format!("r{}", row / 10 % 4),
                format!("m{}", row % 10),
            )
            .at(Some(TimeUuid::now()));
            let mut value = vec![0u8; 256];
            rng.fill_bytes(&mut value);
            (key, value)
        })
        .collect()
}

/// Writes `events` into a fresh store as single puts (one log entry each,
/// as the `single` load does) and returns its log in apply-sized chunks.
async fn source_log(events: &[(RecordKey, Vec<u8>)]) -> Vec<Vec<RawEntry>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(StoreOptions::new(dir.path())).expect("source store opens"));
    let tasks: Vec<_> = (0..256)
        .map(|w| {
            let store = store.clone();
            let mine: Vec<_> = events.iter().skip(w).step_by(256).cloned().collect();
            tokio::spawn(async move {
                for (key, value) in mine {
                    let record = PutRecord {
                        key,
                        value,
                        compression: Compression::None,
                        ttl_ms: None,
                        if_absent: false,
                        client_key: None,
                    };
                    store.put(record, None).await.expect("source put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("source writer");
    }
    let mut chunks = Vec::new();
    let mut after = 0;
    loop {
        match store.log_since(store.origin(), after, usize::MAX, APPLY_BYTES).await.expect("log reads") {
            LogChunk::Entries(entries) if entries.is_empty() => break,
            LogChunk::Entries(entries) => {
                after = entries.last().map_or(after, |e| e.seq);
                chunks.push(entries);
            }
            LogChunk::OutOfRange { .. } => panic!("nothing is purged in a fresh store"),
        }
    }
    store.close().await.expect("source closes");
    chunks
}

async fn settle(queued: Queued<ApplyAck>) {
    let ack = queued.answer().await.expect("chunk applies");
    assert_eq!(ack.skipped, 0, "a fresh replica has applied nothing");
}

fn catch_up(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let events = catch_up_events(CATCH_UP_ENTRIES);
    let chunks = runtime.block_on(source_log(&events));
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), CATCH_UP_ENTRIES, "every event is in the log");
    // The same events cut where the apply chunks are cut.
    let mut rest = events.as_slice();
    let parts: Vec<Vec<(RecordKey, &[u8])>> = chunks
        .iter()
        .map(|chunk| {
            let (part, after) = rest.split_at(chunk.len());
            rest = after;
            part.iter().map(|(key, value)| (key.clone(), value.as_slice())).collect()
        })
        .collect();
    let mut group = c.benchmark_group("storage_apply_catch_up");
    group.sample_size(10).measurement_time(Duration::from_secs(20)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(CATCH_UP_ENTRIES as u64));
    group.bench_function("reference_raw_rocksdb_same_chunks", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let reference = RawReference::open(dir.path()).expect("reference opens");
                for part in &parts {
                    reference.commit(part).expect("reference commits");
                }
                dir
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("apply", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = Store::open(StoreOptions::new(dir.path())).expect("replica opens");
                (dir, store, chunks.clone())
            },
            |(dir, store, chunks)| {
                runtime.block_on(async {
                    // As the puller does: the next chunk is queued before
                    // the last one's answer is awaited.
                    let mut in_flight = None;
                    for chunk in chunks {
                        let queued = store.queue_apply(chunk).await.expect("chunk queues");
                        if let Some(previous) = in_flight.replace(queued) {
                            settle(previous).await;
                        }
                    }
                    if let Some(last) = in_flight {
                        settle(last).await;
                    }
                });
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn authorization(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreOptions::new(dir.path())).expect("store opens");
    let (access, token, key) = runtime.block_on(async {
        let admin = Identity::parse("cdb://bench/client/admin").expect("an identity");
        let access = Access::open(store.clone(), admin).await.expect("reads access");
        let mut token = String::new();
        for i in 0..100 {
            let identity = format!("cdb://bench/client/app-{i}");
            access.add_grant(&identity, &format!("write:tenant-{i}")).await.expect("grants");
            let grants = [format!("write:tenant-{i}")];
            token = access.create_token(&format!("t{i}"), &grants, "bench").await.expect("makes").1;
        }
        let key = RowKey::new("tenant-99", "EVENTS", "m").at(None);
        let mut put = record(0);
        put.key = key.clone();
        store.put(put, None).await.expect("writes");
        (access, token, key)
    });
    let certificate =
        Caller::Verified(Arc::new(Identity::parse("cdb://bench/client/app-99").expect("identity")));
    let mut group = c.benchmark_group("authorization");
    group.bench_function("reference_get_256B", |b| {
        b.iter(|| runtime.block_on(store.get(key.clone(), ReadOptions::default())).expect("reads"))
    });
    group.bench_function("certificate", |b| {
        b.iter(|| {
            let principal = access.authenticate(&certificate, None).expect("known");
            principal.allows("tenant-99", Permission::Read).expect("allowed")
        })
    });
    group.bench_function("token", |b| {
        b.iter(|| {
            let principal = access.authenticate(&Caller::Anonymous, Some(&token)).expect("known");
            principal.allows("tenant-99", Permission::Read).expect("allowed")
        })
    });
    group.finish();
}

/// Events per tenant in the scan benchmark: what R3 reads per scan.
const SCAN_TENANT_EVENTS: usize = 200;
/// Tenants in the scan benchmark.
const SCAN_TENANTS: usize = 100;

/// A store (sealed or not) holding `SCAN_TENANTS` tenants of
/// `SCAN_TENANT_EVENTS` 256-byte random values each, closed and opened
/// again so every record is in a table file, as after a flush.
fn scan_store(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, sealed: bool) -> Store {
    let options = || StoreOptions {
        master_keys: sealed.then(|| Arc::new(consensusdb_seal::MasterKeys::generate())),
        ..StoreOptions::new(dir)
    };
    let first = options();
    let masters = first.master_keys.clone();
    let store = Store::open(first).expect("store opens");
    let mut rng = SmallRng::seed_from_u64(7);
    runtime.block_on(async {
        for tenant in 0..SCAN_TENANTS {
            let batch = (0..SCAN_TENANT_EVENTS)
                .map(|i| {
                    let mut value = vec![0u8; 256];
                    rng.fill_bytes(&mut value);
                    PutRecord {
                        key: RowKey::new(format!("t{tenant:04}"), "EVENTS", format!("m{}", i % 10))
                            .at(Some(TimeUuid::now())),
                        value,
                        compression: Compression::None,
                        ttl_ms: None,
                        if_absent: false,
                        client_key: None,
                    }
                })
                .collect();
            store.put_batch(batch, None).await.expect("batch written");
        }
        store.close().await.expect("store closes");
    });
    drop(store);
    Store::open(StoreOptions { master_keys: masters, ..options() }).expect("store opens again")
}

/// Reads every record of `tenant`, values included, as R3 does.
async fn scan_tenant(store: &Store, tenant: usize) -> usize {
    let query = ScanQuery {
        scope: ScanScope::Tenant { major: format!("t{tenant:04}") },
        limit: 10_000,
        page_token: None,
        read: ReadOptions::default(),
    };
    let mut pages = store.scan(query).expect("scan starts");
    let mut records = 0;
    while let Some(page) = pages.recv().await {
        records += page.expect("page").records.len();
    }
    assert_eq!(records, SCAN_TENANT_EVENTS);
    records
}

/// R3 and R1 inside the store: a tenant's scan with values, and the
/// newest record of one row with its value, sealed against the same reads
/// of a store in the clear (the reference, in the same run), so the ratio
/// is what opening sealed values costs, without the network, the client or
/// a loaded machine around it. Both stores hold the same records in table
/// files, so the reads meet the same shape of tree.
fn sealed_reads(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stores = [("reference_unsealed", false), ("sealed", true)].map(|(name, sealed)| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = scan_store(&runtime, dir.path(), sealed);
        (name, dir, store)
    });

    let mut group = c.benchmark_group("scan_tenant_200_values");
    group.sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(SCAN_TENANT_EVENTS as u64));
    for (name, _, store) in &stores {
        let mut tenant = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                tenant = (tenant + 1) % SCAN_TENANTS;
                runtime.block_on(scan_tenant(store, tenant))
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("get_recent_1_value");
    group.sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    for (name, _, store) in &stores {
        let mut row = 0;
        group.bench_function(*name, |b| {
            b.iter(|| {
                row = (row + 1) % (SCAN_TENANTS * 10);
                let row = RowKey::new(format!("t{:04}", row / 10), "EVENTS", format!("m{}", row % 10));
                let found = runtime.block_on(store.get_recent(row, None, ReadOptions::default()));
                let record = found.expect("read").expect("every row has records");
                assert_eq!(record.value.map(|value| value.len()), Some(256));
            })
        });
    }
    group.finish();

    for (_, _, store) in stores {
        runtime.block_on(store.close()).expect("store closes");
    }
}

/// Values one re-encryption iteration seals again.
const REENCRYPT_VALUES: usize = 1024;
/// Values per batch, as the re-encryption's own batches.
const REENCRYPT_BATCH: usize = 256;

/// Writes `REENCRYPT_VALUES` 256-byte values to `tenant`, in batches of
/// `REENCRYPT_BATCH`; returns how long that took.
async fn fill_tenant(store: &Store, tenant: &str) -> Duration {
    let start = Instant::now();
    for _ in 0..REENCRYPT_VALUES / REENCRYPT_BATCH {
        let batch = (0..REENCRYPT_BATCH)
            .map(|_| PutRecord {
                key: RowKey::new(tenant, "EVENTS", "m").at(Some(TimeUuid::now())),
                ..record(0)
            })
            .collect();
        store.put_batch(batch, None).await.expect("batch written");
    }
    start.elapsed()
}

/// Re-encrypts `tenant` to the end; returns how long that took.
async fn reencrypt_tenant(store: &Store, tenant: &str) -> Duration {
    let start = Instant::now();
    store.start_reencryption(tenant).await.expect("starts");
    loop {
        let progress = store.reencryption(tenant).expect("running");
        if progress.state != consensusdb_storage::ReencryptionState::Running {
            assert_eq!(progress.resealed, REENCRYPT_VALUES as u64, "{progress:?}");
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A re-encryption against writing the same values (the reference).
fn reencryption(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("reencrypt_1024_values");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(REENCRYPT_VALUES as u64));
    let dir = tempfile::tempdir().expect("temp dir");
    let masters = Some(Arc::new(consensusdb_seal::MasterKeys::generate()));
    let store =
        Store::open(StoreOptions { master_keys: masters, ..StoreOptions::new(dir.path()) }).expect("opens");
    let mut tenants = 0;
    let mut next_tenant = || {
        tenants += 1;
        format!("r{tenants:06}")
    };
    group.bench_function("reference_write_them_in_batches_of_256", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    spent += fill_tenant(&store, &next_tenant()).await;
                }
                spent
            })
        })
    });
    group.bench_function("reencrypt_after_a_rotation", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let tenant = next_tenant();
                    fill_tenant(&store, &tenant).await;
                    store.rotate_tenant_key(&tenant).await.expect("rotated");
                    spent += reencrypt_tenant(&store, &tenant).await;
                }
                spent
            })
        })
    });
    runtime.block_on(store.close()).expect("store closes");
    group.finish();
}

criterion_group!(benches, durable_puts, catch_up, authorization, sealed_reads, reencryption);
criterion_main!(benches);

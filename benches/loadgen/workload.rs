//! The workload of the peer harness (`shared/bench/peers/README.md`), so
//! ConsensusDB's figures sit next to Redis, PostgreSQL, NATS and etcd:
//!
//! - 1,000 tenants × 4 regions × 10 minor keys = 40,000 keys (`t0042`/`r1`/`m7`);
//! - event *i* at `ts = 1.7e15 µs + i × 100 µs`, with a UUIDv7 id for that
//!   millisecond (random bits) and its own 256-byte random payload, so
//!   nothing compresses;
//! - every 10th event goes to one of 100 hot keys (tenant `j × 10`, `r0`,
//!   `m0`), about 500 events each; the rest to a uniformly random key;
//! - an event's writer is chosen by a hash of its key, so one key's events
//!   are written in order by one writer.
//!
//! The generator is seeded (42) like the harness's; the harness uses
//! rand 0.8 and this rand 0.9, whose range sampling differs, so the keys
//! drawn are the same distribution, not the same sequence.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use consensusdb_types::{RecordKey, RowKey, TimeUuid};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

/// Tenants (`majorKey`).
pub const TENANTS: usize = 1000;
/// Regions per tenant.
pub const REGIONS: usize = 4;
/// Minor keys per region.
pub const MINORS: usize = 10;
/// Distinct rows written.
pub const KEYS: usize = TENANTS * REGIONS * MINORS;
/// Keys that receive every 10th event, so "the 100 newest" has 100 rows.
pub const HOT_KEYS: usize = 100;
/// Time of event 0, µs since the Unix epoch.
pub const BASE_TS_US: u64 = 1_700_000_000_000_000;
/// Time between consecutive events, µs; timestamps strictly increase.
pub const STEP_US: u64 = 100;
/// Bytes of every payload.
pub const PAYLOAD_BYTES: usize = 256;
/// The harness's seed.
const SEED: u64 = 42;

/// One event: which key, when, and its id.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Index into [`Workload::row`].
    pub key: u32,
    /// Its TimeUUID (v7, the millisecond of its timestamp).
    pub id: TimeUuid,
}

/// Every event of a load, with the row names and payloads they use.
pub struct Workload {
    /// The events, in timestamp order.
    pub events: Vec<Event>,
    payloads: Vec<u8>,
    rows: Vec<RowKey>,
}

impl Workload {
    /// The `events` events of the harness's workload.
    pub fn generate(events: usize) -> Self {
        let mut rng = SmallRng::seed_from_u64(SEED);
        let mut payloads = vec![0u8; events * PAYLOAD_BYTES];
        rng.fill_bytes(&mut payloads);
        let events = (0..events)
            .map(|i| {
                let key = if i % 10 == 0 { hot_key((i / 10) % HOT_KEYS) } else { rng.random_range(0..KEYS) };
                let mut random_bits = [0u8; 10];
                rng.fill_bytes(&mut random_bits);
                let ms = event_ts_us(i) / 1000;
                let uuid = uuid::Builder::from_unix_timestamp_millis(ms, &random_bits).into_uuid();
                let id = TimeUuid::from_uuid(uuid, "id").expect("uuid's v7 builder sets version and variant");
                Event { key: u32::try_from(key).expect("40,000 keys fit a u32"), id }
            })
            .collect();
        let rows = (0..KEYS).map(row_of).collect();
        Self { events, payloads, rows }
    }

    /// The payload of event `i`.
    pub fn payload(&self, i: usize) -> &[u8] {
        &self.payloads[i * PAYLOAD_BYTES..(i + 1) * PAYLOAD_BYTES]
    }

    /// The row of key index `key`.
    pub fn row(&self, key: u32) -> &RowKey {
        &self.rows[key as usize]
    }

    /// The record key of event `i`.
    pub fn record_key(&self, i: usize) -> RecordKey {
        let event = self.events[i];
        self.row(event.key).clone().at(Some(event.id))
    }

    /// Event indexes per writer: writer `w` gets the events whose key hashes
    /// to `w`, in timestamp order.
    pub fn partition(&self, writers: usize) -> Vec<Vec<usize>> {
        let mut parts = vec![Vec::with_capacity(self.events.len() / writers + 1); writers];
        for (i, event) in self.events.iter().enumerate() {
            parts[writer_of(event.key, writers)].push(i);
        }
        parts
    }
}

/// The timestamp of event `i`, µs since the Unix epoch.
pub fn event_ts_us(i: usize) -> u64 {
    BASE_TS_US + i as u64 * STEP_US
}

/// `ts_us` as a wall-clock time.
pub fn time_of_us(ts_us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(ts_us)
}

/// The key index of hot key `j`: tenant `j × 10`, region 0, minor 0.
pub fn hot_key(j: usize) -> usize {
    j * 10 * REGIONS * MINORS
}

/// The tenant (`majorKey`) named by index `t`.
pub fn tenant_name(t: usize) -> String {
    format!("t{t:04}")
}

/// The row of key index `k`: `t0042`/`r1`/`m7`.
pub fn row_of(k: usize) -> RowKey {
    RowKey::new(
        tenant_name(k / (REGIONS * MINORS)),
        format!("r{}", (k / MINORS) % REGIONS),
        format!("m{}", k % MINORS),
    )
}

fn writer_of(key: u32, writers: usize) -> usize {
    // `writers` is a small count, so the remainder always fits a usize.
    (mix(u64::from(key)) % writers as u64) as usize
}

/// SplitMix64's finaliser: the harness's hash from key to writer.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_harness_layout() {
        let workload = Workload::generate(2000);
        assert_eq!(row_of(hot_key(1)), RowKey::new("t0010", "r0", "m0"));
        assert_eq!(row_of(KEYS - 1), RowKey::new("t0999", "r3", "m9"));
        assert_eq!(workload.events[10].key as usize, hot_key(1));
        assert_eq!(workload.events[1].id.unix_ms(), 1_700_000_000_000);
        assert_eq!(workload.events[1999].id.unix_ms(), 1_700_000_000_199);
        assert_ne!(workload.payload(0), workload.payload(1));
        let parts = workload.partition(32);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 2000);
        assert!(parts.iter().all(|p| p.windows(2).all(|w| w[0] < w[1])));
    }
}

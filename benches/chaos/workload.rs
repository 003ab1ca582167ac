//! What the writers write: a small shared key space (so writes to one key
//! from different nodes conflict), untimed keys and timed keys (a pool of
//! TimeUUIDs that fresh v7 UUIDs keep replacing), unique values, and a mix
//! of puts, removals, batches, long-TTL puts and put-if-absent. Also the
//! bulk tenant, written once before the nemesis, that stalled readers scan.

use std::sync::Mutex;

use rand::Rng;
use rand::seq::IndexedRandom;

use crate::model::KeyId;

/// The tenant the writers write.
pub const TENANT: &str = "chaos";
/// The tenant written once at start, big enough that a reader that stops
/// reading stalls the scan (far beyond socket buffers and HTTP/2 windows).
pub const BULK_TENANT: &str = "chaos-bulk";
/// Records and value size of the bulk tenant: 24 MiB.
pub const BULK_RECORDS: usize = 6000;
pub const BULK_VALUE_BYTES: usize = 4096;
/// Records per batch when writing the bulk tenant.
pub const BULK_BATCH: usize = 100;

const REGIONS: [&str; 2] = ["r0", "r1"];
const MINORS: usize = 12;
/// TimeUUIDs shared by the writers.
const TIMED_POOL: usize = 24;
/// Chance a timed write takes a fresh TimeUUID (a new key) instead of
/// reusing one of the pool.
const FRESH_TIMED: f64 = 0.15;
/// Long enough that nothing expires during a run.
pub const LONG_TTL_MS: i64 = 3_600_000;

/// The keys writers choose from.
pub struct KeySpace {
    untimed: Vec<KeyId>,
    timed: Mutex<Vec<KeyId>>,
}

fn fresh_time() -> Vec<u8> {
    uuid::Uuid::now_v7().as_bytes().to_vec()
}

impl KeySpace {
    /// The untimed keys and a first pool of timed ones.
    pub fn new() -> Self {
        let untimed: Vec<KeyId> = REGIONS
            .iter()
            .flat_map(|region| {
                (0..MINORS).map(move |m| KeyId {
                    major: TENANT.to_string(),
                    region: (*region).to_string(),
                    minor: format!("m{m:02}"),
                    time: Vec::new(),
                })
            })
            .collect();
        let timed = (0..TIMED_POOL)
            .map(|i| KeyId { time: fresh_time(), ..untimed[i % untimed.len()].clone() })
            .collect();
        Self { untimed, timed: Mutex::new(timed) }
    }

    /// A key: untimed or timed, half and half.
    pub fn pick(&self, rng: &mut impl Rng) -> KeyId {
        if rng.random_bool(0.5) {
            return self.untimed.choose(rng).expect("the key space is not empty").clone();
        }
        let mut timed = self.timed.lock().expect("the key pool lock is never poisoned");
        let slot = rng.random_range(0..timed.len());
        if rng.random_bool(FRESH_TIMED) {
            let row = self.untimed.choose(rng).expect("the key space is not empty");
            timed[slot] = KeyId { time: fresh_time(), ..row.clone() };
        }
        timed[slot].clone()
    }

    /// `n` different keys.
    pub fn pick_distinct(&self, rng: &mut impl Rng, n: usize) -> Vec<KeyId> {
        let mut keys: Vec<KeyId> = Vec::with_capacity(n);
        while keys.len() < n {
            let key = self.pick(rng);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }
}

/// One put.
#[derive(Debug, Clone)]
pub struct Put {
    /// Where.
    pub key: KeyId,
    /// What (unique in the run).
    pub value: Vec<u8>,
    /// 0 or [`LONG_TTL_MS`].
    pub ttl_ms: i64,
    /// Put-if-absent.
    pub if_absent: bool,
}

/// One request a writer sends.
#[derive(Debug, Clone)]
pub enum Op {
    /// A single put (plain, long TTL or if-absent).
    Put(Put),
    /// A removal.
    Remove(KeyId),
    /// Several puts to different keys, one request, all or nothing.
    Batch(Vec<Put>),
}

/// Makes unique values: the writer's label, a sequence number and some
/// padding of random length.
pub struct Values {
    label: String,
    seq: u64,
}

impl Values {
    /// Values of the writer `label`.
    pub fn new(label: String) -> Self {
        Self { label, seq: 0 }
    }

    fn next(&mut self, rng: &mut impl Rng) -> Vec<u8> {
        self.seq += 1;
        let mut value = format!("{}#{}:", self.label, self.seq).into_bytes();
        let padding = rng.random_range(0..96);
        value.extend((0..padding).map(|_| rng.random_range(b'a'..=b'z')));
        value
    }
}

/// The next request: 40% plain puts, 15% removals, 15% batches of 2 to 5
/// keys, 15% puts with a 1-hour TTL and 15% put-if-absent.
pub fn next_op(rng: &mut impl Rng, keys: &KeySpace, values: &mut Values) -> Op {
    let roll: f64 = rng.random();
    if roll < 0.40 {
        let key = keys.pick(rng);
        Op::Put(put(rng, key, values, 0, false))
    } else if roll < 0.55 {
        Op::Remove(keys.pick(rng))
    } else if roll < 0.70 {
        let n = rng.random_range(2..=5);
        let keys = keys.pick_distinct(rng, n);
        Op::Batch(keys.into_iter().map(|key| put(rng, key, values, 0, false)).collect())
    } else if roll < 0.85 {
        let key = keys.pick(rng);
        Op::Put(put(rng, key, values, LONG_TTL_MS, false))
    } else {
        let ttl_ms = if rng.random_bool(0.5) { LONG_TTL_MS } else { 0 };
        let key = keys.pick(rng);
        Op::Put(put(rng, key, values, ttl_ms, true))
    }
}

fn put(rng: &mut impl Rng, key: KeyId, values: &mut Values, ttl_ms: i64, if_absent: bool) -> Put {
    Put { key, value: values.next(rng), ttl_ms, if_absent }
}

/// The bulk tenant's key `i`.
pub fn bulk_key(i: usize) -> KeyId {
    KeyId {
        major: BULK_TENANT.to_string(),
        region: "events".to_string(),
        minor: format!("e{i:05}"),
        time: Vec::new(),
    }
}

/// The bulk tenant's value `i`: 4 KiB, unique.
pub fn bulk_value(i: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut value = format!("bulk#{i}:").into_bytes();
    value.extend((value.len()..BULK_VALUE_BYTES).map(|_| rng.random::<u8>()));
    value
}

//! Phase records, shaped like the peer harness's `results.jsonl` so its
//! `summarize.py` tabulates ConsensusDB next to the peer systems, plus a
//! human line per phase on stderr.
//!
//! Every record has `system`, `label`, `phase`, `concurrency` and
//! `unix_time`; loads add `mode`, `events`, `acked_events`, `errors`,
//! `wall_s`, `events_per_s`, `latency_per_ack` and `resources`; reads add
//! `ops_per_s`, `events_per_op` and `latency_per_request`; `count` has
//! `stored_events`; `du` has `du_alloc_bytes` and `alloc_bytes_per_event`.
//! Extras of ours: `server_cpu_us_per_event` (or `_per_op`), and on
//! ConsensusDB's loads `raw_reference_events_per_s` and `ratio_vs_raw`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

/// Errors printed in full per phase; later ones are only counted.
const PRINTED_ERRORS: u64 = 5;

/// What one worker saw: the latency of each answered request and the
/// events those requests carried.
pub struct Tally {
    /// Latencies of answered requests.
    pub latency: Latencies,
    /// Events acknowledged (writes) or returned (reads).
    pub events: u64,
}

impl Tally {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self { latency: Latencies::new(), events: 0 }
    }

    /// Counts one request sent at `sent`: its latency and events when it
    /// was answered, otherwise a failure in `errors` (the first few of a
    /// phase are printed, prefixed with `what`).
    pub fn record<E: std::fmt::Display>(
        &mut self,
        outcome: Result<u64, E>,
        sent: Instant,
        errors: &AtomicU64,
        what: &str,
    ) {
        match outcome {
            Ok(events) => {
                self.latency.record(sent.elapsed());
                self.events += events;
            }
            Err(error) => {
                if errors.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
                    eprintln!("{what} error: {error}");
                }
            }
        }
    }

    /// Adds another worker's tally.
    pub fn merge(&mut self, other: &Tally) {
        self.latency.merge(&other.latency);
        self.events += other.events;
    }
}

/// Latencies in µs, from 1 µs to 2 minutes at 3 significant digits.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    const MAX_US: u64 = 120_000_000;

    /// An empty histogram.
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, Self::MAX_US, 3).expect("1 µs .. 2 min at 3 digits is valid"))
    }

    /// Records one latency (longer than 2 minutes counts as 2 minutes).
    pub fn record(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).clamp(1, Self::MAX_US);
        self.0.saturating_record(us);
    }

    /// Adds another worker's latencies.
    pub fn merge(&mut self, other: &Latencies) {
        self.0.add(&other.0).expect("histograms with the same bounds always add");
    }

    /// How many latencies were recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles, in the harness's `latency_*` shape.
    pub fn to_json(&self) -> Value {
        json!({
            "n": self.0.len(),
            "p50_us": self.0.value_at_quantile(0.50),
            "p90_us": self.0.value_at_quantile(0.90),
            "p99_us": self.0.value_at_quantile(0.99),
            "p999_us": self.0.value_at_quantile(0.999),
            "max_us": self.0.max(),
            "mean_us": (self.0.mean() * 10.0).round() / 10.0,
        })
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// How events are grouped into write requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// One event per request (`Put`).
    Single,
    /// This many events per request (`PutBatch`).
    Batch(usize),
}

impl WriteMode {
    /// The harness's `mode` value: `single` or `batch100`.
    pub fn name(self) -> String {
        match self {
            WriteMode::Single => "single".into(),
            WriteMode::Batch(size) => format!("batch{size}"),
        }
    }

    /// Events per request.
    pub fn events_per_request(self) -> usize {
        match self {
            WriteMode::Single => 1,
            WriteMode::Batch(size) => size,
        }
    }
}

/// What a load measured.
pub struct WriteMeasurement {
    /// How events were grouped.
    pub mode: WriteMode,
    /// Events the load tried to write.
    pub events: usize,
    /// Events whose request was acknowledged.
    pub acked: u64,
    /// Failed requests.
    pub errors: u64,
    /// From the first request to the last acknowledgement.
    pub wall_s: f64,
    /// Per acknowledged request.
    pub latency: Latencies,
    /// The `resources` object.
    pub resources: Value,
}

impl WriteMeasurement {
    /// Acknowledged events per second.
    pub fn events_per_s(&self) -> f64 {
        self.acked as f64 / self.wall_s
    }

    /// Server CPU time per acknowledged event, µs.
    pub fn server_cpu_us_per_event(&self) -> f64 {
        cpu_us_per(&self.resources, self.wall_s, self.acked)
    }
}

/// What a read phase measured.
pub struct ReadMeasurement {
    /// Lookups done (one per request here).
    pub ops: u64,
    /// Events the lookups returned.
    pub events_returned: u64,
    /// Failed requests.
    pub errors: u64,
    /// The phase's length, until the last request in flight returned.
    pub wall_s: f64,
    /// Per request.
    pub latency: Latencies,
    /// The `resources` object.
    pub resources: Value,
}

/// What a count of the stored events found.
pub struct CountMeasurement {
    /// Events the node holds.
    pub stored: u64,
    /// Events the load wrote.
    pub expected: u64,
    /// Failed scans, plus one if `stored != expected`.
    pub errors: u64,
    /// How long the count took.
    pub wall_s: f64,
}

/// Disk space of a data directory.
pub struct DiskUsage {
    /// Allocated bytes (`du`).
    pub alloc_bytes: u64,
    /// Apparent bytes (`du --apparent-size`).
    pub apparent_bytes: u64,
    /// A breakdown by kind of file.
    pub detail: Value,
}

/// Server CPU µs per unit of work, from a `resources` object.
fn cpu_us_per(resources: &Value, wall_s: f64, units: u64) -> f64 {
    let server_cpu_pct = resources["server_cpu_pct"].as_f64().unwrap_or(0.0);
    server_cpu_pct / 100.0 * wall_s * 1e6 / units.max(1) as f64
}

/// Who a record is about.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `consensusdb` or `rocksdb-raw`.
    pub system: &'static str,
    /// The setting, such as `consensusdb-sync`.
    pub label: String,
}

/// The record of a load. `raw` is the reference load of the same mode.
pub fn load_record(load: &WriteMeasurement, raw: Option<&WriteMeasurement>) -> Value {
    let mut record = json!({
        "mode": load.mode.name(),
        "events": load.events,
        "acked_events": load.acked,
        "errors": load.errors,
        "wall_s": load.wall_s,
        "events_per_s": load.events_per_s(),
        "latency_per_ack": load.latency.to_json(),
        "latency_note": match load.mode {
            WriteMode::Single => "latency of one acknowledged single-event write",
            WriteMode::Batch(_) => "latency of one acknowledged batch (all its events are acked together)",
        },
        "resources": load.resources,
        "server_cpu_us_per_event": load.server_cpu_us_per_event(),
    });
    if let Some(raw) = raw {
        record["raw_reference_events_per_s"] = json!(raw.events_per_s());
        record["ratio_vs_raw"] = json!(load.events_per_s() / raw.events_per_s());
    }
    record
}

/// The record of a read phase.
pub fn read_record(read: &ReadMeasurement) -> Value {
    json!({
        "mode": "single",
        "requests": read.latency.count(),
        "ops": read.ops,
        "events_returned": read.events_returned,
        "errors": read.errors,
        "wall_s": read.wall_s,
        "ops_per_s": read.ops as f64 / read.wall_s,
        "requests_per_s": read.latency.count() as f64 / read.wall_s,
        "events_per_s": read.events_returned as f64 / read.wall_s,
        "events_per_op": read.events_returned as f64 / read.ops.max(1) as f64,
        "latency_per_request": read.latency.to_json(),
        "resources": read.resources,
        "server_cpu_us_per_op": cpu_us_per(&read.resources, read.wall_s, read.ops),
    })
}

/// The record of a count.
pub fn count_record(count: &CountMeasurement) -> Value {
    json!({
        "stored_events": count.stored,
        "expected_events": count.expected,
        "errors": count.errors,
        "wall_s": count.wall_s,
        "detail": {},
    })
}

/// The record of a `du`, as the harness's `record_du` writes it.
pub fn du_record(usage: &DiskUsage, events: usize) -> Value {
    let per_event = |bytes: u64| (bytes as f64 / events.max(1) as f64 * 10.0).round() / 10.0;
    json!({
        "du_alloc_bytes": usage.alloc_bytes,
        "du_apparent_bytes": usage.apparent_bytes,
        "events_written": events,
        "alloc_bytes_per_event": per_event(usage.alloc_bytes),
        "apparent_bytes_per_event": per_event(usage.apparent_bytes),
        "detail": usage.detail,
    })
}

/// Writes records to stdout and appends them to the results file.
pub struct Recorder {
    file: File,
    concurrency: usize,
    errors: u64,
}

impl Recorder {
    /// Appends to `path`, creating it and its directory.
    pub fn open(path: &Path, concurrency: usize) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file, concurrency, errors: 0 })
    }

    /// Completes `fields` into a record of `phase` and writes it.
    pub fn emit(&mut self, subject: &Subject, phase: &str, fields: Value) -> std::io::Result<()> {
        let mut record = Map::new();
        record.insert("system".into(), json!(subject.system));
        record.insert("label".into(), json!(subject.label));
        record.insert("phase".into(), json!(phase));
        record.insert("concurrency".into(), json!(self.concurrency));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        record.insert("unix_time".into(), json!(now));
        if let Value::Object(fields) = fields {
            record.extend(fields);
        }
        let record = Value::Object(record);
        self.errors += record["errors"].as_u64().unwrap_or(0);
        eprintln!("{}", human_line(&record));
        let line = record.to_string();
        println!("{line}");
        writeln!(self.file, "{line}")
    }

    /// Errors of every record written so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }
}

/// One line a person reads: the figures that matter for the phase.
fn human_line(r: &Value) -> String {
    let name = format!(
        "{} {} {}",
        r["label"].as_str().unwrap_or(""),
        r["phase"].as_str().unwrap_or(""),
        r["mode"].as_str().unwrap_or("")
    );
    let name = name.trim_end();
    let errors = r["errors"].as_u64().unwrap_or(0);
    match r["phase"].as_str().unwrap_or("") {
        "load" => format!(
            "{name}: {} ev/s, p50 {} p99 {} ms, server CPU {:.1} µs/event, errors {errors}",
            thousands(r["events_per_s"].as_f64().unwrap_or(0.0)),
            ms(&r["latency_per_ack"]["p50_us"]),
            ms(&r["latency_per_ack"]["p99_us"]),
            r["server_cpu_us_per_event"].as_f64().unwrap_or(0.0),
        ),
        "r1" | "r2" | "r3" => format!(
            "{name}: {} ops/s, {:.1} events/op, p50 {} p99 {} ms, server CPU {:.1} µs/op, errors {errors}",
            thousands(r["ops_per_s"].as_f64().unwrap_or(0.0)),
            r["events_per_op"].as_f64().unwrap_or(0.0),
            ms(&r["latency_per_request"]["p50_us"]),
            ms(&r["latency_per_request"]["p99_us"]),
            r["server_cpu_us_per_op"].as_f64().unwrap_or(0.0),
        ),
        "count" => format!(
            "{name}: {} of {} events stored, errors {errors}",
            r["stored_events"], r["expected_events"]
        ),
        "catchup" | "bootstrap" => format!(
            "{name}: {} events at {} ev/s ({:.2}x the source's write rate)",
            r["events"],
            thousands(r["events_per_s"].as_f64().unwrap_or(0.0)),
            r["ratio_vs_source_writes"].as_f64().unwrap_or(0.0),
        ),
        "lag" => format!(
            "{name}: {} ev/s written to 1 of 3 nodes, replication lag p50 {} p99 {} ms, {:.2} entries received per event per replica, errors {errors}",
            thousands(r["achieved_rate"].as_f64().unwrap_or(0.0)),
            ms(&r["lag"]["p50_us"]),
            ms(&r["lag"]["p99_us"]),
            r["shipped"][0]["entries_received_per_event"].as_f64().unwrap_or(0.0),
        ),
        "du" => format!(
            "{name}: {:.1} MB allocated, {} bytes/event",
            r["du_alloc_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            r["alloc_bytes_per_event"]
        ),
        _ => format!("{name}: {r}"),
    }
}

/// `12.3k` from 10,000 on, whole numbers below (as `summarize.py` prints).
pub fn thousands(value: f64) -> String {
    if value >= 10_000.0 { format!("{:.1}k", value / 1000.0) } else { format!("{value:.0}") }
}

fn ms(us: &Value) -> String {
    format!("{:.2}", us.as_f64().unwrap_or(0.0) / 1000.0)
}

//! A look at the node logs after the run: bootstraps started, panics, and
//! the most frequent warnings and errors (digits masked, so one message
//! with different figures counts as one).

use std::collections::BTreeMap;
use std::path::Path;

/// What one node's log holds.
#[derive(Debug, Default)]
pub struct LogSummary {
    /// Bootstraps started (the bootstrap's own warning, not the readiness
    /// line that repeats its reason).
    pub bootstraps: usize,
    /// Lines of a panic.
    pub panics: usize,
    /// ERROR and WARN lines.
    pub errors: usize,
    pub warnings: usize,
    /// The most frequent ERROR and WARN messages, with their counts.
    pub top: Vec<(usize, String)>,
}

/// A log line without its timestamp, with digits masked, cut to 140 bytes.
fn shape(line: &str) -> String {
    let rest = line.split_once(' ').map_or(line, |(_, rest)| rest).trim_start();
    let masked: String = rest.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect();
    masked.chars().take(140).collect()
}

/// Reads the log at `path`.
pub fn summarize(path: &Path, top: usize) -> LogSummary {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut summary = LogSummary::default();
    let mut shapes: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        if line.contains("bootstrapping from a peer; client writes are refused") {
            summary.bootstraps += 1;
        }
        if line.contains("panicked") {
            summary.panics += 1;
        }
        let error = line.contains(" ERROR ");
        let warning = line.contains(" WARN ");
        summary.errors += usize::from(error);
        summary.warnings += usize::from(warning);
        if error || warning {
            *shapes.entry(shape(line)).or_default() += 1;
        }
    }
    let mut ranked: Vec<(usize, String)> = shapes.into_iter().map(|(shape, n)| (n, shape)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ranked.truncate(top);
    summary.top = ranked;
    summary
}

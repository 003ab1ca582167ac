//! Output of client commands: one JSON object per line, or a table.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use consensusdb_client::{Compression, Head, Key, StoredRecord};
use serde_json::{Map, Value, json};

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line (for scripts and `jq`).
    #[default]
    Json,
    /// An aligned table (for people).
    Table,
}

/// Longest value shown in a table cell; longer ones end in "…" (JSON
/// output always carries the whole value). Only record values are
/// shortened: a digest, an id or an error is shown whole, since two that
/// differ only past the cut would look the same.
const TABLE_VALUE_CHARS: usize = 48;
/// The columns whose cells are shortened.
const TABLE_SHORTENED: [&str; 2] = ["value", "value_base64"];

/// Fields left out of tables: exact for machines, noise for people (JSON
/// output keeps them).
const TABLE_HIDDEN: [&str; 2] = ["hlc", "origin"];

/// Where results go. Table rows are held until [`Output::finish`], which
/// needs every row to size the columns.
pub struct Output<W: Write> {
    format: Format,
    out: W,
    rows: Vec<Map<String, Value>>,
}

impl<W: Write> Output<W> {
    /// Results in `format` to `out`.
    pub fn new(format: Format, out: W) -> Self {
        Self { format, out, rows: Vec::new() }
    }

    /// The format in use.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Switches format (the shell's `format` command); pending rows are printed first.
    pub fn set_format(&mut self, format: Format) -> std::io::Result<()> {
        self.finish()?;
        self.format = format;
        Ok(())
    }

    /// A record read back.
    pub fn record(&mut self, record: &StoredRecord, head_only: bool) -> std::io::Result<()> {
        self.emit(record_json(&record.key, &record.head, (!head_only).then_some(record.value.as_slice())))
    }

    /// The head a write returned.
    pub fn head(&mut self, key: &Key, head: &Head) -> std::io::Result<()> {
        self.emit(record_json(key, head, None))
    }

    /// A free-form line of fields (batch results, page tokens).
    pub fn object(&mut self, object: Map<String, Value>) -> std::io::Result<()> {
        self.emit(object)
    }

    fn emit(&mut self, object: Map<String, Value>) -> std::io::Result<()> {
        match self.format {
            Format::Json => {
                serde_json::to_writer(&mut self.out, &object)?;
                writeln!(self.out)?;
                self.out.flush()
            }
            Format::Table => {
                self.rows.push(object);
                Ok(())
            }
        }
    }

    /// Prints held table rows.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let mut columns: Vec<&str> = Vec::new();
        for row in &rows {
            for name in row.keys() {
                if !columns.contains(&name.as_str()) && !TABLE_HIDDEN.contains(&name.as_str()) {
                    columns.push(name);
                }
            }
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|c| row.get(*c).map(|v| cell(v, TABLE_SHORTENED.contains(c))).unwrap_or_default())
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(c.len()))
            .collect();
        let line = |out: &mut W, values: &[String]| -> std::io::Result<()> {
            let padded: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            writeln!(out, "{}", padded.join("  ").trim_end())
        };
        line(&mut self.out, &columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>())?;
        for row in &cells {
            line(&mut self.out, row)?;
        }
        self.out.flush()
    }
}

/// A record's JSON form. Keys and times are text; a value is `value` when
/// it is UTF-8 and `value_base64` when it is not, so the field says which.
pub fn record_json(key: &Key, head: &Head, value: Option<&[u8]>) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("tenant".into(), json!(key.row.major));
    object.insert("region".into(), json!(key.row.region));
    object.insert("minor".into(), json!(key.row.minor));
    object.insert("time".into(), key.time.map_or(Value::Null, |t| json!(t.to_string())));
    object.insert("written".into(), json!(rfc3339_ms(head.stamp.physical_ms())));
    object.insert("expires".into(), head.expires_at_ms.map_or(Value::Null, |ms| json!(rfc3339_ms(ms))));
    object.insert("seq".into(), json!(head.seq));
    object.insert("hlc".into(), json!(head.stamp.hlc));
    object.insert(
        "origin".into(),
        json!(format!("{:032x}/{}", head.stamp.origin.node.0, head.stamp.origin.incarnation)),
    );
    object.insert("stored_size".into(), json!(head.stored_size));
    object.insert("compression".into(), json!(compression_name(head.compression)));
    if head.tombstone {
        object.insert("tombstone".into(), json!(true));
    }
    if let Some(value) = value {
        match std::str::from_utf8(value) {
            Ok(text) => object.insert("value".into(), json!(text)),
            Err(_) => object.insert("value_base64".into(), json!(BASE64.encode(value))),
        };
    }
    object
}

/// The name used on the command line and in output.
pub fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "none",
        Compression::Lz4 => "lz4",
        Compression::Snappy => "snappy",
    }
}

/// Unix milliseconds as RFC 3339 with milliseconds.
pub(crate) fn rfc3339_ms(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

/// A JSON value as a table cell, shortened if `shorten` and long.
fn cell(value: &Value, shorten: bool) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let text = text.replace(['\n', '\r', '\t'], " ");
    if shorten && text.chars().count() > TABLE_VALUE_CHARS {
        let mut short: String = text.chars().take(TABLE_VALUE_CHARS - 1).collect();
        short.push('…');
        short
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensusdb_client::{RowKey, Stamp, TimeUuid};
    use consensusdb_types::{NodeId, Origin};

    fn head() -> Head {
        Head {
            stamp: Stamp {
                hlc: 1_700_000_000_000 << 16,
                origin: Origin { node: NodeId(0xab), incarnation: 1 },
            },
            seq: 7,
            expires_at_ms: None,
            stored_size: 3,
            compression: Compression::Lz4,
            tombstone: false,
            seal: None,
        }
    }

    #[test]
    fn text_values_are_text_and_binary_values_are_marked_base64() {
        let key = RowKey::new("acme", "ACCOUNT", "balance").at(None);
        let text = record_json(&key, &head(), Some(b"100"));
        assert_eq!(text["value"], "100");
        assert_eq!(text["time"], Value::Null);
        assert_eq!(text["written"], "2023-11-14T22:13:20.000Z");
        let binary = record_json(&key, &head(), Some(&[0xff, 0x00]));
        assert_eq!(binary["value_base64"], "/wA=");
        assert!(binary.get("value").is_none());
    }

    #[test]
    fn tables_align_columns_and_mark_shortened_values() {
        let mut out = Output::new(Format::Table, Vec::new());
        let key = RowKey::new("acme", "ACCOUNT", "balance").at(Some(TimeUuid::now()));
        out.record(&StoredRecord { key: key.clone(), head: head(), value: b"1".to_vec() }, false).unwrap();
        let long = "x".repeat(100);
        out.record(&StoredRecord { key, head: head(), value: long.into_bytes() }, false).unwrap();
        out.finish().unwrap();
        let text = String::from_utf8(out.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TENANT  REGION   MINOR"), "{}", lines[0]);
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[1].find("acme"), lines[2].find("acme"));
    }
}

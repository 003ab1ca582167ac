//! Output of client commands: one JSON object per line, or a table.
//!
//! Records, heads and writes are printed in the JSON gateway's shapes
//! (`consensusdb_api::http::model`), built by the same code, so a record
//! reads the same from `curl` and from the CLI. A table shows the same
//! fields under short flat column names.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use consensusdb_api::http::model::{HeadJson, KeyJson, RecordJson, ValueEncoding, ValueOutput, WriteJson};
use consensusdb_client::{Head, RecordKey, StoredRecord};
use serde::Serialize;
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

    /// A record read back, in the gateway's `RecordJson` shape (`value`
    /// and `encoding` null when `head_only`).
    pub fn record(&mut self, record: StoredRecord, head_only: bool) -> std::io::Result<()> {
        let value = (!head_only).then_some(record.value);
        self.emit_record(&record_json(&record.key, &record.head, value))
    }

    /// What a write left at `key`, in the gateway's `WriteJson` shape.
    pub fn write(&mut self, key: &RecordKey, head: &Head) -> std::io::Result<()> {
        let write = WriteJson { key: KeyJson::from(key), head: head_json(head) };
        match self.format {
            Format::Json => self.print(&write),
            Format::Table => self.hold(table_row(&write.key, &write.head, None)),
        }
    }

    /// A free-form line of fields (batch results, page tokens).
    pub fn object(&mut self, object: Map<String, Value>) -> std::io::Result<()> {
        match self.format {
            Format::Json => self.print(&object),
            Format::Table => self.hold(object),
        }
    }

    fn emit_record(&mut self, record: &RecordJson) -> std::io::Result<()> {
        match self.format {
            Format::Json => self.print(record),
            Format::Table => {
                let value = record.value.as_deref().zip(record.encoding);
                self.hold(table_row(&record.key, &record.head, value))
            }
        }
    }

    fn print(&mut self, line: &impl Serialize) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, line)?;
        writeln!(self.out)?;
        self.out.flush()
    }

    fn hold(&mut self, row: Map<String, Value>) -> std::io::Result<()> {
        self.rows.push(row);
        Ok(())
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
                if !columns.contains(&name.as_str()) {
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

/// A record in the gateway's shape; `value` is `None` for a head-only
/// read. A value is text when it is UTF-8 and base64 otherwise, and
/// `encoding` says which.
fn record_json(key: &RecordKey, head: &Head, value: Option<Vec<u8>>) -> RecordJson {
    RecordJson::from_parts(key, head_json(head), value, ValueOutput::Auto)
}

/// The SDK's head in the gateway's `HeadJson` shape.
fn head_json(head: &Head) -> HeadJson {
    HeadJson::new(
        &head.stamp,
        head.seq,
        head.expires_at_ms,
        head.stored_size,
        head.compression,
        head.tombstone,
        head.client_key,
    )
}

/// A record's table row, from its JSON shape: the key's parts, times as
/// RFC 3339, and the value under `value` or `value_base64` as its encoding
/// says. The exact `hlc` and `origin` are left to JSON output: machines
/// need them, people rarely do.
fn table_row(key: &KeyJson, head: &HeadJson, value: Option<(&str, ValueEncoding)>) -> Map<String, Value> {
    let mut row = Map::new();
    row.insert("tenant".into(), json!(key.major_key));
    row.insert("region".into(), json!(key.region));
    row.insert("minor".into(), json!(key.minor_key));
    row.insert("time".into(), json!(key.time_uuid));
    row.insert("written".into(), json!(rfc3339_ms(head.write_time_ms)));
    row.insert("expires".into(), json!(head.expires_at_ms.map(rfc3339_ms)));
    row.insert("seq".into(), json!(head.seq));
    row.insert("stored_size".into(), json!(head.stored_size));
    row.insert("compression".into(), json!(head.compression));
    // Only removals get the column, so a table of live records has none.
    if head.tombstone {
        row.insert("tombstone".into(), json!(true));
    }
    match value {
        Some((text, ValueEncoding::Utf8)) => row.insert("value".into(), json!(text)),
        Some((base64, ValueEncoding::Base64)) => row.insert("value_base64".into(), json!(base64)),
        None => None,
    };
    row
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
    use consensusdb_client::{Compression, NodeId, Origin, RowKey, Stamp, TimeUuid};

    /// A head as the SDK reads it from a node's answer: the SDK's `Head`
    /// is non-exhaustive, so only the SDK builds one.
    fn head() -> Head {
        let stored = consensusdb_types::Head {
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
            client_key: None,
        };
        Head::try_from(&consensusdb_proto::v1::Head::from(&stored)).unwrap()
    }

    #[test]
    fn records_print_in_the_gateways_shape() {
        let key = RowKey::new("acme", "ACCOUNT", "balance").at(None);
        let text = serde_json::to_value(record_json(&key, &head(), Some(b"100".to_vec()))).unwrap();
        assert_eq!(
            text,
            json!({
                "key": {"major_key": "acme", "region": "ACCOUNT", "minor_key": "balance", "time_uuid": null},
                "head": {
                    "hlc": (1_700_000_000_000_u64 << 16).to_string(),
                    "origin": {"node_id": format!("{:032x}", 0xab), "incarnation": 1},
                    "seq": 7,
                    "write_time_ms": 1_700_000_000_000_u64,
                    "expires_at_ms": null,
                    "stored_size": 3,
                    "compression": "lz4",
                    "tombstone": false,
                },
                "value": "100",
                "encoding": "utf8",
            })
        );
        let binary = serde_json::to_value(record_json(&key, &head(), Some(vec![0xff, 0x00]))).unwrap();
        assert_eq!((&binary["value"], &binary["encoding"]), (&json!("/wA="), &json!("base64")));
        let head_only = serde_json::to_value(record_json(&key, &head(), None)).unwrap();
        assert_eq!((&head_only["value"], &head_only["encoding"]), (&Value::Null, &Value::Null));
    }

    #[test]
    fn tables_align_columns_and_mark_shortened_values() {
        let mut out = Output::new(Format::Table, Vec::new());
        let key = RowKey::new("acme", "ACCOUNT", "balance").at(Some(TimeUuid::now()));
        out.emit_record(&record_json(&key, &head(), Some(b"1".to_vec()))).unwrap();
        out.emit_record(&record_json(&key, &head(), Some("x".repeat(100).into_bytes()))).unwrap();
        out.finish().unwrap();
        let text = String::from_utf8(out.out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TENANT  REGION   MINOR"), "{}", lines[0]);
        assert!(lines[1].contains("2023-11-14T22:13:20.000Z"), "written time is readable: {}", lines[1]);
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[1].find("acme"), lines[2].find("acme"));
    }
}

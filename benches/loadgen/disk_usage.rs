//! `du` of a data directory, after `sync`, as the peer harness's
//! `record_du` takes it: allocated and apparent bytes, with a breakdown of
//! RocksDB's table files (`*.sst`) and write-ahead log (`*.log`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::json;

use crate::report::DiskUsage;

/// Bytes of the files of one kind.
#[derive(Default)]
struct Tally {
    alloc: u64,
    apparent: u64,
}

impl Tally {
    fn add(&mut self, metadata: &std::fs::Metadata) {
        // st_blocks is in 512-byte units whatever the filesystem's block size.
        self.alloc += metadata.blocks() * 512;
        self.apparent += metadata.len();
    }
}

/// Flushes dirty pages (so allocation is final, as `du` after `sync` sees
/// it), then measures `dir`. Blocking: call it off the async reactor.
pub fn measure(dir: &Path) -> std::io::Result<DiskUsage> {
    // A failed `sync` only makes the figure less settled, not wrong.
    if let Err(error) = std::process::Command::new("sync").status() {
        eprintln!("du: could not run sync ({error}); measuring anyway");
    }
    let (mut total, mut tables, mut wal) = (Tally::default(), Tally::default(), Tally::default());
    let mut pending = vec![dir.to_path_buf()];
    total.add(&std::fs::symlink_metadata(dir)?);
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            total.add(&metadata);
            let path = entry.path();
            if metadata.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "sst") {
                tables.add(&metadata);
            } else if path.extension().is_some_and(|e| e == "log") {
                wal.add(&metadata);
            }
        }
    }
    Ok(DiskUsage {
        alloc_bytes: total.alloc,
        apparent_bytes: total.apparent,
        detail: json!({
            "sst_alloc_bytes": tables.alloc,
            "wal_alloc_bytes": wal.alloc,
            "other_alloc_bytes": total.alloc - tables.alloc - wal.alloc,
        }),
    })
}

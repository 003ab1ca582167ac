//! Streaming a scan in chunks bounded by bytes.

use std::ops::ControlFlow;

use tokio::sync::mpsc;

use crate::page_token;
use crate::reads::{KeyRange, PageBuilder, SnapshotReader};
use crate::{Page, StorageError};

/// How a scan is cut into messages.
pub(crate) struct ScanChunks {
    /// Most records in total.
    pub(crate) limit: usize,
    /// A chunk is sent before it would pass this many bytes.
    pub(crate) chunk_bytes: usize,
}

impl ScanChunks {
    /// Walks `range` and sends chunks to `sender` until the range or the
    /// limit is exhausted, or the receiver is gone. The last chunk carries
    /// the page token if the limit stopped the scan.
    pub(crate) fn stream(
        &self,
        reader: &SnapshotReader<'_>,
        range: &KeyRange,
        page_token: Option<&[u8]>,
        sender: &mpsc::Sender<Result<Page, StorageError>>,
    ) -> Result<(), StorageError> {
        let resume =
            page_token.map(|token| page_token::decode(token, &range.lower, &range.upper)).transpose()?;
        let mut chunk = PageBuilder::new(self.chunk_bytes);
        let mut taken = 0;
        let mut receiver_gone = false;
        let more = reader.walk(range, false, resume, |record, key| {
            if !chunk.fits(&record, key) {
                let full = Page { records: chunk.take(), next_page_token: None };
                if sender.blocking_send(Ok(full)).is_err() {
                    receiver_gone = true;
                    return ControlFlow::Break(());
                }
            }
            chunk.push(record, key);
            taken += 1;
            if taken >= self.limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })?;
        if receiver_gone {
            return Ok(());
        }
        let last = chunk.finish(more);
        if !last.records.is_empty() || last.next_page_token.is_some() {
            // A closed receiver means the client went away; nothing to do.
            let _ = sender.blocking_send(Ok(last));
        }
        Ok(())
    }
}

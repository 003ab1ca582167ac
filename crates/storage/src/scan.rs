//! Streaming a scan in chunks bounded by bytes.

use std::ops::ControlFlow;

use tokio::sync::mpsc;

use crate::page_token;
use crate::reads::{KeyRange, SnapshotReader};
use crate::{Page, StorageError};

/// How a scan is cut into messages.
pub(crate) struct ScanChunks {
    /// Most records in total.
    pub(crate) limit: usize,
    /// A chunk is sent once it holds about this many bytes.
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
        let mut chunk = Page::default();
        let mut chunk_size = 0;
        let mut sent = 0;
        let mut last_key = Vec::new();
        let mut receiver_gone = false;
        let more = reader.walk(range, false, resume, |record, key| {
            chunk_size += record.response_size(key.len());
            chunk.records.push(record);
            sent += 1;
            if sent >= self.limit {
                last_key = key.to_vec();
                return ControlFlow::Break(());
            }
            if chunk_size >= self.chunk_bytes {
                chunk_size = 0;
                if sender.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                    receiver_gone = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
        if receiver_gone {
            return Ok(());
        }
        chunk.next_page_token = more.then(|| page_token::encode(&last_key));
        if !chunk.records.is_empty() || chunk.next_page_token.is_some() {
            // A closed receiver means the client went away; nothing to do.
            let _ = sender.blocking_send(Ok(chunk));
        }
        Ok(())
    }
}

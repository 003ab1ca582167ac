//! Streaming a scan in chunks bounded by bytes.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::page_token;
use crate::reads::{KeyRange, PageBuilder, SnapshotReader};
use crate::{Page, StorageError};

/// How long a scan waits for a client to take its next chunk before giving
/// up, so a stalled client cannot hold a blocking thread and a snapshot.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How a scan is cut into messages, and where they go.
pub(crate) struct ScanChunks {
    /// Most records in total.
    pub(crate) limit: usize,
    /// A chunk is sent before it would pass this many bytes.
    pub(crate) chunk_bytes: usize,
    /// To wait on the channel with a timeout from the blocking thread.
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) sender: mpsc::Sender<Result<Page, StorageError>>,
}

impl ScanChunks {
    /// Walks `range` and sends chunks until the range or the limit is
    /// exhausted, or the receiver is gone. The last chunk carries
    /// the page token if the limit stopped the scan.
    pub(crate) fn stream(
        &self,
        reader: &SnapshotReader<'_>,
        range: &KeyRange,
        page_token: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let resume =
            page_token.map(|token| page_token::decode(token, &range.lower, &range.upper)).transpose()?;
        let mut chunk = PageBuilder::new(self.chunk_bytes);
        let mut taken = 0;
        let mut receiver_gone = false;
        let more = reader.walk(range, false, resume, |record, key| {
            if !chunk.fits(&record, key) {
                let full = Page { records: chunk.take(), next_page_token: None };
                if !self.send(Ok(full)) {
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
            self.send(Ok(last));
        }
        Ok(())
    }

    /// Sends one message; `false` if the client went away or stalled.
    pub(crate) fn send(&self, message: Result<Page, StorageError>) -> bool {
        let sent = self.runtime.block_on(tokio::time::timeout(STALL_TIMEOUT, self.sender.send(message)));
        if sent.is_err() {
            tracing::info!("scan abandoned: the client took no chunk for {STALL_TIMEOUT:?}");
        }
        matches!(sent, Ok(Ok(())))
    }
}

//! Streaming a scan in chunks bounded by bytes.
//!
//! The scan runs on a blocking thread ([`ScanChunks`]) and hands chunks to
//! the request's task through a small channel ([`ScanStream`]). The last
//! message is always explicit: the final chunk, or the error that stopped
//! the scan. A channel that closes without either means the scan was cut
//! short (its client stopped reading, the node is stopping, the thread
//! died), and the stream then ends in [`StorageError::ScanCutShort`] with
//! a page token to resume from, never as if the scan were complete.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use consensusdb_types::key_codec::encode_key;
use tokio::sync::{mpsc, watch};

use crate::page_token;
use crate::reads::{PageBuilder, SnapshotReader};
use crate::value_cursor::KeyRange;
use crate::{Page, StorageError};

/// What the scan thread sends.
#[derive(Debug)]
enum ScanMessage {
    /// A chunk; more follow.
    Chunk(Page),
    /// The last chunk (maybe empty, maybe with the token to continue
    /// after the limit).
    Last(Page),
    /// The scan failed; nothing follows.
    Failed(StorageError),
}

/// Why a scan thread gave up, shared with its [`ScanStream`].
type CutReason = Arc<Mutex<Option<String>>>;

/// The receiving end of a scan: its chunks in key order, then `None` once
/// the scan is complete (the last chunk carries a page token when the
/// limit stopped it). A scan that stops early for any other reason ends
/// with an error instead.
#[derive(Debug)]
pub struct ScanStream {
    receiver: mpsc::Receiver<ScanMessage>,
    cut_reason: CutReason,
    /// The token that resumes after the last record handed out.
    resume_token: Option<Vec<u8>>,
    done: bool,
}

impl ScanStream {
    /// The next chunk, the error that ended the scan, or `None` after the
    /// last chunk of a complete scan.
    pub async fn recv(&mut self) -> Option<Result<Page, StorageError>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`ScanStream::recv`] for code that polls (a `Stream` adapter).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Page, StorageError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Poll::Ready(message) = self.receiver.poll_recv(cx) else { return Poll::Pending };
        let item = match message {
            Some(ScanMessage::Chunk(page)) => {
                self.remember_last(&page);
                Ok(page)
            }
            Some(ScanMessage::Last(page)) => {
                self.done = true;
                if page.records.is_empty() && page.next_page_token.is_none() {
                    return Poll::Ready(None);
                }
                Ok(page)
            }
            Some(ScanMessage::Failed(error)) => {
                self.done = true;
                Err(error)
            }
            None => {
                self.done = true;
                let reason = self.cut_reason.lock().unwrap_or_else(PoisonError::into_inner).take();
                Err(StorageError::ScanCutShort {
                    reason: reason.unwrap_or_else(|| "the scan stopped unexpectedly".into()),
                    resume_token: self.resume_token.take(),
                })
            }
        };
        Poll::Ready(Some(item))
    }

    fn remember_last(&mut self, page: &Page) {
        if let Some(last) = page.records.last() {
            self.resume_token = Some(page_token::encode(&encode_key(&last.key)));
        }
    }

    /// Whether the scan thread has given up on this stream's reader, so a
    /// test can wait for that rather than sleep past the stall timeout.
    #[cfg(test)]
    pub(crate) fn given_up(&self) -> bool {
        self.cut_reason.lock().unwrap_or_else(PoisonError::into_inner).is_some()
    }
}

/// How a scan is cut into messages, and where they go.
pub(crate) struct ScanChunks {
    /// Most records in total.
    pub(crate) limit: usize,
    /// A chunk is sent before it would pass this many bytes.
    pub(crate) chunk_bytes: usize,
    /// How long to wait for the client to take a chunk before giving up,
    /// so a stalled client cannot hold a blocking thread and a snapshot.
    pub(crate) stall_timeout: Duration,
    /// To wait on the channel with a timeout from the blocking thread.
    pub(crate) runtime: tokio::runtime::Handle,
    /// Set when the store closes: the scan stops at its next chunk.
    pub(crate) closing: watch::Receiver<bool>,
    sender: mpsc::Sender<ScanMessage>,
    cut_reason: CutReason,
}

impl ScanChunks {
    /// A producer and the stream its client reads. `page_token` is where
    /// the scan starts: until a record is sent, a cut scan resumes there.
    pub(crate) fn channel(
        limit: usize,
        chunk_bytes: usize,
        stall_timeout: Duration,
        runtime: tokio::runtime::Handle,
        closing: watch::Receiver<bool>,
        page_token: Option<Vec<u8>>,
    ) -> (Self, ScanStream) {
        let (sender, receiver) = mpsc::channel(2);
        let cut_reason = CutReason::default();
        let stream =
            ScanStream { receiver, cut_reason: cut_reason.clone(), resume_token: page_token, done: false };
        (Self { limit, chunk_bytes, stall_timeout, runtime, closing, sender, cut_reason }, stream)
    }

    /// Walks `range` and sends chunks until the range or the limit is
    /// exhausted, or the client is gone. The last chunk carries the page
    /// token if the limit stopped the scan; an error is sent as the last
    /// message.
    pub(crate) fn run(self, reader: &SnapshotReader<'_>, range: &KeyRange, page_token: Option<&[u8]>) {
        if let Err(error) = self.stream(reader, range, page_token) {
            self.send(ScanMessage::Failed(error));
        }
    }

    fn stream(
        &self,
        reader: &SnapshotReader<'_>,
        range: &KeyRange,
        page_token: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let resume =
            page_token.map(|token| page_token::decode(token, &range.lower, &range.upper)).transpose()?;
        let mut chunk = PageBuilder::new(self.chunk_bytes);
        let mut taken = 0;
        let mut cut = false;
        let more = reader.walk(range, false, resume, |record, key| {
            if !chunk.fits(&record, key) {
                let full = Page { records: chunk.take(), next_page_token: None };
                if !self.send(ScanMessage::Chunk(full)) {
                    cut = true;
                    return ControlFlow::Break(());
                }
            }
            chunk.push(record, key);
            taken += 1;
            if taken >= self.limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })?;
        if !cut {
            self.send(ScanMessage::Last(chunk.finish(more)));
        }
        Ok(())
    }

    /// Sends one message; `false` if the client went away, stalled, or the
    /// node is stopping (the reason is left for the stream to report).
    fn send(&self, message: ScanMessage) -> bool {
        let mut closing = self.closing.clone();
        let outcome = self.runtime.block_on(async {
            tokio::select! {
                sent = self.sender.send(message) => match sent {
                    Ok(()) => None,
                    // The client dropped the stream: no one to tell.
                    Err(_) => Some(None),
                },
                () = tokio::time::sleep(self.stall_timeout) => Some(Some(format!(
                    "its client took nothing for {} s",
                    self.stall_timeout.as_secs_f64()
                ))),
                _ = closing.wait_for(|closing| *closing) => Some(Some("the node is shutting down".into())),
            }
        });
        match outcome {
            None => true,
            Some(reason) => {
                if let Some(reason) = reason {
                    tracing::info!(%reason, "scan cut short");
                    *self.cut_reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
                }
                false
            }
        }
    }
}

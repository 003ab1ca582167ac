//! The stalled reader: scans the bulk tenant on a node, takes one chunk,
//! stops reading for longer than the node's scan stall timeout, then
//! reads the rest. The node must have given the scan up: the stream ends
//! in UNAVAILABLE with a page token to continue from, never in a clean
//! end, unless the whole scan had already been sent before the stall. A
//! cut scan is resumed from its token, and the records of both parts
//! together must be the whole tenant, each once.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use consensusdb_proto::status::PAGE_TOKEN_METADATA;

use crate::grpc;
use crate::model::KeyId;
use crate::workload::BULK_TENANT;

/// Bound on the whole reader, stall included.
const LIMIT: Duration = Duration::from_secs(60);

/// How a stalled scan ended.
#[derive(Debug)]
pub enum Stalled {
    /// Cut with UNAVAILABLE after `received` records; resuming from the
    /// token gave the rest (`complete`: every record, each once).
    Cut { received: usize, complete: Result<(), String> },
    /// Ended cleanly with every record: it had been sent before the stall.
    Complete { received: usize },
    /// Ended cleanly with records missing: a cut scan that looks complete.
    Truncated { received: usize },
    /// Failed otherwise (the node refused the scan, a connection broke).
    Failed(String),
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stalled::Cut { received, complete: Ok(()) } => {
                write!(f, "cut after {received} records (UNAVAILABLE), resumed whole from its token")
            }
            Stalled::Cut { received, complete: Err(why) } => write!(f, "cut after {received} records: {why}"),
            Stalled::Complete { received } => {
                write!(f, "complete ({received} records sent before the stall)")
            }
            Stalled::Truncated { received } => write!(f, "ended cleanly with only {received} records"),
            Stalled::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Runs one stalled reader on `addr`, stalling for `stall`; the tenant
/// holds `expected` records.
pub async fn read(addr: SocketAddr, expected: usize, stall: Duration) -> Stalled {
    match tokio::time::timeout(LIMIT, read_unbounded(addr, expected, stall)).await {
        Ok(outcome) => outcome,
        Err(_) => Stalled::Failed(format!("did not end within {LIMIT:?}")),
    }
}

async fn read_unbounded(addr: SocketAddr, expected: usize, stall: Duration) -> Stalled {
    let mut client = match grpc::scanner(addr).await {
        Ok(client) => client,
        Err(error) => return Stalled::Failed(format!("connecting: {error}")),
    };
    let mut stream = match client.scan_tenant(grpc::scan_request(BULK_TENANT, Vec::new())).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Stalled::Failed(format!("scan refused: {status}")),
    };
    let mut keys = BTreeSet::new();
    let mut received = 0;
    let mut stalled = false;
    let ended = loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                received += chunk.records.len();
                keys.extend(chunk.records.iter().filter_map(|r| r.key.as_ref()).map(KeyId::from_proto));
                if !stalled {
                    stalled = true;
                    tokio::time::sleep(stall).await;
                }
            }
            Ok(None) => break Ok(()),
            Err(status) => break Err(status),
        }
    };
    match ended {
        Ok(()) if received == expected => Stalled::Complete { received },
        Ok(()) => Stalled::Truncated { received },
        Err(status) if status.code() == tonic::Code::Unavailable => {
            let token = status.metadata().get_bin(PAGE_TOKEN_METADATA).and_then(|v| v.to_bytes().ok());
            let complete = match token {
                None => Err(format!("cut without a page token: {status}")),
                Some(token) => resume(&mut client, token.to_vec(), keys, received, expected).await,
            };
            Stalled::Cut { received, complete }
        }
        Err(status) => Stalled::Failed(format!("after {received} records: {status}")),
    }
}

/// Reads the rest of the tenant from `token`; checks that with the `keys`
/// already received it is every record, each once.
async fn resume(
    client: &mut grpc::Records,
    token: Vec<u8>,
    mut keys: BTreeSet<KeyId>,
    mut received: usize,
    expected: usize,
) -> Result<(), String> {
    let mut page_token = token;
    loop {
        let mut stream = client
            .scan_tenant(grpc::scan_request(BULK_TENANT, std::mem::take(&mut page_token)))
            .await
            .map_err(|s| format!("resuming: {s}"))?
            .into_inner();
        while let Some(chunk) = stream.message().await.map_err(|s| format!("resuming: {s}"))? {
            received += chunk.records.len();
            keys.extend(chunk.records.iter().filter_map(|r| r.key.as_ref()).map(KeyId::from_proto));
            if !chunk.next_page_token.is_empty() {
                page_token = chunk.next_page_token;
            }
        }
        if page_token.is_empty() {
            break;
        }
    }
    if received == expected && keys.len() == expected {
        Ok(())
    } else {
        Err(format!("cut and resumed: {received} records, {} distinct, of {expected}", keys.len()))
    }
}

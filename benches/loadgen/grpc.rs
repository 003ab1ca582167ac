//! The gRPC requests the phases send, on the generated tonic client (as the
//! peer harness uses each system's native client).

use std::net::SocketAddr;
use std::time::Duration;

use consensusdb_proto::v1::records_client::RecordsClient;
use consensusdb_proto::v1::{self, get_range_request::Window};
use consensusdb_types::{RowKey, TimeUuid};
use tonic::transport::Channel;

use crate::workload::Workload;

/// A client on one HTTP/2 connection; clones share the connection.
pub type Client = RecordsClient<Channel>;

/// Bound on one request, so a stuck node fails the run instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `conns` connections to `addr`; workers share them round-robin.
pub async fn connect(addr: SocketAddr, conns: usize) -> Result<Vec<Client>, tonic::transport::Error> {
    let endpoint =
        crate::security::get().endpoint(addr).connect_timeout(Duration::from_secs(5)).timeout(CALL_TIMEOUT);
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        clients.push(RecordsClient::new(endpoint.connect().await?));
    }
    Ok(clients)
}

/// The put of event `i`, uncompressed, as the harness writes every system.
pub fn put_request(workload: &Workload, i: usize) -> v1::PutRequest {
    let event = workload.events[i];
    v1::PutRequest {
        key: Some(key(workload.row(event.key), &event.id)),
        value: workload.payload(i).to_vec(),
        compression: v1::Compression::None.into(),
        if_absent: false,
        ttl_ms: 0,
        write_concern: 0,
        client_key_fingerprint: Vec::new(),
    }
}

fn key(row: &RowKey, id: &TimeUuid) -> v1::Key {
    v1::Key {
        major_key: row.major.clone(),
        region: row.region.clone(),
        minor_key: row.minor.clone(),
        time_uuid: id.as_bytes().to_vec(),
    }
}

fn row_key(row: &RowKey) -> v1::RowKey {
    v1::RowKey { major_key: row.major.clone(), region: row.region.clone(), minor_key: row.minor.clone() }
}

/// R1: the newest event of `row` at or before `at_or_before`. Returns the
/// number of events found (0 or 1; NOT_FOUND is an answer, not an error).
pub async fn latest_at_or_before(
    client: &mut Client,
    row: &RowKey,
    at_or_before: TimeUuid,
) -> Result<u64, tonic::Status> {
    let request = v1::GetRecentRequest {
        row: Some(row_key(row)),
        at_or_before: at_or_before.as_bytes().to_vec(),
        read: None,
    };
    match client.get_recent(request).await {
        Ok(response) => Ok(u64::from(response.into_inner().record.is_some())),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(0),
        Err(status) => Err(status),
    }
}

/// R2: the `limit` newest events of `row`. Returns how many came back.
pub async fn newest(client: &mut Client, row: &RowKey, limit: u32) -> Result<u64, tonic::Status> {
    let request = v1::GetRangeRequest {
        row: Some(row_key(row)),
        limit,
        page_token: Vec::new(),
        read: None,
        window: Some(Window::NewestFirst(v1::NewestFirst { at_or_before: Vec::new() })),
    };
    let records = client.get_range(request).await?.into_inner().records;
    Ok(records.len() as u64)
}

/// Every record of `tenant`, following page tokens, `page_limit` records
/// per scan (at most the server's `max_read_limit`). Returns the count.
/// `head_only` leaves values on disk (for counting).
pub async fn scan_tenant(
    client: &mut Client,
    tenant: &str,
    page_limit: u32,
    head_only: bool,
) -> Result<u64, tonic::Status> {
    let mut records = 0u64;
    let mut page_token = Vec::new();
    loop {
        let request = v1::ScanTenantRequest {
            major_key: tenant.to_string(),
            options: Some(v1::ScanOptions {
                limit: page_limit,
                page_token: std::mem::take(&mut page_token),
                read: Some(v1::ReadOptions { head_only, raw: false }),
            }),
        };
        let mut stream = client.scan_tenant(request).await?.into_inner();
        while let Some(chunk) = stream.message().await? {
            records += chunk.records.len() as u64;
            if !chunk.next_page_token.is_empty() {
                page_token = chunk.next_page_token;
            }
        }
        if page_token.is_empty() {
            return Ok(records);
        }
    }
}

//! Connections to the nodes (always their real gRPC addresses, never the
//! proxies) and the requests several modules share: status, digest and a
//! whole-tenant scan.

use std::net::SocketAddr;
use std::time::Duration;

use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use consensusdb_proto::mesh::v1::{
    ClusterStatusRequest, ClusterStatusResponse, DigestRequest, DigestResponse,
};
use consensusdb_proto::v1;
use consensusdb_proto::v1::records_client::RecordsClient;
use tonic::transport::{Channel, Endpoint};

/// A records client on one HTTP/2 connection.
pub type Records = RecordsClient<Channel>;
/// A replication admin client.
pub type Admin = ReplicationClient<Channel>;

/// Bound on one unary call, so a stuck node shows as an error.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The most records one scan may ask for (the server's default limit).
pub const SCAN_LIMIT: u32 = 10_000;

fn endpoint(addr: SocketAddr, timeout: Option<Duration>) -> Endpoint {
    let endpoint = crate::security::get().endpoint(addr).connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true);
    match timeout {
        Some(timeout) => endpoint.timeout(timeout),
        None => endpoint,
    }
}

/// A records client on a fresh connection, connected now (so a node that
/// is down fails here, before any write is sent). Unary calls are bounded
/// by [`CALL_TIMEOUT`].
pub async fn records(addr: SocketAddr) -> Result<Records, tonic::transport::Error> {
    Ok(RecordsClient::new(endpoint(addr, Some(CALL_TIMEOUT)).connect().await?))
}

/// A records client for scans: no per-call timeout (a scan streams for as
/// long as it takes; callers bound it).
pub async fn scanner(addr: SocketAddr) -> Result<Records, tonic::transport::Error> {
    Ok(RecordsClient::new(endpoint(addr, None).connect().await?).max_decoding_message_size(64 * 1024 * 1024))
}

/// A replication admin client, connected now.
pub async fn admin(addr: SocketAddr) -> Result<Admin, tonic::transport::Error> {
    Ok(ReplicationClient::new(endpoint(addr, Some(CALL_TIMEOUT)).connect().await?))
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The node's cluster status, on a connection of its own.
pub async fn status(addr: SocketAddr) -> Result<ClusterStatusResponse, Error> {
    Ok(admin(addr).await?.cluster_status(ClusterStatusRequest {}).await?.into_inner())
}

/// The node's digest of every tenant, on a connection of its own.
pub async fn digest(addr: SocketAddr) -> Result<DigestResponse, Error> {
    Ok(admin(addr).await?.digest(DigestRequest { major_key: String::new() }).await?.into_inner())
}

/// A scan request for a whole tenant, from `page_token` on.
pub fn scan_request(tenant: &str, page_token: Vec<u8>) -> v1::ScanTenantRequest {
    v1::ScanTenantRequest {
        major_key: tenant.to_string(),
        options: Some(v1::ScanOptions {
            limit: SCAN_LIMIT,
            page_token,
            read: Some(v1::ReadOptions { head_only: false, raw: false }),
        }),
    }
}

/// Every record of `tenant` with its value, following page tokens.
pub async fn scan_all(client: &mut Records, tenant: &str) -> Result<Vec<v1::Record>, tonic::Status> {
    let mut records = Vec::new();
    let mut page_token = Vec::new();
    loop {
        let mut stream =
            client.scan_tenant(scan_request(tenant, std::mem::take(&mut page_token))).await?.into_inner();
        while let Some(chunk) = stream.message().await? {
            records.extend(chunk.records);
            if !chunk.next_page_token.is_empty() {
                page_token = chunk.next_page_token;
            }
        }
        if page_token.is_empty() {
            return Ok(records);
        }
    }
}

//! The authorization matrix: every gRPC method and every HTTP route, called
//! with every kind of credential, against one TLS node. Each cell has its
//! expected outcome, written out by hand (never derived from the rules
//! under test); the test prints the matrix with its count and fails on
//! any cell that differs.
//!
//! Outcomes: `A` allowed (the call passed authorization: any answer but a
//! refusal, a transport failure or bad input), `U` unauthenticated
//! (401), `D` denied (403), `I` bad input (the grant allowed the call,
//! the input did not: a page token from another tenant), `X` no
//! connection (the TLS handshake refused the certificate).

use std::sync::Arc;

use consensusdb_client::{AuthorizedChannel, BearerToken, Credentials};
use consensusdb_proto::mesh::v1 as pb;
use consensusdb_proto::mesh::v1::replication_client::ReplicationClient;
use consensusdb_proto::v1::access_client::AccessClient;
use consensusdb_proto::v1::keys_client::KeysClient;
use consensusdb_proto::v1::records_client::RecordsClient;
use consensusdb_proto::v1::{self};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::support::{TestNode, key, must_put, row, shared_ca};

/// The credential kinds, in column order.
const COLUMNS: [&str; 11] = [
    "none",
    "foreign CA",
    "node",
    "read:tenant-a",
    "write:tenant-a",
    "admin:tenant-a",
    "write:acme/*",
    "monitor",
    "cluster-admin",
    "token write:tenant-a",
    "revoked token",
];

/// One caller: how it reaches the gRPC port and the gateway.
struct Caller {
    credentials: Credentials,
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A gateway TLS configuration trusting `ca`, presenting `pair` if given.
fn http_tls(ca: &str, pair: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(certificate.expect("a CA certificate")).expect("adds the CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match pair {
        None => builder.with_no_client_auth(),
        Some((certificate, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(certificate.as_bytes())
                    .map(|c| c.expect("a certificate"))
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a key"),
            )
            .expect("a client configuration"),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl Caller {
    fn anonymous(ca: &str, token: Option<String>) -> Self {
        Self { credentials: Credentials::new(ca), token, tls: http_tls(ca, None) }
    }

    fn with_certificate(ca: &str, certificate: &str, key: &str) -> Self {
        Self {
            credentials: Credentials::new(ca).with_certificate(certificate, key),
            token: None,
            tls: http_tls(ca, Some((certificate, key))),
        }
    }

    /// A channel to the gRPC port, or `None` if the handshake fails.
    async fn channel(&self, node: &TestNode) -> Option<AuthorizedChannel> {
        let endpoint = consensusdb_client::endpoint_for(&node.grpc_url(), Some(&self.credentials), "addr")
            .expect("endpoint")
            .timeout(std::time::Duration::from_secs(20));
        let channel = endpoint.connect().await.ok()?;
        Some(BearerToken::new(self.token.as_deref()).expect("an ASCII token").on(channel))
    }

    /// The outcome of one HTTP request to the gateway.
    async fn http(&self, node: &TestNode, method: &str, path: &str, body: Option<&str>) -> char {
        let tcp = tokio::net::TcpStream::connect(node.http).await.expect("connects");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let Ok(mut tls) = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await else {
            return 'X';
        };
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        if tls.write_all(request.as_bytes()).await.is_err() {
            return 'X';
        }
        let mut answer = Vec::new();
        // Under TLS 1.3 a refused client certificate surfaces here.
        if tls.read_to_end(&mut answer).await.is_err() && answer.is_empty() {
            return 'X';
        }
        let text = String::from_utf8_lossy(&answer);
        match text.split(' ').nth(1) {
            Some("401") => 'U',
            Some("403") => 'D',
            Some("400") => 'I',
            Some(_) => 'A',
            None => 'X',
        }
    }
}

/// The outcome letter of a gRPC answer.
fn outcome<T>(answer: Result<T, tonic::Status>) -> char {
    match answer {
        Ok(_) => 'A',
        // A refused client certificate under TLS 1.3 fails the first call
        // on the connection, whatever code the transport gives it.
        Err(status)
            if std::error::Error::source(&status).is_some_and(|s| s.is::<tonic::transport::Error>()) =>
        {
            'X'
        }
        Err(status) => match status.code() {
            Code::Unauthenticated => 'U',
            Code::PermissionDenied => 'D',
            Code::InvalidArgument => 'I',
            // Past authorization: the call itself had nothing to do.
            Code::NotFound | Code::AlreadyExists | Code::FailedPrecondition => 'A',
            Code::Unavailable => 'X',
            _ => {
                eprintln!("unexpected status: {status:?}");
                '?'
            }
        },
    }
}

/// Every gRPC method, with its row label.
const GRPC_ROWS: [(&str, &str); 35] = [
    // none, foreign, node, read, write, admin, prefix, monitor, cluster-admin, token, revoked
    ("Records/Put tenant-a", "UXDDAADDAAU"),
    ("Records/PutBatch tenant-a", "UXDDAADDAAU"),
    ("Records/PutBatch tenant-a + tenant-b", "UXDDDDDDADU"),
    ("Records/Touch tenant-a", "UXDDAADDAAU"),
    ("Records/Remove tenant-a", "UXDDAADDAAU"),
    ("Records/Get tenant-a", "UXDAAADDAAU"),
    ("Records/GetRecent tenant-a", "UXDAAADDAAU"),
    ("Records/GetRange tenant-a", "UXDAAADDAAU"),
    ("Records/ScanRow tenant-a", "UXDAAADDAAU"),
    ("Records/ScanRegion tenant-a", "UXDAAADDAAU"),
    ("Records/ScanTenant tenant-a", "UXDAAADDAAU"),
    ("Records/ScanTenant tenant-a, next page", "UXDAAADDAAU"),
    ("Records/ScanTenant tenant-b, tenant-a's page token", "UXDDDDDDIDU"),
    ("Records/Get acme/eu (prefix)", "UXDDDDADADU"),
    ("Records/Put acme/us (prefix)", "UXDDDDADADU"),
    ("Records/Get acmecorp (not under acme/)", "UXDDDDDDADU"),
    ("Records/Get tenant-ab (not tenant-a)", "UXDDDDDDADU"),
    ("Records/Get _consensusdb (system)", "UXDDDDDDDDU"),
    ("Access/WhoAmI", "UXAAAAAAAAU"),
    ("Access/CreateToken", "UXDDDDDDADU"),
    ("Access/ListTokens", "UXDDDDDDADU"),
    ("Access/RevokeToken (unknown)", "UXDDDDDDADU"),
    ("Access/AddGrant", "UXDDDDDDADU"),
    ("Access/ListGrants", "UXDDDDDDADU"),
    ("Access/RemoveGrant (not held)", "UXDDDDDDADU"),
    ("Keys/RotateTenantKey tenant-z", "UXDDDDDDADU"),
    ("Keys/RewrapKeys", "UXDDDDDDADU"),
    ("Keys/ListKeys", "UXDDDDDDADU"),
    ("Keys/ShredTenant tenant-z", "UXDDDDDDADU"),
    ("Replication/Pull", "UXIDDDDDDDU"),
    ("Replication/Snapshot", "UXADDDDDDDU"),
    ("Replication/Digest everything", "UXDDDDDDADU"),
    ("Replication/Digest tenant-a", "UXDAAADDAAU"),
    ("Replication/ClusterStatus", "UXDDDDDAADU"),
    ("Replication/RemovePeer (unknown)", "UXDDDDDDADU"),
];

/// Every HTTP route (and method), with its row label.
const HTTP_ROWS: [(&str, &str, &str, Option<&str>, &str); 22] = [
    ("PUT record", "PUT", "/v1/records/tenant-a/R/h", Some(r#"{"value":"v"}"#), "UXDDAADDAAU"),
    ("POST event", "POST", "/v1/records/tenant-a/R/h", Some(r#"{"value":"v"}"#), "UXDDAADDAAU"),
    ("PATCH record", "PATCH", "/v1/records/tenant-a/R/m", Some(r#"{"ttl_ms":600000}"#), "UXDDAADDAAU"),
    ("DELETE record", "DELETE", "/v1/records/tenant-a/R/gone", None, "UXDDAADDAAU"),
    (
        "POST batch",
        "POST",
        "/v1/batch",
        Some(r#"{"records":[{"key":{"major_key":"tenant-a","region":"R","minor_key":"b"},"value":"v"}]}"#),
        "UXDDAADDAAU",
    ),
    ("GET record", "GET", "/v1/records/tenant-a/R/m", None, "UXDAAADDAAU"),
    ("GET recent", "GET", "/v1/rows/tenant-a/R/m/recent", None, "UXDAAADDAAU"),
    ("GET range", "GET", "/v1/rows/tenant-a/R/m/range", None, "UXDAAADDAAU"),
    ("GET scan tenant", "GET", "/v1/scan/tenant-a", None, "UXDAAADDAAU"),
    ("GET scan region", "GET", "/v1/scan/tenant-a/R", None, "UXDAAADDAAU"),
    ("GET scan row", "GET", "/v1/scan/tenant-a/R/m", None, "UXDAAADDAAU"),
    ("GET record acme/eu", "GET", "/v1/records/acme%2Feu/R/m", None, "UXDDDDADADU"),
    ("GET record acmecorp", "GET", "/v1/records/acmecorp/R/m", None, "UXDDDDDDADU"),
    ("GET record _consensusdb", "GET", "/v1/records/_consensusdb/tokens/x", None, "UXDDDDDDDDU"),
    ("GET /v1/status", "GET", "/v1/status", None, "UXDDDDDAADU"),
    ("GET /metrics", "GET", "/metrics", None, "UXDDDDDAADU"),
    ("GET / (status page)", "GET", "/", None, "UXDDDDDAADU"),
    ("GET /healthz", "GET", "/healthz", None, "AXAAAAAAAAA"),
    ("GET /readyz", "GET", "/readyz", None, "AXAAAAAAAAA"),
    ("GET /openapi.json", "GET", "/openapi.json", None, "AXAAAAAAAAA"),
    ("GET /docs/", "GET", "/docs/", None, "AXAAAAAAAAA"),
    ("GET unknown path", "GET", "/v2/nothing", None, "UXAAAAAAAAU"),
];

/// Calls one gRPC row over `channel`; `page_token` is one of tenant-a's.
async fn call_grpc(row_label: &str, channel: AuthorizedChannel, page_token: &[u8]) -> char {
    let mut records = RecordsClient::new(channel.clone());
    let mut access = AccessClient::new(channel.clone());
    let mut keys = KeysClient::new(channel.clone());
    let mut replication = ReplicationClient::new(channel);
    let put = |major: &str, minor: &str| v1::PutRequest {
        key: Some(key(major, "R", minor, None)),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let get = |major: &str| v1::GetRequest { key: Some(key(major, "R", "m", None)), read: None };
    let scan = |major: &str, page_token: &[u8]| v1::ScanTenantRequest {
        major_key: major.into(),
        options: Some(v1::ScanOptions { limit: 1, page_token: page_token.to_vec(), read: None }),
    };
    let drain = async |answer: Result<tonic::Response<tonic::Streaming<v1::ScanChunk>>, tonic::Status>| {
        let mut stream = match answer {
            Ok(response) => response.into_inner(),
            Err(status) => return outcome::<()>(Err(status)),
        };
        loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return 'A',
                Err(status) => return outcome::<()>(Err(status)),
            }
        }
    };
    match row_label {
        "Records/Put tenant-a" => outcome(records.put(put("tenant-a", "p")).await),
        "Records/PutBatch tenant-a" => outcome(
            records
                .put_batch(v1::PutBatchRequest { records: vec![put("tenant-a", "b")], write_concern: 0 })
                .await,
        ),
        "Records/PutBatch tenant-a + tenant-b" => outcome(
            records
                .put_batch(v1::PutBatchRequest {
                    records: vec![put("tenant-a", "b"), put("tenant-b", "b")],
                    write_concern: 0,
                })
                .await,
        ),
        "Records/Touch tenant-a" => outcome(
            records
                .touch(v1::TouchRequest { key: Some(key("tenant-a", "R", "m", None)), ttl_ms: 600_000 })
                .await,
        ),
        "Records/Remove tenant-a" => {
            outcome(records.remove(v1::RemoveRequest { key: Some(key("tenant-a", "R", "gone", None)) }).await)
        }
        "Records/Get tenant-a" => outcome(records.get(get("tenant-a")).await),
        "Records/GetRecent tenant-a" => outcome(
            records
                .get_recent(v1::GetRecentRequest {
                    row: Some(row("tenant-a", "R", "t")),
                    ..Default::default()
                })
                .await,
        ),
        "Records/GetRange tenant-a" => outcome(
            records
                .get_range(v1::GetRangeRequest {
                    row: Some(row("tenant-a", "R", "t")),
                    limit: 5,
                    ..Default::default()
                })
                .await,
        ),
        "Records/ScanRow tenant-a" => {
            drain(
                records
                    .scan_row(v1::ScanRowRequest {
                        row: Some(row("tenant-a", "R", "m")),
                        options: Some(v1::ScanOptions { limit: 10, ..Default::default() }),
                    })
                    .await,
            )
            .await
        }
        "Records/ScanRegion tenant-a" => {
            drain(
                records
                    .scan_region(v1::ScanRegionRequest {
                        major_key: "tenant-a".into(),
                        region: "R".into(),
                        options: Some(v1::ScanOptions { limit: 10, ..Default::default() }),
                    })
                    .await,
            )
            .await
        }
        "Records/ScanTenant tenant-a" => drain(records.scan_tenant(scan("tenant-a", &[])).await).await,
        "Records/ScanTenant tenant-a, next page" => {
            drain(records.scan_tenant(scan("tenant-a", page_token)).await).await
        }
        "Records/ScanTenant tenant-b, tenant-a's page token" => {
            drain(records.scan_tenant(scan("tenant-b", page_token)).await).await
        }
        "Records/Get acme/eu (prefix)" => outcome(records.get(get("acme/eu")).await),
        "Records/Put acme/us (prefix)" => outcome(records.put(put("acme/us", "p")).await),
        "Records/Get acmecorp (not under acme/)" => outcome(records.get(get("acmecorp")).await),
        "Records/Get tenant-ab (not tenant-a)" => outcome(records.get(get("tenant-ab")).await),
        "Records/Get _consensusdb (system)" => outcome(records.get(get("_consensusdb")).await),
        "Access/WhoAmI" => outcome(access.who_am_i(v1::WhoAmIRequest {}).await),
        "Access/CreateToken" => outcome(
            access
                .create_token(v1::CreateTokenRequest {
                    name: "matrix".into(),
                    grants: vec!["read:tenant-z".into()],
                })
                .await,
        ),
        "Access/ListTokens" => outcome(access.list_tokens(v1::ListTokensRequest {}).await),
        "Access/RevokeToken (unknown)" => outcome(
            access.revoke_token(v1::RevokeTokenRequest { id_or_name: "0123456789abcdef".into() }).await,
        ),
        "Access/AddGrant" => outcome(
            access
                .add_grant(v1::AddGrantRequest {
                    identity: "cdb://consensusdb/client/matrix".into(),
                    grant: "read:tenant-z".into(),
                })
                .await,
        ),
        "Access/ListGrants" => outcome(access.list_grants(v1::ListGrantsRequest::default()).await),
        "Keys/RotateTenantKey tenant-z" => {
            outcome(keys.rotate_tenant_key(v1::RotateTenantKeyRequest { tenant: "tenant-z".into() }).await)
        }
        "Keys/RewrapKeys" => outcome(keys.rewrap_keys(v1::RewrapKeysRequest {}).await),
        "Keys/ListKeys" => outcome(keys.list_keys(v1::ListKeysRequest::default()).await),
        "Keys/ShredTenant tenant-z" => {
            outcome(keys.shred_tenant(v1::ShredTenantRequest { tenant: "tenant-z".into() }).await)
        }
        "Access/RemoveGrant (not held)" => outcome(
            access
                .remove_grant(v1::RemoveGrantRequest {
                    identity: "cdb://consensusdb/client/nobody".into(),
                    grant: "read:tenant-z".into(),
                })
                .await,
        ),
        // An empty stream: the node answers a node's stream that sends no
        // hello as bad input, and refuses everyone else before reading it.
        "Replication/Pull" => outcome(replication.pull(tokio_stream::empty::<pb::PullRequest>()).await),
        "Replication/Snapshot" => outcome(replication.snapshot(pb::SnapshotRequest::default()).await),
        "Replication/Digest everything" => outcome(replication.digest(pb::DigestRequest::default()).await),
        "Replication/Digest tenant-a" => {
            outcome(replication.digest(pb::DigestRequest { major_key: "tenant-a".into() }).await)
        }
        "Replication/ClusterStatus" => outcome(replication.cluster_status(pb::ClusterStatusRequest {}).await),
        "Replication/RemovePeer (unknown)" => outcome(
            replication
                .remove_peer(pb::RemovePeerRequest {
                    node_id: Vec::new(),
                    address: "203.0.113.9:4482".into(),
                })
                .await,
        ),
        other => panic!("no call for row {other}"),
    }
}

/// A certificate and key for `name`, issued by the shared test CA.
fn client_certificate(name: &str) -> (String, String) {
    let ca_dir = shared_ca().admin.ca.parent().expect("the CA's directory").to_path_buf();
    let authority = consensusdb_pki::Authority::load_dir(&ca_dir).expect("loads the test CA");
    let issued = authority.issue_client(name, consensusdb_pki::issue::DEFAULT_VALIDITY).expect("issues");
    (issued.certificate_pem, issued.key_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_method_and_route_answers_every_credential_as_expected() {
    let node = TestNode::start().await;
    let admin = &shared_ca().admin;
    let read = |path: &std::path::Path| std::fs::read_to_string(path).expect("reads");
    let ca = read(&admin.ca);
    let mut as_admin = node.client.clone();
    for (major, minor) in
        [("tenant-a", "m"), ("tenant-a", "n"), ("acme/eu", "m"), ("acmecorp", "m"), ("tenant-ab", "m")]
    {
        must_put(&mut as_admin, key(major, "R", minor, None), b"v").await;
    }
    let first_page = as_admin
        .scan_tenant(v1::ScanTenantRequest {
            major_key: "tenant-a".into(),
            options: Some(v1::ScanOptions { limit: 1, ..Default::default() }),
        })
        .await
        .expect("scans");
    let mut chunks = first_page.into_inner();
    let mut page_token = Vec::new();
    while let Some(chunk) = chunks.message().await.expect("a chunk") {
        page_token = chunk.next_page_token;
    }
    assert!(!page_token.is_empty(), "tenant-a has a second page");

    // Grants for the certificate columns and tokens for the token columns,
    // made through the access service as the cluster admin.
    let admin_channel = Caller::with_certificate(&ca, &read(&admin.certificate), &read(&admin.key))
        .channel(&node)
        .await
        .expect("the admin connects");
    let mut access = AccessClient::new(admin_channel);
    let grant = async |access: &mut AccessClient<AuthorizedChannel>, name: &str, grant: &str| {
        let request =
            v1::AddGrantRequest { identity: format!("cdb://consensusdb/client/{name}"), grant: grant.into() };
        access.add_grant(request).await.expect("grants");
    };
    for (name, granted) in [
        ("reader", "read:tenant-a"),
        ("writer", "write:tenant-a"),
        ("owner", "admin:tenant-a"),
        ("acme", "write:acme/*"),
        ("watcher", "monitor"),
    ] {
        grant(&mut access, name, granted).await;
    }
    let mut token = async |name: &str| {
        let request = v1::CreateTokenRequest { name: name.into(), grants: vec!["write:tenant-a".into()] };
        access.create_token(request).await.expect("makes a token").into_inner().secret_token
    };
    let valid_token = token("valid").await;
    let revoked_token = token("revoked").await;
    access.revoke_token(v1::RevokeTokenRequest { id_or_name: "revoked".into() }).await.expect("revokes");

    let certificate = |name: &str| {
        let (certificate, key) = client_certificate(name);
        Caller::with_certificate(&ca, &certificate, &key)
    };
    let foreign = consensusdb_pki::Authority::create("consensusdb")
        .expect("a foreign CA")
        .issue_client("admin", consensusdb_pki::issue::DEFAULT_VALIDITY)
        .expect("issues");
    let node_credential = &shared_ca().node;
    let callers = [
        Caller::anonymous(&ca, None),
        Caller::with_certificate(&ca, &foreign.certificate_pem, &foreign.key_pem),
        Caller::with_certificate(
            &ca,
            &read(node_credential.cert_file.as_ref().expect("set")),
            &read(node_credential.key_file.as_ref().expect("set")),
        ),
        certificate("reader"),
        certificate("writer"),
        certificate("owner"),
        certificate("acme"),
        certificate("watcher"),
        Caller::with_certificate(&ca, &read(&admin.certificate), &read(&admin.key)),
        Caller::anonymous(&ca, Some(valid_token)),
        Caller::anonymous(&ca, Some(revoked_token)),
    ];

    let mut printed = format!("{:<52} {}\n", "", COLUMNS.join(" | "));
    let mut unexpected = Vec::new();
    let mut cells = 0;
    let mut check = |label: &str, expected: &str, seen: &str| {
        printed.push_str(&format!("{label:<52} {seen}\n"));
        cells += seen.len();
        for ((column, want), got) in COLUMNS.iter().zip(expected.chars()).zip(seen.chars()) {
            if want != got {
                unexpected.push(format!("{label} as {column}: expected {want}, got {got}"));
            }
        }
    };
    for (label, expected) in GRPC_ROWS {
        let mut seen = String::new();
        for caller in &callers {
            seen.push(match caller.channel(&node).await {
                Some(channel) => call_grpc(label, channel, &page_token).await,
                None => 'X',
            });
        }
        check(&format!("gRPC {label}"), expected, &seen);
    }
    for (label, method, path, body, expected) in HTTP_ROWS {
        let mut seen = String::new();
        for caller in &callers {
            seen.push(caller.http(&node, method, path, body).await);
        }
        check(&format!("HTTP {label}"), expected, &seen);
    }
    println!("{printed}authorization matrix: {cells} cells, {} unexpected", unexpected.len());
    assert!(unexpected.is_empty(), "unexpected cells:\n{}\n{printed}", unexpected.join("\n"));
    node.stop().await;
}

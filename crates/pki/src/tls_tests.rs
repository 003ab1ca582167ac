//! Handshakes between the configurations of [`crate::tls`], over an
//! in-memory pipe: who gets through, who is refused, and what identity the
//! server reads from the caller's certificate.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::issue::DEFAULT_VALIDITY;
use crate::tls::{PemCredential, client_config, server_config};
use crate::{Authority, Credential, NodeNames, identity_of};

fn node(ca: &Authority, name: &str) -> Credential {
    let names = NodeNames { dns: vec![format!("{name}.db")], ips: vec!["127.0.0.1".parse().unwrap()] };
    ca.issue_node(name, &names, DEFAULT_VALIDITY).unwrap()
}

fn pem<'a>(ca: &'a Authority, credential: &'a Credential) -> PemCredential<'a> {
    PemCredential {
        ca_bundle: ca.certificate_pem(),
        certificate_chain: &credential.certificate_pem,
        key: &credential.key_pem,
    }
}

/// Dials `server` as `client` at `name`; on success, the identity the
/// server read from the client's certificate and the ALPN agreed.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Result<(String, Option<Vec<u8>>), String> {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(name.to_string()).unwrap();
    let serving = async move {
        let mut stream =
            TlsAcceptor::from(server).accept(server_io).await.map_err(|e| format!("server: {e}"))?;
        let (_, connection) = stream.get_ref();
        let certificate =
            connection.peer_certificates().and_then(|c| c.first()).ok_or("server: no certificate")?;
        let identity = identity_of(certificate).map_err(|e| e.to_string())?;
        let alpn = connection.alpn_protocol().map(<[u8]>::to_vec);
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.map_err(|e| format!("server read: {e}"))?;
        Ok::<_, String>((identity.to_string(), alpn))
    };
    let dialing = async move {
        let mut stream =
            TlsConnector::from(client).connect(name, client_io).await.map_err(|e| format!("client: {e}"))?;
        stream.write_all(b"x").await.map_err(|e| format!("client write: {e}"))?;
        stream.flush().await.map_err(|e| format!("client flush: {e}"))?;
        Ok::<_, String>(stream)
    };
    let (served, dialed) = tokio::join!(serving, dialing);
    dialed?;
    served
}

#[tokio::test]
async fn nodes_and_clients_of_the_cluster_get_through_and_the_server_reads_who_they_are() {
    let ca = Authority::create("prod").unwrap();
    let (server, peer, app) =
        (node(&ca, "n1"), node(&ca, "n2"), ca.issue_client("app", DEFAULT_VALIDITY).unwrap());
    let serving = server_config(&pem(&ca, &server)).unwrap();
    let (identity, alpn) =
        handshake(serving.clone(), client_config(&pem(&ca, &peer)).unwrap(), "n1.db").await.unwrap();
    assert_eq!(identity, "cdb://prod/node/n2");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "gRPC needs h2 agreed");
    let (identity, _) =
        handshake(serving, client_config(&pem(&ca, &app)).unwrap(), "127.0.0.1").await.unwrap();
    assert_eq!(identity, "cdb://prod/client/app");
}

#[tokio::test]
async fn strangers_wrong_names_and_clients_posing_as_servers_are_refused() {
    let ca = Authority::create("prod").unwrap();
    let server = node(&ca, "n1");
    let serving = server_config(&pem(&ca, &server)).unwrap();

    // A node certificate from another CA: refused by the server.
    let foreign_ca = Authority::create("prod").unwrap();
    let stranger = node(&foreign_ca, "n9");
    let stranger_dials = PemCredential { ca_bundle: ca.certificate_pem(), ..pem(&foreign_ca, &stranger) };
    let error =
        handshake(serving.clone(), client_config(&stranger_dials).unwrap(), "n1.db").await.unwrap_err();
    assert!(error.starts_with("server:"), "the server refuses a certificate of another CA: {error}");

    // The right CA, but a name the certificate does not carry.
    let peer = node(&ca, "n2");
    let error =
        handshake(serving.clone(), client_config(&pem(&ca, &peer)).unwrap(), "n3.db").await.unwrap_err();
    assert!(error.starts_with("client:"), "the dialer refuses a server not named as dialed: {error}");

    // A client certificate serving: it cannot authenticate a server.
    let app = ca.issue_client("app", DEFAULT_VALIDITY).unwrap();
    // rustls builds the configuration (it does not read key usages); the
    // dialer is what must refuse it.
    let posing = server_config(&pem(&ca, &app)).expect("builds");
    let error = handshake(posing, client_config(&pem(&ca, &peer)).unwrap(), "127.0.0.1").await.unwrap_err();
    assert!(error.starts_with("client:"), "a client certificate never passes for a node: {error}");
}

#[tokio::test]
async fn a_caller_without_a_certificate_gets_through_anonymously() {
    let ca = Authority::create("prod").unwrap();
    let serving = server_config(&pem(&ca, &node(&ca, "n1"))).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(ca.certificate_pem().as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let mut anonymous = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    anonymous.alpn_protocols = vec![b"h2".to_vec()];
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from("n1.db").unwrap();
    let (served, dialed) = tokio::join!(
        TlsAcceptor::from(serving).accept(server_io),
        TlsConnector::from(Arc::new(anonymous)).connect(name, client_io)
    );
    dialed.expect("the dialer gets through");
    let served = served.expect("the server lets it through");
    assert!(served.get_ref().1.peer_certificates().is_none(), "and knows it presented nothing");
}

#[test]
fn a_node_loads_its_files_and_refuses_a_client_or_expired_certificate() {
    use crate::tls::{NodeTls, TlsFiles};
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::create("prod").unwrap();
    let ca_files = ca.save(dir.path()).unwrap();
    let files = |stem: &str| {
        let paths = crate::credential_paths(dir.path(), stem);
        TlsFiles { ca_bundle: ca_files.certificate.clone(), certificate: paths.certificate, key: paths.key }
    };
    crate::cluster_dir::save(dir.path(), node(&ca, "n1")).unwrap();
    let loaded = NodeTls::load(&files("node-n1")).expect("a node's own files load");
    assert_eq!(loaded.identity.to_string(), "cdb://prod/node/n1");

    crate::cluster_dir::save(dir.path(), ca.issue_client("app", DEFAULT_VALIDITY).unwrap()).unwrap();
    let error =
        NodeTls::load(&files("client-app")).err().expect("a client certificate is refused").to_string();
    assert!(error.contains("a node needs a node certificate"), "{error}");

    // The same certificate a year and a day from now, and a day ago.
    let der = rustls::pki_types::CertificateDer::pem_file_iter(files("node-n1").certificate)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let at = |days: i64| {
        let when = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        x509_parser::time::ASN1Time::from_timestamp(when.unix_timestamp()).unwrap()
    };
    let error = crate::inspect::check_valid_at(&der, "n1", at(366)).unwrap_err().to_string();
    assert!(error.contains("n1 expired on"), "{error}");
    let error = crate::inspect::check_valid_at(&der, "n1", at(-1)).unwrap_err().to_string();
    assert!(error.contains("n1 is not valid before"), "{error}");
    crate::inspect::check_valid_at(&der, "n1", at(0)).expect("valid now");

    let missing = TlsFiles { key: dir.path().join("nope.key"), ..files("node-n1") };
    let error = NodeTls::load(&missing).err().expect("a missing file is refused").to_string();
    assert!(error.contains("nope.key"), "names the file: {error}");
}

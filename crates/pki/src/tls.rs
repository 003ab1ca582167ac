//! TLS configurations from a credential: what a node serves with and
//! dials its peers with, and what a client dials with. Both sides verify
//! the other against the cluster CA only, with TLS 1.3 preferred and 1.2
//! allowed, and the ring provider passed in explicitly (no process-wide
//! default to install, and no second provider to collide with).
//!
//! A server verifies every client certificate presented against the
//! cluster CA (a foreign or forged one does not get past the handshake),
//! but a caller may also come without one: a health probe, or a client
//! that authenticates with a bearer token. Such a connection is
//! anonymous, and the servers refuse it every request that needs a caller.
//! Which identity a certificate carries is read with
//! [`crate::identity_of`].
//!
//! [`NodeTls::load`] reads a node's files (CA bundle, certificate, key)
//! and builds both configurations, refusing a certificate that is not a
//! node's or is outside its validity period.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use consensusdb_types::{Identity, Role};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::PkiError;

/// The protocol versions served and dialed.
static VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A credential in PEM: the CA bundle to trust, and this side's
/// certificate chain and private key.
pub struct PemCredential<'a> {
    /// The CA certificates to trust (the cluster CA; during a CA rotation,
    /// the old and the new).
    pub ca_bundle: &'a str,
    /// This side's certificate (and any intermediates after it).
    pub certificate_chain: &'a str,
    /// This side's private key.
    pub key: &'a str,
}

/// The server side, for both ports: client certificates optional, and
/// verified against the CA bundle when presented; ALPN offers `h2` (gRPC) and `http/1.1`
/// (the gateway), without which tonic clients fail with "HTTP/2 was not
/// negotiated".
pub fn server_config(credential: &PemCredential<'_>) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(roots(credential.ca_bundle)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|error| PkiError::Invalid(format!("the CA bundle: {error}")))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain(credential.certificate_chain)?, key(credential.key)?)
        .map_err(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The dialing side (a node dialing a peer, or a client): the server's
/// certificate is verified against the CA bundle and the name dialed, and
/// this side's certificate is presented. ALPN offers `h2`.
pub fn client_config(credential: &PemCredential<'_>) -> Result<Arc<ClientConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .map_err(tls)?
        .with_root_certificates(roots(credential.ca_bundle)?)
        .with_client_auth_cert(chain(credential.certificate_chain)?, key(credential.key)?)
        .map_err(tls)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Where a node's credential lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA bundle (PEM): the cluster CA, or the old and new CA during a
    /// rotation.
    pub ca_bundle: PathBuf,
    /// The node's certificate (PEM).
    pub certificate: PathBuf,
    /// The node's private key (PEM).
    pub key: PathBuf,
}

/// A node's TLS, loaded: who it is, what it serves with and what it dials
/// its peers with.
pub struct NodeTls {
    /// The node's own identity, from its certificate.
    pub identity: Identity,
    /// For the gRPC port: ALPN `h2` only.
    pub grpc: Arc<ServerConfig>,
    /// For the gateway: ALPN `http/1.1` only (the gateway speaks HTTP/1.1,
    /// and a client offered `h2` would pick it).
    pub http: Arc<ServerConfig>,
    /// For dialing peers, presenting the node's certificate.
    pub client: Arc<ClientConfig>,
    /// When the node's certificate expires.
    pub not_after: String,
}

impl NodeTls {
    /// Reads `files` and builds both configurations. Refused: a file that
    /// does not read or parse, a certificate that is not a node's, or one
    /// outside its validity period.
    pub fn load(files: &TlsFiles) -> Result<Self, PkiError> {
        let read = |path: &Path| crate::files::read(path);
        let (ca_bundle, certificate_chain, key) =
            (read(&files.ca_bundle)?, read(&files.certificate)?, read(&files.key)?);
        let leaf = chain(&certificate_chain)?.swap_remove(0);
        let what = format!("the node certificate {}", files.certificate.display());
        let not_after = crate::inspect::check_valid_now(&leaf, &what)?;
        let identity = crate::identity_of(&leaf)?;
        if identity.role() != Role::Node {
            return Err(PkiError::Invalid(format!(
                "{what} is {identity}, a client's; a node needs a node certificate (`consensusdb cert node`)"
            )));
        }
        let credential =
            PemCredential { ca_bundle: &ca_bundle, certificate_chain: &certificate_chain, key: &key };
        let server = server_config(&credential)?;
        let for_protocol = |protocol: &[u8]| {
            let mut config = (*server).clone();
            config.alpn_protocols = vec![protocol.to_vec()];
            Arc::new(config)
        };
        Ok(Self {
            identity,
            grpc: for_protocol(b"h2"),
            http: for_protocol(b"http/1.1"),
            client: client_config(&credential)?,
            not_after,
        })
    }
}

fn roots(bundle: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for certificate in chain(bundle)? {
        roots.add(certificate).map_err(|error| PkiError::Invalid(format!("the CA bundle: {error}")))?;
    }
    Ok(roots)
}

fn chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PkiError::Read(format!("certificates: {error}")))?;
    if chain.is_empty() {
        return Err(PkiError::Read("certificates: no PEM certificate found".into()));
    }
    Ok(chain)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|error| PkiError::Read(format!("private key: {error}")))
}

fn tls(error: rustls::Error) -> PkiError {
    PkiError::Invalid(format!("TLS configuration: {error}"))
}

//! TLS configurations from a credential: what a node serves with and
//! dials its peers with, and what a client dials with. Both sides verify
//! the other against the cluster CA only, with TLS 1.3 preferred and 1.2
//! allowed, and the ring provider passed in explicitly (no process-wide
//! default to install, and no second provider to collide with).
//!
//! A server requires a client certificate from the cluster CA: a caller
//! without one does not get past the handshake. Which identity it carries
//! is read afterwards with [`crate::identity_of`].

use std::sync::Arc;

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

/// The server side, for both ports: client certificates required and
/// verified against the CA bundle; ALPN offers `h2` (gRPC) and `http/1.1`
/// (the gateway), without which tonic clients fail with "HTTP/2 was not
/// negotiated".
pub fn server_config(credential: &PemCredential<'_>) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(roots(credential.ca_bundle)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
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

//! How a client trusts a node and proves who it is: the cluster CA to
//! verify the node's certificate against, and the client's own
//! certificate and key (from `consensusdb init` or `consensusdb cert
//! client`). A node started with no TLS configuration makes its own CA and
//! an admin credential under `<data dir>/tls`; [`Credentials::admin_in`]
//! reads them from there.

use std::fmt;
use std::path::{Path, PathBuf};

use consensusdb_types::ErrorCode;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};

/// Where a node started with no TLS configuration keeps its credentials,
/// relative to its data directory.
pub const NODE_TLS_DIR: &str = "tls";

/// A CA to trust, and optionally a client certificate to present.
#[derive(Clone)]
pub struct Credentials {
    ca_pem: String,
    certificate: Option<(String, String)>,
    /// Where the files came from, for error messages.
    source: String,
}

/// The key is never printed.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("source", &self.source)
            .field("client_certificate", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Trusts nodes whose certificates `ca_pem` (the cluster CA, PEM)
    /// signed, presenting no certificate of its own.
    pub fn new(ca_pem: impl Into<String>) -> Self {
        Self { ca_pem: ca_pem.into(), certificate: None, source: "the CA given".into() }
    }

    /// Also presents this client certificate and its private key (PEM).
    #[must_use]
    pub fn with_certificate(
        mut self,
        certificate_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Self {
        self.certificate = Some((certificate_pem.into(), key_pem.into()));
        self
    }

    /// Reads the CA, the client certificate and its key from files; an
    /// error names the file that could not be read.
    pub fn from_files(ca: &Path, certificate: &Path, key: &Path) -> Result<Self> {
        let credentials =
            Self::new(read(ca, "ca")?).with_certificate(read(certificate, "cert")?, read(key, "key")?);
        Ok(Self { source: format!("{}, {}", ca.display(), certificate.display()), ..credentials })
    }

    /// The admin client credential in a directory `consensusdb init` made,
    /// or in a node's `<data dir>/tls`: `ca.pem`, `client-admin.pem` and
    /// `client-admin.key`.
    pub fn admin_in(dir: impl AsRef<Path>) -> Result<Self> {
        let paths = AdminPaths::in_dir(dir.as_ref());
        Self::from_files(&paths.ca, &paths.certificate, &paths.key)
    }

    /// The TLS settings for `url`: the node's certificate must be signed by
    /// the CA and name the host dialed.
    pub(crate) fn tls_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        match &self.certificate {
            Some((certificate, key)) => config.identity(Identity::from_pem(certificate, key)),
            None => config,
        }
    }
}

/// The files of an admin client credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPaths {
    /// The cluster CA.
    pub ca: PathBuf,
    /// The admin client's certificate.
    pub certificate: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl AdminPaths {
    /// The admin credential's files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            certificate: dir.join("client-admin.pem"),
            key: dir.join("client-admin.key"),
        }
    }

    /// Those of a node's own credentials under its data directory.
    pub fn of_data_dir(data_dir: &Path) -> Self {
        Self::in_dir(&data_dir.join(NODE_TLS_DIR))
    }

    /// Whether all three files exist.
    pub fn exist(&self) -> bool {
        [&self.ca, &self.certificate, &self.key].iter().all(|path| path.is_file())
    }
}

fn read(path: &Path, field: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|error| {
        Error::from(consensusdb_types::FieldError::new(
            field,
            format!("cannot read {}: {error}", path.display()),
        ))
    })
}

/// An endpoint for `url` (already normalised by
/// [`crate::endpoint_url`]): `https://` needs credentials, `http://` is
/// plaintext and refuses them (they would silently not be used).
pub fn endpoint_for(url: &str, credentials: Option<&Credentials>, field: &str) -> Result<Endpoint> {
    let invalid = |why: String| Error::from(consensusdb_types::FieldError::new(field, why));
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| invalid(format!("{url:?} is not a URL like https://127.0.0.1:4482 ({e})")))?;
    match (url.starts_with("https://"), credentials) {
        (true, Some(credentials)) => endpoint.tls_config(credentials.tls_config()).map_err(|e| {
            Error::local(ErrorCode::InvalidArgument, format!("TLS settings from {}: {e}", credentials.source))
        }),
        (true, None) => Err(invalid(format!(
            "{url} is TLS, but no CA to trust was given: pass credentials (the CLI's --ca, --cert and --key)"
        ))),
        (false, None) => Ok(endpoint),
        (false, Some(_)) => Err(invalid(format!(
            "{url} is plaintext (http://), so the credentials given would not be used: use https://"
        ))),
    }
}

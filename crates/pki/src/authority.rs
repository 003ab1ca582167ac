//! The cluster CA: made once by `consensusdb init` (or a node's first
//! start), then loaded from its two files to issue more certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::Path;

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;
use crate::files::{self, CredentialFiles, credential_paths, write_credential};

/// The file stem of the CA in a credential directory.
pub const CA_STEM: &str = "ca";

/// How long a CA is valid. Rotating it means adding the new CA to every
/// node's bundle first, so it is made to last.
pub const CA_VALIDITY: Duration = Duration::days(3650);

/// A certificate authority that can issue certificates.
pub struct Authority {
    cluster: String,
    certificate_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// A new CA for `cluster`, valid from now for [`CA_VALIDITY`].
    pub fn create(cluster: &str) -> Result<Self, PkiError> {
        consensusdb_types::identity::check_name("cluster", cluster)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "ConsensusDB");
        // The cluster is kept in the CA itself, so issuing more later
        // cannot name another cluster by mistake.
        params.distinguished_name.push(DnType::OrganizationalUnitName, cluster);
        params.distinguished_name.push(DnType::CommonName, format!("ConsensusDB cluster CA ({cluster})"));
        // Path length 0: the CA signs nodes and clients, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + CA_VALIDITY;
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        Ok(Self {
            cluster: cluster.to_string(),
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A saved CA: its certificate and private key, PEM. The cluster is
    /// the one the CA was made for.
    pub fn load(certificate_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cluster = cluster_of(certificate_pem)?;
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)?;
        Ok(Self {
            cluster,
            certificate_pem: certificate_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The CA saved in `dir` by [`Authority::save`].
    pub fn load_dir(dir: &Path) -> Result<Self, PkiError> {
        let files = credential_paths(dir, CA_STEM);
        Self::load(&files::read(&files.certificate)?, &files::read(&files.key)?)
    }

    /// Saves the CA in `dir` as `ca.pem` and `ca.key` (mode 0600); refuses
    /// to replace a saved one.
    pub fn save(&self, dir: &Path) -> Result<CredentialFiles, PkiError> {
        write_credential(dir, CA_STEM, &self.certificate_pem, &self.key_pem)
    }

    /// The cluster this CA signs for.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The CA certificate, PEM: what every node and client trusts.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA's private key, PEM: kept by whoever issues certificates.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// The cluster a CA certificate was made for: its organizational unit.
fn cluster_of(certificate_pem: &str) -> Result<String, PkiError> {
    let read = |why: String| PkiError::Read(format!("the CA certificate: {why}"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes())
        .map_err(|error| read(format!("not PEM: {error}")))?;
    let (_, certificate) =
        X509Certificate::from_der(&pem.contents).map_err(|error| read(error.to_string()))?;
    if !certificate.is_ca() {
        return Err(read("it is not a CA certificate".into()));
    }
    let mut units = certificate.subject().iter_organizational_unit();
    let (Some(unit), None) = (units.next(), units.next()) else {
        return Err(read("it does not name one cluster (made by another tool?)".into()));
    };
    let cluster = unit.as_str().map_err(|error| read(error.to_string()))?;
    consensusdb_types::identity::check_name("cluster", cluster)?;
    Ok(cluster.to_string())
}

//! Certificates the CA issues. A node's certificate authenticates it both
//! as a server (clients and peers dial it) and as a client (it dials its
//! peers), and names the DNS names and addresses it is dialed at, for
//! hostname verification. A client's certificate authenticates it only as
//! a client, so it can never serve as a node.

use std::net::IpAddr;

use consensusdb_types::{Identity, Role};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::{Authority, PkiError};

/// How long a node or client certificate is valid unless asked otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::days(365);

/// The names a node is dialed at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeNames {
    /// DNS names, e.g. `node-1.db.internal`, `localhost`.
    pub dns: Vec<String>,
    /// IP addresses, e.g. `10.0.0.5`, `127.0.0.1`.
    pub ips: Vec<IpAddr>,
}

/// A certificate with its private key, both PEM, and who it speaks for.
pub struct Credential {
    /// The identity in the certificate.
    pub identity: Identity,
    /// The certificate.
    pub certificate_pem: String,
    /// Its private key: keep it readable by its owner only.
    pub key_pem: String,
}

impl Authority {
    /// A node certificate for `name`, dialed at `names`, valid from now for
    /// `validity`.
    pub fn issue_node(
        &self,
        name: &str,
        names: &NodeNames,
        validity: Duration,
    ) -> Result<Credential, PkiError> {
        if names.dns.is_empty() && names.ips.is_empty() {
            return Err(PkiError::Invalid(
                "a node certificate needs at least one DNS name or IP address peers and clients dial".into(),
            ));
        }
        let identity = Identity::new(self.cluster(), Role::Node, name)?;
        let mut sans = Vec::new();
        for dns in &names.dns {
            let name = dns
                .clone()
                .try_into()
                .map_err(|_| PkiError::Invalid(format!("dns: {dns:?} is not a DNS name (ASCII only)")))?;
            sans.push(SanType::DnsName(name));
        }
        sans.extend(names.ips.iter().copied().map(SanType::IpAddress));
        let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(identity, sans, usages, validity)
    }

    /// A client certificate for `name`, valid from now for `validity`.
    pub fn issue_client(&self, name: &str, validity: Duration) -> Result<Credential, PkiError> {
        let identity = Identity::new(self.cluster(), Role::Client, name)?;
        self.sign(identity, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth], validity)
    }

    fn sign(
        &self,
        identity: Identity,
        mut sans: Vec<SanType>,
        usages: Vec<ExtendedKeyUsagePurpose>,
        validity: Duration,
    ) -> Result<Credential, PkiError> {
        if validity <= Duration::ZERO {
            return Err(PkiError::Invalid(format!("validity: must be positive, got {validity}")));
        }
        let uri = identity
            .to_string()
            .try_into()
            .map_err(|_| PkiError::Invalid(format!("{identity} cannot be written as a URI name")))?;
        // The identity is the certificate's one URI name; the common name
        // repeats it for people reading the certificate, and is never
        // trusted.
        sans.push(SanType::URI(uri));
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, "ConsensusDB");
        params.distinguished_name.push(DnType::CommonName, identity.to_string());
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = usages;
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        // A little slack for clocks slightly behind the issuer's.
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + validity;
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, self.issuer())?;
        Ok(Credential { identity, certificate_pem: certificate.pem(), key_pem: key.serialize_pem() })
    }
}

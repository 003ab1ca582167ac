//! Reading who a certificate speaks for. The identity is the
//! certificate's one `cdb://` URI name, parsed whole; the common name is
//! never consulted. The key usages must agree with the role, so a
//! certificate is a node's only if it can authenticate a server too.

use consensusdb_types::{Identity, Role};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::PkiError;

/// The identity of a DER certificate. Refused: no `cdb://` URI name, more
/// than one, one that is not an exact identity, or key usages that do not
/// fit the role (a node needs server and client authentication, a client
/// client authentication and not server authentication).
///
/// This reads the certificate only: whether a CA the server trusts signed
/// it, and whether it is in its validity period, is the TLS handshake's
/// check, done before this is asked.
pub fn identity_of(certificate_der: &[u8]) -> Result<Identity, PkiError> {
    let read = |why: String| PkiError::Read(why);
    let (rest, certificate) = X509Certificate::from_der(certificate_der)
        .map_err(|error| read(format!("not a certificate: {error}")))?;
    if !rest.is_empty() {
        return Err(read(format!("{} bytes after the certificate", rest.len())));
    }
    let names = certificate
        .subject_alternative_name()
        .map_err(|error| read(format!("its alternative names do not parse: {error}")))?
        .map(|extension| extension.value.general_names.clone())
        .unwrap_or_default();
    let mut identities = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("cdb:") => Some(*uri),
        _ => None,
    });
    let (Some(uri), None) = (identities.next(), identities.next()) else {
        return Err(read("a certificate must carry exactly one cdb:// identity".into()));
    };
    let identity = Identity::parse(uri)?;
    let usages = certificate
        .extended_key_usage()
        .map_err(|error| read(format!("its extended key usages do not parse: {error}")))?
        .map(|extension| (extension.value.server_auth, extension.value.client_auth));
    let (server, client) = usages.unwrap_or((false, false));
    let fits = match identity.role() {
        Role::Node => server && client,
        Role::Client => client && !server,
    };
    if !fits {
        return Err(read(format!(
            "{identity}: a {} certificate needs {}",
            identity.role().as_str(),
            match identity.role() {
                Role::Node => "both server and client authentication",
                Role::Client => "client authentication and not server authentication",
            }
        )));
    }
    Ok(identity)
}

/// The identity of a PEM certificate (the first in the text).
pub fn identity_of_pem(certificate_pem: &str) -> Result<Identity, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes())
        .map_err(|error| PkiError::Read(format!("not PEM: {error}")))?;
    identity_of(&pem.contents)
}

/// Refuses a certificate outside its validity period, saying which end it
/// is past: a node must not start serving (or dialing) with a certificate
/// every peer would refuse.
/// Returns when it expires.
pub fn check_valid_now(certificate_der: &[u8], what: &str) -> Result<String, PkiError> {
    check_valid_at(certificate_der, what, x509_parser::time::ASN1Time::now())
}

/// [`check_valid_now`] at `now`.
pub(crate) fn check_valid_at(
    certificate_der: &[u8],
    what: &str,
    now: x509_parser::time::ASN1Time,
) -> Result<String, PkiError> {
    let (_, certificate) = X509Certificate::from_der(certificate_der)
        .map_err(|error| PkiError::Read(format!("{what}: not a certificate: {error}")))?;
    let validity = certificate.validity();
    if now < validity.not_before {
        return Err(PkiError::Invalid(format!("{what} is not valid before {}", validity.not_before)));
    }
    if now > validity.not_after {
        return Err(PkiError::Invalid(format!("{what} expired on {}", validity.not_after)));
    }
    Ok(validity.not_after.to_string())
}

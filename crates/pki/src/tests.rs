//! The CA's certificates, end to end: made, saved, loaded, issued and read
//! back; and the certificates `identity_of` must refuse.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use consensusdb_types::Role;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, SanType};
use time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::issue::DEFAULT_VALIDITY;
use crate::{Authority, NodeNames, PkiError, identity_of, identity_of_pem};

fn names() -> NodeNames {
    NodeNames {
        dns: vec!["localhost".into(), "node-1.db.internal".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
    }
}

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
}

#[test]
fn a_node_and_a_client_carry_their_exact_identity_and_the_names_peers_dial() {
    let ca = Authority::create("prod-eu").unwrap();
    let node = ca.issue_node("node-1", &names(), DEFAULT_VALIDITY).unwrap();
    assert_eq!(identity_of_pem(&node.certificate_pem).unwrap().to_string(), "cdb://prod-eu/node/node-1");
    assert_eq!(node.identity.role(), Role::Node);
    let client = ca.issue_client("admin", DEFAULT_VALIDITY).unwrap();
    assert_eq!(identity_of_pem(&client.certificate_pem).unwrap().to_string(), "cdb://prod-eu/client/admin");

    let der = der(&node.certificate_pem);
    let (_, certificate) = X509Certificate::from_der(&der).unwrap();
    let san = certificate.subject_alternative_name().unwrap().unwrap().value.general_names.clone();
    let text: Vec<String> = san.iter().map(|name| format!("{name:?}")).collect();
    assert!(text.iter().any(|n| n.contains("node-1.db.internal")), "{text:?}");
    assert!(text.iter().any(|n| n.contains("localhost")), "{text:?}");
    assert!(
        san.iter().any(
            |n| matches!(n, x509_parser::extensions::GeneralName::IPAddress(ip) if *ip == [127, 0, 0, 1])
        ),
        "{text:?}"
    );
    let ca_der = self::der(ca.certificate_pem());
    let (_, ca_certificate) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(certificate.issuer(), ca_certificate.subject(), "signed by the cluster CA");
    assert!(ca_certificate.is_ca());
    assert!(!certificate.is_ca(), "a node can never sign certificates");
}

#[test]
fn a_saved_ca_issues_more_for_its_own_cluster_and_keeps_its_key_private() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("certs");
    let ca = Authority::create("staging").unwrap();
    let files = ca.save(&dir).unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&files.key), 0o600, "the CA key is its owner's only");
    assert_eq!(mode(&dir), 0o700, "a directory it creates is its owner's only");
    let error = ca.save(&dir).unwrap_err();
    assert!(error.to_string().contains("refusing to overwrite"), "{error}");

    let loaded = Authority::load_dir(&dir).unwrap();
    assert_eq!(loaded.cluster(), "staging", "the cluster comes from the CA itself");
    let client = loaded.issue_client("ci", DEFAULT_VALIDITY).unwrap();
    assert_eq!(identity_of_pem(&client.certificate_pem).unwrap().to_string(), "cdb://staging/client/ci");
    let (issued_der, original_der) = (der(&client.certificate_pem), der(ca.certificate_pem()));
    let (_, issued) = X509Certificate::from_der(&issued_der).unwrap();
    let (_, original) = X509Certificate::from_der(&original_der).unwrap();
    assert_eq!(issued.issuer(), original.subject());
}

#[test]
fn bad_names_and_validities_are_refused_with_the_reason() {
    let ca = Authority::create("c").unwrap();
    let cases: Vec<(Result<_, PkiError>, &str)> = vec![
        (ca.issue_node("n", &NodeNames::default(), DEFAULT_VALIDITY).map(|_| ()), "at least one DNS name"),
        (ca.issue_node("a/b", &names(), DEFAULT_VALIDITY).map(|_| ()), "name: may hold only"),
        (ca.issue_client("", DEFAULT_VALIDITY).map(|_| ()), "name: must be 1 to 64"),
        (ca.issue_client("x", Duration::ZERO).map(|_| ()), "validity: must be positive"),
        (
            ca.issue_node("n", &NodeNames { dns: vec!["nöde".into()], ips: vec![] }, DEFAULT_VALIDITY)
                .map(|_| ()),
            "is not a DNS name",
        ),
        (Authority::create("bad cluster").map(|_| ()), "cluster: may hold only"),
    ];
    for (result, expected) in cases {
        let error = result.expect_err("refused");
        assert!(error.to_string().contains(expected), "{error} should say {expected}");
    }
}

/// A certificate made by hand, signed by `ca`, to try `identity_of`'s
/// refusals.
fn crafted(ca: &Authority, uris: &[&str], usages: Vec<ExtendedKeyUsagePurpose>) -> Vec<u8> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris.iter().map(|uri| SanType::URI((*uri).try_into().unwrap())).collect();
    params.subject_alt_names.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    params.extended_key_usages = usages;
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, ca.issuer()).unwrap().der().to_vec()
}

#[test]
fn a_certificate_speaks_for_one_exact_identity_whose_role_its_key_usages_allow() {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let ca = Authority::create("c").unwrap();
    let good = crafted(&ca, &["cdb://c/node/n"], vec![ServerAuth, ClientAuth]);
    assert_eq!(identity_of(&good).unwrap().to_string(), "cdb://c/node/n");
    let refused = [
        (crafted(&ca, &[], vec![ClientAuth]), "exactly one cdb:// identity"),
        (crafted(&ca, &["cdb://c/client/a", "cdb://c/client/b"], vec![ClientAuth]), "exactly one"),
        (crafted(&ca, &["cdb://c/client/a/extra"], vec![ClientAuth]), "is not an identity"),
        (crafted(&ca, &["cdb://c/node/n"], vec![ServerAuth]), "needs both server and client"),
        (crafted(&ca, &["cdb://c/node/n"], vec![ClientAuth]), "needs both server and client"),
        (crafted(&ca, &["cdb://c/client/a"], vec![ServerAuth, ClientAuth]), "not server authentication"),
        (crafted(&ca, &["cdb://c/client/a"], vec![]), "client authentication"),
    ];
    for (certificate, expected) in refused {
        let error = identity_of(&certificate).unwrap_err();
        assert!(error.to_string().contains(expected), "{error} should say {expected}");
    }
    let error = identity_of(b"not a certificate").unwrap_err();
    assert!(error.to_string().contains("not a certificate"), "{error}");
    // Other URI names may sit beside the identity (a SPIFFE id, say); only
    // `cdb:` ones speak for the caller.
    let beside = crafted(&ca, &["spiffe://corp/app", "cdb://c/client/app"], vec![ClientAuth]);
    assert_eq!(identity_of(&beside).unwrap().to_string(), "cdb://c/client/app");
}

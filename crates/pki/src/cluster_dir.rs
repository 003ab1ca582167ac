//! A cluster directory as `consensusdb init` makes it, and as a node makes
//! one under its data directory on a zero-configuration first start: a
//! CA, one node's credential, the operator's admin client credential, and
//! the master key file that seals values at rest.
//!
//! File names follow the identity, `<role>-<name>.pem` / `.key`, so a
//! directory can hold every credential one CA issued without collisions.

use std::path::Path;

use consensusdb_types::Identity;
use time::Duration;

use crate::files::{CredentialFiles, credential_paths, write_credential};
use crate::{Authority, Credential, NodeNames, PkiError};

/// The name of the client credential made for the operator.
pub const ADMIN_CLIENT: &str = "admin";

/// The file stem of a credential for `identity`: `node-n1`, `client-admin`.
pub fn stem(identity: &Identity) -> String {
    format!("{}-{}", identity.role().as_str(), identity.name())
}

/// The paths of the admin client credential in `dir`.
pub fn admin_paths(dir: &Path) -> CredentialFiles {
    credential_paths(dir, &format!("client-{ADMIN_CLIENT}"))
}

/// What [`init`] wrote.
#[derive(Debug, Clone)]
pub struct Initialized {
    /// The CA's certificate and key.
    pub ca: CredentialFiles,
    /// The node's identity and files.
    pub node: (Identity, CredentialFiles),
    /// The admin client's identity and files.
    pub admin: (Identity, CredentialFiles),
    /// The master key file (mode 0600).
    pub master_key: std::path::PathBuf,
}

/// Makes a CA for `cluster` in `dir`, a certificate for node `node_name`
/// dialed at `names`, the admin client's, and the master key file (kept
/// if there is one). Refuses a directory that
/// already holds a CA: nodes may trust it already.
pub fn init(
    dir: &Path,
    cluster: &str,
    node_name: &str,
    names: &NodeNames,
    validity: Duration,
) -> Result<Initialized, PkiError> {
    if dir.join("ca.key").exists() || dir.join("ca.pem").exists() {
        return Err(PkiError::Invalid(format!(
            "{} already holds a CA; issue more certificates from it with `consensusdb cert`",
            dir.display()
        )));
    }
    let ca = Authority::create(cluster)?;
    // Issued before anything is written, so a bad name leaves no half-made
    // directory behind.
    let node = ca.issue_node(node_name, names, validity)?;
    let admin = ca.issue_client(ADMIN_CLIENT, validity)?;
    let ca_files = ca.save(dir)?;
    Ok(Initialized {
        ca: ca_files,
        node: save(dir, node)?,
        admin: save(dir, admin)?,
        master_key: crate::master_key_file::ensure(dir)?,
    })
}

/// Saves a credential under its [`stem`] in `dir`.
pub fn save(dir: &Path, credential: Credential) -> Result<(Identity, CredentialFiles), PkiError> {
    let files =
        write_credential(dir, &stem(&credential.identity), &credential.certificate_pem, &credential.key_pem)?;
    Ok((credential.identity, files))
}

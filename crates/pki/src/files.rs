//! The files of a credential directory: `<stem>.pem` (the certificate,
//! world-readable) and `<stem>.key` (its private key, mode 0600). Files
//! are never overwritten: running `init` twice must not replace a CA that
//! nodes already trust.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::PkiError;

/// Where a credential was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFiles {
    /// The certificate, PEM.
    pub certificate: PathBuf,
    /// The private key, PEM, mode 0600.
    pub key: PathBuf,
}

/// The paths of credential `stem` in `dir`.
pub fn credential_paths(dir: &Path, stem: &str) -> CredentialFiles {
    CredentialFiles { certificate: dir.join(format!("{stem}.pem")), key: dir.join(format!("{stem}.key")) }
}

/// Writes a certificate and its key as `<stem>.pem` and `<stem>.key` in
/// `dir` (created mode 0700 if missing). Refuses if either file exists.
pub fn write_credential(
    dir: &Path,
    stem: &str,
    certificate_pem: &str,
    key_pem: &str,
) -> Result<CredentialFiles, PkiError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PkiError::Io { path, source }
    };
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
    let files = credential_paths(dir, stem);
    for path in [&files.certificate, &files.key] {
        if path.exists() {
            return Err(PkiError::Invalid(format!(
                "{} exists; refusing to overwrite it (remove it first to replace it)",
                path.display()
            )));
        }
    }
    // The key first, created 0600 from the start: never a moment where it
    // is readable by others.
    write_new(&files.key, key_pem, 0o600).map_err(io(&files.key))?;
    write_new(&files.certificate, certificate_pem, 0o644).map_err(io(&files.certificate))?;
    Ok(files)
}

fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Reads a file of a credential directory.
pub fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io { path: path.to_path_buf(), source })
}

//! Client-side encryption for the client commands and the shell: the
//! password comes from `--password-file` or `CONSENSUSDB_PASSWORD`, never
//! from the command line (where `ps` and shell history would show it).
//! With it, `put` encrypts values on the client and reads open them; the
//! tenant's keychain is derived once per tenant and kept for the session.

use std::collections::HashMap;
use std::path::Path;

use consensusdb_client::{Client, Keychain};
use zeroize::Zeroizing;

use crate::cli::failure::CliError;

/// The environment variable that may hold the password itself.
pub const PASSWORD_ENV: &str = "CONSENSUSDB_PASSWORD";

/// The password, if one was given, and the keychains it opened so far.
#[derive(Default)]
pub struct Keychains {
    password: Option<Zeroizing<Vec<u8>>>,
    by_tenant: HashMap<String, Keychain>,
}

impl std::fmt::Debug for Keychains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keychains")
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("tenants", &self.by_tenant.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keychains {
    /// The password from `file` (its first line, without the line end),
    /// else from [`PASSWORD_ENV`]; none means no client-side encryption.
    pub fn from_sources(file: Option<&Path>) -> Result<Self, CliError> {
        let password = match file {
            Some(path) => {
                let text = Zeroizing::new(std::fs::read(path).map_err(|e| {
                    CliError::argument("--password-file", format!("cannot read {}: {e}", path.display()))
                })?);
                let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                Some(Zeroizing::new(line.to_vec()))
            }
            None => std::env::var_os(PASSWORD_ENV).map(|value| Zeroizing::new(value.into_encoded_bytes())),
        };
        if password.as_ref().is_some_and(|p| p.is_empty()) {
            let source = if file.is_some() { "--password-file" } else { PASSWORD_ENV };
            return Err(CliError::argument(source, "the password is empty"));
        }
        Ok(Self { password, by_tenant: HashMap::new() })
    }

    /// The keychain for `tenant`, derived on first use; `None` without a
    /// password. A writer (`create`) makes the tenant's keychain if it has
    /// none; a reader does not, and then gets `None`: a tenant without a
    /// keychain holds no values encrypted with one.
    pub async fn for_tenant(
        &mut self,
        client: &Client,
        tenant: &str,
        create: bool,
    ) -> Result<Option<Keychain>, CliError> {
        let Some(password) = &self.password else { return Ok(None) };
        if let Some(keychain) = self.by_tenant.get(tenant) {
            return Ok(Some(keychain.clone()));
        }
        let keychain = if create {
            Some(Keychain::from_password(client, tenant, password.as_slice()).await?)
        } else {
            Keychain::find(client, tenant, password.as_slice()).await?
        };
        if let Some(keychain) = &keychain {
            self.by_tenant.insert(tenant.to_string(), keychain.clone());
        }
        Ok(keychain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_the_files_first_line_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("cdb-password-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cret words\r\nignored\n").unwrap();
        let keychains = Keychains::from_sources(Some(&file)).unwrap();
        assert_eq!(keychains.password.as_deref().map(Vec::as_slice), Some(&b"s3cret words"[..]));
        assert!(!format!("{keychains:?}").contains("s3cret"), "Debug never shows the password");

        std::fs::write(&file, "\n").unwrap();
        let empty = Keychains::from_sources(Some(&file)).unwrap_err();
        assert!(empty.to_string().contains("--password-file"), "{empty}");
        let missing = Keychains::from_sources(Some(&dir.join("absent"))).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! The cluster's master key file, which seals values at rest: kept with
//! the CA, as the cluster's other secret. The keys and the file's text are
//! `consensusdb-seal`'s; this module reads and writes the file.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use consensusdb_seal::MasterKeys;

use crate::PkiError;

/// The file's name, beside the CA.
pub const MASTER_KEY_FILE: &str = "master.key";

/// The master key file in `dir`, made (mode 0600) with one new key if it
/// is not there yet; an existing file is never replaced. `dir` is made
/// mode 0700 if missing.
pub fn ensure(dir: &Path) -> Result<PathBuf, PkiError> {
    let path = dir.join(MASTER_KEY_FILE);
    let io = |source| PkiError::Io { path: path.clone(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            file.write_all(MasterKeys::generate().to_text().as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(path)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(path),
        Err(error) => Err(io(error)),
    }
}

/// Adds a new master key to the file at `path`, staged: nodes that load
/// the file unwrap with it, but keep wrapping new data keys under the
/// current key until it is promoted ([`promote_key`]). The older keys
/// stay. The file is replaced whole (written beside it, synced, then
/// renamed over it, mode 0600), never left half-written. Returns the new
/// key's id.
pub fn add_key(path: &Path) -> Result<u32, PkiError> {
    let (keys, _) = load(path)?;
    let added = keys.with_staged_key();
    replace(path, &added)?;
    Ok(added.ids().last().expect("a key was just added").0)
}

/// Makes the newest staged key of the file at `path` the current one,
/// which wraps new data keys: once every node holds it staged. Returns
/// its id.
pub fn promote_key(path: &Path) -> Result<u32, PkiError> {
    let (keys, _) = load(path)?;
    let promoted = keys.promoted().map_err(|error| invalid(path, &error))?;
    replace(path, &promoted)?;
    Ok(promoted.current().id().0)
}

/// Removes master key `id` from the file at `path`, once no data key
/// needs it any more (every one it wrapped is re-wrapped under a newer
/// key: `consensusdb keys rewrap`). The current key is refused.
pub fn retire_key(path: &Path, id: u32) -> Result<(), PkiError> {
    let (keys, _) = load(path)?;
    let retired = keys.retired(consensusdb_seal::KeyId(id)).map_err(|error| invalid(path, &error))?;
    replace(path, &retired)
}

fn invalid(path: &Path, error: &dyn std::fmt::Display) -> PkiError {
    PkiError::Invalid(format!("master key file {}: {error}", path.display()))
}

/// Writes `keys` over the file at `path`, whole or not at all.
fn replace(path: &Path, keys: &MasterKeys) -> Result<(), PkiError> {
    let io = |source| PkiError::Io { path: path.to_path_buf(), source };
    let staging = path.with_extension("key.new");
    // A staging file left by a crash is not trusted: made anew, 0600.
    let _ = std::fs::remove_file(&staging);
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&staging).map_err(io)?;
    file.write_all(keys.to_text().as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&staging, path).map_err(io)
}

/// Reads a master key file, and whether others than its owner may read
/// it (the caller warns: a Kubernetes secret volume mounts files 0644
/// unless told otherwise, so it is not refused).
pub fn load(path: &Path) -> Result<(MasterKeys, bool), PkiError> {
    let io = |source| PkiError::Io { path: path.to_path_buf(), source };
    let shared = std::fs::metadata(path).map_err(io)?.mode() & 0o077 != 0;
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
    let keys = MasterKeys::from_text(&text).map_err(|error| invalid(path, &error))?;
    Ok((keys, shared))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = ensure(&dir.path().join("certs")).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let first = std::fs::read(&path).unwrap();
        assert_eq!(ensure(&dir.path().join("certs")).unwrap(), path);
        assert_eq!(std::fs::read(&path).unwrap(), first, "never replaced");
        let (keys, shared) = load(&path).unwrap();
        assert_eq!((keys.ids().len(), shared), (1, false));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&path).unwrap().1, "a file others may read is reported");
        let older = std::fs::read_to_string(&path).unwrap();
        assert_eq!(add_key(&path).unwrap(), 2);
        let (added, _) = load(&path).unwrap();
        assert_eq!((added.ids().len(), added.current().id().0), (2, 1), "added staged");
        assert_eq!(promote_key(&path).unwrap(), 2);
        let (rotated, _) = load(&path).unwrap();
        assert_eq!((rotated.current().id().0, rotated.staged_ids().len()), (2, 0));
        let none = promote_key(&path).unwrap_err().to_string();
        assert!(none.contains("no staged master key"), "{none}");
        assert!(std::fs::read_to_string(&path).unwrap().starts_with(older.lines().next().unwrap()));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        retire_key(&path, 1).unwrap();
        assert_eq!(load(&path).unwrap().0.ids(), vec![consensusdb_seal::KeyId(2)]);
        let current = retire_key(&path, 2).unwrap_err().to_string();
        assert!(current.contains("current"), "{current}");
        assert_eq!(load(&path).unwrap().0.ids().len(), 1, "a refused retirement leaves the file as it was");
        std::fs::write(&path, "not a key\n").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("master.key") && error.contains("line 1"), "{error}");
    }
}

//! How tokens and grants are laid out in the system tenant, so the mesh
//! replicates them like any data:
//!
//! - `tokens / <id>`: one untimed record per token, JSON [`StoredToken`];
//!   revoking removes it (a tombstone, which replicates).
//! - `grants / <sha256 of "identity grant">`: one untimed record per
//!   grant, JSON [`StoredGrant`]; the minor key is derived from the pair,
//!   so adding a grant twice on two nodes lands on one record.

use consensusdb_types::{Grant, RecordKey, RowKey, SYSTEM_TENANT};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The region of tokens.
pub const TOKENS: &str = "tokens";
/// The region of grants.
pub const GRANTS: &str = "grants";

/// A token as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredToken {
    /// A label for people; several tokens may share it.
    pub name: String,
    /// The SHA-256 of the secret, in hex.
    pub hash: String,
    /// What the token allows, in the textual grant form.
    pub grants: Vec<String>,
    /// When it was made, in Unix milliseconds.
    pub created_ms: u64,
    /// Who made it.
    pub created_by: String,
}

/// A grant to a certificate identity, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredGrant {
    /// The identity, `cdb://<cluster>/client/<name>`.
    pub identity: String,
    /// The grant, in its textual form.
    pub grant: String,
}

/// The key of a token's record.
pub fn token_key(id: &str) -> RecordKey {
    RowKey::new(SYSTEM_TENANT, TOKENS, id).at(None)
}

/// The key of the record of `grant` to `identity`.
pub fn grant_key(identity: &str, grant: &Grant) -> RecordKey {
    let digest = Sha256::digest(format!("{identity} {grant}").as_bytes());
    RowKey::new(SYSTEM_TENANT, GRANTS, crate::token::hex(&digest)).at(None)
}

//! The key hierarchy: one cluster master key wraps each tenant's data
//! keys; data keys seal values (through their per-origin subkeys, see
//! [`crate::sealer`]). Key material is zeroized when dropped and never
//! printed.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::sealer::{NONCE_BYTES, Sealer};

pub use crate::key_id::{KEY_BYTES, KeyId};

/// 256 bits of key, zeroized on drop.
type Secret = Zeroizing<[u8; KEY_BYTES]>;

fn random_secret() -> Secret {
    Zeroizing::new(rand::random())
}

/// The cluster master key: wraps data keys, seals no value itself.
pub struct MasterKey {
    id: KeyId,
    key: Secret,
}

/// A tenant's data key, unwrapped.
pub struct DataKey {
    id: KeyId,
    key: Secret,
}

macro_rules! redacted_debug {
    ($type:ident) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($type)).field("id", &self.id).finish_non_exhaustive()
            }
        }
    };
}
redacted_debug!(MasterKey);
redacted_debug!(DataKey);

/// A data key sealed under a master key, safe to store and replicate.
///
/// Format 1: `format:u8 master_id:u32 data_id:u32 nonce:[u8; 12] sealed key + tag`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The master key that wrapped it.
    pub master_id: KeyId,
    /// The data key's id.
    pub data_id: KeyId,
    nonce: [u8; NONCE_BYTES],
    sealed: Vec<u8>,
}

const WRAPPED_FORMAT: u8 = 1;
const WRAPPED_BYTES: usize = 1 + 4 + 4 + NONCE_BYTES + KEY_BYTES + 16;

/// What a wrapped key is bound to: its tenant and both key ids, so a
/// wrapped key moved to another tenant or relabelled does not unwrap.
fn wrap_aad(tenant: &str, master_id: KeyId, data_id: KeyId) -> Vec<u8> {
    let mut aad = b"consensusdb/wrap/v1\0".to_vec();
    aad.extend_from_slice(&master_id.0.to_be_bytes());
    aad.extend_from_slice(&data_id.0.to_be_bytes());
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

impl MasterKey {
    /// A new master key from the operating system's random source.
    pub fn generate(id: KeyId) -> Self {
        Self { id, key: random_secret() }
    }

    /// A master key from its bytes (as read from its file).
    pub fn from_bytes(id: KeyId, bytes: [u8; KEY_BYTES]) -> Self {
        Self { id, key: Zeroizing::new(bytes) }
    }

    /// Its id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The key's bytes, to write to its file (mode 0600).
    pub fn expose_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.key
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&(*self.key).into())
    }

    /// Wraps `data` for `tenant`. The nonce is random: wraps are rare
    /// (one per data key made or re-wrapped), far below the 2^32
    /// random nonces one key may use.
    pub fn wrap(&self, tenant: &str, data: &DataKey) -> WrappedKey {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let aad = wrap_aad(tenant, self.id, data.id);
        let sealed = self
            .cipher()
            .encrypt(&nonce.into(), Payload { msg: data.key.as_slice(), aad: &aad })
            .expect("AES-GCM encryption of 32 bytes cannot fail");
        WrappedKey { master_id: self.id, data_id: data.id, nonce, sealed }
    }

    /// Unwraps a data key of `tenant`.
    pub fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<DataKey, SealError> {
        if wrapped.master_id != self.id {
            return Err(SealError::WrongKey { sealed: wrapped.master_id.0, given: self.id.0 });
        }
        let aad = wrap_aad(tenant, wrapped.master_id, wrapped.data_id);
        let opened = Zeroizing::new(
            self.cipher()
                .decrypt(&wrapped.nonce.into(), Payload { msg: &wrapped.sealed, aad: &aad })
                .map_err(|_| SealError::Tampered)?,
        );
        let key: [u8; KEY_BYTES] = opened.as_slice().try_into().map_err(|_| SealError::Tampered)?;
        Ok(DataKey::from_bytes(wrapped.data_id, key))
    }
}

impl DataKey {
    /// A new data key from the operating system's random source.
    pub fn generate(id: KeyId) -> Self {
        Self { id, key: random_secret() }
    }

    fn from_bytes(id: KeyId, bytes: [u8; KEY_BYTES]) -> Self {
        Self { id, key: Zeroizing::new(bytes) }
    }

    /// Its id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The sealer for values written at `origin` (its node id and
    /// incarnation, as bytes): see [`Sealer`].
    pub fn sealer_for(&self, origin: &[u8]) -> Sealer {
        Sealer::derive(self.id, &self.key, origin)
    }
}

impl WrappedKey {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAPPED_BYTES);
        out.push(WRAPPED_FORMAT);
        out.extend_from_slice(&self.master_id.0.to_be_bytes());
        out.extend_from_slice(&self.data_id.0.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Reads stored bytes back, checking format and length.
    pub fn decode(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != WRAPPED_BYTES {
            return Err(SealError::Malformed(format!(
                "a wrapped key is {WRAPPED_BYTES} bytes, not {}",
                bytes.len()
            )));
        }
        if bytes[0] != WRAPPED_FORMAT {
            return Err(SealError::Malformed(format!("unknown wrapped key format {}", bytes[0])));
        }
        let id = |at: usize| KeyId(u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")));
        Ok(Self {
            master_id: id(1),
            data_id: id(5),
            nonce: bytes[9..9 + NONCE_BYTES].try_into().expect("the nonce length"),
            sealed: bytes[9 + NONCE_BYTES..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_key_unwraps_only_for_its_tenant_under_its_master_key() {
        let master = MasterKey::generate(KeyId(1));
        let data = DataKey::generate(KeyId(7));
        let wrapped = WrappedKey::decode(&master.wrap("acme", &data).encode()).expect("round trips");
        let unwrapped = master.unwrap("acme", &wrapped).expect("unwraps");
        assert_eq!((unwrapped.id(), *unwrapped.key), (data.id(), *data.key));
        assert_eq!(master.unwrap("acmecorp", &wrapped).unwrap_err(), SealError::Tampered);
        let other = MasterKey::generate(KeyId(1));
        assert_eq!(other.unwrap("acme", &wrapped).unwrap_err(), SealError::Tampered);
        let rotated = MasterKey::generate(KeyId(2));
        assert!(matches!(rotated.unwrap("acme", &wrapped), Err(SealError::WrongKey { sealed: 1, given: 2 })));
        let mut relabelled = wrapped.encode();
        relabelled[8] ^= 1; // the data key id
        let relabelled = WrappedKey::decode(&relabelled).expect("still well formed");
        assert_eq!(master.unwrap("acme", &relabelled).unwrap_err(), SealError::Tampered);
        assert!(WrappedKey::decode(&wrapped.encode()[1..]).is_err());
    }

    #[test]
    fn keys_never_print_their_bytes() {
        let master = MasterKey::from_bytes(KeyId(3), [0xab; KEY_BYTES]);
        let shown = format!("{master:?} {:?}", DataKey::from_bytes(KeyId(4), [0xab; KEY_BYTES]));
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "), "{shown}");
    }
}

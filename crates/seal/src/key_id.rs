//! What names a key, and how long every key is: shared by the key
//! hierarchy and the sealer.

/// Bytes of every key.
pub const KEY_BYTES: usize = 32;

/// Which key: of a tenant's data keys, or of the master keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

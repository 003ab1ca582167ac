//! Layer 1 of ConsensusDB, beside the data model: sealing values, with no
//! I/O. The layers above decide which key seals what and where keys live;
//! this crate only makes and opens the bytes, so the scheme is in one
//! place and can be reviewed on its own.
//!
//! - [`keys`]: the cluster master key, per-tenant data keys, and data
//!   keys wrapped under the master key (AES-256-GCM, bound to their tenant).
//! - [`master_keys`]: the master keys a node holds (the newest wraps,
//!   older ones still unwrap) and their file.
//! - [`sealer`]: a data key's per-origin subkey (HKDF-SHA256), and values
//!   sealed with AES-256-GCM under it, with a nonce that never repeats
//!   under a key and the record's identity as associated data. The key id
//!   and nonce go where the record head reserves room for them
//!   (`types::head::Seal`); the stored value is the ciphertext and tag.
//!
//! # The nonce scheme, and its bound
//!
//! A value is sealed once, at its origin, after the writer has given its
//! log entry a seq. The key it is sealed under is the data key's subkey
//! for that origin (node id and incarnation), and the 96-bit nonce is the
//! entry's seq (64 bits) then the value's index in the entry (32 bits).
//! Seqs are dense and unique per origin incarnation, and a restore always
//! takes a new incarnation, so no (subkey, nonce) pair is ever used twice
//! and no counter needs to be stored. Each subkey seals at most 2^64
//! entries of 2^32 values: no message cap or rotation is needed for
//! nonces, unlike random 96-bit nonces (2^32 messages per key).

pub mod error;
mod key_id;
pub mod keys;
pub mod master_keys;
pub mod sealer;

pub use error::SealError;
pub use keys::{DataKey, KeyId, MasterKey, WrappedKey};
pub use master_keys::MasterKeys;
pub use sealer::{NONCE_BYTES, NonceParts, Sealed, Sealer, TAG_BYTES};

//! The keychain record: what another machine needs, besides the password,
//! to derive the same key. It is stored in the tenant itself, in the row
//! `_keychain/password`, so every node replicates it with the tenant's
//! data and every client with access to the tenant finds it.
//!
//! Format 1, 38 bytes, big-endian:
//!
//! ```text
//! format:u8 (1) algorithm:u8 (1 = Argon2id v1.3)
//! memory_kib:u32 iterations:u32 parallelism:u32 salt:[u8;16] check:[u8;8]
//! ```
//!
//! `check` is the fingerprint of the key the password derives, so a
//! wrong password is told apart from a damaged value before anything is
//! decrypted. The record comes from the server: its parameters are bounded
//! before any derivation runs, so a hostile record cannot make a client
//! spend gigabytes or hours.

use consensusdb_types::KeyFingerprint;

/// The region (table) of the tenant holding its keychain records.
pub const KEYCHAIN_REGION: &str = "_keychain";
/// The row (minorKey) of the password keychain's records.
pub const KEYCHAIN_ROW: &str = "password";

const FORMAT: u8 = 1;
const ARGON2ID_V13: u8 = 1;
const SALT_BYTES: usize = 16;
const RECORD_BYTES: usize = 2 + 12 + SALT_BYTES + KeyFingerprint::BYTES;

/// The most memory a stored record may ask a client to spend: 1 GiB.
const MAX_MEMORY_KIB: u32 = 1 << 20;
/// The most passes a stored record may ask for.
const MAX_ITERATIONS: u32 = 64;
/// The most lanes a stored record may ask for.
const MAX_PARALLELISM: u32 = 16;

/// Argon2id's cost: memory, passes and lanes.
///
/// The default, 64 MiB, 3 passes and 1 lane, is the second of RFC 9106's
/// recommended settings with one lane (the SDK derives on one thread): a
/// few hundred milliseconds on a current server core, once per
/// [`crate::Keychain`]. The parameters are chosen when a tenant's keychain
/// is created and stored with it; later derivations use the stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB (at least 8 per lane; at most 1 GiB).
    pub memory_kib: u32,
    /// Passes over the memory (1 to 64).
    pub iterations: u32,
    /// Lanes (1 to 16).
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

impl KdfParams {
    /// Checks the parameters against the bounds above and Argon2's own.
    pub(crate) fn argon2(&self) -> Result<argon2::Params, String> {
        if !(1..=MAX_PARALLELISM).contains(&self.parallelism) {
            return Err(format!("parallelism {} is not within 1 to {MAX_PARALLELISM}", self.parallelism));
        }
        if !(1..=MAX_ITERATIONS).contains(&self.iterations) {
            return Err(format!("iterations {} is not within 1 to {MAX_ITERATIONS}", self.iterations));
        }
        let least = 8 * self.parallelism;
        if !(least..=MAX_MEMORY_KIB).contains(&self.memory_kib) {
            return Err(format!("memory {} KiB is not within {least} KiB to 1 GiB", self.memory_kib));
        }
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| format!("Argon2 refuses the parameters: {e}"))
    }
}

/// One stored keychain: the derivation's salt and cost, and the
/// fingerprint the right password derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeychainRecord {
    pub params: KdfParams,
    // Spelled 16, not SALT_BYTES: the constant here trips a rustc 1.95
    // internal error (broken MIR) in a closure that captures a record.
    pub salt: [u8; 16],
    pub check: KeyFingerprint,
}

impl KeychainRecord {
    /// A record with a fresh random salt; `check` is filled in once the
    /// key is derived.
    pub fn fresh(params: KdfParams) -> Self {
        Self { params, salt: rand::random(), check: KeyFingerprint([0; KeyFingerprint::BYTES]) }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_BYTES);
        out.extend_from_slice(&[FORMAT, ARGON2ID_V13]);
        out.extend_from_slice(&self.params.memory_kib.to_be_bytes());
        out.extend_from_slice(&self.params.iterations.to_be_bytes());
        out.extend_from_slice(&self.params.parallelism.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.check.0);
        out
    }

    /// Decodes and bounds a stored record; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != RECORD_BYTES {
            return Err(format!("it is {} bytes, not {RECORD_BYTES}", bytes.len()));
        }
        if bytes[0] != FORMAT {
            return Err(format!("unknown keychain format {} (a newer SDK wrote it?)", bytes[0]));
        }
        if bytes[1] != ARGON2ID_V13 {
            return Err(format!("unknown key derivation {}", bytes[1]));
        }
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let params = KdfParams { memory_kib: u32_at(2), iterations: u32_at(6), parallelism: u32_at(10) };
        params.argon2()?;
        let salt = bytes[14..14 + SALT_BYTES].try_into().expect("16 bytes");
        let check = KeyFingerprint(bytes[14 + SALT_BYTES..].try_into().expect("8 bytes"));
        Ok(Self { params, salt, check })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_hostile_parameters_are_refused() {
        let record =
            KeychainRecord { check: KeyFingerprint([4; 8]), ..KeychainRecord::fresh(KdfParams::default()) };
        assert_eq!(KeychainRecord::decode(&record.encode()), Ok(record));
        assert_ne!(KeychainRecord::fresh(KdfParams::default()).salt, record.salt, "salts are random");

        let with = |params: KdfParams| KeychainRecord { params, ..record }.encode();
        let huge = with(KdfParams { memory_kib: u32::MAX, ..KdfParams::default() });
        assert!(KeychainRecord::decode(&huge).unwrap_err().contains("1 GiB"));
        let slow = with(KdfParams { iterations: 1_000_000, ..KdfParams::default() });
        assert!(KeychainRecord::decode(&slow).unwrap_err().contains("iterations"));
        let wide = with(KdfParams { parallelism: 0, ..KdfParams::default() });
        assert!(KeychainRecord::decode(&wide).unwrap_err().contains("parallelism"));
        let tiny = with(KdfParams { memory_kib: 4, ..KdfParams::default() });
        assert!(KeychainRecord::decode(&tiny).unwrap_err().contains("memory"));

        let mut bytes = record.encode();
        assert!(KeychainRecord::decode(&bytes[..20]).unwrap_err().contains("20 bytes"));
        bytes[0] = 2;
        assert!(KeychainRecord::decode(&bytes).unwrap_err().contains("format 2"));
        bytes[0] = 1;
        bytes[1] = 7;
        assert!(KeychainRecord::decode(&bytes).unwrap_err().contains("derivation 7"));
    }
}

//! One client key and the envelope it seals values in.
//!
//! The password and the stored record's salt and cost give a 32-byte root
//! through Argon2id. Two keys come out of the root by HKDF-SHA256, each for
//! one use: the values key, and the fingerprint (the record's check value,
//! and the head's marker).
//!
//! A value's envelope, format 1:
//!
//! ```text
//! format:u8 (1) codec:u8 nonce:[u8;24] ciphertext tag:[u8;16]
//! ```
//!
//! The value is compressed with `codec` first, then encrypted with
//! AES-256-GCM under a subkey of the values key made for this value from
//! the first 12 bytes of the random nonce, with the last 12 as the GCM
//! nonce. With 192 random bits a repeat is not a concern below 2^80
//! values, where plain GCM with random 96-bit nonces must stop at 2^32
//! values per key: an event store passes that. The associated data binds
//! the envelope to the key's fingerprint and to the record's full key, so
//! a server that moves a ciphertext onto another record, or swaps the
//! codec byte, makes it fail to open.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use consensusdb_types::key_codec::encode_key;
use consensusdb_types::limits::MAX_PAYLOAD_BYTES;
use consensusdb_types::{Compression, KeyFingerprint, RecordKey};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::keychain::params::KeychainRecord;

const FORMAT: u8 = 1;
const NONCE_BYTES: usize = 24;
const HEADER_BYTES: usize = 2 + NONCE_BYTES;
const TAG_BYTES: usize = 16;
/// Bytes an envelope adds to the compressed value.
pub const ENVELOPE_OVERHEAD: usize = HEADER_BYTES + TAG_BYTES;

const VALUES_INFO: &[u8] = b"consensusdb/client/v1/values";
const FINGERPRINT_INFO: &[u8] = b"consensusdb/client/v1/fingerprint";
const VALUE_SUBKEY_INFO: &[u8] = b"consensusdb/client/v1/value\0";

/// Why an envelope did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Not an envelope this SDK reads: the reason.
    Malformed(String),
    /// The tag does not verify: the bytes, the key or the record differ
    /// from what was sealed.
    Tampered,
}

/// A key derived from a password: it seals and opens values.
pub(crate) struct ClientKey {
    fingerprint: KeyFingerprint,
    values: Hkdf<Sha256>,
}

impl ClientKey {
    /// Runs Argon2id (slow on purpose: call it off the async reactor).
    pub fn derive(password: &[u8], record: &KeychainRecord) -> Result<Self, String> {
        let argon2 =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, record.params.argon2()?);
        let mut root = Zeroizing::new([0u8; 32]);
        argon2
            .hash_password_into(password, &record.salt, root.as_mut_slice())
            .map_err(|e| format!("Argon2 failed: {e}"))?;
        Ok(Self::from_root(&root))
    }

    pub(super) fn from_root(root: &[u8; 32]) -> Self {
        let root = Hkdf::<Sha256>::new(None, root);
        let mut values = Zeroizing::new([0u8; 32]);
        root.expand(VALUES_INFO, values.as_mut_slice()).expect("32 bytes is a valid HKDF output");
        let mut fingerprint = [0u8; KeyFingerprint::BYTES];
        root.expand(FINGERPRINT_INFO, &mut fingerprint).expect("8 bytes is a valid HKDF output");
        Self {
            fingerprint: KeyFingerprint(fingerprint),
            values: Hkdf::<Sha256>::from_prk(values.as_slice()).expect("32 bytes is a valid PRK"),
        }
    }

    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// The cipher for the value whose nonce is `nonce`.
    fn cipher(&self, nonce: &[u8; NONCE_BYTES]) -> Aes256Gcm {
        let mut info = [0u8; VALUE_SUBKEY_INFO.len() + 12];
        info[..VALUE_SUBKEY_INFO.len()].copy_from_slice(VALUE_SUBKEY_INFO);
        info[VALUE_SUBKEY_INFO.len()..].copy_from_slice(&nonce[..12]);
        let mut subkey = Zeroizing::new([0u8; 32]);
        self.values.expand(&info, subkey.as_mut_slice()).expect("32 bytes is a valid HKDF output");
        Aes256Gcm::new(&(*subkey).into())
    }

    /// The associated data: every part length-prefixed.
    fn associated_data(&self, key: &RecordKey, header: &[u8]) -> Vec<u8> {
        let record_key = encode_key(key);
        let mut aad = Vec::with_capacity(64 + record_key.len());
        for part in [VALUES_INFO, &self.fingerprint.0, &record_key, header] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }

    /// Seals `value` (already compressed with `codec`) for the record `key`.
    pub fn seal(&self, key: &RecordKey, codec: Compression, value: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let mut envelope = Vec::with_capacity(ENVELOPE_OVERHEAD + value.len());
        envelope.extend_from_slice(&[FORMAT, codec.code()]);
        envelope.extend_from_slice(&nonce);
        let aad = self.associated_data(key, &envelope);
        let mut body = Vec::with_capacity(value.len() + TAG_BYTES);
        body.extend_from_slice(value);
        self.cipher(&nonce)
            .encrypt_in_place(&gcm_nonce(&nonce).into(), &aad, &mut body)
            .expect("AES-GCM encrypts any value under the payload limit");
        envelope.extend_from_slice(&body);
        envelope
    }

    /// Opens an envelope sealed for the record `key` and decompresses it.
    pub fn open(&self, key: &RecordKey, envelope: &[u8]) -> Result<Vec<u8>, OpenError> {
        if envelope.len() < ENVELOPE_OVERHEAD {
            return Err(OpenError::Malformed(format!(
                "{} bytes, shorter than an envelope's {ENVELOPE_OVERHEAD}",
                envelope.len()
            )));
        }
        let (header, body) = envelope.split_at(HEADER_BYTES);
        if header[0] != FORMAT {
            return Err(OpenError::Malformed(format!("unknown envelope format {}", header[0])));
        }
        let codec = Compression::from_code(header[1])
            .ok_or_else(|| OpenError::Malformed(format!("unknown codec {}", header[1])))?;
        let nonce: [u8; NONCE_BYTES] = header[2..].try_into().expect("24 bytes");
        let aad = self.associated_data(key, header);
        let mut plain = body.to_vec();
        self.cipher(&nonce)
            .decrypt_in_place(&gcm_nonce(&nonce).into(), &aad, &mut plain)
            .map_err(|_| OpenError::Tampered)?;
        match codec {
            Compression::None => Ok(plain),
            codec => codec
                .decompress(&plain, MAX_PAYLOAD_BYTES)
                .map_err(|e| OpenError::Malformed(format!("authentic, but does not decompress: {e}"))),
        }
    }
}

/// The GCM nonce: the last 12 bytes of the value's nonce (the first 12
/// made its subkey).
fn gcm_nonce(nonce: &[u8; NONCE_BYTES]) -> [u8; 12] {
    nonce[12..].try_into().expect("24 - 12 = 12 bytes")
}

#[cfg(test)]
mod tests {
    use consensusdb_types::RowKey;

    use super::*;

    fn key(minor: &str) -> RecordKey {
        RowKey::new("acme", "ORDERS", minor).at(None)
    }

    #[test]
    fn a_value_opens_only_under_its_key_and_record_and_never_as_other_bytes() {
        let a = ClientKey::from_root(&[1; 32]);
        let b = ClientKey::from_root(&[2; 32]);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), ClientKey::from_root(&[1; 32]).fingerprint(), "derived, not random");

        let (codec, compressed) = Compression::Lz4.compress(&b"secret ".repeat(100));
        assert_eq!(codec, Compression::Lz4);
        let envelope = a.seal(&key("m"), codec, &compressed);
        assert_eq!(envelope.len(), compressed.len() + ENVELOPE_OVERHEAD);
        assert!(!envelope.windows(7).any(|w| w == b"secret "), "no plaintext in the envelope");
        assert_eq!(a.open(&key("m"), &envelope).unwrap(), b"secret ".repeat(100));
        assert_ne!(a.seal(&key("m"), codec, &compressed), envelope, "a fresh nonce each time");

        assert_eq!(b.open(&key("m"), &envelope), Err(OpenError::Tampered), "another key");
        assert_eq!(a.open(&key("n"), &envelope), Err(OpenError::Tampered), "another record");
        for at in [1, 5, envelope.len() - 1] {
            let mut flipped = envelope.clone();
            flipped[at] ^= 1;
            assert!(a.open(&key("m"), &flipped).is_err(), "byte {at} flipped");
        }
        assert!(matches!(a.open(&key("m"), &envelope[..10]), Err(OpenError::Malformed(_))));
        let mut future = envelope.clone();
        future[0] = 9;
        assert!(matches!(a.open(&key("m"), &future), Err(OpenError::Malformed(m)) if m.contains("format 9")));
    }
}

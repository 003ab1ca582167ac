//! Sealing values: AES-256-GCM under a data key's per-origin subkey, with
//! the nonce built from the value's place in its origin's log (see the
//! crate documentation for why it never repeats) and the record's
//! identity as associated data, so a sealed value copied onto another
//! record, or into another tenant, does not open.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::key_id::{KEY_BYTES, KeyId};

/// Bytes of a nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes sealing adds to a value: the authentication tag.
pub const TAG_BYTES: usize = 16;

/// A sealed value: the key id and nonce (what the record's head keeps),
/// and the ciphertext with its tag (what is stored as the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The data key that sealed it.
    pub key_id: KeyId,
    /// Its nonce.
    pub nonce: [u8; NONCE_BYTES],
    /// Ciphertext, then the tag.
    pub ciphertext: Vec<u8>,
}

/// Where a value sits in its origin's log: what its nonce is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceParts {
    /// The log entry's seq.
    pub seq: u64,
    /// The value's index within the entry (a batch holds many).
    pub index: u32,
}

impl NonceParts {
    /// The 96-bit nonce: seq, then index, big-endian. The record head
    /// keeps it, and a replica rebuilds it from the log entry, through the
    /// same function ([`consensusdb_types::Seal::nonce_at`]).
    pub fn nonce(self) -> [u8; NONCE_BYTES] {
        consensusdb_types::Seal::nonce_at(self.seq, self.index)
    }
}

/// Seals and opens values of one origin under one data key.
pub struct Sealer {
    key_id: KeyId,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// Runs `work` on the associated data: each part length-prefixed, so no
/// two different lists of parts make the same bytes. Built in a buffer
/// each thread keeps: sealing and opening allocate nothing for it.
fn with_associated_data<T>(parts: &[&[u8]], work: impl FnOnce(&[u8]) -> T) -> T {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut aad = scratch.borrow_mut();
        aad.clear();
        for part in parts {
            let len = u32::try_from(part.len())
                .expect("associated data parts are keys and stamps, far below 4 GiB");
            aad.extend_from_slice(&len.to_be_bytes());
            aad.extend_from_slice(part);
        }
        work(&aad)
    })
}

impl Sealer {
    /// The subkey of `data_key` for `origin`: HKDF-SHA256 with the origin
    /// in the info, so every origin seals under its own key and the nonce
    /// space of one origin never meets another's.
    pub(crate) fn derive(key_id: KeyId, data_key: &[u8; KEY_BYTES], origin: &[u8]) -> Self {
        let mut info = b"consensusdb/seal/v1/origin\0".to_vec();
        info.extend_from_slice(origin);
        let mut subkey = Zeroizing::new([0u8; KEY_BYTES]);
        Hkdf::<Sha256>::new(None, data_key)
            .expand(&info, subkey.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self { key_id, cipher: Aes256Gcm::new(&(*subkey).into()) }
    }

    /// The data key this sealer belongs to.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Seals `plaintext` at `at` in the origin's log, bound to `aad` (the
    /// encoded record key, the key id and the stamp: whatever identifies
    /// the record, which the opener gives again).
    /// The value is encrypted in a copy, in one allocation.
    pub fn seal(&self, at: NonceParts, aad: &[&[u8]], plaintext: &[u8]) -> Sealed {
        let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_BYTES);
        ciphertext.extend_from_slice(plaintext);
        let nonce = self.seal_in_place(at, aad, &mut ciphertext);
        Sealed { key_id: self.key_id, nonce, ciphertext }
    }

    /// [`Sealer::seal`] over `value` itself: it becomes the ciphertext and
    /// its tag, with no allocation when it has room for the tag. Returns
    /// the nonce.
    pub fn seal_in_place(&self, at: NonceParts, aad: &[&[u8]], value: &mut Vec<u8>) -> [u8; NONCE_BYTES] {
        let nonce = at.nonce();
        with_associated_data(aad, |aad| {
            self.cipher
                .encrypt_in_place(&nonce.into(), aad, value)
                .expect("AES-GCM encrypts any value under the payload limit")
        });
        nonce
    }

    /// Opens a value sealed with this sealer's key and origin for the
    /// record `aad` identifies; anything else is an error, never bytes.
    pub fn open(&self, sealed: &Sealed, aad: &[&[u8]]) -> Result<Vec<u8>, SealError> {
        self.open_parts(sealed.key_id, &sealed.nonce, &sealed.ciphertext, aad)
    }

    /// [`Sealer::open`] on borrowed parts (the key id and nonce from a
    /// record's head, the ciphertext as read), copying the bytes once.
    pub fn open_parts(
        &self,
        key_id: KeyId,
        nonce: &[u8; NONCE_BYTES],
        ciphertext: &[u8],
        aad: &[&[u8]],
    ) -> Result<Vec<u8>, SealError> {
        if key_id != self.key_id {
            return Err(SealError::WrongKey { sealed: key_id.0, given: self.key_id.0 });
        }
        if ciphertext.len() < TAG_BYTES {
            return Err(SealError::Malformed(format!(
                "{} bytes, shorter than the {TAG_BYTES}-byte tag",
                ciphertext.len()
            )));
        }
        let mut plaintext = ciphertext.to_vec();
        with_associated_data(aad, |aad| self.cipher.decrypt_in_place(&(*nonce).into(), aad, &mut plaintext))
            .map_err(|_| SealError::Tampered)?;
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::keys::DataKey;

    const AT: NonceParts = NonceParts { seq: 41, index: 2 };

    fn aad<'a>(key: &'a [u8], stamp: &'a [u8]) -> [&'a [u8]; 2] {
        [key, stamp]
    }

    #[test]
    fn a_value_opens_only_as_the_record_it_was_sealed_for() {
        let key = DataKey::generate(KeyId(1));
        let sealer = key.sealer_for(b"origin-a");
        let sealed = sealer.seal(AT, &aad(b"acme/R/m", b"stamp-1"), b"the value");
        assert_eq!(sealed.ciphertext.len(), TAG_BYTES + b"the value".len());
        assert_eq!((sealed.key_id, sealed.nonce), (KeyId(1), AT.nonce()));
        assert_eq!(sealer.open(&sealed, &aad(b"acme/R/m", b"stamp-1")).unwrap(), b"the value");
        assert_eq!(sealer.open(&sealed, &aad(b"acme/R/n", b"stamp-1")).unwrap_err(), SealError::Tampered);
        assert_eq!(sealer.open(&sealed, &aad(b"acme/R/m", b"stamp-2")).unwrap_err(), SealError::Tampered);
        // Lengths are part of the associated data: moving a byte between
        // parts changes it.
        assert_eq!(sealer.open(&sealed, &aad(b"acme/R/", b"mstamp-1")).unwrap_err(), SealError::Tampered);
        let other_origin = key.sealer_for(b"origin-b");
        assert_eq!(
            other_origin.open(&sealed, &aad(b"acme/R/m", b"stamp-1")).unwrap_err(),
            SealError::Tampered
        );
        let other_key = DataKey::generate(KeyId(2)).sealer_for(b"origin-a");
        assert!(matches!(
            other_key.open(&sealed, &aad(b"acme/R/m", b"stamp-1")),
            Err(SealError::WrongKey { .. })
        ));
    }

    #[test]
    fn nonces_follow_seq_and_index_and_differ_for_each_value() {
        let key = DataKey::generate(KeyId(1));
        let sealer = key.sealer_for(b"o");
        let first = sealer.seal(NonceParts { seq: 1, index: 0 }, &[], b"same");
        let second = sealer.seal(NonceParts { seq: 1, index: 1 }, &[], b"same");
        let next = sealer.seal(NonceParts { seq: 2, index: 0 }, &[], b"same");
        assert_ne!(first.ciphertext, second.ciphertext);
        assert_ne!(first.ciphertext, next.ciphertext);
        assert_eq!(second.nonce, NonceParts { seq: 1, index: 1 }.nonce());
        assert!(!first.ciphertext.windows(4).any(|w| w == b"same"), "no plaintext in what is stored");
        let short = Sealed { ciphertext: vec![0; TAG_BYTES - 1], ..first };
        assert!(matches!(sealer.open(&short, &[]), Err(SealError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn any_flipped_bit_is_refused_never_opened_to_other_bytes(
            value in proptest::collection::vec(any::<u8>(), 0..300),
            position in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let sealer = DataKey::generate(KeyId(9)).sealer_for(b"o");
            let sealed = sealer.seal(AT, &[b"k"], &value);
            prop_assert_eq!(sealer.open(&sealed, &[b"k"]).unwrap(), value);
            // A flipped bit in the stored bytes or in the nonce.
            let mut changed = sealed.clone();
            let at = position.index(changed.ciphertext.len() + NONCE_BYTES);
            match at.checked_sub(NONCE_BYTES) {
                Some(at) => changed.ciphertext[at] ^= 1 << bit,
                None => changed.nonce[at] ^= 1 << bit,
            }
            prop_assert_eq!(sealer.open(&changed, &[b"k"]).unwrap_err(), SealError::Tampered);
        }
    }
}

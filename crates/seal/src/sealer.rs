//! Sealing values: AES-256-GCM under a data key's per-origin subkey, with
//! the nonce built from the value's place in its origin's log (see the
//! crate documentation for why it never repeats) and the record's
//! identity as associated data, so a sealed value copied onto another
//! record, or into another tenant, does not open.
//!
//! The AES-256-GCM here is ring's (the assembly BoringSSL uses, which
//! rustls already links for TLS), not the `aes-gcm` crate's: on the
//! short values an event store holds it is two to four times faster (the
//! `sealing` micro-benchmark), and every read of a sealed value pays it.
//! The bytes are the same standard AES-256-GCM either way; a property
//! test below opens with `aes-gcm` what ring seals, and the reverse.

use hkdf::Hkdf;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
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
    /// ring calls a key "less safe" when the caller, not ring, makes sure
    /// no nonce repeats under it: the nonce scheme above does.
    cipher: LessSafeKey,
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

/// The subkey of `data_key` for `origin`.
fn origin_subkey(data_key: &[u8; KEY_BYTES], origin: &[u8]) -> Zeroizing<[u8; KEY_BYTES]> {
    let mut info = b"consensusdb/seal/v1/origin\0".to_vec();
    info.extend_from_slice(origin);
    let mut subkey = Zeroizing::new([0u8; KEY_BYTES]);
    Hkdf::<Sha256>::new(None, data_key)
        .expand(&info, subkey.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    subkey
}

impl Sealer {
    /// The subkey of `data_key` for `origin`: HKDF-SHA256 with the origin
    /// in the info, so every origin seals under its own key and the nonce
    /// space of one origin never meets another's.
    pub(crate) fn derive(key_id: KeyId, data_key: &[u8; KEY_BYTES], origin: &[u8]) -> Self {
        let subkey = origin_subkey(data_key, origin);
        let key = UnboundKey::new(&AES_256_GCM, subkey.as_slice()).expect("32 bytes is an AES-256 key");
        Self { key_id, cipher: LessSafeKey::new(key) }
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
                .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), value)
                .expect("AES-GCM seals any value under its 64 GiB limit")
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
        let opened_len = with_associated_data(aad, |aad| {
            let nonce = Nonce::assume_unique_for_key(*nonce);
            self.cipher.open_in_place(nonce, Aad::from(aad), &mut plaintext).map(|opened| opened.len())
        })
        .map_err(|_| SealError::Tampered)?;
        plaintext.truncate(opened_len);
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

    /// The `aes-gcm` crate's AES-256-GCM under `sealer`'s subkey.
    fn reference_cipher(data_key: &[u8; KEY_BYTES], origin: &[u8]) -> aes_gcm::Aes256Gcm {
        use aes_gcm::KeyInit;
        aes_gcm::Aes256Gcm::new(&(*origin_subkey(data_key, origin)).into())
    }

    proptest! {
        /// ring's AES-256-GCM is the standard one: what it seals, the
        /// `aes-gcm` crate opens, and the reverse, byte for byte.
        #[test]
        fn sealed_bytes_are_standard_aes_256_gcm(
            data_key in any::<[u8; KEY_BYTES]>(),
            origin in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::collection::vec(any::<u8>(), 0..600),
            record in proptest::collection::vec(any::<u8>(), 0..80),
            seq in any::<u64>(),
            index in any::<u32>(),
        ) {
            use aes_gcm::aead::AeadInOut;
            let sealer = Sealer::derive(KeyId(3), &data_key, &origin);
            let reference = reference_cipher(&data_key, &origin);
            let at = NonceParts { seq, index };
            let sealed = sealer.seal(at, &[&record], &value);
            let aad = with_associated_data(&[&record], <[u8]>::to_vec);
            let mut expected = value.clone();
            reference.encrypt_in_place(&at.nonce().into(), &aad, &mut expected).unwrap();
            prop_assert_eq!(&sealed.ciphertext, &expected);
            let mut opened = expected;
            reference.decrypt_in_place(&at.nonce().into(), &aad, &mut opened).unwrap();
            prop_assert_eq!(&opened, &value);
            prop_assert_eq!(sealer.open(&sealed, &[&record]).unwrap(), value);
        }

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

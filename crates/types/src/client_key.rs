//! The fingerprint of a client-side encryption key.
//!
//! A value the client encrypted before sending it (the SDK's password
//! keychain) carries the fingerprint of the key that encrypted it. The
//! node cannot read such a value and never tries to: it stores the
//! fingerprint in the record's head, replicates it with the value, and
//! returns it with every read, so a reader knows the value is ciphertext
//! and which key opens it. The fingerprint is derived one-way from the key
//! (the SDK says how); it reveals nothing that opens the value.

use std::fmt;

use crate::FieldError;

/// The 8-byte fingerprint of a client-side key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint(pub [u8; KeyFingerprint::BYTES]);

impl KeyFingerprint {
    /// Bytes of a fingerprint.
    pub const BYTES: usize = 8;

    /// The fingerprint in `bytes`, which must be exactly [`Self::BYTES`]
    /// long; the error names `field`.
    pub fn from_slice(bytes: &[u8], field: &str) -> Result<Self, FieldError> {
        <[u8; Self::BYTES]>::try_from(bytes).map(Self).map_err(|_| {
            FieldError::new(field, format!("a key fingerprint is {} bytes, not {}", Self::BYTES, bytes.len()))
        })
    }

    /// The fingerprint written as 16 lowercase hex digits; the error names
    /// `field`.
    pub fn from_hex(text: &str, field: &str) -> Result<Self, FieldError> {
        let invalid = || FieldError::new(field, format!("{text:?} is not {} hex digits", Self::BYTES * 2));
        if text.len() != Self::BYTES * 2 || !text.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; Self::BYTES];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_errors_name_the_field() {
        let fingerprint = KeyFingerprint([0, 1, 0xab, 0xcd, 0xef, 0x10, 0x99, 0xff]);
        assert_eq!(fingerprint.to_string(), "0001abcdef1099ff");
        assert_eq!(KeyFingerprint::from_hex("0001abcdef1099ff", "f").unwrap(), fingerprint);
        assert_eq!(KeyFingerprint::from_hex("0001ABCDEF1099FF", "f").unwrap(), fingerprint);
        for bad in ["", "0001", "0001abcdef1099fg", "0001abcdef1099ff00", "é001abcdef1099f"] {
            assert_eq!(KeyFingerprint::from_hex(bad, "head.fp").unwrap_err().field, "head.fp", "{bad}");
        }
        assert_eq!(KeyFingerprint::from_slice(&fingerprint.0, "f").unwrap(), fingerprint);
        let short = KeyFingerprint::from_slice(&[1, 2, 3], "put.client_key").unwrap_err();
        assert_eq!(short.field, "put.client_key");
        assert!(short.message.contains("8 bytes, not 3"), "{short}");
    }
}

//! The master keys a node holds, and their file format.
//!
//! The newest key wraps every new data key; older ones stay to unwrap
//! what they wrapped until a rotation has re-wrapped it all. The file is
//! text, one key per line, so an operator can see how many keys it holds
//! and append a rotated one without tools:
//!
//! ```text
//! # comment lines and blank lines are ignored
//! consensusdb-master-key <id> <64 hex digits>
//! ```

use zeroize::Zeroizing;

use crate::error::SealError;
use crate::keys::{DataKey, KEY_BYTES, KeyId, MasterKey, WrappedKey};

/// The word each key line starts with.
const LINE_TAG: &str = "consensusdb-master-key";

/// One or more master keys; the one with the highest id is current.
#[derive(Debug)]
pub struct MasterKeys {
    /// Sorted by id, never empty, ids unique.
    keys: Vec<MasterKey>,
}

impl MasterKeys {
    /// A set of one new key, id 1.
    pub fn generate() -> Self {
        Self { keys: vec![MasterKey::generate(KeyId(1))] }
    }

    /// The key that wraps new data keys.
    pub fn current(&self) -> &MasterKey {
        self.keys.last().expect("a master key set is never empty")
    }

    /// The ids held, oldest first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(MasterKey::id).collect()
    }

    /// These keys and a new current one (the next id): what a master-key
    /// rotation writes back to the file.
    pub fn rotated(&self) -> Self {
        let mut keys: Vec<MasterKey> =
            self.keys.iter().map(|key| MasterKey::from_bytes(key.id(), *key.expose_bytes())).collect();
        keys.push(MasterKey::generate(KeyId(self.current().id().0 + 1)));
        Self { keys }
    }

    /// These keys without key `id`: what retiring an old master key
    /// writes back to the file, once every data key it wrapped has been
    /// re-wrapped under a newer one. The current key cannot be retired
    /// (it wraps new data keys): add a newer one first.
    pub fn retired(&self, id: KeyId) -> Result<Self, SealError> {
        if id == self.current().id() {
            return Err(SealError::CurrentMasterKey { id: id.0 });
        }
        if !self.keys.iter().any(|key| key.id() == id) {
            return Err(SealError::NoSuchMasterKey { id: id.0 });
        }
        let keys = self
            .keys
            .iter()
            .filter(|key| key.id() != id)
            .map(|key| MasterKey::from_bytes(key.id(), *key.expose_bytes()))
            .collect();
        Ok(Self { keys })
    }

    /// Unwraps a data key of `tenant` with whichever key wrapped it.
    pub fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<DataKey, SealError> {
        let master = self
            .keys
            .iter()
            .find(|key| key.id() == wrapped.master_id)
            .ok_or(SealError::UnknownMasterKey { id: wrapped.master_id.0 })?;
        master.unwrap(tenant, wrapped)
    }

    /// The file's text. Holds the keys: zeroized when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::from(
            "# ConsensusDB master keys. Secret: anyone with this file and a copy of a data directory\n\
             # can read its values. Keep it mode 0600, apart from backups of the data.\n",
        ));
        for key in &self.keys {
            text.push_str(LINE_TAG);
            text.push(' ');
            text.push_str(&key.id().0.to_string());
            text.push(' ');
            for byte in key.expose_bytes() {
                text.push(char::from_digit(u32::from(byte >> 4), 16).expect("a nibble"));
                text.push(char::from_digit(u32::from(byte & 0xf), 16).expect("a nibble"));
            }
            text.push('\n');
        }
        text
    }

    /// Reads the file's text. Errors name the line, never its key bytes.
    pub fn from_text(text: &str) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| SealError::Malformed(format!("line {number}: {why}"));
            let mut words = line.split_whitespace();
            if words.next() != Some(LINE_TAG) {
                return Err(bad(&format!("expected `{LINE_TAG} <id> <64 hex digits>`")));
            }
            let id = words
                .next()
                .and_then(|id| id.parse::<u32>().ok())
                .filter(|&id| id > 0)
                .ok_or_else(|| bad("the key id must be a number from 1"))?;
            let hex = words.next().ok_or_else(|| bad("the key is missing"))?;
            if words.next().is_some() {
                return Err(bad("unexpected text after the key"));
            }
            let bytes = decode_key_hex(hex).ok_or_else(|| bad("the key must be 64 hex digits"))?;
            keys.push(MasterKey::from_bytes(KeyId(id), *bytes));
        }
        if keys.is_empty() {
            return Err(SealError::Malformed("no master key in the file".into()));
        }
        keys.sort_by_key(MasterKey::id);
        if let Some(pair) = keys.windows(2).find(|pair| pair[0].id() == pair[1].id()) {
            return Err(SealError::Malformed(format!("master key id {} appears twice", pair[0].id().0)));
        }
        Ok(Self { keys })
    }
}

/// 64 hex digits as 32 bytes, zeroized when dropped.
fn decode_key_hex(hex: &str) -> Option<Zeroizing<[u8; KEY_BYTES]>> {
    if hex.len() != 2 * KEY_BYTES || !hex.is_ascii() {
        return None;
    }
    let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
    for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).expect("two hex digits make a byte");
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_the_newest_key_is_current() {
        let keys = MasterKeys::generate().rotated();
        assert_eq!(keys.ids(), vec![KeyId(1), KeyId(2)]);
        let read = MasterKeys::from_text(&keys.to_text()).expect("reads back");
        assert_eq!(read.ids(), keys.ids());
        assert_eq!(read.current().expose_bytes(), keys.current().expose_bytes());
        // What a key wrapped still unwraps after a later rotation.
        let wrapped = keys.current().wrap("acme", &DataKey::generate(KeyId(3)));
        let later = read.rotated();
        assert_eq!(later.current().id(), KeyId(3));
        assert_eq!(later.unwrap("acme", &wrapped).expect("unwraps").id(), KeyId(3));
        let mut relabelled = wrapped.encode();
        relabelled[1..5].copy_from_slice(&9u32.to_be_bytes());
        let relabelled = WrappedKey::decode(&relabelled).expect("well formed");
        assert_eq!(later.unwrap("acme", &relabelled).unwrap_err(), SealError::UnknownMasterKey { id: 9 });
    }

    #[test]
    fn an_old_key_retires_but_the_current_one_does_not() {
        let keys = MasterKeys::generate().rotated().rotated();
        let retired = keys.retired(KeyId(1)).expect("an old key retires");
        assert_eq!(retired.ids(), vec![KeyId(2), KeyId(3)]);
        assert_eq!(retired.current().expose_bytes(), keys.current().expose_bytes());
        assert_eq!(retired.rotated().current().id(), KeyId(4), "ids are never reused");
        assert_eq!(keys.retired(KeyId(3)).unwrap_err(), SealError::CurrentMasterKey { id: 3 });
        assert_eq!(retired.retired(KeyId(1)).unwrap_err(), SealError::NoSuchMasterKey { id: 1 });
    }

    #[test]
    fn bad_files_are_refused_naming_the_line_not_the_key() {
        let key = "ab".repeat(32);
        for (text, why) in [
            ("", "no master key"),
            ("# only a comment\n", "no master key"),
            ("consensusdb-master-key 1 abc\n", "line 1: the key must be 64 hex digits"),
            (&format!("consensusdb-master-key 0 {key}\n"), "line 1: the key id"),
            (&format!("\nsomething 1 {key}\n"), "line 2: expected"),
            (&format!("consensusdb-master-key 1 {key} extra\n"), "unexpected text"),
            (&format!("consensusdb-master-key 1 {key}\nconsensusdb-master-key 1 {key}\n"), "appears twice"),
        ] {
            let error = MasterKeys::from_text(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text:?}: {error}");
            assert!(!error.contains(&key), "the key leaked into {error}");
        }
    }
}

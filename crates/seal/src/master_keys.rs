//! The master keys a node holds, and their file format.
//!
//! The newest active key wraps every new data key; older ones stay to
//! unwrap what they wrapped until a rotation has re-wrapped it all. A
//! *staged* key only unwraps: a rotation adds the new key staged, to
//! every node, before any node wraps under it, so no node ever meets a
//! data key wrapped under a master key it does not hold yet. The file is
//! text, one key per line, so an operator can see how many keys it holds
//! and which one is staged:
//!
//! ```text
//! # comment lines and blank lines are ignored
//! consensusdb-master-key <id> <64 hex digits>
//! consensusdb-master-key <id> <64 hex digits> staged
//! consensusdb-master-keys-issued <highest id ever issued>
//! ```
//!
//! The last line appears once a staged key was withdrawn: ids are never
//! reused, so two files never name different keys under one id.

use zeroize::Zeroizing;

use crate::error::SealError;
use crate::keys::{DataKey, KEY_BYTES, KeyId, MasterKey, WrappedKey};

/// The word each key line starts with.
const LINE_TAG: &str = "consensusdb-master-key";

/// The word that ends the line of a staged key.
const STAGED: &str = "staged";

/// The word of the line that holds the highest id ever issued, when it is
/// above every id held.
const ISSUED_TAG: &str = "consensusdb-master-keys-issued";

/// One or more master keys; the active one with the highest id is
/// current.
#[derive(Debug)]
pub struct MasterKeys {
    /// Sorted by id, ids unique, at least one active.
    keys: Vec<HeldKey>,
    /// The highest id ever issued: a withdrawn staged key's id is not
    /// issued again.
    issued: u32,
}

#[derive(Debug)]
struct HeldKey {
    key: MasterKey,
    /// Unwraps, never wraps (until promoted).
    staged: bool,
}

impl HeldKey {
    fn copy(&self) -> Self {
        Self { key: MasterKey::from_bytes(self.key.id(), *self.key.expose_bytes()), staged: self.staged }
    }
}

impl MasterKeys {
    /// A set of one new key, id 1.
    pub fn generate() -> Self {
        Self { keys: vec![HeldKey { key: MasterKey::generate(KeyId(1)), staged: false }], issued: 1 }
    }

    /// The key that wraps new data keys: the newest active one.
    pub fn current(&self) -> &MasterKey {
        &self.keys.iter().rev().find(|held| !held.staged).expect("a master key set has an active key").key
    }

    /// The ids held, staged or not, oldest first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(|held| held.key.id()).collect()
    }

    /// The ids of the staged keys, oldest first.
    pub fn staged_ids(&self) -> Vec<KeyId> {
        self.keys.iter().filter(|held| held.staged).map(|held| held.key.id()).collect()
    }

    /// Whether it holds `key` itself: the same id and the same bytes.
    pub fn holds(&self, key: &MasterKey) -> bool {
        self.find(key.id()).is_some_and(|held| held.expose_bytes() == key.expose_bytes())
    }

    /// Refuses `other` if a key id of both names different bytes in each:
    /// then one of them is another cluster's file, or damaged.
    pub fn agrees_with(&self, other: &MasterKeys) -> Result<(), SealError> {
        let differs = |held: &&HeldKey| {
            other.find(held.key.id()).is_some_and(|theirs| theirs.expose_bytes() != held.key.expose_bytes())
        };
        match self.keys.iter().find(differs) {
            Some(held) => Err(SealError::DifferentMasterKey { id: held.key.id().0 }),
            None => Ok(()),
        }
    }

    fn highest_held(&self) -> u32 {
        self.keys.last().expect("never empty").key.id().0
    }

    fn find(&self, id: KeyId) -> Option<&MasterKey> {
        self.keys.iter().find(|held| held.key.id() == id).map(|held| &held.key)
    }

    /// These keys and a new staged one (the next id): the first step of a
    /// master-key rotation. It unwraps at once, and wraps once promoted.
    pub fn with_staged_key(&self) -> Self {
        let mut keys: Vec<HeldKey> = self.keys.iter().map(HeldKey::copy).collect();
        let next = KeyId(self.issued + 1);
        keys.push(HeldKey { key: MasterKey::generate(next), staged: true });
        Self { keys, issued: next.0 }
    }

    /// These keys with the newest staged one made active, and so current:
    /// the second step of a rotation, once every node holds it staged.
    pub fn promoted(&self) -> Result<Self, SealError> {
        let current = self.current().id();
        let mut keys: Vec<HeldKey> = self.keys.iter().map(HeldKey::copy).collect();
        let staged = keys.iter_mut().rev().find(|held| held.staged).ok_or(SealError::NoStagedMasterKey)?;
        if staged.key.id() < current {
            // It would not become current: the newest active key stays.
            return Err(SealError::NoStagedMasterKey);
        }
        staged.staged = false;
        Ok(Self { keys, issued: self.issued })
    }

    /// These keys and a new current one at once: a rotation in one step,
    /// for a single node (or where every node reads one shared file).
    pub fn rotated(&self) -> Self {
        self.with_staged_key().promoted().expect("a key was just staged")
    }

    /// These keys without key `id`: what retiring an old master key
    /// writes back to the file, once every data key it wrapped has been
    /// re-wrapped under a newer one, or what withdraws a staged key. The
    /// current key cannot be retired (it wraps new data keys): promote a
    /// newer one first.
    pub fn retired(&self, id: KeyId) -> Result<Self, SealError> {
        if id == self.current().id() {
            return Err(SealError::CurrentMasterKey { id: id.0 });
        }
        if self.find(id).is_none() {
            return Err(SealError::NoSuchMasterKey { id: id.0 });
        }
        let keys = self.keys.iter().filter(|held| held.key.id() != id).map(HeldKey::copy).collect();
        Ok(Self { keys, issued: self.issued })
    }

    /// Unwraps a data key of `tenant` with whichever key wrapped it,
    /// staged or not.
    pub fn unwrap(&self, tenant: &str, wrapped: &WrappedKey) -> Result<DataKey, SealError> {
        let master =
            self.find(wrapped.master_id).ok_or(SealError::UnknownMasterKey { id: wrapped.master_id.0 })?;
        master.unwrap(tenant, wrapped)
    }

    /// The file's text. Holds the keys: zeroized when dropped.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::from(
            "# ConsensusDB master keys. Secret: anyone with this file and a copy of a data directory\n\
             # can read its values. Keep it mode 0600, apart from backups of the data.\n",
        ));
        for held in &self.keys {
            text.push_str(LINE_TAG);
            text.push(' ');
            text.push_str(&held.key.id().0.to_string());
            text.push(' ');
            for byte in held.key.expose_bytes() {
                text.push(char::from_digit(u32::from(byte >> 4), 16).expect("a nibble"));
                text.push(char::from_digit(u32::from(byte & 0xf), 16).expect("a nibble"));
            }
            if held.staged {
                text.push(' ');
                text.push_str(STAGED);
            }
            text.push('\n');
        }
        if self.issued > self.highest_held() {
            text.push_str(&format!("{ISSUED_TAG} {}\n", self.issued));
        }
        text
    }

    /// Reads the file's text. Errors name the line, never its key bytes.
    pub fn from_text(text: &str) -> Result<Self, SealError> {
        let mut keys = Vec::new();
        let mut issued = 0;
        for (number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| SealError::BadKeyFile(format!("line {number}: {why}"));
            let mut words = line.split_whitespace();
            if let Some(rest) = line.strip_prefix(ISSUED_TAG) {
                issued =
                    rest.trim().parse::<u32>().map_err(|_| bad("the highest id issued must be a number"))?;
                continue;
            }
            if words.next() != Some(LINE_TAG) {
                return Err(bad(&format!("expected `{LINE_TAG} <id> <64 hex digits> [{STAGED}]`")));
            }
            let id = words
                .next()
                .and_then(|id| id.parse::<u32>().ok())
                .filter(|&id| id > 0)
                .ok_or_else(|| bad("the key id must be a number from 1"))?;
            let hex = words.next().ok_or_else(|| bad("the key is missing"))?;
            let staged = match words.next() {
                None => false,
                Some(STAGED) => true,
                Some(_) => return Err(bad(&format!("after the key, only `{STAGED}` may follow"))),
            };
            if words.next().is_some() {
                return Err(bad("unexpected text after the key"));
            }
            let bytes = decode_key_hex(hex).ok_or_else(|| bad("the key must be 64 hex digits"))?;
            keys.push(HeldKey { key: MasterKey::from_bytes(KeyId(id), *bytes), staged });
        }
        if keys.is_empty() {
            return Err(SealError::BadKeyFile("no master key in the file".into()));
        }
        if keys.iter().all(|held| held.staged) {
            return Err(SealError::BadKeyFile(
                "every master key in the file is staged: one must be active to wrap new data keys".into(),
            ));
        }
        keys.sort_by_key(|held| held.key.id());
        if let Some(pair) = keys.windows(2).find(|pair| pair[0].key.id() == pair[1].key.id()) {
            return Err(SealError::BadKeyFile(format!("master key id {} appears twice", pair[0].key.id().0)));
        }
        let keys = Self { keys, issued: 0 };
        Ok(Self { issued: issued.max(keys.highest_held()), ..keys })
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
    fn a_staged_key_unwraps_but_wraps_nothing_until_promoted() {
        let keys = MasterKeys::generate();
        let staged = keys.with_staged_key();
        assert_eq!((staged.ids(), staged.staged_ids()), (vec![KeyId(1), KeyId(2)], vec![KeyId(2)]));
        assert_eq!(staged.current().id(), KeyId(1), "a staged key does not wrap");
        let read = MasterKeys::from_text(&staged.to_text()).expect("reads back");
        assert_eq!((read.ids(), read.staged_ids()), (staged.ids(), staged.staged_ids()));
        assert!(staged.to_text().lines().last().unwrap().ends_with(" staged"));

        let promoted = read.promoted().expect("a staged key is promoted");
        assert_eq!((promoted.current().id(), promoted.staged_ids()), (KeyId(2), vec![]));
        // What the promoted key wraps, a node still holding it staged
        // unwraps: the point of staging it everywhere first.
        let wrapped = promoted.current().wrap("acme", &DataKey::generate(KeyId(7)));
        assert_eq!(staged.unwrap("acme", &wrapped).expect("unwraps").id(), KeyId(7));
        assert_eq!(promoted.promoted().unwrap_err(), SealError::NoStagedMasterKey);
        let withdrawn = staged.retired(KeyId(2)).expect("a staged key is withdrawn");
        assert_eq!(withdrawn.ids(), vec![KeyId(1)]);
        let withdrawn = MasterKeys::from_text(&withdrawn.to_text()).expect("reads back");
        assert_eq!(
            withdrawn.with_staged_key().ids(),
            vec![KeyId(1), KeyId(3)],
            "a withdrawn key's id is never issued again, even from the file"
        );
        assert_eq!(staged.with_staged_key().current().id(), KeyId(1));
        assert_eq!(staged.with_staged_key().ids().last(), Some(&KeyId(3)), "ids count staged keys too");
    }

    #[test]
    fn sets_that_name_different_bytes_under_one_id_disagree() {
        let ours = MasterKeys::generate().with_staged_key();
        let promoted = ours.promoted().unwrap();
        ours.agrees_with(&promoted).expect("the same keys, staged or not");
        assert!(promoted.holds(ours.current()));
        let foreign = MasterKeys::generate();
        assert_eq!(ours.agrees_with(&foreign).unwrap_err(), SealError::DifferentMasterKey { id: 1 });
        assert!(!foreign.holds(ours.current()));
        // Disjoint ids cannot disagree.
        ours.agrees_with(&promoted.retired(KeyId(1)).unwrap()).expect("no shared id differs");
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
            (&format!("consensusdb-master-key 1 {key} extra\n"), "only `staged` may follow"),
            (&format!("consensusdb-master-key 1 {key} staged extra\n"), "unexpected text"),
            (&format!("consensusdb-master-key 1 {key} staged\n"), "one must be active"),
            (&format!("consensusdb-master-key 1 {key}\nconsensusdb-master-key 1 {key}\n"), "appears twice"),
        ] {
            let error = MasterKeys::from_text(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text:?}: {error}");
            assert!(!error.contains(&key), "the key leaked into {error}");
        }
    }
}

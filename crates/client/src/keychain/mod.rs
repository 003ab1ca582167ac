//! Client-side encryption with a password keychain: values the server
//! stores, replicates and backs up without ever seeing them in the clear.
//!
//! - [`Keychain::from_password`] derives a key from a password with
//!   Argon2id. The salt and cost live in a record of the tenant itself
//!   (`_keychain/password`), made by the first client to ask, so the same
//!   password on any machine derives the same key. The record also holds
//!   the key's fingerprint: a wrong password is refused at once, and is
//!   never mistaken for damaged data.
//! - [`crate::Record::encrypt`] compresses the value, then encrypts it
//!   with AES-256-GCM, on the client. The request carries the key's
//!   fingerprint, which the node keeps in the record's head and returns
//!   with every read ([`crate::Head::client_key`]). The node stores the
//!   ciphertext as it came: it never compresses it again.
//! - A client given the keychain ([`crate::Client::with_keychain`]) opens
//!   such values in every read. Without it, a read of one fails with
//!   `FAILED_PRECONDITION`; with a keychain that lacks the key (another
//!   password), `UNAUTHENTICATED`; a value that fails authentication,
//!   `DATA_LOSS`. Never ciphertext passed off as the value. A `raw()` read
//!   returns the stored envelope.
//!
//! Key names, regions, minor keys and TimeUUIDs stay in the clear (the
//! server orders and ranges over them), as do heads: sizes, times, expiry.

mod envelope;
mod params;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use consensusdb_types::{Compression, ErrorCode, KeyFingerprint, RecordKey};

pub(crate) use envelope::ClientKey;
pub use envelope::ENVELOPE_OVERHEAD;
pub(crate) use params::KeychainRecord;
pub use params::{KEYCHAIN_REGION, KEYCHAIN_ROW, KdfParams};

use crate::error::{Error, Result};
use envelope::OpenError;

/// A tenant's client-side keys, derived from a password. Cheap to clone.
///
/// ```no_run
/// use consensusdb_client::{Client, Keychain, Record, RecordKey, TimeUuid};
///
/// # async fn run(client: Client) -> Result<(), consensusdb_client::Error> {
/// let keychain = Keychain::from_password(&client, "acme", "correct horse battery staple").await?;
/// let key = RecordKey::builder().major("acme").region("NOTES").minor("n-1").timestamp(TimeUuid::now()).build();
/// client.put(Record::new(key.clone(), "for our eyes only").encrypt(&keychain)).await?;
///
/// let reader = client.with_keychain(keychain);
/// let note = reader.get(key).await?.expect("written above");
/// assert_eq!(note.value, b"for our eyes only");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Keychain {
    inner: Arc<Inner>,
}

struct Inner {
    tenant: String,
    /// Oldest keychain record first; the first encrypts.
    keys: Vec<ClientKey>,
}

impl fmt::Debug for Keychain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keychain")
            .field("tenant", &self.inner.tenant)
            .field("fingerprints", &self.fingerprints())
            .finish()
    }
}

impl PartialEq for Keychain {
    fn eq(&self, other: &Self) -> bool {
        self.inner.tenant == other.inner.tenant && self.fingerprints() == other.fingerprints()
    }
}

impl Eq for Keychain {}

impl Keychain {
    /// A keychain of `tenant` holding `keys`, oldest keychain record
    /// first (it encrypts); `None` without keys.
    pub(crate) fn from_keys(tenant: String, keys: Vec<ClientKey>) -> Option<Self> {
        (!keys.is_empty()).then(|| Self { inner: Arc::new(Inner { tenant, keys }) })
    }

    /// The tenant whose records this keychain encrypts.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The fingerprint of the key new values are encrypted with.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.inner.keys[0].fingerprint()
    }

    /// The fingerprints of every key this keychain opens.
    pub fn fingerprints(&self) -> Vec<KeyFingerprint> {
        self.inner.keys.iter().map(ClientKey::fingerprint).collect()
    }

    /// Compresses `value` with `codec` (kept raw if that is no smaller)
    /// and seals it for the record `key`; `field` names the key in errors.
    pub(crate) fn seal(
        &self,
        key: &RecordKey,
        codec: Compression,
        value: &[u8],
        field: &str,
    ) -> Result<Vec<u8>> {
        if key.row.major != self.inner.tenant {
            return Err(consensusdb_types::FieldError::new(
                field,
                format!(
                    "is in tenant {:?}, but the keychain is tenant {:?}'s",
                    key.row.major, self.inner.tenant
                ),
            )
            .into());
        }
        let (codec, compressed) = codec.compress(value);
        Ok(self.inner.keys[0].seal(key, codec, &compressed))
    }

    /// Opens the value of the record `key`, which the key `fingerprint`
    /// sealed.
    fn open(&self, record: &RecordKey, fingerprint: KeyFingerprint, value: &[u8]) -> Result<Vec<u8>> {
        let key = self.inner.keys.iter().find(|key| key.fingerprint() == fingerprint).ok_or_else(|| {
            Error::local(
                ErrorCode::Unauthenticated,
                format!(
                    "{} was encrypted with client key {fingerprint}, which this keychain (keys {}) does not \
                     hold: it was made from another password",
                    describe(record),
                    self.fingerprints().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        key.open(record, value).map_err(|error| {
            let why = match error {
                OpenError::Tampered => "fails authentication: it was damaged or altered".to_string(),
                OpenError::Malformed(why) => format!("is not a client-side envelope: {why}"),
            };
            Error::local(ErrorCode::DataLoss, format!("the encrypted value of {} {why}", describe(record)))
        })
    }
}

/// The keychains a client opens values with, by tenant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keychains(BTreeMap<String, Keychain>);

impl Keychains {
    pub fn with(&self, keychain: Keychain) -> Self {
        let mut all = self.0.clone();
        all.insert(keychain.tenant().to_string(), keychain);
        Self(all)
    }

    /// The plaintext of a value read in full: `value` itself unless
    /// the head says the client encrypted it (`client_key`), else opened
    /// with the keychain of the record's tenant.
    pub fn open(
        &self,
        key: &RecordKey,
        client_key: Option<KeyFingerprint>,
        value: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let Some(fingerprint) = client_key else { return Ok(value) };
        let keychain = self.0.get(&key.row.major).ok_or_else(|| {
            Error::local(
                ErrorCode::FailedPrecondition,
                format!(
                    "{} is encrypted on the client (key {fingerprint}): read it with tenant {:?}'s keychain \
                     (Client::with_keychain in the SDK, --password-file in the CLI), or ask for the raw \
                     envelope",
                    describe(key),
                    key.row.major
                ),
            )
        })?;
        keychain.open(key, fingerprint, &value)
    }
}

/// A record as error messages name it.
pub(crate) fn describe(key: &RecordKey) -> String {
    let row = format!("{}/{}/{}", key.row.major, key.row.region, key.row.minor);
    match key.time {
        Some(time) => format!("record {row}/{time}"),
        None => format!("the untimed record of {row}"),
    }
}

#[cfg(test)]
mod tests {
    use consensusdb_types::RowKey;

    use super::*;

    fn keychain(tenant: &str, roots: &[u8]) -> Keychain {
        let keys = roots.iter().map(|&root| ClientKey::from_root(&[root; 32])).collect();
        Keychain::from_keys(tenant.to_string(), keys).expect("keys")
    }

    #[test]
    fn each_failure_to_open_has_its_own_code_and_names_the_record() {
        let key = RowKey::new("acme", "R", "m").at(None);
        let acme = keychain("acme", &[1]);
        let sealed = acme.seal(&key, Compression::Snappy, b"the plaintext", "key.major_key").expect("sealed");
        let by_acme = Some(acme.fingerprint());
        let with = |keychain: &Keychain| Keychains::default().with(keychain.clone());
        assert_eq!(with(&acme).open(&key, by_acme, sealed.clone()).expect("opens"), b"the plaintext");

        let no_keychain = Keychains::default().open(&key, by_acme, sealed.clone()).unwrap_err();
        assert_eq!(no_keychain.code(), ErrorCode::FailedPrecondition);
        assert!(no_keychain.message().contains("the untimed record of acme/R/m"), "{no_keychain}");

        let other_password = with(&keychain("acme", &[2])).open(&key, by_acme, sealed.clone()).unwrap_err();
        assert_eq!(other_password.code(), ErrorCode::Unauthenticated);
        assert!(other_password.message().contains(&acme.fingerprint().to_string()), "{other_password}");

        // A keychain holding both keys (two records made at once) opens
        // values under either, and encrypts with the first.
        let both = keychain("acme", &[2, 1]);
        with(&both).open(&key, by_acme, sealed.clone()).expect("the second key opens it");
        assert_eq!(both.fingerprint(), keychain("acme", &[2]).fingerprint());

        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x40;
        let damaged = with(&acme).open(&key, by_acme, tampered).unwrap_err();
        assert_eq!(damaged.code(), ErrorCode::DataLoss);
        assert!(damaged.message().contains("fails authentication"), "{damaged}");
        let malformed = with(&acme).open(&key, by_acme, sealed[..5].to_vec()).unwrap_err();
        assert_eq!(malformed.code(), ErrorCode::DataLoss);
        let moved = RowKey::new("acme", "R", "other").at(None);
        assert_eq!(
            with(&acme).open(&moved, by_acme, sealed.clone()).unwrap_err().code(),
            ErrorCode::DataLoss
        );

        let clear = Keychains::default().open(&key, None, sealed.clone()).expect("a value in the clear");
        assert_eq!(clear, sealed, "is left alone");

        let globex = RowKey::new("globex", "R", "m").at(None);
        let misplaced = acme.seal(&globex, Compression::None, b"v", "records[2].key.major_key").unwrap_err();
        assert_eq!(misplaced.field(), Some("records[2].key.major_key"));
    }
}

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
mod stored;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use consensusdb_types::{Compression, ErrorCode, KeyFingerprint, RecordKey};
use zeroize::Zeroizing;

pub use envelope::ENVELOPE_OVERHEAD;
pub use params::{KEYCHAIN_REGION, KEYCHAIN_ROW, KdfParams};

use crate::Client;
use crate::error::{Error, Result};
use crate::record::StoredRecord;
use envelope::{ClientKey, OpenError};
use params::KeychainRecord;
use stored::{create, derive_all, read_records};

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
    /// The keychain `password` opens for `tenant`, made with the default
    /// [`KdfParams`] if the tenant has none yet (which needs write access
    /// to the tenant). Runs Argon2id, a few hundred milliseconds of one
    /// core, on the blocking pool: make one keychain and keep it.
    ///
    /// A password that does not open the tenant's keychain fails with
    /// `UNAUTHENTICATED`.
    pub async fn from_password(
        client: &Client,
        tenant: impl Into<String>,
        password: impl AsRef<[u8]>,
    ) -> Result<Self> {
        Self::from_password_with(client, tenant, password, KdfParams::default()).await
    }

    /// [`Keychain::from_password`], with the cost to use if this call
    /// creates the tenant's keychain (an existing keychain keeps its own).
    pub async fn from_password_with(
        client: &Client,
        tenant: impl Into<String>,
        password: impl AsRef<[u8]>,
        params: KdfParams,
    ) -> Result<Self> {
        let tenant = tenant.into();
        let password = Arc::new(Zeroizing::new(password.as_ref().to_vec()));
        let mut stored = read_records(client, &tenant).await?;
        let mut made = None;
        if stored.is_empty() {
            params
                .argon2()
                .map_err(|why| Error::local(ErrorCode::InvalidArgument, format!("params: {why}")))?;
            let (record, key) = create(client, &tenant, &password, params).await?;
            // Another client may have made one at the same moment: both
            // stand, and every client encrypts with the oldest.
            stored = read_records(client, &tenant).await?;
            if !stored.contains(&record) {
                stored.push(record);
            }
            made = Some((record, key));
        }
        Self::unlock(tenant, password, stored, made).await
    }

    /// The keychain `password` opens for `tenant`, or `None` if the tenant
    /// has none yet. Unlike [`Keychain::from_password`] it never writes, so
    /// it suits a reader without write access.
    pub async fn find(
        client: &Client,
        tenant: impl Into<String>,
        password: impl AsRef<[u8]>,
    ) -> Result<Option<Self>> {
        let tenant = tenant.into();
        let stored = read_records(client, &tenant).await?;
        if stored.is_empty() {
            return Ok(None);
        }
        let password = Arc::new(Zeroizing::new(password.as_ref().to_vec()));
        Self::unlock(tenant, password, stored, None).await.map(Some)
    }

    /// Derives the keys of `stored` on the blocking pool; refuses a
    /// password that opens none of them.
    async fn unlock(
        tenant: String,
        password: Arc<Zeroizing<Vec<u8>>>,
        stored: Vec<KeychainRecord>,
        made: Option<(KeychainRecord, ClientKey)>,
    ) -> Result<Self> {
        let keys = tokio::task::spawn_blocking(move || derive_all(&password, stored, made))
            .await
            .map_err(|e| Error::local(ErrorCode::Internal, format!("the key derivation stopped: {e}")))??;
        if keys.is_empty() {
            return Err(Error::local(
                ErrorCode::Unauthenticated,
                format!(
                    "the password does not open tenant {tenant:?}'s keychain (it was made with another password)"
                ),
            ));
        }
        Ok(Self { inner: Arc::new(Inner { tenant, keys }) })
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

    /// Opens the value of `record`, which the key `fingerprint` sealed.
    fn open(&self, record: &StoredRecord, fingerprint: KeyFingerprint) -> Result<Vec<u8>> {
        let key = self.inner.keys.iter().find(|key| key.fingerprint() == fingerprint).ok_or_else(|| {
            Error::local(
                ErrorCode::Unauthenticated,
                format!(
                    "{} was encrypted with client key {fingerprint}, which this keychain (keys {}) does not \
                     hold: it was made from another password",
                    describe(&record.key),
                    self.fingerprints().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        key.open(&record.key, &record.value).map_err(|error| {
            let why = match error {
                OpenError::Tampered => "fails authentication: it was damaged or altered".to_string(),
                OpenError::Malformed(why) => format!("is not a client-side envelope: {why}"),
            };
            Error::local(
                ErrorCode::DataLoss,
                format!("the encrypted value of {} {why}", describe(&record.key)),
            )
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

    /// Replaces a client-encrypted value read in full with its plaintext.
    pub fn open(&self, record: &mut StoredRecord) -> Result<()> {
        let Some(fingerprint) = record.head.client_key else { return Ok(()) };
        let keychain = self.0.get(&record.key.row.major).ok_or_else(|| {
            Error::local(
                ErrorCode::FailedPrecondition,
                format!(
                    "{} is encrypted on the client (key {fingerprint}): read it with tenant {:?}'s keychain \
                     (Client::with_keychain in the SDK, --password-file in the CLI), or ask for the raw \
                     envelope",
                    describe(&record.key),
                    record.key.row.major
                ),
            )
        })?;
        record.value = keychain.open(record, fingerprint)?;
        Ok(())
    }
}

pub(super) fn describe(key: &RecordKey) -> String {
    let row = format!("{}/{}/{}", key.row.major, key.row.region, key.row.minor);
    match key.time {
        Some(time) => format!("record {row}/{time}"),
        None => format!("the untimed record of {row}"),
    }
}

#[cfg(test)]
mod tests {
    use consensusdb_types::{NodeId, Origin, RowKey, Stamp};

    use super::*;
    use crate::head::Head;

    fn keychain(tenant: &str, roots: &[u8]) -> Keychain {
        let keys = roots.iter().map(|&root| ClientKey::from_root(&[root; 32])).collect();
        Keychain { inner: Arc::new(Inner { tenant: tenant.to_string(), keys }) }
    }

    /// The record a read returns for an envelope `keychain` sealed.
    fn read_back(keychain: &Keychain, value: &[u8]) -> StoredRecord {
        let key = RowKey::new("acme", "R", "m").at(None);
        let envelope = keychain.seal(&key, Compression::Snappy, value, "key.major_key").expect("sealed");
        let head = Head {
            stamp: Stamp { hlc: 1 << 16, origin: Origin { node: NodeId(1), incarnation: 1 } },
            seq: 1,
            write_time_ms: 1,
            expires_at_ms: None,
            stored_size: envelope.len() as u32,
            compression: Compression::None,
            tombstone: false,
            client_key: Some(keychain.fingerprint()),
        };
        StoredRecord { key, head, value: envelope }
    }

    #[test]
    fn each_failure_to_open_has_its_own_code_and_names_the_record() {
        let acme = keychain("acme", &[1]);
        let mut record = read_back(&acme, b"the plaintext");
        Keychains::default().with(acme.clone()).open(&mut record).expect("opens");
        assert_eq!(record.value, b"the plaintext");

        let sealed = read_back(&acme, b"the plaintext");
        let no_keychain = Keychains::default().open(&mut sealed.clone()).unwrap_err();
        assert_eq!(no_keychain.code(), ErrorCode::FailedPrecondition);
        assert!(no_keychain.message().contains("the untimed record of acme/R/m"), "{no_keychain}");

        let other_password =
            Keychains::default().with(keychain("acme", &[2])).open(&mut sealed.clone()).unwrap_err();
        assert_eq!(other_password.code(), ErrorCode::Unauthenticated);
        assert!(other_password.message().contains(&acme.fingerprint().to_string()), "{other_password}");

        // A keychain holding both keys (two records made at once) opens
        // values under either, and encrypts with the first.
        let both = keychain("acme", &[2, 1]);
        Keychains::default().with(both.clone()).open(&mut sealed.clone()).expect("the second key opens it");
        assert_eq!(both.fingerprint(), keychain("acme", &[2]).fingerprint());

        let mut tampered = sealed.clone();
        let last = tampered.value.len() - 1;
        tampered.value[last] ^= 0x40;
        let damaged = Keychains::default().with(acme.clone()).open(&mut tampered).unwrap_err();
        assert_eq!(damaged.code(), ErrorCode::DataLoss);
        assert!(damaged.message().contains("fails authentication"), "{damaged}");

        let mut cut = sealed.clone();
        cut.value.truncate(5);
        let malformed = Keychains::default().with(acme.clone()).open(&mut cut).unwrap_err();
        assert_eq!(malformed.code(), ErrorCode::DataLoss);

        let mut clear = sealed;
        clear.head.client_key = None;
        let envelope = clear.value.clone();
        Keychains::default().open(&mut clear).expect("a value in the clear is left alone");
        assert_eq!(clear.value, envelope);

        let globex = RowKey::new("globex", "R", "m").at(None);
        let misplaced = acme.seal(&globex, Compression::None, b"v", "records[2].key.major_key").unwrap_err();
        assert_eq!(misplaced.field(), Some("records[2].key.major_key"));
    }
}

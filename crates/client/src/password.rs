//! A tenant's keychain from a password, over the client: its records in
//! the tenant (read, or the first one made), and the keys the password
//! derives from them. Apart from `keychain`, which seals and opens values
//! without a connection, so the reads that open values never depend on
//! the code that fetches keychains.

use std::sync::Arc;

use consensusdb_types::{ErrorCode, RowKey, TimeUuid};
use zeroize::Zeroizing;

use crate::Client;
use crate::error::{Error, Result};
use crate::keychain::{
    ClientKey, KEYCHAIN_REGION, KEYCHAIN_ROW, KdfParams, Keychain, KeychainRecord, describe,
};
use crate::record::Record;

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
        unlock(tenant, password, stored, made).await
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
        unlock(tenant, password, stored, None).await.map(Some)
    }
}

/// Derives the keys of `stored` on the blocking pool; refuses a password
/// that opens none of them.
async fn unlock(
    tenant: String,
    password: Arc<Zeroizing<Vec<u8>>>,
    stored: Vec<KeychainRecord>,
    made: Option<(KeychainRecord, ClientKey)>,
) -> Result<Keychain> {
    let keys = tokio::task::spawn_blocking(move || derive_all(&password, stored, made))
        .await
        .map_err(|e| Error::local(ErrorCode::Internal, format!("the key derivation stopped: {e}")))??;
    Keychain::from_keys(tenant.clone(), keys).ok_or_else(|| {
        Error::local(
            ErrorCode::Unauthenticated,
            format!(
                "the password does not open tenant {tenant:?}'s keychain (it was made with another password)"
            ),
        )
    })
}

/// The most keychain records read for a tenant. There is one, unless
/// clients on two nodes created the keychain at the same moment; a bound,
/// because each costs an Argon2id derivation.
const MAX_KEYCHAIN_RECORDS: u32 = 8;

fn keychain_row(tenant: &str) -> RowKey {
    RowKey::new(tenant, KEYCHAIN_REGION, KEYCHAIN_ROW)
}

/// The tenant's keychain records, oldest first.
async fn read_records(client: &Client, tenant: &str) -> Result<Vec<KeychainRecord>> {
    let page = client.get_range(keychain_row(tenant)).forward(None, None).limit(MAX_KEYCHAIN_RECORDS).await?;
    page.records
        .iter()
        .map(|stored| {
            KeychainRecord::decode(&stored.value).map_err(|why| {
                Error::local(
                    ErrorCode::DataLoss,
                    format!("tenant {tenant:?}'s keychain, {}: {why}", describe(&stored.key)),
                )
            })
        })
        .collect()
}

/// Makes and stores a new keychain record for `tenant`.
async fn create(
    client: &Client,
    tenant: &str,
    password: &Arc<Zeroizing<Vec<u8>>>,
    params: KdfParams,
) -> Result<(KeychainRecord, ClientKey)> {
    let mut record = KeychainRecord::fresh(params);
    let derive_from = (Arc::clone(password), record);
    let key = tokio::task::spawn_blocking(move || ClientKey::derive(&derive_from.0, &derive_from.1))
        .await
        .map_err(|e| Error::local(ErrorCode::Internal, format!("the key derivation stopped: {e}")))?
        .map_err(|why| Error::local(ErrorCode::Internal, why))?;
    record.check = key.fingerprint();
    let at = keychain_row(tenant).at(Some(TimeUuid::now()));
    client.put(Record::new(at, record.encode()).only_if_absent()).await?;
    Ok((record, key))
}

/// The keys `password` derives from `records` that match their check
/// value, oldest record first; `made` is a key already derived.
fn derive_all(
    password: &[u8],
    records: Vec<KeychainRecord>,
    mut made: Option<(KeychainRecord, ClientKey)>,
) -> Result<Vec<ClientKey>> {
    let mut keys = Vec::new();
    for record in records {
        let key = match made.take_if(|(made, _)| *made == record) {
            Some((_, key)) => key,
            None => {
                ClientKey::derive(password, &record).map_err(|why| Error::local(ErrorCode::Internal, why))?
            }
        };
        if key.fingerprint() == record.check {
            keys.push(key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use consensusdb_types::KeyFingerprint;

    use super::*;

    #[test]
    fn a_keychain_is_derived_from_the_password_and_the_stored_salt() {
        let params = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
        let record = KeychainRecord::fresh(params);
        let key = ClientKey::derive(b"pw", &record).expect("derives");
        assert_eq!(
            key.fingerprint(),
            ClientKey::derive(b"pw", &record).unwrap().fingerprint(),
            "deterministic"
        );
        assert_ne!(key.fingerprint(), ClientKey::derive(b"pW", &record).unwrap().fingerprint());
        let other_salt = KeychainRecord::fresh(params);
        assert_ne!(key.fingerprint(), ClientKey::derive(b"pw", &other_salt).unwrap().fingerprint());

        let stored = KeychainRecord { check: key.fingerprint(), ..record };
        let wrong = KeychainRecord { check: KeyFingerprint([0; 8]), ..other_salt };
        let keys = derive_all(b"pw", vec![wrong, stored], None).expect("derives");
        assert_eq!(keys.iter().map(ClientKey::fingerprint).collect::<Vec<_>>(), [key.fingerprint()]);
        assert!(derive_all(b"nope", vec![stored], None).unwrap().is_empty());
    }
}

//! A tenant's keychain records, over the client: reading them, making
//! the first one, and deriving the keys a password opens.

use std::sync::Arc;

use consensusdb_types::{ErrorCode, RowKey, TimeUuid};
use zeroize::Zeroizing;

use super::describe;
use super::envelope::ClientKey;
use super::params::{KEYCHAIN_REGION, KEYCHAIN_ROW, KdfParams, KeychainRecord};
use crate::Client;
use crate::error::{Error, Result};
use crate::record::Record;

/// The most keychain records read for a tenant. There is one, unless
/// clients on two nodes created the keychain at the same moment; a bound,
/// because each costs an Argon2id derivation.
const MAX_KEYCHAIN_RECORDS: u32 = 8;

fn keychain_row(tenant: &str) -> RowKey {
    RowKey::new(tenant, KEYCHAIN_REGION, KEYCHAIN_ROW)
}

/// The tenant's keychain records, oldest first.
pub(super) async fn read_records(client: &Client, tenant: &str) -> Result<Vec<KeychainRecord>> {
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
pub(super) async fn create(
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
pub(super) fn derive_all(
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

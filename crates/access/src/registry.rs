//! The node's handle on tokens and grants: reads the system tenant into an
//! [`AccessState`], keeps it fresh (replicated changes are picked up
//! within [`REFRESH_EVERY`]), and writes changes made through the admin
//! operations, which take effect here at once.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use consensusdb_storage::{PutRecord, ReadOptions, ScanQuery, ScanScope, StorageError, Store};
use consensusdb_types::{
    Caller, Compression, FieldError, Grant, Identity, Principal, Refusal, Role, SYSTEM_TENANT,
};

use crate::state::{AccessState, TokenInfo};
use crate::stored::{StoredGrant, StoredToken, grant_key, token_key};
use crate::token;

/// How often the system tenant is read again: the bound on how long a
/// token, grant or revocation made on another node takes to apply here
/// once it has replicated.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Bad input, naming the field.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Nothing matched.
    #[error("{0}")]
    NotFound(String),
    /// The change is never allowed (the built-in admin's role).
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Tokens and grants of one node, shared by every server on it.
#[derive(Clone)]
pub struct Access {
    store: Store,
    builtin_admin: Arc<Identity>,
    state: Arc<RwLock<Arc<AccessState>>>,
}

impl Access {
    /// Reads the current tokens and grants from `store`. `builtin_admin`
    /// (the admin client credential `init` makes) is always cluster admin,
    /// so a cluster can never lock its operator out.
    pub async fn open(store: Store, builtin_admin: Identity) -> Result<Self, StorageError> {
        let access = Self {
            store,
            builtin_admin: Arc::new(builtin_admin),
            state: Arc::new(RwLock::new(Arc::new(AccessState::default()))),
        };
        access.refresh().await?;
        Ok(access)
    }

    /// The cluster's identity that is always cluster admin.
    pub fn builtin_admin(&self) -> &Identity {
        &self.builtin_admin
    }

    fn current(&self) -> Arc<AccessState> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Who a request from `caller`, with `bearer` (the token of an
    /// `Authorization: Bearer` header or metadata) if any, acts for.
    pub fn authenticate(&self, caller: &Caller, bearer: Option<&str>) -> Result<Principal, Refusal> {
        self.current().resolve(caller, bearer)
    }

    /// Who a request acts for, given its connection's `caller` and the
    /// raw value of its `authorization` header or metadata, if any (which
    /// must then be `Bearer <token>`): what both servers call.
    pub fn authenticate_request(
        &self,
        caller: &Caller,
        authorization: Option<&[u8]>,
    ) -> Result<Principal, Refusal> {
        let bearer = authorization.map(token::from_authorization).transpose()?;
        self.authenticate(caller, bearer)
    }

    /// Reads the system tenant again.
    pub async fn refresh(&self) -> Result<(), StorageError> {
        let mut records = Vec::new();
        let mut page_token = None;
        loop {
            let query = ScanQuery {
                scope: ScanScope::Tenant { major: SYSTEM_TENANT.into() },
                limit: self.store.limits().max_read_limit,
                page_token: page_token.take(),
                read: ReadOptions::default(),
            };
            let mut pages = self.store.scan(query)?;
            while let Some(page) = pages.recv().await {
                let page = page?;
                page_token = page.next_page_token;
                records.extend(page.records);
            }
            if page_token.is_none() {
                break;
            }
        }
        let state = Arc::new(AccessState::from_records(records, &self.builtin_admin));
        *self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner) = state;
        Ok(())
    }

    /// Keeps the state fresh until the returned task is aborted.
    pub fn spawn_refresher(&self) -> tokio::task::JoinHandle<()> {
        let access = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            let mut every = tokio::time::interval(REFRESH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match access.refresh().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("tokens and grants are read again");
                    }
                    Ok(()) => {}
                    Err(error) if !failing => {
                        failing = true;
                        tracing::warn!(%error, "cannot read tokens and grants; the last ones read stay in force");
                    }
                    Err(_) => {}
                }
            }
        })
    }

    /// Makes a token named `name` allowing `grants`; returns its details
    /// and the token text, which exists nowhere else.
    pub async fn create_token(
        &self,
        name: &str,
        grants: &[String],
        created_by: &str,
    ) -> Result<(TokenInfo, String), AccessError> {
        consensusdb_types::identity::check_name("name", name)?;
        if grants.is_empty() {
            return Err(FieldError::new("grants", "a token needs at least one grant").into());
        }
        let grants = canonical_grants(grants)?;
        let made = token::generate();
        let stored = StoredToken {
            name: name.to_string(),
            hash: made.hash.clone(),
            grants,
            created_ms: now_ms(),
            created_by: created_by.to_string(),
        };
        self.put(token_key(&made.id), &stored, true).await?;
        self.refresh().await?;
        Ok((TokenInfo { id: made.id.clone(), stored }, made.text))
    }

    /// Every token.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        self.current().tokens()
    }

    /// Revokes the token with id `id_or_name`, or every token with that
    /// name; returns what was revoked.
    pub async fn revoke_token(&self, id_or_name: &str) -> Result<Vec<TokenInfo>, AccessError> {
        let matching: Vec<_> = self
            .tokens()
            .into_iter()
            .filter(
                |t| if token::is_id(id_or_name) { t.id == id_or_name } else { t.stored.name == id_or_name },
            )
            .collect();
        if matching.is_empty() {
            return Err(AccessError::NotFound(format!("token: no token has the id or name {id_or_name:?}")));
        }
        for token in &matching {
            self.store.remove(token_key(&token.id), None).await?;
        }
        self.refresh().await?;
        Ok(matching)
    }

    /// Grants `grant` to the client `identity` of this cluster.
    pub async fn add_grant(&self, identity: &str, grant: &str) -> Result<(), AccessError> {
        let (identity, grant) = self.grant_pair(identity, grant)?;
        let stored = StoredGrant { identity: identity.to_string(), grant: grant.to_string() };
        self.put(grant_key(&stored.identity, &grant), &stored, false).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Takes `grant` back from `identity`.
    pub async fn remove_grant(&self, identity: &str, grant: &str) -> Result<(), AccessError> {
        let (identity, grant) = self.grant_pair(identity, grant)?;
        if identity == *self.builtin_admin && grant == Grant::Cluster(consensusdb_types::ClusterRole::Admin) {
            return Err(AccessError::Refused(format!(
                "grant: {grant} to {identity} is built in and cannot be removed"
            )));
        }
        let held = self.current().grants().get(&identity).is_some_and(|grants| grants.contains(&grant));
        if !held {
            return Err(AccessError::NotFound(format!("grant: {grant} to {identity} is not held")));
        }
        self.store.remove(grant_key(&identity.to_string(), &grant), None).await?;
        self.refresh().await?;
        Ok(())
    }

    /// Every identity with its grants, or only `identity`'s.
    pub fn grants(&self, identity: Option<&str>) -> Result<Vec<(Identity, Vec<Grant>)>, AccessError> {
        let filter = identity.map(Identity::parse).transpose()?;
        let state = self.current();
        Ok(state
            .grants()
            .iter()
            .filter(|(identity, _)| filter.as_ref().is_none_or(|wanted| wanted == *identity))
            .map(|(identity, grants)| (identity.clone(), grants.clone()))
            .collect())
    }

    fn grant_pair(&self, identity: &str, grant: &str) -> Result<(Identity, Grant), AccessError> {
        let identity = Identity::parse(identity)?;
        if identity.role() != Role::Client {
            return Err(
                FieldError::new("identity", format!("{identity} is a node: grants are for clients")).into()
            );
        }
        if identity.cluster() != self.builtin_admin.cluster() {
            return Err(FieldError::new(
                "identity",
                format!(
                    "{identity} belongs to cluster {:?}, not this one ({:?})",
                    identity.cluster(),
                    self.builtin_admin.cluster()
                ),
            )
            .into());
        }
        Ok((identity, Grant::parse(grant)?))
    }

    async fn put(
        &self,
        key: consensusdb_types::RecordKey,
        value: &impl serde::Serialize,
        if_absent: bool,
    ) -> Result<(), StorageError> {
        let value = serde_json::to_vec(value).expect("serializing plain strings and numbers cannot fail");
        let record = PutRecord {
            key,
            value,
            compression: Compression::None,
            ttl_ms: None,
            if_absent,
            client_key: None,
        };
        self.store.put(record, None).await.map(drop)
    }
}

/// Parses each grant and gives it back in its one spelling.
fn canonical_grants(grants: &[String]) -> Result<Vec<String>, FieldError> {
    grants
        .iter()
        .enumerate()
        .map(|(index, text)| {
            Grant::parse(text)
                .map(|grant| grant.to_string())
                .map_err(|error| FieldError::new(format!("grants[{index}]"), error.message))
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis().try_into().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use consensusdb_storage::StoreOptions;
    use consensusdb_types::{ClusterRole, Permission};

    use super::*;

    async fn open() -> (tempfile::TempDir, Store, Access) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(StoreOptions::new(dir.path())).expect("store opens");
        let admin = Identity::parse("cdb://prod/client/admin").expect("an identity");
        let access = Access::open(store.clone(), admin).await.expect("reads access");
        (dir, store, access)
    }

    fn client(name: &str) -> Caller {
        Caller::Verified(Arc::new(
            Identity::parse(&format!("cdb://prod/client/{name}")).expect("an identity"),
        ))
    }

    #[tokio::test]
    async fn a_token_acts_with_its_grants_until_revoked() {
        let (_dir, _store, access) = open().await;
        let (info, text) = access.create_token("ci", &["write:acme/*".into()], "test").await.expect("makes");
        assert!(!format!("{info:?}").contains(&text[text.len() - 16..]), "the stored form holds no secret");
        let principal = access.authenticate(&Caller::Anonymous, Some(&text)).expect("the token is known");
        assert_eq!(principal.allows("acme/eu", Permission::Write), Ok(()));
        assert!(principal.allows("acmecorp", Permission::Read).is_err());
        let tampered = format!("{}0", &text[..text.len() - 1]);
        let tampered = if tampered == text { format!("{}1", &text[..text.len() - 1]) } else { tampered };
        assert!(matches!(
            access.authenticate(&Caller::Anonymous, Some(&tampered)),
            Err(Refusal::Unauthenticated(_))
        ));
        let revoked = access.revoke_token("ci").await.expect("revokes by name");
        assert_eq!(revoked.len(), 1);
        assert!(matches!(
            access.authenticate(&Caller::Anonymous, Some(&text)),
            Err(Refusal::Unauthenticated(_))
        ));
        assert!(matches!(access.revoke_token(&info.id).await, Err(AccessError::NotFound(_))));
    }

    #[tokio::test]
    async fn grants_are_deny_by_default_and_the_builtin_admin_stays() {
        let (_dir, _store, access) = open().await;
        let bob = access.authenticate(&client("bob"), None).expect("resolves");
        assert!(matches!(bob.allows("acme", Permission::Read), Err(Refusal::PermissionDenied(_))));
        access.add_grant("cdb://prod/client/bob", "read:acme").await.expect("grants");
        let bob = access.authenticate(&client("bob"), None).expect("resolves");
        assert_eq!(bob.allows("acme", Permission::Read), Ok(()));
        access.remove_grant("cdb://prod/client/bob", "read:acme").await.expect("removes");
        assert!(matches!(
            access.remove_grant("cdb://prod/client/bob", "read:acme").await,
            Err(AccessError::NotFound(_))
        ));
        let admin = access.authenticate(&client("admin"), None).expect("resolves");
        assert_eq!(admin.require_role(ClusterRole::Admin, "x"), Ok(()));
        assert!(
            matches!(
                access.remove_grant("cdb://prod/client/admin", "cluster-admin").await,
                Err(AccessError::Refused(_))
            ),
            "built in"
        );
        // Other grants to the built-in admin come and go like anyone's.
        access.add_grant("cdb://prod/client/admin", "read:acme").await.expect("grants");
        access
            .remove_grant("cdb://prod/client/admin", "read:acme")
            .await
            .expect("removes a grant it was given");
        let listed = access.grants(Some("cdb://prod/client/admin")).expect("lists");
        assert_eq!(listed[0].1, [Grant::Cluster(ClusterRole::Admin)]);
        for (identity, grant) in [
            ("cdb://prod/node/n1", "read:acme"),
            ("cdb://other/client/bob", "read:acme"),
            ("cdb://prod/client/bob", "read:acme*"),
        ] {
            assert!(
                matches!(access.add_grant(identity, grant).await, Err(AccessError::Invalid(_))),
                "{identity} {grant}"
            );
        }
    }

    #[tokio::test]
    async fn a_system_record_that_does_not_decode_locks_nobody_out() {
        let (_dir, store, access) = open().await;
        let (_, text) = access.create_token("ci", &["read:acme".into()], "test").await.expect("makes");
        let garbage = PutRecord {
            key: token_key("ffffffffffffffff"),
            value: b"not json".to_vec(),
            compression: Compression::None,
            ttl_ms: None,
            if_absent: false,
            client_key: None,
        };
        store.put(garbage, None).await.expect("writes");
        access.refresh().await.expect("reads again");
        assert!(access.authenticate(&Caller::Anonymous, Some(&text)).is_ok(), "the good token still works");
        assert_eq!(access.tokens().len(), 1);
    }

    #[tokio::test]
    async fn without_tls_nothing_is_checked_and_tokens_are_not_looked_at() {
        let (_dir, _store, access) = open().await;
        assert_eq!(access.authenticate(&Caller::Unchecked, Some("junk")), Ok(Principal::Unchecked));
    }
}

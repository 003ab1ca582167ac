//! The cluster's tokens and grants as one immutable snapshot, and how a
//! connection's caller and a presented token resolve to a [`Principal`]
//! against it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use consensusdb_storage::Record;
use consensusdb_types::{Caller, ClusterRole, Grant, Identity, Principal, Refusal, Role};

use crate::stored::{GRANTS, StoredGrant, StoredToken, TOKENS};
use crate::token;

/// A token as the node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id, which is in the token text too.
    pub id: String,
    /// The stored record.
    pub stored: StoredToken,
}

/// Tokens and grants at one moment.
#[derive(Debug, Default)]
pub struct AccessState {
    tokens: HashMap<String, (StoredToken, Principal)>,
    grants: BTreeMap<Identity, Vec<Grant>>,
    principals: HashMap<Identity, Principal>,
}

impl AccessState {
    /// Builds the state from the system tenant's records. A record that
    /// does not decode is skipped with a warning: it came from a node of
    /// this cluster, and one bad record must not lock everyone out.
    pub fn from_records(records: impl IntoIterator<Item = Record>, builtin_admin: &Identity) -> Self {
        let mut state = Self::default();
        for record in records {
            let region = record.key.row.region.as_str();
            let value = record.value.unwrap_or_default();
            let decoded = match region {
                TOKENS => state.add_token(&record.key.row.minor, &value),
                GRANTS => state.add_grant(&value),
                _ => Ok(()),
            };
            if let Err(error) = decoded {
                tracing::warn!(region, minor = %record.key.row.minor, %error, "skipping a system record that does not decode");
            }
        }
        state.grants.entry(builtin_admin.clone()).or_default().push(Grant::Cluster(ClusterRole::Admin));
        for (identity, grants) in &mut state.grants {
            grants.sort();
            grants.dedup();
            let principal =
                Principal::Client { name: identity.to_string().into(), grants: grants.clone().into() };
            state.principals.insert(identity.clone(), principal);
        }
        state
    }

    fn add_token(&mut self, id: &str, value: &[u8]) -> Result<(), String> {
        let stored: StoredToken = serde_json::from_slice(value).map_err(|e| e.to_string())?;
        let grants = stored.grants.iter().map(|g| Grant::parse(g)).collect::<Result<Vec<_>, _>>();
        let grants = grants.map_err(|e| e.message)?;
        let principal =
            Principal::Client { name: format!("token {id} ({})", stored.name).into(), grants: grants.into() };
        self.tokens.insert(id.to_string(), (stored, principal));
        Ok(())
    }

    fn add_grant(&mut self, value: &[u8]) -> Result<(), String> {
        let stored: StoredGrant = serde_json::from_slice(value).map_err(|e| e.to_string())?;
        let identity = Identity::parse(&stored.identity).map_err(|e| e.message)?;
        let grant = Grant::parse(&stored.grant).map_err(|e| e.message)?;
        self.grants.entry(identity).or_default().push(grant);
        Ok(())
    }

    /// Who a request acts for: the bearer token if one is presented (it
    /// names the request's intent, so it wins over a certificate),
    /// otherwise the certificate's identity with its grants. Without TLS
    /// nothing is checked.
    pub fn resolve(&self, caller: &Caller, bearer: Option<&str>) -> Result<Principal, Refusal> {
        if *caller == Caller::Unchecked {
            return Ok(Principal::Unchecked);
        }
        if let Some(text) = bearer {
            let refused = || {
                Refusal::Unauthenticated("the bearer token is not valid: unknown, revoked or mistyped".into())
            };
            let presented = token::parse(text).ok_or_else(refused)?;
            let (stored, principal) = self.tokens.get(presented.id).ok_or_else(refused)?;
            return if presented.matches(&stored.hash) { Ok(principal.clone()) } else { Err(refused()) };
        }
        Ok(match caller {
            Caller::Unchecked => Principal::Unchecked,
            Caller::Anonymous => Principal::Anonymous,
            Caller::Verified(identity) if identity.role() == Role::Node => Principal::Node(identity.clone()),
            Caller::Verified(identity) => self.principals.get(identity).cloned().unwrap_or_else(|| {
                Principal::Client { name: identity.to_string().into(), grants: Arc::new([]) }
            }),
        })
    }

    /// Every token, by id.
    pub fn tokens(&self) -> Vec<TokenInfo> {
        let mut tokens: Vec<_> = self
            .tokens
            .iter()
            .map(|(id, (stored, _))| TokenInfo { id: id.clone(), stored: stored.clone() })
            .collect();
        tokens.sort_by(|a, b| (a.stored.created_ms, &a.id).cmp(&(b.stored.created_ms, &b.id)));
        tokens
    }

    /// Every identity's grants, the built-in admin's included.
    pub fn grants(&self) -> &BTreeMap<Identity, Vec<Grant>> {
        &self.grants
    }
}

//! What a caller may do: grants on tenants (read, write, admin) and roles
//! over the cluster (monitor, admin), in one textual form shared by the
//! CLI, the admin service and what is stored:
//!
//! | grant            | allows                                              |
//! |------------------|-----------------------------------------------------|
//! | `read:acme`      | reads of the tenant `acme`, and of no other         |
//! | `write:acme/*`   | reads and writes of every tenant starting `acme/`   |
//! | `admin:*`        | everything on every tenant                          |
//! | `monitor`        | the status page, `/v1/status`, `/metrics`, `ClusterStatus` |
//! | `cluster-admin`  | all of the above, digests, peers, tokens and grants |
//!
//! The permission comes first and the tenant pattern after the first `:`,
//! so a tenant name may hold any character. A prefix pattern is explicit
//! (`acme/*`) and must end on a delimiter before the `*`, so `acme/*`
//! never covers `acmecorp`; a pattern without `*` covers exactly one
//! tenant (`ab` never covers `abc`).

use std::fmt;

use crate::FieldError;

/// The tenant reserved for the cluster's own state (grants, tokens): the
/// mesh replicates it like any tenant, and no grant, not even
/// `cluster-admin`, reaches it through the records API.
pub const SYSTEM_TENANT: &str = "_consensusdb";

/// The characters a prefix pattern may end on before its `*`.
pub const PREFIX_DELIMITERS: [char; 3] = ['/', ':', '.'];

/// What a tenant grant allows; each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Gets, range reads and scans.
    Read,
    /// Puts, batches, touches and removes, and reads.
    Write,
    /// Everything on the tenant, including what later operations on a
    /// whole tenant need.
    Admin,
}

impl Permission {
    /// The permission's name in a grant.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

/// Which tenants a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TenantPattern {
    /// Exactly this tenant.
    Exact(String),
    /// Every tenant starting with this prefix, which ends on one of
    /// [`PREFIX_DELIMITERS`].
    Prefix(String),
    /// Every tenant (`*`).
    Any,
}

impl TenantPattern {
    /// Parses `acme`, `acme/*` or `*`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let refuse = |why: String| FieldError::new("grant", format!("tenant pattern {text:?} {why}"));
        if text.is_empty() {
            return Err(refuse("is empty".into()));
        }
        if text == "*" {
            return Ok(TenantPattern::Any);
        }
        let Some(prefix) = text.strip_suffix('*') else { return Ok(TenantPattern::Exact(text.into())) };
        match prefix.chars().last() {
            Some(last) if PREFIX_DELIMITERS.contains(&last) => Ok(TenantPattern::Prefix(prefix.into())),
            _ => Err(refuse(format!(
                "must end on one of {PREFIX_DELIMITERS:?} before the '*' (as in acme/*), so it cannot also \
                 cover tenants that merely start alike"
            ))),
        }
    }

    /// Whether the pattern covers `tenant`.
    pub fn covers(&self, tenant: &str) -> bool {
        match self {
            TenantPattern::Exact(exact) => exact == tenant,
            TenantPattern::Prefix(prefix) => {
                tenant.len() > prefix.len() && tenant.starts_with(prefix.as_str())
            }
            TenantPattern::Any => true,
        }
    }
}

impl fmt::Display for TenantPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TenantPattern::Exact(exact) => f.write_str(exact),
            TenantPattern::Prefix(prefix) => write!(f, "{prefix}*"),
            TenantPattern::Any => f.write_str("*"),
        }
    }
}

/// A role over the whole cluster rather than over tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClusterRole {
    /// Reads the node's status and metrics, which name tenants and
    /// regions but hold no values.
    Monitor,
    /// Everything: every tenant's data, digests, peers, tokens and grants.
    Admin,
}

impl ClusterRole {
    /// The role's name as a grant.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterRole::Monitor => "monitor",
            ClusterRole::Admin => "cluster-admin",
        }
    }
}

/// One thing a caller is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grant {
    /// A permission on the tenants a pattern covers.
    Tenant {
        /// At most this.
        permission: Permission,
        /// On these tenants.
        pattern: TenantPattern,
    },
    /// A role over the cluster.
    Cluster(ClusterRole),
}

impl Grant {
    /// Parses the textual form: `read:acme`, `write:acme/*`, `admin:*`,
    /// `monitor` or `cluster-admin`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        match text {
            "monitor" => return Ok(Grant::Cluster(ClusterRole::Monitor)),
            "cluster-admin" => return Ok(Grant::Cluster(ClusterRole::Admin)),
            _ => {}
        }
        let Some((permission, pattern)) = text.split_once(':') else {
            return Err(FieldError::new(
                "grant",
                format!(
                    "{text:?} is not a grant: write read:TENANT, write:TENANT or admin:TENANT (TENANT exact, \
                     a prefix such as acme/*, or *), monitor, or cluster-admin"
                ),
            ));
        };
        let permission = match permission {
            "read" => Permission::Read,
            "write" => Permission::Write,
            "admin" => Permission::Admin,
            other => {
                return Err(FieldError::new(
                    "grant",
                    format!("{text:?}: the permission must be read, write or admin, not {other:?}"),
                ));
            }
        };
        Ok(Grant::Tenant { permission, pattern: TenantPattern::parse(pattern)? })
    }

    /// Whether this grant alone allows `permission` on `tenant`.
    pub fn allows(&self, tenant: &str, permission: Permission) -> bool {
        match self {
            Grant::Tenant { permission: granted, pattern } => {
                *granted >= permission && pattern.covers(tenant)
            }
            Grant::Cluster(ClusterRole::Admin) => true,
            Grant::Cluster(ClusterRole::Monitor) => false,
        }
    }

    /// Whether this grant alone gives `role`.
    pub fn gives(&self, role: ClusterRole) -> bool {
        matches!(self, Grant::Cluster(granted) if *granted >= role)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Tenant { permission, pattern } => write!(f, "{}:{pattern}", permission.as_str()),
            Grant::Cluster(role) => f.write_str(role.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn grant(text: &str) -> Grant {
        Grant::parse(text).unwrap()
    }

    #[test]
    fn an_exact_grant_covers_one_tenant_and_never_a_longer_name() {
        let read_ab = grant("read:ab");
        assert!(read_ab.allows("ab", Permission::Read));
        assert!(!read_ab.allows("abc", Permission::Read));
        assert!(!read_ab.allows("a", Permission::Read));
        assert!(!read_ab.allows("ab/x", Permission::Read));
        assert!(!read_ab.allows("ab", Permission::Write), "read never writes");
    }

    #[test]
    fn a_prefix_grant_covers_what_follows_its_delimiter_only() {
        let acme = grant("write:acme/*");
        assert!(acme.allows("acme/eu", Permission::Write));
        assert!(acme.allows("acme/us", Permission::Read), "write includes read");
        assert!(!acme.allows("acmecorp", Permission::Read));
        assert!(!acme.allows("acme", Permission::Read), "the prefix alone is not a tenant under it");
        assert!(!acme.allows("acme/", Permission::Read));
        assert!(!acme.allows("acme/eu", Permission::Admin));
        assert!(Grant::parse("read:acme*").unwrap_err().message.contains("must end on one of"));
        assert!(grant("read:acme.*").allows("acme.eu", Permission::Read));
        assert!(grant("read:acme:*").allows("acme:eu", Permission::Read));
    }

    #[test]
    fn cluster_roles_order_and_what_they_allow() {
        let admin = grant("cluster-admin");
        let monitor = grant("monitor");
        assert!(admin.gives(ClusterRole::Monitor) && admin.gives(ClusterRole::Admin));
        assert!(monitor.gives(ClusterRole::Monitor) && !monitor.gives(ClusterRole::Admin));
        assert!(admin.allows("anything", Permission::Admin));
        assert!(!monitor.allows("anything", Permission::Read), "monitoring reads no values");
        assert!(!grant("admin:*").gives(ClusterRole::Monitor), "tenant admin is not cluster admin");
    }

    #[test]
    fn malformed_grants_name_what_is_wrong() {
        for (text, hint) in [
            ("", "is not a grant"),
            ("read", "is not a grant"),
            ("delete:acme", "must be read, write or admin"),
            ("read:", "is empty"),
            ("READ:acme", "must be read, write or admin"),
            ("admin", "is not a grant"),
        ] {
            let error = Grant::parse(text).unwrap_err();
            assert_eq!(error.field, "grant");
            assert!(error.message.contains(hint), "{text:?}: {}", error.message);
        }
    }

    proptest! {
        #[test]
        fn every_grant_prints_back_as_itself(
            permission in prop::sample::select(vec!["read", "write", "admin"]),
            pattern in "[a-z:/.*]{1,8}",
        ) {
            let text = format!("{permission}:{pattern}");
            if let Ok(parsed) = Grant::parse(&text) {
                prop_assert_eq!(parsed.to_string(), text);
            }
        }

        #[test]
        fn a_prefix_never_covers_a_tenant_it_does_not_start(
            prefix in "[a-z]{1,5}[/:.]",
            tenant in "[a-z/:.]{1,10}",
        ) {
            let grant = Grant::parse(&format!("read:{prefix}*")).unwrap();
            prop_assert_eq!(
                grant.allows(&tenant, Permission::Read),
                tenant.starts_with(&prefix) && tenant.len() > prefix.len()
            );
        }
    }
}

//! Who is at the other end of a connection, as its transport established
//! it: the one source of "who is calling" for every layer above. The
//! servers attach a [`Connection`] to every request they serve; the layers
//! that decide what a caller may do read it and nothing else (never a
//! header, a name in a message, or an address).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::grant::{ClusterRole, Grant, Permission, SYSTEM_TENANT};
use crate::identity::Identity;

/// How a caller was identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A node serving without TLS (`--insecure-plaintext`): nobody is
    /// identified, so nothing is checked. Development only.
    Unchecked,
    /// TLS without a client certificate: a health probe, or a client that
    /// must still present a bearer token.
    Anonymous,
    /// TLS with a certificate from the cluster CA, carrying this identity.
    Verified(Arc<Identity>),
}

/// Why a caller may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No credential (or none the node accepts): the caller must present one.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller that is not allowed.
    #[error("{0}")]
    PermissionDenied(String),
}

impl Refusal {
    /// The shared error code: `UNAUTHENTICATED` or `PERMISSION_DENIED`.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            Refusal::Unauthenticated(_) => crate::ErrorCode::Unauthenticated,
            Refusal::PermissionDenied(_) => crate::ErrorCode::PermissionDenied,
        }
    }
}

impl Caller {
    /// The verified identity, if any.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Caller::Verified(identity) => Some(identity),
            Caller::Unchecked | Caller::Anonymous => None,
        }
    }
}

/// Who a request acts for, once its credential (a client certificate or
/// a bearer token) is resolved against the cluster's grants: what every
/// check of what a caller may do reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A node serving without TLS (`--insecure-plaintext`): nothing is
    /// checked. Development only.
    Unchecked,
    /// No credential: allowed nothing but what is open to anyone.
    Anonymous,
    /// A node of the cluster: replicates, and is allowed no tenant's data.
    Node(Arc<Identity>),
    /// A client certificate or a bearer token, with its grants.
    Client {
        /// Named in refusals and logs: `cdb://c/client/app` or
        /// `token:<id> (<name>)`.
        name: Arc<str>,
        /// Everything it is allowed.
        grants: Arc<[Grant]>,
    },
}

impl Principal {
    /// Admits `permission` on `tenant`, or says why not. The system
    /// tenant is reserved: no caller reaches it through the records API.
    pub fn allows(&self, tenant: &str, permission: Permission) -> Result<(), Refusal> {
        if tenant == SYSTEM_TENANT {
            return Err(Refusal::PermissionDenied(format!(
                "tenant {SYSTEM_TENANT:?} is reserved for the cluster's own state; manage tokens and grants with \
                 `consensusdb token` and `consensusdb grant`"
            )));
        }
        match self {
            Principal::Unchecked => Ok(()),
            Principal::Client { grants, .. } if grants.iter().any(|g| g.allows(tenant, permission)) => Ok(()),
            Principal::Anonymous => Err(Refusal::Unauthenticated(format!(
                "{} on tenant {tenant:?} needs a credential: a client certificate from the cluster CA or a \
                 bearer token",
                permission.as_str()
            ))),
            Principal::Node(identity) => Err(Refusal::PermissionDenied(format!(
                "{identity} is a node: nodes replicate and are granted no tenant's data ({} on tenant {tenant:?} \
                 refused)",
                permission.as_str()
            ))),
            Principal::Client { name, .. } => Err(Refusal::PermissionDenied(format!(
                "{name} has no grant allowing {} on tenant {tenant:?}",
                permission.as_str()
            ))),
        }
    }

    /// Admits callers with `role` over the cluster; `what` names the
    /// operation in the refusal.
    pub fn require_role(&self, role: ClusterRole, what: &str) -> Result<(), Refusal> {
        match self {
            Principal::Unchecked => Ok(()),
            Principal::Client { grants, .. } if grants.iter().any(|g| g.gives(role)) => Ok(()),
            Principal::Anonymous => Err(Refusal::Unauthenticated(format!(
                "{what} needs the {} role: present a client certificate or a bearer token that has it",
                role.as_str()
            ))),
            Principal::Node(identity) => Err(Refusal::PermissionDenied(format!(
                "{what} needs the {} role, which {identity}, a node, does not have",
                role.as_str()
            ))),
            Principal::Client { name, .. } => Err(Refusal::PermissionDenied(format!(
                "{what} needs the {} role, which {name} does not have",
                role.as_str()
            ))),
        }
    }

    /// Admits nodes of the cluster only (anyone, without TLS).
    pub fn require_node(&self, what: &str) -> Result<(), Refusal> {
        match self {
            Principal::Unchecked | Principal::Node(_) => Ok(()),
            Principal::Client { name, .. } => Err(Refusal::PermissionDenied(format!(
                "{what} is for nodes of the cluster only; {name} is a client"
            ))),
            Principal::Anonymous => Err(Refusal::Unauthenticated(format!(
                "{what} needs a node certificate from the cluster CA; none was presented"
            ))),
        }
    }

    /// Admits anyone with a credential (anyone, without TLS).
    pub fn require_identified(&self, what: &str) -> Result<(), Refusal> {
        match self {
            Principal::Anonymous => Err(Refusal::Unauthenticated(format!(
                "{what} needs a credential: a client certificate from the cluster CA or a bearer token"
            ))),
            _ => Ok(()),
        }
    }

    /// The principal of a request that carries none (a service called
    /// in-process, not through a server that resolves credentials):
    /// nobody, so deny by default.
    pub fn of(principal: Option<&Principal>) -> Principal {
        principal.cloned().unwrap_or(Principal::Anonymous)
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Unchecked => f.write_str("anyone (plaintext, unchecked)"),
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::Node(identity) => write!(f, "{identity}"),
            Principal::Client { name, .. } => f.write_str(name),
        }
    }
}

/// What a server knows of one connection, attached to each request on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The address the connection came from.
    pub remote_addr: Option<SocketAddr>,
    /// Who is calling.
    pub caller: Caller,
}

impl Connection {
    /// The caller of a request that carries no connection details (a
    /// service called in-process, not through a server): nobody, so deny
    /// by default.
    pub fn caller_of(connection: Option<&Connection>) -> Caller {
        connection.map_or(Caller::Anonymous, |connection| connection.caller.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    fn node() -> Principal {
        Principal::Node(Arc::new(Identity::new("prod", Role::Node, "n1").unwrap()))
    }

    fn client(grants: &[&str]) -> Principal {
        let grants: Vec<Grant> = grants.iter().map(|g| Grant::parse(g).unwrap()).collect();
        Principal::Client { name: "cdb://prod/client/app".into(), grants: grants.into() }
    }

    #[test]
    fn only_nodes_pass_as_nodes_and_only_identified_callers_pass_at_all() {
        assert_eq!(node().require_node("Pull"), Ok(()));
        assert!(
            matches!(client(&["cluster-admin"]).require_node("Pull"), Err(Refusal::PermissionDenied(m)) if m.contains("Pull"))
        );
        assert!(matches!(Principal::Anonymous.require_node("Pull"), Err(Refusal::Unauthenticated(_))));
        assert_eq!(Principal::Unchecked.require_node("Pull"), Ok(()), "plaintext checks nothing");
        assert_eq!(client(&[]).require_identified("x"), Ok(()));
        assert!(matches!(Principal::Anonymous.require_identified("x"), Err(Refusal::Unauthenticated(_))));
        assert_eq!(Principal::of(None), Principal::Anonymous, "no principal attached: denied");
        assert_eq!(Connection::caller_of(None), Caller::Anonymous, "no connection details: denied");
    }

    #[test]
    fn tenant_access_follows_grants_and_names_tenant_and_permission_when_refused() {
        let reader = client(&["read:acme"]);
        assert_eq!(reader.allows("acme", Permission::Read), Ok(()));
        let Err(Refusal::PermissionDenied(message)) = reader.allows("acme", Permission::Write) else {
            panic!("a reader may not write")
        };
        assert!(message.contains("write") && message.contains("\"acme\""), "{message}");
        assert!(matches!(reader.allows("other", Permission::Read), Err(Refusal::PermissionDenied(_))));
        assert!(matches!(node().allows("acme", Permission::Read), Err(Refusal::PermissionDenied(_))));
        assert!(matches!(
            Principal::Anonymous.allows("acme", Permission::Read),
            Err(Refusal::Unauthenticated(_))
        ));
        assert_eq!(client(&["cluster-admin"]).allows("acme", Permission::Admin), Ok(()));
    }

    #[test]
    fn nobody_reaches_the_system_tenant_through_records() {
        for principal in [Principal::Unchecked, client(&["cluster-admin"]), client(&["admin:*"]), node()] {
            assert!(matches!(
                principal.allows(SYSTEM_TENANT, Permission::Read),
                Err(Refusal::PermissionDenied(_))
            ));
        }
    }

    #[test]
    fn cluster_roles_are_checked_by_rank() {
        assert_eq!(client(&["monitor"]).require_role(ClusterRole::Monitor, "status"), Ok(()));
        assert!(matches!(
            client(&["monitor"]).require_role(ClusterRole::Admin, "removing a peer"),
            Err(Refusal::PermissionDenied(m)) if m.contains("removing a peer") && m.contains("cluster-admin")
        ));
        assert_eq!(client(&["cluster-admin"]).require_role(ClusterRole::Monitor, "status"), Ok(()));
        assert!(matches!(
            client(&["admin:*"]).require_role(ClusterRole::Monitor, "status"),
            Err(Refusal::PermissionDenied(_))
        ));
        assert!(matches!(
            node().require_role(ClusterRole::Monitor, "status"),
            Err(Refusal::PermissionDenied(_))
        ));
    }
}

//! Who is at the other end of a connection, as its transport established
//! it: the one source of "who is calling" for every layer above. The
//! servers attach a [`Connection`] to every request they serve; the layers
//! that decide what a caller may do read it and nothing else (never a
//! header, a name in a message, or an address).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::identity::{Identity, Role};

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

    /// Admits anyone identified (or anyone at all without TLS); refuses
    /// anonymous callers.
    pub fn require_identified(&self) -> Result<(), Refusal> {
        match self {
            Caller::Unchecked | Caller::Verified(_) => Ok(()),
            Caller::Anonymous => Err(Refusal::Unauthenticated(
                "no credential: present a client certificate from the cluster CA".into(),
            )),
        }
    }

    /// Admits nodes of the cluster only (or anyone without TLS): `what` is
    /// the operation, named in the refusal.
    pub fn require_node(&self, what: &str) -> Result<(), Refusal> {
        match self {
            Caller::Unchecked => Ok(()),
            Caller::Verified(identity) if identity.role() == Role::Node => Ok(()),
            Caller::Verified(identity) => Err(Refusal::PermissionDenied(format!(
                "{what} is for nodes of the cluster only; {identity} is a client"
            ))),
            Caller::Anonymous => Err(Refusal::Unauthenticated(format!(
                "{what} needs a node certificate from the cluster CA; none was presented"
            ))),
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

    fn verified(role: Role) -> Caller {
        Caller::Verified(Arc::new(Identity::new("prod", role, "x").unwrap()))
    }

    #[test]
    fn only_nodes_pass_as_nodes_and_only_identified_callers_pass_at_all() {
        assert_eq!(verified(Role::Node).require_node("Pull"), Ok(()));
        assert!(
            matches!(verified(Role::Client).require_node("Pull"), Err(Refusal::PermissionDenied(m)) if m.contains("Pull"))
        );
        assert!(matches!(Caller::Anonymous.require_node("Pull"), Err(Refusal::Unauthenticated(_))));
        assert_eq!(Caller::Unchecked.require_node("Pull"), Ok(()), "plaintext checks nothing");
        assert_eq!(verified(Role::Client).require_identified(), Ok(()));
        assert!(matches!(Caller::Anonymous.require_identified(), Err(Refusal::Unauthenticated(_))));
        assert_eq!(Connection::caller_of(None), Caller::Anonymous, "no connection details: denied");
    }
}

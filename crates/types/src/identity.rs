//! Who a certificate speaks for: a node of a cluster or a client of it,
//! written as one URI in the certificate's subject alternative names,
//! `cdb://<cluster>/node/<name>` or `cdb://<cluster>/client/<name>`.
//!
//! Identities are compared whole, never by substring or prefix, and the
//! role is part of the identity: a client certificate can never pass for
//! a node, and a node of one cluster never for a node of another. Names
//! are restricted to a plain alphabet so no URI escaping, case folding or
//! Unicode normalisation can make two spellings of one name.

use std::fmt;

use crate::FieldError;

/// The URI scheme of identities.
pub const SCHEME: &str = "cdb";

/// The longest cluster id or name accepted.
pub const MAX_NAME_BYTES: usize = 64;

/// What an identity may do at the transport: nodes replicate, clients call
/// the records API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A node of the cluster: may open replication streams.
    Node,
    /// A client: an application, an operator or the CLI.
    Client,
}

impl Role {
    /// The role's path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Client => "client",
        }
    }
}

/// A verified caller: cluster, role and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    cluster: String,
    role: Role,
    name: String,
}

impl Identity {
    /// An identity; `cluster` and `name` must pass [`check_name`].
    pub fn new(cluster: &str, role: Role, name: &str) -> Result<Self, FieldError> {
        check_name("cluster", cluster)?;
        check_name("name", name)?;
        Ok(Self { cluster: cluster.to_string(), role, name: name.to_string() })
    }

    /// Parses the URI form, exactly: scheme `cdb`, then the cluster, the
    /// role and the name, nothing before, between or after them.
    pub fn parse(uri: &str) -> Result<Self, FieldError> {
        let refuse = |why: &str| FieldError::new("identity", format!("{uri:?} is not an identity: {why}"));
        let rest = uri
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix("://"))
            .ok_or_else(|| refuse("it must start with cdb://"))?;
        let mut parts = rest.split('/');
        let (Some(cluster), Some(role), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("it must be cdb://<cluster>/<node|client>/<name>"));
        };
        let role = match role {
            "node" => Role::Node,
            "client" => Role::Client,
            _ => return Err(refuse("the role must be node or client")),
        };
        Self::new(cluster, role, name).map_err(|error| refuse(&error.message))
    }

    /// The cluster the identity belongs to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Node or client.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The node's or client's name within the cluster.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}/{}/{}", self.cluster, self.role.as_str(), self.name)
    }
}

/// Checks a cluster id or a name: 1 to [`MAX_NAME_BYTES`] of ASCII
/// letters, digits, `-`, `_` and `.`, not starting with `.` (so no `.` or
/// `..` segment). `field` names it in the error.
pub fn check_name(field: &str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(FieldError::new(
            field,
            format!("must be 1 to {MAX_NAME_BYTES} bytes, got {}", name.len()),
        ));
    }
    if name.starts_with('.') {
        return Err(FieldError::new(field, "must not start with '.'"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
        return Err(FieldError::new(
            field,
            format!("may hold only ASCII letters, digits, '-', '_' and '.', not {bad:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_identity_is_its_uri_and_back() {
        let node = Identity::new("prod-eu", Role::Node, "node-1").unwrap();
        assert_eq!(node.to_string(), "cdb://prod-eu/node/node-1");
        assert_eq!(Identity::parse("cdb://prod-eu/node/node-1").unwrap(), node);
        let client = Identity::parse("cdb://prod-eu/client/admin").unwrap();
        assert_eq!((client.cluster(), client.role(), client.name()), ("prod-eu", Role::Client, "admin"));
    }

    #[test]
    fn anything_but_the_exact_form_is_refused() {
        for uri in [
            "cdb://prod/node/a/b",
            "cdb://prod/node/",
            "cdb://prod/node",
            "cdb://prod/admin/a",
            "cdb://prod/Node/a",
            "cdb:/prod/node/a",
            "CDB://prod/node/a",
            "https://prod/node/a",
            " cdb://prod/node/a",
            "cdb://prod/node/a ",
            "cdb://prod/node/a%2Fb",
            "cdb://prod/node/..",
            "cdb:///node/a",
            "cdb://prod/client/é",
        ] {
            assert!(Identity::parse(uri).is_err(), "{uri} must be refused");
        }
    }

    #[test]
    fn a_client_never_equals_a_node_of_the_same_name() {
        let node = Identity::parse("cdb://c/node/x").unwrap();
        let client = Identity::parse("cdb://c/client/x").unwrap();
        assert_ne!(node, client);
        assert_ne!(Identity::parse("cdb://c/node/x").unwrap(), Identity::parse("cdb://c/node/xy").unwrap());
        assert_ne!(Identity::parse("cdb://c/node/x").unwrap(), Identity::parse("cdb://cd/node/x").unwrap());
    }

    proptest! {
        #[test]
        fn every_valid_identity_round_trips(
            cluster in "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,63}",
            name in "[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,63}",
            node in any::<bool>(),
        ) {
            let role = if node { Role::Node } else { Role::Client };
            let identity = Identity::new(&cluster, role, &name).unwrap();
            prop_assert_eq!(Identity::parse(&identity.to_string()).unwrap(), identity);
        }

        #[test]
        fn whatever_parses_is_already_in_its_one_spelling(
            uri in "(cdb|CDB)://[a-z.%-]{0,5}/(node|client|Node|admin)/[a-z.%é -]{0,5}(/[a-z]{0,2})?"
        ) {
            // No second spelling of an identity exists: any text accepted
            // prints back as exactly itself.
            if let Ok(identity) = Identity::parse(&uri) {
                prop_assert_eq!(identity.to_string(), uri);
            }
        }
    }
}

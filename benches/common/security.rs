//! How the harnesses' nodes and clients are secured: mTLS by default, as
//! in production, with one CA made for the run in its scratch directory;
//! plaintext (`--insecure-plaintext`) only when a run asks for it, to
//! measure what TLS costs.
//!
//! Set once per process with [`init`]; node launches add
//! [`Security::serve_args`], clients dial [`Security::endpoint`].

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;

use consensusdb_client::Credentials;
use consensusdb_pki::issue::DEFAULT_VALIDITY;
use consensusdb_pki::{NodeNames, cluster_dir};
use tonic::transport::Endpoint;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The run's security.
pub enum Security {
    /// Plaintext everywhere: the development flag.
    Plaintext,
    /// mTLS: every node serves one node certificate (its names cover every
    /// address the run uses), clients present the admin's.
    Tls {
        /// `--tls-ca`, `--tls-cert`, `--tls-key` and their files.
        serve_args: Vec<OsString>,
        /// The admin client's credential.
        admin: Credentials,
    },
}

static SECURITY: OnceLock<Security> = OnceLock::new();

/// Sets the run's security: plaintext, or a CA made in `dir` with a node
/// certificate for `node_ips` (and 127.0.0.1). Called once, first.
pub fn init(dir: &Path, plaintext: bool, node_ips: &[IpAddr]) -> Result<(), Error> {
    let security = if plaintext {
        Security::Plaintext
    } else {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let mut ips = vec![loopback];
        ips.extend(node_ips.iter().copied().filter(|ip| *ip != loopback));
        let names = NodeNames { dns: vec!["localhost".into()], ips };
        let made =
            cluster_dir::init(&dir.join("tls"), "consensusdb", "bench-node", &names, DEFAULT_VALIDITY)?;
        let node = &made.node.1;
        let serve_args =
            [("--tls-ca", &made.ca.certificate), ("--tls-cert", &node.certificate), ("--tls-key", &node.key)]
                .into_iter()
                .flat_map(|(flag, path)| [OsString::from(flag), path.as_os_str().to_owned()])
                .collect();
        let admin =
            Credentials::from_files(&made.ca.certificate, &made.admin.1.certificate, &made.admin.1.key)?;
        Security::Tls { serve_args, admin }
    };
    SECURITY.set(security).map_err(|_| "the run's security is set once".into())
}

/// The run's security (plaintext if [`init`] was never called: a harness
/// bug the first node's refusal to start would show).
pub fn get() -> &'static Security {
    SECURITY.get_or_init(|| Security::Plaintext)
}

impl Security {
    /// The arguments `consensusdb serve` needs.
    pub fn serve_args(&self) -> Vec<OsString> {
        match self {
            Security::Plaintext => vec!["--insecure-plaintext".into()],
            Security::Tls { serve_args, .. } => serve_args.clone(),
        }
    }

    /// An endpoint for the node at `addr`.
    pub fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        let (url, credentials) = match self {
            Security::Plaintext => (format!("http://{addr}"), None),
            Security::Tls { admin, .. } => (format!("https://{addr}"), Some(admin)),
        };
        consensusdb_client::endpoint_for(&url, credentials, "addr")
            .expect("an IP address and port, with the run's own credential, form a valid endpoint")
    }

    /// What the figures were measured over.
    pub fn label(&self) -> &'static str {
        match self {
            Security::Plaintext => "plaintext",
            Security::Tls { .. } => "mtls",
        }
    }
}

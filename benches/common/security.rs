//! How the harnesses' nodes and clients are secured: mTLS and sealed
//! values by default, as in production, with one CA and one master key
//! made for the run in its scratch directory; plaintext
//! (`--insecure-plaintext`) and values in the clear
//! (`--insecure-unsealed`) only when a run asks for them, to measure what
//! TLS and sealing cost.
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
pub struct Security {
    transport: Transport,
    /// `--master-key FILE`, or `--insecure-unsealed`.
    at_rest: Vec<OsString>,
}

/// How nodes and clients talk.
enum Transport {
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
/// certificate for `node_ips` (and 127.0.0.1); values sealed under a
/// master key made in `dir`, or (`unsealed`) stored in the clear. Called
/// once, first.
pub fn init(dir: &Path, plaintext: bool, unsealed: bool, node_ips: &[IpAddr]) -> Result<(), Error> {
    let at_rest = if unsealed {
        vec!["--insecure-unsealed".into()]
    } else {
        let file = consensusdb_pki::master_key_file::ensure(&dir.join("tls"))?;
        vec!["--master-key".into(), file.into_os_string()]
    };
    let transport = if plaintext {
        Transport::Plaintext
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
        Transport::Tls { serve_args, admin }
    };
    SECURITY.set(Security { transport, at_rest }).map_err(|_| "the run's security is set once".into())
}

/// The run's security (plaintext and unsealed if [`init`] was never
/// called: a harness bug the first node's refusal to start would show).
pub fn get() -> &'static Security {
    SECURITY.get_or_init(|| Security { transport: Transport::Plaintext, at_rest: Vec::new() })
}

impl Security {
    /// The arguments `consensusdb serve` needs.
    pub fn serve_args(&self) -> Vec<OsString> {
        let mut args = match &self.transport {
            Transport::Plaintext => vec!["--insecure-plaintext".into()],
            Transport::Tls { serve_args, .. } => serve_args.clone(),
        };
        args.extend(self.at_rest.iter().cloned());
        args
    }

    /// An endpoint for the node at `addr`.
    pub fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        let (url, credentials) = match &self.transport {
            Transport::Plaintext => (format!("http://{addr}"), None),
            Transport::Tls { admin, .. } => (format!("https://{addr}"), Some(admin)),
        };
        consensusdb_client::endpoint_for(&url, credentials, "addr")
            .expect("an IP address and port, with the run's own credential, form a valid endpoint")
    }

    /// What the figures were measured over: the transport, and whether
    /// values were sealed.
    pub fn label(&self) -> String {
        let transport = match self.transport {
            Transport::Plaintext => "plaintext",
            Transport::Tls { .. } => "mtls",
        };
        let at_rest =
            if self.at_rest.first().is_some_and(|arg| arg == "--master-key") { "sealed" } else { "unsealed" };
        format!("{transport}, {at_rest}")
    }
}

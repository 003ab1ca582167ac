//! How a node secures its ports and its links to peers, decided once at
//! start from its configuration:
//!
//! - `dev.insecure_plaintext`: no TLS anywhere, nobody authenticated
//!   (development only, said loudly at start and on the status page);
//! - `tls.*` files: the cluster's credential, as `consensusdb init` and
//!   `consensusdb cert node` made it;
//! - neither, on a one-node cluster: the node makes its own CA, its
//!   certificate and an admin client credential under `<data_dir>/tls` on
//!   first start (as Elasticsearch 8 does), and uses them from then on;
//! - neither, with peers: refused, saying what to run, since nodes of one
//!   cluster must share a CA.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use consensusdb_client::AdminPaths;
use consensusdb_pki::issue::DEFAULT_VALIDITY;
use consensusdb_pki::{LiveTls, NodeNames, NodeTls, PkiError, TlsFiles, cluster_dir};

use crate::config::NodeConfig;

/// The node name of a certificate a node makes for itself.
pub const SELF_MADE_NODE: &str = "node-1";

/// Why a node cannot secure itself.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A node with peers but no certificates.
    #[error(
        "this node has peers, so it needs a certificate from the cluster's shared CA. Make one CA once:\n  \
         consensusdb init --dir certs --cluster-id {cluster} --name node-1 --dns <name> --ip <address>\n\
         one certificate per further node:\n  \
         consensusdb cert node --dir certs --name node-2 --dns <name> --ip <address>\n\
         then start each node with --tls-ca certs/ca.pem --tls-cert certs/node-<name>.pem --tls-key certs/node-<name>.key \
         (or [tls] ca_file, cert_file, key_file). Plaintext, for development only: --insecure-plaintext"
    )]
    NeedsCertificates {
        /// The configured cluster id.
        cluster: String,
    },
    /// The certificate is for another cluster than the one configured.
    #[error(
        "the node certificate is {identity}, for cluster {certificate_cluster:?}, but cluster.id is {configured:?}: \
         set cluster.id (--cluster-id) to the cluster the CA was made for"
    )]
    WrongCluster {
        /// The certificate's identity.
        identity: String,
        /// Its cluster.
        certificate_cluster: String,
        /// The configured cluster id.
        configured: String,
    },
    /// A credential could not be made or loaded.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// How the node's ports and links are secured.
pub enum NodeSecurity {
    /// Development only.
    Plaintext,
    /// mTLS with the node's credential.
    Tls {
        /// The credential in force, replaced on reload.
        tls: LiveTls,
        /// The files it came from.
        files: TlsFiles,
        /// The admin client credential, when the node made its own.
        self_made_admin: Option<AdminPaths>,
    },
}

impl NodeSecurity {
    /// Decides, making the node's own credentials on a first zero-config
    /// start. Reads and may write files: call it off the reactor.
    pub fn resolve(config: &NodeConfig) -> Result<Self, SecurityError> {
        if config.dev.insecure_plaintext {
            return Ok(Self::Plaintext);
        }
        let (files, self_made_admin) = match config.tls.files() {
            Some(files) => (files, None),
            None if !config.cluster.peers.is_empty() => {
                return Err(SecurityError::NeedsCertificates { cluster: config.cluster.id.clone() });
            }
            None => {
                let dir = config.data_dir.join(consensusdb_client::NODE_TLS_DIR);
                (self_made(&dir, config)?, Some(AdminPaths::in_dir(&dir)))
            }
        };
        let tls = NodeTls::load(&files)?;
        if tls.identity.cluster() != config.cluster.id {
            return Err(SecurityError::WrongCluster {
                identity: tls.identity.to_string(),
                certificate_cluster: tls.identity.cluster().to_string(),
                configured: config.cluster.id.clone(),
            });
        }
        Ok(Self::Tls { tls: LiveTls::new(tls), files, self_made_admin })
    }
}

/// The files of the node's own credential in `dir`, made on first use.
fn self_made(dir: &Path, config: &NodeConfig) -> Result<TlsFiles, SecurityError> {
    let stem = format!("node-{SELF_MADE_NODE}");
    let node = consensusdb_pki::credential_paths(dir, &stem);
    let files = TlsFiles { ca_bundle: dir.join("ca.pem"), certificate: node.certificate, key: node.key };
    if !files.ca_bundle.exists() {
        let made = cluster_dir::init(
            dir,
            &config.cluster.id,
            SELF_MADE_NODE,
            &self_made_names(config),
            DEFAULT_VALIDITY,
        )?;
        tracing::info!(
            dir = %dir.display(),
            node = %made.node.0,
            admin_certificate = %made.admin.1.certificate.display(),
            "made a cluster CA, this node's certificate and an admin client credential"
        );
    }
    Ok(files)
}

/// The names a self-made node certificate carries: loopback, and the
/// addresses the node listens on and advertises.
fn self_made_names(config: &NodeConfig) -> NodeNames {
    let mut names = NodeNames {
        dns: vec!["localhost".into()],
        ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)],
    };
    let mut add_ip = |ip: IpAddr| {
        if !ip.is_unspecified() && !names.ips.contains(&ip) {
            names.ips.push(ip);
        }
    };
    add_ip(config.grpc.listen.ip());
    add_ip(config.http.listen.ip());
    if let Some((host, _)) = config.cluster.advertise.rsplit_once(':') {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => add_ip(ip),
            Err(_) if !names.dns.iter().any(|name| name == host) => names.dns.push(host.to_string()),
            Err(_) => {}
        }
    }
    names
}

/// Where the admin credential of a node's data directory is, if the node
/// made one: what the CLI and the examples use when told nothing.
pub fn self_made_admin(data_dir: &Path) -> Option<AdminPaths> {
    Some(AdminPaths::of_data_dir(data_dir)).filter(AdminPaths::exist)
}

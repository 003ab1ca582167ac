//! `consensusdb init` and `consensusdb cert`: the cluster's CA and the
//! certificates it issues, written to a directory (see `consensusdb-pki`).
//! They run offline: no node is reached.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use consensusdb_pki::issue::DEFAULT_VALIDITY;
use consensusdb_pki::{Authority, Credential, CredentialFiles, NodeNames, PkiError, cluster_dir};

/// What `consensusdb init` makes.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The directory to create the CA and the first credentials in; it
    /// must not hold a CA already.
    #[arg(long, value_name = "DIR", default_value = "certs")]
    pub dir: PathBuf,
    /// The cluster's id: the `cluster.id` every node of it is configured
    /// with, written into every identity.
    #[arg(long, value_name = "ID", default_value = "consensusdb")]
    pub cluster_id: String,
    /// The first node's certificate.
    #[command(flatten)]
    pub node: NodeCertArgs,
}

/// A node certificate's names.
#[derive(Debug, clap::Args)]
pub struct NodeCertArgs {
    /// The node's name: its identity is cdb://<cluster>/node/<name>.
    #[arg(long, value_name = "NAME", default_value = "node-1")]
    pub name: String,
    /// DNS names clients and peers dial the node at (repeat, or separate
    /// with commas).
    #[arg(long = "dns", value_name = "NAME", value_delimiter = ',', default_value = "localhost")]
    pub dns: Vec<String>,
    /// IP addresses clients and peers dial the node at (repeat, or
    /// separate with commas).
    #[arg(long = "ip", value_name = "ADDRESS", value_delimiter = ',', default_value = "127.0.0.1")]
    pub ips: Vec<IpAddr>,
    /// Days the certificate is valid.
    #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_VALIDITY.whole_days().unsigned_abs())]
    pub days: u64,
}

/// What `consensusdb cert` issues.
#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// A certificate for one more node, from the CA in --dir.
    Node {
        /// The directory holding the CA (`ca.pem`, `ca.key`); the new
        /// certificate is written there too.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        dir: PathBuf,
        /// The node's name, addresses and validity.
        #[command(flatten)]
        node: NodeCertArgs,
    },
    /// A certificate for a client (an application, an operator), from the
    /// CA in --dir.
    Client {
        /// The directory holding the CA; the new certificate is written
        /// there too.
        #[arg(long, value_name = "DIR", default_value = "certs")]
        dir: PathBuf,
        /// The client's name: its identity is cdb://<cluster>/client/<name>.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Days the certificate is valid.
        #[arg(long, value_name = "DAYS", default_value_t = DEFAULT_VALIDITY.whole_days().unsigned_abs())]
        days: u64,
    },
}

/// Makes a CA, a node certificate and the admin client's in `args.dir`,
/// and says what it made and what to run next.
pub fn init(args: &InitArgs, out: &mut impl Write) -> Result<(), PkiError> {
    let names = NodeNames { dns: args.node.dns.clone(), ips: args.node.ips.clone() };
    let made =
        cluster_dir::init(&args.dir, &args.cluster_id, &args.node.name, &names, validity(args.node.days)?)?;
    writeln!(out, "made a CA for cluster {:?} in {}:", args.cluster_id, args.dir.display()).map_err(io)?;
    report(out, "the CA (keep ca.key offline once nodes are issued)", &made.ca)?;
    report(out, &made.node.0.to_string(), &made.node.1)?;
    report(out, &made.admin.0.to_string(), &made.admin.1)?;
    writeln!(
        out,
        "  the master key, which seals values at rest: every node needs this same file\n    \
         key         {} (mode 0600; keep it apart from backups of the data)",
        made.master_key.display()
    )
    .map_err(io)?;
    writeln!(
        out,
        "\nnext: serve this node with its certificate (the master key beside the CA is found):\n  \
         consensusdb serve --cluster-id {cluster} --tls-ca {ca} --tls-cert {cert} --tls-key {key}\n\
         and call it as the admin client:\n  \
         consensusdb --ca {ca} --cert {admin_cert} --key {admin_key} status\n\
         issue one certificate per further node and client from this CA, e.g.\n  \
         consensusdb cert node --dir {dir} --name node-2 --dns node-2.example --ip 10.0.0.2\n  \
         consensusdb cert client --dir {dir} --name my-app",
        cluster = args.cluster_id,
        ca = made.ca.certificate.display(),
        cert = made.node.1.certificate.display(),
        key = made.node.1.key.display(),
        admin_cert = made.admin.1.certificate.display(),
        admin_key = made.admin.1.key.display(),
        dir = args.dir.display()
    )
    .map_err(io)
}

/// The cluster's master key file. A running node reads its file again
/// when it changes (and on SIGHUP): a rotation needs no restart.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MasterKeyCommand {
    /// Add a new master key to the file, staged: nodes unwrap with it but
    /// wrap nothing under it yet. Copy the file to every node; once each
    /// has loaded it (`master_keys.staged` on its status page), promote
    /// it.
    Add {
        /// The master key file (`master.key` beside the CA).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Make the newest staged key the current one, which wraps the data
    /// keys nodes make from then on. Copy the file to every node, then
    /// run `consensusdb keys rewrap` to wrap the existing data keys under
    /// it too.
    Promote {
        /// The master key file (`master.key` beside the CA).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove an old master key from the file, once `consensusdb keys
    /// rewrap` has re-wrapped every data key it wrapped under a newer one
    /// and the re-wrapped keys reached every node (`consensusdb keys
    /// list` shows which key wraps each), or withdraw a staged key. The
    /// current key is refused. Copy the file to every node.
    Retire {
        /// The master key file (`master.key` beside the CA).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The id of the key to remove.
        #[arg(long)]
        id: u32,
    },
}

/// Runs a master key command on the file, offline.
pub fn master_key(command: &MasterKeyCommand, out: &mut impl Write) -> Result<(), PkiError> {
    use consensusdb_pki::master_key_file::{add_key, promote_key, retire_key};
    let (file, done) = match command {
        MasterKeyCommand::Add { file } => {
            let id = add_key(file)?;
            (file, format!("added master key {id}, staged, to"))
        }
        MasterKeyCommand::Promote { file } => {
            let id = promote_key(file)?;
            (file, format!("made master key {id} the current one in"))
        }
        MasterKeyCommand::Retire { file, id } => {
            retire_key(file, *id)?;
            (file, format!("removed master key {id} from"))
        }
    };
    writeln!(
        out,
        "{done} {}: copy it to every node (mode 0600); running nodes load it within seal.reload_interval_ms \
         (10 s) or on SIGHUP, and show the keys they hold on their status page",
        file.display()
    )
    .map_err(io)
}

/// Issues one more certificate from the CA saved in a directory.
pub fn cert(command: &CertCommand, out: &mut impl Write) -> Result<(), PkiError> {
    let (dir, credential) = match command {
        CertCommand::Node { dir, node } => (dir, issue_node(&Authority::load_dir(dir)?, node)?),
        CertCommand::Client { dir, name, days } => {
            (dir, Authority::load_dir(dir)?.issue_client(name, validity(*days)?)?)
        }
    };
    let (identity, files) = cluster_dir::save(dir, credential)?;
    report(out, &identity.to_string(), &files)
}

fn issue_node(ca: &Authority, args: &NodeCertArgs) -> Result<Credential, PkiError> {
    let names = NodeNames { dns: args.dns.clone(), ips: args.ips.clone() };
    ca.issue_node(&args.name, &names, validity(args.days)?)
}

fn validity(days: u64) -> Result<time::Duration, PkiError> {
    i64::try_from(days)
        .ok()
        .filter(|days| (1..=36_500).contains(days))
        .map(time::Duration::days)
        .ok_or_else(|| PkiError::Invalid(format!("--days: must be between 1 and 36500, got {days}")))
}

fn report(out: &mut impl Write, what: &str, files: &CredentialFiles) -> Result<(), PkiError> {
    writeln!(
        out,
        "  {what}\n    certificate {}\n    key         {} (mode 0600)",
        files.certificate.display(),
        files.key.display()
    )
    .map_err(io)
}

fn io(source: std::io::Error) -> PkiError {
    PkiError::Io { path: PathBuf::from("<standard output>"), source }
}

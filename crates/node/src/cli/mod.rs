//! The client side of the `consensusdb` command: one-shot commands and the
//! interactive shell, both over the Rust SDK.

pub mod cluster;
pub mod commands;
pub mod credentials;
pub mod failure;
pub mod render;
pub mod shell;
pub mod when;

use std::path::{Path, PathBuf};
use std::time::Duration;

use consensusdb_client::{AdminPaths, Client, Credentials, DEFAULT_ENDPOINT, endpoint_url};

pub use cluster::ClusterCommand;
pub use commands::ClientCommand;
pub use failure::{CliError, EXIT_CODES_HELP};
pub use render::{Format, Output};

use crate::config::{DEFAULT_DATA_DIR, SERVERS_ENV};

/// Where client commands connect and how they print.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// A node to talk to, as host:port or a URL; repeat it (or separate
    /// with commas) to list several, and calls fail over between them.
    #[arg(
        long = "server",
        short = 's',
        value_name = "URL",
        env = SERVERS_ENV,
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINT,
        global = true,
        help_heading = "Client options"
    )]
    pub servers: Vec<String>,
    /// How long a request may take, retries included.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        global = true,
        help_heading = "Client options"
    )]
    pub timeout: String,
    /// How to print results.
    #[arg(long, value_enum, default_value_t, global = true, help_heading = "Client options")]
    pub format: Format,
    /// The cluster CA to trust (PEM) [default: ./data/tls/ca.pem, what a
    /// node started here with no TLS configuration made].
    #[arg(long, value_name = "FILE", env = "CONSENSUSDB_CA", global = true, help_heading = "Client options")]
    pub ca: Option<PathBuf>,
    /// The client certificate to present (PEM) [default:
    /// ./data/tls/client-admin.pem].
    #[arg(
        long,
        value_name = "FILE",
        env = "CONSENSUSDB_CERT",
        global = true,
        help_heading = "Client options"
    )]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM) [default:
    /// ./data/tls/client-admin.key].
    #[arg(
        long,
        value_name = "FILE",
        env = "CONSENSUSDB_KEY",
        global = true,
        help_heading = "Client options"
    )]
    pub key: Option<PathBuf>,
}

impl ConnectArgs {
    /// A client for the listed nodes. It connects on first use, so `help`
    /// and bad arguments never wait for a network.
    pub fn client(&self) -> Result<Client, CliError> {
        let timeout: Duration = when::duration(&self.timeout, "--timeout")?;
        let urls = self.server_urls()?;
        let mut builder = Client::builder().endpoints(urls.iter().cloned()).timeout(timeout);
        if let Some(credentials) = self.credentials(&urls)? {
            builder = builder.credentials(credentials);
        }
        Ok(builder.build_lazy()?)
    }

    /// The credentials for `urls`: none for plaintext (`http://`) nodes;
    /// for TLS, `--ca`, `--cert` and `--key`, each defaulting to the admin
    /// credential a node started here made under `./data/tls`.
    pub fn credentials(&self, urls: &[String]) -> Result<Option<Credentials>, CliError> {
        if urls.iter().all(|url| url.starts_with("http://")) {
            return Ok(None);
        }
        let default = AdminPaths::of_data_dir(Path::new(DEFAULT_DATA_DIR));
        let pick = |given: &Option<PathBuf>, fallback: PathBuf, flag: &str| match given {
            Some(path) => Ok(path.clone()),
            None if fallback.is_file() => Ok(fallback),
            None => Err(CliError::argument(
                flag,
                format!(
                    "TLS needs it and {} does not exist: give --ca, --cert and --key (or CONSENSUSDB_CA, \
                     CONSENSUSDB_CERT, CONSENSUSDB_KEY), e.g. from `consensusdb init`, or run where a node made \
                     its own under ./data/tls",
                    fallback.display()
                ),
            )),
        };
        let ca = pick(&self.ca, default.ca, "--ca")?;
        let cert = pick(&self.cert, default.certificate, "--cert")?;
        let key = pick(&self.key, default.key, "--key")?;
        Ok(Some(Credentials::from_files(&ca, &cert, &key)?))
    }

    /// The `--server` addresses as URLs (`host:port` means `https://`).
    pub fn server_urls(&self) -> Result<Vec<String>, CliError> {
        self.servers
            .iter()
            .map(|server| endpoint_url(server).map_err(|why| CliError::argument("--server", why)))
            .collect()
    }
}

/// Runs one cluster command against the first `--server`.
pub async fn run_cluster(connect: &ConnectArgs, command: &ClusterCommand) -> Result<(), CliError> {
    let servers = connect.server_urls()?;
    let server = servers.first().map_or(DEFAULT_ENDPOINT, String::as_str);
    let mut out = Output::new(connect.format, std::io::stdout());
    let credentials = connect.credentials(&servers[..1.min(servers.len())])?;
    let result = command.run(server, credentials.as_ref(), &mut out).await;
    out.finish()?;
    result
}

/// Runs one command and prints its results to standard output.
pub async fn run_once(connect: &ConnectArgs, command: &ClientCommand) -> Result<(), CliError> {
    let client = connect.client()?;
    let mut out = Output::new(connect.format, std::io::stdout());
    let result = command.run(&client, &mut out).await;
    out.finish()?;
    result
}

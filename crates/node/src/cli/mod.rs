//! The client side of the `consensusdb` command: one-shot commands and the
//! interactive shell, both over the Rust SDK.

pub mod access;
pub mod cluster;
pub mod commands;
pub mod credentials;
pub mod failure;
pub mod keys;
pub mod password;
pub mod render;
pub mod shell;
pub mod when;

use std::path::{Path, PathBuf};
use std::time::Duration;

use consensusdb_client::{
    AdminPaths, AuthorizedChannel, BearerToken, Client, Credentials, DEFAULT_ENDPOINT, endpoint_for,
    endpoint_url,
};
use consensusdb_types::error::error_chain;

pub use access::AccessCommand;
pub use cluster::ClusterCommand;
pub use commands::ClientCommand;
pub use failure::{CliError, EXIT_CODES_HELP};
pub use keys::KeysCommand;
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
    /// A bearer token (from `consensusdb token create`) to act with
    /// instead of a client certificate; then only the CA is needed.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "CONSENSUSDB_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Client options"
    )]
    pub token: Option<String>,
    /// Encrypt values on the client with the tenant's password keychain,
    /// the password being this file's first line (or the
    /// CONSENSUSDB_PASSWORD variable): `put` sends only ciphertext, and
    /// reads decrypt. The tenant's keychain is made on first use.
    #[arg(
        long,
        value_name = "FILE",
        env = "CONSENSUSDB_PASSWORD_FILE",
        global = true,
        help_heading = "Client options"
    )]
    pub password_file: Option<PathBuf>,
}

impl ConnectArgs {
    /// The client-side keychains of `--password-file` or
    /// CONSENSUSDB_PASSWORD (none without either).
    pub fn keychains(&self) -> Result<password::Keychains, CliError> {
        password::Keychains::from_sources(self.password_file.as_deref())
    }

    /// A client for the listed nodes. It connects on first use, so `help`
    /// and bad arguments never wait for a network.
    pub fn client(&self) -> Result<Client, CliError> {
        let timeout: Duration = when::duration(&self.timeout, "--timeout")?;
        let urls = self.server_urls()?;
        let mut builder = Client::builder().endpoints(urls.iter().cloned()).timeout(timeout);
        if let Some(credentials) = self.credentials(&urls)? {
            builder = builder.credentials(credentials);
        }
        if let Some(token) = &self.token {
            builder = builder.token(token.clone());
        }
        Ok(builder.build_lazy()?)
    }

    /// A channel to the first `--server`, carrying `--token` if given, for
    /// the cluster and access services (which the SDK does not wrap).
    pub async fn first_channel(&self) -> Result<AuthorizedChannel, CliError> {
        let servers = self.server_urls()?;
        let url = servers.first().map_or(DEFAULT_ENDPOINT, String::as_str);
        let token = BearerToken::new(self.token.as_deref())?;
        if token.is_set() && url.starts_with("http://") {
            return Err(CliError::argument(
                "--token",
                format!("{url} is plaintext: a token is never sent in the clear"),
            ));
        }
        let credentials = self.credentials(&servers[..1.min(servers.len())])?;
        let endpoint = endpoint_for(url, credentials.as_ref(), "--server")?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| CliError::Unreachable { server: url.to_string(), reason: error_chain(&e) })?;
        Ok(token.on(channel))
    }

    /// The credentials for `urls`: none for plaintext (`http://`) nodes;
    /// for TLS, `--ca`, `--cert` and `--key`, each defaulting to the admin
    /// credential a node started here made under `./data/tls`. With
    /// `--token` and no `--cert`, only the CA: the token says who calls.
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
        if self.token.is_some() && self.cert.is_none() && self.key.is_none() {
            let pem = std::fs::read_to_string(&ca)
                .map_err(|e| CliError::argument("--ca", format!("cannot read {}: {e}", ca.display())))?;
            return Ok(Some(Credentials::new(pem)));
        }
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
    on_first_server(connect, async |channel, out| command.run(channel, out).await).await
}

/// Runs one token, grant or whoami command against the first `--server`.
pub async fn run_access(connect: &ConnectArgs, command: &AccessCommand) -> Result<(), CliError> {
    on_first_server(connect, async |channel, out| command.run(channel, out).await).await
}

/// Runs one data-key or shred command against the first `--server`.
pub async fn run_keys(connect: &ConnectArgs, command: &KeysCommand) -> Result<(), CliError> {
    on_first_server(connect, async |channel, out| command.run(channel, out).await).await
}

/// Runs `command` over a channel to the first `--server`, printing to
/// standard output.
async fn on_first_server(
    connect: &ConnectArgs,
    command: impl AsyncFnOnce(AuthorizedChannel, &mut Output<std::io::Stdout>) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let channel = connect.first_channel().await?;
    let mut out = Output::new(connect.format, std::io::stdout());
    let result = command(channel, &mut out).await;
    out.finish()?;
    result
}

/// Runs one command and prints its results to standard output.
pub async fn run_once(connect: &ConnectArgs, command: &ClientCommand) -> Result<(), CliError> {
    let client = connect.client()?;
    let mut keychains = connect.keychains()?;
    let mut out = Output::new(connect.format, std::io::stdout());
    let result = command.run(&client, &mut keychains, &mut out).await;
    out.finish()?;
    result
}

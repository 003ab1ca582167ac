//! The client side of the `consensusdb` command: one-shot commands and the
//! interactive shell, both over the Rust SDK.

pub mod cluster;
pub mod commands;
pub mod credentials;
pub mod failure;
pub mod render;
pub mod shell;
pub mod when;

use std::time::Duration;

use consensusdb_client::{Client, DEFAULT_ENDPOINT, endpoint_url};

pub use cluster::ClusterCommand;
pub use commands::ClientCommand;
pub use failure::{CliError, EXIT_CODES_HELP};
pub use render::{Format, Output};

use crate::config::SERVERS_ENV;

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
}

impl ConnectArgs {
    /// A client for the listed nodes. It connects on first use, so `help`
    /// and bad arguments never wait for a network.
    pub fn client(&self) -> Result<Client, CliError> {
        let timeout: Duration = when::duration(&self.timeout, "--timeout")?;
        Ok(Client::builder().endpoints(self.server_urls()?).timeout(timeout).build_lazy()?)
    }

    /// The `--server` addresses as URLs (`host:port` means `http://`).
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
    let result = command.run(server, &mut out).await;
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

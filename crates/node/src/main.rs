//! The `consensusdb` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use consensusdb_node::cli::credentials::{self, CertCommand, InitArgs, MasterKeyCommand};
use consensusdb_node::cli::{
    AccessCommand, CliError, ClientCommand, ClusterCommand, ConnectArgs, EXIT_CODES_HELP, KeysCommand,
};
use consensusdb_node::config::{FlagOverrides, NodeConfig};
use consensusdb_storage::SyncPolicy;
use serde::Deserialize;
use serde::de::IntoDeserializer;
use tracing_subscriber::EnvFilter;

/// ConsensusDB: a leaderless, multi-tenant, time-series event store.
#[derive(Debug, Parser)]
#[command(
    name = "consensusdb",
    version,
    about = "ConsensusDB: a leaderless, multi-tenant, time-series event store.",
    long_about = None,
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    connect: ConnectArgs,
    /// How log lines are written to standard error: `text` (coloured on a
    /// terminal only) or `json` (one object per line, for log shippers).
    #[arg(long, value_enum, default_value_t, env = "CONSENSUSDB_LOG_FORMAT", global = true)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines, coloured only when standard error is a terminal.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to standard error at `RUST_LOG`'s levels (info by default).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// How configuration layers combine, shown under `serve --help` and `config --help`.
const CONFIG_HELP: &str = "\
Configuration layers, lowest first:
  1. built-in defaults (gRPC on 127.0.0.1:4482, data in ./data, fsync before every ack)
  2. a TOML file: --config FILE or $CONSENSUSDB_CONFIG (every key: deploy/config.example.toml)
  3. environment variables: CONSENSUSDB_ + the key, sections joined by __, e.g.
       CONSENSUSDB_DATA_DIR=/var/lib/consensusdb
       CONSENSUSDB_GRPC__LISTEN=127.0.0.1:5000
       CONSENSUSDB_LIMITS__MAX_VALUE_BYTES=65536
  4. the flags above
Unknown keys are errors in every layer. `consensusdb config` prints the result.
Logging: RUST_LOG (default info), e.g. RUST_LOG=consensusdb_storage=debug;
--log-format json (or CONSENSUSDB_LOG_FORMAT=json) for one JSON object per line.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node. With no configuration at all it serves gRPC on
    /// 127.0.0.1:4482 with its data in ./data.
    #[command(after_help = CONFIG_HELP)]
    Serve(ServeArgs),
    /// Print the effective configuration (all layers applied) as TOML.
    #[command(after_help = CONFIG_HELP)]
    Config(ServeArgs),
    /// An interactive shell for the client commands, with line editing and
    /// history; reads commands from standard input when it is not a terminal.
    #[command(after_help = EXIT_CODES_HELP)]
    Shell(ShellArgs),
    /// Create a cluster CA, this node's certificate and an admin client
    /// certificate in a directory (private keys mode 0600).
    Init(InitArgs),
    /// Issue one more node or client certificate from the CA that `init`
    /// made.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Manage the cluster's master key file, which seals values at rest.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
    #[command(flatten)]
    Client(ClientCommand),
    #[command(flatten)]
    Cluster(ClusterCommand),
    #[command(flatten)]
    Access(AccessCommand),
    #[command(flatten)]
    Keys(KeysCommand),
}

/// Options of the shell.
#[derive(Debug, clap::Args)]
struct ShellArgs {
    /// Where to keep the command history [default: ~/.consensusdb_history].
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Keep no history file.
    #[arg(long, conflicts_with = "history")]
    no_history: bool,
}

/// Configuration layers: defaults < --config file < CONSENSUSDB_* environment < these flags.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// A TOML config file (see deploy/config.example.toml).
    #[arg(long, short = 'c', value_name = "FILE", env = "CONSENSUSDB_CONFIG")]
    config: Option<PathBuf>,
    /// Where the node keeps its data [default: ./data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:4482].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// JSON gateway listen address [default: 127.0.0.1:4481]; `[http]
    /// enabled = false` in the config turns the gateway off.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<std::net::SocketAddr>,
    /// When to fsync: `always` (before every acknowledgement) or `os`.
    #[arg(long, value_name = "POLICY", value_parser = parse_sync)]
    sync: Option<SyncPolicy>,
    /// A peer to replicate with (`host:port`); repeat for more. One seed is
    /// enough to join a cluster [default: none, a one-node cluster].
    #[arg(long = "peer", value_name = "ADDR")]
    peers: Vec<String>,
    /// The cluster's id (`cluster.id`): the one its CA was made for.
    #[arg(long, value_name = "ID")]
    cluster_id: Option<String>,
    /// The cluster CA bundle (PEM) [default: with none of the --tls-*
    /// flags, a one-node cluster makes its own under <data-dir>/tls].
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), from `consensusdb init` or `cert node`.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// DEVELOPMENT ONLY: serve plaintext gRPC and HTTP to anyone, with no
    /// authentication, and dial peers without TLS.
    #[arg(long)]
    insecure_plaintext: bool,
    /// The cluster's master key file, which seals values at rest
    /// (`master.key` from `consensusdb init`). Default: `master.key`
    /// beside --tls-ca, or one the node makes under <data-dir>/tls.
    #[arg(long, value_name = "FILE")]
    master_key: Option<PathBuf>,
    /// DEVELOPMENT ONLY: store new values in the clear, without a master
    /// key.
    #[arg(long)]
    insecure_unsealed: bool,
}

/// `--sync`, spelled as `storage.sync` is in a configuration file: the
/// one spelling is `SyncPolicy`'s serde names.
fn parse_sync(value: &str) -> Result<SyncPolicy, serde::de::value::Error> {
    SyncPolicy::deserialize(value.into_deserializer())
}

impl ServeArgs {
    fn load(&self) -> Result<NodeConfig, consensusdb_node::config::ConfigError> {
        let flags = FlagOverrides {
            data_dir: self.data_dir.clone(),
            grpc_listen: self.listen,
            http_listen: self.http_listen,
            sync: self.sync,
            insecure_plaintext: self.insecure_plaintext,
            master_key_file: self.master_key.clone(),
            insecure_unsealed: self.insecure_unsealed,
            peers: self.peers.clone(),
            cluster_id: self.cluster_id.clone(),
            tls: consensusdb_node::config::TlsConfig {
                ca_file: self.tls_ca.clone(),
                cert_file: self.tls_cert.clone(),
                key_file: self.tls_key.clone(),
                ..consensusdb_node::config::TlsConfig::default()
            },
        };
        NodeConfig::load(self.config.as_deref(), std::env::vars_os(), &flags)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Config(args) => match args.load() {
            Ok(config) => match toml::to_string_pretty(&config) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            },
            Err(error) => fail(&error),
        },
        Command::Init(args) => offline(credentials::init(&args, &mut std::io::stdout().lock())),
        Command::Cert(command) => offline(credentials::cert(&command, &mut std::io::stdout().lock())),
        Command::MasterKey(command) => {
            offline(credentials::master_key(&command, &mut std::io::stdout().lock()))
        }
        Command::Shell(args) => shell(&cli.connect, &args),
        Command::Client(command) => client_command(&cli.connect, &command),
        Command::Cluster(command) => cluster_command(&cli.connect, &command),
        Command::Access(command) => run_command(consensusdb_node::cli::run_access(&cli.connect, &command)),
        Command::Keys(command) => run_command(consensusdb_node::cli::run_keys(&cli.connect, &command)),
    }
}

/// The exit of a command that reaches no node.
fn offline(result: Result<(), consensusdb_pki::PkiError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn client_command(connect: &ConnectArgs, command: &ClientCommand) -> ExitCode {
    run_command(consensusdb_node::cli::run_once(connect, command))
}

fn cluster_command(connect: &ConnectArgs, command: &ClusterCommand) -> ExitCode {
    run_command(consensusdb_node::cli::run_cluster(connect, command))
}

/// Runs a one-shot command to completion; its failure becomes the exit code.
fn run_command(command: impl std::future::Future<Output = Result<(), CliError>>) -> ExitCode {
    let runtime = match client_runtime() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("consensusdb: {error}");
            error.into()
        }
    }
}

fn shell(connect: &ConnectArgs, args: &ShellArgs) -> ExitCode {
    let runtime = match client_runtime() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    let history = if args.no_history {
        None
    } else {
        args.history.clone().or_else(consensusdb_node::cli::shell::default_history)
    };
    match consensusdb_node::cli::shell::run(connect, history, &runtime) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("consensusdb: {error}");
            error.into()
        }
    }
}

/// Client commands wait on one node at a time; a single thread is plenty.
fn client_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("consensusdb: {error}");
    ExitCode::FAILURE
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match args.load() {
        Ok(config) => config,
        Err(error) => return fail(&error),
    };
    // Before anything opens a file: RocksDB's files and client connections
    // share this limit (see `descriptors`).
    match consensusdb_node::descriptors::raise_limit() {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    let result = runtime.block_on(async move {
        // Listen for signals before anything slow, so a SIGTERM during
        // start-up (RocksDB replaying its WAL) still ends in a clean exit.
        let shutdown = ShutdownSignal::install().map_err(consensusdb_node::NodeError::Signals)?;
        // SIGHUP reloads the certificate and master key files; registered
        // now, since its default action would end the process.
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(consensusdb_node::NodeError::Signals)?;
        let listener = consensusdb_node::bind(&config).await?;
        let http = consensusdb_node::bind_http(&config).await?;
        let mut node = consensusdb_node::Node::open(&config, listener).await?;
        if let Some(http) = http {
            node = node.with_http(http);
        }
        let addr = node
            .local_addr()
            .map_err(|source| consensusdb_node::NodeError::Bind { addr: config.grpc.listen, source })?;
        let triggers = node.reload_triggers();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the certificate and master key files");
                triggers.iter().for_each(|trigger| trigger.notify_one());
            }
        });
        let security =
            if node.is_tls() { "mTLS" } else { "PLAINTEXT (--insecure-plaintext, development only)" };
        // Printed once storage is open and the port is bound: scripts and
        // tests wait for this line to know the node is ready.
        println!(
            "consensusdb serving gRPC on {addr} over {security} with data in {}",
            config.data_dir.display()
        );
        // Both listeners are bound by now, so either line means ready.
        if let Some(http) = node.http_addr() {
            let http = http
                .map_err(|source| consensusdb_node::NodeError::Bind { addr: config.http.listen, source })?;
            println!("consensusdb serving HTTP on {http}");
        }
        if let Some(admin) = node.self_made_admin() {
            println!(
                "consensusdb: the admin client credential is {} (key {}, CA {})",
                admin.certificate.display(),
                admin.key.display(),
                admin.ca.display()
            );
        }
        node.serve(shutdown.received()).await
    });
    // Storage is closed and flushed by now; a blocking read still running
    // must not keep the process (and its data-directory lock) alive.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// How long the runtime waits for blocking tasks once the node has stopped.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// SIGTERM and SIGINT (Ctrl-C), registered at once.
struct ShutdownSignal {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// Completes when either signal arrives (including before this is polled).
    async fn received(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {},
            _ = self.interrupt.recv() => {},
        }
        tracing::info!("shutdown requested: draining");
    }
}

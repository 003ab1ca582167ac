//! Node configuration: a serde struct, layered defaults < file <
//! environment (`CONSENSUSDB_*`, nested with `__`) < command-line flags.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use consensusdb_storage::{StoreOptions, SyncPolicy};
use consensusdb_types::limits::MAX_PAYLOAD_BYTES;
use consensusdb_types::{FieldError, Limits};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of environment variables that set configuration.
pub const ENV_PREFIX: &str = "CONSENSUSDB_";
/// The environment variable naming a config file (not a config key itself).
pub const CONFIG_FILE_ENV: &str = "CONSENSUSDB_CONFIG";
/// The environment variable listing the nodes client commands talk to (not
/// a node config key either).
pub const SERVERS_ENV: &str = "CONSENSUSDB_SERVERS";

/// Where a node keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./data";

/// Everything a node can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    /// The gRPC API.
    pub grpc: GrpcConfig,
    /// The JSON gateway.
    pub http: HttpConfig,
    /// Client connections, both servers together, and shutdown.
    pub server: ServerConfig,
    /// Durability and the writer.
    pub storage: StorageConfig,
    /// Limits on client input.
    pub limits: Limits,
    /// Replication: the cluster this node belongs to and its peers.
    pub cluster: ClusterConfig,
    /// The node's certificate, for both ports and for dialing peers.
    pub tls: TlsConfig,
    /// Sealing values at rest.
    pub seal: SealConfig,
    /// Development switches. Never for production.
    pub dev: DevConfig,
}

/// Replication: the cluster this node belongs to and its peers. A node with
/// no peers is a working one-node cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Nodes whose cluster ids differ refuse each other's streams; it is
    /// part of every identity, so it is 1 to 64 of ASCII letters, digits,
    /// `-`, `_` and `.`.
    pub id: String,
    /// Seed peers (`host:port` of their gRPC API); more are learned from them.
    pub peers: Vec<String>,
    /// How peers reach this node (`host:port`); empty means the address the
    /// gRPC listener is bound to.
    pub advertise: String,
    /// The local address connections to peers come from (a multi-homed
    /// host, or firewall rules by source); none lets the OS choose.
    pub source_address: Option<std::net::IpAddr>,
    /// Milliseconds between heartbeats on each replication stream.
    pub heartbeat_ms: u64,
    /// How far ahead of the local wall clock a replicated stamp may move
    /// this node's hybrid logical clock, in milliseconds.
    pub max_clock_drift_ms: u64,
    /// A node whose clock is further than this (ms) from most of its
    /// peers' refuses client writes until it agrees again; 0 turns the
    /// check off.
    pub max_clock_offset_ms: u64,
    /// Milliseconds between purges of what every member holds.
    pub purge_interval_ms: u64,
    /// A member further behind than this (ms of an origin's clock) is not
    /// waited for before the log is purged; it must bootstrap again.
    pub retention_max_lag_ms: u64,
    /// Start even if the stored membership is damaged, from the seeds;
    /// purges wait until a peer has told this node the members it knows.
    pub forget_damaged_membership: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let mesh = consensusdb_mesh::MeshConfig::default();
        Self {
            id: mesh.cluster_id,
            peers: Vec::new(),
            advertise: String::new(),
            source_address: None,
            heartbeat_ms: u64::try_from(mesh.heartbeat.as_millis()).unwrap_or(1000),
            max_clock_drift_ms: StoreOptions::new("").max_clock_drift_ms,
            max_clock_offset_ms: mesh.max_clock_offset_ms,
            purge_interval_ms: u64::try_from(mesh.purge_interval.as_millis()).unwrap_or(10_000),
            retention_max_lag_ms: mesh.retention_max_lag_ms,
            forget_damaged_membership: mesh.forget_damaged_membership,
        }
    }
}

/// The gRPC API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
}

/// The JSON gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether to serve it.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Request bodies over this many bytes are refused with 413.
    pub max_body_bytes: usize,
    /// DNS names the gateway answers to besides IP addresses and
    /// `localhost`; a request for any other `Host` gets 421, so a web
    /// page cannot reach the gateway through a name it controls (DNS
    /// rebinding).
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 4481)),
            max_body_bytes: consensusdb_api::http::DEFAULT_MAX_BODY_BYTES,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Client connections (gRPC and HTTP together) and shutdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Most client connections open at once; one more is closed at once.
    /// 0 derives it from the open-file limit: half of it, less a margin,
    /// with the other half kept for RocksDB's files.
    pub max_connections: usize,
    /// Milliseconds a connection may move no byte either way before it is
    /// closed.
    pub idle_timeout_ms: u64,
    /// Milliseconds shutdown waits for calls in flight (a scan, a
    /// replication stream) before it cuts the connections still open.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { max_connections: 0, idle_timeout_ms: 300_000, shutdown_grace_ms: 10_000 }
    }
}

/// Durability and the writer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// When to fsync: `always` (the default) or `os`.
    pub sync: SyncPolicy,
    /// Most writes in one group commit.
    pub max_group_commit: usize,
    /// Bytes of keys and values that may queue for the writer before
    /// callers wait.
    pub writer_queue_bytes: usize,
    /// Scans that may stream at once; more get `UNAVAILABLE`.
    pub max_concurrent_scans: usize,
    /// Milliseconds a scan waits for its client to take the next chunk
    /// before it gives up; the client gets an error with a page token to
    /// continue from.
    pub scan_stall_timeout_ms: u64,
}

/// The node's credential, as `consensusdb init` and `consensusdb cert node`
/// make it. Unset, a one-node cluster makes its own CA and credentials
/// under `<data_dir>/tls` on first start; a node with peers needs the
/// cluster's shared CA, so it must be given these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The CA bundle to trust (PEM): the cluster CA, or the old and the
    /// new CA during a rotation.
    pub ca_file: Option<PathBuf>,
    /// The node's certificate (PEM).
    pub cert_file: Option<PathBuf>,
    /// The node's private key (PEM).
    pub key_file: Option<PathBuf>,
    /// Milliseconds between looks at the three files; a change reloads
    /// them (so does SIGHUP). 0 turns the polling off.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self { ca_file: None, cert_file: None, key_file: None, reload_interval_ms: 10_000 }
    }
}

impl TlsConfig {
    /// The three files, when all are set.
    pub fn files(&self) -> Option<consensusdb_pki::TlsFiles> {
        Some(consensusdb_pki::TlsFiles {
            ca_bundle: self.ca_file.clone()?,
            certificate: self.cert_file.clone()?,
            key: self.key_file.clone()?,
        })
    }
}

/// Sealing values at rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SealConfig {
    /// The cluster's master key file, as `consensusdb init` wrote it
    /// (`master.key`). Unset: `master.key` beside `tls.ca_file`, or, on a
    /// node that makes its own credentials, `<data_dir>/tls/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Milliseconds between looks at the master key file; a change
    /// reloads it (so does SIGHUP). 0 turns the polling off.
    pub reload_interval_ms: u64,
}

impl Default for SealConfig {
    fn default() -> Self {
        Self { master_key_file: None, reload_interval_ms: 10_000 }
    }
}

/// Development switches. Never for production.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevConfig {
    /// Serve plaintext gRPC and HTTP, with nobody authenticated, and dial
    /// peers in plaintext. Development only.
    pub insecure_plaintext: bool,
    /// Store new values in the clear, without a master key. Development
    /// only: values sealed before (or by peers) cannot be read.
    pub insecure_unsealed: bool,
    /// Milliseconds added to the clock this node stamps writes with, to
    /// test how the cluster copes with a skewed clock.
    pub clock_skew_ms: i64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            limits: Limits::default(),
            cluster: ClusterConfig::default(),
            tls: TlsConfig::default(),
            seal: SealConfig::default(),
            dev: DevConfig::default(),
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 4482)) }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        let defaults = StoreOptions::new("");
        Self {
            sync: defaults.sync,
            max_group_commit: defaults.max_group_commit,
            writer_queue_bytes: defaults.writer_queue_bytes,
            max_concurrent_scans: defaults.max_concurrent_scans,
            scan_stall_timeout_ms: u64::try_from(defaults.scan_stall_timeout.as_millis()).unwrap_or(60_000),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub grpc_listen: Option<SocketAddr>,
    /// `--http-listen`.
    pub http_listen: Option<SocketAddr>,
    /// `--sync`.
    pub sync: Option<SyncPolicy>,
    /// `--insecure-plaintext`.
    pub insecure_plaintext: bool,
    /// `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub tls: TlsConfig,
    /// `--master-key`.
    pub master_key_file: Option<PathBuf>,
    /// `--insecure-unsealed`.
    pub insecure_unsealed: bool,
    /// `--cluster-id`.
    pub cluster_id: Option<String>,
    /// `--peer`, repeatable; replaces `cluster.peers` when given.
    pub peers: Vec<String>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer did not parse, or named an unknown key.
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// The config file given does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    /// A value is out of range.
    #[error("configuration: {0}")]
    Invalid(#[from] FieldError),
    /// A `CONSENSUSDB_*` variable is not valid UTF-8.
    #[error("environment variable {0} is not valid UTF-8")]
    NotUtf8(String),
}

/// The `CONSENSUSDB_*` variables of `env`. Other variables are ignored even
/// when they are not UTF-8; ours must be.
fn config_variables(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)).map(str::to_string) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::NotUtf8(name.clone()))?;
        out.push((name, value));
    }
    Ok(out)
}

impl NodeConfig {
    /// Loads the layers: defaults, then `file` (or `$CONSENSUSDB_CONFIG`),
    /// then `CONSENSUSDB_*` variables from `env`, then `flags`; validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
        flags: &FlagOverrides,
    ) -> Result<Self, ConfigError> {
        let env = config_variables(env)?;
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.iter().find(|(k, _)| k == CONFIG_FILE_ENV).map(|(_, v)| PathBuf::from(v)));
        let mut figment = Figment::from(Serialized::defaults(NodeConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Figment reads the process environment; to keep loading testable,
        // the given variables are turned into a provider of their own.
        let env_toml = env_as_toml(&env);
        figment = figment.merge(Toml::string(&env_toml));
        if let Some(dir) = &flags.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        if let Some(listen) = flags.grpc_listen {
            figment = figment.merge(Serialized::default("grpc.listen", listen));
        }
        if let Some(listen) = flags.http_listen {
            figment = figment.merge(Serialized::default("http.listen", listen));
        }
        if let Some(sync) = flags.sync {
            figment = figment.merge(Serialized::default("storage.sync", sync));
        }
        if let Some(id) = &flags.cluster_id {
            figment = figment.merge(Serialized::default("cluster.id", id));
        }
        if !flags.peers.is_empty() {
            figment = figment.merge(Serialized::default("cluster.peers", &flags.peers));
        }
        for (key, path) in [
            ("tls.ca_file", &flags.tls.ca_file),
            ("tls.cert_file", &flags.tls.cert_file),
            ("tls.key_file", &flags.tls.key_file),
        ] {
            if let Some(path) = path {
                figment = figment.merge(Serialized::default(key, path));
            }
        }
        if flags.insecure_plaintext {
            figment = figment.merge(Serialized::default("dev.insecure_plaintext", true));
        }
        if let Some(path) = &flags.master_key_file {
            figment = figment.merge(Serialized::default("seal.master_key_file", path));
        }
        if flags.insecure_unsealed {
            figment = figment.merge(Serialized::default("dev.insecure_unsealed", true));
        }
        let config: NodeConfig = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(FieldError::new("data_dir", "must not be empty"));
        }
        if self.storage.max_group_commit == 0 {
            return Err(FieldError::new("storage.max_group_commit", "must be greater than 0"));
        }
        if self.storage.writer_queue_bytes < MAX_PAYLOAD_BYTES {
            return Err(FieldError::new(
                "storage.writer_queue_bytes",
                format!("must be at least {MAX_PAYLOAD_BYTES}, the largest single request"),
            ));
        }
        if self.storage.max_concurrent_scans == 0 {
            return Err(FieldError::new("storage.max_concurrent_scans", "must be greater than 0"));
        }
        if self.storage.scan_stall_timeout_ms == 0 {
            return Err(FieldError::new("storage.scan_stall_timeout_ms", "must be greater than 0"));
        }
        self.limits.validate("limits")?;
        if self.http.max_body_bytes < 1024 {
            return Err(FieldError::new("http.max_body_bytes", "must be at least 1024"));
        }
        // The cluster id is part of every identity (cdb://<cluster>/...).
        consensusdb_types::identity::check_name("cluster.id", &self.cluster.id)?;
        if self.cluster.heartbeat_ms == 0 {
            return Err(FieldError::new("cluster.heartbeat_ms", "must be greater than 0"));
        }
        if self.cluster.purge_interval_ms == 0 {
            return Err(FieldError::new("cluster.purge_interval_ms", "must be greater than 0"));
        }
        for (i, peer) in self.cluster.peers.iter().enumerate() {
            consensusdb_mesh::check_peer_address(peer)
                .map_err(|why| FieldError::new(format!("cluster.peers[{i}]"), why))?;
        }
        if !self.cluster.advertise.is_empty() {
            consensusdb_mesh::check_peer_address(&self.cluster.advertise)
                .map_err(|why| FieldError::new("cluster.advertise", why))?;
        }
        if self.server.idle_timeout_ms == 0 {
            return Err(FieldError::new("server.idle_timeout_ms", "must be greater than 0"));
        }
        let tls = [&self.tls.ca_file, &self.tls.cert_file, &self.tls.key_file];
        let given = tls.iter().filter(|path| path.is_some()).count();
        if given != 0 && given != 3 {
            return Err(FieldError::new(
                "tls",
                "give all of ca_file, cert_file and key_file (--tls-ca, --tls-cert, --tls-key), or none",
            ));
        }
        if given == 3 && self.dev.insecure_plaintext {
            return Err(FieldError::new(
                "dev.insecure_plaintext",
                "turns TLS off, but tls files are configured too: drop one of them",
            ));
        }
        Ok(())
    }

    /// The options to open storage with; RocksDB keeps at most
    /// `max_open_files` table files open.
    pub fn store_options(&self, max_open_files: i32) -> StoreOptions {
        StoreOptions {
            data_dir: self.data_dir.clone(),
            sync: self.storage.sync,
            limits: self.limits,
            max_group_commit: self.storage.max_group_commit,
            writer_queue_bytes: self.storage.writer_queue_bytes,
            max_concurrent_scans: self.storage.max_concurrent_scans,
            max_clock_drift_ms: self.cluster.max_clock_drift_ms,
            clock_skew_ms: self.dev.clock_skew_ms,
            scan_stall_timeout: std::time::Duration::from_millis(self.storage.scan_stall_timeout_ms),
            max_open_files,
            // Resolved at start, apart from the rest (`crate::master_key`).
            master_keys: None,
        }
    }

    /// The mesh settings; `bound` is the address the gRPC listener got,
    /// advertised when `cluster.advertise` is empty.
    pub fn mesh_config(&self, bound: std::net::SocketAddr) -> consensusdb_mesh::MeshConfig {
        let advertise = if self.cluster.advertise.is_empty() {
            (!bound.ip().is_unspecified()).then(|| bound.to_string())
        } else {
            Some(self.cluster.advertise.clone())
        };
        consensusdb_mesh::MeshConfig {
            cluster_id: self.cluster.id.clone(),
            advertise_address: advertise,
            seeds: self.cluster.peers.clone(),
            heartbeat: std::time::Duration::from_millis(self.cluster.heartbeat_ms),
            purge_interval: std::time::Duration::from_millis(self.cluster.purge_interval_ms),
            retention_max_lag_ms: self.cluster.retention_max_lag_ms,
            max_clock_offset_ms: self.cluster.max_clock_offset_ms,
            forget_damaged_membership: self.cluster.forget_damaged_membership,
            ..consensusdb_mesh::MeshConfig::default()
        }
    }
}

/// Turns `CONSENSUSDB_GRPC__LISTEN=...` into `grpc.listen = ...` TOML, so
/// unknown keys are refused by `deny_unknown_fields` like in any other
/// layer. Each value is typed by the field it sets (looked up in the
/// defaults): `CONSENSUSDB_DATA_DIR=2024` stays a path, while
/// `CONSENSUSDB_LIMITS__MAX_READ_LIMIT=50` becomes a number.
fn env_as_toml(env: &[(String, String)]) -> String {
    let defaults = toml::Value::try_from(NodeConfig::default()).ok();
    let mut out = String::new();
    for (name, value) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else { continue };
        if name == CONFIG_FILE_ENV || name == SERVERS_ENV || key.is_empty() {
            continue;
        }
        let path: Vec<String> = key.split("__").map(str::to_lowercase).collect();
        let target = path.iter().try_fold(defaults.as_ref(), |node, part| Some(node?.get(part)));
        let typed = match target.flatten() {
            Some(toml::Value::Integer(_)) => value.parse::<i64>().ok().map(toml::Value::Integer),
            Some(toml::Value::Boolean(_)) => value.parse::<bool>().ok().map(toml::Value::Boolean),
            // Lists are comma-separated: CONSENSUSDB_CLUSTER__PEERS=a:4482,b:4482.
            Some(toml::Value::Array(_)) => Some(toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| toml::Value::String(v.into()))
                    .collect(),
            )),
            _ => None,
        }
        // A value that does not parse as its field's type stays a string, so
        // the error names the key and what was expected.
        .unwrap_or_else(|| toml::Value::String(value.clone()));
        // Dotted keys on one line need each segment quoted.
        let dotted: Vec<String> = path.iter().map(|p| toml::Value::String(p.clone()).to_string()).collect();
        out.push_str(&format!("{} = {typed}\n", dotted.join(".")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn no_config_at_all_serves_loopback_4482_with_data_in_dot_data() {
        let config = NodeConfig::load(None, env(&[]), &FlagOverrides::default()).unwrap();
        assert_eq!(config.grpc.listen.to_string(), "127.0.0.1:4482");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.storage.sync, SyncPolicy::Always);
    }

    #[test]
    fn the_checked_in_example_parses_and_validates() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config.example.toml");
        let config = NodeConfig::load(Some(&example), env(&[]), &FlagOverrides::default()).unwrap();
        assert_eq!(config, NodeConfig::default(), "the example documents the defaults");
    }

    #[test]
    fn layers_apply_in_order_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\n[grpc]\nlisten = \"127.0.0.1:1000\"\n[limits]\nmax_read_limit = 50\n",
        )
        .unwrap();
        let vars = env(&[
            ("CONSENSUSDB_GRPC__LISTEN", "127.0.0.1:2000"),
            ("CONSENSUSDB_LIMITS__MAX_READ_LIMIT", "60"),
            ("CONSENSUSDB_SERVERS", "http://127.0.0.1:9"),
            ("OTHER", "x"),
        ]);
        let flags = FlagOverrides { data_dir: Some("/from/flag".into()), ..Default::default() };
        let config = NodeConfig::load(Some(&file), vars, &flags).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.grpc.listen.to_string(), "127.0.0.1:2000");
        assert_eq!(config.limits.max_read_limit, 60);
        let vars = env(&[("CONSENSUSDB_CONFIG", file.to_str().unwrap())]);
        let config = NodeConfig::load(None, vars, &FlagOverrides::default()).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/file"));
    }

    #[test]
    fn sync_is_spelled_always_or_os_in_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "[storage]\nsync = \"os\"\n").unwrap();
        let config = NodeConfig::load(Some(&file), env(&[]), &FlagOverrides::default()).unwrap();
        assert_eq!(config.storage.sync, SyncPolicy::Os);
        assert_eq!(config.store_options(-1).sync, SyncPolicy::Os);
        let vars = env(&[("CONSENSUSDB_STORAGE__SYNC", "always")]);
        let config = NodeConfig::load(Some(&file), vars, &FlagOverrides::default()).unwrap();
        assert_eq!(config.storage.sync, SyncPolicy::Always);
        let flags = FlagOverrides { sync: Some(SyncPolicy::Os), ..Default::default() };
        assert_eq!(NodeConfig::load(None, env(&[]), &flags).unwrap().storage.sync, SyncPolicy::Os);
        let err =
            NodeConfig::load(None, env(&[("CONSENSUSDB_STORAGE__SYNC", "never")]), &FlagOverrides::default())
                .unwrap_err();
        assert!(err.to_string().contains("sync"), "{err}");
    }

    #[test]
    fn unknown_keys_in_any_layer_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "[grpc]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
        let err = NodeConfig::load(Some(&file), env(&[]), &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err = NodeConfig::load(None, env(&[("CONSENSUSDB_DATADIR", "x")]), &FlagOverrides::default())
            .unwrap_err();
        assert!(err.to_string().contains("datadir"), "{err}");
    }

    #[test]
    fn environment_values_take_their_field_type() {
        let vars = env(&[("CONSENSUSDB_DATA_DIR", "2024"), ("CONSENSUSDB_DEV__INSECURE_PLAINTEXT", "true")]);
        let config = NodeConfig::load(None, vars, &FlagOverrides::default()).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("2024"));
        assert!(config.dev.insecure_plaintext);
        let err = NodeConfig::load(
            None,
            env(&[("CONSENSUSDB_LIMITS__MAX_READ_LIMIT", "lots")]),
            &FlagOverrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_read_limit"), "{err}");
    }

    #[test]
    fn only_our_variables_must_be_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let foreign = (OsString::from("OTHER"), OsString::from_vec(vec![0xFF]));
        NodeConfig::load(None, vec![foreign], &FlagOverrides::default()).unwrap();
        let ours = (OsString::from("CONSENSUSDB_DATA_DIR"), OsString::from_vec(vec![0xFF]));
        let err = NodeConfig::load(None, vec![ours], &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("CONSENSUSDB_DATA_DIR"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let vars = env(&[("CONSENSUSDB_LIMITS__MAX_VALUE_BYTES", "8000000")]);
        let err = NodeConfig::load(None, vars, &FlagOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("limits.max_value_bytes"), "{err}");
    }

    #[test]
    fn tls_files_come_all_together_and_never_with_plaintext() {
        let one = TlsConfig { ca_file: Some("ca.pem".into()), ..TlsConfig::default() };
        let err =
            NodeConfig::load(None, env(&[]), &FlagOverrides { tls: one, ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("give all of ca_file"), "{err}");
        let all = TlsConfig {
            ca_file: Some("ca.pem".into()),
            cert_file: Some("n.pem".into()),
            key_file: Some("n.key".into()),
            ..TlsConfig::default()
        };
        let config =
            NodeConfig::load(None, env(&[]), &FlagOverrides { tls: all.clone(), ..Default::default() })
                .unwrap();
        assert_eq!(config.tls.files().unwrap().certificate, PathBuf::from("n.pem"));
        let both = FlagOverrides { tls: all, insecure_plaintext: true, ..Default::default() };
        let err = NodeConfig::load(None, env(&[]), &both).unwrap_err();
        assert!(err.to_string().contains("dev.insecure_plaintext"), "{err}");
        let any_address =
            FlagOverrides { grpc_listen: Some("0.0.0.0:4482".parse().unwrap()), ..Default::default() };
        NodeConfig::load(None, env(&[]), &any_address).expect("TLS serves on any address");
    }

    #[test]
    fn missing_config_file_is_a_clear_error() {
        let err =
            NodeConfig::load(Some(Path::new("/no/such/file.toml")), env(&[]), &FlagOverrides::default())
                .unwrap_err();
        assert!(err.to_string().contains("/no/such/file.toml"));
    }
}

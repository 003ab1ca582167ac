//! `consensusdb keys` (rotate, rewrap, reencrypt, list) and `consensusdb
//! tenant shred`: the data keys that seal each tenant's values at rest,
//! over the keys service. Every command needs the `cluster-admin` role.

use std::io::Write;
use std::time::Duration;

use consensusdb_client::AuthorizedChannel;
use consensusdb_proto::v1;
use consensusdb_proto::v1::keys_client::KeysClient;
use serde_json::json;

use crate::cli::cluster::object;
use crate::cli::failure::CliError;
use crate::cli::render::{Output, rfc3339_ms};

/// A data-key command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Rotate and list the data keys that seal tenants' values.
    #[command(subcommand)]
    Keys(KeysSubcommand),
    /// Tenant-wide operations.
    #[command(subcommand)]
    Tenant(TenantSubcommand),
}

/// Data keys.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysSubcommand {
    /// Seal the tenant's new values under new keys, on every node; what
    /// older keys sealed stays readable.
    Rotate {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Re-wrap every data key under the node's current master key, so an
    /// older master key can be retired (`consensusdb master-key retire`)
    /// once the re-wrapped keys have reached every node. Run it once the
    /// new master key is promoted on every node (`consensusdb master-key
    /// promote`).
    Rewrap,
    /// Seal the tenant's values again under new keys: every value still
    /// under a key the tenant's last rotation retired (run `keys rotate`
    /// first), or stored in the clear, is sealed under this node's current
    /// key; the new ciphertext replicates. Runs in the background on the
    /// node; this follows it until it is done (interrupting this leaves it
    /// running).
    Reencrypt {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Start it and return at once; follow it with `keys reencryption`.
        #[arg(long)]
        no_wait: bool,
    },
    /// The progress of the latest re-encryption of a tenant on this node.
    Reencryption {
        /// The tenant.
        #[arg(long)]
        tenant: String,
    },
    /// List data keys (never their bytes): tenant, origin, id, the newest
    /// master key that wraps it, when made, destroyed.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Tenant-wide operations.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TenantSubcommand {
    /// Crypto-shred a tenant: destroy every data key it has, on every node,
    /// so none of its values can be read again anywhere; its records are
    /// then removed in the background. Cannot be undone.
    Shred {
        /// The tenant.
        tenant: String,
        /// Confirms that the tenant's data is to be destroyed for good.
        #[arg(long)]
        yes: bool,
    },
}

impl KeysCommand {
    /// Runs the command over `channel`.
    pub async fn run<W: Write>(
        &self,
        channel: AuthorizedChannel,
        out: &mut Output<W>,
    ) -> Result<(), CliError> {
        let mut client = KeysClient::new(channel);
        match self {
            KeysCommand::Keys(KeysSubcommand::Rotate { tenant }) => {
                let request = v1::RotateTenantKeyRequest { tenant: tenant.clone() };
                let rotated = client.rotate_tenant_key(request).await?.into_inner();
                Ok(out.object(object(json!({
                    "tenant": tenant,
                    "rotated_at": rfc3339_ms(rotated.rotated_at_ms),
                })))?)
            }
            KeysCommand::Keys(KeysSubcommand::Rewrap) => {
                let outcome = client.rewrap_keys(v1::RewrapKeysRequest {}).await?.into_inner();
                out.object(object(json!({
                    "master_key_id": outcome.master_key_id,
                    "rewrapped": outcome.rewrapped,
                    "already": outcome.already,
                    "failed": outcome.failed,
                })))?;
                if outcome.failed.is_empty() {
                    return Ok(());
                }
                // The keys that were re-wrapped stay so; the others still
                // need their older master key, which must not be retired.
                Err(CliError::Status(tonic::Status::failed_precondition(format!(
                    "{} data keys were not re-wrapped and still need an older master key: {}",
                    outcome.failed.len(),
                    outcome.failed.join("; ")
                ))))
            }
            KeysCommand::Keys(KeysSubcommand::Reencrypt { tenant, no_wait }) => {
                let request = v1::ReencryptRequest { tenant: tenant.clone() };
                let mut progress = client.reencrypt(request).await?.into_inner();
                let mut shown = None;
                while !no_wait && progress.state() == v1::ReencryptionState::ReencryptionRunning {
                    // Pass 0: the walk has not counted the records yet.
                    if progress.pass > 0 && shown != Some(progress.scanned) {
                        eprintln!(
                            "consensusdb: re-encrypting {tenant:?}: {} of {} records looked at, {} sealed again",
                            progress.scanned, progress.total, progress.resealed
                        );
                        shown = Some(progress.scanned);
                    }
                    tokio::time::sleep(PROGRESS_POLL).await;
                    let request = v1::GetReencryptionRequest { tenant: tenant.clone() };
                    progress = client.get_reencryption(request).await?.into_inner();
                }
                report_reencryption(out, &progress)
            }
            KeysCommand::Keys(KeysSubcommand::Reencryption { tenant }) => {
                let request = v1::GetReencryptionRequest { tenant: tenant.clone() };
                let progress = client.get_reencryption(request).await?.into_inner();
                report_reencryption(out, &progress)
            }
            KeysCommand::Keys(KeysSubcommand::List { tenant }) => {
                let request = v1::ListKeysRequest { tenant: tenant.clone().unwrap_or_default() };
                for key in client.list_keys(request).await?.into_inner().keys {
                    out.object(object(json!({
                        "tenant": key.tenant,
                        "origin": key.origin,
                        "id": key.id,
                        "master_key_id": if key.destroyed { json!(null) } else { json!(key.master_key_id) },
                        "made_at": rfc3339_ms(key.made_at_ms),
                        "destroyed": key.destroyed,
                    })))?;
                }
                Ok(())
            }
            KeysCommand::Tenant(TenantSubcommand::Shred { tenant, yes }) => {
                if !yes {
                    return Err(CliError::Argument {
                        field: "--yes".into(),
                        message: format!(
                            "shredding destroys every value of tenant {tenant:?} on every node, for good: \
                             add --yes to go ahead"
                        ),
                    });
                }
                let request = v1::ShredTenantRequest { tenant: tenant.clone() };
                let shredded = client.shred_tenant(request).await?.into_inner();
                Ok(out.object(object(json!({
                    "tenant": tenant,
                    "keys_destroyed": shredded.keys_destroyed,
                    "shredded_at": rfc3339_ms(shredded.shredded_at_ms),
                })))?)
            }
        }
    }
}

/// How often `keys reencrypt` asks for the progress.
const PROGRESS_POLL: Duration = Duration::from_millis(500);

/// Prints a re-encryption's progress; an error if it stopped, or left
/// values it could not open (those stay under their old keys).
fn report_reencryption<W: Write>(
    out: &mut Output<W>,
    progress: &v1::ReencryptionProgress,
) -> Result<(), CliError> {
    let state = match progress.state() {
        v1::ReencryptionState::ReencryptionRunning => "running",
        v1::ReencryptionState::ReencryptionDone => "done",
        v1::ReencryptionState::ReencryptionStopped => "stopped",
        v1::ReencryptionState::Unspecified => "unknown",
    };
    out.object(object(json!({
        "tenant": progress.tenant,
        "state": state,
        "started_at": rfc3339_ms(progress.started_at_ms),
        "pass": progress.pass,
        "rotated_at": Some(progress.rotated_at_ms).filter(|&ms| ms != 0).map(rfc3339_ms),
        "total": progress.total,
        "scanned": progress.scanned,
        "resealed": progress.resealed,
        "already": progress.already,
        "changed": progress.changed,
        "refused": progress.refused,
        "refusals": progress.refusals,
        "error": Some(&progress.error).filter(|error| !error.is_empty()),
    })))?;
    if progress.state() == v1::ReencryptionState::ReencryptionStopped {
        return Err(CliError::Status(tonic::Status::unavailable(format!(
            "the re-encryption of {:?} stopped ({}); it resumes when the node restarts, \
             or run `keys reencrypt` again",
            progress.tenant, progress.error
        ))));
    }
    if progress.refused > 0 && progress.state() == v1::ReencryptionState::ReencryptionDone {
        return Err(CliError::Status(tonic::Status::failed_precondition(format!(
            "{} values could not be opened and stay under their old keys: {}",
            progress.refused,
            progress.refusals.join("; ")
        ))));
    }
    Ok(())
}

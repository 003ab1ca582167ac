//! The `consensusdb.v1.Keys` service: rotating, re-wrapping, listing and
//! shredding the data keys that seal tenants' values, and re-encrypting
//! values under new keys, for cluster admins.

use consensusdb_proto::v1::keys_server::Keys as KeysRpc;
use consensusdb_proto::v1::{self};
use consensusdb_storage::{DataKeyInfo, ReencryptionProgress, ReencryptionState, Store};
use consensusdb_types::HybridClock;
use tonic::{Request, Response, Status};

use crate::grpc::authenticate::cluster_admin;
use crate::grpc::status::from_service;
use crate::records_api::ServiceError;

/// Serves the node's data keys.
#[derive(Clone)]
pub struct KeysService {
    store: Store,
}

impl KeysService {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn status(error: consensusdb_storage::StorageError) -> Status {
    from_service(ServiceError::from(error))
}

/// An HLC's wall-clock part, in Unix milliseconds.
fn hlc_ms(hlc: u64) -> u64 {
    hlc >> HybridClock::LOGICAL_BITS
}

fn data_key(key: DataKeyInfo) -> v1::DataKey {
    v1::DataKey {
        tenant: key.tenant,
        origin: key.origin.to_string(),
        id: key.id,
        master_key_id: key.master_key_id.unwrap_or(0),
        made_at_ms: hlc_ms(key.stamp.hlc),
        destroyed: key.destroyed,
    }
}

fn reencryption(progress: ReencryptionProgress) -> v1::ReencryptionProgress {
    let state = match progress.state {
        ReencryptionState::Running => v1::ReencryptionState::ReencryptionRunning,
        ReencryptionState::Done => v1::ReencryptionState::ReencryptionDone,
        ReencryptionState::Stopped(_) => v1::ReencryptionState::ReencryptionStopped,
    };
    v1::ReencryptionProgress {
        state: state.into(),
        error: progress.state.error().unwrap_or_default().to_string(),
        started_at_ms: hlc_ms(progress.started_at.hlc),
        pass: progress.pass,
        rotated_at_ms: progress.rotated_at.map_or(0, hlc_ms),
        total: progress.total,
        scanned: progress.scanned,
        resealed: progress.resealed,
        already: progress.already,
        changed: progress.changed,
        refused: progress.refused,
        refusals: progress.refusals,
        tenant: progress.tenant,
    }
}

#[tonic::async_trait]
impl KeysRpc for KeysService {
    async fn rotate_tenant_key(
        &self,
        request: Request<v1::RotateTenantKeyRequest>,
    ) -> Result<Response<v1::RotateTenantKeyResponse>, Status> {
        let admin = cluster_admin(&request, "rotating a tenant's keys")?;
        let tenant = request.into_inner().tenant;
        let stamp = self.store.rotate_tenant_key(&tenant).await.map_err(status)?;
        tracing::info!(%tenant, by = %admin, "rotated the tenant's data keys");
        Ok(Response::new(v1::RotateTenantKeyResponse { rotated_at_ms: hlc_ms(stamp.hlc) }))
    }

    async fn rewrap_keys(
        &self,
        request: Request<v1::RewrapKeysRequest>,
    ) -> Result<Response<v1::RewrapKeysResponse>, Status> {
        let admin = cluster_admin(&request, "re-wrapping data keys")?;
        let outcome = self.store.rewrap_data_keys().await.map_err(status)?;
        tracing::info!(by = %admin, master_key = outcome.master_key_id, rewrapped = outcome.rewrapped,
            failed = outcome.failed.len(), "re-wrapped the data keys");
        Ok(Response::new(v1::RewrapKeysResponse {
            master_key_id: outcome.master_key_id,
            rewrapped: outcome.rewrapped,
            already: outcome.already,
            failed: outcome.failed,
        }))
    }

    async fn reencrypt(
        &self,
        request: Request<v1::ReencryptRequest>,
    ) -> Result<Response<v1::ReencryptionProgress>, Status> {
        let admin = cluster_admin(&request, "re-encrypting a tenant's values")?;
        let tenant = request.into_inner().tenant;
        let progress = self.store.start_reencryption(&tenant).await.map_err(status)?;
        tracing::info!(%tenant, by = %admin, "re-encrypting the tenant's values");
        Ok(Response::new(reencryption(progress)))
    }

    async fn get_reencryption(
        &self,
        request: Request<v1::GetReencryptionRequest>,
    ) -> Result<Response<v1::ReencryptionProgress>, Status> {
        cluster_admin(&request, "following a re-encryption")?;
        let tenant = request.into_inner().tenant;
        match self.store.reencryption(&tenant) {
            Some(progress) => Ok(Response::new(reencryption(progress))),
            None => Err(Status::not_found(format!(
                "tenant: this node has run no re-encryption of {tenant:?} since it started"
            ))),
        }
    }

    async fn list_keys(
        &self,
        request: Request<v1::ListKeysRequest>,
    ) -> Result<Response<v1::ListKeysResponse>, Status> {
        cluster_admin(&request, "listing data keys")?;
        let tenant = Some(request.into_inner().tenant).filter(|tenant| !tenant.is_empty());
        let keys = self.store.data_keys(tenant).await.map_err(status)?;
        Ok(Response::new(v1::ListKeysResponse { keys: keys.into_iter().map(data_key).collect() }))
    }

    async fn shred_tenant(
        &self,
        request: Request<v1::ShredTenantRequest>,
    ) -> Result<Response<v1::ShredTenantResponse>, Status> {
        let admin = cluster_admin(&request, "shredding a tenant")?;
        let tenant = request.into_inner().tenant;
        let outcome = self.store.shred_tenant(&tenant).await.map_err(status)?;
        tracing::warn!(%tenant, by = %admin, keys_destroyed = outcome.keys_destroyed, "shredded a tenant");
        // The records go in the background: the keys are what makes the
        // data unreadable, and they are gone already.
        self.store.spawn_shred_removal(tenant, outcome.shredded_at);
        Ok(Response::new(v1::ShredTenantResponse {
            keys_destroyed: outcome.keys_destroyed,
            shredded_at_ms: hlc_ms(outcome.shredded_at.hlc),
        }))
    }
}

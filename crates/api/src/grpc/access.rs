//! The `consensusdb.v1.Access` service: tokens and grants, for cluster
//! admins, and `WhoAmI` for anyone with a credential.

use consensusdb_access::{Access, AccessError, TokenInfo};
use consensusdb_proto::status::refusal_status;
use consensusdb_proto::v1::access_server::Access as AccessRpc;
use consensusdb_proto::v1::{self};
use consensusdb_types::{ErrorCode, Principal};
use tonic::{Request, Response, Status};

use crate::grpc::authenticate::cluster_admin;
use crate::grpc::status::from_service;
use crate::records_api::ServiceError;

/// Serves tokens and grants from the node's [`Access`].
#[derive(Clone)]
pub struct AccessService {
    access: Access,
}

impl AccessService {
    /// A service over `access`.
    pub fn new(access: Access) -> Self {
        Self { access }
    }
}

fn status(error: AccessError) -> Status {
    from_service(match error {
        AccessError::Invalid(error) => error.into(),
        AccessError::NotFound(message) => ServiceError { code: ErrorCode::NotFound, message, field: None },
        AccessError::Refused(message) => {
            ServiceError { code: ErrorCode::FailedPrecondition, message, field: None }
        }
        AccessError::Storage(error) => error.into(),
    })
}

fn token(info: TokenInfo) -> v1::Token {
    v1::Token {
        id: info.id,
        name: info.stored.name,
        grants: info.stored.grants,
        created_ms: info.stored.created_ms,
        created_by: info.stored.created_by,
    }
}

#[tonic::async_trait]
impl AccessRpc for AccessService {
    async fn who_am_i(
        &self,
        request: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        let principal = Principal::of(request.extensions().get::<Principal>());
        principal.require_identified("WhoAmI").map_err(|refusal| refusal_status(&refusal))?;
        let (kind, grants) = match &principal {
            Principal::Unchecked => ("unchecked", Vec::new()),
            Principal::Anonymous => ("anonymous", Vec::new()),
            Principal::Node(_) => ("node", Vec::new()),
            Principal::Client { name, grants } => {
                let kind = if name.starts_with("token ") { "token" } else { "client" };
                (kind, grants.iter().map(ToString::to_string).collect())
            }
        };
        Ok(Response::new(v1::WhoAmIResponse { principal: principal.to_string(), kind: kind.into(), grants }))
    }

    async fn create_token(
        &self,
        request: Request<v1::CreateTokenRequest>,
    ) -> Result<Response<v1::CreateTokenResponse>, Status> {
        let admin = cluster_admin(&request, "creating a token")?;
        let request = request.into_inner();
        let (info, text) = self
            .access
            .create_token(&request.name, &request.grants, &admin.to_string())
            .await
            .map_err(status)?;
        tracing::info!(id = %info.id, name = %info.stored.name, by = %admin, "token created");
        Ok(Response::new(v1::CreateTokenResponse { token: Some(token(info)), secret_token: text }))
    }

    async fn list_tokens(
        &self,
        request: Request<v1::ListTokensRequest>,
    ) -> Result<Response<v1::ListTokensResponse>, Status> {
        cluster_admin(&request, "listing tokens")?;
        Ok(Response::new(v1::ListTokensResponse {
            tokens: self.access.tokens().into_iter().map(token).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<v1::RevokeTokenRequest>,
    ) -> Result<Response<v1::RevokeTokenResponse>, Status> {
        let admin = cluster_admin(&request, "revoking a token")?;
        let revoked = self.access.revoke_token(&request.get_ref().id_or_name).await.map_err(status)?;
        for info in &revoked {
            tracing::info!(id = %info.id, name = %info.stored.name, by = %admin, "token revoked");
        }
        Ok(Response::new(v1::RevokeTokenResponse { revoked: revoked.into_iter().map(token).collect() }))
    }

    async fn add_grant(
        &self,
        request: Request<v1::AddGrantRequest>,
    ) -> Result<Response<v1::AddGrantResponse>, Status> {
        let admin = cluster_admin(&request, "granting")?;
        let request = request.into_inner();
        self.access.add_grant(&request.identity, &request.grant).await.map_err(status)?;
        tracing::info!(identity = %request.identity, grant = %request.grant, by = %admin, "grant added");
        Ok(Response::new(v1::AddGrantResponse {}))
    }

    async fn list_grants(
        &self,
        request: Request<v1::ListGrantsRequest>,
    ) -> Result<Response<v1::ListGrantsResponse>, Status> {
        cluster_admin(&request, "listing grants")?;
        let identity = Some(request.get_ref().identity.as_str()).filter(|identity| !identity.is_empty());
        let identities = self
            .access
            .grants(identity)
            .map_err(status)?
            .into_iter()
            .map(|(identity, grants)| v1::IdentityGrants {
                identity: identity.to_string(),
                grants: grants.iter().map(ToString::to_string).collect(),
            })
            .collect();
        Ok(Response::new(v1::ListGrantsResponse { identities }))
    }

    async fn remove_grant(
        &self,
        request: Request<v1::RemoveGrantRequest>,
    ) -> Result<Response<v1::RemoveGrantResponse>, Status> {
        let admin = cluster_admin(&request, "removing a grant")?;
        let request = request.into_inner();
        self.access.remove_grant(&request.identity, &request.grant).await.map_err(status)?;
        tracing::info!(identity = %request.identity, grant = %request.grant, by = %admin, "grant removed");
        Ok(Response::new(v1::RemoveGrantResponse {}))
    }
}

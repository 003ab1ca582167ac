//! Bearer tokens on every call: the `authorization: Bearer <token>`
//! metadata a node resolves to the token's grants.

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::{Error, Result};

/// A channel whose calls carry the client's bearer token, if it has one.
pub type AuthorizedChannel = InterceptedService<Channel, BearerToken>;

/// A token as the builder holds it: printed as `..`.
#[derive(Clone)]
pub(crate) struct TokenText(pub String);

impl std::fmt::Debug for TokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

/// Adds a bearer token to each call; without one, adds nothing.
#[derive(Clone, Default)]
pub struct BearerToken(Option<AsciiMetadataValue>);

/// The token is a secret: never printed.
impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "BearerToken(..)" } else { "BearerToken(none)" })
    }
}

impl BearerToken {
    /// `token` (from `consensusdb token create`) for every call; `None`
    /// sends none.
    pub fn new(token: Option<&str>) -> Result<Self> {
        let Some(token) = token else { return Ok(Self(None)) };
        let token = token.trim();
        let refuse = || {
            Error::from(consensusdb_types::FieldError::new(
                "token",
                "must be printable ASCII, with no spaces",
            ))
        };
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse());
        }
        let mut value: AsciiMetadataValue = MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .map_err(|_| {
                Error::from(consensusdb_types::FieldError::new("token", "must be printable ASCII"))
            })?;
        // Kept out of debug output and HPACK's dynamic table.
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }

    /// Whether a token is sent.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// `channel` with this token on every call.
    pub fn on(&self, channel: Channel) -> AuthorizedChannel {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

//! Layer 3 of ConsensusDB, beside the mesh: who may do what. Bearer
//! tokens ([`token`]: only a hash is stored) and grants to certificate
//! identities are records of the reserved system tenant ([`stored`]), so
//! the mesh replicates them, and revocations, to every node like any data.
//! [`Access`] keeps a snapshot of them ([`state`]) that every request's
//! credential is resolved against, once, into a
//! [`consensusdb_types::Principal`]; the records layer and the cluster
//! services then check that principal and nothing else.

pub mod registry;
pub mod state;
pub mod stored;
pub mod token;

pub use registry::{Access, AccessError, REFRESH_EVERY};
pub use state::{AccessState, TokenInfo};

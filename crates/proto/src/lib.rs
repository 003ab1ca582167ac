//! The generated gRPC code of ConsensusDB (`consensusdb.v1` and
//! `consensusdb.mesh.v1`), and the conversions between its messages and
//! the domain types of `consensusdb-types`.
//!
//! This is the one crate that runs code generation. Servers and the SDK
//! import the messages from here and convert at their edge; prost structs
//! never travel deeper than the request handlers.

pub mod convert;
pub mod status;

/// Messages and services of `proto/consensusdb/v1/records.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("consensusdb.v1");

    /// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/consensusdb_v1_descriptor.bin"));
}

/// Messages and services of `proto/consensusdb/mesh/v1/replication.proto`:
/// the internal node-to-node protocol. An origin there is the client API's
/// [`crate::v1::Origin`], converted by [`crate::convert::origin`] like
/// everywhere else.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mesh {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("consensusdb.mesh.v1");

        /// The encoded `FileDescriptorSet` of the mesh protocol, for gRPC
        /// server reflection.
        pub const FILE_DESCRIPTOR_SET: &[u8] =
            include_bytes!(concat!(env!("OUT_DIR"), "/consensusdb_mesh_v1_descriptor.bin"));
    }
}

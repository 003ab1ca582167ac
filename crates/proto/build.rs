//! Generates the consensusdb.v1 and consensusdb.mesh.v1 gRPC code with protox (pure Rust, no
//! `protoc`), and keeps the encoded descriptor set for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The client API, with its descriptor set kept for server reflection.
    let records = protox::compile(["consensusdb/v1/records.proto"], [&proto_root])?;
    std::fs::write(out_dir.join("consensusdb_v1_descriptor.bin"), records.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(records)?;
    // The node-to-node protocol, also offered to reflection so `ClusterStatus`
    // and `Digest` can be called from grpcurl.
    let mesh = protox::compile(["consensusdb/mesh/v1/replication.proto"], [&proto_root])?;
    std::fs::write(out_dir.join("consensusdb_mesh_v1_descriptor.bin"), mesh.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(mesh)?;
    Ok(())
}

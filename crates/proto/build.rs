//! Generates the consensusdb.v1 (records, access, keys) and consensusdb.mesh.v1 gRPC code with protox (pure Rust, no
//! `protoc`), and keeps the encoded descriptor sets for server reflection.

use std::path::PathBuf;

use prost::Message;
use prost_types::FileDescriptorSet;

/// The client API.
const RECORDS: &str = "consensusdb/v1/records.proto";
/// Tokens and grants, in the client API's package.
const ACCESS: &str = "consensusdb/v1/access.proto";
/// Data keys (rotation, shredding), in the client API's package.
const KEYS: &str = "consensusdb/v1/keys.proto";
/// The node-to-node protocol; it imports [`RECORDS`] for `consensusdb.v1.Origin`.
const MESH: &str = "consensusdb/mesh/v1/replication.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Both packages, with what they import, in one set.
    let all = protox::compile([RECORDS, ACCESS, KEYS, MESH], [&proto_root])?;
    // Reflection gets one set per package. The mesh's includes records.proto,
    // which it imports, so a reflection client can resolve the mesh messages
    // from that set alone; the reflection service keeps one copy of a file
    // offered twice.
    let records = FileDescriptorSet {
        file: all
            .file
            .iter()
            .filter(|file| [RECORDS, ACCESS, KEYS].contains(&file.name()))
            .cloned()
            .collect(),
    };
    std::fs::write(out_dir.join("consensusdb_v1_descriptor.bin"), records.encode_to_vec())?;
    std::fs::write(out_dir.join("consensusdb_mesh_v1_descriptor.bin"), all.encode_to_vec())?;
    // One generation run over both, so the mesh messages name the one
    // generated `consensusdb.v1.Origin` (`crate::v1::Origin`) instead of a
    // copy.
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(all)?;
    Ok(())
}

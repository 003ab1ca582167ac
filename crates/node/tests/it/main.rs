//! Integration tests of a ConsensusDB node: in-process over gRPC on
//! ephemeral ports, and process-level against the real binary.
//!
//! One test binary on purpose: every test binary links RocksDB.

mod api;
mod bad_input;
mod durability;
mod process;
mod support;

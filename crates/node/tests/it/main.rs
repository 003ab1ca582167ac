//! Integration tests of a ConsensusDB node: in-process over gRPC on
//! ephemeral ports (directly and through the SDK), and process-level
//! against the real binary (crashes, client commands, the shell).
//!
//! One test binary on purpose: every test binary links RocksDB.

mod api;
mod authorization;
mod bad_input;
mod cli;
mod client_encryption;
mod credentials;
mod durability;
mod gateway;
mod process;
mod robustness;
mod sdk;
mod security;
mod stalled;
mod support;

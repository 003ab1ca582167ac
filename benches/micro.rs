//! Criterion micro-benchmarks of the hot pure functions: key encoding,
//! head and log-entry encode/decode, value compression, the conflict rule,
//! the CPU a new connection's TLS handshake costs, and sealing a value
//! (AES-256-GCM under a per-origin subkey) and opening it again.
//!
//! Run with `cargo bench --workspace --bench micro` (`--workspace` keeps the
//! dependency features, and so the RocksDB build, shared with the tests).
//! Each group also measures a reference in the same run (a plain copy of the
//! same bytes, or a plain integer comparison), so figures can be reported as
//! ratios.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use consensusdb_types::conflict::incoming_wins;
use consensusdb_types::key_codec::{decode_key, encode_key};
use consensusdb_types::{
    Compression, Head, LogEntry, Mutation, MutationKind, NodeId, Origin, RecordKey, RowKey, Stamp, TimeUuid,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};

fn sample_key() -> RecordKey {
    RowKey::new("tenant-000042", "ACCOUNT", "balance")
        .at(Some(TimeUuid::random_at(UNIX_EPOCH + Duration::from_millis(1_700_000_000_000))))
}

fn sample_head() -> Head {
    Head {
        stamp: Stamp { hlc: 1_700_000_000_000 << 16, origin: Origin { node: NodeId(7), incarnation: 1 } },
        seq: 123_456,
        expires_at_ms: Some(1_800_000_000_000),
        stored_size: 256,
        compression: Compression::Lz4,
        tombstone: false,
        seal: None,
        client_key: None,
    }
}

fn keys(c: &mut Criterion) {
    let key = sample_key();
    let encoded = encode_key(&key);
    let mut group = c.benchmark_group("key");
    group.bench_function("reference_copy_encoded", |b| b.iter(|| black_box(encoded.clone())));
    group.bench_function("encode", |b| b.iter(|| encode_key(black_box(&key))));
    group.bench_function("decode", |b| b.iter(|| decode_key(black_box(&encoded))));
    group.finish();
}

fn envelopes(c: &mut Criterion) {
    let head = sample_head();
    let head_bytes = head.encode();
    let entry = LogEntry {
        origin: head.stamp.origin,
        seq: 1,
        hlc: head.stamp.hlc,
        mutations: (0..100)
            .map(|i| Mutation {
                key: encode_key(&RowKey::new("tenant", "ACCOUNT", format!("m{i}")).at(None)),
                kind: MutationKind::Put {
                    value: vec![7; 256],
                    compression: Compression::None,
                    expires_at_ms: None,
                    seal: None,
                    client_key: None,
                },
            })
            .collect(),
    };
    let entry_bytes = entry.encode_value();
    let log_key = entry.log_key();
    let mut group = c.benchmark_group("envelope");
    group.bench_function("reference_copy_head", |b| b.iter(|| black_box(head_bytes.clone())));
    group.bench_function("head_encode", |b| b.iter(|| black_box(&head).encode()));
    group.bench_function("head_decode", |b| b.iter(|| Head::decode(black_box(&head_bytes))));
    group.throughput(Throughput::Bytes(entry_bytes.len() as u64));
    group.bench_function("reference_copy_log_entry_100", |b| b.iter(|| black_box(entry_bytes.clone())));
    group.bench_function("log_entry_encode_100", |b| b.iter(|| black_box(&entry).encode_value()));
    group.bench_function("log_entry_decode_100", |b| {
        b.iter(|| LogEntry::decode(black_box(&log_key), black_box(&entry_bytes)))
    });
    group.finish();
}

fn compression(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    // Random bytes (incompressible, as the load generator writes) and JSON-like text.
    let random: Vec<u8> = (0..4096).map(|_| rng.random()).collect();
    let text = br#"{"account":"tenant-42","balance":1024,"currency":"EUR"}"#.repeat(75);
    let mut group = c.benchmark_group("compression");
    for (name, value) in [("random_4k", &random), ("text_4k", &text)] {
        group.throughput(Throughput::Bytes(value.len() as u64));
        group.bench_with_input(BenchmarkId::new("reference_copy", name), value, |b, v| {
            b.iter(|| black_box(v.to_vec()))
        });
        for codec in [Compression::Lz4, Compression::Snappy] {
            let (used, stored) = codec.compress(value);
            group.bench_with_input(BenchmarkId::new(format!("{codec:?}_compress"), name), value, |b, v| {
                b.iter(|| codec.compress(black_box(v)))
            });
            group.bench_with_input(
                BenchmarkId::new(format!("{codec:?}_decompress"), name),
                &stored,
                |b, s| b.iter(|| used.decompress(black_box(s), value.len())),
            );
        }
    }
    group.finish();
}

fn conflict(c: &mut Criterion) {
    let a = sample_head().stamp;
    let b_stamp = Stamp { hlc: a.hlc, origin: Origin { node: NodeId(8), incarnation: 1 } };
    let mut group = c.benchmark_group("conflict");
    group.bench_function("reference_u64_compare", |b| b.iter(|| black_box(a.hlc) > black_box(b_stamp.hlc)));
    group.bench_function("incoming_wins_tie_on_hlc", |b| {
        b.iter(|| incoming_wins(Some(black_box(&a)), black_box(&b_stamp)))
    });
    group.finish();
}

/// Moves what `from` has to send into `to`.
fn transfer(from: &mut rustls::Connection, to: &mut rustls::Connection) {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).expect("writes to memory");
    }
    let mut reader = &bytes[..];
    while !reader.is_empty() {
        to.read_tls(&mut reader).expect("reads from memory");
        to.process_new_packets().expect("a valid handshake");
    }
}

/// One full handshake between `client` and `server`, in memory.
fn handshake(server: &Arc<rustls::ServerConfig>, client: &Arc<rustls::ClientConfig>) {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let mut client =
        rustls::Connection::Client(rustls::ClientConnection::new(client.clone(), name).expect("a client"));
    let mut server =
        rustls::Connection::Server(rustls::ServerConnection::new(server.clone()).expect("a server"));
    while client.is_handshaking() || server.is_handshaking() {
        transfer(&mut client, &mut server);
        transfer(&mut server, &mut client);
    }
}

/// The full mutual-TLS handshake of a new connection (node certificate,
/// client certificate, ECDSA P-256, TLS 1.3), against the same handshake
/// without a client certificate as the reference.
fn tls_handshake(c: &mut Criterion) {
    use consensusdb_pki::tls::{PemCredential, client_config, server_config};
    let ca = consensusdb_pki::Authority::create("bench").expect("a CA");
    let names = consensusdb_pki::NodeNames { dns: vec![], ips: vec!["127.0.0.1".parse().expect("ip")] };
    let validity = consensusdb_pki::issue::DEFAULT_VALIDITY;
    let node = ca.issue_node("n1", &names, validity).expect("a node certificate");
    let app = ca.issue_client("app", validity).expect("a client certificate");
    let pem = |credential| {
        let credential: &consensusdb_pki::Credential = credential;
        PemCredential {
            ca_bundle: ca.certificate_pem(),
            certificate_chain: &credential.certificate_pem,
            key: &credential.key_pem,
        }
    };
    let server = server_config(&pem(&node)).expect("a server configuration");
    let mutual = client_config(&pem(&app)).expect("a client configuration");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der_of(ca.certificate_pem())).expect("the CA");
    let anonymous = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS 1.3 and 1.2")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let mut group = c.benchmark_group("tls_handshake");
    group.bench_function("reference_server_auth_only", |b| b.iter(|| handshake(&server, &anonymous)));
    group.bench_function("mutual", |b| b.iter(|| handshake(&server, &mutual)));
    group.finish();
}

fn der_of(pem: &str) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM")
}

/// Sealing and opening 256 B and 4 KiB values, against a copy of the
/// same bytes (what an unsealed write or read does with them).
fn sealing(c: &mut Criterion) {
    use consensusdb_seal::{DataKey, KeyId, NonceParts};
    // The record key and stamp bind the value to its record (the
    // associated data); the key id and nonce would go in its head.
    let sealer = DataKey::generate(KeyId(1)).sealer_for(&[7; 24]);
    let key = encode_key(&sample_key());
    let stamp = 1_700_000_000_000u64.to_be_bytes();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    let mut group = c.benchmark_group("sealing");
    for size in [256usize, 4096] {
        let value: Vec<u8> = (0..size).map(|_| rng.random()).collect();
        let at = NonceParts { seq: 123_456, index: 0 };
        let sealed = sealer.seal(at, &[&key, &stamp], &value);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("reference_copy", size), |b| {
            b.iter(|| black_box(&value).clone())
        });
        group.bench_function(BenchmarkId::new("seal", size), |b| {
            b.iter(|| sealer.seal(at, &[&key, &stamp], black_box(&value)))
        });
        group.bench_function(BenchmarkId::new("open", size), |b| {
            b.iter(|| sealer.open(black_box(&sealed), &[&key, &stamp]).expect("opens"))
        });
    }
    group.finish();
}

criterion_group!(benches, keys, envelopes, compression, conflict, tls_handshake, sealing);
criterion_main!(benches);

//! Quick-start: an account's balance history in ConsensusDB.
//!
//! Start a node (`./scripts/run-node.sh`), then run
//! `cargo run --release --bin quickstart` from the same directory: it
//! connects over mTLS as the admin client the node made for itself under
//! `./data/tls`. For another node add `-- https://HOST:4482 DIR`, where
//! DIR holds `ca.pem`, `client-admin.pem` and `client-admin.key` (what
//! `consensusdb init` makes). It:
//!
//! 1. writes an account's balance history, one timed record per change;
//! 2. reads the latest balance;
//! 3. reads the 100 newest balances;
//! 4. writes a deposit event with a content-derived TimeUUID twice, and
//!    shows it is stored once;
//! 5. writes a note encrypted on the client with a password keychain, and
//!    reads it back: the node holds only ciphertext.

use std::time::{Duration, SystemTime};

use consensusdb_client::{
    AdminPaths, Client, Compression, Credentials, DEFAULT_ENDPOINT, Keychain, Record, RecordKey, RowKey,
    TimeUuid,
};
use futures::TryStreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    let credentials = match args.next() {
        Some(dir) => Credentials::admin_in(dir)?,
        None => {
            let node_made = AdminPaths::of_data_dir("data".as_ref());
            Credentials::from_files(&node_made.ca, &node_made.certificate, &node_made.key)?
        }
    };
    let client = Client::builder().endpoint(endpoint.as_str()).credentials(credentials).connect().await?;
    println!("connected to {endpoint}");

    // A fresh account per run, so the output is the same every time.
    let account = format!("alice-{}", TimeUuid::now());
    let balances = RowKey::new("acme", "ACCOUNT", format!("{account}/balance"));

    // 1. The balance history: one record per change, keyed by when it happened.
    let start = SystemTime::now() - Duration::from_secs(3600);
    for (minute, balance) in ["100.00", "120.00", "95.50", "180.25", "140.00"].into_iter().enumerate() {
        let at = start + Duration::from_secs(60 * minute as u64);
        let key = RecordKey::builder()
            .major("acme")
            .region("ACCOUNT")
            .minor(balances.minor.clone())
            .timestamp(TimeUuid::random_at(at))
            .build();
        client.put(Record::new(key, balance).compression(Compression::Lz4)).await?;
    }
    println!("wrote 5 balances for {account}");

    // 2. The latest balance.
    let latest = client.get_recent(balances.clone()).await?.ok_or("the history we just wrote is missing")?;
    println!("latest balance: {}", latest.value_str().unwrap_or("<binary>"));

    // 3. The 100 newest balances, newest first.
    let newest = client.get_range(balances.clone()).limit(100).await?;
    let values: Vec<&str> = newest.records.iter().map(|r| r.value_str().unwrap_or("<binary>")).collect();
    println!("newest {} balances: {}", values.len(), values.join(", "));

    // 4. An event whose TimeUUID comes from its content and time: writing it
    //    again (a retry, or the same event arriving in another data center)
    //    addresses the same record.
    let events = RowKey::new("acme", "ACCOUNT", format!("{account}/events"));
    let happened = SystemTime::now();
    let deposit = b"deposit 40.00 ref 7781";
    for _ in 0..2 {
        let key = events.clone().at(Some(TimeUuid::from_content(happened, deposit)));
        client.put(Record::new(key, deposit.to_vec())).await?;
    }
    let stored: Vec<_> = client.scan_row(events).stream().try_collect().await?;
    println!("deposit written twice, stored {} time(s)", stored.len());

    // 5. A note only this account's holders can read: encrypted here, with
    //    a key derived from a password (its salt is kept in the tenant, so
    //    the same password works on any machine). A real application reads
    //    the password from its user or a secret store.
    let keychain = Keychain::from_password(&client, "acme", "quickstart password").await?;
    let note = RowKey::new("acme", "NOTES", format!("{account}/note")).at(None);
    client.put(Record::new(note.clone(), "PIN 4711").encrypt(&keychain)).await?;
    let stored = client.get(note.clone()).raw().await?.ok_or("the note we just wrote is missing")?;
    let read = client.with_keychain(keychain).get(note).await?.ok_or("the note we just wrote is missing")?;
    println!(
        "note encrypted on the client: the node holds {} bytes of ciphertext, we read {:?}",
        stored.value.len(),
        read.value_str().unwrap_or("<binary>")
    );
    Ok(())
}

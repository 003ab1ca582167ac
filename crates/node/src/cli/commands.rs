//! The client commands (`put`, `get`, `recent`, `range`, `scan`, `touch`,
//! `rm`): their arguments and what each one does. The command line and the
//! shell share them.

use std::io::{Read, Write};
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use consensusdb_client::{Client, Compression, Keychain, PageToken, Record, RecordKey, RowKey, TimeUuid};
use futures::TryStreamExt;
use serde_json::{Map, json};

use crate::cli::failure::CliError;
use crate::cli::password::Keychains;
use crate::cli::render::Output;
use crate::cli::when::{When, duration, time_uuid};

/// A row: tenant, region and entity.
#[derive(Debug, Clone, clap::Args)]
pub struct RowArgs {
    /// The tenant (majorKey).
    pub tenant: String,
    /// The table (regionName).
    pub region: String,
    /// The entity (minorKey).
    pub minor: String,
}

impl RowArgs {
    fn row(&self) -> RowKey {
        RowKey::new(&self.tenant, &self.region, &self.minor)
    }
}

/// A codec as typed on the command line: its one name
/// ([`Compression::as_str`]), which `--help` lists.
fn codec_parser() -> impl TypedValueParser<Value = Compression> {
    PossibleValuesParser::new(Compression::ALL.map(Compression::as_str))
        .try_map(|name| name.parse::<Compression>())
}

/// A client command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Write a record (timed, at a new TimeUUID for now, unless told otherwise).
    Put(PutArgs),
    /// Read one record: the untimed one, or the one at --time.
    Get(GetArgs),
    /// Read the newest timed record of a row, at or before --at.
    Recent(RecentArgs),
    /// Read a row's timed records: newest first (default) or --forward.
    Range(RangeArgs),
    /// Stream a tenant, a region of it, or one row, in key order.
    Scan(ScanArgs),
    /// Give a live record a new expiry.
    Touch(TouchArgs),
    /// Remove a record (writes a tombstone).
    #[command(visible_alias = "remove")]
    Rm(KeyArgs),
}

/// Arguments of `put`.
#[derive(Debug, Clone, clap::Args)]
pub struct PutArgs {
    #[command(flatten)]
    row: RowArgs,
    /// The value, as text. Or use --value-file.
    #[arg(required_unless_present = "value_file")]
    value: Option<String>,
    /// Read the value from a file (`-` for standard input), as bytes.
    #[arg(long, value_name = "PATH", conflicts_with = "value")]
    value_file: Option<PathBuf>,
    /// The record's time: `now`, an RFC 3339 time (a new id at that time),
    /// or an exact TimeUUID.
    #[arg(long, value_name = "WHEN", default_value = "now", conflicts_with = "untimed")]
    time: String,
    /// Derive the TimeUUID from the value and the event's own --time (an
    /// RFC 3339 time, not `now`), so writing the same event twice, here or
    /// on another node, stores it once.
    #[arg(long)]
    content_id: bool,
    /// Write the row's untimed record instead of a timed one.
    #[arg(long)]
    untimed: bool,
    /// Compress the value on the node (kept as is when that would not make
    /// it smaller); with a password, on the client before encrypting.
    #[arg(long, default_value_t, value_parser = codec_parser())]
    compression: Compression,
    /// Fail (exit 4) if a live record is at the key.
    #[arg(long)]
    if_absent: bool,
    /// Expire the record after this long (`30s`, `1h 30m`).
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Succeed only once this many peers have applied the write (within
    /// --timeout). 0 acknowledges after this node's own synced commit.
    #[arg(long, value_name = "PEERS", default_value_t = 0)]
    write_concern: u32,
}

/// A record: a row and, for a timed record, its TimeUUID.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    #[command(flatten)]
    row: RowArgs,
    /// The record's TimeUUID; without it, the row's untimed record.
    #[arg(long, value_name = "UUID")]
    time: Option<String>,
}

impl KeyArgs {
    fn key(&self) -> Result<RecordKey, CliError> {
        let time = self.time.as_deref().map(|t| time_uuid(t, "--time")).transpose()?;
        Ok(self.row.row().at(time))
    }
}

/// Arguments of `get`.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// Heads only: no value is read.
    #[arg(long)]
    head_only: bool,
}

/// Arguments of `recent`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecentArgs {
    #[command(flatten)]
    row: RowArgs,
    /// `now`, an RFC 3339 time or a TimeUUID [default: the newest].
    #[arg(long, value_name = "WHEN")]
    at: Option<String>,
    /// Heads only: no value is read.
    #[arg(long)]
    head_only: bool,
}

/// Arguments of `range`.
#[derive(Debug, Clone, clap::Args)]
pub struct RangeArgs {
    #[command(flatten)]
    row: RowArgs,
    /// Newest first from this point (inclusive) [default: the newest].
    #[arg(long, value_name = "WHEN", conflicts_with = "forward")]
    at: Option<String>,
    /// Oldest first over [--from, --until).
    #[arg(long)]
    forward: bool,
    /// With --forward: start here [default: the oldest].
    #[arg(long, value_name = "WHEN", requires = "forward")]
    from: Option<String>,
    /// With --forward: stop before here [default: no end].
    #[arg(long, value_name = "WHEN", requires = "forward")]
    until: Option<String>,
    /// Records per page.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Read every page, not just the first.
    #[arg(long)]
    all: bool,
    /// Continue from a `next_page_token` printed by an earlier page.
    #[arg(long, value_name = "TOKEN")]
    page_token: Option<String>,
    /// Heads only: no value is read.
    #[arg(long)]
    head_only: bool,
}

/// Arguments of `scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// The tenant (majorKey).
    tenant: String,
    /// Only this table (regionName).
    region: Option<String>,
    /// Only this entity (minorKey) of the table.
    minor: Option<String>,
    /// Stop after this many records [default: all].
    #[arg(long)]
    limit: Option<u64>,
    /// Heads only: no value is read.
    #[arg(long)]
    head_only: bool,
}

/// Arguments of `touch`.
#[derive(Debug, Clone, clap::Args)]
pub struct TouchArgs {
    #[command(flatten)]
    key: KeyArgs,
    /// New time to live from now (`30s`, `1h`) [default: never expires].
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
}

impl ClientCommand {
    /// The tenant the command works in.
    fn tenant(&self) -> &str {
        match self {
            ClientCommand::Put(PutArgs { row, .. })
            | ClientCommand::Recent(RecentArgs { row, .. })
            | ClientCommand::Range(RangeArgs { row, .. }) => &row.tenant,
            ClientCommand::Get(GetArgs { key, .. }) | ClientCommand::Touch(TouchArgs { key, .. }) => {
                &key.row.tenant
            }
            ClientCommand::Rm(key) => &key.row.tenant,
            ClientCommand::Scan(args) => &args.tenant,
        }
    }

    /// Runs the command against `client`, printing results to `out`. With
    /// a password in `keychains`, `put` encrypts on the client and reads
    /// open encrypted values; `touch` and `rm` never need the key.
    pub async fn run<W: Write>(
        &self,
        client: &Client,
        keychains: &mut Keychains,
        out: &mut Output<W>,
    ) -> Result<(), CliError> {
        let keychain = match self {
            ClientCommand::Touch(_) | ClientCommand::Rm(_) => None,
            ClientCommand::Put(_) => keychains.for_tenant(client, self.tenant(), true).await?,
            _ => keychains.for_tenant(client, self.tenant(), false).await?,
        };
        let client = match &keychain {
            Some(keychain) => &client.with_keychain(keychain.clone()),
            None => client,
        };
        match self {
            ClientCommand::Put(args) => put(args, client, keychain.as_ref(), out).await,
            ClientCommand::Get(args) => {
                let key = args.key.key()?;
                let mut call = client.get(key.clone());
                if args.head_only {
                    call = call.head_only();
                }
                let record = call.await?.ok_or_else(|| not_found(&describe(&key)))?;
                Ok(out.record(record, args.head_only)?)
            }
            ClientCommand::Recent(args) => {
                let mut call = client.get_recent(args.row.row());
                if let Some(at) = &args.at {
                    call = call.at_or_before(When::parse(at, "--at")?.upper_bound());
                }
                if args.head_only {
                    call = call.head_only();
                }
                let record = call
                    .await?
                    .ok_or_else(|| not_found(&format!("no timed record in {}", row_path(&args.row))))?;
                Ok(out.record(record, args.head_only)?)
            }
            ClientCommand::Range(args) => range(args, client, out).await,
            ClientCommand::Scan(args) => {
                let mut call = match (&args.region, &args.minor) {
                    (Some(region), Some(minor)) => client.scan_row(RowKey::new(&args.tenant, region, minor)),
                    (Some(region), None) => client.scan_region(&args.tenant, region),
                    _ => client.scan_tenant(&args.tenant),
                };
                if let Some(limit) = args.limit {
                    call = call.limit(limit);
                }
                if args.head_only {
                    call = call.head_only();
                }
                let mut records = call.stream();
                while let Some(record) = records.try_next().await? {
                    out.record(record, args.head_only)?;
                }
                Ok(())
            }
            ClientCommand::Touch(args) => {
                let key = args.key.key()?;
                let ttl = args.ttl.as_deref().map(|t| duration(t, "--ttl")).transpose()?;
                let head = client.touch(key.clone(), ttl).await?;
                Ok(out.write(&key, &head)?)
            }
            ClientCommand::Rm(args) => {
                let key = args.key()?;
                let head = client.remove(key.clone()).await?;
                Ok(out.write(&key, &head)?)
            }
        }
    }
}

async fn put<W: Write>(
    args: &PutArgs,
    client: &Client,
    keychain: Option<&Keychain>,
    out: &mut Output<W>,
) -> Result<(), CliError> {
    let value = match (&args.value, &args.value_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(path)) => read_value(path)?,
        (None, None) => return Err(CliError::argument("VALUE", "give a value or --value-file")),
    };
    let time = if args.untimed {
        if args.content_id {
            return Err(CliError::argument("--content-id", "an untimed record has no TimeUUID to derive"));
        }
        None
    } else {
        if args.content_id && args.time.trim().eq_ignore_ascii_case("now") {
            return Err(CliError::argument(
                "--content-id",
                "needs the event's own time as --time (e.g. --time 2026-11-21T10:00:00Z): with `now` every run \
                 is a new millisecond, so a new id and a second record",
            ));
        }
        Some(match (When::parse(&args.time, "--time")?, args.content_id) {
            (When::Id(id), false) => id,
            (When::Id(_), true) => {
                return Err(CliError::argument(
                    "--content-id",
                    "derives the TimeUUID, so --time must be a time",
                ));
            }
            (When::Time(at), true) => TimeUuid::from_content(at, &value),
            // The process-monotonic id, so two puts in one millisecond keep their order.
            (When::Time(_), false) if args.time.trim().eq_ignore_ascii_case("now") => TimeUuid::now(),
            (When::Time(at), false) => TimeUuid::random_at(at),
        })
    };
    let key = args.row.row().at(time);
    let mut record =
        Record::new(key.clone(), value).compression(args.compression).write_concern(args.write_concern);
    if args.if_absent {
        record = record.only_if_absent();
    }
    if let Some(ttl) = &args.ttl {
        record = record.ttl(duration(ttl, "--ttl")?);
    }
    if let Some(keychain) = keychain {
        record = record.encrypt(keychain);
    }
    let head = client.put(record).await?;
    Ok(out.write(&key, &head)?)
}

async fn range<W: Write>(args: &RangeArgs, client: &Client, out: &mut Output<W>) -> Result<(), CliError> {
    let mut call = client.get_range(args.row.row()).limit(args.limit);
    if args.forward {
        let from = args.from.as_deref().map(|w| When::parse(w, "--from")).transpose()?;
        let until = args.until.as_deref().map(|w| When::parse(w, "--until")).transpose()?;
        call = call.forward(from.map(When::lower_bound), until.map(When::lower_bound));
    } else if let Some(at) = &args.at {
        call = call.at_or_before(When::parse(at, "--at")?.upper_bound());
    }
    if args.head_only {
        call = call.head_only();
    }
    if let Some(token) = &args.page_token {
        let bytes = BASE64
            .decode(token.trim())
            .map_err(|e| CliError::argument("--page-token", format!("not a token printed by range ({e})")))?;
        call = call.page_token(PageToken::from_bytes(bytes));
    }
    if args.all {
        let mut records = call.stream();
        while let Some(record) = records.try_next().await? {
            out.record(record, args.head_only)?;
        }
        return Ok(());
    }
    let page = call.await?;
    for record in page.records {
        out.record(record, args.head_only)?;
    }
    if let Some(token) = page.next_page_token {
        let mut more = Map::new();
        more.insert("next_page_token".into(), json!(BASE64.encode(token.as_bytes())));
        out.object(more)?;
    }
    Ok(())
}

fn read_value(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    let mut value = Vec::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut value)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut value))
    };
    result.map_err(|e| CliError::argument("--value-file", format!("cannot read {}: {e}", path.display())))?;
    Ok(value)
}

fn row_path(row: &RowArgs) -> String {
    format!("{}/{}/{}", row.tenant, row.region, row.minor)
}

fn describe(key: &RecordKey) -> String {
    let row = format!("{}/{}/{}", key.row.major, key.row.region, key.row.minor);
    match key.time {
        Some(time) => format!("no live record at {row}/{time}"),
        None => format!("no live untimed record at {row}"),
    }
}

fn not_found(what: &str) -> CliError {
    CliError::Request(consensusdb_client::Error::local(consensusdb_client::ErrorCode::NotFound, what))
}

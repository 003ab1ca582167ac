//! `consensusdb whoami`, `token` and `grant`: who the CLI acts as, and
//! the cluster's bearer tokens and grants, over the access service. Every
//! command but `whoami` needs the `cluster-admin` role (the admin
//! credential `init` or a zero-configuration node made has it).

use std::io::Write;

use consensusdb_client::AuthorizedChannel;
use consensusdb_proto::v1;
use consensusdb_proto::v1::access_client::AccessClient;
use serde_json::{Value, json};

use crate::cli::cluster::object;
use crate::cli::failure::CliError;
use crate::cli::render::{Output, rfc3339_ms};

/// An access command.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AccessCommand {
    /// Show who the node takes this CLI for (certificate or token) and
    /// what it is allowed.
    Whoami,
    /// Create, list and revoke bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Grant client identities access to tenants and cluster roles.
    #[command(subcommand)]
    Grant(GrantCommand),
}

/// What a grant looks like, for the help texts.
const GRANT_FORMS: &str = "read:TENANT, write:TENANT or admin:TENANT (TENANT one tenant, a prefix ending on \
                           '/', ':' or '.' then '*' such as acme/*, or * for all), monitor, or cluster-admin";

/// Bearer tokens.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it, once: only its hash is kept.
    Create {
        /// A label for people (letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// What the token allows; repeat for more.
        #[arg(long = "grant", value_name = "GRANT", required = true, long_help = GRANT_FORMS)]
        grants: Vec<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id, or every token with a name. Every node stops
    /// accepting it once the revocation has replicated.
    Revoke {
        /// A token id (16 hex digits) or name.
        #[arg(value_name = "ID_OR_NAME")]
        id_or_name: String,
    },
}

/// Grants to client certificate identities.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum GrantCommand {
    /// Give an identity one more grant.
    Add {
        /// The identity: cdb://<cluster>/client/<name>.
        identity: String,
        /// The grant.
        #[arg(long_help = GRANT_FORMS)]
        grant: String,
    },
    /// List grants, of every identity or of one.
    List {
        /// Only this identity's.
        identity: Option<String>,
    },
    /// Take a grant back.
    Remove {
        /// The identity.
        identity: String,
        /// The grant, as it was added.
        grant: String,
    },
}

fn token_row(token: &v1::Token) -> Value {
    json!({
        "id": token.id,
        "name": token.name,
        "grants": token.grants.join(" "),
        "created": rfc3339_ms(token.created_ms),
        "created_by": token.created_by,
    })
}

impl AccessCommand {
    /// Runs the command over `channel`.
    pub async fn run<W: Write>(
        &self,
        channel: AuthorizedChannel,
        out: &mut Output<W>,
    ) -> Result<(), CliError> {
        let mut client = AccessClient::new(channel);
        match self {
            AccessCommand::Whoami => {
                let me = client.who_am_i(v1::WhoAmIRequest {}).await?.into_inner();
                Ok(out.object(object(json!({
                    "principal": me.principal,
                    "kind": me.kind,
                    "grants": me.grants.join(" "),
                })))?)
            }
            AccessCommand::Token(TokenCommand::Create { name, grants }) => {
                let request = v1::CreateTokenRequest { name: name.clone(), grants: grants.clone() };
                let made = client.create_token(request).await?.into_inner();
                let mut row = made.token.as_ref().map(token_row).unwrap_or_default();
                if let Value::Object(map) = &mut row {
                    map.insert("token".into(), made.secret_token.into());
                }
                out.object(object(row))?;
                eprintln!("consensusdb: the token is shown this once; only its hash is stored");
                Ok(())
            }
            AccessCommand::Token(TokenCommand::List) => {
                let tokens = client.list_tokens(v1::ListTokensRequest {}).await?.into_inner().tokens;
                for token in &tokens {
                    out.object(object(token_row(token)))?;
                }
                Ok(())
            }
            AccessCommand::Token(TokenCommand::Revoke { id_or_name }) => {
                let request = v1::RevokeTokenRequest { id_or_name: id_or_name.clone() };
                let revoked = client.revoke_token(request).await?.into_inner().revoked;
                for token in &revoked {
                    out.object(object(token_row(token)))?;
                }
                Ok(())
            }
            AccessCommand::Grant(GrantCommand::Add { identity, grant }) => {
                let request = v1::AddGrantRequest { identity: identity.clone(), grant: grant.clone() };
                client.add_grant(request).await?;
                Ok(out.object(object(json!({ "identity": identity, "granted": grant })))?)
            }
            AccessCommand::Grant(GrantCommand::List { identity }) => {
                let request = v1::ListGrantsRequest { identity: identity.clone().unwrap_or_default() };
                for listed in client.list_grants(request).await?.into_inner().identities {
                    out.object(object(
                        json!({ "identity": listed.identity, "grants": listed.grants.join(" ") }),
                    ))?;
                }
                Ok(())
            }
            AccessCommand::Grant(GrantCommand::Remove { identity, grant }) => {
                let request = v1::RemoveGrantRequest { identity: identity.clone(), grant: grant.clone() };
                client.remove_grant(request).await?;
                Ok(out.object(object(json!({ "identity": identity, "removed": grant })))?)
            }
        }
    }
}

//! Client command failures and the exit codes they map to.

use std::process::ExitCode;

use consensusdb_client::{Error, ErrorCode};

/// Exit codes of client commands, documented in `consensusdb --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes of client commands:
  0  success
  1  internal or unexpected error
  2  bad input (usage, a malformed value, or a field the node refused)
  3  not found
  4  already exists (put --if-absent)
  5  no node reachable, or no answer in time
  6  no credential, or the credential is not allowed this operation";

/// Why a client command failed: the message names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The node (or the SDK) refused or failed the request.
    #[error("{0}")]
    Request(#[from] Error),
    /// An argument could not be understood before anything was sent.
    #[error("{field}: {message}")]
    Argument {
        /// The flag or argument, as typed (`--time`).
        field: String,
        /// What was wrong with it.
        message: String,
    },
    /// Writing the output or reading input failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A cluster command's node refused or failed the call.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A cluster command could not reach its node.
    #[error("cannot reach {server}: {reason}")]
    Unreachable {
        /// The node.
        server: String,
        /// Why.
        reason: String,
    },
}

impl CliError {
    /// A bad argument.
    pub fn argument(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Argument { field: field.into(), message: message.into() }
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Argument { .. } => 2,
            CliError::Io(_) => 1,
            CliError::Unreachable { .. } => 5,
            CliError::Status(status) => Self::code_exit(consensusdb_proto::status::error_code(status.code())),
            CliError::Request(error) => Self::code_exit(error.code()),
        }
    }

    fn code_exit(code: ErrorCode) -> u8 {
        match code {
            ErrorCode::InvalidArgument | ErrorCode::OutOfRange | ErrorCode::ResourceExhausted => 2,
            ErrorCode::NotFound => 3,
            ErrorCode::AlreadyExists => 4,
            ErrorCode::Unavailable | ErrorCode::DeadlineExceeded => 5,
            ErrorCode::Unauthenticated | ErrorCode::PermissionDenied => 6,
            // "Other": a code this build does not know yet (the SDK's
            // ErrorCode is non-exhaustive) is not a reason to panic.
            _ => 1,
        }
    }
}

impl From<CliError> for ExitCode {
    fn from(error: CliError) -> Self {
        ExitCode::from(error.exit_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_documented_code() {
        let request = |code| CliError::Request(Error::local(code, "x"));
        assert_eq!(request(ErrorCode::InvalidArgument).exit_code(), 2);
        assert_eq!(request(ErrorCode::NotFound).exit_code(), 3);
        assert_eq!(request(ErrorCode::AlreadyExists).exit_code(), 4);
        assert_eq!(request(ErrorCode::Unavailable).exit_code(), 5);
        assert_eq!(request(ErrorCode::Internal).exit_code(), 1);
        assert_eq!(request(ErrorCode::Unauthenticated).exit_code(), 6);
        assert_eq!(request(ErrorCode::PermissionDenied).exit_code(), 6);
        assert_eq!(CliError::argument("--time", "bad").exit_code(), 2);
        for code in 0..=6 {
            assert!(EXIT_CODES_HELP.contains(&format!("  {code}  ")), "exit code {code} is documented");
        }
    }
}

//! The SDK's one error type: the server's code, message and field, or a
//! local failure expressed in the same codes.

use std::fmt;

use consensusdb_proto::status::{FIELD_METADATA, error_code};
use consensusdb_types::{ErrorCode, FieldError};

/// What went wrong with a request.
///
/// [`Error::code`] is the shared [`ErrorCode`] (the same one the server and
/// the HTTP gateway use), [`Error::field`] names the request field at fault
/// when the input was bad, and [`Error::attempts`] says how many times the
/// request was sent before the SDK gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    endpoint: Option<String>,
    attempts: u32,
}

/// The result of every SDK call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error raised by the SDK itself, before or without a server answer.
    pub fn local(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, endpoint: None, attempts: 0 }
    }

    /// The error for a gRPC status received from `endpoint`.
    pub(crate) fn from_status(status: &tonic::Status, endpoint: &str) -> Self {
        let field = status.metadata().get(FIELD_METADATA).and_then(|v| v.to_str().ok()).map(str::to_string);
        // tonic turns a connection that failed under a call (a transport or
        // HTTP/2 error) into a status of its own, with the error as its
        // source; a status the node sent has none. The node never
        // answered, so it is UNAVAILABLE, said with the cause (and what a
        // plaintext URL against a TLS node looks like).
        let transport_error = std::error::Error::source(status)
            .filter(|_| matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal));
        let (code, message) = if let Some(source) = transport_error {
            let cause = consensusdb_types::error::error_chain(source);
            let hint = if endpoint.starts_with("http://") {
                " (an http:// URL speaks plaintext: a node serving TLS, the default, needs https://)"
            } else {
                ""
            };
            (ErrorCode::Unavailable, format!("the connection failed: {cause}{hint}"))
        } else {
            (error_code(status.code()), status.message().to_string())
        };
        Self { code, message, field, endpoint: Some(endpoint.to_string()), attempts: 1 }
    }

    /// The endpoint could not be reached: nothing was sent.
    pub(crate) fn unreachable(endpoint: &str, cause: impl fmt::Display) -> Self {
        let cause = cause.to_string();
        let message = match explain_connect_failure(&cause) {
            Some(hint) => format!("cannot connect: {hint} ({cause})"),
            None => format!("cannot connect: {cause}"),
        };
        Self {
            code: ErrorCode::Unavailable,
            message,
            field: None,
            endpoint: Some(endpoint.to_string()),
            attempts: 0,
        }
    }

    pub(crate) fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = Some(endpoint.to_string());
        self
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The shared error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message. For bad input it starts with the field
    /// (`key.major_key: must not be empty`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The request field at fault (`key.major_key`, `records[3].ttl_ms`), if
    /// the input was refused.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The node that answered last, if any did.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// How many times the request was sent (0 when no node was reachable).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the record simply was not there.
    pub fn is_not_found(&self) -> bool {
        self.code == ErrorCode::NotFound
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " (from {endpoint}")?;
            if self.attempts > 1 {
                write!(f, ", after {} attempts", self.attempts)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<FieldError> for Error {
    fn from(error: FieldError) -> Self {
        Self {
            code: ErrorCode::InvalidArgument,
            message: error.to_string(),
            field: Some(error.field),
            endpoint: None,
            attempts: 0,
        }
    }
}

/// A plainer reading of a TLS failure to connect, for the error message:
/// what is wrong, not only the transport's words.
fn explain_connect_failure(chain: &str) -> Option<&'static str> {
    let hints: [(&str, &'static str); 7] = [
        ("UnknownIssuer", "the node's certificate is not signed by the CA you trust (check --ca)"),
        ("BadSignature", "the node's certificate is not signed by the CA you trust (check --ca)"),
        ("NotValidForName", "the node's certificate does not carry the name you dialed"),
        ("Expired", "a certificate has expired"),
        ("NotValidYet", "a certificate is not valid yet (check the clocks)"),
        ("CertificateRequired", "the node wants a client certificate (--cert and --key)"),
        ("InvalidContentType", "the node does not speak TLS here (is it running with --insecure-plaintext?)"),
    ];
    hints.iter().find(|(needle, _)| chain.contains(needle)).map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_keep_code_field_and_origin() {
        let mut status = tonic::Status::invalid_argument("key.major_key: must not be empty");
        status.metadata_mut().insert(FIELD_METADATA, "key.major_key".parse().unwrap());
        let error = Error::from_status(&status, "http://a:4482").with_attempts(1);
        assert_eq!(error.code(), ErrorCode::InvalidArgument);
        assert_eq!(error.field(), Some("key.major_key"));
        assert_eq!(
            error.to_string(),
            "INVALID_ARGUMENT: key.major_key: must not be empty (from http://a:4482)"
        );
        let retried =
            Error::from_status(&tonic::Status::unavailable("down"), "http://b:4482").with_attempts(3);
        assert_eq!(retried.to_string(), "UNAVAILABLE: down (from http://b:4482, after 3 attempts)");
    }

    #[test]
    fn local_field_errors_name_the_field() {
        let error = Error::from(FieldError::new("time", "not a UUID"));
        assert_eq!(error.field(), Some("time"));
        assert_eq!(error.attempts(), 0);
    }
}

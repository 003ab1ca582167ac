//! The names the gateway answers to. A web page in a browser on the
//! node's machine can reach `127.0.0.1` through a name its attacker
//! controls (DNS rebinding: `evil.example` resolves to 127.0.0.1 after
//! the page loaded); the browser then sends `Host: evil.example`. So a
//! request is served only when its `Host` is an IP address, `localhost`,
//! or a name in `http.allowed_hosts`; any other is refused with 421
//! before routing.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use consensusdb_types::ErrorCode;

use super::Gateway;
use super::error::HttpError;

/// The DNS names a gateway answers to besides IP addresses and
/// `localhost`, compared without case and without a trailing dot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// Answers to `names` too.
    pub fn new(names: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self { names: names.into_iter().map(|name| normalized(name.as_ref())).collect() }
    }

    /// Whether a request with this `Host` header value is served.
    pub fn allows(&self, host: &str) -> bool {
        let name = without_port(host);
        let is_address = |text: &str| text.parse::<std::net::IpAddr>().is_ok();
        if is_address(host) || is_address(name) {
            // An address literal names no domain to rebind.
            return true;
        }
        let name = normalized(name);
        name == "localhost" || self.names.contains(&name)
    }
}

/// The host without its port: `[::1]:4481` is `::1`, `a.b:4481` is `a.b`.
fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(address, _)| address);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn normalized(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Refuses a request whose `Host` the gateway does not answer to. A
/// request without one (HTTP/1.0) is served: browsers always send it.
pub(crate) async fn check(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).map(|value| value.to_str().unwrap_or("\u{fffd}"));
    match host {
        Some(host) if !gateway.allowed_hosts.allows(host) => HttpError::with_status(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::InvalidArgument,
            format!(
                "host: this gateway does not answer to {host:?}; use its address or localhost, or add the \
                 name to http.allowed_hosts"
            ),
            Some("host".into()),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_localhost_and_configured_names_are_served_and_nothing_else() {
        let hosts = AllowedHosts::new(["db.example.com"]);
        for host in [
            "127.0.0.1",
            "127.0.0.1:4481",
            "10.1.2.3:80",
            "[::1]:4481",
            "::1",
            "localhost",
            "LocalHost:4481",
            "localhost.",
            "db.example.com",
            "DB.Example.com.:443",
        ] {
            assert!(hosts.allows(host), "{host} is served");
        }
        for host in [
            "evil.example",
            "evil.example:4481",
            "localhost.evil.example",
            "db.example.com.evil",
            "example.com",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!hosts.allows(host), "{host} is refused");
        }
        assert!(!AllowedHosts::default().allows("db.example.com"), "no name is served unless configured");
    }
}

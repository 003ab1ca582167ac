//! Peer addresses, and bounds on what one node may tell another about the
//! cluster. Addresses travel in handshakes and heartbeats and are stored;
//! unchecked, a peer could grow every node's tables and heartbeats without
//! bound (twenty 1 MB addresses made heartbeats exceed the message limit).

/// Longest `host:port`: a 253-byte DNS name (or a bracketed IPv6 address),
/// a colon and a five-digit port.
pub const MAX_ADDRESS_BYTES: usize = 261;
/// Most peer addresses a node keeps and gossips.
pub const MAX_KNOWN_PEERS: usize = 1024;
/// Most member views a node keeps and gossips.
pub const MAX_MEMBERS: usize = 1024;

/// Checks that `address` is `host:port`: a DNS name, an IPv4 address or a
/// bracketed IPv6 address, then a port from 1 to 65535.
pub fn check_peer_address(address: &str) -> Result<(), String> {
    if address.len() > MAX_ADDRESS_BYTES {
        return Err(format!("{} bytes long; a host:port is at most {MAX_ADDRESS_BYTES}", address.len()));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("{address:?} is not host:port"));
    };
    if !matches!(port.parse::<u16>(), Ok(1..)) {
        return Err(format!("{address:?} has no port from 1 to 65535"));
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || is_dns_name(host),
    };
    if host_ok { Ok(()) } else { Err(format!("{address:?} has no valid host name or IP address")) }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 bytes,
/// none starting or ending with a hyphen (RFC 1123); underscores are
/// allowed too, as container and service names use them.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.trim_end_matches('.').split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms_are_accepted() {
        for good in ["10.0.0.1:4482", "[::1]:4482", "node-a.example.com:4482", "consensusdb_1:4482", "a.b.:1"]
        {
            assert_eq!(check_peer_address(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn garbage_and_oversized_addresses_are_refused() {
        let huge = format!("{}:4482", "a".repeat(1 << 20));
        for bad in [
            "",
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            ":4482",
            "::1:4482",
            "-a:4482",
            "a b:4482",
            "a..b:4482",
            huge.as_str(),
        ] {
            assert!(check_peer_address(bad).is_err(), "{bad:.40}");
        }
        assert!(check_peer_address(&huge).unwrap_err().contains("at most 261"));
    }
}

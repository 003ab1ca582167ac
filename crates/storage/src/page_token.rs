//! Opaque, versioned page tokens.
//!
//! A token holds the last key a page returned. It is only accepted for a
//! query whose key range contains that key, so a crafted token can never
//! move a read outside the tenant, region or row it asked for.
//!
//! Format 1: `version:u8 last_key...`.

use consensusdb_types::FieldError;

const TOKEN_VERSION: u8 = 1;

/// Makes the token that resumes after `last_key`.
pub(crate) fn encode(last_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + last_key.len());
    out.push(TOKEN_VERSION);
    out.extend_from_slice(last_key);
    out
}

/// The last key of a token, if it belongs to the range `[lower, upper)`.
pub(crate) fn decode<'a>(token: &'a [u8], lower: &[u8], upper: &[u8]) -> Result<&'a [u8], FieldError> {
    let invalid = |why: &str| FieldError::new("page_token", why);
    match token.split_first() {
        None => Err(invalid("is empty")),
        Some((&TOKEN_VERSION, key)) if key >= lower && key < upper => Ok(key),
        Some((&TOKEN_VERSION, _)) => Err(invalid("does not belong to this query")),
        Some((version, _)) => Err(invalid(&format!("has unknown version {version}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bound_to_their_range() {
        let token = encode(b"m");
        assert_eq!(decode(&token, b"a", b"z").unwrap(), b"m");
        assert!(decode(&token, b"n", b"z").is_err());
        assert!(decode(&[], b"a", b"z").is_err());
        assert!(decode(&[9, b'm'], b"a", b"z").unwrap_err().message.contains("version 9"));
    }
}

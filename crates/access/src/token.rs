//! Bearer tokens: `cdbt_<id>_<secret>`, where the id (8 random bytes, in
//! hex) finds the token's record and the secret (32 random bytes, in hex)
//! proves it. Only the SHA-256 of the secret is stored.
//!
//! A fast hash is the right one here: the secret is 256 random bits, not a
//! password, so there is no dictionary to slow down, and a slow hash
//! (Argon2, bcrypt) would cost every request tens of milliseconds. The
//! comparison is constant-time all the same.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every token starts with, so scanners (and people) recognise one.
pub const TOKEN_PREFIX: &str = "cdbt_";

const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A token as presented: its id, and the secret to check.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedToken<'a> {
    /// Finds the token's record.
    pub id: &'a str,
    secret: &'a str,
}

/// A freshly made token: the text to hand out once, its id and the hash
/// to store.
pub struct NewToken {
    /// The whole token, shown once and never stored.
    pub text: String,
    /// The token's id.
    pub id: String,
    /// The SHA-256 of the secret, in hex.
    pub hash: String,
}

impl std::fmt::Debug for NewToken {
    // The token is a secret: never in a log line, even by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Makes a token from the operating system's random source.
pub fn generate() -> NewToken {
    let id = hex(&rand::random::<[u8; ID_BYTES]>());
    let secret = hex(&rand::random::<[u8; SECRET_BYTES]>());
    let hash = hash_secret(&secret);
    NewToken { text: format!("{TOKEN_PREFIX}{id}_{secret}"), id, hash }
}

/// Splits a presented token, or `None` if it is not in the token format.
pub fn parse(text: &str) -> Option<PresentedToken<'_>> {
    let (id, secret) = text.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    let is_hex = |s: &str, bytes: usize| s.len() == 2 * bytes && s.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hex(id, ID_BYTES) && is_hex(secret, SECRET_BYTES)).then_some(PresentedToken { id, secret })
}

impl PresentedToken<'_> {
    /// Whether the secret hashes to `stored_hash`, compared in constant time.
    pub fn matches(&self, stored_hash: &str) -> bool {
        hash_secret(self.secret).as_bytes().ct_eq(stored_hash.as_bytes()).into()
    }
}

fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Lowercase hex, without a formatter call per byte (this runs on every
/// request that carries a token).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// The token of an `Authorization` header (HTTP) or metadata value
/// (gRPC): `Bearer <token>`, the scheme in any case (RFC 7235).
pub fn from_authorization(value: &[u8]) -> Result<&str, consensusdb_types::Refusal> {
    let refuse = || {
        consensusdb_types::Refusal::Unauthenticated(
            "the authorization header must be \"Bearer <token>\" with a token from `consensusdb token create`".into(),
        )
    };
    let value = std::str::from_utf8(value).map_err(|_| refuse())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(refuse)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(refuse());
    }
    Ok(token.trim())
}

/// Whether `id` has the form of a token id (what `token revoke` tells
/// apart from a name).
pub fn is_id(id: &str) -> bool {
    id.len() == 2 * ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_proves_itself_and_nothing_else() {
        let token = generate();
        let presented = parse(&token.text).expect("a generated token parses");
        assert_eq!(presented.id, token.id);
        assert!(is_id(&token.id));
        assert!(presented.matches(&token.hash));
        let other = generate();
        assert!(!presented.matches(&other.hash));
        assert!(!token.hash.contains(&token.text[TOKEN_PREFIX.len() + 17..]), "the secret is not stored");
    }

    #[test]
    fn anything_not_in_the_token_format_is_refused_before_any_lookup() {
        let token = generate();
        for bad in [
            String::new(),
            "cdbt_".into(),
            token.text.replace(TOKEN_PREFIX, "cdbx_"),
            format!("{}0", token.text),
            token.text[..token.text.len() - 1].to_string(),
            token.text.replace('_', "-"),
            format!(" {}", token.text),
            token.text.to_uppercase(),
        ] {
            // Uppercase hex still parses as hex but then fails the hash.
            match parse(&bad) {
                None => {}
                Some(presented) => assert!(!presented.matches(&token.hash), "{bad}"),
            }
        }
    }

    #[test]
    fn only_bearer_authorization_carries_a_token() {
        assert_eq!(from_authorization(b"Bearer abc").unwrap(), "abc");
        assert_eq!(from_authorization(b"bearer  abc ").unwrap(), "abc");
        for bad in [&b"Basic abc"[..], b"Bearer", b"abc", b"\xff\xfe"] {
            assert!(from_authorization(bad).is_err());
        }
    }

    #[test]
    fn the_debug_form_never_shows_the_token() {
        let token = generate();
        assert!(!format!("{token:?}").contains(&token.text));
    }
}

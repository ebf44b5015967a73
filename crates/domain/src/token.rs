//! Transaction tokens: the client-chosen key that makes a create idempotent.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifies one create request across its retries (an HTTP
/// `Idempotency-Key`). Repositories remember which aggregate a token created
/// and what the request was, so a retry returns the stored aggregate instead
/// of creating a second one. Tokens are scoped per aggregate kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TxToken(Uuid);

impl TxToken {
    /// A fresh random token, for callers that do not retry.
    #[must_use]
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    /// The underlying uuid.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// A token for a secondary write of the same request (say, its action
    /// log entry): stable across retries of the request, and distinct per
    /// `purpose`, so one client key can guard several creates.
    #[must_use]
    pub fn derive(&self, purpose: &str) -> Self {
        Self(Uuid::new_v5(&self.0, purpose.as_bytes()))
    }
}

impl From<Uuid> for TxToken {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for TxToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A string that is not a transaction token. Maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a transaction token must be a uuid such as 3f2b8c4e-9d1a-4e7b-8f00-2a6c1d9e5b70, got {0:?}"
)]
pub struct InvalidToken(String);

impl FromStr for TxToken {
    type Err = InvalidToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| InvalidToken(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_uuid_with_surrounding_whitespace() {
        let token = TxToken::generate();
        assert_eq!(format!(" {token} ").parse(), Ok(token));
    }

    #[test]
    fn rejects_anything_else_with_an_example_of_the_format() {
        let err = "retry-1".parse::<TxToken>().unwrap_err();
        assert!(err.to_string().contains("must be a uuid"), "{err}");
        assert!(err.to_string().contains("\"retry-1\""), "{err}");
    }

    #[test]
    fn derived_tokens_are_stable_and_distinct_per_purpose() {
        let token = TxToken::generate();
        assert_eq!(token.derive("a"), token.derive("a"));
        assert_ne!(token.derive("a"), token.derive("b"));
        assert_ne!(token.derive("a"), token);
    }

    #[test]
    fn echoes_at_most_64_characters_of_bad_input() {
        let err = "x".repeat(10_000).parse::<TxToken>().unwrap_err();
        assert!(err.to_string().len() < 200);
    }
}

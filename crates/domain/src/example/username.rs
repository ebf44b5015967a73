//! Usernames.

use serde::{Deserialize, Serialize};

/// 3 to 32 characters of `a-z`, `0-9` and `_`. Unique among users.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

/// Why a string is not a [`Username`]. Maps to HTTP 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidUsername {
    /// Outside 3..=32 characters.
    #[error("username must be 3 to 32 characters long, got {0}")]
    Length(usize),
    /// A character outside `a-z0-9_`.
    #[error("username may only contain a-z, 0-9 and _, found {0:?}")]
    Character(char),
}

impl Username {
    /// Shortest allowed length.
    pub const MIN_LEN: usize = 3;
    /// Longest allowed length.
    pub const MAX_LEN: usize = 32;

    /// Parses a username.
    pub fn parse(input: &str) -> Result<Self, InvalidUsername> {
        let len = input.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(InvalidUsername::Length(len));
        }
        if let Some(bad) = input
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            return Err(InvalidUsername::Character(bad));
        }
        Ok(Self(input.to_owned()))
    }

    /// The username as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = InvalidUsername;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Username> for String {
    fn from(value: Username) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_lowercase_digits_and_underscore() {
        assert_eq!(Username::parse("ada_99").unwrap().as_str(), "ada_99");
    }

    #[test]
    fn rejects_too_short_and_too_long() {
        assert_eq!(Username::parse("ab"), Err(InvalidUsername::Length(2)));
        assert_eq!(
            Username::parse(&"a".repeat(33)),
            Err(InvalidUsername::Length(33))
        );
    }

    #[test]
    fn rejects_uppercase_spaces_and_unicode() {
        assert_eq!(Username::parse("Ada"), Err(InvalidUsername::Character('A')));
        assert_eq!(
            Username::parse("a da"),
            Err(InvalidUsername::Character(' '))
        );
        assert_eq!(Username::parse("adé"), Err(InvalidUsername::Character('é')));
    }

    proptest! {
        #[test]
        fn every_valid_username_parses(s in "[a-z0-9_]{3,32}") {
            let parsed = Username::parse(&s).unwrap();
            prop_assert_eq!(parsed.as_str(), s.as_str());
        }

        #[test]
        fn parsing_never_panics_and_accepts_only_the_alphabet(s in ".{0,40}") {
            if let Ok(name) = Username::parse(&s) {
                prop_assert!(name.as_str().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
            }
        }
    }
}

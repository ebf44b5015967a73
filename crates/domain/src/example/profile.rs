//! A user's profile: first and last name.

use serde::{Deserialize, Serialize};

/// A first or last name: trimmed, 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

/// Why a string is not a [`PersonName`]. Maps to HTTP 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    /// Empty once trimmed.
    #[error("name must not be empty")]
    Empty,
    /// Longer than [`PersonName::MAX_LEN`] characters.
    #[error("name must be at most 64 characters, got {0}")]
    TooLong(usize),
    /// Contains a control character (newline, tab, NUL...).
    #[error("name must not contain control characters")]
    ControlCharacter,
}

impl PersonName {
    /// Longest allowed length, in characters.
    pub const MAX_LEN: usize = 64;

    /// Parses a name, trimming surrounding whitespace.
    pub fn parse(input: &str) -> Result<Self, InvalidName> {
        let trimmed = input.trim();
        let len = trimmed.chars().count();
        if len == 0 {
            return Err(InvalidName::Empty);
        }
        if len > Self::MAX_LEN {
            return Err(InvalidName::TooLong(len));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(InvalidName::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PersonName {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PersonName> for String {
    fn from(value: PersonName) -> Self {
        value.0
    }
}

/// The user's names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Profile {
    /// Given name.
    pub first_name: PersonName,
    /// Family name.
    pub last_name: PersonName,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(PersonName::parse("  Ada ").unwrap().as_str(), "Ada");
    }

    #[test]
    fn rejects_blank_names() {
        assert_eq!(PersonName::parse("   "), Err(InvalidName::Empty));
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(PersonName::parse(&"é".repeat(64)).is_ok());
        assert_eq!(
            PersonName::parse(&"é".repeat(65)),
            Err(InvalidName::TooLong(65))
        );
    }

    #[test]
    fn rejects_control_characters() {
        assert_eq!(
            PersonName::parse("Ada\nLovelace"),
            Err(InvalidName::ControlCharacter)
        );
    }

    proptest! {
        #[test]
        fn parsed_names_are_trimmed_and_bounded(s in "\\PC{0,80}") {
            if let Ok(name) = PersonName::parse(&s) {
                prop_assert_eq!(name.as_str(), name.as_str().trim());
                prop_assert!(!name.as_str().is_empty());
                prop_assert!(name.as_str().chars().count() <= PersonName::MAX_LEN);
            }
        }
    }
}

//! Conditional writes: "change it only if it is still at the version I saw"
//! (HTTP's `If-Match`, a form resubmitted from a stale page).

use crate::aggregate::Version;

/// Which stored versions a conditional write accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IfVersion {
    /// Any version: an unconditional write.
    #[default]
    Any,
    /// Only one of these versions.
    OneOf(Vec<Version>),
}

/// The aggregate moved past the versions a conditional write accepted.
/// Nothing was written. Maps to HTTP 412.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the aggregate is at version {current}, not one the write expected")]
pub struct StaleVersion {
    /// The version stored now.
    pub current: Version,
}

impl IfVersion {
    /// Accepts exactly `version`.
    pub fn exactly(version: Version) -> Self {
        Self::OneOf(vec![version])
    }

    /// `Ok` when `current` is accepted. Call it first thing in an update
    /// closure, so that it judges the state the write is based on.
    pub fn check(&self, current: Version) -> Result<(), StaleVersion> {
        match self {
            Self::OneOf(accepted) if !accepted.contains(&current) => Err(StaleVersion { current }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_accepts_everything_and_one_of_only_its_versions() {
        assert!(IfVersion::Any.check(Version::new(9)).is_ok());
        let two = IfVersion::exactly(Version::new(2));
        assert!(two.check(Version::new(2)).is_ok());
        assert_eq!(
            two.check(Version::new(3)),
            Err(StaleVersion {
                current: Version::new(3)
            })
        );
    }
}

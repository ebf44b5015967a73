//! A user's score.

use serde::{Deserialize, Serialize};

/// A finite, non-negative score. Not money, so a float is fine; NaN and
/// infinities are unrepresentable, which keeps equality and ordering sane.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Score(f64);

/// Why a number is not a [`Score`]. Maps to HTTP 422.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("score must be a finite number >= 0, got {0}")]
pub struct InvalidScore(f64);

impl Score {
    /// The score of a brand-new user.
    pub const ZERO: Self = Self(0.0);

    /// Parses a score.
    pub fn new(value: f64) -> Result<Self, InvalidScore> {
        if value.is_finite() && value >= 0.0 {
            Ok(Self(value))
        } else {
            Err(InvalidScore(value))
        }
    }

    /// The number.
    pub const fn get(self) -> f64 {
        self.0
    }

    /// The score after a new user joins a community of `users_before` users:
    /// `old * n / (n + 1) + 1`. Stays finite and non-negative for every
    /// finite non-negative input.
    #[must_use]
    pub fn after_newcomer(self, users_before: u64) -> Self {
        #[expect(
            clippy::cast_precision_loss,
            reason = "user counts stay far below 2^52"
        )]
        let n = users_before as f64;
        Self(self.0 * n / (n + 1.0) + 1.0)
    }
}

impl TryFrom<f64> for Score {
    type Error = InvalidScore;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Score> for f64 {
    fn from(score: Score) -> Self {
        score.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_nan_infinity_and_negatives() {
        assert!(Score::new(f64::NAN).is_err());
        assert!(Score::new(f64::INFINITY).is_err());
        assert!(Score::new(-1.0).is_err());
    }

    #[test]
    fn the_first_user_scores_one() {
        assert!((Score::ZERO.after_newcomer(0).get() - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn a_newcomer_scales_then_adds_one() {
        // given a score of 4 among 3 users, when a 4th joins
        let score = Score::new(4.0).unwrap().after_newcomer(3);
        // then 4 * 3/4 + 1 = 4
        assert!((score.get() - 4.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn recompute_stays_a_valid_score(v in 0.0f64..1e12, n in 0u64..1_000_000) {
            let next = Score::new(v).unwrap().after_newcomer(n);
            prop_assert!(Score::new(next.get()).is_ok());
        }
    }
}

//! Timestamps at the precision every store keeps.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A UTC instant truncated to microseconds: what Postgres `timestamptz`
/// stores. Truncating on creation means an aggregate reads back equal to the
/// one that was written, in every store.
///
/// Aggregate methods take the current time as an argument instead of reading
/// the clock, so update closures stay pure and tests control time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(Utc::now())
    }

    /// The instant as chrono's type.
    pub const fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        // Only fails for instants near the ends of chrono's range.
        Self(at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_sub_microsecond_precision() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let ts = Timestamp::from(at);
        assert_eq!(ts.as_datetime().timestamp_subsec_nanos(), 123_456_000);
    }
}

//! Timestamps at the precision every store keeps, and the clock stores
//! read them from.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
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
        // Subtracts the nanoseconds below a microsecond: cheaper than
        // chrono's general `duration_trunc` and than `with_nanosecond` (which
        // rebuilds the date), and every store write pays for it.
        let below_micros = TimeDelta::nanoseconds(i64::from(at.nanosecond() % 1_000));
        Self(at.checked_sub_signed(below_micros).unwrap_or(at))
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Self;

    /// `retention` before this instant; the earliest representable instant
    /// if that is out of range.
    fn sub(self, by: Duration) -> Self {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        Self(
            self.0
                .checked_sub_signed(by)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    }
}

/// Where a store reads the time it stamps transaction tokens and
/// idempotency keys with, and judges their age by: the system clock, or a
/// manual one that tests move forward, so token expiry is tested without
/// waiting a day. Clones share the time.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Mutex<Timestamp>>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock that stands at `at` until moved.
    pub fn manual(at: Timestamp) -> Self {
        Self {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            Some(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
            None => Timestamp::now(),
        }
    }

    /// Moves a manual clock forward by `by`.
    ///
    /// # Panics
    /// On the system clock, which only time moves.
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).expect("a duration a clock can add");
        self.set(Timestamp(self.now().0 + by));
    }

    /// Sets a manual clock to `at`.
    ///
    /// # Panics
    /// On the system clock.
    pub fn set(&self, at: Timestamp) {
        let manual = self.manual.as_ref().expect("only a manual clock is set");
        *manual.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            Some(_) => write!(f, "Clock::manual({:?})", self.now()),
            None => f.write_str("Clock::system()"),
        }
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

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = Timestamp::now();
        let clock = Clock::manual(start);
        let shared = clock.clone();
        assert_eq!(clock.now(), start);
        shared.advance(Duration::from_secs(3600));
        assert_eq!(clock.now(), Timestamp(start.0 + TimeDelta::hours(1)));
        assert_eq!(clock.now() - Duration::from_secs(3600), start);
    }
}

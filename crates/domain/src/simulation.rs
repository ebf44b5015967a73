//! Deterministic simulation: an in-memory store that does, on purpose and
//! reproducibly from a seed, what Postgres may do to a use case.

use std::sync::{Arc, Mutex, PoisonError};

/// What a simulated [`InMemoryStore`](crate::InMemoryStore) does to the code
/// that uses it, drawn from a seeded generator:
///
/// * **re-runs closures**: an update closure runs, on the stored state, up
///   to twice more before the run that counts (a concurrent writer got
///   there first); a unit of work is rolled back and run again after it
///   finished (a serialization failure at COMMIT);
/// * **injects conflicts and transient faults** into a unit's operations:
///   the operation fails with `Conflict`, and the whole unit is rolled back
///   and re-run afterwards, whatever the closure did with the error;
/// * **interleaves** concurrent callers: each operation yields to the
///   scheduler a random number of times before it starts;
/// * **loses replies**, only if asked ([`Simulation::with_lost_replies`]):
///   a write or unit that committed answers `OutcomeUnknown` (except a
///   create, which its token resolves, as on Postgres).
///
/// The last run of a closure always counts, so a pure use case gets the
/// same result with every seed; an impure one (counting its runs, sending a
/// mail, taking a fresh id inside an update closure) shows it. On a
/// current-thread runtime (`#[tokio::test]`'s default) a seed replays the
/// same run exactly.
#[derive(Debug, Clone, Copy)]
pub struct Simulation {
    seed: u64,
    lost_replies: f64,
}

impl Simulation {
    /// The seeds [`InMemoryStore::test_stores`](crate::InMemoryStore::test_stores)
    /// simulates.
    pub const TEST_SEEDS: [u64; 4] = [1, 2, 3, 4];

    /// Re-runs, conflicts and interleavings drawn from `seed`.
    pub const fn seed(seed: u64) -> Self {
        Self {
            seed,
            lost_replies: 0.0,
        }
    }

    /// Also answers `OutcomeUnknown` to this share (0 to 1) of committed
    /// writes: for testing how callers retry.
    #[must_use]
    pub const fn with_lost_replies(mut self, share: f64) -> Self {
        self.lost_replies = share;
        self
    }
}

/// How often each fault is injected.
const RERUN: f64 = 0.5;
const CONFLICT: f64 = 0.15;
/// Most extra runs of one closure or unit.
pub(crate) const MAX_RERUNS: u32 = 2;

/// The running simulation a store and its repositories share.
#[derive(Debug, Clone)]
pub(crate) struct Simulator {
    plan: Simulation,
    state: Arc<Mutex<u64>>,
}

impl Simulator {
    pub(crate) fn new(plan: Simulation) -> Self {
        Self {
            plan,
            state: Arc::new(Mutex::new(plan.seed)),
        }
    }

    /// The next number of a `SplitMix64` sequence: tiny, fast, and the same
    /// on every platform, which is all a replayable simulation needs.
    fn next(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&self, share: f64) -> bool {
        #[expect(clippy::cast_precision_loss, reason = "a probability")]
        let draw = (self.next() >> 11) as f64 / (1_u64 << 53) as f64;
        draw < share
    }

    /// How many discarded runs an update closure gets first.
    pub(crate) fn reruns(&self) -> u32 {
        let mut reruns = 0;
        while reruns < MAX_RERUNS && self.chance(RERUN) {
            reruns += 1;
        }
        reruns
    }

    /// Whether a finished unit is rolled back and run again.
    pub(crate) fn rerun_unit(&self) -> bool {
        self.chance(RERUN)
    }

    /// Whether this operation of a unit fails with a conflict.
    pub(crate) fn conflict(&self) -> bool {
        self.chance(CONFLICT)
    }

    /// Whether a committed write answers `OutcomeUnknown`.
    pub(crate) fn lose_reply(&self) -> bool {
        self.plan.lost_replies > 0.0 && self.chance(self.plan.lost_replies)
    }

    /// Lets other tasks run first, a random number of times.
    pub(crate) async fn interleave(&self) {
        for _ in 0..self.next() % 3 {
            YieldNow(false).await;
        }
    }
}

/// Pending once, waking itself: the scheduler runs the other ready tasks
/// first.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_draws() {
        let draws = |seed| {
            let sim = Simulator::new(Simulation::seed(seed));
            (0..20).map(|_| sim.next()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn chances_are_about_right() {
        let sim = Simulator::new(Simulation::seed(1));
        let hits = (0..10_000).filter(|_| sim.chance(0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }
}

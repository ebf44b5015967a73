//! A read model: how many orders each user placed and what they spent,
//! kept from `order_placed` events. Eventually consistent: it follows the
//! orders by the relay's and the consumer's delay.

use serde::{Deserialize, Serialize};

use super::UserId;
use crate::{Aggregate, Fingerprint, Version};

/// One user's spending, as counted from the events seen so far. Its id is
/// the user's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStats {
    id: UserId,
    version: Version,
    orders_placed: i64,
    total_spent_cents: i64,
}

impl UserStats {
    /// No order counted yet.
    pub fn none(user: UserId) -> Self {
        Self::restore(user, Version::INITIAL, 0, 0)
    }

    /// Rebuilds the stats from storage.
    pub fn restore(
        user: UserId,
        version: Version,
        orders_placed: i64,
        total_spent_cents: i64,
    ) -> Self {
        Self {
            id: user,
            version,
            orders_placed,
            total_spent_cents,
        }
    }

    /// Counts one placed order of `total_cents` (saturating: the counts
    /// are a report, never a reason to refuse).
    pub fn count_order(&mut self, total_cents: i64) {
        self.orders_placed = self.orders_placed.saturating_add(1);
        self.total_spent_cents = self.total_spent_cents.saturating_add(total_cents);
    }

    /// The user.
    pub fn user(&self) -> UserId {
        self.id
    }

    /// Orders placed.
    pub fn orders_placed(&self) -> i64 {
        self.orders_placed
    }

    /// The sum of their totals, in cents.
    pub fn total_spent_cents(&self) -> i64 {
        self.total_spent_cents
    }
}

impl Aggregate for UserStats {
    crate::aggregate_basics!(id: UserId, kind: "user_stats");

    /// Created for one user, whatever it counts.
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.id)
    }
}

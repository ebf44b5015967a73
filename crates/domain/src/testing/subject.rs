//! What the contract suite needs from the aggregate it drives.

use crate::Aggregate;

/// An aggregate the contract suite can create and change. Implemented for
/// the suite's own [`Counter`](super::Counter) and for the example
/// [`Order`](crate::example::Order) (which spans two tables on Postgres).
pub trait ContractSubject: Aggregate {
    /// A new aggregate with this id. Different seeds must give different
    /// fingerprints; the same seed the same fingerprint, whatever the id.
    fn sample(id: Self::Id, seed: u64) -> Self;

    /// A change that succeeds and adds one to [`Self::count`].
    fn bump(&mut self);

    /// How many bumps this aggregate has seen since it was created.
    fn count(&self) -> u64;
}

/// The error the suite's closures return to refuse a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refused by the test closure")]
pub struct Refused;

impl ContractSubject for crate::example::Order {
    fn sample(id: Self::Id, seed: u64) -> Self {
        use crate::example::{Cents, OrderLine, Quantity, Sku, UserId};
        let line = OrderLine {
            sku: Sku::parse(&format!("SEED-{seed}")).expect("a valid sku"),
            quantity: Quantity::new(1).expect("a valid quantity"),
            unit_price: Cents::new(100).expect("a valid price"),
        };
        // The user id is part of the fingerprint: derive it from the seed.
        let user_id = UserId::from(uuid::Uuid::from_u64_pair(0, seed));
        Self::open(id, user_id, vec![line], crate::Timestamp::now()).expect("one line is allowed")
    }

    fn bump(&mut self) {
        let line = self.lines()[0].clone();
        self.add_line(line, crate::Timestamp::now())
            .expect("the suite bumps drafts at most 99 times");
    }

    fn count(&self) -> u64 {
        (self.lines().len() - 1) as u64
    }
}

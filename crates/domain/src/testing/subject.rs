//! What the contract suite needs from the aggregate it drives.

use crate::Aggregate;

/// An aggregate the contract suite can create and change. Implemented for
/// the suite's own [`Counter`](super::Counter) (one table on Postgres) and
/// [`Ledger`](super::Ledger) (two tables); implement it for your own
/// aggregates to run the suite on their mappings too.
pub trait ContractSubject: Aggregate {
    /// A new aggregate with this id. Different seeds must give different
    /// fingerprints and unique values; the same seed the same fingerprint
    /// and the same unique values ([`Aggregate::unique_keys`]), whatever
    /// the id: the suite checks every declared key with two samples of one
    /// seed.
    fn sample(id: Self::Id, seed: u64) -> Self;

    /// A change that adds one to [`Self::count`], by one of the
    /// aggregate's own rules, which may refuse it (a member holds at most
    /// 3 loans): map the rule's error to [`Refused`]. A fresh sample must
    /// take at least 3; the concurrency checks count what was accepted.
    ///
    /// # Errors
    /// `Refused` when the aggregate's rules say no.
    fn bump(&mut self) -> Result<(), Refused>;

    /// How many bumps this aggregate has seen since it was created.
    fn count(&self) -> u64;
}

/// The error the suite's closures return to refuse a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("refused by the test closure")]
pub struct Refused;

impl crate::DomainError for Refused {}

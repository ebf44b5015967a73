//! The operations every implementation performs, the same way.

use std::future::Future;

use uuid::Uuid;

/// One way of doing the benchmark's operations.
pub trait Contender: Clone + Send + Sync + 'static {
    /// Reads a user (user and profile).
    fn get(&self, id: Uuid) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Read-modify-write of a user's score, under the optimistic lock.
    fn update(&self, id: Uuid) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Idempotent create of a user with a transaction token.
    fn create(
        &self,
        token: Uuid,
        id: Uuid,
        username: String,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Read-modify-write of an order: append a line (two tables).
    fn add_line(&self, order: Uuid) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// A unit of work: one cent from one account to another, both
    /// changed or neither (two aggregates, one SERIALIZABLE transaction).
    fn transfer(&self, from: Uuid, to: Uuid) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The score a read-modify-write gives: the community rule for one more
/// user, as the example domain computes it.
pub fn next_score(score: f64) -> f64 {
    domain::example::Score::new(score).map_or(1.0, |s| s.after_newcomer(1).get())
}

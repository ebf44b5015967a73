//! The inbox: how a consumer of events has each one take effect once, even
//! though the relay delivers at least once.

use std::future::Future;

use uuid::Uuid;

use crate::error::RepositoryError;

/// Records, inside a unit of work, that a consumer handled an event: the
/// record commits or rolls back with the unit's writes, so a redelivered
/// event finds it and has no second effect.
///
/// ```ignore
/// store.run(|tx| Box::pin(async move {
///     if !tx.first_delivery("user_stats", event.id).await? {
///         return Ok(()); // handled before: acknowledge, do nothing
///     }
///     tx.of::<UserStats>().update(id, |stats| stats.count(total)).await?;
///     Ok(())
/// })).await
/// ```
pub trait Inbox: Send {
    /// Whether `consumer` sees `event` for the first time: `true` records
    /// it (with the unit), `false` means a unit that handled it committed
    /// before. Two units delivering the same event at once: the second
    /// waits for the first, then gets `false` if it committed.
    fn first_delivery(
        &mut self,
        consumer: &'static str,
        event: Uuid,
    ) -> impl Future<Output = Result<bool, RepositoryError>> + Send;
}

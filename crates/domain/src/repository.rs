//! The repository contract every store implements.

use std::future::Future;

use crate::aggregate::{Aggregate, UniqueKey};
use crate::error::RepositoryError;
use crate::outcome::{Created, Updated};
use crate::page::{Page, PageRequest};
use crate::token::TxToken;

/// Stores aggregates of one kind. Implementations hide every transaction,
/// retry and connection; callers see aggregates and [`RepositoryError`]s.
///
/// The contract (checked by `domain::testing::contract` for every
/// implementation):
///
/// * `create(token, a)`:
///   - a new id and an unused token: stores `a` at [`Version::INITIAL`](crate::Version::INITIAL)
///     and returns it as [`Created::New`];
///   - a token already used with the same fingerprint (a retry): writes
///     nothing and returns the aggregate that token created, as stored now,
///     as [`Created::Replayed`] (`NotFound` if it was deleted since);
///   - a token already used with another fingerprint: `TokenMismatch`;
///   - an unused token and an id that exists: `AlreadyExists`;
///   - a unique key another aggregate holds: `Duplicate`.
/// * `update(id, f)` loads the aggregate, runs `f` on it and stores the
///   result at the next version, atomically: no concurrent update is lost.
///   It returns the aggregate as stored and what `f` returned.
///   `f` is synchronous and must be pure: the repository may run it again,
///   on freshly loaded state, when a concurrent write got there first. Its
///   `Err` writes nothing and comes back as [`RepositoryError::Domain`].
///   A panic in `f` writes nothing and propagates.
pub trait Repository<A: Aggregate>: Send + Sync {
    /// Idempotent create-or-err; see the trait docs for the outcomes.
    fn create(
        &self,
        token: TxToken,
        aggregate: A,
    ) -> impl Future<Output = Result<Created<A>, RepositoryError>> + Send;

    /// The aggregate with this id, or `NotFound`.
    fn get(&self, id: A::Id) -> impl Future<Output = Result<A, RepositoryError>> + Send;

    /// The aggregate that holds `key`, a value of one of its declared
    /// unique keys ([`Aggregate::unique_keys`]): `get_by(UniqueKey::new(
    /// "sku", "PEN-1"))`. `NotFound` when none does, or the key is not one
    /// the aggregate declares. One indexed read on Postgres (the mapping's
    /// `load_by`).
    fn get_by(&self, key: UniqueKey) -> impl Future<Output = Result<A, RepositoryError>> + Send;

    /// [`Self::update`] of the aggregate holding `key` (see
    /// [`Self::get_by`]): `NotFound` when none does. On Postgres it costs
    /// what an update by id does (the read by key is the update's load); a
    /// concurrent writer re-runs `f` on the state read again by key.
    fn update_by<R, E, F>(
        &self,
        key: UniqueKey,
        f: F,
    ) -> impl Future<Output = Result<Updated<A, R>, RepositoryError<E>>> + Send
    where
        F: FnMut(&mut A) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        async move {
            let holder = self.get_by(key).await.map_err(RepositoryError::widen)?;
            self.update(holder.id(), f).await
        }
    }

    /// Read-modify-write; returns the aggregate as stored (at its new
    /// version, say for an ETag) with what `f` returned.
    fn update<R, E, F>(
        &self,
        id: A::Id,
        f: F,
    ) -> impl Future<Output = Result<Updated<A, R>, RepositoryError<E>>> + Send
    where
        F: FnMut(&mut A) -> Result<R, E> + Send,
        R: Send,
        E: Send;

    /// Removes the aggregate, or `NotFound`. Its tokens stay spent: a create
    /// retried after the delete gets `NotFound`, not a resurrection.
    fn delete(&self, id: A::Id) -> impl Future<Output = Result<(), RepositoryError>> + Send;

    /// One page of aggregates in id order.
    fn list(
        &self,
        page: PageRequest<A::Id>,
    ) -> impl Future<Output = Result<Page<A>, RepositoryError>> + Send;

    /// The events stored for the aggregate `id` (see
    /// [`Events`](crate::Events)), oldest first: in version order, and in
    /// recording order within a version. Empty for an unknown id.
    fn events(
        &self,
        id: A::Id,
    ) -> impl Future<Output = Result<Vec<crate::StoredEvent>, RepositoryError>> + Send;
}

//! What a service needs from a store, whichever it is: the in-memory one for
//! tests and demos, Postgres in production. Code generic over [`Store`]
//! runs on both unchanged; the store is chosen once, at start.

use std::future::Future;

use crate::aggregate::Aggregate;
use crate::error::RepositoryError;
use crate::exclusive::ExclusiveAccess;
use crate::fingerprint::Fingerprint;
use crate::repository::Repository;
use crate::token::TxToken;
use crate::unit_of_work::{Transaction, UnitOfWork};

/// A store: units of work, keyed locks and a health check. Which
/// aggregates it holds is said per type with [`Stores`].
pub trait Store: UnitOfWork + ExclusiveAccess + Clone + Send + Sync + 'static {
    /// A short name for logs and health checks (`memory`, `postgres`).
    fn name(&self) -> &'static str;

    /// Whether the store answers, within its deadline.
    fn ping(&self) -> impl Future<Output = Result<(), RepositoryError>> + Send;

    /// Binds a client's idempotency key to the one request it was first
    /// sent with (`request`: a fingerprint of the operation and its input).
    /// `Ok` the first time and for the same request again (a retry);
    /// `TokenMismatch` for any other request, whatever it would create.
    ///
    /// Tokens guard creates per aggregate kind; this guards the key itself,
    /// so that a key used for one operation cannot be reused for another.
    /// Kept as long as tokens are (`token_retention` on Postgres).
    fn bind_key(
        &self,
        key: TxToken,
        request: Fingerprint,
    ) -> impl Future<Output = Result<(), RepositoryError>> + Send;

    /// Forgets transaction tokens, idempotency keys and inbox records older
    /// than the store's token retention, never a younger one; returns how
    /// many went. A create retried after its token was forgotten creates
    /// again, and an event redelivered after its inbox record was forgotten
    /// takes effect again. Run
    /// it now and then (the service does, hourly); it works in bounded
    /// batches, so any backlog drains.
    fn purge_expired_tokens(&self) -> impl Future<Output = Result<usize, RepositoryError>> + Send;

    /// How far the outbox's relay is behind: the age of the oldest event
    /// not published yet, `None` when none waits. The in-memory store tells
    /// subscribers of events as their change commits, so none ever waits.
    fn outbox_lag(
        &self,
    ) -> impl Future<Output = Result<Option<std::time::Duration>, RepositoryError>> + Send;
}

/// A store that holds aggregates of type `A`: its repository, and units of
/// work that reach `A` through `tx.of::<A>()`.
///
/// The in-memory store holds every aggregate type; Postgres those with a
/// mapping. Generic code asks for the types it uses (`S: Stores<Account>`)
/// and gets the repository with [`StoreExt::repository`].
pub trait Stores<A: Aggregate>: UnitOfWork<Tx: Transaction<A>> {
    /// The repository type.
    type Repository: Repository<A> + Clone + Send + Sync + 'static;

    /// The store's repository of `A`. Call it as `store.repository::<A>()`.
    fn repository_of(&self) -> Self::Repository;
}

/// `store.repository::<A>()` for any store that [`Stores<A>`].
pub trait StoreExt {
    /// The store's repository of `A` (the same data on every call).
    fn repository<A: Aggregate>(&self) -> <Self as Stores<A>>::Repository
    where
        Self: Stores<A>,
    {
        self.repository_of()
    }
}

impl<S> StoreExt for S {}

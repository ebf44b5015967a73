//! Units of work: several repository operations, on any aggregates, that
//! commit together or not at all.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::{Aggregate, UniqueKey};
use crate::error::RepositoryError;
use crate::fingerprint::Fingerprint;
use crate::outcome::{Created, Keyed, Updated};
use crate::token::TxToken;

/// The future a unit of work's closure returns: boxed, because Rust cannot
/// yet name the `Send` future of a generic async closure.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store that runs units of work: use-cases that touch several aggregates
/// (create a user and append an action; recompute every score) atomically.
///
/// ```ignore
/// let moved = store.run(|tx| Box::pin(transfer(tx, from, to, amount))).await?;
///
/// async fn transfer<Tx: Transaction<Account>>(tx: &mut Tx, from: AccountId, to: AccountId, amount: Cents)
///     -> Result<Account, RepositoryError<Overdrawn>>
/// {
///     let paid = tx.of::<Account>().update(from, |a| a.withdraw(amount)).await?;
///     tx.of::<Account>().update(to, |a| a.deposit(amount)).await?;
///     Ok(paid.aggregate)
/// }
/// ```
///
/// The closure may run more than once: when the store detects a conflict
/// or a transient fault anywhere in the unit (even one the closure handled
/// itself), it rolls everything back and runs the closure again on fresh
/// state. So, like an update closure, it must not have other side effects;
/// it returns what it produced. An `Err` from it rolls everything back and
/// is returned as is. Units are serializable: their outcome is as if they
/// ran one at a time.
///
/// The closure returns a boxed future because stable Rust cannot yet say
/// that an async closure's future is `Send`: keep the unit's logic in a
/// named `async fn` taking `tx`, as above, and the `Box::pin` stays one
/// call. Its error type is `RepositoryError<E>`, where `E` is your rules'
/// [`DomainError`](crate::DomainError): `?` lifts both into it.
pub trait UnitOfWork: Send + Sync {
    /// The transaction handle the closure works through.
    type Tx: Nested + crate::Inbox;

    /// Runs `work` as one atomic unit, under the store's deadline.
    fn run<T, E, F>(&self, work: F) -> impl Future<Output = Result<T, RepositoryError<E>>> + Send
    where
        F: for<'t> FnMut(&'t mut Self::Tx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send;

    /// Runs `work` as [`Self::run`] does, at most once per `key`: the key
    /// is claimed inside the unit's own transaction, with `request` (a
    /// fingerprint of what the caller asked for) and the unit's answer, so
    /// the claim commits or rolls back with the unit's writes.
    ///
    /// - A key no unit committed with: `work` runs; `Keyed::First` once the
    ///   unit committed.
    /// - A key a unit committed with, same `request`: nothing runs and
    ///   nothing is written; `Keyed::Replayed` with that unit's answer as it
    ///   was then (not re-read), whatever changed since.
    /// - A key a unit committed with, another `request`: `TokenMismatch`.
    /// - A unit that failed (its `Err`, a refusal) committed nothing, the
    ///   claim neither: the same key runs it again.
    ///
    /// So a client that retries with the same key (its request timed out,
    /// or answered `Timeout`) never applies the unit twice, and a unit
    /// whose COMMIT reply was lost never answers `OutcomeUnknown`: the
    /// store retries it, and the retry finds the key if the first attempt
    /// landed. Keys are kept as long as tokens are
    /// ([`Store::purge_expired_tokens`](crate::Store::purge_expired_tokens)).
    ///
    /// ```ignore
    /// let request = Fingerprint::of(&("transfer", from, to, amount));
    /// let moved = store
    ///     .run_once(key, request, |tx| Box::pin(move_money(tx, from, to, amount)))
    ///     .await?
    ///     .into_inner();
    /// ```
    ///
    /// The answer is stored as JSON, hence `T: Serialize + DeserializeOwned`.
    fn run_once<T, E, F>(
        &self,
        key: TxToken,
        request: Fingerprint,
        work: F,
    ) -> impl Future<Output = Result<Keyed<T>, RepositoryError<E>>> + Send
    where
        F: for<'t> FnMut(&'t mut Self::Tx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Serialize + DeserializeOwned + Send,
        E: Send;

    /// Runs read-only `work` on one consistent snapshot: every read sees the
    /// same committed state, and readers neither block writers nor make
    /// them retry. Writes through it fail. Use it for reports and for
    /// reading several aggregates that must agree with each other.
    fn read<T, E, F>(&self, work: F) -> impl Future<Output = Result<T, RepositoryError<E>>> + Send
    where
        F: for<'t> FnMut(&'t mut Self::Tx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        self.run(work)
    }
}

/// What a store needs to run a unit at most once per key
/// ([`UnitOfWork::run_once`]): the key, the request it was claimed for,
/// and how the unit's answer is kept (as JSON). For store implementations.
pub struct RunOnce<T> {
    /// The caller's key.
    pub key: TxToken,
    /// What the caller asked for with it.
    pub request: Fingerprint,
    encode: fn(&T) -> serde_json::Result<serde_json::Value>,
    decode: fn(&serde_json::Value) -> serde_json::Result<T>,
}

impl<T: Serialize + DeserializeOwned> RunOnce<T> {
    /// A run of a unit under `key`, for `request`.
    pub fn new(key: TxToken, request: Fingerprint) -> Self {
        Self {
            key,
            request,
            encode: |answer| serde_json::to_value(answer),
            decode: |answer| T::deserialize(answer),
        }
    }
}

impl<T> RunOnce<T> {
    /// The unit's answer, to keep with its key.
    ///
    /// # Errors
    /// `Storage` when it does not serialize: the unit must then roll back.
    pub fn encode<E>(&self, answer: &T) -> Result<serde_json::Value, RepositoryError<E>> {
        (self.encode)(answer).map_err(|e| RepositoryError::Storage(Box::new(e)))
    }

    /// What a unit that committed with this key earlier for `request`
    /// answered, given what it kept: its answer for the same request,
    /// `TokenMismatch` for another, `Storage` for an answer that no longer
    /// parses as `T`.
    pub fn replay<E>(
        &self,
        request: Fingerprint,
        answer: &serde_json::Value,
    ) -> Result<T, RepositoryError<E>> {
        if request != self.request {
            return Err(RepositoryError::TokenMismatch {
                kind: "request",
                token: self.key,
            });
        }
        (self.decode)(answer).map_err(|e| RepositoryError::Storage(Box::new(e)))
    }
}

/// Nested units inside a unit of work: savepoints.
pub trait Nested: Send + Sized {
    /// Runs `work` as a nested unit. If it fails, what it wrote is rolled
    /// back and its error returned; the caller then decides: recover (the
    /// outer unit goes on, without the nested part) or propagate the error
    /// with `?` (the whole unit rolls back).
    ///
    /// ```ignore
    /// let savings = tx.nested(|tx| Box::pin(async move {
    ///     tx.of::<Account>().create(token, account).await
    /// })).await.ok();   // recovered: the rest of the unit commits either way
    /// ```
    fn nested<T, E, F>(&mut self, work: F) -> impl Future<Output = Result<T, E>> + Send
    where
        F: for<'t> FnOnce(&'t mut Self) -> BoxFuture<'t, Result<T, E>> + Send,
        T: Send,
        E: Send;
}

/// Repository operations on aggregates of type `A` inside a unit of work.
/// Same contract as [`Repository`](crate::Repository), except that nothing
/// is visible to others before the unit commits and that conflicts are
/// resolved by re-running the whole unit. Reach it through [`TxExt::of`].
pub trait Transaction<A: Aggregate>: Send {
    /// Idempotent create-or-err, as [`Repository::create`](crate::Repository::create).
    fn create(
        &mut self,
        token: TxToken,
        aggregate: A,
    ) -> impl Future<Output = Result<Created<A>, RepositoryError>> + Send;

    /// The aggregate, or `NotFound`.
    fn get(&mut self, id: A::Id) -> impl Future<Output = Result<A, RepositoryError>> + Send;

    /// The aggregate holding `key`, as [`Repository::get_by`](crate::Repository::get_by).
    fn get_by(&mut self, key: UniqueKey)
    -> impl Future<Output = Result<A, RepositoryError>> + Send;

    /// Read-modify-write, as [`Repository::update`](crate::Repository::update).
    fn update<R, E, F>(
        &mut self,
        id: A::Id,
        f: F,
    ) -> impl Future<Output = Result<Updated<A, R>, RepositoryError<E>>> + Send
    where
        F: FnOnce(&mut A) -> Result<R, E> + Send,
        R: Send,
        E: Send;

    /// Removes the aggregate, or `NotFound`.
    fn delete(&mut self, id: A::Id) -> impl Future<Output = Result<(), RepositoryError>> + Send;

    /// Every aggregate of this type, in id order. Meant for small reference
    /// sets and for batch rules; the whole set is loaded into memory.
    fn all(&mut self) -> impl Future<Output = Result<Vec<A>, RepositoryError>> + Send;

    /// Stores changed aggregates, each loaded earlier in this unit, at the
    /// next version, in a constant number of round trips. If any of them
    /// changed since it was loaded, the unit is re-run.
    fn save_all(
        &mut self,
        changed: Vec<A>,
    ) -> impl Future<Output = Result<(), RepositoryError>> + Send;
}

/// Picks the aggregate type for the next operations: `tx.of::<Account>()`.
pub trait TxExt {
    /// The operations on aggregates of type `A` in this unit.
    fn of<A: Aggregate>(&mut self) -> UnitRepository<'_, Self, A>
    where
        Self: Transaction<A> + Sized,
    {
        UnitRepository {
            tx: self,
            aggregate: std::marker::PhantomData,
        }
    }
}

impl<T> TxExt for T {}

/// [`Transaction<A>`] of one unit, with the aggregate type fixed so that
/// calls need no type annotations.
pub struct UnitRepository<'t, Tx, A> {
    tx: &'t mut Tx,
    aggregate: std::marker::PhantomData<fn() -> A>,
}

impl<Tx: Transaction<A>, A: Aggregate> UnitRepository<'_, Tx, A> {
    /// See [`Transaction::create`].
    pub async fn create(
        &mut self,
        token: TxToken,
        aggregate: A,
    ) -> Result<Created<A>, RepositoryError> {
        self.tx.create(token, aggregate).await
    }

    /// See [`Transaction::get`].
    pub async fn get(&mut self, id: A::Id) -> Result<A, RepositoryError> {
        self.tx.get(id).await
    }

    /// See [`Transaction::get_by`].
    pub async fn get_by(&mut self, key: UniqueKey) -> Result<A, RepositoryError> {
        self.tx.get_by(key).await
    }

    /// See [`Transaction::update`].
    pub async fn update<R, E, F>(
        &mut self,
        id: A::Id,
        f: F,
    ) -> Result<Updated<A, R>, RepositoryError<E>>
    where
        F: FnOnce(&mut A) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        self.tx.update(id, f).await
    }

    /// See [`Transaction::delete`].
    pub async fn delete(&mut self, id: A::Id) -> Result<(), RepositoryError> {
        self.tx.delete(id).await
    }

    /// See [`Transaction::all`].
    pub async fn all(&mut self) -> Result<Vec<A>, RepositoryError> {
        self.tx.all().await
    }

    /// See [`Transaction::save_all`].
    pub async fn save_all(&mut self, changed: Vec<A>) -> Result<(), RepositoryError> {
        self.tx.save_all(changed).await
    }

    /// Makes the stored set of `A` exactly `desired`: deletes what is not in
    /// it, creates what is new and rewrites (in one batch) what differs from
    /// the stored aggregate in any field. Run inside the unit, it is atomic: readers
    /// see the old set or the new one. New aggregates are created with
    /// tokens derived from `token`, so a retried import is harmless.
    ///
    /// # Errors
    /// `AlreadyExists` if `desired` holds one id twice, and whatever the
    /// store reports.
    pub async fn replace_all(
        &mut self,
        token: TxToken,
        desired: Vec<A>,
    ) -> Result<Replaced, RepositoryError>
    where
        A: PartialEq,
    {
        let mut current: std::collections::HashMap<A::Id, A> =
            self.all().await?.into_iter().map(|a| (a.id(), a)).collect();
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = desired.iter().find(|a| !seen.insert(a.id())) {
            return Err(RepositoryError::AlreadyExists {
                kind: A::KIND,
                id: twice.id().to_string(),
            });
        }
        let mut report = Replaced::default();
        let missing: Vec<A::Id> = current
            .keys()
            .filter(|id| !seen.contains(*id))
            .copied()
            .collect();
        for id in missing {
            current.remove(&id);
            self.delete(id).await?;
            report.deleted += 1;
        }
        let mut changed = Vec::new();
        for mut wanted in desired {
            match current.get(&wanted.id()) {
                None => {
                    let created = self
                        .create(token.derive(&wanted.id().to_string()), wanted)
                        .await?;
                    if created.is_new() {
                        report.created += 1;
                    } else {
                        report.unchanged += 1;
                    }
                }
                Some(stored) => {
                    wanted.set_version(stored.version());
                    if *stored == wanted {
                        report.unchanged += 1;
                    } else {
                        changed.push(wanted);
                    }
                }
            }
        }
        report.updated = changed.len();
        self.save_all(changed).await?;
        Ok(report)
    }
}

/// What [`UnitRepository::replace_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replaced {
    /// New aggregates stored.
    pub created: usize,
    /// Changed aggregates rewritten.
    pub updated: usize,
    /// Aggregates left as they were.
    pub unchanged: usize,
    /// Aggregates removed.
    pub deleted: usize,
}

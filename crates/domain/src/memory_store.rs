//! A set of in-memory repositories that run units of work together.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::aggregate::Aggregate;
use crate::clock::{Clock, Timestamp};
use crate::error::RepositoryError;
use crate::exclusive::{ExclusiveAccess, KeyGuard, KeyedLocks};
use crate::fingerprint::Fingerprint;
use crate::memory::{Gate, InMemoryRepository};
use crate::outbox::MemoryOutbox;
use crate::outcome::Keyed;
use crate::outcome::{Created, Updated};
use crate::simulation::{MAX_RERUNS, Simulation, Simulator};
use crate::store::{Store, Stores};
use crate::token::TxToken;
use crate::unit_of_work::{BoxFuture, Nested, RunOnce, Transaction, UnitOfWork};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// In-memory repositories for any aggregate types, sharing one gate so that
/// a unit of work runs alone: its operations are applied directly, each
/// recording how to undo it, and undone in reverse if the unit fails,
/// panics or is dropped half-way (a failed nested unit undoes its own).
///
/// Units never conflict here, so their closures run exactly once, unless
/// the store is [simulated](InMemoryStore::simulated).
#[derive(Clone)]
pub struct InMemoryStore {
    gate: Gate,
    locks: KeyedLocks,
    keys: Arc<Mutex<HashMap<TxToken, (Fingerprint, Timestamp)>>>,
    /// The answers of units run with a key ([`UnitOfWork::run_once`]).
    answers: Arc<Mutex<HashMap<TxToken, Answer>>>,
    repositories: Arc<Mutex<HashMap<TypeId, Slot>>>,
    token_retention: Duration,
    clock: Clock,
    sim: Option<Simulator>,
    outbox: MemoryOutbox,
    /// Which consumer handled which event (see [`Inbox`](crate::Inbox)).
    /// Who handled which event, and when (for the purge).
    inbox: Arc<Mutex<HashMap<(&'static str, uuid::Uuid), Timestamp>>>,
}

/// What a unit run with a key committed: the request it ran for, its
/// answer as JSON, and when (for the purge).
struct Answer {
    request: Fingerprint,
    json: serde_json::Value,
    at: Timestamp,
}

/// One aggregate type's repository, and how to purge its expired tokens
/// without knowing its type.
struct Slot {
    repository: Box<dyn Any + Send + Sync>,
    purge: Box<dyn Fn(Timestamp) -> usize + Send + Sync>,
}

impl Default for InMemoryStore {
    fn default() -> Self {
        Self::with_token_retention(Duration::from_secs(24 * 3600))
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore").finish_non_exhaustive()
    }
}

impl InMemoryStore {
    /// An empty store that remembers transaction tokens for 24 hours, as
    /// the Postgres store does by default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same store with keyed-lock holds expiring after `max_hold`
    /// (30 s by default, as on Postgres's `StoreConfig::max_lock_hold`).
    #[must_use]
    pub fn with_max_lock_hold(mut self, max_hold: Duration) -> Self {
        self.locks = KeyedLocks::with_max_hold(max_hold);
        self
    }

    /// An empty store that remembers transaction tokens and idempotency
    /// keys for `retention`: [`Store::purge_expired_tokens`] forgets older
    /// ones, as on Postgres (`StoreConfig::token_retention`).
    pub fn with_token_retention(retention: Duration) -> Self {
        Self {
            gate: Gate::default(),
            locks: KeyedLocks::default(),
            keys: Arc::default(),
            answers: Arc::default(),
            repositories: Arc::default(),
            token_retention: retention,
            clock: Clock::system(),
            sim: None,
            outbox: MemoryOutbox::default(),
            inbox: Arc::default(),
        }
    }

    /// An empty store that simulates, reproducibly from `plan`'s seed, what
    /// Postgres may do: re-run closures, fail a unit's operations with
    /// conflicts, interleave concurrent callers (see [`Simulation`]). Run a
    /// use case's tests on a few seeds: an impure closure fails them.
    pub fn simulated(plan: Simulation) -> Self {
        Self {
            sim: Some(Simulator::new(plan)),
            ..Self::new()
        }
    }

    /// The stores a use case's tests run on: the plain store, then
    /// simulations on [`Simulation::TEST_SEEDS`], which re-run closures
    /// and units, inject conflicts and interleave callers as Postgres may.
    /// A use case whose closures are not pure fails on them; a pure one
    /// gets the same result on each.
    ///
    /// ```
    /// # use domain::InMemoryStore;
    /// for store in InMemoryStore::test_stores() {
    ///     // run the use case on `store`, assert its outcome
    /// #   drop(store);
    /// }
    /// ```
    pub fn test_stores() -> impl Iterator<Item = Self> {
        let simulated = Simulation::TEST_SEEDS.map(|seed| Self::simulated(Simulation::seed(seed)));
        std::iter::once(Self::new()).chain(simulated)
    }

    /// The same store stamping tokens and keys with `clock`'s time and
    /// judging their age by it, as `StoreConfig::clock` does on Postgres.
    /// Set it before taking repositories.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store's repository of `A` (the same data on every call).
    ///
    /// # Panics
    /// Never: each slot holds the repository of the type it is keyed by.
    pub fn repository<A: Aggregate>(&self) -> InMemoryRepository<A> {
        let mut repositories = self
            .repositories
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        repositories
            .entry(TypeId::of::<A>())
            .or_insert_with(|| {
                let repository = InMemoryRepository::<A>::gated(
                    Arc::clone(&self.gate),
                    self.clock.clone(),
                    self.sim.clone(),
                    self.outbox.clone(),
                );
                let purged = repository.clone();
                Slot {
                    repository: Box::new(repository),
                    purge: Box::new(move |cutoff| purged.lock().purge_tokens_before(cutoff)),
                }
            })
            .repository
            .downcast_ref::<InMemoryRepository<A>>()
            .expect("repositories are keyed by their aggregate's TypeId")
            .clone()
    }
}

impl Store for InMemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), RepositoryError> {
        Ok(())
    }

    async fn bind_key(&self, key: TxToken, request: Fingerprint) -> Result<(), RepositoryError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.entry(key).or_insert((request, self.clock.now())) {
            (bound, _) if *bound == request => Ok(()),
            _ => Err(RepositoryError::TokenMismatch {
                kind: "request",
                token: key,
            }),
        }
    }

    async fn outbox_lag(&self) -> Result<Option<Duration>, RepositoryError> {
        Ok(None)
    }

    async fn purge_expired_tokens(&self) -> Result<usize, RepositoryError> {
        let cutoff = self.clock.now() - self.token_retention;
        let mut purged = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            let before = keys.len();
            keys.retain(|_, (_, bound)| *bound >= cutoff);
            before - keys.len()
        };
        {
            let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
            let before = answers.len();
            answers.retain(|_, answer| answer.at >= cutoff);
            purged += before - answers.len();
        }
        {
            let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
            let before = inbox.len();
            inbox.retain(|_, handled| *handled >= cutoff);
            purged += before - inbox.len();
        }
        let repositories = self
            .repositories
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in repositories.values() {
            purged += (slot.purge)(cutoff);
        }
        Ok(purged)
    }
}

impl<A: Aggregate> Stores<A> for InMemoryStore {
    type Repository = InMemoryRepository<A>;

    fn repository_of(&self) -> InMemoryRepository<A> {
        self.repository::<A>()
    }
}

impl ExclusiveAccess for InMemoryStore {
    type Guard = KeyGuard;

    async fn lock(&self, key: &str, wait: Duration) -> Result<KeyGuard, RepositoryError> {
        self.locks.lock(key, wait).await
    }

    async fn lock_shared(&self, key: &str, wait: Duration) -> Result<KeyGuard, RepositoryError> {
        self.locks.lock_shared(key, wait).await
    }

    async fn still_held(&self, guard: &mut KeyGuard) -> Result<(), RepositoryError> {
        self.locks.still_held(guard).await
    }

    async fn unlock(&self, guard: KeyGuard) -> Result<(), RepositoryError> {
        self.locks.unlock(guard).await
    }
}

impl UnitOfWork for InMemoryStore {
    type Tx = MemoryTx;

    async fn run<T, E, F>(&self, work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut MemoryTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        self.unit(false, None, work).await.map(Keyed::into_inner)
    }

    async fn run_once<T, E, F>(
        &self,
        key: TxToken,
        request: Fingerprint,
        work: F,
    ) -> Result<Keyed<T>, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut MemoryTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Serialize + DeserializeOwned + Send,
        E: Send,
    {
        self.unit(false, Some(RunOnce::new(key, request)), work)
            .await
    }

    async fn read<T, E, F>(&self, work: F) -> Result<T, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut MemoryTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
        T: Send,
        E: Send,
    {
        self.unit(true, None, work).await.map(Keyed::into_inner)
    }
}

impl InMemoryStore {
    /// The events every repository of this store stored with its changes,
    /// and a channel that tells subscribers of each once committed: how a
    /// domain test sees the events a use case emits.
    pub fn outbox(&self) -> &MemoryOutbox {
        &self.outbox
    }

    /// Runs `work` as one unit; with a key, at most once per key (see
    /// [`UnitOfWork::run_once`]).
    async fn unit<T, E, F>(
        &self,
        read_only: bool,
        once: Option<RunOnce<T>>,
        mut work: F,
    ) -> Result<Keyed<T>, RepositoryError<E>>
    where
        F: for<'t> FnMut(&'t mut MemoryTx) -> BoxFuture<'t, Result<T, RepositoryError<E>>> + Send,
    {
        if let Some(sim) = &self.sim {
            sim.interleave().await;
        }
        // Held across re-runs; declared before `tx`, so dropped after it:
        // a unit dropped half-way rolls back before the next one starts.
        let _gate = Arc::clone(&self.gate).lock_owned().await;
        let mut reruns = self.sim.as_ref().map_or(0, |_| MAX_RERUNS);
        loop {
            if let Some(answered) = once.as_ref().and_then(|once| self.answered(once)) {
                return answered.map(Keyed::Replayed);
            }
            let mark = self.outbox.mark();
            let mut tx = MemoryTx {
                store: self.clone(),
                read_only,
                undo: Vec::new(),
                committed: false,
                faults: if reruns > 0 {
                    Faults::Possible
                } else {
                    Faults::Off
                },
                // A key resolves a lost COMMIT reply, as a create's token does.
                claimed_token: once.is_some(),
            };
            let result = crate::unit_scope::within_unit(work(&mut tx)).await;
            let rerun = match tx.faults {
                Faults::Off => false,
                Faults::Doomed => true,
                Faults::Possible => self.sim.as_ref().is_some_and(Simulator::rerun_unit),
            };
            if rerun {
                // Dropping `tx` uncommitted rolls the attempt back.
                reruns -= 1;
                continue;
            }
            let result = match (result, &once) {
                (Ok(value), Some(once)) => {
                    // Recorded with the unit's writes: an answer that
                    // cannot be kept fails the unit, which rolls back.
                    once.encode(&value).map(|json| {
                        let at = self.clock.now();
                        let request = once.request;
                        self.answers
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(once.key, Answer { request, json, at });
                        value
                    })
                }
                (result, _) => result,
            };
            tx.committed = result.is_ok();
            if tx.committed {
                self.outbox.publish_from(mark);
            }
            let lost = result.is_ok()
                && !tx.claimed_token
                && self.sim.as_ref().is_some_and(Simulator::lose_reply);
            return if lost {
                Err(RepositoryError::OutcomeUnknown)
            } else {
                result.map(Keyed::First)
            };
        }
    }
}

impl InMemoryStore {
    /// The answer a unit committed with `once`'s key, if one did: replayed
    /// for the same request, `TokenMismatch` for another.
    fn answered<T, E>(&self, once: &RunOnce<T>) -> Option<Result<T, RepositoryError<E>>> {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        let stored = answers.get(&once.key)?;
        Some(once.replay(stored.request, &stored.json))
    }
}

/// The transaction handle of an [`InMemoryStore`] unit of work.
pub struct MemoryTx {
    store: InMemoryStore,
    /// A `read` unit: writes fail, as Postgres refuses them in a READ ONLY
    /// transaction.
    read_only: bool,
    /// How to undo each write so far, oldest first: what a rollback (of the
    /// unit, or of a nested part back to its mark) runs in reverse. It holds
    /// what the unit changed, not copies of whole tables.
    undo: Vec<Box<dyn FnOnce() + Send>>,
    committed: bool,
    /// Whether this attempt may get injected conflicts, or got one.
    faults: Faults,
    /// A create claimed a token, which would resolve a lost COMMIT reply.
    claimed_token: bool,
}

impl MemoryTx {
    /// In a simulation, now and then, a conflict that dooms the attempt (and
    /// every operation after it, as in an aborted Postgres transaction).
    fn simulated_conflict<A: Aggregate, E>(
        &mut self,
        id: &dyn std::fmt::Display,
    ) -> Result<(), RepositoryError<E>> {
        self.simulated_conflict_on(A::KIND, id)
    }

    /// [`Self::simulated_conflict`] on a kind of record that is no
    /// aggregate (the inbox).
    fn simulated_conflict_on<E>(
        &mut self,
        kind: &'static str,
        id: &dyn std::fmt::Display,
    ) -> Result<(), RepositoryError<E>> {
        let conflict = match self.faults {
            Faults::Off => false,
            Faults::Doomed => true,
            Faults::Possible => self.store.sim.as_ref().is_some_and(Simulator::conflict),
        };
        if !conflict {
            return Ok(());
        }
        self.faults = Faults::Doomed;
        Err(RepositoryError::Conflict {
            kind,
            id: id.to_string(),
            attempts: 1,
        })
    }

    /// The repository of `A` for a write, or `Storage` in a read unit.
    fn writable<A: Aggregate>(&self) -> Result<InMemoryRepository<A>, RepositoryError> {
        if self.read_only {
            return Err(refused_in_read_unit::<A>());
        }
        Ok(self.store.repository::<A>())
    }

    /// Stores the events of the write just made on `state` with the unit's
    /// changes: forgotten if the unit (or the nested part) rolls back, told
    /// to subscribers when it commits.
    fn store_events<A: Aggregate>(
        &mut self,
        repository: &InMemoryRepository<A>,
        state: &mut crate::memory::State<A>,
    ) {
        let events = repository.stamped(state);
        if events.is_empty() {
            return;
        }
        let outbox = repository.outbox().clone();
        let mark = outbox.mark();
        outbox.append(events);
        self.undo.push(Box::new(move || outbox.truncate(mark)));
    }

    /// Records that `id` was `previous` (`None`: absent) before a write.
    fn undo_to<A: Aggregate>(
        &mut self,
        repository: &InMemoryRepository<A>,
        id: A::Id,
        previous: Option<A>,
    ) {
        let repository = repository.clone();
        self.undo
            .push(Box::new(move || repository.lock().put_back(id, previous)));
    }
}

/// Injected faults in one attempt of a simulated unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Faults {
    /// Not simulated, or the last attempt, which always counts.
    Off,
    /// Operations may fail with a conflict.
    Possible,
    /// One did: the attempt is rolled back and re-run, whatever it returns.
    Doomed,
}

/// What a write in a read unit gets, as Postgres refuses it in a READ ONLY
/// transaction.
fn refused_in_read_unit<A: Aggregate>() -> RepositoryError {
    refused_in_read_unit_of(A::KIND)
}

fn refused_in_read_unit_of(kind: &str) -> RepositoryError {
    RepositoryError::Storage(format!("cannot write a {kind} in a read-only unit of work").into())
}

impl Drop for MemoryTx {
    /// Rolls back unless the unit succeeded: also when its closure failed,
    /// panicked, or its future was dropped before the end.
    fn drop(&mut self) {
        if !self.committed {
            for undo in self.undo.drain(..).rev() {
                undo();
            }
        }
    }
}

impl Nested for MemoryTx {
    async fn nested<T, E, F>(&mut self, work: F) -> Result<T, E>
    where
        F: for<'t> FnOnce(&'t mut Self) -> BoxFuture<'t, Result<T, E>> + Send,
        T: Send,
        E: Send,
    {
        // The nested part's writes are the undo entries it adds past `mark`.
        let mark = self.undo.len();
        let result = work(self).await;
        if result.is_err() {
            for undo in self.undo.drain(mark..).rev() {
                undo();
            }
        }
        result
    }
}

/// The inbox's name in errors.
const INBOX: &str = "inbox entry";

impl crate::Inbox for MemoryTx {
    async fn first_delivery(
        &mut self,
        consumer: &'static str,
        event: uuid::Uuid,
    ) -> Result<bool, RepositoryError> {
        self.simulated_conflict_on(INBOX, &event)?;
        if self.read_only {
            return Err(refused_in_read_unit_of(INBOX));
        }
        let inbox = Arc::clone(&self.store.inbox);
        let now = self.store.clock.now();
        let first = inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((consumer, event), now)
            .is_none();
        if first {
            self.undo.push(Box::new(move || {
                inbox
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&(consumer, event));
            }));
        }
        Ok(first)
    }
}

impl<A: Aggregate> Transaction<A> for MemoryTx {
    async fn create(
        &mut self,
        token: TxToken,
        aggregate: A,
    ) -> Result<Created<A>, RepositoryError> {
        self.simulated_conflict::<A, _>(&aggregate.id())?;
        let repository = self.writable::<A>()?;
        let now = repository.now();
        let created = {
            let mut state = repository.lock();
            let created = state.create(token, aggregate, now)?;
            self.store_events(&repository, &mut state);
            created
        };
        if let Created::New(new) = &created {
            self.claimed_token = true;
            self.undo_to(&repository, new.id(), None);
            let tokens = repository.clone();
            self.undo
                .push(Box::new(move || tokens.lock().forget_token(token)));
        }
        Ok(created)
    }

    async fn get(&mut self, id: A::Id) -> Result<A, RepositoryError> {
        self.simulated_conflict::<A, _>(&id)?;
        self.store.repository::<A>().lock().get(id)
    }

    async fn get_by(&mut self, key: crate::UniqueKey) -> Result<A, RepositoryError> {
        self.simulated_conflict::<A, _>(&key.value)?;
        self.store.repository::<A>().lock().get_by(&key)
    }

    async fn update<R, E, F>(
        &mut self,
        id: A::Id,
        f: F,
    ) -> Result<Updated<A, R>, RepositoryError<E>>
    where
        F: FnOnce(&mut A) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        self.simulated_conflict::<A, _>(&id)?;
        if self.read_only {
            // As on Postgres: the load and the closure run, then the write
            // is refused.
            let mut current = self
                .store
                .repository::<A>()
                .lock()
                .get(id)
                .map_err(RepositoryError::widen)?;
            f(&mut current).map_err(RepositoryError::Domain)?;
            return Err(refused_in_read_unit::<A>().widen());
        }
        let repository = self.writable::<A>().map_err(RepositoryError::widen)?;
        let mut state = repository.lock();
        let previous = state.current(id);
        let updated = state.update(id, f)?;
        self.undo_to(&repository, id, previous);
        self.store_events(&repository, &mut state);
        Ok(updated)
    }

    async fn delete(&mut self, id: A::Id) -> Result<(), RepositoryError> {
        self.simulated_conflict::<A, _>(&id)?;
        let repository = self.writable::<A>()?;
        let previous = {
            let mut state = repository.lock();
            let previous = state.current(id);
            state.delete(id)?;
            previous
        };
        self.undo_to(&repository, id, previous);
        Ok(())
    }

    async fn all(&mut self) -> Result<Vec<A>, RepositoryError> {
        self.simulated_conflict::<A, _>(&"*")?;
        Ok(self.store.repository::<A>().lock().all())
    }

    async fn save_all(&mut self, changed: Vec<A>) -> Result<(), RepositoryError> {
        // All or nothing, like the one statement Postgres runs: what was
        // applied before a failing one is put back at once.
        self.simulated_conflict::<A, _>(&"*")?;
        if changed.is_empty() {
            // Postgres sends no statement, so even a read unit accepts it.
            return Ok(());
        }
        let repository = self.writable::<A>()?;
        let mut applied = Vec::with_capacity(changed.len());
        let mut state = repository.lock();
        for a in changed {
            let (id, before) = (a.id(), state.current(a.id()));
            if let Err(error) = state.replace(a) {
                for (id, before) in applied.into_iter().rev() {
                    state.put_back(id, before);
                }
                // The events of the writes put back go with them.
                drop(repository.stamped(&mut state));
                return Err(error);
            }
            applied.push((id, before));
        }
        for (id, before) in applied {
            self.undo_to(&repository, id, before);
        }
        self.store_events(&repository, &mut state);
        Ok(())
    }
}

//! The in-memory repository: the same contract as the Postgres one, for
//! domain unit tests and for running a service without a database.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, btree_map};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::aggregate::{Aggregate, UniqueKey, Version};
use crate::clock::{Clock, Timestamp};
use crate::error::RepositoryError;
use crate::event::{DomainEvent, StoredEvent};
use crate::fingerprint::Fingerprint;
use crate::outbox::MemoryOutbox;
use crate::outcome::{Created, Updated};
use crate::page::{Page, PageRequest};
use crate::repository::Repository;
use crate::simulation::Simulator;
use crate::token::TxToken;

/// A strongly consistent, in-process [`Repository`]. Clones share the same
/// data, so it can be handed to concurrent tasks like a connection pool.
///
/// One mutex is held across load, closure and store. That is safe because the
/// closure is synchronous, and it makes every operation linearizable: no
/// update is ever lost and the closure never needs a re-run. The closure works
/// on a copy, so a closure that fails or panics leaves the data untouched.
///
/// A repository taken from an [`InMemoryStore`](crate::InMemoryStore) also
/// waits for the store's running unit of work, so nobody sees a unit's
/// writes before it finishes.
#[derive(Debug)]
pub struct InMemoryRepository<A: Aggregate> {
    state: Arc<Mutex<State<A>>>,
    gate: Option<Gate>,
    /// Stamps claimed tokens, for the retention purge.
    clock: Clock,
    /// Re-runs closures and loses replies, in a simulated store.
    sim: Option<Simulator>,
    /// Where changes' events go: the store's, or this repository's own.
    outbox: MemoryOutbox,
}

/// Held by a running unit of work of an [`InMemoryStore`](crate::InMemoryStore).
pub(crate) type Gate = Arc<tokio::sync::Mutex<()>>;

impl<A: Aggregate> Clone for InMemoryRepository<A> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            gate: self.gate.clone(),
            clock: self.clock.clone(),
            sim: self.sim.clone(),
            outbox: self.outbox.clone(),
        }
    }
}

impl<A: Aggregate> Default for InMemoryRepository<A> {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rows: BTreeMap::new(),
                tokens: HashMap::default(),
                unique: HashMap::default(),
                recorded: Vec::new(),
            })),
            gate: None,
            clock: Clock::system(),
            sim: None,
            outbox: MemoryOutbox::default(),
        }
    }
}

/// foldhash, not the standard library's `SipHash`: the maps are keyed by
/// random uuids and short strings, and a create hashes twice.
type HashMap<K, V> = foldhash::HashMap<K, V>;

#[derive(Debug)]
pub(crate) struct State<A: Aggregate> {
    rows: BTreeMap<A::Id, A>,
    /// Each claimed token: the aggregate it created, the request's
    /// fingerprint, and when it was claimed (for the retention purge).
    tokens: HashMap<TxToken, (A::Id, Fingerprint, Timestamp)>,
    unique: HashMap<UniqueKey, A::Id>,
    /// Events the last write's rules recorded, with the aggregate's id and
    /// stored version: taken by the caller, which stamps and stores them
    /// (see [`State::take_recorded`]).
    recorded: Vec<(A::Id, Version, Vec<DomainEvent>)>,
}

impl<A: Aggregate> InMemoryRepository<A> {
    /// An empty repository.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many aggregates are stored.
    pub fn len(&self) -> usize {
        self.lock().rows.len()
    }

    /// Whether no aggregate is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A repository whose operations wait for `gate`, stamping tokens
    /// with `clock`'s time.
    pub(crate) fn gated(
        gate: Gate,
        clock: Clock,
        sim: Option<Simulator>,
        outbox: MemoryOutbox,
    ) -> Self {
        Self {
            gate: Some(gate),
            clock,
            sim,
            outbox,
            ..Self::default()
        }
    }

    /// The events of the writes just made on `state`, stamped.
    pub(crate) fn stamped(&self, state: &mut State<A>) -> Vec<StoredEvent> {
        if state.recorded.is_empty() {
            return Vec::new(); // no clock to read
        }
        let now = self.now();
        state
            .recorded
            .drain(..)
            .flat_map(|(id, version, events)| StoredEvent::stamp::<A>(id, version, events, now))
            .collect()
    }

    /// Where this repository's changes store their events.
    pub(crate) fn outbox(&self) -> &MemoryOutbox {
        &self.outbox
    }

    /// The time tokens claimed now are stamped with.
    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Waits until no unit of work of the store is running; refuses a call
    /// made from inside one (it would wait for itself).
    async fn enter<E>(
        &self,
    ) -> Result<Option<tokio::sync::MutexGuard<'_, ()>>, RepositoryError<E>> {
        crate::unit_scope::refuse_inside_unit(A::KIND)?;
        if let Some(sim) = &self.sim {
            sim.interleave().await;
        }
        Ok(match &self.gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        })
    }

    /// `value`, or in a simulation losing replies, `OutcomeUnknown` for a
    /// write that was applied.
    fn reply_maybe_lost<T, E>(&self, value: T) -> Result<T, RepositoryError<E>> {
        match &self.sim {
            Some(sim) if sim.lose_reply() => Err(RepositoryError::OutcomeUnknown),
            _ => Ok(value),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<A>> {
        // A panicking closure poisons the mutex, but it only ever touched a
        // copy: the state itself is consistent, so carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<A: Aggregate> State<A> {
    pub(crate) fn get(&self, id: A::Id) -> Result<A, RepositoryError> {
        self.rows
            .get(&id)
            .cloned()
            .ok_or_else(|| RepositoryError::not_found(A::KIND, id))
    }

    /// The aggregate holding `key`, or `NotFound` naming the key.
    pub(crate) fn get_by(&self, key: &UniqueKey) -> Result<A, RepositoryError> {
        self.unique
            .get(key)
            .and_then(|id| self.rows.get(id))
            .cloned()
            .ok_or_else(|| RepositoryError::not_found_by(A::KIND, key))
    }

    pub(crate) fn all(&self) -> Vec<A> {
        self.rows.values().cloned().collect()
    }

    /// Stores `changed` over the stored aggregate if that is still at the
    /// version `changed` was loaded at; `Conflict` otherwise.
    pub(crate) fn replace(&mut self, changed: A) -> Result<(), RepositoryError> {
        let id = changed.id();
        let loaded_at = changed.version();
        self.update(id, |current| {
            if current.version() != loaded_at {
                return Err(());
            }
            *current = changed;
            Ok(())
        })
        .map(drop)
        .map_err(|e| match e {
            RepositoryError::Domain(()) => RepositoryError::Conflict {
                kind: A::KIND,
                id: id.to_string(),
                attempts: 1,
            },
            other => other.map_domain(|()| unreachable!("mapped above")),
        })
    }

    pub(crate) fn create(
        &mut self,
        token: TxToken,
        mut aggregate: A,
        now: Timestamp,
    ) -> Result<Created<A>, RepositoryError> {
        let id = aggregate.id();
        let fingerprint = aggregate.fingerprint();
        let events = aggregate.take_events();
        let claim = match self.tokens.entry(token) {
            Entry::Occupied(claimed) => {
                let (stored_id, claimed_for, _) = claimed.get();
                if *claimed_for != fingerprint {
                    return Err(RepositoryError::TokenMismatch {
                        kind: A::KIND,
                        token,
                    });
                }
                return self
                    .rows
                    .get(stored_id)
                    .cloned()
                    .map(Created::Replayed)
                    .ok_or_else(|| RepositoryError::not_found(A::KIND, stored_id));
            }
            Entry::Vacant(claim) => claim,
        };
        // One walk down the tree for the check and the insert.
        let row = match self.rows.entry(id) {
            btree_map::Entry::Occupied(_) => {
                return Err(RepositoryError::AlreadyExists {
                    kind: A::KIND,
                    id: id.to_string(),
                });
            }
            btree_map::Entry::Vacant(row) => row,
        };
        let keys = aggregate.unique_keys();
        if let Some(taken) = taken_key::<A>(&self.unique, id, &keys) {
            return Err(taken);
        }
        aggregate.set_version(Version::INITIAL);
        claim.insert((id, fingerprint, now));
        row.insert(aggregate.clone());
        self.index_unique(id, &[], keys);
        self.record(id, Version::INITIAL, events);
        Ok(Created::New(aggregate))
    }

    pub(crate) fn update<R, E>(
        &mut self,
        id: A::Id,
        f: impl FnOnce(&mut A) -> Result<R, E>,
    ) -> Result<Updated<A, R>, RepositoryError<E>> {
        let current = self
            .rows
            .get(&id)
            .ok_or_else(|| RepositoryError::not_found(A::KIND, id))?;
        let mut next = current.clone();
        let output = f(&mut next).map_err(RepositoryError::Domain)?;
        if next.id() != id {
            return Err(RepositoryError::Storage(
                format!("an update closure changed the id of {} {id}", A::KIND).into(),
            ));
        }
        next.set_version(current.version().next());
        let old_keys = current.unique_keys();
        let new_keys = next.unique_keys();
        self.check_unique(id, &new_keys)
            .map_err(RepositoryError::widen)?;
        self.index_unique(id, &old_keys, new_keys);
        let events = next.take_events();
        self.record(id, next.version(), events);
        self.rows.insert(id, next.clone());
        Ok(Updated {
            aggregate: next,
            output,
        })
    }

    pub(crate) fn delete(&mut self, id: A::Id) -> Result<(), RepositoryError> {
        let removed = self
            .rows
            .remove(&id)
            .ok_or_else(|| RepositoryError::not_found(A::KIND, id))?;
        self.index_unique(id, &removed.unique_keys(), Vec::new());
        Ok(())
    }

    /// Puts the aggregate `id` back to `previous` (`None`: absent), keeping
    /// the unique index in step: how a unit of work undoes one of its
    /// writes.
    pub(crate) fn put_back(&mut self, id: A::Id, previous: Option<A>) {
        let current = self.rows.remove(&id);
        let old_keys = current.map(|a| a.unique_keys()).unwrap_or_default();
        let new_keys = previous
            .as_ref()
            .map(Aggregate::unique_keys)
            .unwrap_or_default();
        self.index_unique(id, &old_keys, new_keys);
        if let Some(previous) = previous {
            self.rows.insert(id, previous);
        }
    }

    /// Forgets the tokens claimed before `cutoff`; returns how many.
    pub(crate) fn purge_tokens_before(&mut self, cutoff: Timestamp) -> usize {
        let before = self.tokens.len();
        self.tokens.retain(|_, (_, _, claimed)| *claimed >= cutoff);
        before - self.tokens.len()
    }

    /// Forgets a token a unit of work claimed and is undoing.
    pub(crate) fn forget_token(&mut self, token: TxToken) {
        self.tokens.remove(&token);
    }

    fn record(&mut self, id: A::Id, version: Version, events: Vec<DomainEvent>) {
        if !events.is_empty() {
            self.recorded.push((id, version, events));
        }
    }

    /// The aggregate `id` as stored now, if it is.
    pub(crate) fn current(&self, id: A::Id) -> Option<A> {
        self.rows.get(&id).cloned()
    }

    fn check_unique(&self, id: A::Id, keys: &[UniqueKey]) -> Result<(), RepositoryError> {
        taken_key::<A>(&self.unique, id, keys).map_or(Ok(()), Err)
    }

    fn index_unique(&mut self, id: A::Id, old: &[UniqueKey], new: Vec<UniqueKey>) {
        for key in old {
            self.unique.remove(key);
        }
        for key in new {
            self.unique.insert(key, id);
        }
    }
}

/// `Duplicate` for the first of `keys` that another aggregate than `id`
/// holds.
fn taken_key<A: Aggregate>(
    unique: &HashMap<UniqueKey, A::Id>,
    id: A::Id,
    keys: &[UniqueKey],
) -> Option<RepositoryError> {
    let taken = keys
        .iter()
        .find(|key| unique.get(*key).is_some_and(|holder| *holder != id))?;
    Some(RepositoryError::Duplicate {
        kind: A::KIND,
        key: taken.name.to_owned(),
    })
}

impl<A: Aggregate> Repository<A> for InMemoryRepository<A> {
    async fn create(&self, token: TxToken, aggregate: A) -> Result<Created<A>, RepositoryError> {
        let _gate = self.enter().await?;
        let now = self.now();
        let mut state = self.lock();
        let created = state.create(token, aggregate, now)?;
        self.outbox.append_committed(self.stamped(&mut state));
        Ok(created)
    }

    async fn get(&self, id: A::Id) -> Result<A, RepositoryError> {
        let _gate = self.enter().await?;
        self.lock().get(id)
    }

    async fn get_by(&self, key: UniqueKey) -> Result<A, RepositoryError> {
        let _gate = self.enter().await?;
        self.lock().get_by(&key)
    }

    async fn update<R, E, F>(&self, id: A::Id, f: F) -> Result<Updated<A, R>, RepositoryError<E>>
    where
        F: FnMut(&mut A) -> Result<R, E> + Send,
        R: Send,
        E: Send,
    {
        let _gate = self.enter().await?;
        let mut f = f;
        let mut state = self.lock();
        if let Some(sim) = &self.sim {
            // Runs that lost to a simulated concurrent writer: discarded.
            for _ in 0..sim.reruns() {
                let Ok(mut scratch) = state.get(id) else {
                    break;
                };
                let _discarded = f(&mut scratch);
            }
        }
        let updated = state.update(id, f)?;
        self.outbox.append_committed(self.stamped(&mut state));
        self.reply_maybe_lost(updated)
    }

    async fn delete(&self, id: A::Id) -> Result<(), RepositoryError> {
        let _gate = self.enter().await?;
        self.lock().delete(id)?;
        self.reply_maybe_lost(())
    }

    async fn list(&self, page: PageRequest<A::Id>) -> Result<Page<A>, RepositoryError> {
        let _gate = self.enter().await?;
        let state = self.lock();
        let items: Vec<A> = match page.cursor() {
            Some(after) => state
                .rows
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                .map(|(_, a)| a.clone())
                .take(page.limit())
                .collect(),
            None => state.rows.values().take(page.limit()).cloned().collect(),
        };
        Ok(Page::from_items(items, page))
    }

    async fn events(&self, id: A::Id) -> Result<Vec<StoredEvent>, RepositoryError> {
        let _gate = self.enter().await?;
        Ok(self.outbox.of(A::KIND, id.into()))
    }
}

//! The in-memory store's outbox: the events stored with each change, and
//! an in-process channel that tells subscribers of them once the change is
//! committed, where the Postgres store's relay publishes to a broker.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use crate::event::StoredEvent;

/// Events stored with changes, in commit order, and their subscribers.
/// Shared by every repository of one [`InMemoryStore`](crate::InMemoryStore)
/// (a lone [`InMemoryRepository`](crate::InMemoryRepository) has its own).
#[derive(Debug, Clone)]
pub struct MemoryOutbox {
    stored: Arc<Mutex<Vec<StoredEvent>>>,
    channel: broadcast::Sender<StoredEvent>,
}

/// How many published events a subscriber may fall behind by before it
/// misses some (`RecvError::Lagged`).
const CHANNEL_CAPACITY: usize = 4096;

impl Default for MemoryOutbox {
    fn default() -> Self {
        Self {
            stored: Arc::default(),
            channel: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

impl MemoryOutbox {
    /// Every event stored, oldest first.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.lock().clone()
    }

    /// A receiver of each event from now on, once its change is committed
    /// (a unit's events when the unit commits; none of a unit that fails).
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.channel.subscribe()
    }

    /// The events of one aggregate, oldest first.
    pub(crate) fn of(&self, kind: &str, id: uuid::Uuid) -> Vec<StoredEvent> {
        self.lock()
            .iter()
            .filter(|event| event.aggregate_kind == kind && event.aggregate_id == id)
            .cloned()
            .collect()
    }

    /// How many events are stored: a mark to [`Self::truncate`] or
    /// [`Self::publish_from`].
    pub(crate) fn mark(&self) -> usize {
        self.lock().len()
    }

    /// Stores `events` of a unit's change, which is told to subscribers
    /// when the unit commits ([`Self::publish_from`]).
    pub(crate) fn append(&self, events: Vec<StoredEvent>) {
        self.lock().extend(events);
    }

    /// Stores `events` of a change that is committed already, and tells
    /// subscribers of them (under the lock: in the order stored).
    pub(crate) fn append_committed(&self, events: Vec<StoredEvent>) {
        if events.is_empty() {
            return;
        }
        let mut stored = self.lock();
        for event in &events {
            let _ = self.channel.send(event.clone());
        }
        stored.extend(events);
    }

    /// Forgets the events stored since `mark`: a unit's rollback. Units
    /// run one at a time, so nothing else was stored since.
    pub(crate) fn truncate(&self, mark: usize) {
        self.lock().truncate(mark);
    }

    /// Tells subscribers of the events stored since `mark`: their change
    /// committed.
    pub(crate) fn publish_from(&self, mark: usize) {
        if self.channel.receiver_count() == 0 {
            return;
        }
        let committed: Vec<StoredEvent> = self.lock().get(mark..).unwrap_or_default().to_vec();
        for event in committed {
            // No receiver left is not an error: nobody listens.
            let _ = self.channel.send(event);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<StoredEvent>> {
        self.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

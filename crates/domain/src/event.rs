//! Domain events: facts an aggregate's rules record as they change it, which
//! the repository stores in the same transaction as the change (the
//! outbox), so that telling other services, read models or background work
//! about a change never disagrees with the change itself.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::aggregate::{Aggregate, Version};
use crate::clock::Timestamp;

/// A fact a rule recorded: its name and its payload, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainEvent {
    /// What happened, past tense: `order_placed`.
    pub name: &'static str,
    /// The facts a consumer needs, as JSON.
    pub payload: serde_json::Value,
}

/// The events an aggregate's rules recorded since it was loaded or created:
/// keep one as a field (`#[serde(skip)]` where the aggregate serializes)
/// and return it from [`Aggregate::take_events`]. The repository takes
/// them out when it stores the change, so a stored or returned aggregate
/// holds none, and a closure that is re-run starts from none again.
///
/// Any two are equal: an aggregate's equality is its state, not the news
/// it has yet to tell.
#[derive(Debug, Clone, Default)]
pub struct Events(Vec<DomainEvent>);

impl Events {
    /// Records that `name` happened, with `payload`.
    ///
    /// # Panics
    /// If `payload` does not serialize to JSON, which derived `Serialize`
    /// implementations of plain data never do (maps with non-string keys
    /// do).
    pub fn record(&mut self, name: &'static str, payload: &impl Serialize) {
        let payload = serde_json::to_value(payload)
            .expect("event payloads serialize to JSON: plain data, string map keys");
        self.0.push(DomainEvent { name, payload });
    }

    /// The events recorded so far, leaving none.
    pub fn take(&mut self) -> Vec<DomainEvent> {
        std::mem::take(&mut self.0)
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Events {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for Events {}

/// An event as the outbox keeps it: what the rule recorded, stamped by the
/// repository with an id, the aggregate it happened to, the version the
/// change stored and the time. Its JSON form (these field names) is the
/// body of the message the relay publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Unique per event: a consumer's inbox deduplicates on it.
    pub id: Uuid,
    /// [`Aggregate::KIND`] of the aggregate.
    pub aggregate_kind: String,
    /// The aggregate's id.
    pub aggregate_id: Uuid,
    /// The version the change that recorded it stored; events of one
    /// aggregate are ordered by it (and by recording order within it).
    pub version: Version,
    /// What happened.
    pub name: String,
    /// The facts, as JSON.
    pub payload: serde_json::Value,
    /// When the change was stored (the store's clock).
    pub occurred_at: Timestamp,
}

impl StoredEvent {
    /// Stamps the events the rules of the `A` with id `id` recorded, which
    /// the change storing it at `version` makes true at `now`.
    pub fn stamp<A: Aggregate>(
        id: A::Id,
        version: Version,
        events: Vec<DomainEvent>,
        now: Timestamp,
    ) -> Vec<Self> {
        events
            .into_iter()
            .map(|event| Self {
                id: Uuid::now_v7(),
                aggregate_kind: A::KIND.to_owned(),
                aggregate_id: id.into(),
                version,
                name: event.name.to_owned(),
                payload: event.payload,
                occurred_at: now,
            })
            .collect()
    }
}

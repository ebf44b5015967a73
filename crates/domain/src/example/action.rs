//! The action log: what happened, to which aggregate, when.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Aggregate, DomainEvent, Events, Fingerprint, Replaced, Timestamp, Version};

crate::aggregate_id!(
    /// Identifies an action log entry.
    pub struct ActionId;
);

/// One entry of the action log. Use-cases append it in the same unit of work
/// as the change it records, so the log never claims a change that was rolled
/// back nor misses one that was committed. Entries are never updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    id: ActionId,
    version: Version,
    what: String,
    aggregate_kind: String,
    aggregate_id: Uuid,
    at: Timestamp,
    /// What [`Action::catalog_replaced`] recorded.
    #[serde(skip)]
    events: Events,
}

impl Action {
    /// Records that `what` (e.g. `"user.created"`) happened to `target`.
    pub fn about<A: Aggregate>(target: &A, what: &'static str, at: Timestamp) -> Self {
        Self {
            id: ActionId::generate(),
            version: Version::INITIAL,
            what: what.to_owned(),
            aggregate_kind: A::KIND.to_owned(),
            aggregate_id: target.id().into(),
            at,
            events: Events::default(),
        }
    }

    /// Records that the product catalog was replaced as `report` says (it
    /// is about every product: the id is nil); records the domain event
    /// `catalog_replaced` with the counts.
    pub fn catalog_replaced(report: &Replaced, at: Timestamp) -> Self {
        let mut events = Events::default();
        events.record(
            "catalog_replaced",
            &serde_json::json!({
                "created": report.created,
                "updated": report.updated,
                "deleted": report.deleted,
                "unchanged": report.unchanged,
            }),
        );
        Self {
            id: ActionId::generate(),
            version: Version::INITIAL,
            what: "catalog.replaced".to_owned(),
            aggregate_kind: "product".to_owned(),
            aggregate_id: Uuid::nil(),
            at,
            events,
        }
    }

    /// Rebuilds an entry from storage.
    pub fn restore(
        id: ActionId,
        what: String,
        aggregate_kind: String,
        aggregate_id: Uuid,
        at: Timestamp,
    ) -> Self {
        Self {
            id,
            version: Version::INITIAL,
            what,
            aggregate_kind,
            aggregate_id,
            at,
            events: Events::default(),
        }
    }

    /// What happened.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The kind of aggregate it happened to.
    pub fn aggregate_kind(&self) -> &str {
        &self.aggregate_kind
    }

    /// The aggregate it happened to.
    pub fn aggregate_id(&self) -> Uuid {
        self.aggregate_id
    }

    /// When it happened.
    pub fn at(&self) -> Timestamp {
        self.at
    }
}

impl Aggregate for Action {
    crate::aggregate_basics!(id: ActionId, kind: "action");

    /// A retried use-case records the same thing about the same aggregate.
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&(&self.what, &self.aggregate_kind, self.aggregate_id))
    }

    fn take_events(&mut self) -> Vec<DomainEvent> {
        self.events.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::example::{Order, OrderId, UserId};

    #[test]
    fn an_action_names_its_target() {
        // given an order
        let order = Order::open(
            OrderId::generate(),
            UserId::generate(),
            vec![],
            Timestamp::now(),
        )
        .unwrap();
        // when its creation is recorded
        let action = Action::about(&order, "order.created", Timestamp::now());
        // then the entry points at it
        assert_eq!(action.what(), "order.created");
        assert_eq!(action.aggregate_kind(), "order");
        assert_eq!(action.aggregate_id(), Uuid::from(order.id()));
    }

    #[test]
    fn a_retried_record_has_the_same_fingerprint() {
        let order = Order::open(
            OrderId::generate(),
            UserId::generate(),
            vec![],
            Timestamp::now(),
        )
        .unwrap();
        let first = Action::about(&order, "order.created", Timestamp::now());
        let retry = Action::about(&order, "order.created", Timestamp::now());
        assert_ne!(first.id(), retry.id());
        assert_eq!(first.fingerprint(), retry.fingerprint());
    }
}

//! Keyset pagination: stable under concurrent inserts, and as fast on the
//! thousandth page as on the first (no OFFSET).

use crate::aggregate::{Aggregate, AggregateId};

/// Which page of a list to read: at most `limit` aggregates with an id
/// greater than `after`, in id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<Id> {
    after: Option<Id>,
    limit: usize,
}

impl<Id: AggregateId> PageRequest<Id> {
    /// The largest page a repository returns; larger requests are clamped.
    pub const MAX_LIMIT: usize = 1000;

    /// The first page, with `limit` clamped to `1..=MAX_LIMIT`.
    pub fn first(limit: usize) -> Self {
        Self {
            after: None,
            limit: limit.clamp(1, Self::MAX_LIMIT),
        }
    }

    /// The page that starts after `id` (exclusive).
    #[must_use]
    pub fn after(self, id: Id) -> Self {
        Self {
            after: Some(id),
            ..self
        }
    }

    /// The exclusive lower bound, if any.
    pub fn cursor(&self) -> Option<Id> {
        self.after
    }

    /// How many aggregates at most.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// One page of aggregates, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<A: Aggregate> {
    /// The aggregates on this page.
    pub items: Vec<A>,
    /// The request for the next page, or `None` when this page was the last.
    pub next: Option<PageRequest<A::Id>>,
}

impl<A: Aggregate> Page<A> {
    /// Builds a page from at most `request.limit()` aggregates read in id
    /// order.
    pub fn from_items(items: Vec<A>, request: PageRequest<A::Id>) -> Self {
        let next = match items.last() {
            Some(last) if items.len() == request.limit() => Some(request.after(last.id())),
            _ => None,
        };
        Self { items, next }
    }
}

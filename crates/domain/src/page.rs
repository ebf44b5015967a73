//! Keyset pagination: stable under concurrent inserts, and as fast on the
//! thousandth page as on the first (no OFFSET).

use crate::aggregate::AggregateId;

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
pub struct Page<A, Id> {
    /// The aggregates on this page.
    pub items: Vec<A>,
    /// The request for the next page, or `None` when this page was the last.
    pub next: Option<PageRequest<Id>>,
}

impl<A, Id: AggregateId> Page<A, Id> {
    /// Builds a page from at most `request.limit()` items read in id order;
    /// `id_of` gives an item's id for the next page's cursor.
    pub fn from_items(items: Vec<A>, request: PageRequest<Id>, id_of: impl Fn(&A) -> Id) -> Self {
        let next = match items.last() {
            Some(last) if items.len() == request.limit() => Some(request.after(id_of(last))),
            _ => None,
        };
        Self { items, next }
    }
}

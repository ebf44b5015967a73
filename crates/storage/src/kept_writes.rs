//! A unit of work's updates, kept in the process until the unit commits:
//! they then travel with its COMMIT, in one flight, instead of costing a
//! savepoint, the writes and a release (three round trips) each.
//!
//! Inside the unit, a read of a kept aggregate answers its kept state, and
//! a second update of it builds on that state (the two leave one write:
//! the first's old version to the second's new one, with both's events).
//! Anything else that sends statements inside the unit (a create, a
//! delete, a list, a nested part, an inbox entry) first flushes what is
//! kept, so that it sees, and comes after, every earlier write.

use std::any::Any;

use domain::{Aggregate, StoredEvent};

use crate::mapping::Mapping;
use crate::outbox;
use crate::repository::target;
use crate::retry::Target;
use crate::writes::Writes;

type Agg<M> = <M as Mapping>::Aggregate;

/// The kept updates, in the order the unit first made them.
#[derive(Default)]
pub(crate) struct KeptWrites {
    updates: Vec<Box<dyn Kept>>,
}

/// One aggregate's kept update, whatever its type.
trait Kept: Any + Send + Sync {
    /// Lists its statements: the mapping's, then its events'.
    fn list<'a>(&'a self, writes: &mut Writes<'a>);

    /// What its write failing is reported as.
    fn target(&self) -> Target;
}

/// `new` over `old`, as stored when the unit began to change it.
struct Update<M: Mapping> {
    old: Agg<M>,
    new: Agg<M>,
    events: Vec<StoredEvent>,
}

impl<M: Mapping> Kept for Update<M> {
    fn list<'a>(&'a self, writes: &mut Writes<'a>) {
        M::update(writes, &self.old, &self.new);
        outbox::write(writes, &self.events);
    }

    fn target(&self) -> Target {
        target::<M>(self.new.id())
    }
}

impl KeptWrites {
    /// The kept state of `M`'s aggregate `id`, if the unit changed it.
    pub(crate) fn latest<M: Mapping>(&self, id: <Agg<M> as Aggregate>::Id) -> Option<&Agg<M>> {
        self.of::<M>(id).map(|update| &update.new)
    }

    fn of<M: Mapping>(&self, id: <Agg<M> as Aggregate>::Id) -> Option<&Update<M>> {
        self.updates.iter().find_map(|kept| {
            let kept: &dyn Any = kept.as_ref();
            kept.downcast_ref::<Update<M>>()
                .filter(|update| update.new.id() == id)
        })
    }

    /// Keeps `new` over `old` (stored, or kept before: then the kept
    /// update now ends at `new`).
    pub(crate) fn keep<M: Mapping>(&mut self, old: Agg<M>, new: Agg<M>, events: Vec<StoredEvent>) {
        let id = new.id();
        let earlier = self.updates.iter_mut().find_map(|kept| {
            let kept: &mut dyn Any = kept.as_mut();
            kept.downcast_mut::<Update<M>>()
                .filter(|update| update.new.id() == id)
        });
        match earlier {
            Some(update) => {
                update.new = new;
                update.events.extend(events);
            }
            None => self
                .updates
                .push(Box::new(Update::<M> { old, new, events })),
        }
    }

    /// Lists every kept update's statements, in order; returns how many
    /// root rows they must match (one per update), and what a failure is
    /// reported as (`None`: nothing is kept).
    pub(crate) fn list<'a>(&'a self, writes: &mut Writes<'a>) -> Option<(usize, Target)> {
        let first = self.updates.first()?.target();
        for kept in &self.updates {
            kept.list(writes);
        }
        Some((self.updates.len(), first))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// Forgets every kept update: written, or rolled back with the part of
    /// the unit that made them.
    pub(crate) fn clear(&mut self) {
        self.updates.clear();
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use domain::testing::{ContractSubject as _, Counter, CounterId};
    use domain::{Aggregate, Version};

    use super::KeptWrites;
    use crate::testing::CounterMapping;

    #[test]
    fn a_second_update_of_an_aggregate_extends_the_first() {
        let id = CounterId::generate();
        let stored = Counter::sample(id, 1);
        let mut first = stored.clone();
        first.set_version(Version::INITIAL.next());
        let mut second = first.clone();
        second.set_version(first.version().next());
        let other = Counter::sample(CounterId::generate(), 2);

        let mut kept = KeptWrites::default();
        assert!(kept.latest::<CounterMapping>(id).is_none());
        kept.keep::<CounterMapping>(stored.clone(), first, Vec::new());
        kept.keep::<CounterMapping>(other.clone(), other.clone(), Vec::new());
        kept.keep::<CounterMapping>(stored.clone(), second.clone(), Vec::new());

        assert_eq!(kept.latest::<CounterMapping>(id), Some(&second));
        let update = kept.of::<CounterMapping>(id).expect("kept");
        assert_eq!(update.old, stored, "the write starts at the stored state");
        let mut writes = crate::writes::Writes::new();
        let (roots, target) = kept.list(&mut writes).expect("two updates");
        assert_eq!(roots, 2);
        assert_eq!(target.id, id.to_string());
        drop(writes);
        kept.clear();
        assert!(kept.is_empty());
    }
}

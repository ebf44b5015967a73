//! The framework core: aggregates, the [`Repository`] contract, units of
//! work, and the in-memory store that honours the same contract. The
//! example domain (users, orders, an action log, a catalog) lives apart, in
//! `example`, which `scripts/strip-example` removes.
//!
//! This crate has no database dependency: business rules and their tests live
//! here and run without one. `crates/storage` implements the same contract on
//! Postgres; the `testing` feature exports the contract suite both run.
#![deny(missing_docs)]

mod aggregate;
mod clock;
mod error;
mod event;
pub mod example; // example-only
mod exclusive;
mod fingerprint;
mod inbox;
mod memory;
mod memory_store;
mod outbox;
mod outcome;
mod page;
mod precondition;
mod repository;
mod simulation;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod token;
mod unit_of_work;
mod unit_scope;

pub use aggregate::{Aggregate, AggregateId, InvalidId, UniqueKey, Version};
pub use clock::{Clock, Timestamp};
pub use error::{BoxError, DomainError, RepositoryError};
pub use event::{DomainEvent, Events, StoredEvent};
pub use exclusive::{ExclusiveAccess, KeyGuard, KeyedLocks};
pub use fingerprint::Fingerprint;
pub use inbox::Inbox;
pub use memory::InMemoryRepository;
pub use memory_store::{InMemoryStore, MemoryTx};
pub use outbox::MemoryOutbox;
pub use outcome::{Created, Keyed, Updated};
pub use page::{Page, PageRequest};
pub use precondition::{IfVersion, StaleVersion};
pub use repository::Repository;
pub use simulation::Simulation;
pub use store::{Store, StoreExt, Stores};
pub use token::{InvalidToken, TxToken};
pub use unit_of_work::{
    BoxFuture, Nested, Replaced, RunOnce, Transaction, TxExt, UnitOfWork, UnitRepository,
};

#[doc(hidden)]
pub mod __private {
    //! Re-exports for [`aggregate_id!`]; not part of the API.
    pub use crate::unit_scope::{refuse_inside_unit, within_unit};
    pub use serde;
    pub use uuid::Uuid;
}

/// Compiles and runs the README's Rust examples, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

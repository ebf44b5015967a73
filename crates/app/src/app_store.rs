//! The one bound the service's router and handlers share: what the service
//! needs from a store. Adding an aggregate needs no edit here: the
//! example's aggregates are listed once, in `ExampleStore`, next to its use
//! cases; a team's own domain module brings its own such trait and adds it
//! here once.

// The skeleton's form of each line follows it, kept by `scripts/strip-example`.

/// A store the service can run on: the in-memory one or Postgres.
pub trait AppStore: domain::Store + crate::example::ExampleStore {} // example-only
// without-example: pub trait AppStore: domain::Store {}

impl<S: domain::Store + crate::example::ExampleStore> AppStore for S {} // example-only
// without-example: impl<S: domain::Store> AppStore for S {}

//! The one bound the service's router and use cases share: what the
//! service needs from a store. Adding an aggregate needs no edit here: the
//! example's aggregates are listed once, in `ExampleStore`, next to its
//! use cases; a team's own domain module brings its own such trait.

/// A store the service can run on: the in-memory one or Postgres.
pub trait AppStore: domain::Store
where
    Self: crate::example::ExampleStore,
{
}

impl<S> AppStore for S
where
    S: domain::Store,
    S: crate::example::ExampleStore, // example-only
{
}

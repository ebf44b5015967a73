//! The one bound the service's router and handlers share: what the service
//! needs from a store. Adding an aggregate needs no edit here: the
//! example's aggregates are listed once, in `ExampleStore`, next to its use
//! cases; a team's own domain module brings its own such trait and adds it
//! here once, as a line of its own in both lists below (`Self: ..` and
//! `S: ..`, above the store's own bound), which `scripts/strip-example`
//! leaves alone.
//!
//! The store's own bound stays last: rustfmt drops a comment that ends
//! the last bound of a trait's `where` list, and the example's lines carry
//! their `example-only` marker that way.

/// A store the service can run on: the in-memory one or Postgres.
pub trait AppStore
where
    Self: crate::example::ExampleStore, // example-only
    Self: domain::Store,
{
}

impl<S> AppStore for S
where
    S: crate::example::ExampleStore, // example-only
    S: domain::Store,
{
}

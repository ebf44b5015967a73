//! The example's use cases: plain async functions generic over the store,
//! so the same code runs on Postgres in the service and in memory in the
//! unit tests below each one. HTTP handlers only parse, call and respond.
//!
//! A use case that writes several aggregates keeps its unit's logic in a
//! named `async fn` over the transaction and runs it with one
//! `store.run(|tx| Box::pin(..))`: stable Rust cannot yet name the `Send`
//! future of an async closure.

pub mod accounts;
pub mod actions;
pub mod catalog;
pub mod orders;
pub mod stats;
pub mod users;

#[cfg(test)]
mod fixtures;

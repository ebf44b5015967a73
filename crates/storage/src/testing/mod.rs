//! Test support for stores' own test suites: the contract suite's
//! `Counter` mapped to Postgres, so it can take part in units of work.

mod counter_mapping;

pub use counter_mapping::{CREATE_TABLE as CREATE_COUNTERS_TABLE, CounterMapping};

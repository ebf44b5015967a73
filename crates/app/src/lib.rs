//! The example service: users with profiles and scores, orders, and an
//! action log, over HTTP, on the in-memory store or on Postgres.
//!
//! `Application::build(config)` then `run_until_stopped(shutdown)`; tests
//! bind port 0 and pass their own shutdown future.

pub mod catalog;
pub mod config;
pub mod extract;
pub mod openapi;
pub mod persistence;
pub mod problem;
pub mod routes;
pub mod startup;
pub mod views;

pub use config::Config;
pub use startup::Application;

//! The service: a skeleton (startup, config, errors, health, the OpenAPI
//! document, the router) and, in [`example`], the example application that
//! `scripts/strip-example` removes: users with profiles and scores, orders,
//! an action log and a product catalog.
//!
//! `Application::build(config)` then `run_until_stopped(shutdown)`; tests
//! bind port 0 and pass their own shutdown future.

pub mod app_store;
pub mod config;
pub mod example; // example-only
pub mod extract;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod router;
pub mod startup;

pub use app_store::AppStore;
pub use config::{Command, Config, LogFormat};
pub use startup::{Application, run_relay, unpark};

//! Helpers shared by the integration test binaries.
#![expect(
    clippy::missing_panics_doc,
    reason = "test helpers panic when set-up fails"
)]

pub mod counter_mapping;
pub mod http_app;
pub mod test_db;

pub use counter_mapping::CounterMapping;
pub use http_app::{TestApp, code, read};
pub use test_db::{StoreWithDb, TestDb, WithDb};

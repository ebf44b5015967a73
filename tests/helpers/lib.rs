//! Helpers shared by the integration test binaries.
#![expect(
    clippy::missing_panics_doc,
    reason = "test helpers panic when set-up fails"
)]

pub mod broker;
pub mod faulty;
pub mod http_app;
pub mod own_cluster;
pub mod pair;
pub mod test_db;

pub use http_app::{TestApp, code, read};
pub use own_cluster::OwnCluster;
pub use pair::Pair;
pub use storage::testing::{CounterMapping, LedgerMapping};
pub use test_db::{StoreWithDb, TestDb, WithDb};

//! Errors of setting a store up (operations return `RepositoryError`).

/// Why the store could not be set up. Startup errors: report and exit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection to the database could be opened.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// A migration failed; the database is as the last good one left it.
    #[error("database migration failed: {0}")]
    Migrate(String),
}

//! Errors of setting a store up (operations return `RepositoryError`).

/// Why the store could not be set up. Startup errors: report and exit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection to the database could be opened.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// The server writes its messages in a language the store cannot
    /// classify faults by, and the role may not change that; the message
    /// names the fix.
    #[error("this database cannot serve the store: {0}")]
    Messages(String),
    /// A migration failed; the database is as the last good one left it.
    #[error("database migration failed: {0}")]
    Migrate(String),
}

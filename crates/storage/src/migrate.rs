//! Embedded migrations, run by the app at start and by tests.

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::StoreError;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Applies every pending migration to the database at `database_url`.
///
/// diesel's harness is synchronous; it runs on a blocking thread over an
/// async connection wrapped for it, so this works on any tokio runtime
/// (`AsyncMigrationHarness` panics on a current-thread one).
pub async fn migrate(database_url: &str) -> Result<(), StoreError> {
    let url = database_url.to_owned();
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        use diesel::Connection;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        tracing::info!(applied = applied.len(), "database migrated");
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Migrate(format!("migration task failed: {e}")))?
}

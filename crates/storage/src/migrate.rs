//! Embedded migrations, run by the app at start and by tests.

use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::StoreError;

/// The framework's tables (transaction tokens). Never edit these.
const FRAMEWORK: EmbeddedMigrations = embed_migrations!("migrations/framework");

/// The application's tables: add yours with `diesel migration generate`
/// (see `diesel.toml`). `build.rs` makes cargo re-embed them when they
/// change.
const APPLICATION: EmbeddedMigrations = embed_migrations!("migrations/app");

/// Applies every pending migration, the framework's then the
/// application's, to the database at `database_url`. Both sets share
/// diesel's bookkeeping table, so their versions must not collide: the
/// framework's are dated 2026-11-01-0000xx.
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
        let mut applied = 0;
        for set in [FRAMEWORK, APPLICATION] {
            applied += conn
                .run_pending_migrations(set)
                .map_err(|e| StoreError::Migrate(e.to_string()))?
                .len();
        }
        tracing::info!(applied, "database migrated");
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Migrate(format!("migration task failed: {e}")))?
}
